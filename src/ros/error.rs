//! Errors of the ROS 2 boundary.
use std::path::PathBuf;

/// Malformed `--ros-args`, parameter files, names or parameter values.
#[derive(Debug, thiserror::Error)]
pub enum RosArgsError {
    /// A ROS flag was the last argument and its value is missing.
    #[error("ROS argument '{0}' needs a value")]
    MissingValue(String),
    /// A flag inside `--ros-args` that rcl does not know.
    #[error(
        "unknown ROS argument '{0}' (after --ros-args; end the ROS arguments with '--' to pass it to the program)"
    )]
    UnknownFlag(String),
    /// A `-r`/`-p`/`--log-level` rule without `:=` or with empty sides.
    #[error("malformed {kind} rule '{rule}': expected {expected}")]
    MalformedRule {
        kind: &'static str,
        rule: String,
        expected: &'static str,
    },
    /// A node name, namespace or topic name that rcl would reject.
    #[error("invalid {kind} '{name}': {why}")]
    InvalidName {
        kind: &'static str,
        name: String,
        why: String,
    },
    /// `--log-level` with an unknown severity.
    #[error("invalid log level '{0}' (expected debug, info, warn, error or fatal)")]
    LogLevel(String),
    /// A parameter value that is not a valid YAML scalar or homogeneous list.
    #[error("invalid value for parameter '{name}': {why}")]
    ParamValue { name: String, why: String },
    /// A parameter file that cannot be read.
    #[error("cannot read parameter file {path}: {source}")]
    ParamFileIo { path: PathBuf, source: std::io::Error },
    /// A parameter file whose structure is not `node: {ros__parameters: {...}}`.
    #[error("parameter file {path}: {why}")]
    ParamFile { path: PathBuf, why: String },
    /// A typed getter found a parameter of another type.
    #[error("param '{name}' must be {expected}, got {found}")]
    ParamType {
        name: String,
        expected: &'static str,
        found: String,
    },
    /// A parameter value outside what the program accepts.
    #[error("param '{name}' {why}")]
    ParamRange { name: String, why: String },
}

/// Failures of the ROS 2 transport (context, node, endpoints).
#[derive(Debug, thiserror::Error)]
pub enum RosError {
    /// Bad `--ros-args`, names or parameters.
    #[error(transparent)]
    Args(#[from] RosArgsError),
    /// `ROS_DOMAIN_ID` is not an integer in the valid range.
    #[error("ROS_DOMAIN_ID '{value}' is invalid: {why}")]
    DomainId { value: String, why: String },
    /// The middleware could not create an entity (participant, node, topic, endpoint).
    #[error("cannot create {what}: {reason}")]
    Create { what: String, reason: String },
    /// Publishing failed.
    #[error("publish on {topic} failed: {reason}")]
    Publish { topic: String, reason: String },
    /// Taking a sample failed (e.g. it did not deserialize).
    #[error("receive on {topic} failed: {reason}")]
    Take { topic: String, reason: String },
    /// A background helper thread could not be started.
    #[error("cannot start thread {name}: {source}")]
    Thread { name: &'static str, source: std::io::Error },
    /// An action goal, cancel or result exchange failed.
    #[error("action {action}: {reason}")]
    Action { action: String, reason: String },
}
