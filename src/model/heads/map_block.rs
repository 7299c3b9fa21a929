//! Building blocks of the action decoder heads (spec §4.1): the MAP attention-pooling block with
//! its own RMSNorm and SwishGLU. Checkpoint keys: `projection.*`, `latents`, `attn_norm.g`,
//! `attn.{q,kv,proj}.*`, `mlp_norm.g`, `mlp.0.project.*`, `mlp.1.*`.
use tch::Tensor;

use crate::model::error::{ModelError, Result};
use crate::model::VarBuilder;

/// Floor of the RMS in [`RmsNorm`] (the reference's `eps`).
const RMS_NORM_EPS: f64 = 1e-8;

/// A linear layer `y = x Wᵀ + b`.
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Loads `weight` (`[out, in]`) and, if `bias`, `bias` (`[out]`).
    pub fn new(vb: &VarBuilder, in_dim: i64, out_dim: i64, bias: bool) -> Result<Self> {
        let weight = vb.get(&[out_dim, in_dim], "weight")?;
        let bias = if bias { Some(vb.get(&[out_dim], "bias")?) } else { None };
        Ok(Self { weight, bias })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }
}

/// The MAP RMSNorm: `x / max(‖x‖₂·d^(−1/2), eps) · g` (not LLaMA's mean-square + eps form).
pub struct RmsNorm {
    g: Tensor,
    inv_sqrt_dim: f64,
}

impl RmsNorm {
    pub fn new(vb: &VarBuilder, dim: i64) -> Result<Self> {
        Ok(Self {
            g: vb.get(&[dim], "g")?,
            inv_sqrt_dim: (dim as f64).powf(-0.5),
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let norm = x.f_norm_scalaropt_dim(2.0, [-1i64].as_slice(), true)? * self.inv_sqrt_dim;
        Ok((x / norm.f_clamp_min(RMS_NORM_EPS)?) * &self.g)
    }
}

/// SwishGLU: one projection to twice the width; first half is the value, second half the gate.
pub struct SwishGlu {
    project: Linear,
}

impl SwishGlu {
    pub fn new(vb: &VarBuilder, in_dim: i64, out_dim: i64) -> Result<Self> {
        Ok(Self {
            project: Linear::new(&vb.pp("project"), in_dim, 2 * out_dim, true)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.project.forward(x)?;
        let parts = h.f_chunk(2, -1)?;
        let [value, gate] = parts.as_slice() else {
            return Err(ModelError::Invalid("SwishGLU: projection did not split in two".into()));
        };
        Ok(value * gate.f_silu()?)
    }
}

/// Multi-head attention of a few latent queries over a sequence (`q`, `kv` without bias;
/// the first `C` rows of `kv` produce keys, the last `C` values).
pub struct MapAttention {
    q: Linear,
    kv: Linear,
    proj: Linear,
    n_heads: i64,
    head_dim: i64,
}

impl MapAttention {
    pub fn new(vb: &VarBuilder, embed_dim: i64, n_heads: i64) -> Result<Self> {
        if n_heads <= 0 || embed_dim % n_heads != 0 {
            return Err(ModelError::Config(format!(
                "{}: embed_dim {embed_dim} is not divisible by n_heads {n_heads}",
                vb.prefix()
            )));
        }
        Ok(Self {
            q: Linear::new(&vb.pp("q"), embed_dim, embed_dim, false)?,
            kv: Linear::new(&vb.pp("kv"), embed_dim, 2 * embed_dim, false)?,
            proj: Linear::new(&vb.pp("proj"), embed_dim, embed_dim, true)?,
            n_heads,
            head_dim: embed_dim / n_heads,
        })
    }

    /// `seed`: `[B, K, C]` queries; `x`: `[B, N, C]`. Returns `[B, K, C]`.
    pub fn forward(&self, seed: &Tensor, x: &Tensor) -> Result<Tensor> {
        let (b, k, c) = seed.size3()?;
        let (_, n, _) = x.size3()?;
        let q = self
            .q
            .forward(seed)?
            .f_reshape([b, k, self.n_heads, self.head_dim])?
            .f_transpose(1, 2)?;
        let kv = self
            .kv
            .forward(x)?
            .f_reshape([b, n, 2, self.n_heads, self.head_dim])?
            .f_permute([2, 0, 3, 1, 4])?;
        let (key, value) = (kv.f_get(0)?, kv.f_get(1)?);
        let out = Tensor::f_scaled_dot_product_attention(&q, &key, &value, None::<Tensor>, 0.0, false, None, false)?;
        let out = out.f_transpose(1, 2)?.f_reshape([b, k, c])?;
        self.proj.forward(&out)
    }
}

/// Multi-head attention pooling (`MAPBlock`, one latent): projects the sequence to `embed_dim`,
/// attends from the learned latent (plus an optional `init_embed`), post-norm residual MLP.
pub struct MapBlock {
    projection: Linear,
    latents: Tensor,
    attn: MapAttention,
    attn_norm: RmsNorm,
    mlp_in: SwishGlu,
    mlp_out: Linear,
    mlp_norm: RmsNorm,
    in_dim: i64,
    embed_dim: i64,
}

impl MapBlock {
    /// Loads a block under `vb`; all sizes come from the weights.
    pub fn new(vb: &VarBuilder, n_heads: i64) -> Result<Self> {
        let latents_shape = vb.require_shape("latents")?;
        let [n_latents, embed_dim] = latents_shape[..] else {
            return Err(ModelError::Config(format!(
                "{}: latents has shape {latents_shape:?}",
                vb.path("latents")
            )));
        };
        if n_latents != 1 {
            return Err(ModelError::Config(format!(
                "{}: {n_latents} latents, expected 1",
                vb.path("latents")
            )));
        }
        let proj_shape = vb.require_shape("projection.weight")?;
        let in_dim = *proj_shape
            .get(1)
            .ok_or_else(|| ModelError::Config(format!("{}: shape {proj_shape:?}", vb.path("projection.weight"))))?;
        let hidden_shape = vb.require_shape("mlp.1.weight")?;
        let hidden = *hidden_shape
            .get(1)
            .ok_or_else(|| ModelError::Config(format!("{}: shape {hidden_shape:?}", vb.path("mlp.1.weight"))))?;
        Ok(Self {
            projection: Linear::new(&vb.pp("projection"), in_dim, embed_dim, true)?,
            latents: vb.get(&[1, embed_dim], "latents")?,
            attn: MapAttention::new(&vb.pp("attn"), embed_dim, n_heads)?,
            attn_norm: RmsNorm::new(&vb.pp("attn_norm"), embed_dim)?,
            mlp_in: SwishGlu::new(&vb.pp("mlp").pp(0), embed_dim, hidden)?,
            mlp_out: Linear::new(&vb.pp("mlp").pp(1), hidden, embed_dim, true)?,
            mlp_norm: RmsNorm::new(&vb.pp("mlp_norm"), embed_dim)?,
            in_dim,
            embed_dim,
        })
    }

    /// Width of the pooled sequence.
    pub fn in_dim(&self) -> i64 {
        self.in_dim
    }

    pub fn embed_dim(&self) -> i64 {
        self.embed_dim
    }

    /// `x`: `[B, N, in_dim]`, `init_embed`: `[B, embed_dim]`. Returns `[B, embed_dim]`.
    pub fn forward(&self, x: &Tensor, init_embed: Option<&Tensor>) -> Result<Tensor> {
        let (b, _, _) = x.size3()?;
        let mut latents = self.latents.f_unsqueeze(0)?.f_expand([b, 1, self.embed_dim], false)?;
        if let Some(init) = init_embed {
            latents += init.f_unsqueeze(1)?;
        }
        let xp = self.projection.forward(x)?;
        let latents = self
            .attn_norm
            .forward(&(&latents + self.attn.forward(&latents, &xp)?))?;
        let mlp = self.mlp_out.forward(&self.mlp_in.forward(&latents)?)?;
        let latents = self.mlp_norm.forward(&(&latents + mlp))?;
        Ok(latents.f_squeeze_dim(1)?)
    }
}
