//! Latent action model (UniVLA stage 2, "task-centric"): two frames about a second apart →
//! 4 codes of a 16-entry codebook, the VLA's `<ACT_i>` targets.
//!
//! * [`model::LatentActionModel`]: DINOv2-reg patch tokens → causal spatio-temporal encoder →
//!   nearest codes (task-centric and task-irrelevant).
//! * [`checkpoint`]: safetensors / Lightning `.ckpt`, `lam.` prefix detected.
//! * [`sequence::SequenceLabeler`]: labels a frame stream at interval k.
//! * [`label`]: the `univla label` command; [`metrics`]: latent-action accuracy.
pub mod checkpoint;
pub mod dino;
pub mod encoder;
pub mod error;
pub mod interp;
pub mod label;
pub mod layers;
pub mod metrics;
pub mod model;
pub mod preprocess;
pub mod sequence;
pub mod vq;

pub use error::{LamError, Result};
pub use label::{run_label, run_label_cli, run_label_frames, LabelArgs, LabelReport, LamDataset};
pub use metrics::{score_steps, LatentActionAccuracy};
pub use model::{LamConfig, LamOutput, LatentAction, LatentActionModel};
pub use sequence::{label_frames, SequenceLabeler, StepLabel};
