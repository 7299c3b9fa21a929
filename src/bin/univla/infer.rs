//! `univla infer`: one control step per image, in order, history carried over, with the
//! post-processing that belongs to the head found in the decoder file.
use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use univla_ros::runtime::postprocess::Action;
use univla_ros::runtime::preprocess::RgbImage;
use univla_ros::runtime::session::{Execution, Policy, Session, StepOutput};

use crate::common::PolicyArgs;

#[derive(clap::Args)]
pub struct InferArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The task, e.g. "put the red cup on the blue plate".
    #[arg(long)]
    pub instruction: String,
    /// Camera images (PNG/JPEG), one control step each, in order.
    #[arg(long = "image", required = true)]
    pub images: Vec<PathBuf>,
    /// JSON list with one proprio vector per step (real-world head).
    #[arg(long)]
    pub proprio: Option<PathBuf>,
    /// Execute chunks open-loop instead of temporal ensembling.
    #[arg(long)]
    pub open_loop: bool,
    /// With --open-loop, re-plan every K steps instead of when the chunk runs out.
    #[arg(long, requires = "open_loop")]
    pub replan_every: Option<usize>,
    /// Print one JSON array with an object per step instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Images declaring more pixels are refused before decoding.
    #[arg(long, default_value_t = univla_ros::runtime::preprocess::DEFAULT_MAX_PIXELS,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub max_image_pixels: u64,
}

pub fn run(args: InferArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.policy.greedy || args.policy.seed.is_some(),
        "choose the decoding: --greedy, or --seed N to sample as the reference deploys"
    );
    let proprio: Option<Vec<Vec<f64>>> = match &args.proprio {
        Some(p) => Some(
            serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
                .with_context(|| format!("{}: expected a JSON list of number lists", p.display()))?,
        ),
        None => None,
    };
    if let Some(p) = &proprio {
        anyhow::ensure!(
            p.len() >= args.images.len(),
            "--proprio has {} vectors for {} images",
            p.len(),
            args.images.len()
        );
    }
    let images = args
        .images
        .iter()
        .map(|p| {
            RgbImage::load_limited(p, args.max_image_pixels).with_context(|| format!("reading image {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut opts = args.policy.options()?;
    if args.open_loop {
        opts.execution = Execution::OpenLoop {
            replan_every: args.replan_every,
        };
    }
    let policy = Policy::load(opts)?;
    let mut session = Session::new(policy)?;
    session.reset(&args.instruction);
    let mut out = Vec::new();
    for (t, image) in images.iter().enumerate() {
        let step = session.step(image, proprio.as_ref().map(|p| p[t].as_slice()))?;
        if !args.json {
            print_step(t, &step);
        }
        out.push(step_json(&step));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

fn action_json(action: &Action) -> serde_json::Value {
    match action {
        Action::Arm(v) => json!(v),
        Action::Bridge(b) => json!({
            "world_vector": b.world_vector, "rot_axangle": b.rot_axangle, "gripper": b.gripper, "terminate": b.terminate
        }),
        Action::Nav(a) => json!(a.id()),
    }
}

pub fn step_json(step: &StepOutput) -> serde_json::Value {
    let inf = step.inference.as_ref();
    json!({
        "prompt": inf.map(|i| i.prompt.clone()),
        "input_ids": inf.map(|i| i.input_ids.clone()),
        "latent_ids": inf.map(|i| i.latent_ids.clone()),
        "chunk": inf.map(|i| i.chunk.clone()),
        "pre_action": step.pre_action,
        "action": action_json(&step.action),
        "action_name": match &step.action { Action::Nav(a) => Some(format!("{a:?}")), _ => None },
        "timings_ms": step.timings.stages.iter().map(|(s, d)| (s.to_string(), json!(d.as_secs_f64() * 1e3))).collect::<serde_json::Map<_, _>>(),
    })
}

fn print_step(t: usize, step: &StepOutput) {
    let tokens = step
        .inference
        .as_ref()
        .map(|i| {
            i.latent_ids
                .iter()
                .map(|id| format!("<ACT_{}>", id - 32001))
                .collect::<String>()
        })
        .unwrap_or_else(|| "(open-loop, no query)".into());
    let action = match &step.action {
        Action::Nav(a) => format!("{a:?}"),
        other => action_json(other).to_string(),
    };
    println!(
        "step {t}: {tokens}  action {action}  ({:.1} ms)",
        step.timings.total().as_secs_f64() * 1e3
    );
}
