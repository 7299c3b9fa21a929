//! Nearest-code lookup in a VQ codebook (reference `VectorQuantizer.forward` at inference).
use tch::{Kind, Tensor};

use super::error::{LamError, Result};
use crate::model::VarBuilder;

/// `torch.cdist` compute mode that never uses the matrix-product shortcut: the reference's
/// shapes (4 queries × 16 codes) always take the direct path, so this matches it at any batch.
const CDIST_DIRECT: i64 = 2;

/// A codebook [K, D]: K codes of width D.
pub struct Codebook {
    weight: Tensor,
}

/// Result of quantizing [N, Q, D] vectors.
pub struct Quantized {
    /// Euclidean distances to every code, [N, Q, K].
    pub distances: Tensor,
    /// Index of the nearest code (first on ties), [N, Q] int64.
    pub indices: Tensor,
    /// The chosen codes, [N, Q, D].
    pub quantized: Tensor,
}

impl Codebook {
    /// Loads `codebook.weight` under `vb` (e.g. `vq_action`).
    pub fn load(vb: &VarBuilder) -> Result<Self> {
        let shape = vb.require_shape("codebook.weight")?;
        if shape.len() != 2 {
            return Err(LamError::Config(format!(
                "codebook `{}` is not a matrix: {shape:?}",
                vb.prefix()
            )));
        }
        Ok(Self {
            weight: vb.get(&shape, "codebook.weight")?,
        })
    }

    pub fn num_codes(&self) -> i64 {
        self.weight.size()[0]
    }

    pub fn dim(&self) -> i64 {
        self.weight.size()[1]
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn quantize(&self, x: &Tensor) -> Result<Quantized> {
        let size = x.size();
        if size.len() != 3 || size[2] != self.dim() {
            return Err(LamError::Input(format!(
                "quantizer input must be [N, Q, {}], got {size:?}",
                self.dim()
            )));
        }
        let codes = self
            .weight
            .f_unsqueeze(0)?
            .f_expand([size[0], self.num_codes(), self.dim()], false)?;
        let distances = Tensor::f_cdist(x, &codes, 2.0, CDIST_DIRECT)?;
        let indices = distances.f_argmin(-1, false)?.f_to_kind(Kind::Int64)?;
        let quantized = Tensor::f_embedding(&self.weight, &indices, -1, false, false)?;
        Ok(Quantized {
            distances,
            indices,
            quantized,
        })
    }
}
