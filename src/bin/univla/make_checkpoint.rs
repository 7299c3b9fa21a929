//! `univla make-checkpoint`: a random checkpoint in the official on-disk format (tiny up to
//! UniVLA-7B sizes, streamed to disk), optionally with non-reference LM depth or head sizes
//! (window, action width, head count, R2R without visual pool).
use std::path::PathBuf;

use univla_ros::model::synthetic::{write_checkpoint_on, HeadVariant, SyntheticSpec};
use univla_ros::runtime::device::parse_device;

#[derive(clap::Args)]
pub struct MakeCheckpointArgs {
    /// Output directory (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Sizes: `tiny` (the golden fixture's), `small` (the benchmark reference, ~70 M params),
    /// `wide` (UniVLA-7B's widths with 2 LM layers, 1.47 B params, 2.9 GB on disk) or `7b`
    /// (UniVLA-7B's sizes, 15 GB on disk). Written one tensor at a time.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Heads to write: realworld, libero, r2r (repeatable; default all three).
    #[arg(long = "head")]
    pub heads: Vec<String>,
    /// Override the LM hidden size / layers / FFN width of the preset.
    #[arg(long)]
    pub hidden_size: Option<i64>,
    /// LM (LLaMA) layers, at the preset's widths (`wide`: 2 unless given).
    #[arg(long, visible_alias = "layers")]
    pub llm_layers: Option<i64>,
    #[arg(long)]
    pub intermediate_size: Option<i64>,
    /// Chunk length (window) of every head written (default: each head's reference window, 12
    /// for the arm heads and 4 for R2R).
    #[arg(long)]
    pub window: Option<i64>,
    /// Action width of the arm heads, their statistics and the real-world proprio (default 7).
    #[arg(long)]
    pub action_dim: Option<i64>,
    /// Attention heads of the action heads' MAP blocks (default: the preset's).
    #[arg(long)]
    pub head_heads: Option<i64>,
    /// Write the R2R head without its visual pool (the reference's `add_visual_embed=False`).
    #[arg(long)]
    pub r2r_without_visual_embed: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
    /// Where the VLM weights are drawn: cpu, or cuda[:N] (much faster for `7b`; other values
    /// for the same seed).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(args: MakeCheckpointArgs) -> anyhow::Result<()> {
    let mut spec = SyntheticSpec::preset(&args.preset).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown preset `{}`: one of {}",
            args.preset,
            SyntheticSpec::PRESETS.join(", ")
        )
    })?;
    let device = parse_device(&args.device)?;
    if let Some(h) = args.hidden_size {
        spec.hidden_size = h;
    }
    if let Some(l) = args.llm_layers {
        spec.num_layers = l;
    }
    if let Some(i) = args.intermediate_size {
        spec.intermediate_size = i;
    }
    spec.head_window = args.window;
    if let Some(a) = args.action_dim {
        spec.arm_action_dim = a;
    }
    if let Some(h) = args.head_heads {
        spec.head_num_heads = h;
    }
    spec.r2r_visual_embed = !args.r2r_without_visual_embed;
    let heads = if args.heads.is_empty() {
        vec![HeadVariant::RealWorld, HeadVariant::Libero, HeadVariant::R2r]
    } else {
        args.heads
            .iter()
            .map(|h| match h.as_str() {
                "realworld" | "real_world" | "deploy" => Ok(HeadVariant::RealWorld),
                "libero" | "bridge" => Ok(HeadVariant::Libero),
                "r2r" => Ok(HeadVariant::R2r),
                other => Err(anyhow::anyhow!("unknown head `{other}`: realworld, libero or r2r")),
            })
            .collect::<anyhow::Result<_>>()?
    };
    let written = write_checkpoint_on(&args.out, &spec, &heads, args.seed, device)?;
    eprintln!("wrote {} with heads:", args.out.display());
    for w in written {
        eprintln!("  {}", w.display());
    }
    Ok(())
}
