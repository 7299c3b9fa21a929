//! UniVLA networks and checkpoint reading. Module paths mirror the checkpoint keys.
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod generate;
pub mod llama;
pub mod prompt;
pub mod weights;

pub use config::{LlamaConfig, VlaConfig};
pub use error::ModelError;
pub use weights::VarBuilder;
pub mod heads;
pub mod torch_pt;
