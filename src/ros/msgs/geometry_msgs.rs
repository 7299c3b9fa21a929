//! `geometry_msgs`: vectors, poses, transforms and twists.
use serde::{Deserialize, Serialize};

use super::ros_message;
use super::std_msgs::Header;

/// `geometry_msgs/Vector3`.
#[derive(Serialize, Deserialize, Default, Clone, Copy, Debug, PartialEq)]
pub struct Vector3 {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}
ros_message!(Vector3, "geometry_msgs", "Vector3");

/// `geometry_msgs/Point`.
#[derive(Serialize, Deserialize, Default, Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}
ros_message!(Point, "geometry_msgs", "Point");

/// `geometry_msgs/Quaternion`. Its default is the identity (w = 1), as rosidl declares it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Quaternion {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    pub w: f64,
}
ros_message!(Quaternion, "geometry_msgs", "Quaternion");

impl Default for Quaternion {
    fn default() -> Self {
        Self {
            x: 0.0,
            y: 0.0,
            z: 0.0,
            w: 1.0,
        }
    }
}

/// `geometry_msgs/Pose`.
#[derive(Serialize, Deserialize, Default, Clone, Copy, Debug, PartialEq)]
pub struct Pose {
    pub position: Point,
    pub orientation: Quaternion,
}
ros_message!(Pose, "geometry_msgs", "Pose");

/// `geometry_msgs/PoseStamped`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct PoseStamped {
    pub header: Header,
    pub pose: Pose,
}
ros_message!(PoseStamped, "geometry_msgs", "PoseStamped");

/// `geometry_msgs/Transform`.
#[derive(Serialize, Deserialize, Default, Clone, Copy, Debug, PartialEq)]
pub struct Transform {
    pub translation: Vector3,
    pub rotation: Quaternion,
}
ros_message!(Transform, "geometry_msgs", "Transform");

/// `geometry_msgs/Twist`.
#[derive(Serialize, Deserialize, Default, Clone, Copy, Debug, PartialEq)]
pub struct Twist {
    pub linear: Vector3,
    pub angular: Vector3,
}
ros_message!(Twist, "geometry_msgs", "Twist");

/// `geometry_msgs/TwistStamped`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct TwistStamped {
    pub header: Header,
    pub twist: Twist,
}
ros_message!(TwistStamped, "geometry_msgs", "TwistStamped");
