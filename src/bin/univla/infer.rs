//! `univla infer`: one control step per image, history carried over.
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct InferArgs {
    /// HF checkpoint directory (config.json, *.safetensors, tokenizer.json, …).
    #[arg(long)]
    pub checkpoint: PathBuf,
}

pub fn run(args: InferArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet: {}", args.checkpoint.display())
}
