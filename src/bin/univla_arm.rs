//! `univla_arm`: the UniVLA manipulation node. See `univla_arm --help`.
use clap::Parser;
use univla_ros::node::wiring::arm_node::run_arm;
use univla_ros::node::wiring::ros_io::node_main;

/// Runs the UniVLA policy on a camera stream and drives an arm (JointTrajectory, FollowJointTrajectory
/// or PoseStamped end-effector targets), driven by the `~/execute` action (univla_msgs/action/Execute).
///
/// Configure it with ROS parameters, as `ros2 run` and launch pass them:
///   univla_arm --ros-args --params-file config/piper_realworld.yaml -p checkpoint:=/models/univla
///              -r __node:=arm_policy -r __ns:=/robot -r image_raw:=/camera/color/image_raw
/// Required: checkpoint and decoder (or policy_url: ws://host:port, a policy server), joint_names
/// (joint_position). See config/*.yaml for all parameters.
/// The DDS domain comes from ROS_DOMAIN_ID; log filtering from RUST_LOG or --log-level.
#[derive(Parser, Debug)]
#[command(name = "univla_arm", version, verbatim_doc_comment)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    node_main::<Cli>(run_arm)?;
    Ok(())
}
