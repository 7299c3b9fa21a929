//! The action decoder heads (spec §4.2): small f32 networks that turn the VLA's last-layer hidden
//! states (`visual_embed` `[B, 256, vis]`, `latent_action` `[B, 4, vis]`) into an action chunk.
//!
//! The variant is recognised from the checkpoint keys and every size is read from the weights
//! (the official code hard-codes them); only the head count is not stored, so it is 8 unless an
//! `action_decoder_config.json` beside the checkpoint names the file with another `n_heads`.
pub mod map_block;

use std::path::Path;

use tch::{Device, Kind, Tensor};

use self::map_block::{Linear, MapBlock};
use super::error::{ModelError, Result};
use super::{torch_pt, VarBuilder};

pub use self::map_block::{MapAttention, RmsNorm, SwishGlu};

/// Attention heads of the MAP blocks in every released head.
pub const DEFAULT_N_HEADS: i64 = 8;
/// Action width of the arm heads (xyz, roll/pitch/yaw, gripper).
pub const ARM_ACTION_DIM: i64 = 7;
/// Logits per step of the R2R navigation head (stop, forward, left, right).
pub const NAV_ACTION_DIM: i64 = 4;
/// Latent action tokens the arm heads pool (the last four hidden states).
const LATENT_TOKENS: i64 = 4;
/// File that records the sizes of fixture/custom heads, looked up beside the checkpoint.
const CONFIG_FILE: &str = "action_decoder_config.json";

/// Which head a checkpoint holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadKind {
    /// `real_world_deployment.py`: visual + latent pools, proprio MLP, linear output (z-scores).
    RealWorld,
    /// LIBERO / CALVIN / Bridge: visual + latent pools, linear + tanh output.
    Libero,
    /// R2R navigation: latent pool without init embed, cat[z, v], 4 logits per step.
    R2r,
}

/// A head's output for one query, with the intermediates the parity tests compare.
pub struct HeadOutput {
    /// `[B, W·A]`: the head's final layer (after tanh for LIBERO; logits for R2R).
    pub raw: Tensor,
    /// `[B, W, A]`: the action chunk (R2R: softmax probabilities).
    pub chunk: Tensor,
    /// `[B, E]`: `visual_pool(visual_embed)`.
    pub visual_pool_out: Tensor,
    /// `[B, E]`: the latent-action pool output (`attn_pool` / `latent_action_pool`).
    pub action_pool_out: Tensor,
    /// `[B, E]`: `proprio_proj(proprio)` (real-world head only).
    pub proprio_out: Option<Tensor>,
}

impl HeadOutput {
    /// The first chunk of the batch as f64, row-major `W × A` (what the reference's
    /// `np.array(pred.tolist())` holds).
    pub fn chunk_f64(&self) -> Result<Vec<f64>> {
        let first = self
            .chunk
            .f_get(0)?
            .f_to_kind(Kind::Double)?
            .f_contiguous()?
            .f_view([-1])?;
        Ok(Vec::<f64>::try_from(&first)?)
    }
}

/// The proprio MLP of the real-world head: Linear → GELU(erf) → Linear.
struct ProprioProj {
    fc0: Linear,
    fc2: Linear,
    in_dim: i64,
}

/// An action decoder head with its variant-specific wiring.
pub struct ActionHead {
    kind: HeadKind,
    window: i64,
    action_dim: i64,
    n_heads: i64,
    visual_pool: MapBlock,
    action_pool: MapBlock,
    proprio: Option<ProprioProj>,
    proj: Linear,
    device: Device,
}

impl ActionHead {
    /// Loads a head from a `.safetensors` file or a `torch.save` file (`.pt`, `.pth`, ...).
    /// The head count is [`DEFAULT_N_HEADS`] unless `action_decoder_config.json` beside the file
    /// says otherwise.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let n_heads = n_heads_from_config(path)?.unwrap_or(DEFAULT_N_HEADS);
        Self::load_with_heads(path, n_heads, device)
    }

    /// As [`Self::load`] with an explicit head count.
    pub fn load_with_heads(path: &Path, n_heads: i64, device: Device) -> Result<Self> {
        let is_safetensors = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        let vb = if is_safetensors {
            VarBuilder::from_safetensors(&[path], Kind::Float, device)?
        } else {
            let tensors = torch_pt::read_state_dict(path, None)?;
            VarBuilder::from_tensors(path.display().to_string(), tensors, Kind::Float, device)
        };
        Self::new(&vb, n_heads)
    }

    /// Builds the head from weights; the variant is recognised from the keys.
    pub fn new(vb: &VarBuilder, n_heads: i64) -> Result<Self> {
        let kind = if vb.contains("latent_action_pool.latents") {
            HeadKind::Libero
        } else if vb.contains("attn_pool.latents") && vb.contains("proprio_proj.0.weight") {
            HeadKind::RealWorld
        } else if vb.contains("attn_pool.latents") && vb.contains("proj.weight") {
            HeadKind::R2r
        } else {
            let keys = vb.keys();
            return Err(ModelError::Config(format!(
                "not an action decoder head: expected `latent_action_pool.*` or `attn_pool.*` keys, found [{}]",
                keys.join(", ")
            )));
        };
        let visual_pool = MapBlock::new(&vb.pp("visual_pool"), n_heads)?;
        let pool_name = if kind == HeadKind::Libero {
            "latent_action_pool"
        } else {
            "attn_pool"
        };
        let action_pool = MapBlock::new(&vb.pp(pool_name), n_heads)?;
        let embed = action_pool.embed_dim();
        if visual_pool.embed_dim() != embed {
            return Err(ModelError::Config(format!(
                "visual_pool width {} differs from {pool_name} width {embed}",
                visual_pool.embed_dim()
            )));
        }
        let (proj_vb, action_dim, proj_in) = match kind {
            HeadKind::Libero => (vb.pp("proj").pp(0), ARM_ACTION_DIM, embed),
            HeadKind::RealWorld => (vb.pp("proj").pp(0), ARM_ACTION_DIM, 2 * embed),
            HeadKind::R2r => (vb.pp("proj"), NAV_ACTION_DIM, 2 * embed),
        };
        let rows = proj_vb.require_shape("weight")?[0];
        if rows <= 0 || rows % action_dim != 0 {
            return Err(ModelError::Config(format!(
                "{}: {rows} rows is not a multiple of the action width {action_dim}",
                proj_vb.path("weight")
            )));
        }
        let proj = Linear::new(&proj_vb, proj_in, rows, true)?;
        let proprio = if kind == HeadKind::RealWorld {
            let pvb = vb.pp("proprio_proj");
            let in_dim = *pvb.require_shape("0.weight")?.get(1).unwrap_or(&ARM_ACTION_DIM);
            Some(ProprioProj {
                fc0: Linear::new(&pvb.pp(0), in_dim, embed, true)?,
                fc2: Linear::new(&pvb.pp(2), embed, embed, true)?,
                in_dim,
            })
        } else {
            None
        };
        Ok(Self {
            kind,
            window: rows / action_dim,
            action_dim,
            n_heads,
            visual_pool,
            action_pool,
            proprio,
            proj,
            device: vb.device(),
        })
    }

    pub fn kind(&self) -> HeadKind {
        self.kind
    }

    /// Steps per predicted chunk (W).
    pub fn window(&self) -> i64 {
        self.window
    }

    /// Values per step (7 for arms, 4 for R2R).
    pub fn action_dim(&self) -> i64 {
        self.action_dim
    }

    /// Width of the hidden states the head expects (the LM hidden size).
    pub fn vis_dim(&self) -> i64 {
        self.visual_pool.in_dim()
    }

    /// Width of the pooled embeddings.
    pub fn embed_dim(&self) -> i64 {
        self.action_pool.embed_dim()
    }

    pub fn n_heads(&self) -> i64 {
        self.n_heads
    }

    /// Whether [`Self::forward`] needs `proprio`.
    pub fn needs_proprio(&self) -> bool {
        self.proprio.is_some()
    }

    /// Width of the proprio vector the real-world head expects.
    pub fn proprio_dim(&self) -> Option<i64> {
        self.proprio.as_ref().map(|p| p.in_dim)
    }

    /// Runs the head in f32. `visual_embed`: `[B, N, vis]`; `latent_action`: `[B, L, vis]` (arms
    /// pool the last four tokens); `proprio`: `[B, 7]`, required by the real-world head only.
    pub fn forward(
        &self,
        visual_embed: &Tensor,
        latent_action: &Tensor,
        proprio: Option<&Tensor>,
    ) -> Result<HeadOutput> {
        let visual = self.input(visual_embed, "visual_embed")?;
        let mut latent = self.input(latent_action, "latent_action")?;
        let (batch, tokens, _) = latent.size3()?;
        if visual.size()[0] != batch {
            return Err(ModelError::Invalid(format!(
                "visual_embed batch {} differs from latent_action batch {batch}",
                visual.size()[0]
            )));
        }
        if self.kind != HeadKind::R2r && tokens > LATENT_TOKENS {
            latent = latent.f_narrow(1, tokens - LATENT_TOKENS, LATENT_TOKENS)?;
        }
        let visual_pool_out = self.visual_pool.forward(&visual, None)?;
        let (action_pool_out, proprio_out, raw) = match self.kind {
            HeadKind::Libero => {
                let z = self.action_pool.forward(&latent, Some(&visual_pool_out))?;
                let raw = self.proj.forward(&z)?.f_tanh()?;
                (z, None, raw)
            }
            HeadKind::RealWorld => {
                let z = self.action_pool.forward(&latent, Some(&visual_pool_out))?;
                let p = self.proprio_forward(proprio, batch)?;
                let raw = self.proj.forward(&Tensor::f_cat(&[&z, &p], 1)?)?;
                (z, Some(p), raw)
            }
            HeadKind::R2r => {
                let z = self.action_pool.forward(&latent, None)?;
                let raw = self.proj.forward(&Tensor::f_cat(&[&z, &visual_pool_out], 1)?)?;
                (z, None, raw)
            }
        };
        let chunk = raw.f_reshape([batch, self.window, self.action_dim])?;
        let chunk = if self.kind == HeadKind::R2r {
            chunk.f_softmax(-1, Kind::Float)?
        } else {
            chunk
        };
        Ok(HeadOutput {
            raw,
            chunk,
            visual_pool_out,
            action_pool_out,
            proprio_out,
        })
    }

    fn proprio_forward(&self, proprio: Option<&Tensor>, batch: i64) -> Result<Tensor> {
        let (Some(pp), Some(x)) = (&self.proprio, proprio) else {
            return Err(ModelError::Invalid("the real-world head needs a proprio vector".into()));
        };
        let x = x.f_to_kind(Kind::Float)?.f_to_device(self.device)?;
        if x.size() != [batch, pp.in_dim] {
            return Err(ModelError::Invalid(format!(
                "proprio has shape {:?}, expected [{batch}, {}]",
                x.size(),
                pp.in_dim
            )));
        }
        let h = pp.fc0.forward(&x)?.f_gelu("none")?;
        pp.fc2.forward(&h)
    }

    /// Checks a `[B, N, vis]` input and casts it to f32 on the head's device.
    fn input(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        let size = x.size();
        if size.len() != 3 || size[0] < 1 || size[1] < 1 || size[2] != self.vis_dim() {
            return Err(ModelError::Invalid(format!(
                "{name} has shape {size:?}, expected [batch, tokens, {}]",
                self.vis_dim()
            )));
        }
        Ok(x.f_to_kind(Kind::Float)?.f_to_device(self.device)?)
    }
}

/// The `n_heads` recorded for `path` in an `action_decoder_config.json` beside it, if any.
pub fn n_heads_from_config(path: &Path) -> Result<Option<i64>> {
    let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    let config = path.with_file_name(CONFIG_FILE);
    let text = match std::fs::read_to_string(&config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ModelError::Io { path: config, source }),
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: config.clone(),
        source,
    })?;
    let Some(decoders) = json.get("decoders").and_then(|d| d.as_object()) else {
        return Ok(None);
    };
    for entry in decoders.values() {
        let names = ["pt_file", "safetensors_file"].map(|k| entry.get(k).and_then(|v| v.as_str()));
        if names.contains(&Some(file_name)) {
            let n = entry.get("n_heads").and_then(|v| v.as_i64());
            return match n {
                Some(n) if n > 0 => Ok(Some(n)),
                Some(n) => Err(ModelError::Config(format!(
                    "{}: n_heads {n} for {file_name}",
                    config.display()
                ))),
                None => Ok(None),
            };
        }
    }
    Ok(None)
}
