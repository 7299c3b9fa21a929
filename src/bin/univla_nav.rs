//! `univla_nav`: the UniVLA navigation node. See `univla_nav --help`.
use clap::Parser;
use univla_ros::node::wiring::nav_node::run_nav;
use univla_ros::node::wiring::ros_io::node_main;

/// Runs the UniVLA policy with an R2R head on a camera stream and drives a mobile base with
/// geometry_msgs/Twist (or TwistStamped): forward 0.25 m and 15° turns at the configured speeds;
/// STOP ends the goal. Goals come from the `~/execute` action or the `instruction` topic.
///
/// Configure it with ROS parameters, as `ros2 run` and launch pass them:
///   univla_nav --ros-args --params-file config/r2r_base.yaml -p checkpoint:=/models/univla
///              -r __ns:=/robot -r cmd_vel:=/robot/base/cmd_vel
/// Required: checkpoint and decoder (or policy_url: ws://host:port, a policy server). See
/// config/r2r_base.yaml for all parameters.
/// The DDS domain comes from ROS_DOMAIN_ID; log filtering from RUST_LOG or --log-level.
#[derive(Parser, Debug)]
#[command(name = "univla_nav", version, verbatim_doc_comment)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    node_main::<Cli>(run_nav)?;
    Ok(())
}
