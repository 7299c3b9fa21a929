//! Hand-written serde structs for the ROS 2 interfaces the nodes use (Jazzy definitions).
//!
//! Field order equals the `.msg` definitions, because CDR is positional. Every `uint8[]` field uses
//! `serde_bytes` so it is (de)serialized in bulk. Each type carries its ROS type name through
//! [`RosMessage`], so topics are created from the type and never from a hand-typed string.
pub mod builtin_interfaces;
pub mod cdr;
pub mod control_msgs;
pub mod diagnostic_msgs;
pub mod geometry_msgs;
pub mod rcl_interfaces;
pub mod rosgraph_msgs;
pub mod sensor_msgs;
pub mod std_msgs;
pub mod trajectory_msgs;
pub mod univla_msgs;
pub mod visualization_msgs;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use cdr::{from_cdr, to_cdr, CdrError};

/// A ROS 2 message type: a serde struct whose fields follow the rosidl layout, plus its type name.
pub trait RosMessage: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Interface package, e.g. `sensor_msgs`.
    const PACKAGE: &'static str;
    /// Type name inside the package, e.g. `Image`.
    const NAME: &'static str;

    /// The ROS type string `pkg/msg/Name` (as `ros2 topic info` and rosbag2 print it).
    fn ros_type() -> String {
        format!("{}/msg/{}", Self::PACKAGE, Self::NAME)
    }

    /// The DDS type name `pkg::msg::dds_::Name_` (what rmw puts on the wire).
    fn dds_type() -> String {
        format!("{}::msg::dds_::{}_", Self::PACKAGE, Self::NAME)
    }
}

/// A ROS 2 action type: its name and the goal, result and feedback structs.
pub trait RosAction: Send + Sync + 'static {
    /// Interface package, e.g. `control_msgs`.
    const PACKAGE: &'static str;
    /// Action name inside the package, e.g. `FollowJointTrajectory`.
    const NAME: &'static str;
    /// `pkg/action/Name_Goal`.
    type Goal: ros2_client::Message + Clone + std::fmt::Debug + Send + Sync + 'static;
    /// `pkg/action/Name_Result` (`Default`: the result sent with `STATUS_UNKNOWN`, as rclcpp does).
    type Result: ros2_client::Message + Clone + Default + std::fmt::Debug + Send + Sync + 'static;
    /// `pkg/action/Name_Feedback`.
    type Feedback: ros2_client::Message + Clone + std::fmt::Debug + Send + Sync + 'static;

    /// The ROS type string `pkg/action/Name`.
    fn ros_type() -> String {
        format!("{}/action/{}", Self::PACKAGE, Self::NAME)
    }
}

/// Implements [`RosMessage`] and `ros2_client::Message` for a struct.
macro_rules! ros_message {
    ($ty:ty, $pkg:literal, $name:literal) => {
        impl $crate::ros::msgs::RosMessage for $ty {
            const PACKAGE: &'static str = $pkg;
            const NAME: &'static str = $name;
        }
        impl ros2_client::Message for $ty {}
    };
}
pub(crate) use ros_message;

/// Implements `ros2_client::Message` for action parts (goal, result, feedback).
macro_rules! action_part {
    ($($ty:ty),+) => {
        $(impl ros2_client::Message for $ty {})+
    };
}
pub(crate) use action_part;

#[cfg(test)]
mod tests;
