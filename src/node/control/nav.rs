//! The ROS-agnostic navigation controller: R2R decisions (the session's temporal ensemble over
//! discrete-action chunks, as the reference) become timed velocity profiles: forward `forward_m` at
//! `linear_speed`, turns of `turn_deg` at `angular_speed_deg`; STOP ends the goal as succeeded.
//! The next decision uses a frame that arrived after the motion ended and the robot settled.
use std::time::{Duration, Instant};

use crate::ros::action::GoalOutcome;
use crate::ros::msgs::univla_msgs::ExecuteResult;
use crate::runtime::postprocess::{Action, NavAction};

use crate::node::config::NavProfile;
use crate::node::control::core::{
    camera_stale, check_camera, check_instruction, clip, frame_age, frame_counts, has_new_frame, take_frame,
    ControlCore, Ended, FrameInbox, FrameTrace, GoalSpec, InFrame, LastInference, NodeState, Started, StepFeedback,
    MESSAGE_TEXT_CHARS,
};
use crate::node::control::stop::Repeater;
use crate::node::diagnostics::Counters;
use crate::node::input::CameraFrame;
use crate::node::wiring::worker::{InferenceWorker, Job, JobError, JobResult};

/// A velocity command: linear x (m/s) and angular z (rad/s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Velocity {
    pub linear: f64,
    pub angular: f64,
}

impl Velocity {
    pub const ZERO: Velocity = Velocity {
        linear: 0.0,
        angular: 0.0,
    };
}

/// The timed profile of one discrete action (`None` for STOP).
pub fn profile(action: NavAction, p: &NavProfile) -> Option<(Velocity, Duration)> {
    let w = p.angular_speed_deg.to_radians();
    let turn = Duration::from_secs_f64(p.turn_deg / p.angular_speed_deg);
    match action {
        NavAction::Stop => None,
        NavAction::Forward => Some((
            Velocity {
                linear: p.linear_speed,
                angular: 0.0,
            },
            Duration::from_secs_f64(p.forward_m / p.linear_speed),
        )),
        NavAction::TurnLeft => Some((
            Velocity {
                linear: 0.0,
                angular: w,
            },
            turn,
        )),
        NavAction::TurnRight => Some((
            Velocity {
                linear: 0.0,
                angular: -w,
            },
            turn,
        )),
    }
}

/// Fixed settings of the navigation core.
#[derive(Clone, Debug)]
pub struct NavSettings {
    pub profile: NavProfile,
    pub image_timeout: Duration,
    pub max_instruction_chars: usize,
    pub dry_run: bool,
    pub max_decisions: u32,
    pub preview: bool,
    /// An inference running longer than this is a fault (zero: no limit).
    pub inference_timeout: Duration,
    /// Largest camera image decoded, in pixels (`max_image_pixels`).
    pub max_image_pixels: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Waiting for a frame newer than `after`, then for the inference.
    Planning {
        after: Instant,
    },
    Moving {
        v: Velocity,
        until: Instant,
    },
}

struct Goal {
    epoch: u64,
    instruction: String,
    max_decisions: u32,
    deadline: Option<Instant>,
    decisions: u32,
    phase: Phase,
}

/// What one control step (or reaction) of the base produced: the velocity to publish
/// (`Some(ZERO)` to stop).
pub type NavTick = crate::node::control::core::Tick<Velocity>;

/// The navigation controller.
pub struct NavCore {
    s: NavSettings,
    worker: InferenceWorker,
    frames: FrameInbox,
    worker_free: Instant,
    /// The e-stop's reason while engaged.
    estop: Option<String>,
    repeats: Repeater<Velocity>,
    goal: Option<Goal>,
    epoch: u64,
    state: NodeState,
    last: LastInference,
    last_decision: Option<NavAction>,
    pub counters: Counters,
}

impl NavCore {
    pub fn new(s: NavSettings, worker: InferenceWorker) -> Self {
        Self {
            s,
            worker,
            frames: FrameInbox::default(),
            worker_free: Instant::now(),
            estop: None,
            repeats: Repeater::default(),
            goal: None,
            epoch: 0,
            state: NodeState::Idle,
            last: LastInference::default(),
            last_decision: None,
            counters: Counters::default(),
        }
    }

    /// A camera frame arrived (the driver's input thread puts into the frame inbox instead).
    pub fn on_image(&mut self, frame: CameraFrame, now: Instant) {
        crate::node::control::core::put_frame(&self.frames, frame, now);
    }

    /// The decision taken since the last call, if any.
    pub fn take_decision(&mut self) -> Option<NavAction> {
        self.last_decision.take()
    }

    /// Zero velocity now, repeated on the next steps.
    fn stop(&mut self, tick: &mut NavTick) {
        self.repeats.arm(Velocity::ZERO);
        tick.command = Some(Velocity::ZERO);
    }

    /// A fault inside the node: abort the goal, stop the base, ERROR until the next goal.
    fn fault(&mut self, reason: String, tick: &mut NavTick) {
        self.counters.fault = Some(reason.clone());
        tick.ended = self.end(GoalOutcome::Aborted, ExecuteResult::ABORTED, &reason);
        self.stop(tick);
    }

    fn end(&mut self, status: GoalOutcome, outcome: u8, reason: &str) -> Option<Ended> {
        let g = self.goal.take()?;
        self.state = match &self.estop {
            Some(r) => NodeState::EStopped(r.clone()),
            None => NodeState::Idle,
        };
        if status == GoalOutcome::Aborted {
            tracing::warn!("aborting goal {}: {reason}", g.epoch);
            self.counters.last_error = reason.to_string();
        }
        Some(Ended {
            epoch: g.epoch,
            status,
            outcome,
            steps: g.decisions,
            reason: reason.to_string(),
        })
    }

    fn hold(&mut self, reason: String, now: Instant, tick: &mut NavTick) {
        let reason = clip(&reason, MESSAGE_TEXT_CHARS).into_owned();
        if let Some(g) = self.goal.as_mut() {
            // Motion is abandoned; re-plan from a frame taken after the hold.
            g.phase = Phase::Planning { after: now };
        }
        if self.state != NodeState::Holding(reason.clone()) {
            if !matches!(self.state, NodeState::Holding(_)) {
                self.counters.holds += 1;
                self.stop(tick);
            }
            tracing::warn!("holding: {reason}");
            self.counters.last_error = reason.clone();
            self.state = NodeState::Holding(reason);
        }
    }

    fn new_tick(&self) -> NavTick {
        NavTick {
            actuate: !self.s.dry_run,
            ..Default::default()
        }
    }

    /// Takes a finished inference (a result for an ended goal is discarded).
    fn poll(&mut self) -> Option<JobResult> {
        let r = self.worker.poll()?;
        self.worker_free = Instant::now();
        Some(r).filter(|r| Some(r.epoch) == self.goal_epoch())
    }

    /// Uses an inference result: a decision starts its motion now.
    fn use_result(&mut self, res: JobResult, now: Instant, tick: &mut NavTick) {
        let trace = FrameTrace::of(&res, self.worker_free);
        match res.result {
            Ok(inf) => {
                self.last
                    .note(res.latency, inf.latent_ids, inf.preview, &mut self.counters, tick);
                let Action::Nav(action) = inf.action else {
                    self.fault("the head is not an R2R head".into(), tick);
                    return;
                };
                tick.trace = Some(trace);
                self.decide(action, now, tick);
            }
            Err(JobError::BadInput(e)) => {
                self.counters.bad_frames += 1;
                self.hold(format!("bad camera frame: {e}"), now, tick);
            }
            Err(JobError::Inference(e)) => {
                self.counters.inference_errors += 1;
                self.fault(format!("inference failed: {e}"), tick);
            }
        }
    }

    /// While planning: submits the newest frame taken after `after` when the worker is idle.
    fn plan(&mut self, now: Instant) {
        let Some(goal) = self.goal.as_ref() else { return };
        let Phase::Planning { after } = goal.phase else { return };
        let fresh = frame_age(&self.frames, now).is_some_and(|a| now - a >= after);
        if self.worker.is_busy() || !has_new_frame(&self.frames) || !fresh {
            return;
        }
        let Some((InFrame { frame, received }, _)) = take_frame(&self.frames) else {
            return;
        };
        let job = Job {
            epoch: goal.epoch,
            instruction: goal.instruction.clone(),
            frame,
            proprio: None,
            step: 0,
            preview: self.s.preview,
            max_image_pixels: self.s.max_image_pixels,
            received,
            worker_wait: self.worker_free.saturating_duration_since(received),
        };
        self.worker.submit(job);
    }

    fn feedback(&self, v: Velocity) -> Option<StepFeedback> {
        let g = self.goal.as_ref()?;
        Some(StepFeedback {
            epoch: g.epoch,
            step: g.decisions,
            latent_ids: self.last.latent_ids.clone(),
            latency_ms: self.last.latency_ms,
            commanded: vec![v.linear, v.angular],
        })
    }

    fn decide(&mut self, action: NavAction, now: Instant, tick: &mut NavTick) {
        let Some(g) = self.goal.as_mut() else { return };
        g.decisions += 1;
        let (decisions, limit) = (g.decisions, g.max_decisions);
        tracing::info!("decision {decisions}: {action:?}");
        self.last_decision = Some(action);
        match profile(action, &self.s.profile) {
            None => {
                tick.ended = self.end(
                    GoalOutcome::Succeeded,
                    ExecuteResult::SUCCEEDED,
                    "the policy chose STOP",
                );
                self.stop(tick);
            }
            Some((v, d)) => {
                g.phase = Phase::Moving { v, until: now + d };
                self.state = NodeState::Running;
                self.repeats.clear();
                tick.command = Some(v);
                tick.feedback = self.feedback(v);
                if limit > 0 && decisions >= limit {
                    // The last motion is cut short: the goal ends with the robot stopped.
                    tick.ended = self.end(
                        GoalOutcome::Succeeded,
                        ExecuteResult::STEP_LIMIT,
                        &format!("decision limit of {limit} reached"),
                    );
                    self.stop(tick);
                }
            }
        }
    }

    /// Waits until the running inference has finished (tests).
    pub fn wait_worker(&mut self, timeout: Duration) -> bool {
        self.worker.wait_ready(timeout)
    }
}

impl ControlCore for NavCore {
    type Command = Velocity;

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    fn state(&self) -> &NodeState {
        &self.state
    }

    fn goal_epoch(&self) -> Option<u64> {
        self.goal.as_ref().map(|g| g.epoch)
    }

    /// Instruction of the running goal.
    fn running_instruction(&self) -> Option<&str> {
        self.goal.as_ref().map(|g| g.instruction.as_str())
    }

    fn start_goal(&mut self, spec: GoalSpec, now: Instant) -> Result<Started<Velocity>, String> {
        let check = || -> Result<(), String> {
            check_instruction(&spec.instruction, self.s.max_instruction_chars)?;
            if !matches!(spec.mode.as_str(), "" | "ensemble") {
                return Err(format!(
                    "mode '{}' is not supported by the navigation node",
                    clip(&spec.mode, MESSAGE_TEXT_CHARS)
                ));
            }
            if let Some(r) = &self.estop {
                return Err(format!("emergency stop is engaged ({r})"));
            }
            if let Some(e) = self.worker.fault(self.s.inference_timeout) {
                return Err(e);
            }
            check_camera(&self.frames, now, self.s.image_timeout)?;
            camera_stale(&self.frames, now, self.s.image_timeout).map_or(Ok(()), Err)
        };
        if let Err(e) = check() {
            self.counters.goals_rejected += 1;
            self.counters.last_error = format!("goal rejected: {e}");
            return Err(e);
        }
        let mut tick = self.new_tick();
        let preempted = self.goal.take().map(|g| Ended {
            epoch: g.epoch,
            status: GoalOutcome::Aborted,
            outcome: ExecuteResult::PREEMPTED,
            steps: g.decisions,
            reason: "preempted by a new goal".into(),
        });
        if preempted.is_some() {
            // The old motion must not run on through the new goal's first inference.
            self.stop(&mut tick);
        }
        self.counters.fault = None;
        self.epoch += 1;
        let limit = match (spec.max_steps, self.s.max_decisions) {
            (0, m) => m,
            (g, 0) => g,
            (g, m) => g.min(m),
        };
        self.goal = Some(Goal {
            epoch: self.epoch,
            instruction: spec.instruction,
            max_decisions: limit,
            deadline: spec.time_limit.map(|d| now + d),
            decisions: 0,
            // The frame that is already there is fine for the first decision.
            phase: Phase::Planning {
                after: now.checked_sub(self.s.image_timeout).unwrap_or(now),
            },
        });
        self.counters.goals_accepted += 1;
        self.state = NodeState::Running;
        Ok(Started {
            epoch: self.epoch,
            preempted,
            tick,
        })
    }

    /// Cancels goal `epoch`: it ends and the base stops.
    fn cancel(&mut self, epoch: u64, _now: Instant) -> NavTick {
        let mut tick = self.new_tick();
        if self.goal_epoch() == Some(epoch) {
            tick.ended = self.end(GoalOutcome::Canceled, ExecuteResult::CANCELED, "canceled");
            self.stop(&mut tick);
        }
        tick
    }

    fn stop_command(&mut self, _now: Instant) -> Option<Velocity> {
        Some(Velocity::ZERO)
    }

    fn frame_inbox(&self) -> FrameInbox {
        std::sync::Arc::clone(&self.frames)
    }

    /// Engaged: the base stops at once and a running goal waits; released: it plans again.
    fn set_estop(&mut self, engaged: Option<&str>, now: Instant) -> NavTick {
        let mut tick = self.new_tick();
        match (engaged, self.estop.is_some()) {
            (Some(r), false) => {
                tracing::warn!("emergency stop engaged: {r}");
                self.counters.holds += 1;
                self.counters.last_error = r.to_string();
                self.stop(&mut tick);
                if let Some(g) = self.goal.as_mut() {
                    g.phase = Phase::Planning { after: now };
                }
            }
            (None, true) => tracing::warn!("emergency stop released"),
            _ => {}
        }
        self.estop = engaged.map(str::to_string);
        self.state = match (&self.estop, &self.goal) {
            (Some(r), _) => NodeState::EStopped(r.clone()),
            (None, Some(_)) => NodeState::Holding("emergency stop released".into()),
            (None, None) => NodeState::Idle,
        };
        tick
    }

    fn set_result_notifier(&mut self, notify: Box<dyn Fn() + Send>) {
        self.worker.set_notifier(notify)
    }

    /// One control step at `now`.
    fn tick(&mut self, now: Instant) -> NavTick {
        let mut tick = self.new_tick();
        self.counters.tick();
        (self.counters.frames_received, self.counters.frames_dropped) = frame_counts(&self.frames);
        let result = self.poll();
        let Some(goal) = self.goal.as_ref() else {
            if self.estop.is_none() {
                self.state = NodeState::Idle;
            }
            tick.command = self.repeats.next(now);
            return tick;
        };
        if goal.deadline.is_some_and(|d| now >= d) {
            tick.ended = self.end(GoalOutcome::Succeeded, ExecuteResult::TIME_LIMIT, "time limit reached");
            self.stop(&mut tick);
            return tick;
        }
        if self.estop.is_some() {
            tick.command = self.repeats.next(now);
            return tick;
        }
        let phase = goal.phase;
        if let Phase::Planning { .. } = phase {
            if let Some(reason) = camera_stale(&self.frames, now, self.s.image_timeout) {
                self.hold(reason, now, &mut tick);
                return tick;
            }
        }
        if let Some(res) = result {
            self.use_result(res, now, &mut tick);
            return tick;
        }
        match phase {
            Phase::Moving { v, until } if now < until => {
                self.state = NodeState::Running;
                tick.command = Some(v);
                tick.feedback = self.feedback(v);
            }
            Phase::Moving { .. } => {
                self.stop(&mut tick);
                if let Some(g) = self.goal.as_mut() {
                    g.phase = Phase::Planning {
                        after: now + self.s.profile.settle,
                    };
                }
            }
            Phase::Planning { .. } => {
                if let NodeState::Holding(_) = self.state {
                    self.state = NodeState::Running;
                }
                self.plan(now);
                tick.command = self.repeats.next(now);
            }
        }
        tick
    }

    /// Between control steps: a decision starts its motion at once, and a fresh frame goes to an
    /// idle worker at once. Nothing happens while a hold condition is pending.
    fn react(&mut self, now: Instant) -> NavTick {
        let mut tick = self.new_tick();
        let Some(goal) = self.goal.as_ref() else { return tick };
        let planning = matches!(goal.phase, Phase::Planning { .. });
        if self.estop.is_some() || (planning && camera_stale(&self.frames, now, self.s.image_timeout).is_some()) {
            return tick; // the next step holds
        }
        if goal.deadline.is_some_and(|d| now >= d) {
            return tick; // the next step ends the goal
        }
        if let Some(res) = self.poll() {
            self.use_result(res, now, &mut tick);
        }
        self.plan(now);
        tick
    }

    /// A stalled or stopped worker is a fault; a camera that goes quiet while planning (on either
    /// clock) holds at once.
    fn supervise(&mut self, now: Instant) -> NavTick {
        let mut tick = self.new_tick();
        let Some(goal) = self.goal.as_ref() else { return tick };
        let planning = matches!(goal.phase, Phase::Planning { .. });
        if let Some(e) = self.worker.fault(self.s.inference_timeout) {
            self.counters.inference_errors += 1;
            self.fault(e, &mut tick);
        } else if planning && self.estop.is_none() {
            if let Some(r) = camera_stale(&self.frames, now, self.s.image_timeout) {
                self.hold(r, now, &mut tick);
            }
        }
        tick
    }
}

#[cfg(test)]
#[path = "nav_tests.rs"]
mod tests;
