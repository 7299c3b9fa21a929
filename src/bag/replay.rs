//! Replays a bag through a policy: as-of observation alignment, ground truth from the command
//! recorded in response to each frame ([`CommandAlignment`]), ensembling or open-loop chunks,
//! simulated latency. The result is a per-step trace that [`super::metrics`] scores.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::cdr::decode;
use super::image::CameraKind;
use super::msgs::Float64MultiArray;
use super::reader::{BagReader, RawMessage};
use super::BagError;
use crate::lam::LatentActionAccuracy;
use crate::ros::msgs::geometry_msgs::{PoseStamped, Quaternion, Twist, TwistStamped};
use crate::ros::msgs::sensor_msgs::JointState;
use crate::ros::msgs::std_msgs::StringMsg;
use crate::ros::msgs::trajectory_msgs::JointTrajectory;
use crate::ros::msgs::RosMessage;
use crate::runtime::preprocess::RgbImage;

/// Nanoseconds per millisecond.
const NS_PER_MS: f64 = 1e6;
/// Sidecar file in a bag directory that holds the episode's instruction.
pub const INSTRUCTION_FILE: &str = "instruction.txt";

/// The policy under evaluation (the lead's policy session implements it; tests use fakes).
pub trait ReplayPolicy {
    /// Starts an episode with this instruction (clears history and ensembling state).
    fn reset(&mut self, instruction: &str);
    /// One control step on an RGB8 camera frame and optional proprioception.
    fn step(&mut self, image: &RgbImage, proprio: Option<&[f32]>) -> Result<PolicyStep, String>;
}

/// What the policy returns for one step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyStep {
    /// Latent action token ids chosen at this step.
    pub latent_ids: Vec<i64>,
    /// Executed action in robot units, after ensembling and post-processing.
    pub action: Vec<f64>,
    /// The predicted chunk, post-processed per row (robot units), for open-loop mode.
    pub chunk: Vec<Vec<f64>>,
    /// Model time for this step.
    pub inference_ms: f64,
}

/// Topic mapping of the evaluator: the `bag:` section of the node YAML config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BagTopics {
    /// `sensor_msgs/Image` or `sensor_msgs/CompressedImage`; every frame is one step.
    #[serde(default = "default_camera")]
    pub camera: String,
    /// `std_msgs/String` topic with the instruction (else CLI or `instruction.txt`).
    #[serde(default)]
    pub instruction: Option<String>,
    /// `sensor_msgs/JointState` topic used as proprioception.
    #[serde(default)]
    pub joint_states: Option<String>,
    /// Joint order for proprioception (default: the message's order).
    #[serde(default)]
    pub joint_names: Option<Vec<String>>,
    /// Recorded command topic (ground truth): JointTrajectory (first point's positions),
    /// JointState (positions), Twist/TwistStamped ([linear.x, angular.z]), PoseStamped
    /// ([x, y, z, roll, pitch, yaw]) or Float64MultiArray (data).
    #[serde(default = "default_command")]
    pub command: String,
    /// Oldest an as-of message may be relative to its frame.
    #[serde(default = "default_max_age_ms")]
    pub max_age_ms: f64,
    /// Action dimension of the gripper (for open/close event metrics).
    #[serde(default)]
    pub gripper_dim: Option<usize>,
    /// Gripper value above which the gripper counts as open.
    #[serde(default)]
    pub gripper_threshold: f64,
    /// Dimension names for reports and plots (default `dim0..`).
    #[serde(default)]
    pub dim_names: Option<Vec<String>>,
}

fn default_camera() -> String {
    "/camera/image_raw".into()
}
fn default_command() -> String {
    "/joint_trajectory".into()
}
fn default_max_age_ms() -> f64 {
    200.0
}

impl Default for BagTopics {
    fn default() -> Self {
        Self {
            camera: default_camera(),
            instruction: None,
            joint_states: None,
            joint_names: None,
            command: default_command(),
            max_age_ms: default_max_age_ms(),
            gripper_dim: None,
            gripper_threshold: 0.0,
            dim_names: None,
        }
    }
}

impl BagTopics {
    /// Reads the `bag:` section of a YAML config: either top-level `bag:` or, in a ROS
    /// parameter file, `<node>: ros__parameters: bag:`. Missing section → defaults.
    pub fn from_yaml_str(text: &str) -> Result<Self, BagError> {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| BagError::Config(format!("config is not YAML: {e}")))?;
        let section = find_bag_section(&doc);
        match section {
            Some(v) => serde_yaml::from_value(v.clone()).map_err(|e| BagError::Config(format!("bag section: {e}"))),
            None => Ok(Self::default()),
        }
    }

    /// [`Self::from_yaml_str`] on a file.
    pub fn from_yaml_file(path: &Path) -> Result<Self, BagError> {
        let text = std::fs::read_to_string(path).map_err(|e| BagError::io(path, e))?;
        Self::from_yaml_str(&text)
    }
}

fn find_bag_section(doc: &serde_yaml::Value) -> Option<&serde_yaml::Value> {
    let map = doc.as_mapping()?;
    if let Some(v) = map.get("bag") {
        return Some(v);
    }
    map.values()
        .filter_map(|node| node.get("ros__parameters").and_then(|p| p.get("bag")))
        .next()
}

/// How often the policy is queried.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReplayMode {
    /// Query every step; execute the policy's (temporally ensembled) action.
    Ensemble,
    /// Query every `replan_every` steps; execute the chunk's rows open loop.
    OpenLoop { replan_every: usize },
}

/// Simulated inference latency: a result becomes usable this much later; the steps that elapsed
/// meanwhile are dropped from the chunk (open loop) or the previous action is held (ensemble).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Latency {
    None,
    /// In evaluated steps.
    Steps(usize),
    /// In bag time.
    Millis(f64),
    /// The policy's own measured `inference_ms` (not deterministic).
    Measured,
}

/// Which recorded command is a camera frame's ground truth. A teleoperated recording holds, for
/// each frame, the command the operator sent in response to it, recorded just after the frame;
/// the latest command at or before a frame is the response to the previous frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CommandAlignment {
    /// The first command recorded after the frame and before the next frame.
    #[default]
    Next,
    /// The latest command recorded at or before the frame (for recordings whose commands lead
    /// their frames).
    AsOf,
    /// Whichever of those two is closer in time to the frame (the earlier one on a tie).
    Nearest,
}

impl CommandAlignment {
    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::AsOf => "as-of",
            Self::Nearest => "nearest",
        }
    }
}

/// Everything a replay needs besides the bag and the policy.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub topics: BagTopics,
    /// Which recorded command is each frame's ground truth (proprioception is always as-of).
    pub command_alignment: CommandAlignment,
    pub mode: ReplayMode,
    pub latency: Latency,
    /// Instruction for every episode (overrides the topic and the sidecar file).
    pub instruction: Option<String>,
    /// Stop after this many camera frames per episode.
    pub max_frames: Option<usize>,
    /// Camera images declaring more pixels are skipped undecoded (counted as bad images).
    pub max_image_pixels: u64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            topics: BagTopics::default(),
            command_alignment: CommandAlignment::default(),
            mode: ReplayMode::Ensemble,
            latency: Latency::None,
            instruction: None,
            max_frames: None,
            max_image_pixels: crate::runtime::preprocess::DEFAULT_MAX_PIXELS,
        }
    }
}

/// One evaluated step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// Camera frame index in the bag.
    pub frame: usize,
    /// Frame log time, nanoseconds.
    pub time_ns: i64,
    pub ground_truth: Vec<f64>,
    pub predicted: Vec<f64>,
    /// The policy was queried on this frame.
    pub inference: bool,
    /// A new result (chunk or ensembled action) became active at this step.
    pub switch: bool,
    /// Open loop: the chunk ran out and its last row was held.
    pub held: bool,
}

/// One policy query (also on frames that ended up skipped while waiting for a delayed result).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryRecord {
    pub frame: usize,
    pub time_ns: i64,
    pub latent_ids: Vec<i64>,
    pub inference_ms: f64,
}

/// Why frames were not evaluated.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SkipCounts {
    pub no_instruction: usize,
    pub no_joint_states: usize,
    pub stale_joint_states: usize,
    pub no_ground_truth: usize,
    pub stale_ground_truth: usize,
    pub bad_image: usize,
    /// Latency: no policy result available yet.
    pub awaiting_policy: usize,
}

impl SkipCounts {
    /// Total skipped frames.
    pub fn total(&self) -> usize {
        self.no_instruction
            + self.no_joint_states
            + self.stale_joint_states
            + self.no_ground_truth
            + self.stale_ground_truth
            + self.bad_image
            + self.awaiting_policy
    }

    /// Adds another episode's counts.
    pub fn add(&mut self, o: &SkipCounts) {
        self.no_instruction += o.no_instruction;
        self.no_joint_states += o.no_joint_states;
        self.stale_joint_states += o.stale_joint_states;
        self.no_ground_truth += o.no_ground_truth;
        self.stale_ground_truth += o.stale_ground_truth;
        self.bad_image += o.bad_image;
        self.awaiting_policy += o.awaiting_policy;
    }
}

/// Wall-clock split of a replay (for the overhead benchmark).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ReplayTimings {
    /// Whole replay (read, decode, align, policy).
    pub total_s: f64,
    /// Inside `ReplayPolicy::step`.
    pub policy_s: f64,
}

/// The replay of one bag.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeTrace {
    pub name: String,
    pub bag: PathBuf,
    pub instruction: String,
    pub command_topic: String,
    pub command_type: String,
    /// Camera frames seen.
    pub frames: usize,
    pub steps: Vec<StepRecord>,
    /// Every policy query, in order.
    pub queries: Vec<QueryRecord>,
    pub skipped: SkipCounts,
    pub instruction_changes: usize,
    pub dim_names: Vec<String>,
    pub timings: ReplayTimings,
    /// Policy latent tokens against LAM labels of the recorded frames (`--lam`), if scored.
    pub latent_accuracy: Option<LatentActionAccuracy>,
}

/// Which recorded command type the ground truth comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommandKind {
    JointTrajectory,
    JointState,
    Twist,
    TwistStamped,
    PoseStamped,
    Float64MultiArray,
}

impl CommandKind {
    fn from_type(ty: &str) -> Option<Self> {
        [
            (JointTrajectory::ros_type(), Self::JointTrajectory),
            (JointState::ros_type(), Self::JointState),
            (Twist::ros_type(), Self::Twist),
            (TwistStamped::ros_type(), Self::TwistStamped),
            (PoseStamped::ros_type(), Self::PoseStamped),
            (Float64MultiArray::ros_type(), Self::Float64MultiArray),
        ]
        .into_iter()
        .find(|(t, _)| t == ty)
        .map(|(_, k)| k)
    }

    /// The action vector a recorded command stands for (`None`: an empty trajectory).
    fn to_vector(self, msg: &RawMessage) -> Result<Option<Vec<f64>>, BagError> {
        Ok(match self {
            Self::JointTrajectory => decode::<JointTrajectory>(msg)?
                .points
                .first()
                .map(|p| p.positions.clone()),
            Self::JointState => Some(decode::<JointState>(msg)?.position),
            Self::Twist => Some(twist_vector(&decode::<Twist>(msg)?)),
            Self::TwistStamped => Some(twist_vector(&decode::<TwistStamped>(msg)?.twist)),
            Self::PoseStamped => {
                let p = decode::<PoseStamped>(msg)?.pose;
                let [r, pi, y] = quaternion_to_rpy(&p.orientation);
                Some(vec![p.position.x, p.position.y, p.position.z, r, pi, y])
            }
            Self::Float64MultiArray => Some(decode::<Float64MultiArray>(msg)?.data),
        })
    }
}

fn twist_vector(t: &Twist) -> Vec<f64> {
    vec![t.linear.x, t.angular.z]
}

/// Roll, pitch, yaw (static x-y-z axes) of a unit quaternion.
pub fn quaternion_to_rpy(q: &Quaternion) -> [f64; 3] {
    let (x, y, z, w) = (q.x, q.y, q.z, q.w);
    let roll = (2.0 * (w * x + y * z)).atan2(1.0 - 2.0 * (x * x + y * y));
    let pitch = (2.0 * (w * y - z * x)).clamp(-1.0, 1.0).asin();
    let yaw = (2.0 * (w * z + x * y)).atan2(1.0 - 2.0 * (y * y + z * z));
    [roll, pitch, yaw]
}

/// A policy result and when it was requested.
struct Issued {
    result: PolicyStep,
    step: usize,
    time_ns: i64,
}

/// Number of camera frames in a bag (for progress bars), 0 if unknown.
pub fn camera_frames(bag: &Path, topics: &BagTopics) -> Result<u64, BagError> {
    let reader = BagReader::open(bag)?;
    Ok(reader.require_topic(&topics.camera)?.message_count)
}

/// Reads the instruction of an episode: CLI override, else the bag's `instruction.txt`.
fn sidecar_instruction(bag: &Path) -> Option<String> {
    let dir = if bag.is_dir() {
        bag.to_path_buf()
    } else {
        bag.parent()?.to_path_buf()
    };
    let text = std::fs::read_to_string(dir.join(INSTRUCTION_FILE)).ok()?;
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Replays one bag through `policy`; `on_frame` is called once per camera frame (progress).
pub fn replay_bag(
    bag: &Path,
    config: &ReplayConfig,
    policy: &mut dyn ReplayPolicy,
    on_frame: &mut dyn FnMut(),
) -> Result<EpisodeTrace, BagError> {
    let started = Instant::now();
    let topics = &config.topics;
    let reader = BagReader::open(bag)?;
    let camera_info = reader.require_topic(&topics.camera)?;
    let camera_kind = CameraKind::of_topic(&topics.camera, &camera_info.type_name)?;
    let cmd_info = reader.require_topic(&topics.command)?;
    let command_kind = CommandKind::from_type(&cmd_info.type_name).ok_or_else(|| BagError::WrongType {
        topic: topics.command.clone(),
        expected: "JointTrajectory, JointState, Twist, TwistStamped, PoseStamped or Float64MultiArray".into(),
        found: cmd_info.type_name.clone(),
    })?;
    let command_type = cmd_info.type_name.clone();
    let fixed_instruction = config.instruction.clone().or_else(|| sidecar_instruction(bag));
    let instruction_topic = if fixed_instruction.is_some() {
        None
    } else {
        topics.instruction.clone()
    };
    if fixed_instruction.is_none() && instruction_topic.is_none() {
        return Err(BagError::Config(format!(
            "bag {}: no instruction: give --instruction, put {INSTRUCTION_FILE} in the bag directory, or set bag.instruction",
            bag.display()
        )));
    }
    let mut wanted = vec![topics.camera.as_str(), topics.command.as_str()];
    if let Some(t) = &topics.joint_states {
        wanted.push(t);
    }
    if let Some(t) = &instruction_topic {
        wanted.push(t);
    }
    let stream = reader.messages(&wanted)?;
    let max_age_ns = (topics.max_age_ms * NS_PER_MS) as i64;
    let name = bag
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| bag.display().to_string());

    let mut trace = EpisodeTrace {
        name,
        bag: bag.to_path_buf(),
        instruction: fixed_instruction.clone().unwrap_or_default(),
        command_topic: topics.command.clone(),
        command_type,
        frames: 0,
        steps: Vec::new(),
        queries: Vec::new(),
        skipped: SkipCounts::default(),
        instruction_changes: 0,
        dim_names: Vec::new(),
        timings: ReplayTimings::default(),
        latent_accuracy: None,
    };
    let mut current_instruction: Option<String> = None;
    if let Some(i) = &fixed_instruction {
        policy.reset(i);
        current_instruction = Some(i.clone());
    }
    let alignment = config.command_alignment;
    let mut last_command: Option<Command> = None;
    // A step waiting for the command recorded after its frame (`next` and `nearest`).
    let mut awaiting: Option<AwaitingTruth> = None;
    let mut last_joints: Option<(i64, Vec<f32>)> = None;
    let mut scheduler = Scheduler::new(config.mode, config.latency);
    let mut policy_s = 0.0;

    for item in stream {
        let msg = item?;
        let topic = &*msg.topic;
        if topic == topics.camera {
            if config.max_frames.is_some_and(|m| trace.frames >= m) {
                break;
            }
            // No command came between the previous frame and this one.
            if let Some(a) = awaiting.take() {
                a.resolve(None, alignment, max_age_ns, &topics.command, &mut trace)?;
            }
            let frame = trace.frames;
            trace.frames += 1;
            on_frame();
            let t = msg.log_time_ns;
            if current_instruction.is_none() {
                trace.skipped.no_instruction += 1;
                continue;
            }
            let proprio = match (&topics.joint_states, &last_joints) {
                (None, _) => None,
                (Some(_), None) => {
                    trace.skipped.no_joint_states += 1;
                    continue;
                }
                (Some(_), Some((jt, _))) if t - jt > max_age_ns => {
                    trace.skipped.stale_joint_states += 1;
                    continue;
                }
                (Some(_), Some((_, q))) => Some(q.as_slice()),
            };
            // As-of ground truth is known now, and a frame without one never reaches the policy;
            // the other rules wait for the next command, so the policy sees every frame.
            let truth = match alignment {
                CommandAlignment::AsOf => match choose_truth(alignment, t, last_command.as_ref(), None, max_age_ns) {
                    Ok(v) => Some(v),
                    Err(skip) => {
                        skip.count(&mut trace.skipped);
                        continue;
                    }
                },
                CommandAlignment::Next | CommandAlignment::Nearest => None,
            };
            let rgb = match camera_kind.decode_rgb(&msg, config.max_image_pixels) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("frame {frame}: {e}");
                    trace.skipped.bad_image += 1;
                    continue;
                }
            };
            let (outcome, query) = scheduler.step(t, || {
                let t0 = Instant::now();
                let r = policy.step(&rgb, proprio).map_err(BagError::Policy);
                policy_s += t0.elapsed().as_secs_f64();
                r
            })?;
            if let Some((latent_ids, inference_ms)) = &query {
                trace.queries.push(QueryRecord {
                    frame,
                    time_ns: t,
                    latent_ids: latent_ids.clone(),
                    inference_ms: *inference_ms,
                });
            }
            let Some(out) = outcome else {
                trace.skipped.awaiting_policy += 1;
                continue;
            };
            let step = StepRecord {
                frame,
                time_ns: t,
                ground_truth: Vec::new(),
                predicted: out.action,
                inference: query.is_some(),
                switch: out.switch,
                held: out.held,
            };
            match truth {
                Some(truth) => push_step(&mut trace, step, truth, &topics.command)?,
                None => {
                    awaiting = Some(AwaitingTruth {
                        step,
                        before: last_command.clone(),
                    })
                }
            }
        } else if topic == topics.command {
            let command = Command {
                time_ns: msg.log_time_ns,
                value: command_kind.to_vector(&msg)?,
            };
            // The first command after a frame settles that frame's ground truth.
            if let Some(a) = awaiting.take() {
                a.resolve(Some(&command), alignment, max_age_ns, &topics.command, &mut trace)?;
            }
            last_command = Some(command);
        } else if topics.joint_states.as_deref() == Some(topic) {
            let js = decode::<JointState>(&msg)?;
            last_joints = Some((msg.log_time_ns, order_joints(&js, topics.joint_names.as_deref(), &msg)?));
        } else if instruction_topic.as_deref() == Some(topic) {
            let text = decode::<StringMsg>(&msg)?.data.trim().to_string();
            if current_instruction.as_deref() != Some(text.as_str()) {
                if current_instruction.is_some() {
                    trace.instruction_changes += 1;
                }
                policy.reset(&text);
                scheduler = Scheduler::new(config.mode, config.latency);
                if trace.instruction.is_empty() {
                    trace.instruction = text.clone();
                }
                current_instruction = Some(text);
            }
        }
    }
    // The last frame's command may be missing from the recording.
    if let Some(a) = awaiting.take() {
        a.resolve(None, alignment, max_age_ns, &topics.command, &mut trace)?;
    }
    let dims = trace.steps.first().map_or(0, |s| s.ground_truth.len());
    trace.dim_names = match &topics.dim_names {
        Some(n) if n.len() == dims => n.clone(),
        Some(n) => {
            return Err(BagError::Config(format!(
                "bag.dim_names has {} names but actions have {dims} dimensions",
                n.len()
            )))
        }
        None => (0..dims).map(|i| format!("dim{i}")).collect(),
    };
    trace.timings = ReplayTimings {
        total_s: started.elapsed().as_secs_f64(),
        policy_s,
    };
    Ok(trace)
}

/// A recorded command: its log time and the action it stands for (`None`: an empty trajectory).
#[derive(Debug, Clone, PartialEq)]
struct Command {
    time_ns: i64,
    value: Option<Vec<f64>>,
}

/// Why a frame has no ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoTruth {
    /// No usable command (none recorded, or an empty trajectory).
    Missing,
    /// The candidate commands are further than `max_age_ms` from the frame.
    Stale,
}

impl NoTruth {
    fn count(self, skipped: &mut SkipCounts) {
        match self {
            Self::Missing => skipped.no_ground_truth += 1,
            Self::Stale => skipped.stale_ground_truth += 1,
        }
    }
}

/// The ground truth of a frame at `frame_ns` under `alignment`, from the latest command at or
/// before the frame (`before`) and the first one after it and before the next frame (`after`);
/// either must lie within `max_age_ns` of the frame.
fn choose_truth(
    alignment: CommandAlignment,
    frame_ns: i64,
    before: Option<&Command>,
    after: Option<&Command>,
    max_age_ns: i64,
) -> Result<Vec<f64>, NoTruth> {
    let candidates: &[Option<&Command>] = match alignment {
        CommandAlignment::AsOf => &[before],
        CommandAlignment::Next => &[after],
        // Earlier first, so a tie keeps the as-of command.
        CommandAlignment::Nearest => &[before, after],
    };
    let usable: Vec<(&Command, i64)> = candidates
        .iter()
        .flatten()
        .filter(|c| c.value.is_some())
        .map(|c| (*c, (c.time_ns - frame_ns).abs()))
        .collect();
    if usable.is_empty() {
        return Err(NoTruth::Missing);
    }
    let fresh = usable
        .iter()
        .filter(|(_, dt)| *dt <= max_age_ns)
        .fold(None::<(&Command, i64)>, |best, &(c, dt)| match best {
            Some((_, best_dt)) if best_dt <= dt => best,
            _ => Some((c, dt)),
        });
    match fresh {
        Some((Command { value: Some(v), .. }, _)) => Ok(v.clone()),
        _ => Err(NoTruth::Stale),
    }
}

/// An evaluated step whose ground truth comes from a command not yet read.
struct AwaitingTruth {
    step: StepRecord,
    /// The latest command at or before the frame.
    before: Option<Command>,
}

impl AwaitingTruth {
    /// Completes the step with the first command after its frame (`None`: none came before the
    /// next frame or the end of the bag) and records it, or counts it as skipped.
    fn resolve(
        self,
        after: Option<&Command>,
        alignment: CommandAlignment,
        max_age_ns: i64,
        command_topic: &str,
        trace: &mut EpisodeTrace,
    ) -> Result<(), BagError> {
        match choose_truth(alignment, self.step.time_ns, self.before.as_ref(), after, max_age_ns) {
            Ok(truth) => push_step(trace, self.step, truth, command_topic),
            Err(skip) => {
                skip.count(&mut trace.skipped);
                Ok(())
            }
        }
    }
}

/// Records an evaluated step with its ground truth, which must be as wide as the prediction.
fn push_step(
    trace: &mut EpisodeTrace,
    mut step: StepRecord,
    truth: Vec<f64>,
    command_topic: &str,
) -> Result<(), BagError> {
    if step.predicted.len() != truth.len() {
        return Err(BagError::Config(format!(
            "policy action has {} dimensions but the recorded command on {command_topic} gives {}",
            step.predicted.len(),
            truth.len()
        )));
    }
    step.ground_truth = truth;
    trace.steps.push(step);
    Ok(())
}

fn decode_err(msg: &RawMessage, why: String) -> BagError {
    BagError::Decode {
        topic: msg.topic.to_string(),
        type_name: msg.type_name.to_string(),
        log_time_ns: msg.log_time_ns,
        why,
    }
}

/// Joint positions as f32 in the configured order.
fn order_joints(js: &JointState, names: Option<&[String]>, msg: &RawMessage) -> Result<Vec<f32>, BagError> {
    let Some(names) = names else {
        return Ok(js.position.iter().map(|&p| p as f32).collect());
    };
    let index: BTreeMap<&str, usize> = js.name.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    names
        .iter()
        .map(|n| {
            index
                .get(n.as_str())
                .and_then(|&i| js.position.get(i))
                .map(|&p| p as f32)
                .ok_or_else(|| decode_err(msg, format!("joint {n} not in this JointState")))
        })
        .collect()
}

/// What the scheduler executes at one step.
struct Executed {
    action: Vec<f64>,
    switch: bool,
    held: bool,
}

/// Latent ids and latency of a query made at this step.
type QueryInfo = Option<(Vec<i64>, f64)>;

/// Query cadence, latency and chunk bookkeeping (deterministic unless `Latency::Measured`).
struct Scheduler {
    mode: ReplayMode,
    latency: Latency,
    /// Evaluated steps so far.
    step: usize,
    active: Option<Issued>,
    pending: Option<Issued>,
}

impl Scheduler {
    fn new(mode: ReplayMode, latency: Latency) -> Self {
        Self {
            mode,
            latency,
            step: 0,
            active: None,
            pending: None,
        }
    }

    fn ready(&self, p: &Issued, now_ns: i64) -> bool {
        match self.latency {
            Latency::None => true,
            Latency::Steps(n) => self.step >= p.step + n,
            Latency::Millis(ms) => now_ns - p.time_ns >= (ms * NS_PER_MS) as i64,
            Latency::Measured => now_ns - p.time_ns >= (p.result.inference_ms * NS_PER_MS) as i64,
        }
    }

    fn wants_query(&self) -> bool {
        if self.pending.is_some() {
            return false;
        }
        match (self.mode, &self.active) {
            (_, None) | (ReplayMode::Ensemble, _) => true,
            (ReplayMode::OpenLoop { replan_every }, Some(a)) => {
                let used = self.step - a.step;
                used >= replan_every.max(1) || used >= a.result.chunk.len()
            }
        }
    }

    /// Advances one evaluated step at bag time `now_ns`; `query` runs the policy.
    fn step(
        &mut self,
        now_ns: i64,
        mut query: impl FnMut() -> Result<PolicyStep, BagError>,
    ) -> Result<(Option<Executed>, QueryInfo), BagError> {
        let mut switch = self.promote(now_ns);
        let mut inference = None;
        if self.wants_query() {
            let result = query()?;
            if matches!(self.mode, ReplayMode::OpenLoop { .. }) && result.chunk.is_empty() {
                return Err(BagError::Policy(
                    "open-loop mode needs PolicyStep::chunk, got none".into(),
                ));
            }
            inference = Some((result.latent_ids.clone(), result.inference_ms));
            self.pending = Some(Issued {
                result,
                step: self.step,
                time_ns: now_ns,
            });
            switch |= self.promote(now_ns);
        }
        let out = self.active.as_ref().map(|a| {
            let (action, held) = match self.mode {
                ReplayMode::Ensemble => (a.result.action.clone(), false),
                ReplayMode::OpenLoop { .. } => {
                    let j = self.step - a.step;
                    match a.result.chunk.get(j) {
                        Some(row) => (row.clone(), false),
                        None => (a.result.chunk.last().cloned().unwrap_or_default(), true),
                    }
                }
            };
            Executed { action, switch, held }
        });
        self.step += 1;
        Ok((out, inference))
    }

    /// Makes the pending result active once its latency has elapsed.
    fn promote(&mut self, now_ns: i64) -> bool {
        match self.pending.take() {
            Some(p) if self.ready(&p, now_ns) => {
                self.active = Some(p);
                true
            }
            other => {
                self.pending = other;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result whose chunk row j is [base + j].
    fn chunk_result(base: f64, n: usize) -> PolicyStep {
        PolicyStep {
            latent_ids: vec![],
            action: vec![base],
            chunk: (0..n).map(|j| vec![base + j as f64]).collect(),
            inference_ms: 0.0,
        }
    }

    fn run(mode: ReplayMode, latency: Latency, steps: usize) -> Vec<Option<(f64, bool, bool)>> {
        let mut s = Scheduler::new(mode, latency);
        (0..steps)
            .map(|k| {
                let t = k as i64 * 100_000_000;
                let (e, q) = s.step(t, || Ok(chunk_result(100.0 * k as f64, 4))).unwrap();
                e.map(|e| (e.action[0], e.switch, q.is_some()))
            })
            .collect()
    }

    #[test]
    fn open_loop_replans_every_k_steps() {
        let out = run(ReplayMode::OpenLoop { replan_every: 2 }, Latency::None, 5);
        let actions: Vec<f64> = out.iter().map(|o| o.unwrap().0).collect();
        assert_eq!(actions, vec![0.0, 1.0, 200.0, 201.0, 400.0]);
        let inferences: Vec<bool> = out.iter().map(|o| o.unwrap().2).collect();
        assert_eq!(inferences, vec![true, false, true, false, true]);
    }

    #[test]
    fn latency_drops_elapsed_rows() {
        // Query at step 0 becomes usable at step 2 and starts at its row 2; the next query (step 2,
        // replan after the chunk's 4 rows are used... here replan_every = 4) follows.
        let out = run(ReplayMode::OpenLoop { replan_every: 4 }, Latency::Steps(2), 7);
        assert_eq!(out[0], None);
        assert_eq!(out[1], None);
        let actions: Vec<f64> = out[2..].iter().map(|o| o.unwrap().0).collect();
        // Steps 2,3 execute rows 2,3 of chunk 0; at step 4 the chunk is used up → query (ready at 6),
        // steps 4,5 hold row 3; step 6 executes row 2 of the chunk queried at step 4.
        assert_eq!(actions, vec![2.0, 3.0, 3.0, 3.0, 402.0]);
    }

    #[test]
    fn latency_in_ms_uses_bag_time() {
        // Frames every 100 ms, latency 150 ms → usable 2 frames later.
        let a = run(ReplayMode::OpenLoop { replan_every: 4 }, Latency::Millis(150.0), 4);
        let b = run(ReplayMode::OpenLoop { replan_every: 4 }, Latency::Steps(2), 4);
        assert_eq!(a, b);
    }

    #[test]
    fn ensemble_holds_previous_action_under_latency() {
        let out = run(ReplayMode::Ensemble, Latency::Steps(1), 4);
        assert_eq!(out[0], None);
        // Step 1: result of step 0 becomes active and a new query is issued (ready at 2).
        assert_eq!(out[1], Some((0.0, true, true)));
        assert_eq!(out[2], Some((100.0, true, true)));
        assert_eq!(out[3], Some((200.0, true, true)));
    }

    #[test]
    fn bag_section_found_in_ros_parameter_file() {
        let yaml = "univla_node:\n  ros__parameters:\n    bag:\n      camera: /cam\n      command: /cmd_vel\n      max_age_ms: 50.0\n";
        let t = BagTopics::from_yaml_str(yaml).unwrap();
        assert_eq!(t.camera, "/cam");
        assert_eq!(t.command, "/cmd_vel");
        assert_eq!(t.max_age_ms, 50.0);
        assert!(BagTopics::from_yaml_str("bag:\n  camara: /x\n").is_err());
    }

    fn cmd(ms: i64, v: f64) -> Command {
        Command {
            time_ns: ms * 1_000_000,
            value: Some(vec![v]),
        }
    }

    #[test]
    fn ground_truth_rules_pick_the_right_command() {
        let age = 150 * 1_000_000;
        let frame = 1_000 * 1_000_000;
        let (before, after) = (cmd(990, 1.0), cmd(1_030, 2.0));
        let pick = |a, b: Option<&Command>, c: Option<&Command>| choose_truth(a, frame, b, c, age);
        assert_eq!(pick(CommandAlignment::AsOf, Some(&before), Some(&after)), Ok(vec![1.0]));
        assert_eq!(pick(CommandAlignment::Next, Some(&before), Some(&after)), Ok(vec![2.0]));
        assert_eq!(
            pick(CommandAlignment::Nearest, Some(&before), Some(&after)),
            Ok(vec![1.0])
        );
        let late_before = cmd(950, 1.0);
        assert_eq!(
            pick(CommandAlignment::Nearest, Some(&late_before), Some(&after)),
            Ok(vec![2.0])
        );
        // A tie keeps the earlier command.
        let tie = cmd(1_050, 2.0);
        assert_eq!(
            pick(CommandAlignment::Nearest, Some(&late_before), Some(&tie)),
            Ok(vec![1.0])
        );
        // Missing, empty and stale commands.
        assert_eq!(pick(CommandAlignment::Next, Some(&before), None), Err(NoTruth::Missing));
        let empty = Command {
            time_ns: frame + 1,
            value: None,
        };
        assert_eq!(pick(CommandAlignment::Next, None, Some(&empty)), Err(NoTruth::Missing));
        let stale = cmd(1_200, 3.0);
        assert_eq!(pick(CommandAlignment::Next, None, Some(&stale)), Err(NoTruth::Stale));
        assert_eq!(pick(CommandAlignment::Nearest, None, Some(&stale)), Err(NoTruth::Stale));
        assert_eq!(
            pick(CommandAlignment::Nearest, Some(&cmd(800, 0.0)), Some(&stale)),
            Err(NoTruth::Stale)
        );
        assert_eq!(CommandAlignment::default().name(), "next");
    }

    #[test]
    fn rpy_of_known_rotation() {
        // 90° about z.
        let h = std::f64::consts::FRAC_1_SQRT_2;
        let rpy = quaternion_to_rpy(&Quaternion {
            x: 0.0,
            y: 0.0,
            z: h,
            w: h,
        });
        assert!((rpy[2] - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
        assert!(rpy[0].abs() < 1e-12 && rpy[1].abs() < 1e-12);
    }
}
