//! `univla eval-bag`: replay rosbag2 recordings through a policy and write the report, the plots
//! and a prediction bag.
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::lam::{LamArgs, LamScorer};
use super::metadata::{StorageKind, METADATA_FILE};
use super::metrics::{aggregate, episode_metrics, MetricOptions, DEFAULT_GRIPPER_TOLERANCE};
use super::output::write_prediction_bag;
use super::plots::plot_episode;
use super::replay::{
    camera_frames, replay_bag, BagTopics, CommandAlignment, EpisodeTrace, Latency, ReplayConfig, ReplayMode,
    ReplayPolicy,
};
use super::report::{EpisodeReport, EvalReport, REPORT_VERSION};
use super::BagError;

/// File names inside the output directory.
pub const REPORT_FILE: &str = "report.json";
pub const PLOTS_DIR: &str = "plots";
pub const PREDICTIONS_DIR: &str = "predictions";

/// Query cadence on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Query every step, execute the temporally ensembled action.
    Ensemble,
    /// Query every `--replan-every` steps and execute the chunk open loop.
    OpenLoop,
}

/// Arguments of `univla eval-bag` (the model/checkpoint arguments are the caller's).
#[derive(Debug, Clone, Args)]
pub struct EvalBagArgs {
    /// Bags: rosbag2 directories, .mcap/.db3 files, or folders whose sub-directories are bags
    /// (one episode each).
    #[arg(required = true)]
    pub bags: Vec<PathBuf>,
    /// YAML config with a `bag:` section (top level or under `<node>: ros__parameters:`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Camera topic (Image or CompressedImage); overrides the config.
    #[arg(long)]
    pub camera: Option<String>,
    /// Recorded command topic used as ground truth; overrides the config.
    #[arg(long)]
    pub command: Option<String>,
    /// Which recorded command is a frame's ground truth: `next`, the first one recorded after the
    /// frame (the operator's response to it); `as-of`, the latest at or before it; `nearest`,
    /// the closer of the two.
    #[arg(long, value_enum, default_value_t = CommandAlignment::Next)]
    pub command_alignment: CommandAlignment,
    /// JointState topic for proprioception; overrides the config.
    #[arg(long)]
    pub joint_states: Option<String>,
    /// std_msgs/String instruction topic; overrides the config.
    #[arg(long)]
    pub instruction_topic: Option<String>,
    /// Instruction for every episode (else the topic or the bag's instruction.txt).
    #[arg(long)]
    pub instruction: Option<String>,
    /// Oldest an as-of message may be, relative to its camera frame.
    #[arg(long)]
    pub max_age_ms: Option<f64>,
    #[arg(long, value_enum, default_value_t = ModeArg::Ensemble)]
    pub mode: ModeArg,
    /// Open loop: steps executed from each chunk before re-planning.
    #[arg(long, default_value_t = 8)]
    pub replan_every: usize,
    /// Simulated latency in evaluated steps.
    #[arg(long, conflicts_with_all = ["latency_ms", "latency_measured"])]
    pub latency_steps: Option<usize>,
    /// Simulated latency in bag milliseconds.
    #[arg(long, conflicts_with = "latency_measured")]
    pub latency_ms: Option<f64>,
    /// Use each query's measured inference time as its latency (not deterministic).
    #[arg(long)]
    pub latency_measured: bool,
    /// Action dimension of the gripper (event metrics); overrides the config.
    #[arg(long)]
    pub gripper_dim: Option<usize>,
    /// Gripper open/closed threshold; overrides the config.
    #[arg(long)]
    pub gripper_threshold: Option<f64>,
    /// Steps within which a predicted gripper event matches a recorded one.
    #[arg(long, default_value_t = DEFAULT_GRIPPER_TOLERANCE)]
    pub gripper_tolerance: usize,
    /// Stop each episode after this many camera frames.
    #[arg(long)]
    pub max_frames: Option<usize>,
    /// Camera images declaring more pixels are skipped without decoding (counted as bad images).
    #[arg(long, default_value_t = crate::runtime::preprocess::DEFAULT_MAX_PIXELS,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub max_image_pixels: u64,
    /// Output directory (report.json, plots/, predictions/).
    #[arg(long, short, default_value = "eval_bag_out")]
    pub out: PathBuf,
    #[arg(long)]
    pub no_plots: bool,
    /// Do not write prediction bags.
    #[arg(long)]
    pub no_mcap: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Latent-action accuracy against a LAM (`--lam CHECKPOINT` and friends).
    #[command(flatten)]
    pub lam: LamArgs,
}

impl EvalBagArgs {
    /// The replay configuration these arguments describe.
    pub fn replay_config(&self) -> Result<ReplayConfig, BagError> {
        let mut topics = match &self.config {
            Some(p) => BagTopics::from_yaml_file(p)?,
            None => BagTopics::default(),
        };
        if let Some(v) = &self.camera {
            topics.camera = v.clone();
        }
        if let Some(v) = &self.command {
            topics.command = v.clone();
        }
        if let Some(v) = &self.joint_states {
            topics.joint_states = Some(v.clone());
        }
        if let Some(v) = &self.instruction_topic {
            topics.instruction = Some(v.clone());
        }
        if let Some(v) = self.max_age_ms {
            topics.max_age_ms = v;
        }
        if let Some(v) = self.gripper_dim {
            topics.gripper_dim = Some(v);
        }
        if let Some(v) = self.gripper_threshold {
            topics.gripper_threshold = v;
        }
        let mode = match self.mode {
            ModeArg::Ensemble => ReplayMode::Ensemble,
            ModeArg::OpenLoop if self.replan_every == 0 => {
                return Err(BagError::Config("--replan-every must be at least 1".into()))
            }
            ModeArg::OpenLoop => ReplayMode::OpenLoop {
                replan_every: self.replan_every,
            },
        };
        let latency = match (self.latency_steps, self.latency_ms, self.latency_measured) {
            (Some(n), _, _) => Latency::Steps(n),
            (_, Some(ms), _) => Latency::Millis(ms),
            (_, _, true) => Latency::Measured,
            _ => Latency::None,
        };
        Ok(ReplayConfig {
            topics,
            command_alignment: self.command_alignment,
            mode,
            latency,
            instruction: self.instruction.clone(),
            max_frames: self.max_frames,
            max_image_pixels: self.max_image_pixels,
        })
    }

    /// Output locations and options.
    pub fn outputs(&self) -> EvalOutputs {
        EvalOutputs {
            dir: self.out.clone(),
            plots: !self.no_plots,
            mcap: !self.no_mcap,
            progress: !self.quiet,
            gripper_tolerance_steps: self.gripper_tolerance,
        }
    }
}

/// Where and what [`evaluate`] writes.
#[derive(Debug, Clone)]
pub struct EvalOutputs {
    pub dir: PathBuf,
    pub plots: bool,
    pub mcap: bool,
    pub progress: bool,
    pub gripper_tolerance_steps: usize,
}

fn is_bag(path: &Path) -> bool {
    if path.is_file() {
        return StorageKind::from_path(path).is_some();
    }
    path.join(METADATA_FILE).exists()
        || std::fs::read_dir(path)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .any(|e| StorageKind::from_path(&e.path()).is_some())
            })
            .unwrap_or(false)
}

/// Expands the command-line paths into bags: a bag itself, or a folder of bag sub-directories.
pub fn discover_bags(paths: &[PathBuf]) -> Result<Vec<PathBuf>, BagError> {
    let mut out = Vec::new();
    for p in paths {
        if !p.exists() {
            return Err(BagError::io(
                p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such bag"),
            ));
        }
        if is_bag(p) {
            out.push(p.clone());
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| BagError::io(p, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|s| s.is_dir() && is_bag(s))
            .collect();
        if subs.is_empty() {
            return Err(BagError::Config(format!(
                "{}: neither a rosbag2 bag nor a folder of bags",
                p.display()
            )));
        }
        subs.sort();
        out.extend(subs);
    }
    Ok(out)
}

/// Replays every bag, scores them and writes report, plots and prediction bags under `outputs.dir`.
pub fn evaluate(
    bags: &[PathBuf],
    config: &ReplayConfig,
    outputs: &EvalOutputs,
    policy: &mut dyn ReplayPolicy,
) -> Result<EvalReport, BagError> {
    evaluate_with_lam(bags, config, outputs, policy, None)
}

/// [`evaluate`], and with a LAM also the latent-action accuracy of every episode (the recorded
/// camera frames are labeled in a second pass over each bag).
pub fn evaluate_with_lam(
    bags: &[PathBuf],
    config: &ReplayConfig,
    outputs: &EvalOutputs,
    policy: &mut dyn ReplayPolicy,
    lam: Option<&LamScorer>,
) -> Result<EvalReport, BagError> {
    std::fs::create_dir_all(&outputs.dir).map_err(|e| BagError::io(&outputs.dir, e))?;
    let mut total = 0u64;
    for b in bags {
        let n = camera_frames(b, &config.topics)?;
        total += config.max_frames.map_or(n, |m| n.min(m as u64));
    }
    let bar = if outputs.progress {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} frames ({per_sec}, ETA {eta})",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let opts = MetricOptions {
        gripper_dim: config.topics.gripper_dim,
        gripper_threshold: config.topics.gripper_threshold,
        gripper_tolerance_steps: outputs.gripper_tolerance_steps,
    };
    let mut traces: Vec<EpisodeTrace> = Vec::new();
    let mut episodes = Vec::new();
    for bag in bags {
        bar.set_message(bag.display().to_string());
        let mut trace = replay_bag(bag, config, policy, &mut || bar.inc(1))?;
        if let Some(scorer) = lam {
            let labels = scorer.label_bag(bag, &config.topics, config.max_frames)?;
            trace.latent_accuracy = Some(scorer.score(&trace, &labels));
        }
        // Unique episode names (plots and prediction bags are named after them).
        if traces.iter().any(|t| t.name == trace.name) {
            trace.name = format!("{}_{}", trace.name, traces.len());
        }
        let plots = if outputs.plots {
            plot_episode(&trace, &outputs.dir.join(PLOTS_DIR))?
        } else {
            Vec::new()
        };
        let output_bag = if outputs.mcap {
            let dir = outputs.dir.join(PREDICTIONS_DIR).join(&trace.name);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| BagError::io(&dir, e))?;
            }
            write_prediction_bag(&trace, &dir)?;
            Some(dir)
        } else {
            None
        };
        episodes.push(EpisodeReport {
            bag: bag.clone(),
            instruction: trace.instruction.clone(),
            command_topic: trace.command_topic.clone(),
            command_type: trace.command_type.clone(),
            instruction_changes: trace.instruction_changes,
            metrics: episode_metrics(&trace, &opts),
            plots,
            output_bag,
        });
        traces.push(trace);
    }
    bar.finish_and_clear();
    let report = EvalReport {
        version: REPORT_VERSION,
        command_alignment: config.command_alignment,
        mode: config.mode,
        latency: config.latency,
        topics: config.topics.clone(),
        episodes,
        overall: aggregate("overall", &traces, &opts),
    };
    report.write_json(&outputs.dir.join(REPORT_FILE))?;
    Ok(report)
}

/// The `univla eval-bag` command: evaluates, prints the summary table, returns the report.
pub fn run_eval_bag(args: &EvalBagArgs, policy: &mut dyn ReplayPolicy) -> Result<EvalReport, BagError> {
    let config = args.replay_config()?;
    let bags = discover_bags(&args.bags)?;
    let outputs = args.outputs();
    let lam = args.lam.scorer()?;
    let report = evaluate_with_lam(&bags, &config, &outputs, policy, lam.as_ref())?;
    println!("{}", report.summary_table());
    println!("report: {}", outputs.dir.join(REPORT_FILE).display());
    Ok(report)
}
