//! `univla bench`: loading (wall time, and peak RSS against the target of 1.1 × the weights in
//! the chosen dtype + 1 GiB), then full control steps (preprocessing included) on a synthetic
//! 640×480 camera image; medians and 95th percentiles per stage, the whole step, and peak
//! memory (host, and on CUDA the device's). Stage times on CUDA are exact: the session
//! synchronises the device at every stage boundary (`Session::set_sync_timing`).
use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use tch::Device;
use univla_ros::model::checkpoint::CheckpointFiles;
use univla_ros::model::weights::VarBuilder;
use univla_ros::runtime::device::cuda_memory_in_use_mib;
use univla_ros::runtime::preprocess::RgbImage;
use univla_ros::runtime::session::{Policy, Session};

use crate::common::PolicyArgs;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[arg(long, default_value = "pick up the red cup and put it on the blue plate")]
    pub instruction: String,
    /// Measured control steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Unmeasured steps first (allocator and kernel warm-up).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Camera resolution of the synthetic image.
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    #[arg(long, default_value_t = 480)]
    pub height: u32,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Only load the policy and report load time and memory (no control steps).
    #[arg(long)]
    pub load_only: bool,
}

/// Loading may peak at this many times the weights in the target dtype, plus
/// [`LOAD_RSS_SLACK_MIB`] (libtorch, tokenizer, heads, one tensor in its stored dtype), on CPU.
const LOAD_RSS_FACTOR: f64 = 1.1;
const LOAD_RSS_SLACK_MIB: f64 = 1024.0;

/// MiB of the checkpoint's VLM weights once converted to `dtype`.
fn weights_mib(checkpoint: &std::path::Path, dtype: tch::Kind) -> anyhow::Result<f64> {
    let files = CheckpointFiles::locate(checkpoint)?;
    let vb = VarBuilder::from_safetensors(&files.weights, dtype, Device::Cpu)?;
    Ok(vb.total_numel() as f64 * dtype.elt_size_in_bytes() as f64 / (1024.0 * 1024.0))
}

/// A deterministic camera-like test image: gradients plus a few blocks.
pub fn synthetic_image(width: u32, height: u32, phase: u32) -> anyhow::Result<RgbImage> {
    let mut data = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let block = ((x / 80 + y / 60 + phase) % 3) as u8;
            data.push((x * 255 / width.max(1)) as u8 ^ (block * 40));
            data.push((y * 255 / height.max(1)) as u8);
            data.push(((x + y + phase * 7) % 256) as u8);
        }
    }
    Ok(RgbImage::new(width, height, data)?)
}

#[derive(Default)]
struct Stats(Vec<f64>);

impl Stats {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1e3);
    }

    fn summary(&self) -> serde_json::Value {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        let median = if v.is_empty() {
            f64::NAN
        } else if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        // Nearest-rank percentile.
        let p95 = v
            .get(((v.len() as f64 * 0.95).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN);
        json!({"median": median, "p95": p95, "min": v.first(), "max": v.last()})
    }
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut opts = args.policy.options()?;
    opts.progress = !args.json;
    let device = opts.device;
    let dtype = opts.dtype;
    let weights_mib = weights_mib(&opts.checkpoint, dtype)?;
    let started = std::time::Instant::now();
    let policy = Policy::load(opts)?;
    let load_s = started.elapsed().as_secs_f64();
    let load_peak_rss_mib = peak_rss_mib();
    let load_rss_target_mib = LOAD_RSS_FACTOR * weights_mib + LOAD_RSS_SLACK_MIB;
    let load = json!({
        "seconds": load_s,
        "peak_rss_mib": load_peak_rss_mib,
        "weights_mib": weights_mib,
        // The host-memory target only applies where the weights live in host memory.
        "rss_target_mib": (device == Device::Cpu).then_some(load_rss_target_mib),
        "within_target": (device == Device::Cpu).then(|| load_peak_rss_mib.is_some_and(|p| p <= load_rss_target_mib)),
    });
    if args.load_only {
        if args.json {
            println!(
                "{}",
                serde_json::to_string(
                    &json!({"device": format!("{device:?}"), "dtype": format!("{dtype:?}"), "load": load})
                )?
            );
        } else {
            print_load(&load, device, dtype);
        }
        return Ok(());
    }
    let proprio = policy
        .head()
        .needs_proprio()
        .then(|| vec![0.0; policy.head().proprio_dim().unwrap_or(7) as usize]);
    let mut session = Session::new(policy)?;
    session.set_sync_timing(true);
    session.reset(&args.instruction);
    let images = (0..4)
        .map(|i| synthetic_image(args.width, args.height, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut step = Stats::default();
    let mut stages: BTreeMap<&'static str, Stats> = BTreeMap::new();
    let mut order: Vec<&'static str> = Vec::new();
    let mut gpu_mem_mib: Option<f64> = None;
    for i in 0..args.warmup + args.steps {
        let out = session.step(&images[i % images.len()], proprio.as_deref())?;
        if let Device::Cuda(index) = device {
            // The caching allocator keeps what a step needed, so the maximum after steps is the peak.
            if let Some(used) = cuda_memory_in_use_mib(index) {
                gpu_mem_mib = Some(gpu_mem_mib.map_or(used, |m| m.max(used)));
            }
        }
        if i < args.warmup {
            continue;
        }
        step.push(out.timings.total());
        for (name, d) in &out.timings.stages {
            if !order.contains(name) {
                order.push(name);
            }
            stages.entry(name).or_default().push(*d);
        }
    }
    let report = json!({
        "device": format!("{device:?}"),
        "dtype": format!("{dtype:?}"),
        "decode": session.decode_mode(),
        "threads": tch::get_num_threads(),
        "image": [args.width, args.height],
        "steps": args.steps,
        "step_ms": step.summary(),
        "stages_ms": order.iter().map(|s| (s.to_string(), stages[s].summary())).collect::<serde_json::Map<_, _>>(),
        "peak_rss_mib": peak_rss_mib(),
        "gpu_mem_used_mib": gpu_mem_mib,
        "load": load,
    });
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{:<12} {:>10} {:>10} {:>10} {:>10}",
            "stage", "median ms", "p95 ms", "min ms", "max ms"
        );
        let row = |name: &str, s: &serde_json::Value| {
            println!(
                "{name:<12} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
                s["median"].as_f64().unwrap_or(f64::NAN),
                s["p95"].as_f64().unwrap_or(f64::NAN),
                s["min"].as_f64().unwrap_or(f64::NAN),
                s["max"].as_f64().unwrap_or(f64::NAN)
            )
        };
        for s in &order {
            row(s, &stages[s].summary());
        }
        row("step", &step.summary());
        println!(
            "peak RSS {:.0} MiB, {} threads, {device:?} {dtype:?}",
            peak_rss_mib().unwrap_or(f64::NAN),
            tch::get_num_threads()
        );
        print_load(&load, device, dtype);
        if let Some(m) = gpu_mem_mib {
            println!("GPU memory in use after the steps (device-wide, CUDA context included): {m:.0} MiB");
        }
    }
    Ok(())
}

/// One line on loading: time, peak RSS and (CPU) the target.
fn print_load(load: &serde_json::Value, device: Device, dtype: tch::Kind) {
    let mib = |k: &str| load[k].as_f64().unwrap_or(f64::NAN);
    print!(
        "load {:.1} s, peak RSS after load {:.0} MiB for {:.0} MiB of weights in {dtype:?} on {device:?}",
        mib("seconds"),
        mib("peak_rss_mib"),
        mib("weights_mib"),
    );
    match load["within_target"].as_bool() {
        Some(ok) => println!(
            " (target ≤ {:.0} MiB: {})",
            mib("rss_target_mib"),
            if ok { "met" } else { "NOT met" }
        ),
        None => println!(),
    }
}
