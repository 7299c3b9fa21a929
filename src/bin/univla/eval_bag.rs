//! `univla eval-bag`: open-loop evaluation of a checkpoint on rosbag2 recordings, through the
//! same policy session the nodes run.
use univla_ros::bag::bench::{bench_bag, BenchBagArgs};
use univla_ros::bag::eval::{run_eval_bag, EvalBagArgs};
use univla_ros::runtime::session::{Policy, Session};

use crate::common::PolicyArgs;

#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Boxed: the evaluation arguments are large next to the other subcommands'.
    #[command(flatten)]
    pub eval: Box<EvalBagArgs>,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.policy.greedy || args.policy.seed.is_some(),
        "choose the decoding: --greedy, or --seed N (a fixed seed keeps reports reproducible)"
    );
    let mut opts = args.policy.options()?;
    opts.progress = false;
    let mut session = Session::new(Policy::load(opts)?)?;
    run_eval_bag(&args.eval, &mut session)?;
    Ok(())
}

pub fn run_bench(args: BenchBagArgs) -> anyhow::Result<()> {
    let report = bench_bag(&args)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
