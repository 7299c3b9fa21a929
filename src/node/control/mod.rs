//! The ROS-agnostic controllers: what each control step, input and stop does to the robot.
pub mod arm;
pub mod core;
pub mod eef;
pub mod nav;
pub mod safety;
pub mod scheduler;
pub mod stop;
pub mod timebase;
pub mod urdf;
