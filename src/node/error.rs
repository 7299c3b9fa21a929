//! Errors of the node layer.
use crate::ros::{RosArgsError, RosError};
use crate::runtime::session::RuntimeError;

/// What can stop a node from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A parameter is unknown, mistyped or inconsistent with another one or with the model.
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Args(#[from] RosArgsError),
    #[error(transparent)]
    Ros(#[from] RosError),
    /// Loading the checkpoint or running the policy failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The checkpoint or head could not be loaded.
    #[error("cannot load the policy: {0}")]
    Load(String),
    /// A helper thread could not start or stopped unexpectedly.
    #[error("thread {0}")]
    Thread(String),
    /// A fault inside the running node (inference error or panic, stalled worker) with
    /// `on_fault: exit`: the robot was held, then the node exits non-zero.
    #[error("fault (on_fault: exit): {0}")]
    Fault(String),
}

impl NodeError {
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Self::Config(msg.into())
    }
}
