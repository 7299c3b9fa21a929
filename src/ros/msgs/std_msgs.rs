//! `std_msgs`: header, string, bool and colour.
use serde::{Deserialize, Serialize};

use super::builtin_interfaces::Time;
use super::ros_message;

/// `std_msgs/Header`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Header {
    pub stamp: Time,
    pub frame_id: String,
}
ros_message!(Header, "std_msgs", "Header");

/// `std_msgs/String`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct StringMsg {
    pub data: String,
}
ros_message!(StringMsg, "std_msgs", "String");

/// `std_msgs/Bool`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Bool {
    pub data: bool,
}
ros_message!(Bool, "std_msgs", "Bool");

/// `std_msgs/ColorRGBA`.
#[derive(Serialize, Deserialize, Default, Clone, Copy, Debug, PartialEq)]
pub struct ColorRGBA {
    pub r: f32,
    pub g: f32,
    pub b: f32,
    pub a: f32,
}
ros_message!(ColorRGBA, "std_msgs", "ColorRGBA");
