//! The ROS-agnostic arm controller: goal state machine, latest-frame inference scheduling,
//! time-aligned chunk execution and the safety gate. The ROS layer feeds it messages and the clock
//! and publishes what each [`ArmCore::tick`] returns.
use std::time::{Duration, Instant};

use nalgebra::Isometry3;

use crate::ros::action::GoalOutcome;
use crate::ros::msgs::sensor_msgs::JointState;
use crate::ros::msgs::univla_msgs::ExecuteResult;
use crate::runtime::postprocess::{Action, PostProcessor};

use super::core::{
    camera_stale, check_camera, check_instruction, frame_counts, has_new_frame, take_frame, ControlCore, FrameInbox,
    FrameTrace, InFrame, LastInference,
};
pub use super::core::{Ended, GoalSpec, NodeState, StepFeedback};
use super::diagnostics::Counters;
use super::eef::{pose_from_xyz_rpy, position, EefDelta};
use super::input::{CameraFrame, JointCache};
use super::safety::{JointLimits, SafetyError, Workspace};
use super::scheduler::{Alignment, ChunkMode, ChunkScheduler};
use super::worker::{InferenceWorker, Job, JobError};

/// A pose target with the gripper command.
#[derive(Clone, Debug, PartialEq)]
pub struct PoseTarget {
    pub poses: Vec<Isometry3<f64>>,
    pub gripper: f64,
}

/// What goes to the actuators this step.
#[derive(Clone, Debug, PartialEq)]
pub enum ArmCommand {
    /// Joint positions, one per upcoming control step (the first is this step's target).
    Joints(Vec<Vec<f64>>),
    Pose(PoseTarget),
    /// Stop moving: hold the measured joint positions (or an empty trajectory when unknown).
    Hold(Option<Vec<f64>>),
}

/// What one control step (or reaction) of the arm produced.
pub type Tick = super::core::Tick<ArmCommand>;

/// The arm's action space with its safety gate.
#[derive(Clone, Debug)]
pub enum ArmKind {
    Joints(JointLimits),
    Eef {
        workspace: Workspace,
        initial: [f64; 6],
        translation_scale: f64,
        rotation_scale: f64,
    },
}

/// Fixed settings of the core.
#[derive(Clone, Debug)]
pub struct ArmSettings {
    pub kind: ArmKind,
    pub joint_names: Vec<String>,
    /// Joint states must be fresh to run (joint control or proprio).
    pub require_joints: bool,
    pub needs_proprio: bool,
    pub period: Duration,
    pub image_timeout: Duration,
    pub joint_timeout: Duration,
    pub max_instruction_chars: usize,
    pub dry_run: bool,
    pub chunk_mode: ChunkMode,
    /// Where chunk rows start (measured latency or the reference's convention).
    pub alignment: Alignment,
    pub action_dim: usize,
    /// Ensemble size when the mode says 0.
    pub default_ensemble: usize,
    pub preview: bool,
}

struct Goal {
    epoch: u64,
    instruction: String,
    max_steps: u32,
    deadline: Option<Instant>,
    steps: u32,
}

/// The arm controller.
pub struct ArmCore {
    s: ArmSettings,
    post: PostProcessor,
    worker: InferenceWorker,
    frames: FrameInbox,
    /// Wall time the worker last became free (to tell its queueing from our overhead).
    worker_free: Instant,
    /// Trace of the newest inference until a command computed from it goes out.
    pending_trace: Option<FrameTrace>,
    /// When the last control period started.
    last_tick: Option<Instant>,
    joints: JointCache,
    estop: bool,
    goal: Option<Goal>,
    epoch: u64,
    scheduler: ChunkScheduler,
    step: u64,
    state: NodeState,
    pose: Isometry3<f64>,
    last: LastInference,
    pub counters: Counters,
}

fn ended(goal: &Goal, status: GoalOutcome, outcome: u8, reason: impl Into<String>) -> Ended {
    Ended {
        epoch: goal.epoch,
        status,
        outcome,
        steps: goal.steps,
        reason: reason.into(),
    }
}

impl ArmCore {
    pub fn new(s: ArmSettings, post: PostProcessor, worker: InferenceWorker) -> Self {
        let scheduler = ChunkScheduler::new(s.chunk_mode, s.action_dim, s.default_ensemble).with_alignment(s.alignment);
        let pose = match &s.kind {
            ArmKind::Eef { initial, .. } => pose_from_xyz_rpy(initial),
            ArmKind::Joints(_) => Isometry3::identity(),
        };
        Self {
            joints: JointCache::new(s.joint_names.clone()),
            s,
            post,
            worker,
            frames: Default::default(),
            worker_free: Instant::now(),
            pending_trace: None,
            last_tick: None,
            estop: false,
            goal: None,
            epoch: 0,
            scheduler,
            step: 0,
            state: NodeState::Idle,
            pose,
            last: LastInference::default(),
            counters: Counters::default(),
        }
    }

    /// A camera frame arrived (the driver's input thread puts into [`Self::frame_inbox`] instead).
    pub fn on_image(&mut self, frame: CameraFrame, now: Instant) {
        super::core::put_frame(&self.frames, frame, now);
    }

    /// Why a goal cannot start now, if it cannot.
    fn readiness(&self, spec: &GoalSpec, now: Instant) -> Result<Option<ChunkMode>, String> {
        check_instruction(&spec.instruction, self.s.max_instruction_chars)?;
        let mode = match spec.mode.as_str() {
            "" => None,
            "ensemble" => Some(ChunkMode::Ensemble { size: 0 }),
            "open_loop" => Some(ChunkMode::OpenLoop { replan_every: None }),
            m => return Err(format!("unknown mode '{m}' (expected '', 'ensemble' or 'open_loop')")),
        };
        if self.estop {
            return Err("emergency stop is engaged".into());
        }
        check_camera(&self.frames, now, self.s.image_timeout)?;
        if self.s.require_joints {
            let stale = self.joints.stale_joints(now, self.s.joint_timeout);
            if !stale.is_empty() {
                return Err(format!("no fresh joint state for {stale:?}"));
            }
        }
        Ok(mode)
    }

    fn finish(&mut self, g: Goal, status: GoalOutcome, outcome: u8, reason: &str) -> Ended {
        self.scheduler.reset();
        self.state = NodeState::Idle;
        if status == GoalOutcome::Aborted {
            self.counters.last_error = reason.to_string();
        }
        ended(&g, status, outcome, reason)
    }

    fn abort(&mut self, reason: String, now: Instant, tick: &mut Tick) {
        tracing::error!("aborting goal: {reason}");
        if let Some(g) = self.goal.take() {
            tick.ended = Some(self.finish(g, GoalOutcome::Aborted, ExecuteResult::ABORTED, &reason));
        }
        tick.command = Some(self.hold_command(now));
    }

    /// Enters a hold (the hold command goes out on the transition only).
    fn hold(&mut self, reason: String, now: Instant, tick: &mut Tick) {
        self.scheduler.reset();
        if self.state != NodeState::Holding(reason.clone()) {
            if !matches!(self.state, NodeState::Holding(_)) {
                self.counters.holds += 1;
                tick.command = Some(self.hold_command(now));
            }
            tracing::warn!("holding: {reason}");
            self.counters.last_error = reason.clone();
            self.state = NodeState::Holding(reason);
        }
    }

    fn latency_steps(&self) -> u64 {
        let p = self.counters.latency_p50().unwrap_or_default().as_secs_f64();
        (p / self.s.period.as_secs_f64()).ceil() as u64
    }

    /// Uses a finished inference; true if a new chunk was scheduled.
    fn collect_inference(&mut self, now: Instant, tick: &mut Tick) -> bool {
        let Some(res) = self.worker.poll() else { return false };
        self.worker_free = Instant::now();
        let trace = FrameTrace::of(&res, self.worker_free);
        if Some(res.epoch) != self.goal_epoch() {
            return false; // a result for a goal that ended
        }
        match res.result {
            Ok(inf) => {
                self.last
                    .note(res.latency, inf.latent_ids, inf.preview, &mut self.counters, tick);
                match self.scheduler.insert(res.step, inf.chunk, self.step) {
                    Ok(late) => {
                        self.counters.late_steps += late as u64;
                        self.pending_trace = Some(trace);
                        return true;
                    }
                    Err(e) => self.abort(format!("model output: {e}"), now, tick),
                }
            }
            Err(JobError::BadInput(e)) => {
                self.counters.bad_frames += 1;
                self.hold(format!("bad camera frame: {e}"), now, tick);
            }
            Err(JobError::Inference(e)) => {
                self.counters.inference_errors += 1;
                self.abort(format!("inference failed: {e}"), now, tick);
            }
        }
        false
    }

    /// Turns the planned rows into a checked command, or says why not. `commit` advances the
    /// integrated end-effector pose and counts clamps (a control step); without it the command is
    /// a preview of the coming step.
    fn command(
        &mut self,
        rows: &[Vec<f64>],
        now: Instant,
        commit: bool,
    ) -> Result<(ArmCommand, Vec<f64>), SafetyError> {
        let actions: Vec<Action> = rows
            .iter()
            .map(|r| self.post.apply(r))
            .collect::<Result<_, _>>()
            .map_err(|e| SafetyError::NonFinite {
                what: format!("post-processing ({e})"),
            })?;
        match &self.s.kind {
            ArmKind::Joints(limits) => {
                let points: Vec<Vec<f64>> = actions
                    .iter()
                    .map(|a| match a {
                        Action::Arm(v) => Ok(v.clone()),
                        other => Err(SafetyError::OutOfRange {
                            what: format!("action kind {other:?}"),
                            value: 0.0,
                            min: 0.0,
                            max: 0.0,
                        }),
                    })
                    .collect::<Result<_, _>>()?;
                let current = self.joints.positions(now, self.s.joint_timeout);
                let checked = limits.check(&points, current.as_deref(), self.s.period.as_secs_f64())?;
                if commit {
                    self.counters.clamp_events += u64::from(checked.clamps);
                }
                let first = checked.points[0].clone();
                Ok((ArmCommand::Joints(checked.points), first))
            }
            ArmKind::Eef {
                workspace,
                translation_scale,
                rotation_scale,
                ..
            } => {
                let mut pose = self.pose;
                let mut poses = Vec::with_capacity(actions.len());
                let mut gripper = 0.0;
                let mut clamps = 0;
                for (k, a) in actions.iter().enumerate() {
                    let d = EefDelta::from_action(a, *translation_scale, *rotation_scale).ok_or_else(|| {
                        SafetyError::NonFinite {
                            what: format!("end-effector action {a:?}"),
                        }
                    })?;
                    let mut next = d.apply(&pose);
                    let (t, c) = workspace.check(position(&next), position(&pose))?;
                    clamps += c;
                    next.translation.vector = t.into();
                    if k == 0 {
                        gripper = d.gripper;
                    }
                    poses.push(next);
                    pose = next;
                }
                let first = poses[0];
                if commit {
                    self.pose = first;
                    self.counters.clamp_events += u64::from(clamps);
                }
                let q = first.rotation;
                let commanded = vec![
                    first.translation.x,
                    first.translation.y,
                    first.translation.z,
                    q.i,
                    q.j,
                    q.k,
                    q.w,
                    gripper,
                ];
                Ok((ArmCommand::Pose(PoseTarget { poses, gripper }), commanded))
            }
        }
    }

    /// Why the robot must hold now (e-stop, stale camera or joints), if it must.
    fn hold_reason(&self, now: Instant) -> Option<String> {
        if self.estop {
            return Some("emergency stop".into());
        }
        if let Some(r) = camera_stale(&self.frames, now, self.s.image_timeout) {
            return Some(r);
        }
        if self.s.require_joints {
            let stale = self.joints.stale_joints(now, self.s.joint_timeout);
            if !stale.is_empty() {
                return Some(format!("joint states stale for {stale:?}"));
            }
        }
        None
    }

    /// Submits the newest frame when the worker is idle and the scheduler wants a plan for `step`.
    fn plan(&mut self, step: u64, now: Instant) {
        if self.worker.is_busy()
            || !has_new_frame(&self.frames)
            || !self.scheduler.wants_plan(step, self.latency_steps())
        {
            return;
        }
        let Some(goal) = self.goal.as_ref() else { return };
        let Some((InFrame { frame, received }, _)) = take_frame(&self.frames) else {
            return;
        };
        let proprio = if self.s.needs_proprio {
            self.joints.positions(now, self.s.joint_timeout)
        } else {
            None
        };
        let job = Job {
            epoch: goal.epoch,
            instruction: goal.instruction.clone(),
            frame,
            proprio,
            step,
            preview: self.s.preview,
            received,
            worker_wait: self.worker_free.saturating_duration_since(received),
        };
        if !self.worker.submit(job) {
            tracing::debug!("worker busy, frame dropped");
        }
    }

    /// Waits until the running inference has finished (tests, benchmarks); its result is used by
    /// the next tick.
    pub fn wait_worker(&mut self, timeout: Duration) -> bool {
        self.worker.wait_ready(timeout)
    }

    /// The current control step index.
    pub fn step_index(&self) -> u64 {
        self.step
    }
}

impl ControlCore for ArmCore {
    type Command = ArmCommand;

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    fn state(&self) -> &NodeState {
        &self.state
    }

    /// Epoch of the running goal.
    fn goal_epoch(&self) -> Option<u64> {
        self.goal.as_ref().map(|g| g.epoch)
    }

    /// Instruction of the running goal.
    fn running_instruction(&self) -> Option<&str> {
        self.goal.as_ref().map(|g| g.instruction.as_str())
    }

    /// Starts a goal (preempting the running one) or says why not.
    fn start_goal(&mut self, spec: GoalSpec, now: Instant) -> Result<(u64, Option<Ended>), String> {
        let mode = match self.readiness(&spec, now) {
            Ok(m) => m,
            Err(e) => {
                self.counters.goals_rejected += 1;
                self.counters.last_error = format!("goal rejected: {e}");
                return Err(e);
            }
        };
        let preempted = self.goal.take().map(|g| {
            ended(
                &g,
                GoalOutcome::Aborted,
                ExecuteResult::PREEMPTED,
                "preempted by a new goal",
            )
        });
        self.epoch += 1;
        let mode = mode.unwrap_or(self.s.chunk_mode);
        self.scheduler =
            ChunkScheduler::new(mode, self.s.action_dim, self.s.default_ensemble).with_alignment(self.s.alignment);
        self.pending_trace = None;
        // End-effector targets keep integrating from the last commanded pose (the initial pose
        // until the first target): a new goal never makes the arm jump.
        self.goal = Some(Goal {
            epoch: self.epoch,
            instruction: spec.instruction,
            max_steps: spec.max_steps,
            deadline: spec.time_limit.map(|d| now + d),
            steps: 0,
        });
        self.counters.goals_accepted += 1;
        self.state = NodeState::Running;
        Ok((self.epoch, preempted))
    }

    /// Cancels the goal `epoch`; the caller sends [`Self::hold_command`] at once.
    fn cancel(&mut self, epoch: u64) -> Option<Ended> {
        if self.goal_epoch() != Some(epoch) {
            return None;
        }
        self.goal
            .take()
            .map(|g| self.finish(g, GoalOutcome::Canceled, ExecuteResult::CANCELED, "canceled"))
    }

    /// The hold command for the current joint state.
    fn hold_command(&self, now: Instant) -> ArmCommand {
        ArmCommand::Hold(self.joints.positions(now, self.s.joint_timeout))
    }

    fn frame_inbox(&self) -> FrameInbox {
        std::sync::Arc::clone(&self.frames)
    }

    /// Joint states with unknown names or malformed arrays are counted and reported.
    fn on_joint_state(&mut self, js: &JointState, now: Instant) -> Result<(), String> {
        match self.joints.update(js, now) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.counters.bad_joint_states += 1;
                self.counters.last_error = e.clone();
                Err(e)
            }
        }
    }

    fn set_estop(&mut self, engaged: bool) {
        if engaged != self.estop {
            tracing::warn!("emergency stop {}", if engaged { "engaged" } else { "released" });
        }
        self.estop = engaged;
    }

    fn set_result_notifier(&mut self, notify: Box<dyn Fn() + Send>) {
        self.worker.set_notifier(notify)
    }

    /// One control step at `now`.
    fn tick(&mut self, now: Instant) -> Tick {
        let mut tick = Tick {
            actuate: !self.s.dry_run,
            ..Default::default()
        };
        self.counters.tick();
        (self.counters.frames_received, self.counters.frames_dropped) = frame_counts(&self.frames);
        self.last_tick = Some(now);
        self.collect_inference(now, &mut tick);
        let step = self.step;
        self.step += 1;
        let Some(goal) = self.goal.as_ref() else {
            self.state = NodeState::Idle;
            return tick;
        };
        let (epoch, steps) = (goal.epoch, goal.steps);
        if goal.max_steps > 0 && steps >= goal.max_steps {
            if let Some(g) = self.goal.take() {
                let reason = format!("step limit of {} reached", g.max_steps);
                tick.ended = Some(self.finish(g, GoalOutcome::Succeeded, ExecuteResult::STEP_LIMIT, &reason));
            }
            tick.command = Some(self.hold_command(now));
            return tick;
        }
        if goal.deadline.is_some_and(|d| now >= d) {
            if let Some(g) = self.goal.take() {
                tick.ended = Some(self.finish(
                    g,
                    GoalOutcome::Succeeded,
                    ExecuteResult::TIME_LIMIT,
                    "time limit reached",
                ));
            }
            tick.command = Some(self.hold_command(now));
            return tick;
        }
        if let Some(reason) = self.hold_reason(now) {
            self.hold(reason, now, &mut tick);
            return tick;
        }
        self.plan(step, now);
        self.scheduler.prune(step);
        let rows = self.scheduler.horizon(step);
        if rows.is_empty() {
            // Planning: nothing to execute yet (the robot keeps its last command).
            if let NodeState::Holding(_) = self.state {
                return tick;
            }
            self.state = NodeState::Running;
            return tick;
        }
        match self.command(&rows, now, true) {
            Ok((cmd, commanded)) => {
                self.state = NodeState::Running;
                tick.command = Some(cmd);
                tick.trace = self.pending_trace.take();
                if let Some(g) = self.goal.as_mut() {
                    g.steps += 1;
                }
                tick.feedback = Some(StepFeedback {
                    epoch,
                    step: steps + 1,
                    latent_ids: self.last.latent_ids.clone(),
                    latency_ms: self.last.latency_ms,
                    commanded,
                });
            }
            Err(e) if e.aborts_goal() => self.abort(e.to_string(), now, &mut tick),
            Err(e) => {
                self.counters.refusals += 1;
                self.hold(e.to_string(), now, &mut tick);
            }
        }
        tick
    }

    /// Between control steps: submits a new frame to an idle worker at once, and sends the plan
    /// of a chunk that just arrived as a joint trajectory stamped to start at the next step (a
    /// `joint_trajectory_controller` splices it then). Pose targets are untimed, so they wait for
    /// the step. Nothing is sent while a hold condition is pending; the next step enters the hold.
    fn react(&mut self, now: Instant) -> Tick {
        let mut tick = Tick {
            actuate: !self.s.dry_run,
            ..Default::default()
        };
        let fresh = self.collect_inference(now, &mut tick);
        if tick.ended.is_some() || self.goal.is_none() || self.hold_reason(now).is_some() {
            return tick;
        }
        self.plan(self.step, now);
        if matches!(self.state, NodeState::Holding(_)) {
            return tick; // the next step resumes
        }
        let Some(last) = self.last_tick else { return tick };
        if !fresh || !matches!(self.s.kind, ArmKind::Joints(_)) {
            return tick;
        }
        let rows = self.scheduler.horizon(self.step);
        if rows.is_empty() {
            return tick;
        }
        // A refused or invalid plan is left to the next step, which holds or aborts.
        if let Ok((cmd, _)) = self.command(&rows, now, false) {
            tick.command = Some(cmd);
            tick.starts_at = Some(last + self.s.period);
            tick.trace = self.pending_trace.take();
        }
        tick
    }
}

#[cfg(test)]
#[path = "arm_tests.rs"]
mod tests;
