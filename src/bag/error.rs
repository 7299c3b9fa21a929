//! Errors of the bag layer.
use std::path::PathBuf;

/// Everything that can go wrong while reading, replaying or writing a bag.
#[derive(Debug, thiserror::Error)]
pub enum BagError {
    /// File-system error on a named path.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `metadata.yaml` is malformed or describes something this reader cannot read.
    #[error("{path}: {why}")]
    Metadata { path: PathBuf, why: String },
    /// The bag or file format is not supported (file-level compression, unknown storage, ...).
    #[error("{path}: unsupported: {why}")]
    Unsupported { path: PathBuf, why: String },
    /// A storage file is cut short (a recording that was killed) or otherwise corrupt.
    #[error("{path}: truncated or corrupt bag file: {why}")]
    Corrupt { path: PathBuf, why: String },
    /// A configured topic is not in the bag.
    #[error("bag {bag}: topic {topic} not found (topics in the bag: {available})")]
    MissingTopic {
        bag: PathBuf,
        topic: String,
        available: String,
    },
    /// A topic carries another message type than the one configured.
    #[error("topic {topic}: type {found}, expected {expected}")]
    WrongType {
        topic: String,
        expected: String,
        found: String,
    },
    /// A message payload could not be decoded.
    #[error("topic {topic} at t={log_time_ns} ns: cannot decode {type_name}: {why}")]
    Decode {
        topic: String,
        type_name: String,
        log_time_ns: i64,
        why: String,
    },
    /// Storage-level failure in sqlite3.
    #[error("{path}: sqlite3: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// Storage-level failure in MCAP.
    #[error("{path}: mcap: {source}")]
    Mcap {
        path: PathBuf,
        #[source]
        source: mcap::McapError,
    },
    /// The evaluation configuration is inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// The policy under evaluation failed.
    #[error("policy: {0}")]
    Policy(String),
    /// The latent action model (labeling for latent-action accuracy) failed.
    #[error("LAM: {0}")]
    Lam(#[from] crate::lam::LamError),
    /// Report, plot or output writing failed.
    #[error("output {path}: {why}")]
    Output { path: PathBuf, why: String },
}

impl BagError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
