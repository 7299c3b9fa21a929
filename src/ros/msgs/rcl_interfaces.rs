//! `rcl_interfaces/Log`: what nodes publish on `/rosout` (rqt_console, `ros2 topic echo /rosout`).
use serde::{Deserialize, Serialize};

use super::builtin_interfaces::Time;
use super::ros_message;

/// One log record.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Log {
    pub stamp: Time,
    pub level: u8,
    /// Logger name: the node's full name without the leading slash, `/` → `.`.
    pub name: String,
    pub msg: String,
    pub file: String,
    pub function: String,
    pub line: u32,
}
ros_message!(Log, "rcl_interfaces", "Log");

impl Log {
    pub const DEBUG: u8 = 10;
    pub const INFO: u8 = 20;
    pub const WARN: u8 = 30;
    pub const ERROR: u8 = 40;
    pub const FATAL: u8 = 50;
}
