//! `PrismaticProjector`: vision patch features → LLM embedding space. The fused variant
//! ("fused-gelu-mlp") is fc1 (4·vision_dim) → GELU → fc2 → GELU → fc3; the plain "gelu-mlp"
//! variant is fc1 → GELU → fc2. Which one a checkpoint holds is read from its keys.
use tch::Tensor;

use crate::model::error::{ModelError, Result};
use crate::model::vision::layers::{gelu, Linear};
use crate::model::weights::VarBuilder;

/// fc1 width of the fused projector relative to the vision feature width.
const FUSED_HIDDEN_FACTOR: i64 = 4;

/// Sizes the projector connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProjectorConfig {
    /// Width of the (concatenated) vision features.
    pub vision_dim: i64,
    /// LLM hidden size.
    pub llm_dim: i64,
    /// Three layers ("fused-gelu-mlp", UniVLA) or two ("gelu-mlp").
    pub fused: bool,
}

/// The projector MLP; keys `fc1`, `fc2`(, `fc3`) under `vb` (the `projector` prefix).
#[derive(Debug)]
pub struct Projector {
    layers: Vec<Linear>,
}

impl Projector {
    /// Loads the layers, checking every shape; fc1's width is read from the weights when stored
    /// (else 4·vision_dim).
    pub fn new(vb: VarBuilder, cfg: &ProjectorConfig) -> Result<Self> {
        let layers = if cfg.fused {
            let hidden = match vb.shape_of("fc1.weight") {
                Some(shape) if shape.len() == 2 => shape[0],
                Some(shape) => {
                    return Err(ModelError::Shape {
                        file: "<checkpoint>".into(),
                        key: vb.path("fc1.weight"),
                        expected: vec![FUSED_HIDDEN_FACTOR * cfg.vision_dim, cfg.vision_dim],
                        found: shape,
                    })
                }
                None => FUSED_HIDDEN_FACTOR * cfg.vision_dim,
            };
            vec![
                Linear::new(&vb.pp("fc1"), cfg.vision_dim, hidden)?,
                Linear::new(&vb.pp("fc2"), hidden, cfg.llm_dim)?,
                Linear::new(&vb.pp("fc3"), cfg.llm_dim, cfg.llm_dim)?,
            ]
        } else {
            vec![
                Linear::new(&vb.pp("fc1"), cfg.vision_dim, cfg.llm_dim)?,
                Linear::new(&vb.pp("fc2"), cfg.llm_dim, cfg.llm_dim)?,
            ]
        };
        Ok(Self { layers })
    }

    /// `[B, N, vision_dim]` → `[B, N, llm_dim]` (GELU between layers, none after the last).
    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        let last = self.layers.len() - 1;
        let mut x = features.f_to_kind(self.layers[0].kind())?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if i < last {
                x = gelu(&x)?;
            }
        }
        Ok(x)
    }

    /// Output width.
    pub fn out_dim(&self) -> i64 {
        self.layers.last().map_or(0, Linear::out_dim)
    }
}
