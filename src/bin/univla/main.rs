//! `univla`: the command-line face of univla_ros (inference, benchmarks, checkpoints, evaluation).
use clap::{Parser, Subcommand};

mod bench;
mod common;
mod compare;
mod eval_bag;
mod infer;
mod label;
mod make_checkpoint;
mod serve;
mod synthetic_robot;

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
    /// Compare the policy on a device and dtypes with the CPU f32 reference (tokens, hidden
    /// states, actions).
    Compare(compare::CompareArgs),
    /// Time full control steps on a synthetic 640×480 camera image (per-stage medians).
    Bench(bench::BenchArgs),
    /// Label frame pairs with task-centric latent actions using the latent action model.
    Label(Box<label::LabelCmd>),
    /// Replay rosbag2 recordings through the policy and report how far its commands are from
    /// the recorded ones (JSON, table, plots, MCAP with predictions).
    EvalBag(Box<eval_bag::EvalArgs>),
    /// Measure eval-bag's overhead outside the model on a synthetic 640×480 bag.
    BenchBag(univla_ros::bag::bench::BenchBagArgs),
    /// Publish a synthetic camera, joint states and an instruction over DDS (try the nodes
    /// without a robot).
    SyntheticRobot(synthetic_robot::SyntheticRobotArgs),
    /// Serve the policy over openpi's remote-inference protocol (WebSocket + msgpack), with one
    /// episode per connection and requests of different connections batched.
    Serve(Box<serve::ServeArgs>),
    /// Throughput and p50/p99 latency of `serve` with 1, 2, 4, 8 concurrent clients (in-process,
    /// loopback, synthetic 640×480 requests).
    BenchServe(Box<serve::BenchServeArgs>),
    /// Write a small random checkpoint in the official on-disk format (no downloads needed).
    MakeCheckpoint(make_checkpoint::MakeCheckpointArgs),
}

/// Runs the command; an error is printed on one line, its causes joined by `: `.
fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Infer(args) => infer::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Compare(args) => compare::run(args),
        Command::MakeCheckpoint(args) => make_checkpoint::run(args),
        Command::EvalBag(args) => eval_bag::run(*args),
        Command::BenchBag(args) => eval_bag::run_bench(args),
        Command::SyntheticRobot(args) => synthetic_robot::run(args),
        Command::Label(args) => label::run(*args),
        Command::Serve(args) => serve::run(*args),
        Command::BenchServe(args) => serve::run_bench(*args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
