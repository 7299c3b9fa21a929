//! `trajectory_msgs`: joint-space and multi-DOF trajectories.
use serde::{Deserialize, Serialize};

use super::builtin_interfaces::Duration;
use super::geometry_msgs::{Transform, Twist};
use super::ros_message;
use super::std_msgs::Header;

/// `trajectory_msgs/JointTrajectoryPoint`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct JointTrajectoryPoint {
    pub positions: Vec<f64>,
    pub velocities: Vec<f64>,
    pub accelerations: Vec<f64>,
    pub effort: Vec<f64>,
    pub time_from_start: Duration,
}
ros_message!(JointTrajectoryPoint, "trajectory_msgs", "JointTrajectoryPoint");

/// `trajectory_msgs/JointTrajectory`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct JointTrajectory {
    pub header: Header,
    pub joint_names: Vec<String>,
    pub points: Vec<JointTrajectoryPoint>,
}
ros_message!(JointTrajectory, "trajectory_msgs", "JointTrajectory");

/// `trajectory_msgs/MultiDOFJointTrajectoryPoint`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct MultiDOFJointTrajectoryPoint {
    pub transforms: Vec<Transform>,
    pub velocities: Vec<Twist>,
    pub accelerations: Vec<Twist>,
    pub time_from_start: Duration,
}
ros_message!(
    MultiDOFJointTrajectoryPoint,
    "trajectory_msgs",
    "MultiDOFJointTrajectoryPoint"
);

/// `trajectory_msgs/MultiDOFJointTrajectory`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct MultiDOFJointTrajectory {
    pub header: Header,
    pub joint_names: Vec<String>,
    pub points: Vec<MultiDOFJointTrajectoryPoint>,
}
ros_message!(MultiDOFJointTrajectory, "trajectory_msgs", "MultiDOFJointTrajectory");
