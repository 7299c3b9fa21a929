//! UniVLA networks and checkpoint reading. Module paths mirror the checkpoint keys.
pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod cuda_graph;
pub mod error;
pub mod generate;
pub mod generation_config;
pub mod heads;
pub mod llama;
pub mod projector;
pub mod prompt;
pub mod synthetic;
pub mod torch_pt;
pub mod vision;
pub mod vla;
pub mod weights;

pub use config::{LlamaConfig, VlaConfig};
pub use error::ModelError;
pub use weights::VarBuilder;
