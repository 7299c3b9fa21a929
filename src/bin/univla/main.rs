//! `univla`: the command-line face of univla_ros (inference, benchmarks, checkpoints, evaluation).
use clap::{Parser, Subcommand};

mod common;
mod infer;

/// Run and evaluate the UniVLA robot policy on LibTorch.
#[derive(Parser)]
#[command(name = "univla", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run control steps on images with a checkpoint and print latent tokens and actions.
    Infer(infer::InferArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Infer(args) => infer::run(args),
    }
}
