//! `sensor_msgs`: camera images and joint states.
use serde::{Deserialize, Serialize};

use super::ros_message;
use super::std_msgs::Header;

/// `sensor_msgs/Image`: uncompressed image, rows of `step` bytes.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Image {
    pub header: Header,
    pub height: u32,
    pub width: u32,
    pub encoding: String,
    pub is_bigendian: u8,
    pub step: u32,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}
ros_message!(Image, "sensor_msgs", "Image");

/// `sensor_msgs/CompressedImage`: `format` is e.g. `jpeg` or `png` (image_transport adds the encoding).
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct CompressedImage {
    pub header: Header,
    pub format: String,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}
ros_message!(CompressedImage, "sensor_msgs", "CompressedImage");

/// `sensor_msgs/JointState`: parallel arrays indexed like `name` (any may be empty).
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct JointState {
    pub header: Header,
    pub name: Vec<String>,
    pub position: Vec<f64>,
    pub velocity: Vec<f64>,
    pub effort: Vec<f64>,
}
ros_message!(JointState, "sensor_msgs", "JointState");
