//! `rosgraph_msgs`: the simulated clock on `/clock`.
use serde::{Deserialize, Serialize};

use super::builtin_interfaces::Time;
use super::ros_message;

/// `rosgraph_msgs/Clock`: published on `/clock` by simulators and `ros2 bag play --clock`.
#[derive(Serialize, Deserialize, Default, Clone, Copy, Debug, PartialEq)]
pub struct Clock {
    pub clock: Time,
}
ros_message!(Clock, "rosgraph_msgs", "Clock");
