//! The ROS 2 boundary: message types, `--ros-args`, QoS and transport on `ros2-client`.
pub mod msgs;
