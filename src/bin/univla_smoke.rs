//! Smoke-test node for the ROS 2 boundary. See `univla_smoke --help`.
use anyhow::Context as _;
use clap::Parser;
use univla_ros::ros::smoke::{run_smoke, SmokeConfig, NODE_NAME};
use univla_ros::ros::{logging, require_private_netns, RosArgs, RosContext, RosNode};

/// Publishes std_msgs/String on `chatter`, echoes `chatter_in` back as "heard: <text>", then exits.
///
/// ROS arguments follow `--ros-args` (as `ros2 run` and launch pass them):
///   -r __node:=NAME  -r __ns:=/NS  -r chatter_in:=/other/topic  --params-file FILE  --log-level debug
/// Parameters (-p name:=value): rate_hz (float, 2.0), count (int, 0 = unlimited),
/// run_secs (float, 5.0, at most 3600), text (string, "hello"), use_sim_time (bool).
/// The DDS domain comes from ROS_DOMAIN_ID; log filtering from RUST_LOG or --log-level.
#[derive(Parser, Debug)]
#[command(name = "univla_smoke", version, verbatim_doc_comment)]
struct Cli {
    /// Run even when the process sees network interfaces other than `lo`. Without it the node only
    /// runs inside a private network namespace (as the tests do), so DDS traffic stays on loopback.
    #[arg(long)]
    allow_any_network: bool,
}

fn main() -> anyhow::Result<()> {
    let (ros_args, rest) = RosArgs::from_env().context("parsing --ros-args")?;
    let cli = Cli::parse_from(rest);
    if !cli.allow_any_network {
        require_private_netns().map_err(anyhow::Error::msg)?;
    }
    logging::init_tracing(&ros_args);
    // Check names and parameters before opening any socket.
    let identity = ros_args.resolve_node(NODE_NAME, "/")?;
    let cfg = SmokeConfig::from_params(&identity.params)?;
    let context = RosContext::from_env()?;
    let mut node = RosNode::new(&context, &ros_args, NODE_NAME, "/")?;
    let summary = run_smoke(&mut node, &cfg)?;
    println!("published={} received={}", summary.published, summary.received);
    Ok(())
}
