//! The ROS 2 boundary: message types, `--ros-args`, QoS and transport on `ros2-client`.
pub mod action;
pub mod args;
pub mod clock;
pub mod distro;
pub mod error;
pub mod logging;
pub mod msgs;
pub mod names;
pub mod netns;
pub mod params;
pub mod qos;
pub mod smoke;
pub mod transport;

pub use args::{LogLevel, NodeIdentity, ParamFileEntry, ParamSource, RosArgs};
pub use clock::RosClock;
pub use error::{RosArgsError, RosError};
pub use netns::require_private_netns;
pub use params::{ParamValue, Params};
pub use qos::Qos;
pub use transport::{RosContext, RosNode, RosPublisher, RosSubscription};
