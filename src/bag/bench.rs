//! Replay overhead benchmark (`univla bench-bag`): the cost of everything around the model
//! (read, decompress, decode, align, score, plot, write the prediction bag) on a synthetic
//! 640×480 recording, with a policy that costs nothing.
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use super::eval::{evaluate, EvalOutputs};
use super::replay::{BagTopics, CommandAlignment, PolicyStep, ReplayConfig, ReplayPolicy};
use super::writer::{ChunkCompression, McapBagWriter, WriterOptions};
use super::BagError;
use crate::ros::msgs::builtin_interfaces::Time;
use crate::ros::msgs::sensor_msgs::{Image, JointState};
use crate::ros::msgs::std_msgs::Header;
use crate::ros::msgs::trajectory_msgs::{JointTrajectory, JointTrajectoryPoint};
use crate::runtime::preprocess::RgbImage;

/// Camera period of the synthetic recording (10 Hz).
const FRAME_PERIOD_NS: i64 = 100_000_000;
/// Joint states per camera frame.
const JOINT_STATES_PER_FRAME: i64 = 5;
/// Action dimensions of the synthetic commands.
const ACTION_DIM: usize = 7;
/// Recording start time.
const START_NS: i64 = 1_700_000_000_000_000_000;

/// Arguments of `univla bench-bag`.
#[derive(Debug, Clone, Args)]
pub struct BenchBagArgs {
    #[arg(long, default_value_t = 1000)]
    pub frames: usize,
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    #[arg(long, default_value_t = 480)]
    pub height: u32,
    /// Compress the synthetic bag's chunks with zstd (else uncompressed, as `ros2 bag record` default).
    #[arg(long)]
    pub zstd: bool,
    /// Work directory (bag and outputs); default a fresh temporary directory, removed afterwards.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Figures of one benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub frames: usize,
    pub bag_bytes: u64,
    /// Writing the synthetic bag (not part of the overhead).
    pub write_s: f64,
    /// Whole `evaluate` call: replay + metrics + plots + prediction bag + JSON.
    pub evaluate_s: f64,
    /// Of which inside the (free) policy.
    pub policy_s: f64,
    /// Overhead per camera frame, milliseconds.
    pub overhead_ms_per_frame: f64,
}

impl BenchReport {
    /// The share of overhead in total time if each model step takes `model_ms`.
    pub fn overhead_share(&self, model_ms: f64) -> f64 {
        self.overhead_ms_per_frame / (self.overhead_ms_per_frame + model_ms)
    }
}

/// A policy that returns a constant action instantly.
struct NullPolicy;

impl ReplayPolicy for NullPolicy {
    fn reset(&mut self, _instruction: &str) {}

    fn step(&mut self, image: &RgbImage, _proprio: Option<&[f32]>) -> Result<PolicyStep, String> {
        let v = f64::from(image.as_raw().first().copied().unwrap_or(0)) / 255.0;
        Ok(PolicyStep {
            latent_ids: vec![32001, 32002, 32003, 32004],
            action: vec![v; ACTION_DIM],
            chunk: vec![vec![v; ACTION_DIM]; 8],
            inference_ms: 0.0,
        })
    }
}

fn header(t: i64) -> Header {
    Header {
        stamp: Time::from_nanos(t),
        frame_id: String::new(),
    }
}

/// Writes the synthetic bag, evaluates it with a free policy and reports the times.
pub fn bench_bag(args: &BenchBagArgs) -> Result<BenchReport, BagError> {
    let (root, _guard) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile_dir()?;
            (t.clone(), Some(RemoveOnDrop(t)))
        }
    };
    let bag = root.join("bench_bag");
    if bag.exists() {
        std::fs::remove_dir_all(&bag).map_err(|e| BagError::io(&bag, e))?;
    }
    let started = Instant::now();
    let options = WriterOptions {
        compression: if args.zstd {
            ChunkCompression::Zstd
        } else {
            ChunkCompression::None
        },
        ..Default::default()
    };
    let mut w = McapBagWriter::create(&bag, options)?;
    let size = args.width as usize * args.height as usize * 3;
    let mut image = Image {
        header: header(START_NS),
        height: args.height,
        width: args.width,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: args.width * 3,
        data: vec![0; size],
    };
    for k in 0..args.frames {
        let t = START_NS + k as i64 * FRAME_PERIOD_NS;
        for j in 0..JOINT_STATES_PER_FRAME {
            let tj = t - FRAME_PERIOD_NS + (j + 1) * FRAME_PERIOD_NS / JOINT_STATES_PER_FRAME - 1;
            let js = JointState {
                header: header(tj),
                name: (0..ACTION_DIM).map(|i| format!("j{i}")).collect(),
                position: vec![k as f64; ACTION_DIM],
                ..Default::default()
            };
            w.write("/joint_states", tj, &js)?;
        }
        let cmd = JointTrajectory {
            header: header(t - 1),
            joint_names: (0..ACTION_DIM).map(|i| format!("j{i}")).collect(),
            points: vec![JointTrajectoryPoint {
                positions: vec![(k % 7) as f64 * 0.1; ACTION_DIM],
                ..Default::default()
            }],
        };
        w.write("/joint_trajectory", t - 1, &cmd)?;
        image.header = header(t);
        fill_noise(&mut image.data, k as u64);
        image.data[0] = k as u8;
        w.write("/camera/image_raw", t, &image)?;
    }
    w.finish()?;
    let write_s = started.elapsed().as_secs_f64();
    let bag_bytes = dir_size(&bag);

    let config = ReplayConfig {
        topics: BagTopics {
            joint_states: Some("/joint_states".into()),
            gripper_dim: Some(ACTION_DIM - 1),
            gripper_threshold: 0.5,
            ..Default::default()
        },
        instruction: Some("benchmark".into()),
        // Each command is written just before its frame.
        command_alignment: CommandAlignment::AsOf,
        ..Default::default()
    };
    let outputs = EvalOutputs {
        dir: root.join("bench_out"),
        plots: true,
        mcap: true,
        progress: false,
        gripper_tolerance_steps: 5,
    };
    let t0 = Instant::now();
    let report = evaluate(&[bag], &config, &outputs, &mut NullPolicy)?;
    let evaluate_s = t0.elapsed().as_secs_f64();
    let policy_s = report.overall.timings.policy_s;
    Ok(BenchReport {
        frames: args.frames,
        bag_bytes,
        write_s,
        evaluate_s,
        policy_s,
        overhead_ms_per_frame: (evaluate_s - policy_s) * 1e3 / args.frames.max(1) as f64,
    })
}

/// Camera-like content that does not compress away: xorshift noise on a gradient.
fn fill_noise(data: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for (i, chunk) in data.chunks_mut(8).enumerate() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        for (j, b) in chunk.iter_mut().enumerate() {
            // Low-amplitude noise on a gradient, roughly as compressible as a camera image.
            *b = ((i / 80) as u8).wrapping_add(bytes[j] & 0x0f);
        }
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> Result<PathBuf, BagError> {
    let base = std::env::temp_dir();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = base.join(format!("univla_bench_bag_{}_{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| BagError::io(&dir, e))?;
    Ok(dir)
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}
