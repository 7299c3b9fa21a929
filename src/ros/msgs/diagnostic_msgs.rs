//! `diagnostic_msgs`: node health for `/diagnostics`.
use serde::{Deserialize, Serialize};

use super::ros_message;
use super::std_msgs::Header;

/// `diagnostic_msgs/KeyValue`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}
ros_message!(KeyValue, "diagnostic_msgs", "KeyValue");

/// `diagnostic_msgs/DiagnosticStatus`; `level` is a ROS `byte` (one of the constants below).
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct DiagnosticStatus {
    pub level: u8,
    pub name: String,
    pub message: String,
    pub hardware_id: String,
    pub values: Vec<KeyValue>,
}
ros_message!(DiagnosticStatus, "diagnostic_msgs", "DiagnosticStatus");

impl DiagnosticStatus {
    pub const OK: u8 = 0;
    pub const WARN: u8 = 1;
    pub const ERROR: u8 = 2;
    pub const STALE: u8 = 3;
}

/// `diagnostic_msgs/DiagnosticArray`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct DiagnosticArray {
    pub header: Header,
    pub status: Vec<DiagnosticStatus>,
}
ros_message!(DiagnosticArray, "diagnostic_msgs", "DiagnosticArray");
