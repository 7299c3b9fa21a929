//! `control_msgs` (Jazzy): the `FollowJointTrajectory` action of ros2_controllers'
//! joint_trajectory_controller, with its tolerance types.
use serde::{Deserialize, Serialize};

use super::builtin_interfaces::Duration;
use super::std_msgs::Header;
use super::trajectory_msgs::{
    JointTrajectory, JointTrajectoryPoint, MultiDOFJointTrajectory, MultiDOFJointTrajectoryPoint,
};
use super::{action_part, ros_message, RosAction};

/// `control_msgs/JointTolerance`: 0 = use the controller default, negative = no check.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct JointTolerance {
    pub name: String,
    pub position: f64,
    pub velocity: f64,
    pub acceleration: f64,
}
ros_message!(JointTolerance, "control_msgs", "JointTolerance");

/// `control_msgs/JointComponentTolerance`: tolerance of one component of a multi-DOF joint.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct JointComponentTolerance {
    pub joint_name: String,
    pub component: u16,
    pub position: f64,
    pub velocity: f64,
    pub acceleration: f64,
}
ros_message!(JointComponentTolerance, "control_msgs", "JointComponentTolerance");

impl JointComponentTolerance {
    pub const X_AXIS: u16 = 1;
    pub const Y_AXIS: u16 = 2;
    pub const Z_AXIS: u16 = 3;
    pub const TRANSLATION: u16 = 4;
    pub const ROTATION: u16 = 5;
}

/// `control_msgs/action/FollowJointTrajectory_Goal`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct FollowJointTrajectoryGoal {
    pub trajectory: JointTrajectory,
    pub multi_dof_trajectory: MultiDOFJointTrajectory,
    pub path_tolerance: Vec<JointTolerance>,
    pub component_path_tolerance: Vec<JointComponentTolerance>,
    pub goal_tolerance: Vec<JointTolerance>,
    pub component_goal_tolerance: Vec<JointComponentTolerance>,
    pub goal_time_tolerance: Duration,
}

/// `control_msgs/action/FollowJointTrajectory_Result`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct FollowJointTrajectoryResult {
    pub error_code: i32,
    pub error_string: String,
}

impl FollowJointTrajectoryResult {
    pub const SUCCESSFUL: i32 = 0;
    pub const INVALID_GOAL: i32 = -1;
    pub const INVALID_JOINTS: i32 = -2;
    pub const OLD_HEADER_TIMESTAMP: i32 = -3;
    pub const PATH_TOLERANCE_VIOLATED: i32 = -4;
    pub const GOAL_TOLERANCE_VIOLATED: i32 = -5;
}

/// `control_msgs/action/FollowJointTrajectory_Feedback`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct FollowJointTrajectoryFeedback {
    pub header: Header,
    pub joint_names: Vec<String>,
    pub desired: JointTrajectoryPoint,
    pub actual: JointTrajectoryPoint,
    pub error: JointTrajectoryPoint,
    pub multi_dof_joint_names: Vec<String>,
    pub multi_dof_desired: MultiDOFJointTrajectoryPoint,
    pub multi_dof_actual: MultiDOFJointTrajectoryPoint,
    pub multi_dof_error: MultiDOFJointTrajectoryPoint,
}

action_part!(
    FollowJointTrajectoryGoal,
    FollowJointTrajectoryResult,
    FollowJointTrajectoryFeedback
);

/// `control_msgs/action/FollowJointTrajectory`.
#[derive(Debug, Clone, Copy)]
pub struct FollowJointTrajectory;

impl RosAction for FollowJointTrajectory {
    const PACKAGE: &'static str = "control_msgs";
    const NAME: &'static str = "FollowJointTrajectory";
    type Goal = FollowJointTrajectoryGoal;
    type Result = FollowJointTrajectoryResult;
    type Feedback = FollowJointTrajectoryFeedback;
}
