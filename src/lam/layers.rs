//! Small building blocks shared by the DINOv2 extractor and the spatio-temporal encoder.
use tch::Tensor;

use super::error::{LamError, Result};
use crate::model::VarBuilder;

/// `y = x Wᵀ + b`; sizes come from the stored weight.
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Loads `weight` [out, in] (and `bias` [out] when `bias`), sizes read from the weights.
    pub fn load(vb: &VarBuilder, bias: bool) -> Result<Self> {
        let shape = vb.require_shape("weight")?;
        if shape.len() != 2 {
            return Err(LamError::Config(format!(
                "`{}` is not a matrix: {shape:?}",
                vb.path("weight")
            )));
        }
        let weight = vb.get(&shape, "weight")?;
        let bias = if bias { Some(vb.get(&[shape[0]], "bias")?) } else { None };
        Ok(Self { weight, bias })
    }

    pub fn in_dim(&self) -> i64 {
        self.weight.size()[1]
    }

    pub fn out_dim(&self) -> i64 {
        self.weight.size()[0]
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }
}

/// LayerNorm over the last dimension with an affine weight and bias.
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn load(vb: &VarBuilder, eps: f64) -> Result<Self> {
        let shape = vb.require_shape("weight")?;
        let weight = vb.get(&shape, "weight")?;
        let bias = vb.get(&shape, "bias")?;
        Ok(Self { weight, bias, eps })
    }

    pub fn dim(&self) -> i64 {
        self.weight.size()[0]
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dim = self.dim();
        Ok(x.f_layer_norm([dim], Some(&self.weight), Some(&self.bias), self.eps, false)?)
    }
}

/// Counts `prefix.<i>.<probe>` entries, i = 0, 1, … (the number of stacked blocks).
pub fn count_blocks(vb: &VarBuilder, probe: &str) -> usize {
    let mut n = 0;
    while vb.pp(n).contains(probe) {
        n += 1;
    }
    n
}

/// Multi-head attention over [N, L, heads·hd] inputs already projected to q, k, v.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: i64, causal: bool) -> Result<Tensor> {
    let size = q.size();
    let (n, l, e) = (size[0], size[1], size[2]);
    let split = |t: &Tensor| -> Result<Tensor> { Ok(t.f_view([n, l, heads, e / heads])?.f_transpose(1, 2)?) };
    let out = Tensor::f_scaled_dot_product_attention(
        &split(q)?,
        &split(k)?,
        &split(v)?,
        None::<Tensor>,
        0.0,
        causal,
        None,
        false,
    )?;
    Ok(out.f_transpose(1, 2)?.f_reshape([n, l, e])?)
}

/// Heads from config, or the reference's 64-dimensional heads when not given.
pub fn resolve_heads(dim: i64, heads: Option<i64>, what: &str) -> Result<i64> {
    const DEFAULT_HEAD_DIM: i64 = 64;
    let heads = match heads {
        Some(h) => h,
        None if dim % DEFAULT_HEAD_DIM == 0 => dim / DEFAULT_HEAD_DIM,
        None => {
            return Err(LamError::Config(format!(
                "{what}: width {dim} is not a multiple of 64; give the number of attention heads explicitly"
            )))
        }
    };
    if heads <= 0 || dim % heads != 0 {
        return Err(LamError::Config(format!(
            "{what}: {heads} heads do not divide width {dim}"
        )));
    }
    Ok(heads)
}
