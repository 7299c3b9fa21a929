//! Errors of the model layer: every message names the file and, where there is one, the key.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: cannot read tensors: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{file}: missing tensor `{key}`")]
    MissingKey { file: String, key: String },
    #[error("{file}: tensor `{key}` has shape {found:?}, expected {expected:?}")]
    Shape {
        file: String,
        key: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    /// A file would make the reader build more than its budget allows (hostile or corrupt input).
    #[error("{path}: {what}: {needed} bytes in all, over the budget of {limit} bytes ({rule})")]
    Budget {
        path: PathBuf,
        what: String,
        needed: u64,
        limit: u64,
        rule: &'static str,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Invalid(String),
    #[error("CUDA graph: {0}")]
    Graph(String),
}

pub type Result<T> = std::result::Result<T, ModelError>;
