//! The ROS-agnostic arm controller: goal state machine, latest-frame inference scheduling,
//! time-aligned chunk execution and the safety gate. The ROS layer feeds it messages and the clock
//! and publishes what each [`ArmCore::tick`] returns.
use std::time::{Duration, Instant};

use nalgebra::Isometry3;

use crate::ros::action::GoalOutcome;
use crate::ros::msgs::sensor_msgs::JointState;
use crate::ros::msgs::univla_msgs::ExecuteResult;
use crate::runtime::postprocess::{Action, PostProcessor};
use crate::runtime::preprocess::RgbImage;

use super::diagnostics::Counters;
use super::eef::{pose_from_xyz_rpy, position, EefDelta};
use super::input::{CameraFrame, JointCache};
use super::safety::{JointLimits, SafetyError, Workspace};
use super::scheduler::{ChunkMode, ChunkScheduler};
use super::worker::{InferenceWorker, Job, JobError};

/// What the node is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeState {
    Idle,
    Running,
    /// Running a goal but holding the robot, with the reason.
    Holding(String),
}

impl NodeState {
    pub fn label(&self) -> String {
        match self {
            NodeState::Idle => "idle".into(),
            NodeState::Running => "running".into(),
            NodeState::Holding(r) => format!("holding: {r}"),
        }
    }
}

/// A goal as the core sees it.
#[derive(Clone, Debug, Default)]
pub struct GoalSpec {
    pub instruction: String,
    /// 0: no limit.
    pub max_steps: u32,
    pub time_limit: Option<Duration>,
    /// `""` (node default), `"ensemble"` or `"open_loop"`.
    pub mode: String,
}

/// How a goal ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub epoch: u64,
    pub status: GoalOutcome,
    /// One of the `ExecuteResult` outcome constants.
    pub outcome: u8,
    pub steps: u32,
    pub reason: String,
}

/// Per-step feedback.
#[derive(Clone, Debug, PartialEq)]
pub struct StepFeedback {
    pub epoch: u64,
    pub step: u32,
    pub latent_ids: Vec<i64>,
    pub latency_ms: f32,
    pub commanded: Vec<f64>,
}

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

/// Everything one control step produced.
#[derive(Clone, Debug, Default)]
pub struct Tick {
    pub command: Option<ArmCommand>,
    /// False in dry-run mode: publish everything except actuator commands.
    pub actuate: bool,
    pub feedback: Option<StepFeedback>,
    pub ended: Option<Ended>,
    /// Latent tokens of an inference that finished this step.
    pub latent_ids: Option<Vec<i64>>,
    pub preview: Option<RgbImage>,
}

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
    frames: crate::node::slot::LatestSlot<CameraFrame>,
    joints: JointCache,
    estop: bool,
    goal: Option<Goal>,
    epoch: u64,
    scheduler: ChunkScheduler,
    step: u64,
    state: NodeState,
    pose: Isometry3<f64>,
    last_latent: Vec<i64>,
    last_latency_ms: f32,
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
        let scheduler = ChunkScheduler::new(s.chunk_mode, s.action_dim, s.default_ensemble);
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
            estop: false,
            goal: None,
            epoch: 0,
            scheduler,
            step: 0,
            state: NodeState::Idle,
            pose,
            last_latent: Vec::new(),
            last_latency_ms: 0.0,
            counters: Counters::default(),
        }
    }

    pub fn state(&self) -> &NodeState {
        &self.state
    }

    /// Epoch of the running goal.
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

    /// Joint states with unknown names or malformed arrays are counted and reported.
    pub fn on_joint_state(&mut self, js: &JointState, now: Instant) -> Result<(), String> {
        match self.joints.update(js, now) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.counters.bad_joint_states += 1;
                self.counters.last_error = e.clone();
                Err(e)
            }
        }
    }

    pub fn set_estop(&mut self, engaged: bool) {
        if engaged != self.estop {
            tracing::warn!("emergency stop {}", if engaged { "engaged" } else { "released" });
        }
        self.estop = engaged;
    }

    /// The hold command for the current joint state.
    pub fn hold_command(&self, now: Instant) -> ArmCommand {
        ArmCommand::Hold(self.joints.positions(now, self.s.joint_timeout))
    }

    /// Why a goal cannot start now, if it cannot.
    fn readiness(&self, spec: &GoalSpec, now: Instant) -> Result<Option<ChunkMode>, String> {
        let chars = spec.instruction.chars().count();
        if spec.instruction.trim().is_empty() {
            return Err("empty instruction".into());
        }
        if chars > self.s.max_instruction_chars {
            return Err(format!(
                "instruction has {chars} characters, at most {} are accepted",
                self.s.max_instruction_chars
            ));
        }
        let mode = match spec.mode.as_str() {
            "" => None,
            "ensemble" => Some(ChunkMode::Ensemble { size: 0 }),
            "open_loop" => Some(ChunkMode::OpenLoop { replan_every: None }),
            m => return Err(format!("unknown mode '{m}' (expected '', 'ensemble' or 'open_loop')")),
        };
        if self.estop {
            return Err("emergency stop is engaged".into());
        }
        match self.frames.age(now) {
            None => return Err("no camera image received yet".into()),
            Some(a) if a > self.s.image_timeout => {
                return Err(format!("camera image is stale ({:.2} s old)", a.as_secs_f64()))
            }
            _ => {}
        }
        if self.s.require_joints {
            let stale = self.joints.stale_joints(now, self.s.joint_timeout);
            if !stale.is_empty() {
                return Err(format!("no fresh joint state for {stale:?}"));
            }
        }
        Ok(mode)
    }

    /// Starts a goal (preempting the running one) or says why not.
    pub fn start_goal(&mut self, spec: GoalSpec, now: Instant) -> Result<(u64, Option<Ended>), String> {
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
        self.scheduler = ChunkScheduler::new(mode, self.s.action_dim, self.s.default_ensemble);
        if let ArmKind::Eef { initial, .. } = &self.s.kind {
            self.pose = pose_from_xyz_rpy(initial);
        }
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
    pub fn cancel(&mut self, epoch: u64) -> Option<Ended> {
        if self.goal_epoch() != Some(epoch) {
            return None;
        }
        self.goal
            .take()
            .map(|g| self.finish(g, GoalOutcome::Canceled, ExecuteResult::CANCELED, "canceled"))
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

    fn collect_inference(&mut self, now: Instant, tick: &mut Tick) {
        let Some(res) = self.worker.poll() else { return };
        if Some(res.epoch) != self.goal_epoch() {
            return; // a result for a goal that ended
        }
        match res.result {
            Ok(inf) => {
                self.counters.record_latency(res.latency);
                self.last_latency_ms = (res.latency.as_secs_f64() * 1e3) as f32;
                self.last_latent = inf.latent_ids.clone();
                tick.latent_ids = Some(inf.latent_ids);
                tick.preview = inf.preview;
                match self.scheduler.insert(res.step, inf.chunk, self.step) {
                    Ok(late) => self.counters.late_steps += late as u64,
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
    }

    /// Turns the planned rows into a checked command, or says why not.
    fn command(&mut self, rows: &[Vec<f64>], now: Instant) -> Result<(ArmCommand, Vec<f64>), SafetyError> {
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
                self.counters.clamp_events += u64::from(checked.clamps);
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
                for (k, a) in actions.iter().enumerate() {
                    let d = EefDelta::from_action(a, *translation_scale, *rotation_scale).ok_or_else(|| {
                        SafetyError::NonFinite {
                            what: format!("end-effector action {a:?}"),
                        }
                    })?;
                    let mut next = d.apply(&pose);
                    let (t, clamps) = workspace.check(position(&next), position(&pose))?;
                    self.counters.clamp_events += u64::from(clamps);
                    next.translation.vector = t.into();
                    if k == 0 {
                        gripper = d.gripper;
                    }
                    poses.push(next);
                    pose = next;
                }
                let first = poses[0];
                self.pose = first;
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

    /// One control step at `now`.
    pub fn tick(&mut self, now: Instant) -> Tick {
        let mut tick = Tick {
            actuate: !self.s.dry_run,
            ..Default::default()
        };
        self.counters.tick();
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
        if self.estop {
            self.hold("emergency stop".into(), now, &mut tick);
            return tick;
        }
        if let Some(age) = self.frames.age(now).filter(|a| *a > self.s.image_timeout) {
            self.hold(
                format!("camera stale ({:.2} s without an image)", age.as_secs_f64()),
                now,
                &mut tick,
            );
            return tick;
        }
        if self.s.require_joints {
            let stale = self.joints.stale_joints(now, self.s.joint_timeout);
            if !stale.is_empty() {
                let reason = format!("joint states stale for {stale:?}");
                self.hold(reason, now, &mut tick);
                return tick;
            }
        }
        // Plan: submit the newest frame when the worker is idle.
        if !self.worker.is_busy() && self.frames.has_new() && self.scheduler.wants_plan(step, self.latency_steps()) {
            if let Some(frame) = self.frames.take() {
                let proprio = if self.s.needs_proprio {
                    self.joints.positions(now, self.s.joint_timeout)
                } else {
                    None
                };
                let instruction = self.goal.as_ref().map(|g| g.instruction.clone()).unwrap_or_default();
                let job = Job {
                    epoch,
                    instruction,
                    frame,
                    proprio,
                    step,
                    preview: self.s.preview,
                };
                if !self.worker.submit(job) {
                    tracing::debug!("worker busy, frame dropped");
                }
            }
        }
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
        match self.command(&rows, now) {
            Ok((cmd, commanded)) => {
                self.state = NodeState::Running;
                tick.command = Some(cmd);
                if let Some(g) = self.goal.as_mut() {
                    g.steps += 1;
                }
                tick.feedback = Some(StepFeedback {
                    epoch,
                    step: steps + 1,
                    latent_ids: self.last_latent.clone(),
                    latency_ms: self.last_latency_ms,
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

#[cfg(test)]
#[path = "arm_tests.rs"]
mod tests;
