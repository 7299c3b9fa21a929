//! `univla compare`: the policy on a device in one or more dtypes against the CPU f32 reference
//! on an episode of images (greedy): latent-token agreement free-running and teacher-forced,
//! cosines of the LM hidden states the head reads, of the logits, chunks and actions.
use std::path::PathBuf;

use anyhow::Context;
use univla_ros::runtime::compare::{compare_with_reference, TargetReport};
use univla_ros::runtime::device::{parse_device, parse_dtype};
use univla_ros::runtime::postprocess::Preset;
use univla_ros::runtime::preprocess::RgbImage;
use univla_ros::runtime::session::PolicyOptions;

#[derive(clap::Args)]
pub struct CompareArgs {
    /// HF checkpoint directory.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Action decoder head.
    #[arg(long)]
    pub decoder: PathBuf,
    /// Dataset key for q01/q99 un-normalisation (LIBERO/Bridge).
    #[arg(long)]
    pub unnorm_key: Option<String>,
    /// Post-processing preset (default: from the head).
    #[arg(long)]
    pub preset: Option<String>,
    /// The device to compare with the CPU: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// Comma-separated dtypes to compare on that device.
    #[arg(long, default_value = "f32,bf16,f16")]
    pub dtypes: String,
    #[arg(long)]
    pub instruction: String,
    /// Camera images (PNG/JPEG), one control step each, in order.
    #[arg(long = "image", required = true)]
    pub images: Vec<PathBuf>,
    /// JSON list with one proprio vector per step (real-world head).
    #[arg(long)]
    pub proprio: Option<PathBuf>,
    /// Print one JSON array (a report per dtype) instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?;
    let targets = args
        .dtypes
        .split(',')
        .map(|d| Ok((device, parse_dtype(d)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let proprio: Option<Vec<Vec<f64>>> = match &args.proprio {
        Some(p) => Some(
            serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
                .with_context(|| format!("{}: expected a JSON list of number lists", p.display()))?,
        ),
        None => None,
    };
    let images = args
        .images
        .iter()
        .map(|p| RgbImage::load(p).with_context(|| format!("reading image {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut base = PolicyOptions::new(&args.checkpoint, &args.decoder);
    base.unnorm_key = args.unnorm_key.clone();
    base.preset = match &args.preset {
        Some(p) => Some(Preset::from_name(p).ok_or_else(|| anyhow::anyhow!("unknown preset `{p}`"))?),
        None => None,
    };
    let reports = compare_with_reference(&base, &targets, &args.instruction, &images, proprio.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print_table(&reports);
    }
    Ok(())
}

fn print_table(reports: &[TargetReport]) {
    println!(
        "{:<18} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "vs CPU f32",
        "tok free",
        "tok forced",
        "cos vis",
        "cos latent",
        "cos logits",
        "cos chunk",
        "cos action",
        "max|Δa|"
    );
    for r in reports {
        println!(
            "{:<18} {:>10} {:>10} {:>10.6} {:>10.6} {:>10.6} {:>10.6} {:>10.6} {:>10.2e}",
            format!("{} {}", r.device, r.dtype),
            format!("{}/{}", r.free_tokens_equal, r.tokens_total),
            format!("{}/{}", r.forced_tokens_equal, r.tokens_total),
            r.min_cos_visual_embed,
            r.min_cos_latent_action,
            r.min_cos_logits,
            r.min_cos_chunk,
            r.min_cos_action,
            r.max_abs_action
        );
    }
}
