//! The policy nodes `univla_arm` and `univla_nav`.
//!
//! A ROS-agnostic core ([`slot`], [`scheduler`], [`safety`], [`diagnostics`], [`worker`], [`arm`],
//! [`nav`]) decides what the robot does at each control step and is unit-tested without DDS; the
//! ROS wiring ([`ros_io`], [`arm_node`], [`nav_node`]) only moves messages in and out of it.
pub mod arm;
pub mod arm_node;
pub mod config;
pub mod core;
pub mod diagnostics;
pub mod driver;
pub mod eef;
pub mod error;
pub mod fjt;
pub mod input;
pub mod monitor;
pub mod nav;
pub mod nav_node;
pub mod priority;
pub mod pump;
pub mod ros_io;
pub mod safety;
pub mod scheduler;
pub mod slot;
pub mod synthetic;
pub mod timebase;
pub mod urdf;
pub mod worker;

pub use error::NodeError;
