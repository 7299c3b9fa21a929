//! The LAM's spatio-temporal transformer encoder (reference `SpatioTemporalTransformer` with
//! `causal_temporal=True, to_out=False`): input projection, sinusoidal position encoding over the
//! within-frame token index, then blocks of spatial attention, causal temporal attention and MLP.
use tch::{Device, Kind, Tensor};

use super::error::{LamError, Result};
use super::layers::{attention, count_blocks, layer_norm, linear, resolve_heads};
use crate::model::vision::layers::{gelu, LayerNorm, Linear};
use crate::model::VarBuilder;

/// PyTorch's default LayerNorm epsilon (the reference leaves it unset).
const LN_EPS: f64 = 1e-5;
/// Base of the sinusoidal position encoding.
const PE_BASE: f64 = 10000.0;

/// Self-attention with bias-free q/k/v projections and a biased output projection.
struct SelfAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: i64,
}

impl SelfAttention {
    fn load(vb: &VarBuilder, heads: i64) -> Result<Self> {
        Ok(Self {
            to_q: linear(&vb.pp("to_q"), false)?,
            to_k: linear(&vb.pp("to_k"), false)?,
            to_v: linear(&vb.pp("to_v"), false)?,
            to_out: linear(&vb.pp("to_out").pp(0), true)?,
            heads,
        })
    }

    fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let (q, k, v) = (self.to_q.forward(x)?, self.to_k.forward(x)?, self.to_v.forward(x)?);
        Ok(self.to_out.forward(&attention(&q, &k, &v, self.heads, causal)?)?)
    }
}

/// Pre-LN block: spatial attention within each frame, causal attention across frames per token,
/// then the MLP.
struct SpatioTemporalBlock {
    spatial_attn: SelfAttention,
    temporal_attn: SelfAttention,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl SpatioTemporalBlock {
    fn load(vb: &VarBuilder, heads: i64) -> Result<Self> {
        Ok(Self {
            spatial_attn: SelfAttention::load(&vb.pp("spatial_attn"), heads)?,
            temporal_attn: SelfAttention::load(&vb.pp("temporal_attn"), heads)?,
            norm1: layer_norm(&vb.pp("norm1"), LN_EPS)?,
            norm2: layer_norm(&vb.pp("norm2"), LN_EPS)?,
            norm3: layer_norm(&vb.pp("norm3"), LN_EPS)?,
            fc1: linear(&vb.pp("ffn").pp(0), true)?,
            fc2: linear(&vb.pp("ffn").pp(3), true)?,
        })
    }

    /// x: [B, T, S, E] → same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        let (b, t, s, e) = (size[0], size[1], size[2], size[3]);
        let xs = x.f_reshape([b * t, s, e])?;
        let xs = xs.f_add(&self.spatial_attn.forward(&self.norm1.forward(&xs)?, false)?)?;
        let xt = xs.f_view([b, t, s, e])?.f_transpose(1, 2)?.f_reshape([b * s, t, e])?;
        let xt = xt.f_add(&self.temporal_attn.forward(&self.norm2.forward(&xt)?, true)?)?;
        let x = xt.f_view([b, s, t, e])?.f_transpose(1, 2)?.f_contiguous()?;
        let mlp = self.fc2.forward(&gelu(&self.fc1.forward(&self.norm3.forward(&x)?)?)?)?;
        Ok(x.f_add(&mlp)?)
    }
}

/// Encoder over [B, T, S, in_dim] token grids → [B, T, S, model_dim].
pub struct SpatioTemporalEncoder {
    norm_in: LayerNorm,
    proj: Linear,
    norm_out: LayerNorm,
    blocks: Vec<SpatioTemporalBlock>,
}

impl SpatioTemporalEncoder {
    /// Loads from `vb` (the `encoder` prefix); widths and depth come from the weights, `heads`
    /// defaults to model_dim/64 (12 for the released model).
    pub fn load(vb: &VarBuilder, heads: Option<i64>) -> Result<Self> {
        let norm_in = layer_norm(&vb.pp("ffn").pp(0), LN_EPS)?;
        let proj = linear(&vb.pp("ffn").pp(1), true)?;
        let norm_out = layer_norm(&vb.pp("ffn").pp(2), LN_EPS)?;
        let model_dim = proj.out_dim();
        if model_dim % 2 != 0 {
            return Err(LamError::Config(format!(
                "encoder width {model_dim} must be even (sinusoidal encoding)"
            )));
        }
        let heads = resolve_heads(model_dim, heads, "LAM encoder")?;
        let vb_blocks = vb.pp("transformer_blocks");
        let depth = count_blocks(&vb_blocks, "norm1.weight");
        if depth == 0 {
            return Err(LamError::Config(format!(
                "no encoder blocks under `{}`",
                vb_blocks.prefix()
            )));
        }
        let blocks = (0..depth)
            .map(|i| SpatioTemporalBlock::load(&vb_blocks.pp(i), heads))
            .collect::<Result<_>>()?;
        Ok(Self {
            norm_in,
            proj,
            norm_out,
            blocks,
        })
    }

    pub fn in_dim(&self) -> i64 {
        self.proj.in_dim()
    }

    pub fn model_dim(&self) -> i64 {
        self.proj.out_dim()
    }

    /// Number of spatio-temporal blocks.
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        if size.len() != 4 || size[3] != self.in_dim() {
            return Err(LamError::Input(format!(
                "encoder input must be [B, T, S, {}], got {size:?}",
                self.in_dim()
            )));
        }
        let h = self.norm_out.forward(&self.proj.forward(&self.norm_in.forward(x)?)?)?;
        let mut h = h.f_add(&sinusoidal_encoding(size[2], self.model_dim(), x.device())?)?;
        for block in &self.blocks {
            h = block.forward(&h)?;
        }
        Ok(h)
    }
}

/// pe[p, 2i] = sin(p·ω_i), pe[p, 2i+1] = cos(p·ω_i), ω_i = exp(−2i·ln(10000)/d), in f32 with the
/// same operation order as the reference so the values match bit for bit.
pub fn sinusoidal_encoding(len: i64, dim: i64, device: Device) -> Result<Tensor> {
    let opts = (Kind::Float, device);
    let position = Tensor::f_arange(len, (Kind::Int64, device))?
        .f_to_kind(Kind::Float)?
        .f_unsqueeze(1)?;
    let exponent = Tensor::f_arange_start_step(0, dim, 2, (Kind::Int64, device))?.f_to_kind(Kind::Float)?;
    let freq = exponent.f_mul_scalar(-(PE_BASE.ln() / dim as f64))?.f_exp()?;
    let angle = position.f_mul(&freq)?;
    let pe = Tensor::f_stack(&[angle.f_sin()?, angle.f_cos()?], 2)?.f_reshape([len, dim])?;
    Ok(pe.f_to_kind(opts.0)?)
}
