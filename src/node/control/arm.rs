//! The ROS-agnostic arm controller: an explicit goal state machine ([`Mode`]: idle / running /
//! holding / e-stopped), latest-frame inference scheduling, time-aligned chunk execution and the
//! safety gate. The ROS layer feeds it messages and the clock and publishes what each call
//! returns; every transition that stops the arm returns the stop ([`super::stop`]).
use std::time::{Duration, Instant};

use nalgebra::Isometry3;

use crate::ros::action::GoalOutcome;
use crate::ros::msgs::sensor_msgs::JointState;
use crate::ros::msgs::univla_msgs::ExecuteResult;
use crate::runtime::postprocess::{Action, PostProcessor};

use crate::node::control::core::{
    camera_stale, check_camera, check_instruction, clip, frame_counts, has_new_frame, take_frame, ControlCore,
    FrameInbox, FrameTrace, InFrame, LastInference, Started, MESSAGE_TEXT_CHARS,
};
pub use crate::node::control::core::{Ended, GoalSpec, NodeState, StepFeedback};
use crate::node::control::eef::{pose_from_xyz_rpy, position, EefDelta};
use crate::node::control::safety::{JointLimits, SafetyError, Workspace};
use crate::node::control::scheduler::{Alignment, ChunkMode, ChunkScheduler};
use crate::node::control::stop::{hold_position, hold_settle, HoldSource, Repeater};
use crate::node::diagnostics::Counters;
use crate::node::input::{CameraFrame, JointCache};
use crate::node::wiring::worker::{InferenceWorker, Job, JobError};

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
    /// Stop moving: hold these joint positions (see [`super::stop`]).
    Hold(Vec<f64>),
}

/// What one control step (or reaction) of the arm produced.
pub type Tick = crate::node::control::core::Tick<ArmCommand>;

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
    /// An inference running longer than this is a fault (zero: no limit).
    pub inference_timeout: Duration,
    /// Largest camera image decoded, in pixels (`max_image_pixels`).
    pub max_image_pixels: u64,
}

struct Goal {
    epoch: u64,
    instruction: String,
    max_steps: u32,
    deadline: Option<Instant>,
    steps: u32,
}

/// The goal state machine. Every transition is a method of [`ArmCore`] that returns what to send.
enum Mode {
    Idle,
    Running(Goal),
    /// A hold condition (stale input, refused command, bad frame); the goal resumes when it clears.
    Holding(Goal, String),
    /// The e-stop is engaged: the arm holds and goals are refused; a goal that was running resumes
    /// when it is released.
    EStopped {
        goal: Option<Goal>,
        reason: String,
    },
}

impl Mode {
    fn goal(&self) -> Option<&Goal> {
        match self {
            Mode::Running(g) | Mode::Holding(g, _) => Some(g),
            Mode::EStopped { goal, .. } => goal.as_ref(),
            Mode::Idle => None,
        }
    }

    fn goal_mut(&mut self) -> Option<&mut Goal> {
        match self {
            Mode::Running(g) | Mode::Holding(g, _) => Some(g),
            Mode::EStopped { goal, .. } => goal.as_mut(),
            Mode::Idle => None,
        }
    }

    /// The goal that drives the arm now (not while e-stopped).
    fn active(&self) -> Option<&Goal> {
        match self {
            Mode::Running(g) | Mode::Holding(g, _) => Some(g),
            _ => None,
        }
    }

    fn take_goal(&mut self) -> Option<Goal> {
        match std::mem::replace(self, Mode::Idle) {
            Mode::Running(g) | Mode::Holding(g, _) => Some(g),
            Mode::EStopped { goal, reason } => {
                *self = Mode::EStopped { goal: None, reason };
                goal
            }
            Mode::Idle => None,
        }
    }

    fn state(&self) -> NodeState {
        match self {
            Mode::Idle => NodeState::Idle,
            Mode::Running(_) => NodeState::Running,
            Mode::Holding(_, r) => NodeState::Holding(r.clone()),
            Mode::EStopped { reason, .. } => NodeState::EStopped(reason.clone()),
        }
    }
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
    /// Wall time of the last valid joint state (the watchdog a stalled `/clock` cannot stop).
    joints_wall: Option<Instant>,
    mode: Mode,
    epoch: u64,
    scheduler: ChunkScheduler,
    step: u64,
    /// Derived from `mode` on every transition.
    state: NodeState,
    pose: Isometry3<f64>,
    /// First point of the last joint trajectory and the last pose target sent (what a hold
    /// falls back on, and what a pose hold sends again).
    last_joints: Option<Vec<f64>>,
    last_pose: Option<PoseTarget>,
    /// The step whose trajectory `react` already sent (the step sends no second one).
    sent_for_step: Option<u64>,
    repeats: Repeater<ArmCommand>,
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
        // A joint hold is repeated once the previous one has settled (see `Repeater`).
        let repeats = Repeater::new(2 * hold_settle(s.period));
        Self {
            joints: JointCache::new(s.joint_names.clone()),
            joints_wall: None,
            s,
            post,
            worker,
            frames: Default::default(),
            worker_free: Instant::now(),
            pending_trace: None,
            last_tick: None,
            mode: Mode::Idle,
            epoch: 0,
            scheduler,
            step: 0,
            state: NodeState::Idle,
            pose,
            last_joints: None,
            last_pose: None,
            sent_for_step: None,
            repeats,
            last: LastInference::default(),
            counters: Counters::default(),
        }
    }

    /// A camera frame arrived (the driver's input thread puts into [`Self::frame_inbox`] instead).
    pub fn on_image(&mut self, frame: CameraFrame, now: Instant) {
        crate::node::control::core::put_frame(&self.frames, frame, now);
    }

    /// Why a goal cannot start now, if it cannot.
    fn readiness(&self, spec: &GoalSpec, now: Instant) -> Result<Option<ChunkMode>, String> {
        check_instruction(&spec.instruction, self.s.max_instruction_chars)?;
        let mode = match spec.mode.as_str() {
            "" => None,
            "ensemble" => Some(ChunkMode::Ensemble { size: 0 }),
            "open_loop" => Some(ChunkMode::OpenLoop { replan_every: None }),
            m => {
                return Err(format!(
                    "unknown mode '{}' (expected '', 'ensemble' or 'open_loop')",
                    clip(m, MESSAGE_TEXT_CHARS)
                ))
            }
        };
        if let Mode::EStopped { reason, .. } = &self.mode {
            return Err(format!("emergency stop is engaged ({reason})"));
        }
        if let Some(e) = self.worker.fault(self.s.inference_timeout) {
            return Err(e);
        }
        check_camera(&self.frames, now, self.s.image_timeout)?;
        if let Some(r) = camera_stale(&self.frames, now, self.s.image_timeout) {
            return Err(r);
        }
        if self.s.require_joints {
            let stale = self.joints.stale_joints(now, self.s.joint_timeout);
            if !stale.is_empty() {
                return Err(format!("no fresh joint state for {stale:?}"));
            }
        }
        // A joint-space hold needs a position to hold (measured, or known from what was sent).
        if matches!(self.s.kind, ArmKind::Joints(_)) && self.hold_command(now).is_none() {
            return Err("no joint position is known to hold the arm at".into());
        }
        Ok(mode)
    }

    /// The stop for the arm now: a joint hold (measured, else last commanded position) or the
    /// last pose target again; `None` when nothing is known to hold.
    fn hold_command(&self, now: Instant) -> Option<ArmCommand> {
        match &self.s.kind {
            ArmKind::Joints(limits) => {
                let measured = self.joints.positions(now, self.s.joint_timeout);
                hold_position(measured, self.last_joints.as_deref()).map(|(p, src)| {
                    if src == HoldSource::Commanded {
                        tracing::debug!("holding at the last commanded position (joint states are stale)");
                    }
                    ArmCommand::Hold(limits.hold_target(&p, self.s.period.as_secs_f64()))
                })
            }
            ArmKind::Eef { .. } => self.last_pose.clone().map(|mut t| {
                t.poses.truncate(1);
                ArmCommand::Pose(t)
            }),
        }
    }

    /// Sends the stop now and repeats it on the next steps.
    fn send_stop(&mut self, now: Instant, tick: &mut Tick) {
        self.scheduler.reset();
        self.sent_for_step = None;
        match self.hold_command(now) {
            Some(cmd) => {
                // The hold is now the controller's target: a later hold falls back on it.
                self.note_sent(&cmd);
                self.repeats.arm(cmd.clone());
                tick.command = Some(cmd);
            }
            None => tracing::warn!("nothing to hold: no joint position or target is known"),
        }
    }

    fn enter(&mut self, mode: Mode) {
        self.mode = mode;
        self.state = self.mode.state();
    }

    /// Running/holding → idle: the goal ends with `status`, the arm holds.
    fn finish(&mut self, status: GoalOutcome, outcome: u8, reason: &str, now: Instant, tick: &mut Tick) {
        let Some(g) = self.mode.take_goal() else { return };
        if status == GoalOutcome::Aborted {
            tracing::warn!("aborting goal {}: {reason}", g.epoch);
            self.counters.last_error = reason.to_string();
        }
        if matches!(self.mode, Mode::Idle) {
            self.enter(Mode::Idle);
        } else {
            self.state = self.mode.state();
        }
        tick.ended = Some(ended(&g, status, outcome, reason));
        self.send_stop(now, tick);
    }

    /// A fault inside the node (inference error, panic, stall, non-finite output): abort, hold,
    /// and show ERROR until the next goal is accepted.
    fn fault(&mut self, reason: String, now: Instant, tick: &mut Tick) {
        self.counters.fault = Some(reason.clone());
        self.finish(GoalOutcome::Aborted, ExecuteResult::ABORTED, &reason, now, tick);
    }

    /// Running → holding (the stop goes out on the transition; a new reason only updates it).
    fn hold(&mut self, reason: String, now: Instant, tick: &mut Tick) {
        let reason = clip(&reason, MESSAGE_TEXT_CHARS).into_owned();
        match std::mem::replace(&mut self.mode, Mode::Idle) {
            Mode::Running(g) => {
                self.counters.holds += 1;
                tracing::warn!("holding: {reason}");
                self.counters.last_error = reason.clone();
                self.enter(Mode::Holding(g, reason));
                self.send_stop(now, tick);
            }
            Mode::Holding(g, old) => {
                if old != reason {
                    tracing::warn!("holding: {reason}");
                    self.counters.last_error = reason.clone();
                }
                self.scheduler.reset();
                self.enter(Mode::Holding(g, reason));
            }
            other => self.mode = other,
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
        if Some(res.epoch) != self.mode.active().map(|g| g.epoch) {
            return false; // a result for a goal that ended (or one held by the e-stop)
        }
        match res.result {
            Ok(inf) => {
                self.last
                    .note(res.latency, inf.latent_ids, inf.preview, &mut self.counters, tick);
                if matches!(self.mode, Mode::Holding(..)) {
                    return false; // planned before the hold: a fresh frame is used after it
                }
                match self.scheduler.insert(res.step, inf.chunk, self.step) {
                    Ok(late) => {
                        self.counters.late_steps += late as u64;
                        self.pending_trace = Some(trace);
                        return true;
                    }
                    Err(e) => self.fault(format!("model output: {e}"), now, tick),
                }
            }
            Err(JobError::BadInput(e)) => {
                self.counters.bad_frames += 1;
                self.hold(format!("bad camera frame: {e}"), now, tick);
            }
            Err(JobError::Inference(e)) => {
                self.counters.inference_errors += 1;
                self.fault(format!("inference failed: {e}"), now, tick);
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
                    let (r, cr) = workspace.check_rotation(next.rotation, pose.rotation)?;
                    clamps += c + cr;
                    next.translation.vector = t.into();
                    next.rotation = r;
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

    /// Why the robot must hold now (stale camera or joints, on either clock), if it must.
    fn hold_reason(&self, now: Instant) -> Option<String> {
        if let Some(r) = camera_stale(&self.frames, now, self.s.image_timeout) {
            return Some(r);
        }
        if self.s.require_joints {
            let stale = self.joints.stale_joints(now, self.s.joint_timeout);
            if !stale.is_empty() {
                return Some(format!("joint states stale for {stale:?}"));
            }
            if self.joints_wall.is_some_and(|t| t.elapsed() > self.s.joint_timeout) {
                return Some(format!(
                    "joint states stale (none within {:.2} s of wall time)",
                    self.s.joint_timeout.as_secs_f64()
                ));
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
        let Some(goal) = self.mode.active() else { return };
        let (epoch, instruction) = (goal.epoch, goal.instruction.clone());
        let Some((InFrame { frame, received }, _)) = take_frame(&self.frames) else {
            return;
        };
        let proprio = if self.s.needs_proprio {
            self.joints.positions(now, self.s.joint_timeout)
        } else {
            None
        };
        let job = Job {
            epoch,
            instruction,
            frame,
            proprio,
            step,
            preview: self.s.preview,
            max_image_pixels: self.s.max_image_pixels,
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

    /// Notes what goes out to the actuators (the positions a later hold falls back on).
    fn note_sent(&mut self, cmd: &ArmCommand) {
        match cmd {
            ArmCommand::Joints(points) => self.last_joints = points.first().cloned(),
            ArmCommand::Pose(t) => self.last_pose = Some(t.clone()),
            ArmCommand::Hold(p) => self.last_joints = Some(p.clone()),
        }
    }

    /// The step's command from the planned rows; false if the goal ended or the arm holds.
    fn execute(&mut self, step: u64, now: Instant, tick: &mut Tick) {
        let rows = self.scheduler.horizon(step);
        if rows.is_empty() {
            return; // planning: the controller holds the end of the last trajectory
        }
        let Some(goal) = self.mode.active() else { return };
        let (epoch, steps) = (goal.epoch, goal.steps);
        match self.command(&rows, now, true) {
            Ok((cmd, commanded)) => {
                self.repeats.clear();
                // `react` already sent this step's trajectory (stamped for now): one per step.
                if self.sent_for_step != Some(step) {
                    self.note_sent(&cmd);
                    tick.command = Some(cmd);
                }
                self.sent_for_step = None;
                tick.trace = self.pending_trace.take();
                if let Some(g) = self.mode.goal_mut() {
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
            Err(e) if e.aborts_goal() => self.fault(e.to_string(), now, tick),
            Err(e) => {
                self.counters.refusals += 1;
                self.hold(e.to_string(), now, tick);
            }
        }
    }

    fn new_tick(&self) -> Tick {
        Tick {
            actuate: !self.s.dry_run,
            ..Default::default()
        }
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

    fn goal_epoch(&self) -> Option<u64> {
        self.mode.goal().map(|g| g.epoch)
    }

    fn running_instruction(&self) -> Option<&str> {
        self.mode.goal().map(|g| g.instruction.as_str())
    }

    /// Idle/running/holding → running; a preempted goal's motion is stopped at once.
    fn start_goal(&mut self, spec: GoalSpec, now: Instant) -> Result<Started<ArmCommand>, String> {
        let mode = match self.readiness(&spec, now) {
            Ok(m) => m,
            Err(e) => {
                self.counters.goals_rejected += 1;
                self.counters.last_error = format!("goal rejected: {e}");
                return Err(e);
            }
        };
        let mut tick = self.new_tick();
        let preempted = self.mode.take_goal().map(|g| {
            ended(
                &g,
                GoalOutcome::Aborted,
                ExecuteResult::PREEMPTED,
                "preempted by a new goal",
            )
        });
        if preempted.is_some() {
            self.send_stop(now, &mut tick);
        }
        self.epoch += 1;
        let chunk_mode = mode.unwrap_or(self.s.chunk_mode);
        self.scheduler = ChunkScheduler::new(chunk_mode, self.s.action_dim, self.s.default_ensemble)
            .with_alignment(self.s.alignment);
        self.pending_trace = None;
        self.sent_for_step = None;
        self.counters.fault = None;
        // End-effector targets keep integrating from the last commanded pose (the initial pose
        // until the first target): a new goal never makes the arm jump.
        self.enter(Mode::Running(Goal {
            epoch: self.epoch,
            instruction: spec.instruction,
            max_steps: spec.max_steps,
            deadline: spec.time_limit.map(|d| now + d),
            steps: 0,
        }));
        self.counters.goals_accepted += 1;
        Ok(Started {
            epoch: self.epoch,
            preempted,
            tick,
        })
    }

    /// Running/holding → idle (canceled), holding the arm.
    fn cancel(&mut self, epoch: u64, now: Instant) -> Tick {
        let mut tick = self.new_tick();
        if self.goal_epoch() == Some(epoch) {
            self.finish(
                GoalOutcome::Canceled,
                ExecuteResult::CANCELED,
                "canceled",
                now,
                &mut tick,
            );
        }
        tick
    }

    fn stop_command(&mut self, now: Instant) -> Option<ArmCommand> {
        self.scheduler.reset();
        self.hold_command(now)
    }

    fn frame_inbox(&self) -> FrameInbox {
        std::sync::Arc::clone(&self.frames)
    }

    /// Joint states with unknown names or malformed arrays are counted and reported.
    fn on_joint_state(&mut self, js: &JointState, now: Instant) -> Result<(), String> {
        match self.joints.update(js, now) {
            Ok(_) => {
                self.joints_wall = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                self.counters.bad_joint_states += 1;
                self.counters.last_error = e.clone();
                Err(e)
            }
        }
    }

    /// Any → e-stopped (the arm holds at once; a running goal waits), e-stopped → what it was.
    fn set_estop(&mut self, engaged: Option<&str>, now: Instant) -> Tick {
        let mut tick = self.new_tick();
        match (engaged, std::mem::replace(&mut self.mode, Mode::Idle)) {
            (Some(reason), Mode::EStopped { goal, .. }) => self.enter(Mode::EStopped {
                goal,
                reason: reason.to_string(),
            }),
            (Some(reason), other) => {
                tracing::warn!("emergency stop engaged: {reason}");
                self.counters.holds += 1;
                self.counters.last_error = reason.to_string();
                let goal = match other {
                    Mode::Running(g) | Mode::Holding(g, _) => Some(g),
                    _ => None,
                };
                self.enter(Mode::EStopped {
                    goal,
                    reason: reason.to_string(),
                });
                self.send_stop(now, &mut tick);
            }
            (None, Mode::EStopped { goal, .. }) => {
                tracing::warn!("emergency stop released");
                // A waiting goal resumes from a frame taken after the release.
                self.enter(goal.map_or(Mode::Idle, |g| Mode::Holding(g, "emergency stop released".into())));
            }
            (None, other) => self.mode = other,
        }
        tick
    }

    fn set_result_notifier(&mut self, notify: Box<dyn Fn() + Send>) {
        self.worker.set_notifier(notify)
    }

    /// One control step at `now`.
    fn tick(&mut self, now: Instant) -> Tick {
        let mut tick = self.new_tick();
        self.counters.tick();
        (self.counters.frames_received, self.counters.frames_dropped) = frame_counts(&self.frames);
        self.last_tick = Some(now);
        self.collect_inference(now, &mut tick);
        let step = self.step;
        self.step += 1;
        if let Some(g) = self.mode.active() {
            if g.max_steps > 0 && g.steps >= g.max_steps {
                let reason = format!("step limit of {} reached", g.max_steps);
                self.finish(
                    GoalOutcome::Succeeded,
                    ExecuteResult::STEP_LIMIT,
                    &reason,
                    now,
                    &mut tick,
                );
            } else if g.deadline.is_some_and(|d| now >= d) {
                let reason = "time limit reached";
                self.finish(
                    GoalOutcome::Succeeded,
                    ExecuteResult::TIME_LIMIT,
                    reason,
                    now,
                    &mut tick,
                );
            } else if let Some(reason) = self.hold_reason(now) {
                self.hold(reason, now, &mut tick);
            } else {
                if let Mode::Holding(..) = self.mode {
                    if let Mode::Holding(g, _) = std::mem::replace(&mut self.mode, Mode::Idle) {
                        self.enter(Mode::Running(g));
                    }
                }
                self.plan(step, now);
                self.scheduler.prune(step);
                self.execute(step, now, &mut tick);
            }
        }
        if tick.command.is_none() {
            tick.command = self.repeats.next(now);
        }
        tick
    }

    /// Between control steps: submits a new frame to an idle worker at once, and sends the plan
    /// of a chunk that just arrived as a joint trajectory stamped to start at the next step (a
    /// `joint_trajectory_controller` takes it then). Pose targets are untimed, so they wait for
    /// the step. Nothing is sent while a hold condition is pending; the next step enters the hold.
    fn react(&mut self, now: Instant) -> Tick {
        let mut tick = self.new_tick();
        let fresh = self.collect_inference(now, &mut tick);
        if tick.ended.is_some() || !matches!(self.mode, Mode::Running(_)) {
            return tick;
        }
        if let Some(reason) = self.hold_reason(now) {
            self.hold(reason, now, &mut tick);
            return tick;
        }
        self.plan(self.step, now);
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
            self.repeats.clear();
            self.note_sent(&cmd);
            self.sent_for_step = Some(self.step);
            tick.command = Some(cmd);
            tick.starts_at = Some(last + self.s.period);
            tick.trace = self.pending_trace.take();
        }
        tick
    }

    /// Enters a hold the moment a condition appears (on wall time too), and turns a stalled or
    /// stopped worker into a fault.
    fn supervise(&mut self, now: Instant) -> Tick {
        let mut tick = self.new_tick();
        if self.mode.active().is_none() {
            return tick;
        }
        if let Some(e) = self.worker.fault(self.s.inference_timeout) {
            self.counters.inference_errors += 1;
            self.fault(e, now, &mut tick);
        } else if let Some(reason) = self.hold_reason(now) {
            self.hold(reason, now, &mut tick);
        }
        tick
    }
}

#[cfg(test)]
#[path = "arm_tests.rs"]
mod tests;
