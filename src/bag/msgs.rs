//! Message types the bag evaluator reads or writes that the node layer does not define.
use serde::{Deserialize, Serialize};

use crate::ros::msgs::ros_message;

/// `std_msgs/MultiArrayDimension`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct MultiArrayDimension {
    pub label: String,
    pub size: u32,
    pub stride: u32,
}
ros_message!(MultiArrayDimension, "std_msgs", "MultiArrayDimension");

/// `std_msgs/MultiArrayLayout`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct MultiArrayLayout {
    pub dim: Vec<MultiArrayDimension>,
    pub data_offset: u32,
}
ros_message!(MultiArrayLayout, "std_msgs", "MultiArrayLayout");

/// `std_msgs/Float64MultiArray`: a common carrier of raw action vectors.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Float64MultiArray {
    pub layout: MultiArrayLayout,
    pub data: Vec<f64>,
}
ros_message!(Float64MultiArray, "std_msgs", "Float64MultiArray");

impl Float64MultiArray {
    /// A one-dimensional array labelled `label`.
    pub fn vector(label: &str, data: Vec<f64>) -> Self {
        let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
        Self {
            layout: MultiArrayLayout {
                dim: vec![MultiArrayDimension {
                    label: label.to_string(),
                    size: n,
                    stride: n,
                }],
                data_offset: 0,
            },
            data,
        }
    }
}
