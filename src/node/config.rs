//! Strict, typed node configuration from ROS parameters: unknown parameters are refused with the
//! list of known ones, and cross-field rules (lengths of joint names and limits, ranges) are checked
//! before any socket is opened or any weight is loaded.
use std::path::{Path, PathBuf};
use std::time::Duration;

use nalgebra::Isometry3;

use crate::model::generate::Decoding;
use crate::remote::client::Endpoint;
use crate::remote::RemoteSettings;
use crate::ros::Params;
use crate::runtime::device::{parse_device, parse_dtype};
use crate::runtime::postprocess::Preset;
use crate::runtime::preprocess::ResizeMethod;
use crate::runtime::session::{Execution, PolicyOptions};

use super::control::safety::{JointLimits, Violation, Workspace};
use super::control::scheduler::{Alignment, ChunkMode};
use super::error::NodeError;

use super::control::urdf::UrdfChain;

/// Parameters every ROS node may receive from launch_ros besides its own.
const ALWAYS_ALLOWED: &[&str] = &["use_sim_time"];
/// Prefix of rclcpp's QoS override parameters (accepted and ignored).
const QOS_OVERRIDES: &str = "qos_overrides.";
/// Highest accepted control rate.
const MAX_CONTROL_RATE_HZ: f64 = 1000.0;
/// Lowest accepted control rate: one step per 100 s. Below it the period would not fit a
/// `Duration` (1e-300 Hz) or would stall the robot for hours between steps.
const MIN_CONTROL_RATE_HZ: f64 = 0.01;
/// Longest accepted timeout of any kind (one day).
const MAX_TIMEOUT_S: f64 = 86_400.0;

/// Reads parameters and remembers every name it was asked for, so unknown ones can be refused.
pub struct ParamReader<'a> {
    params: &'a Params,
    known: Vec<&'static str>,
}

impl<'a> ParamReader<'a> {
    pub fn new(params: &'a Params) -> Self {
        Self {
            params,
            known: Vec::new(),
        }
    }

    fn note(&mut self, name: &'static str) -> &'static str {
        self.known.push(name);
        name
    }

    pub fn f64(&mut self, name: &'static str, default: f64) -> Result<f64, NodeError> {
        let n = self.note(name);
        Ok(self.params.f64_or(n, default)?)
    }

    pub fn positive(&mut self, name: &'static str, default: f64) -> Result<f64, NodeError> {
        let v = self.f64(name, default)?;
        if !(v.is_finite() && v > 0.0) {
            return Err(NodeError::config(format!(
                "'{name}' must be a positive number, got {v}"
            )));
        }
        Ok(v)
    }

    /// A duration in seconds within `(0, max_s]` (or exactly 0 when `zero_off`: the feature is off).
    pub fn seconds(
        &mut self,
        name: &'static str,
        default: f64,
        max_s: f64,
        zero_off: bool,
    ) -> Result<Duration, NodeError> {
        let v = self.f64(name, default)?;
        if zero_off && v == 0.0 {
            return Ok(Duration::ZERO);
        }
        if !(v.is_finite() && v > 0.0 && v <= max_s) {
            return Err(NodeError::config(format!(
                "'{name}' must be a number of seconds in (0, {max_s}]{}, got {v}",
                if zero_off { " (0: off)" } else { "" }
            )));
        }
        Ok(Duration::from_secs_f64(v))
    }

    pub fn bool(&mut self, name: &'static str, default: bool) -> Result<bool, NodeError> {
        let n = self.note(name);
        Ok(self.params.bool_or(n, default)?)
    }

    pub fn i64(&mut self, name: &'static str, default: i64) -> Result<i64, NodeError> {
        let n = self.note(name);
        Ok(self.params.i64_or(n, default)?)
    }

    pub fn string(&mut self, name: &'static str, default: &str) -> Result<String, NodeError> {
        let n = self.note(name);
        Ok(self.params.string_or(n, default)?)
    }

    pub fn opt_string(&mut self, name: &'static str) -> Result<Option<String>, NodeError> {
        let n = self.note(name);
        Ok(self.params.string(n)?.filter(|s| !s.is_empty()))
    }

    pub fn f64_array(&mut self, name: &'static str) -> Result<Option<Vec<f64>>, NodeError> {
        let n = self.note(name);
        Ok(self.params.f64_array(n)?.filter(|v| !v.is_empty()))
    }

    pub fn string_array(&mut self, name: &'static str) -> Result<Vec<String>, NodeError> {
        let n = self.note(name);
        Ok(self.params.string_array(n)?.unwrap_or_default())
    }

    /// Refuses parameters nobody asked for (typos would otherwise be silently ignored).
    pub fn finish(self, node: &str) -> Result<(), NodeError> {
        let unknown: Vec<&String> = self
            .params
            .iter()
            .map(|(k, _)| k)
            .filter(|k| {
                !self.known.contains(&k.as_str())
                    && !ALWAYS_ALLOWED.contains(&k.as_str())
                    && !k.starts_with(QOS_OVERRIDES)
            })
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let mut known = self.known.clone();
        known.extend_from_slice(ALWAYS_ALLOWED);
        known.sort_unstable();
        known.dedup();
        Err(NodeError::config(format!(
            "unknown parameter(s) {} for {node}; known parameters: {}",
            unknown.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", "),
            known.join(", ")
        )))
    }
}

/// Longest accepted `policy_timeout_s`: one answer of a remote policy.
const MAX_POLICY_TIMEOUT_S: f64 = 600.0;
/// Longest accepted `policy_startup_wait_s`.
const MAX_POLICY_STARTUP_WAIT_S: f64 = 3600.0;

/// What loads the policy (checkpoint, head, conventions, device), or the policy server to use.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    /// The local model's options. With `remote`, only the post-processing fields (`preset`,
    /// `unnorm_key`, `realworld_stats`) are used and the paths are empty.
    pub options: PolicyOptions,
    /// `policy_url`: the model runs on a policy server (no checkpoint is loaded here).
    pub remote: Option<RemoteSettings>,
    /// `dataset_statistics` (with `policy_url`): the LIBERO/Bridge q01/q99 bounds, which a
    /// local checkpoint carries in its own `dataset_statistics.json`.
    pub dataset_statistics: Option<PathBuf>,
    /// libtorch intra-op threads (0: libtorch's choice).
    pub threads: i64,
    /// Nice value of the inference thread (0: unchanged), so the control path runs first.
    pub inference_nice: i32,
}

impl PolicyConfig {
    fn read(r: &mut ParamReader) -> Result<Self, NodeError> {
        let remote = read_remote(r)?;
        let dataset_statistics = r.opt_string("dataset_statistics")?.map(PathBuf::from);
        let checkpoint = r.opt_string("checkpoint")?;
        let decoder = r.opt_string("decoder")?;
        let mut o = match &remote {
            Some(_) => {
                if let Some(name) = [("checkpoint", &checkpoint), ("decoder", &decoder)]
                    .into_iter()
                    .find_map(|(n, v)| v.is_some().then_some(n))
                {
                    return Err(NodeError::config(format!(
                        "'{name}' and 'policy_url' are mutually exclusive: with 'policy_url' the model \
                         runs on the policy server; remove one of them"
                    )));
                }
                PolicyOptions::new(PathBuf::new(), PathBuf::new())
            }
            None => {
                if dataset_statistics.is_some() {
                    return Err(NodeError::config(
                        "'dataset_statistics' is only used with 'policy_url' (a checkpoint has its own)",
                    ));
                }
                let checkpoint = PathBuf::from(checkpoint.ok_or_else(|| {
                    NodeError::config(
                        "'checkpoint' (the checkpoint directory) or 'policy_url' (a policy server) is required",
                    )
                })?);
                let decoder = match decoder {
                    Some(d) => {
                        let p = PathBuf::from(d);
                        if p.is_relative() && !p.exists() {
                            checkpoint.join(p)
                        } else {
                            p
                        }
                    }
                    None => return Err(NodeError::config("'decoder' (the action head file) is required")),
                };
                PolicyOptions::new(&checkpoint, decoder)
            }
        };
        o.device =
            parse_device(&r.string("device", "cpu")?).map_err(|e| NodeError::config(format!("'device': {e}")))?;
        o.dtype = parse_dtype(&r.string("dtype", "f32")?).map_err(|e| NodeError::config(format!("'dtype': {e}")))?;
        let seed = r.i64("seed", -1)?;
        o.seed = (seed >= 0).then_some(seed);
        o.decoding = if r.bool("greedy", false)? {
            Decoding::Greedy
        } else {
            Decoding::reference_sampling()
        };
        o.preset = match r.opt_string("preset")? {
            Some(p) => Some(Preset::from_name(&p).ok_or_else(|| {
                NodeError::config(format!(
                    "'preset' is '{p}'; expected libero, bridge, calvin, real_world or r2r"
                ))
            })?),
            None => None,
        };
        o.unnorm_key = r.opt_string("unnorm_key")?;
        o.realworld_stats = r.opt_string("realworld_stats")?.map(PathBuf::from);
        o.resize = match r.string("resize", "pil")?.as_str() {
            "pil" => ResizeMethod::PilBicubic,
            "opencv-cubic" => ResizeMethod::OpenCvCubic,
            "opencv-area" => ResizeMethod::OpenCvArea,
            other => {
                return Err(NodeError::config(format!(
                    "'resize' is '{other}'; expected pil, opencv-cubic or opencv-area"
                )))
            }
        };
        // The node schedules chunks itself; the session only provides raw chunks.
        o.execution = Execution::Ensemble;
        o.progress = false;
        let threads = r.i64("threads", 0)?;
        if threads < 0 {
            return Err(NodeError::config("'threads' must be 0 (automatic) or positive"));
        }
        let inference_nice = r.i64("inference_nice", 10)?;
        if !(0..=19).contains(&inference_nice) {
            return Err(NodeError::config(
                "'inference_nice' must be within 0..=19 (0: unchanged)",
            ));
        }
        Ok(Self {
            options: o,
            remote,
            dataset_statistics,
            threads,
            inference_nice: inference_nice as i32,
        })
    }
}

/// `policy_url`, `policy_api_key`, `policy_timeout_s`, `policy_startup_wait_s`: the policy
/// server, if one is named (the others are refused without it).
fn read_remote(r: &mut ParamReader) -> Result<Option<RemoteSettings>, NodeError> {
    let url = r.opt_string("policy_url")?;
    let api_key = r.opt_string("policy_api_key")?;
    let timeout = r.seconds("policy_timeout_s", 5.0, MAX_POLICY_TIMEOUT_S, false)?;
    let startup_wait = r.seconds("policy_startup_wait_s", 30.0, MAX_POLICY_STARTUP_WAIT_S, true)?;
    let Some(url) = url else {
        if api_key.is_some() {
            return Err(NodeError::config("'policy_api_key' is only used with 'policy_url'"));
        }
        return Ok(None);
    };
    let endpoint = Endpoint::parse(&url, api_key).map_err(|e| NodeError::config(e.to_string()))?;
    Ok(Some(RemoteSettings {
        endpoint,
        timeout,
        startup_wait,
    }))
}

/// Settings both nodes share.
#[derive(Clone, Debug)]
pub struct CommonConfig {
    pub policy: PolicyConfig,
    pub control_rate_hz: f64,
    /// Camera topic (`sensor_msgs/Image`, or `CompressedImage` when `compressed`).
    pub image_topic: String,
    pub compressed: bool,
    /// Subscribe to the camera reliably (default best effort, like camera drivers publish).
    pub image_reliable: bool,
    pub image_timeout: Duration,
    /// Instruction topic (`std_msgs/String`) that starts/replaces a task, if enabled.
    pub instruction_topic: Option<String>,
    pub estop_topic: String,
    pub dry_run: bool,
    pub max_instruction_chars: usize,
    pub chunk_mode: ChunkMode,
    pub diagnostics_period: Duration,
    pub publish_monitoring: bool,
    /// SCHED_FIFO priority of the control loop and input threads (0: normal scheduling).
    pub realtime_priority: i32,
    pub frame_id: String,
    /// Dead-man mode: hold unless a `false` arrives on the e-stop topic this often (zero: off).
    pub estop_heartbeat_timeout: Duration,
    /// What a fault inside the node (inference error or panic, a stopped worker) does after the
    /// robot is held and the goal aborted.
    pub on_fault: FaultPolicy,
    /// An inference running longer than this is a fault (zero: no limit).
    pub inference_timeout: Duration,
    /// Camera images declaring more pixels are refused before decoding (`max_image_pixels`).
    pub max_image_pixels: u64,
    /// How long the action server keeps an ended goal's result for `get_result` (rcl_action's
    /// `result_timeout`).
    pub result_timeout: Duration,
}

/// What the node does after a fault inside it, once the robot holds and the goal is aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPolicy {
    /// Stay up (ERROR in `/diagnostics` until the next goal is accepted).
    Recover,
    /// Exit with a non-zero status (a launch file's `respawn` or an operator restarts it).
    Exit,
}

/// Largest `max_image_pixels` accepted: 1 GP (a 3 GB RGB buffer).
const MAX_IMAGE_PIXELS_LIMIT: i64 = 1_000_000_000;

/// `max_image_pixels`: positive, at most [`MAX_IMAGE_PIXELS_LIMIT`].
fn read_max_image_pixels(r: &mut ParamReader) -> Result<u64, NodeError> {
    let default = crate::runtime::preprocess::DEFAULT_MAX_PIXELS as i64;
    let v = r.i64("max_image_pixels", default)?;
    if !(1..=MAX_IMAGE_PIXELS_LIMIT).contains(&v) {
        return Err(NodeError::config(format!(
            "'max_image_pixels' must be within [1, {MAX_IMAGE_PIXELS_LIMIT}], got {v}"
        )));
    }
    Ok(v as u64)
}

impl CommonConfig {
    fn read(r: &mut ParamReader, instruction_topic_default: bool) -> Result<Self, NodeError> {
        let policy = PolicyConfig::read(r)?;
        let control_rate_hz = r.positive("control_rate_hz", 10.0)?;
        if !(MIN_CONTROL_RATE_HZ..=MAX_CONTROL_RATE_HZ).contains(&control_rate_hz) {
            return Err(NodeError::config(format!(
                "'control_rate_hz' must be within [{MIN_CONTROL_RATE_HZ}, {MAX_CONTROL_RATE_HZ}] Hz, got {control_rate_hz}"
            )));
        }
        let compressed = r.bool("compressed", false)?;
        let image_topic = r.string(
            "image_topic",
            if compressed {
                "image_raw/compressed"
            } else {
                "image_raw"
            },
        )?;
        let image_reliable = r.bool("image_reliable", false)?;
        let image_timeout = r.seconds("image_timeout_s", 1.0, MAX_TIMEOUT_S, false)?;
        let use_instr = r.bool("use_instruction_topic", instruction_topic_default)?;
        let instr = r.string("instruction_topic", "instruction")?;
        let estop_topic = r.string("estop_topic", "estop")?;
        let dry_run = r.bool("dry_run", false)?;
        let max_chars = r.i64("max_instruction_chars", 1024)?;
        if max_chars <= 0 {
            return Err(NodeError::config("'max_instruction_chars' must be positive"));
        }
        // Both modes' parameters are read, so either may appear in a file shared between modes.
        let ensemble_size = usize::try_from(r.i64("ensemble_size", 0)?)
            .map_err(|_| NodeError::config("'ensemble_size' must be >= 0 (0: the preset's)"))?;
        let replan_every = usize::try_from(r.i64("replan_every", 0)?).ok().filter(|&k| k > 0);
        let chunk_mode = match r.string("execution", "ensemble")?.as_str() {
            "ensemble" => ChunkMode::Ensemble { size: ensemble_size },
            "open_loop" => ChunkMode::OpenLoop { replan_every },
            other => {
                return Err(NodeError::config(format!(
                    "'execution' is '{other}'; expected ensemble or open_loop"
                )))
            }
        };
        let realtime_priority = r.i64("realtime_priority", 0)?;
        if !(0..=99).contains(&realtime_priority) {
            return Err(NodeError::config(
                "'realtime_priority' must be within 0..=99 (0: normal scheduling)",
            ));
        }
        let realtime_priority = realtime_priority as i32;
        Ok(Self {
            policy,
            control_rate_hz,
            image_topic,
            compressed,
            image_reliable,
            image_timeout,
            instruction_topic: use_instr.then_some(instr),
            estop_topic,
            dry_run,
            max_instruction_chars: max_chars as usize,
            chunk_mode,
            diagnostics_period: r.seconds("diagnostics_period_s", 1.0, MAX_TIMEOUT_S, false)?,
            publish_monitoring: r.bool("publish_monitoring", true)?,
            realtime_priority,
            frame_id: r.string("frame_id", "base_link")?,
            estop_heartbeat_timeout: r.seconds("estop_heartbeat_timeout_s", 0.0, MAX_TIMEOUT_S, true)?,
            on_fault: match r.string("on_fault", "recover")?.as_str() {
                "recover" => FaultPolicy::Recover,
                "exit" => FaultPolicy::Exit,
                other => {
                    return Err(NodeError::config(format!(
                        "'on_fault' is '{}'; expected recover or exit",
                        crate::node::control::core::clip(other, 64)
                    )))
                }
            },
            inference_timeout: r.seconds("inference_timeout_s", 30.0, MAX_TIMEOUT_S, true)?,
            max_image_pixels: read_max_image_pixels(r)?,
            result_timeout: r.seconds(
                "result_timeout_s",
                crate::ros::action::DEFAULT_RESULT_TIMEOUT.as_secs_f64(),
                MAX_TIMEOUT_S,
                false,
            )?,
        })
    }

    /// One control period.
    pub fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.control_rate_hz)
    }
}

/// Forward kinematics that turn a joint-space chunk into a tool path for the chunk markers.
#[derive(Clone, Debug, PartialEq)]
pub struct FkPath {
    /// The `urdf_base_link` → `urdf_tip_link` chain of `urdf_path`.
    pub chain: UrdfChain,
    /// For each movable chain joint, its index in `joint_names`.
    pub map: Vec<usize>,
}

impl FkPath {
    /// Loads the chain and matches its joints to `joint_names`; errors name the parameter.
    pub fn load(path: &Path, base: &str, tip: &str, joint_names: &[String]) -> Result<Self, NodeError> {
        let err = |e| NodeError::config(format!("'urdf_path': {e}"));
        let chain = UrdfChain::from_file(path, base, tip).map_err(err)?;
        let map = chain.index_map(joint_names).map_err(err)?;
        Ok(Self { chain, map })
    }

    /// The tip pose (in `urdf_base_link`) of every chunk row given in `joint_names` order; rows
    /// too short for the chain or with non-finite chain values are skipped.
    pub fn tip_path(&self, points: &[Vec<f64>]) -> Vec<Isometry3<f64>> {
        self.chain.tip_path(points, &self.map)
    }
}

/// The URDF parameters: all three or none.
fn read_urdf(r: &mut ParamReader) -> Result<Option<(PathBuf, String, String)>, NodeError> {
    const NAMES: [&str; 3] = ["urdf_path", "urdf_base_link", "urdf_tip_link"];
    let given = [
        r.opt_string(NAMES[0])?,
        r.opt_string(NAMES[1])?,
        r.opt_string(NAMES[2])?,
    ];
    match given {
        [None, None, None] => Ok(None),
        [Some(path), Some(base), Some(tip)] => Ok(Some((PathBuf::from(path), base, tip))),
        given => {
            let list = |set: bool| {
                NAMES
                    .iter()
                    .zip(&given)
                    .filter(|(_, v)| v.is_some() == set)
                    .map(|(n, _)| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Err(NodeError::config(format!(
                "'urdf_path', 'urdf_base_link' and 'urdf_tip_link' go together (the chunk markers' tool path): \
                 {} given but {} missing",
                list(true),
                list(false)
            )))
        }
    }
}

/// How the arm's actions are interpreted.
#[derive(Clone, Debug, PartialEq)]
pub enum ArmOutput {
    /// Absolute joint positions (real-world head) → `JointTrajectory` (topic or action).
    Joints {
        joint_names: Vec<String>,
        limits: JointLimits,
        trajectory_topic: String,
        /// `control_msgs/FollowJointTrajectory` action name, when the controller only takes actions.
        follow_action: Option<String>,
        /// Forward kinematics for drawing the chunk as a tool path (`urdf_*` parameters), if configured.
        fk: Option<FkPath>,
    },
    /// End-effector deltas (xyz, rpy, gripper; LIBERO/Bridge) → `PoseStamped` targets + gripper.
    EefDelta {
        pose_topic: String,
        gripper_topic: String,
        /// Start pose `[x, y, z, roll, pitch, yaw]` of the integration (in `frame_id`).
        initial_pose: [f64; 6],
        workspace: Workspace,
        translation_scale: f64,
        rotation_scale: f64,
        /// Joint names to watch for staleness when a joint-state topic is used (may be empty).
        joint_names: Vec<String>,
    },
}

/// `univla_arm` settings.
#[derive(Clone, Debug)]
pub struct ArmConfig {
    pub common: CommonConfig,
    pub output: ArmOutput,
    pub joint_state_topic: String,
    pub joint_state_timeout: Duration,
    /// `chunk_alignment`: where a chunk's rows start.
    pub alignment: ChunkAlignment,
}

/// Where a chunk's first row is executed (see [`crate::node::control::scheduler::Alignment`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkAlignment {
    /// `reference` for the real-world head (its last-8-rows rule), `measured` for the others.
    Auto,
    /// Rows keep the frame's step; steps that passed during inference are dropped.
    Measured,
    /// As the reference scripts: the chunk starts at the step it arrives at (real-world head: its
    /// last 8 rows).
    Reference,
}

impl ChunkAlignment {
    /// The scheduler alignment for a head of `preset` whose ensemble spans `temporal_size` chunks
    /// (the real-world head keeps that many last rows: 8, or its window when shorter).
    pub fn resolve(self, preset: Preset, temporal_size: usize) -> Alignment {
        let keep = (preset == Preset::RealWorld).then_some(temporal_size);
        match (self, preset) {
            (ChunkAlignment::Measured, _) => Alignment::Measured,
            (ChunkAlignment::Auto, Preset::RealWorld) | (ChunkAlignment::Reference, _) => Alignment::Reference { keep },
            (ChunkAlignment::Auto, _) => Alignment::Measured,
        }
    }
}

fn fixed<const N: usize>(name: &str, v: Option<Vec<f64>>, default: [f64; N]) -> Result<[f64; N], NodeError> {
    match v {
        None => Ok(default),
        Some(v) => v
            .try_into()
            .map_err(|v: Vec<f64>| NodeError::config(format!("'{name}' needs {N} values, got {}", v.len()))),
    }
}

impl ArmConfig {
    pub const NODE_NAME: &'static str = "univla_arm";

    pub fn from_params(p: &Params) -> Result<Self, NodeError> {
        let mut r = ParamReader::new(p);
        let common = CommonConfig::read(&mut r, false)?;
        let joint_state_topic = r.string("joint_state_topic", "joint_states")?;
        let joint_state_timeout = r.seconds("joint_state_timeout_s", 0.5, MAX_TIMEOUT_S, false)?;
        let joint_names = r.string_array("joint_names")?;
        let mut seen = std::collections::HashSet::new();
        if let Some(d) = joint_names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(NodeError::config(format!("'joint_names' lists '{d}' twice")));
        }
        let mode = match r.string("on_limit", "clamp")?.as_str() {
            "clamp" => Violation::Clamp,
            "refuse" => Violation::Refuse,
            other => {
                return Err(NodeError::config(format!(
                    "'on_limit' is '{other}'; expected clamp or refuse"
                )))
            }
        };
        // Parameters of both action spaces are read (and so known) whichever is chosen.
        let (pmin, pmax) = (r.f64_array("position_min")?, r.f64_array("position_max")?);
        let (vmax, smax) = (r.f64_array("max_velocity")?, r.f64_array("max_step")?);
        let follow = r.bool("use_follow_joint_trajectory", false)?;
        let follow_name = r.string("follow_joint_trajectory_action", "follow_joint_trajectory")?;
        let trajectory_topic = r.string("trajectory_topic", "joint_trajectory")?;
        let initial_pose = fixed(
            "initial_pose",
            r.f64_array("initial_pose")?,
            [0.4, 0.0, 0.3, 0.0, 0.0, 0.0],
        )?;
        let lo = fixed("workspace_min", r.f64_array("workspace_min")?, [-1.0, -1.0, -0.2])?;
        let hi = fixed("workspace_max", r.f64_array("workspace_max")?, [1.0, 1.0, 1.2])?;
        let max_translation_step = r.positive("max_translation_step", 0.05)?;
        let max_rotation_step = r.positive("max_rotation_step", 0.25)?;
        let pose_topic = r.string("pose_topic", "eef_target")?;
        let gripper_topic = r.string("gripper_topic", "gripper_command")?;
        let translation_scale = r.positive("translation_scale", 1.0)?;
        let rotation_scale = r.positive("rotation_scale", 1.0)?;
        let alignment = match r.string("chunk_alignment", "auto")?.as_str() {
            "auto" => ChunkAlignment::Auto,
            "measured" => ChunkAlignment::Measured,
            "reference" => ChunkAlignment::Reference,
            other => {
                return Err(NodeError::config(format!(
                    "'chunk_alignment' is '{other}'; expected auto, measured or reference"
                )))
            }
        };
        // joint_position only (eef_delta markers already are poses); checked for completeness in both.
        let urdf = read_urdf(&mut r)?;
        let output = match r.string("action_space", "joint_position")?.as_str() {
            "joint_position" => {
                if joint_names.is_empty() {
                    return Err(NodeError::config(
                        "'joint_names' is required with action_space joint_position",
                    ));
                }
                let n = joint_names.len();
                let limits = JointLimits::new(pmin, pmax, vmax, smax, n, mode).map_err(NodeError::Config)?;
                let fk = match urdf {
                    Some((path, base, tip)) => Some(FkPath::load(&path, &base, &tip, &joint_names)?),
                    None => None,
                };
                ArmOutput::Joints {
                    joint_names,
                    limits,
                    trajectory_topic,
                    follow_action: follow.then_some(follow_name),
                    fk,
                }
            }
            "eef_delta" => {
                let workspace =
                    Workspace::new(lo, hi, max_translation_step, max_rotation_step, mode).map_err(NodeError::Config)?;
                if !workspace.contains(&[initial_pose[0], initial_pose[1], initial_pose[2]]) {
                    return Err(NodeError::config("'initial_pose' lies outside the workspace"));
                }
                ArmOutput::EefDelta {
                    pose_topic,
                    gripper_topic,
                    initial_pose,
                    workspace,
                    translation_scale,
                    rotation_scale,
                    joint_names,
                }
            }
            other => {
                return Err(NodeError::config(format!(
                    "'action_space' is '{other}'; expected joint_position or eef_delta"
                )))
            }
        };
        r.finish(Self::NODE_NAME)?;
        Ok(Self {
            common,
            output,
            joint_state_topic,
            joint_state_timeout,
            alignment,
        })
    }

    /// Joint names used for proprio and staleness checks.
    pub fn joint_names(&self) -> &[String] {
        match &self.output {
            ArmOutput::Joints { joint_names, .. } | ArmOutput::EefDelta { joint_names, .. } => joint_names,
        }
    }

    /// Checks the configuration against the loaded head (action width, proprio).
    pub fn check_model(&self, action_dim: usize, needs_proprio: bool, preset: Preset) -> Result<(), NodeError> {
        match &self.output {
            ArmOutput::Joints { joint_names, .. } => {
                if joint_names.len() != action_dim {
                    return Err(NodeError::config(format!(
                        "'joint_names' has {} names but the action head outputs {action_dim} values per step",
                        joint_names.len()
                    )));
                }
                if preset == Preset::R2r {
                    return Err(NodeError::config("an R2R head drives a base: use univla_nav"));
                }
            }
            ArmOutput::EefDelta { .. } => {
                if !matches!(preset, Preset::Libero | Preset::Bridge | Preset::Calvin) || action_dim != 7 {
                    return Err(NodeError::config(format!(
                        "action_space eef_delta needs a 7-D LIBERO/Bridge/CALVIN head, got {preset:?} with {action_dim} values"
                    )));
                }
            }
        }
        if needs_proprio && self.joint_names().len() != action_dim {
            return Err(NodeError::config(format!(
                "the head needs {action_dim} proprio values: list them in 'joint_names'"
            )));
        }
        Ok(())
    }
}

/// The velocity profile of the discrete R2R actions.
#[derive(Clone, Debug, PartialEq)]
pub struct NavProfile {
    pub forward_m: f64,
    pub turn_deg: f64,
    pub linear_speed: f64,
    pub angular_speed_deg: f64,
    /// Pause after a motion before the next image is used (the camera must see the new pose).
    pub settle: Duration,
}

/// Largest accepted base speeds and motion sizes: anything beyond is a typo, not a robot.
const MAX_LINEAR_SPEED: f64 = 5.0;
const MAX_ANGULAR_SPEED_DEG: f64 = 720.0;
const MAX_FORWARD_M: f64 = 10.0;
const MAX_TURN_DEG: f64 = 360.0;
/// Longest accepted duration of one motion (s).
const MAX_MOTION_S: f64 = 600.0;

impl NavProfile {
    /// Reads and checks the base's speeds and motion sizes; every error names the parameter.
    fn read(r: &mut ParamReader) -> Result<Self, NodeError> {
        let within = |name: &str, v: f64, max: f64, unit: &str| -> Result<f64, NodeError> {
            if v.is_finite() && v > 0.0 && v <= max {
                Ok(v)
            } else {
                Err(NodeError::config(format!(
                    "'{name}' must be in (0, {max}] {unit}, got {v}"
                )))
            }
        };
        let forward_m = within(
            "forward_m",
            r.f64("forward_m", crate::runtime::postprocess::NAV_FORWARD_M)?,
            MAX_FORWARD_M,
            "m",
        )?;
        let turn_deg = within(
            "turn_deg",
            r.f64("turn_deg", crate::runtime::postprocess::NAV_TURN_DEG)?,
            MAX_TURN_DEG,
            "degrees",
        )?;
        let linear_speed = within("linear_speed", r.f64("linear_speed", 0.25)?, MAX_LINEAR_SPEED, "m/s")?;
        let angular_speed_deg = within(
            "angular_speed_deg",
            r.f64("angular_speed_deg", 30.0)?,
            MAX_ANGULAR_SPEED_DEG,
            "degrees/s",
        )?;
        for (what, secs) in [
            ("forward_m / linear_speed", forward_m / linear_speed),
            ("turn_deg / angular_speed_deg", turn_deg / angular_speed_deg),
        ] {
            if secs > MAX_MOTION_S {
                return Err(NodeError::config(format!(
                    "one motion would last {secs:.0} s ({what}); at most {MAX_MOTION_S} s"
                )));
            }
        }
        let settle_s = r.f64("settle_s", 0.2)?;
        if !(settle_s.is_finite() && (0.0..=MAX_MOTION_S).contains(&settle_s)) {
            return Err(NodeError::config(format!(
                "'settle_s' must be in [0, {MAX_MOTION_S}] s, got {settle_s}"
            )));
        }
        Ok(Self {
            forward_m,
            turn_deg,
            linear_speed,
            angular_speed_deg,
            settle: Duration::from_secs_f64(settle_s),
        })
    }
}

/// `univla_nav` settings.
#[derive(Clone, Debug)]
pub struct NavConfig {
    pub common: CommonConfig,
    pub cmd_vel_topic: String,
    pub twist_stamped: bool,
    pub profile: NavProfile,
    /// Decisions after which a goal without STOP ends (0: none besides the goal's own limit).
    pub max_decisions: u32,
}

impl NavConfig {
    pub const NODE_NAME: &'static str = "univla_nav";

    pub fn from_params(p: &Params) -> Result<Self, NodeError> {
        let mut r = ParamReader::new(p);
        let common = CommonConfig::read(&mut r, true)?;
        let profile = NavProfile::read(&mut r)?;
        let max_decisions = r.i64("max_decisions", 500)?;
        let cfg = Self {
            cmd_vel_topic: r.string("cmd_vel_topic", "cmd_vel")?,
            twist_stamped: r.bool("twist_stamped", false)?,
            profile,
            max_decisions: u32::try_from(max_decisions.max(0)).unwrap_or(u32::MAX),
            common,
        };
        r.finish(Self::NODE_NAME)?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ros::RosArgs;
    use crate::runtime::ensemble::REAL_WORLD_TEMPORAL_SIZE;

    fn params(args: &[&str]) -> Params {
        let mut v = vec!["node", "--ros-args"];
        v.extend_from_slice(args);
        let (a, _) = RosArgs::parse(v).unwrap();
        a.resolve_node("univla_arm", "/").unwrap().params
    }

    const BASE: &[&str] = &["-p", "checkpoint:=/ckpt", "-p", "decoder:=/ckpt/head.safetensors"];

    fn arm(extra: &[&str]) -> Result<ArmConfig, NodeError> {
        let mut v = BASE.to_vec();
        v.extend_from_slice(extra);
        ArmConfig::from_params(&params(&v))
    }

    #[test]
    fn unknown_parameter_lists_known_ones() {
        let e = arm(&["-p", "joint_names:=[a]", "-p", "contol_rate_hz:=5"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown parameter(s) 'contol_rate_hz'"), "{e}");
        assert!(e.contains("control_rate_hz"), "{e}");
        assert!(e.contains("use_sim_time"), "{e}");
        // use_sim_time and QoS overrides are always accepted.
        arm(&[
            "-p",
            "joint_names:=[a]",
            "-p",
            "use_sim_time:=true",
            "-p",
            "qos_overrides./x.depth:=3",
        ])
        .unwrap();
    }

    #[test]
    fn joint_limits_lengths_are_cross_checked() {
        let e = arm(&["-p", "joint_names:=[a, b]", "-p", "position_min:=[0.0]"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("position_min") && e.contains("2"), "{e}");
        let e = arm(&["-p", "joint_names:=[a, a]"]).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let e = arm(&[]).unwrap_err().to_string();
        assert!(e.contains("joint_names"), "{e}");
        let c = arm(&["-p", "joint_names:=[a, b]", "-p", "max_step:=[0.1, 0.2]"]).unwrap();
        assert!(c
            .check_model(3, false, Preset::RealWorld)
            .unwrap_err()
            .to_string()
            .contains("2 names"));
        c.check_model(2, false, Preset::RealWorld).unwrap();
    }

    #[test]
    fn bad_values_are_explained() {
        let e = ArmConfig::from_params(&params(&["-p", "decoder:=x"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'checkpoint'"), "{e}");
        let e = arm(&["-p", "joint_names:=[a]", "-p", "control_rate_hz:=0"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("control_rate_hz"), "{e}");
        let e = arm(&["-p", "joint_names:=[a]", "-p", "execution:=sometimes"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ensemble or open_loop"), "{e}");
        let e = arm(&[
            "-p",
            "action_space:=eef_delta",
            "-p",
            "initial_pose:=[5.0, 0.0, 0.0, 0.0, 0.0, 0.0]",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("workspace"), "{e}");
    }

    #[test]
    fn chunk_alignment_follows_the_head_unless_set() {
        let a = arm(&["-p", "joint_names:=[a]"]).unwrap();
        assert_eq!(a.alignment, ChunkAlignment::Auto);
        assert_eq!(
            a.alignment.resolve(Preset::RealWorld, REAL_WORLD_TEMPORAL_SIZE),
            Alignment::Reference {
                keep: Some(REAL_WORLD_TEMPORAL_SIZE)
            }
        );
        // A real-world head with a window under 8 keeps its whole (shorter) ensemble span.
        assert_eq!(
            a.alignment.resolve(Preset::RealWorld, 5),
            Alignment::Reference { keep: Some(5) }
        );
        assert_eq!(a.alignment.resolve(Preset::Libero, 12), Alignment::Measured);
        let m = arm(&["-p", "joint_names:=[a]", "-p", "chunk_alignment:=measured"]).unwrap();
        assert_eq!(m.alignment.resolve(Preset::RealWorld, 8), Alignment::Measured);
        let r = arm(&["-p", "joint_names:=[a]", "-p", "chunk_alignment:=reference"]).unwrap();
        assert_eq!(
            r.alignment.resolve(Preset::Bridge, 5),
            Alignment::Reference { keep: None }
        );
        let e = arm(&["-p", "joint_names:=[a]", "-p", "chunk_alignment:=late"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("auto, measured or reference"), "{e}");
        let e = arm(&["-p", "joint_names:=[a]", "-p", "realtime_priority:=120"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("0..=99"), "{e}");
        let e = arm(&["-p", "joint_names:=[a]", "-p", "inference_nice:=-5"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("0..=19"), "{e}");
    }

    /// Values that pass a plain "positive" check but would overflow a `Duration` (or stall the
    /// robot) are refused at start-up with the parameter's name, never a panic.
    #[test]
    fn extreme_values_name_the_parameter() {
        for (name, value) in [
            ("control_rate_hz", "1e-300"),
            ("control_rate_hz", "1e300"),
            ("image_timeout_s", "1e20"),
            ("image_timeout_s", "1e300"),
            ("diagnostics_period_s", "1e20"),
            ("joint_state_timeout_s", "1e20"),
            ("estop_heartbeat_timeout_s", "1e20"),
            ("inference_timeout_s", "1e20"),
            ("result_timeout_s", "1e20"),
            ("max_image_pixels", "0"),
            ("max_image_pixels", "-1"),
            ("max_image_pixels", "2000000000"),
        ] {
            let setting = format!("{name}:={value}");
            let e = arm(&["-p", "joint_names:=[a]", "-p", &setting])
                .err()
                .unwrap_or_else(|| panic!("{setting} was accepted"))
                .to_string();
            assert!(e.contains(name), "{setting}: {e}");
        }
        for (name, value) in [
            ("turn_deg", "1e300"),
            ("forward_m", "1e300"),
            ("linear_speed", "1e-300"),
            ("angular_speed_deg", "1e-300"),
            ("settle_s", "1e20"),
            ("control_rate_hz", "1e-300"),
            ("image_timeout_s", "1e20"),
        ] {
            let setting = format!("{name}:={value}");
            let mut v = BASE.to_vec();
            v.extend_from_slice(&["-p", &setting]);
            let e = NavConfig::from_params(&params(&v))
                .err()
                .unwrap_or_else(|| panic!("{setting} was accepted"))
                .to_string();
            assert!(
                e.contains(name) || (name.contains("speed") && e.contains("one motion would last")),
                "{setting}: {e}"
            );
        }
        // The extremes that are accepted give a finite period.
        let slow = arm(&["-p", "joint_names:=[a]", "-p", "control_rate_hz:=0.01"]).unwrap();
        assert_eq!(slow.common.period(), Duration::from_secs(100));
    }

    #[test]
    fn policy_url_replaces_the_checkpoint() {
        let remote = |extra: &[&str]| {
            let mut v = vec!["-p", "joint_names:=[a]"];
            v.extend_from_slice(extra);
            ArmConfig::from_params(&params(&v))
        };
        let c = remote(&["-p", "policy_url:=ws://gpu-box:8000", "-p", "policy_api_key:=k"]).unwrap();
        let r = c.common.policy.remote.as_ref().unwrap();
        assert_eq!(r.endpoint.url(), "ws://gpu-box:8000");
        assert_eq!(
            (r.timeout, r.startup_wait),
            (Duration::from_secs(5), Duration::from_secs(30))
        );
        let c = remote(&[
            "-p",
            "policy_url:=ws://10.0.0.2:8000",
            "-p",
            "policy_timeout_s:=0.5",
            "-p",
            "policy_startup_wait_s:=0",
            "-p",
            "dataset_statistics:=/stats.json",
        ])
        .unwrap();
        let r = c.common.policy.remote.as_ref().unwrap();
        assert_eq!(
            (r.timeout, r.startup_wait),
            (Duration::from_millis(500), Duration::ZERO)
        );
        assert_eq!(c.common.policy.dataset_statistics, Some(PathBuf::from("/stats.json")));
        // Exclusive with a checkpoint, ws:// only, bounded timeouts, remote-only parameters.
        let e = arm(&["-p", "joint_names:=[a]", "-p", "policy_url:=ws://h:1"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'checkpoint' and 'policy_url' are mutually exclusive"),
            "{e}"
        );
        let e = remote(&["-p", "policy_url:=ws://h:1", "-p", "decoder:=x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'decoder' and 'policy_url'"), "{e}");
        let e = remote(&["-p", "policy_url:=wss://h:1"]).unwrap_err().to_string();
        assert!(e.contains("wss://") && e.contains("not supported"), "{e}");
        let e = remote(&["-p", "policy_url:=http://h:1"]).unwrap_err().to_string();
        assert!(e.contains("policy_url"), "{e}");
        for bad in [
            "policy_timeout_s:=0",
            "policy_timeout_s:=1e9",
            "policy_startup_wait_s:=-1",
        ] {
            let name = bad.split(':').next().unwrap_or_default();
            let e = remote(&["-p", "policy_url:=ws://h:1", "-p", bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains(name), "{bad}: {e}");
        }
        let e = arm(&["-p", "joint_names:=[a]", "-p", "policy_api_key:=k"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'policy_api_key' is only used with 'policy_url'"), "{e}");
        let e = arm(&["-p", "joint_names:=[a]", "-p", "dataset_statistics:=/s.json"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'dataset_statistics' is only used"), "{e}");
        let e = remote(&[]).unwrap_err().to_string();
        assert!(e.contains("'checkpoint'") && e.contains("'policy_url'"), "{e}");
        // The navigation node reads the same parameters.
        let n = NavConfig::from_params(&params(&["-p", "policy_url:=ws://h:8000"])).unwrap();
        assert!(n.common.policy.remote.is_some());
    }

    #[test]
    fn nav_defaults() {
        let c = NavConfig::from_params(&params(BASE)).unwrap();
        assert_eq!(c.profile.forward_m, 0.25);
        assert_eq!(c.profile.turn_deg, 15.0);
        assert_eq!(c.common.instruction_topic.as_deref(), Some("instruction"));
        assert!(!c.common.dry_run);
        let a = arm(&["-p", "joint_names:=[a]"]).unwrap();
        assert_eq!(a.common.instruction_topic, None);
        assert_eq!(a.common.chunk_mode, ChunkMode::Ensemble { size: 0 });
    }
}
