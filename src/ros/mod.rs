//! The ROS 2 boundary: message types, `--ros-args`, QoS and transport on `ros2-client`.
pub mod args;
pub mod error;
pub mod msgs;
pub mod names;
pub mod params;

pub use args::{LogLevel, NodeIdentity, ParamFileEntry, ParamSource, RosArgs};
pub use error::RosArgsError;
pub use params::{ParamValue, Params};
