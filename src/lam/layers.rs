//! Loaders that size the shared `model::vision::layers` from the stored weights, and the helpers
//! the spatio-temporal encoder and the DINOv2 wrapper need besides.
use tch::Tensor;

use super::error::{LamError, Result};
use crate::model::vision::layers::{LayerNorm, Linear};
use crate::model::VarBuilder;

/// `weight` [out, in] (and `bias` [out] when `bias`) under `vb`, sizes read from the weights.
pub fn linear(vb: &VarBuilder, bias: bool) -> Result<Linear> {
    let shape = weight_shape(vb, 2)?;
    let (out_dim, in_dim) = (shape[0], shape[1]);
    Ok(if bias {
        Linear::new(vb, in_dim, out_dim)?
    } else {
        Linear::new_no_bias(vb, in_dim, out_dim)?
    })
}

/// Affine LayerNorm over the last dimension with `eps`, its width read from `weight`.
pub fn layer_norm(vb: &VarBuilder, eps: f64) -> Result<LayerNorm> {
    Ok(LayerNorm::new(vb, weight_shape(vb, 1)?[0], eps)?)
}

/// The stored shape of `weight` under `vb`, which must have `rank` dimensions.
fn weight_shape(vb: &VarBuilder, rank: usize) -> Result<Vec<i64>> {
    let shape = vb.require_shape("weight")?;
    if shape.len() != rank {
        return Err(LamError::Config(format!(
            "`{}` has shape {shape:?}, expected {rank} dimensions",
            vb.path("weight")
        )));
    }
    Ok(shape)
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
