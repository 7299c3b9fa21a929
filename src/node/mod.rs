//! The policy nodes `univla_arm` and `univla_nav`.
//!
//! [`control`] decides what the robot does (goal state machines, chunk scheduling, the safety gate,
//! what a stop sends) without any ROS type on its interface, and is unit-tested without DDS;
//! [`wiring`] moves messages between DDS and the controllers (control loop, input thread,
//! inference worker, action bridge, actuators). Configuration, diagnostics counters and input
//! decoding, which both sides use, sit here at the top.
pub mod config;
pub mod control;
pub mod diagnostics;
pub mod error;
pub mod input;
pub mod priority;
pub mod slot;
pub mod synthetic;
pub mod wiring;

pub use error::NodeError;
