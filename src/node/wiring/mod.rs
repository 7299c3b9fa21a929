//! The ROS side of the nodes: the control-loop driver, the input thread, the inference worker,
//! the action bridge and the actuators of each node.
pub mod arm_node;
pub mod driver;
pub mod events;
pub mod fjt;
pub mod monitor;
pub mod nav_node;
pub mod pump;
pub mod ros_io;
pub mod worker;
