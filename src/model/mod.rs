//! UniVLA networks and checkpoint reading. Module paths mirror the checkpoint keys.
pub mod error;
pub mod projector;
pub mod vision;
pub mod weights;

pub use error::ModelError;
pub use weights::VarBuilder;
