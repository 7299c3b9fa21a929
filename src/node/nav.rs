//! The ROS-agnostic navigation controller: R2R decisions (the session's temporal ensemble over
//! discrete-action chunks, as the reference) become timed velocity profiles: forward `forward_m` at
//! `linear_speed`, turns of `turn_deg` at `angular_speed_deg`; STOP ends the goal as succeeded.
//! The next decision uses a frame that arrived after the motion ended and the robot settled.
use std::time::{Duration, Instant};

use crate::ros::action::GoalOutcome;
use crate::ros::msgs::univla_msgs::ExecuteResult;
use crate::runtime::postprocess::{Action, NavAction};
use crate::runtime::preprocess::RgbImage;

use super::arm::{Ended, GoalSpec, NodeState, StepFeedback};
use super::config::NavProfile;
use super::diagnostics::Counters;
use super::input::CameraFrame;
use super::slot::LatestSlot;
use super::worker::{InferenceWorker, Job, JobError};

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

/// Everything one control step produced.
#[derive(Clone, Debug, Default)]
pub struct NavTick {
    /// Velocity to publish this step (`Some(ZERO)` to stop).
    pub velocity: Option<Velocity>,
    pub actuate: bool,
    pub feedback: Option<StepFeedback>,
    pub ended: Option<Ended>,
    pub latent_ids: Option<Vec<i64>>,
    pub preview: Option<RgbImage>,
    /// The decision taken this step.
    pub decision: Option<NavAction>,
}

/// The navigation controller.
pub struct NavCore {
    s: NavSettings,
    worker: InferenceWorker,
    frames: LatestSlot<CameraFrame>,
    estop: bool,
    goal: Option<Goal>,
    epoch: u64,
    state: NodeState,
    last_latent: Vec<i64>,
    last_latency_ms: f32,
    pub counters: Counters,
}

impl NavCore {
    pub fn new(s: NavSettings, worker: InferenceWorker) -> Self {
        Self {
            s,
            worker,
            frames: LatestSlot::new(),
            estop: false,
            goal: None,
            epoch: 0,
            state: NodeState::Idle,
            last_latent: Vec::new(),
            last_latency_ms: 0.0,
            counters: Counters::default(),
        }
    }

    pub fn state(&self) -> &NodeState {
        &self.state
    }

    pub fn goal_epoch(&self) -> Option<u64> {
        self.goal.as_ref().map(|g| g.epoch)
    }

    /// Instruction of the running goal.
    pub fn running_instruction(&self) -> Option<&str> {
        self.goal.as_ref().map(|g| g.instruction.as_str())
    }

    pub fn on_image(&mut self, frame: CameraFrame, now: Instant) {
        self.frames.put(frame, now);
        self.counters.frames_received = self.frames.received();
        self.counters.frames_dropped = self.frames.dropped();
    }

    pub fn set_estop(&mut self, engaged: bool) {
        self.estop = engaged;
    }

    pub fn start_goal(&mut self, spec: GoalSpec, now: Instant) -> Result<(u64, Option<Ended>), String> {
        let check = || -> Result<(), String> {
            if spec.instruction.trim().is_empty() {
                return Err("empty instruction".into());
            }
            let chars = spec.instruction.chars().count();
            if chars > self.s.max_instruction_chars {
                return Err(format!(
                    "instruction has {chars} characters, at most {} are accepted",
                    self.s.max_instruction_chars
                ));
            }
            if !matches!(spec.mode.as_str(), "" | "ensemble") {
                return Err(format!("mode '{}' is not supported by the navigation node", spec.mode));
            }
            if self.estop {
                return Err("emergency stop is engaged".into());
            }
            match self.frames.age(now) {
                None => Err("no camera image received yet".into()),
                Some(a) if a > self.s.image_timeout => {
                    Err(format!("camera image is stale ({:.2} s old)", a.as_secs_f64()))
                }
                _ => Ok(()),
            }
        };
        if let Err(e) = check() {
            self.counters.goals_rejected += 1;
            self.counters.last_error = format!("goal rejected: {e}");
            return Err(e);
        }
        let preempted = self.goal.take().map(|g| Ended {
            epoch: g.epoch,
            status: GoalOutcome::Aborted,
            outcome: ExecuteResult::PREEMPTED,
            steps: g.decisions,
            reason: "preempted by a new goal".into(),
        });
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
        Ok((self.epoch, preempted))
    }

    fn end(&mut self, status: GoalOutcome, outcome: u8, reason: &str) -> Option<Ended> {
        let g = self.goal.take()?;
        self.state = NodeState::Idle;
        if status == GoalOutcome::Aborted {
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

    /// Cancels goal `epoch`; the caller publishes a zero velocity at once.
    pub fn cancel(&mut self, epoch: u64) -> Option<Ended> {
        if self.goal_epoch() != Some(epoch) {
            return None;
        }
        self.end(GoalOutcome::Canceled, ExecuteResult::CANCELED, "canceled")
    }

    fn hold(&mut self, reason: String, now: Instant, tick: &mut NavTick) {
        if let Some(g) = self.goal.as_mut() {
            // Motion is abandoned; re-plan from a frame taken after the hold.
            g.phase = Phase::Planning { after: now };
        }
        if self.state != NodeState::Holding(reason.clone()) {
            if !matches!(self.state, NodeState::Holding(_)) {
                self.counters.holds += 1;
                tick.velocity = Some(Velocity::ZERO);
            }
            self.counters.last_error = reason.clone();
            self.state = NodeState::Holding(reason);
        }
    }

    /// One control step at `now`.
    pub fn tick(&mut self, now: Instant) -> NavTick {
        let mut tick = NavTick {
            actuate: !self.s.dry_run,
            ..Default::default()
        };
        self.counters.tick();
        let result = self.worker.poll();
        let Some(goal) = self.goal.as_ref() else {
            self.state = NodeState::Idle;
            return tick;
        };
        let epoch = goal.epoch;
        if goal.deadline.is_some_and(|d| now >= d) {
            tick.ended = self.end(GoalOutcome::Succeeded, ExecuteResult::TIME_LIMIT, "time limit reached");
            tick.velocity = Some(Velocity::ZERO);
            return tick;
        }
        if self.estop {
            self.hold("emergency stop".into(), now, &mut tick);
            return tick;
        }
        let phase = goal.phase;
        if let Phase::Planning { .. } = phase {
            if let Some(age) = self.frames.age(now).filter(|a| *a > self.s.image_timeout) {
                self.hold(
                    format!("camera stale ({:.2} s without an image)", age.as_secs_f64()),
                    now,
                    &mut tick,
                );
                return tick;
            }
        }
        if let Some(res) = result.filter(|r| r.epoch == epoch) {
            match res.result {
                Ok(inf) => {
                    self.counters.record_latency(res.latency);
                    self.last_latency_ms = (res.latency.as_secs_f64() * 1e3) as f32;
                    self.last_latent = inf.latent_ids.clone();
                    tick.latent_ids = Some(inf.latent_ids);
                    tick.preview = inf.preview;
                    let Action::Nav(action) = inf.action else {
                        tick.ended = self.end(
                            GoalOutcome::Aborted,
                            ExecuteResult::ABORTED,
                            "the head is not an R2R head",
                        );
                        tick.velocity = Some(Velocity::ZERO);
                        return tick;
                    };
                    tick.decision = Some(action);
                    return self.decide(action, now, tick);
                }
                Err(JobError::BadInput(e)) => {
                    self.counters.bad_frames += 1;
                    self.hold(format!("bad camera frame: {e}"), now, &mut tick);
                    return tick;
                }
                Err(JobError::Inference(e)) => {
                    self.counters.inference_errors += 1;
                    tick.ended = self.end(
                        GoalOutcome::Aborted,
                        ExecuteResult::ABORTED,
                        &format!("inference failed: {e}"),
                    );
                    tick.velocity = Some(Velocity::ZERO);
                    return tick;
                }
            }
        }
        match phase {
            Phase::Moving { v, until } if now < until => {
                self.state = NodeState::Running;
                tick.velocity = Some(v);
                tick.feedback = self.feedback(v);
            }
            Phase::Moving { .. } => {
                tick.velocity = Some(Velocity::ZERO);
                if let Some(g) = self.goal.as_mut() {
                    g.phase = Phase::Planning {
                        after: now + self.s.profile.settle,
                    };
                }
            }
            Phase::Planning { after } => {
                let fresh = self.frames.age(now).is_some_and(|a| now - a >= after);
                if !self.worker.is_busy() && self.frames.has_new() && fresh {
                    if let Some(frame) = self.frames.take() {
                        let instruction = self.goal.as_ref().map(|g| g.instruction.clone()).unwrap_or_default();
                        let job = Job {
                            epoch,
                            instruction,
                            frame,
                            proprio: None,
                            step: 0,
                            preview: self.s.preview,
                        };
                        self.worker.submit(job);
                    }
                }
            }
        }
        tick
    }

    fn feedback(&self, v: Velocity) -> Option<StepFeedback> {
        let g = self.goal.as_ref()?;
        Some(StepFeedback {
            epoch: g.epoch,
            step: g.decisions,
            latent_ids: self.last_latent.clone(),
            latency_ms: self.last_latency_ms,
            commanded: vec![v.linear, v.angular],
        })
    }

    fn decide(&mut self, action: NavAction, now: Instant, mut tick: NavTick) -> NavTick {
        let Some(g) = self.goal.as_mut() else { return tick };
        g.decisions += 1;
        let (decisions, limit) = (g.decisions, g.max_decisions);
        match profile(action, &self.s.profile) {
            None => {
                tick.ended = self.end(
                    GoalOutcome::Succeeded,
                    ExecuteResult::SUCCEEDED,
                    "the policy chose STOP",
                );
                tick.velocity = Some(Velocity::ZERO);
            }
            Some((v, d)) => {
                g.phase = Phase::Moving { v, until: now + d };
                self.state = NodeState::Running;
                tick.velocity = Some(v);
                tick.feedback = self.feedback(v);
                if limit > 0 && decisions >= limit {
                    // The last motion is cut short: the goal ends with the robot stopped.
                    tick.ended = self.end(
                        GoalOutcome::Succeeded,
                        ExecuteResult::STEP_LIMIT,
                        &format!("decision limit of {limit} reached"),
                    );
                    tick.velocity = Some(Velocity::ZERO);
                }
            }
        }
        tick
    }

    /// Waits until the running inference has finished (tests).
    pub fn wait_worker(&mut self, timeout: Duration) -> bool {
        self.worker.wait_ready(timeout)
    }
}

#[cfg(test)]
#[path = "nav_tests.rs"]
mod tests;
