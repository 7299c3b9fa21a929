//! Errors of the latent-action layer: model loading, image input, labeling output.
use std::path::PathBuf;

use crate::model::ModelError;
use crate::runtime::preprocess::PreprocessError;

#[derive(Debug, thiserror::Error)]
pub enum LamError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Image(#[from] PreprocessError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("invalid LAM configuration: {0}")]
    Config(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("{path}: cannot write: {reason}")]
    Output { path: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, LamError>;
