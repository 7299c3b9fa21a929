//! `univla synthetic-robot`: a stand-in robot (camera, joint states, instruction) on DDS, so the
//! nodes can be tried on a machine without ROS or hardware.
use std::time::Duration;

use univla_ros::node::synthetic::{run_synthetic_robot, SyntheticRobotConfig};
use univla_ros::ros::args::RosArgs;
use univla_ros::ros::transport::{RosContext, RosNode};

#[derive(clap::Args)]
pub struct SyntheticRobotArgs {
    /// Camera topic (sensor_msgs/Image, rgb8).
    #[arg(long, default_value = "image_raw")]
    pub image_topic: String,
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    #[arg(long, default_value_t = 480)]
    pub height: u32,
    /// Camera and joint-state rate.
    #[arg(long, default_value_t = 30.0)]
    pub rate_hz: f64,
    #[arg(long, default_value = "joint_states")]
    pub joint_state_topic: String,
    /// Comma-separated joint names for sensor_msgs/JointState (none: no joint states).
    #[arg(long, value_delimiter = ',')]
    pub joints: Vec<String>,
    /// Position every joint reports.
    #[arg(long, default_value_t = 0.0)]
    pub joint_value: f64,
    #[arg(long, default_value = "instruction")]
    pub instruction_topic: String,
    /// Instruction to publish once a second (std_msgs/String).
    #[arg(long)]
    pub instruction: Option<String>,
    /// How long to run.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
}

pub fn run(args: SyntheticRobotArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.seconds.is_finite() && args.seconds > 0.0,
        "--seconds must be positive"
    );
    let cfg = SyntheticRobotConfig {
        image_topic: args.image_topic,
        width: args.width,
        height: args.height,
        rate_hz: args.rate_hz,
        joint_state_topic: args.joint_state_topic,
        joint_names: args.joints,
        joint_value: args.joint_value,
        instruction_topic: args.instruction_topic,
        instruction: args.instruction,
        duration: Duration::from_secs_f64(args.seconds),
    };
    let (ros_args, _) = RosArgs::from_env()?;
    let context = RosContext::from_env()?;
    let mut node = RosNode::new(&context, &ros_args, "synthetic_robot", "/")?;
    let frames = run_synthetic_robot(&mut node, &cfg)?;
    eprintln!("published {frames} frames");
    Ok(())
}
