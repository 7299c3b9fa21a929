//! The action decoder heads (spec §4.2): small f32 networks that turn the VLA's last-layer hidden
//! states (`visual_embed` `[B, 256, vis]`, `latent_action` `[B, 4, vis]`) into an action chunk.
//!
//! The variant is recognised from the checkpoint keys and every size is read from the weights
//! (the official code hard-codes them): widths, whether the R2R head pools the visual embedding
//! (`add_visual_embed`), and the output rows `window × action_dim`. What the weights cannot tell
//! comes from the file's entry in an `action_decoder_config.json` beside it (`n_heads`,
//! `window_size`, `action_dim`, `temporal_size`); without one the reference's values are the
//! defaults: 8 heads, 7-wide arm actions, 4 navigation logits.
pub mod map_block;

use std::path::Path;

use tch::{Device, Kind, Tensor};

use self::map_block::{Linear, MapBlock};
use super::error::{ModelError, Result};
use super::{torch_pt, VarBuilder};

pub use self::map_block::{MapAttention, RmsNorm, SwishGlu};

/// Attention heads of the MAP blocks in every released head (the default when no config names
/// another count: the head count is not stored in the weights).
pub const DEFAULT_N_HEADS: i64 = 8;
/// Action width of the arm heads (xyz, roll/pitch/yaw, gripper): the reference hard-codes it, so
/// it is the default when no config names another width.
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
    /// `[B, E]`: `visual_pool(visual_embed)` (`None` for an R2R head trained without the visual
    /// embedding).
    pub visual_pool_out: Option<Tensor>,
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

/// Sizes a head's weights do not record, from its `action_decoder_config.json` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeadConfig {
    /// Attention heads of the MAP blocks (`n_heads`).
    pub n_heads: Option<i64>,
    /// Steps per chunk (`window_size`); the weights give `window × action_dim` rows.
    pub window: Option<i64>,
    /// Values per step (`action_dim`).
    pub action_dim: Option<i64>,
    /// Temporal ensemble size the head was deployed with (`temporal_size`).
    pub temporal_size: Option<i64>,
    /// Where the values came from, for errors: `<config file>: entry for <weights file>`.
    pub source: Option<String>,
}

impl HeadConfig {
    /// The entry for `path` in the `action_decoder_config.json` beside it; all `None` when there
    /// is no such file or entry.
    pub fn for_file(path: &Path) -> Result<Self> {
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            return Ok(Self::default());
        };
        let config = path.with_file_name(CONFIG_FILE);
        let text = match std::fs::read_to_string(&config) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(ModelError::Io { path: config, source }),
        };
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: config.clone(),
            source,
        })?;
        let Some(decoders) = json.get("decoders").and_then(|d| d.as_object()) else {
            return Ok(Self::default());
        };
        let Some(entry) = decoders.values().find(|entry| {
            ["pt_file", "safetensors_file"]
                .iter()
                .any(|k| entry.get(k).and_then(|v| v.as_str()) == Some(file_name))
        }) else {
            return Ok(Self::default());
        };
        let positive = |key: &str| -> Result<Option<i64>> {
            match entry.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => match v.as_i64() {
                    Some(n) if n > 0 => Ok(Some(n)),
                    _ => Err(ModelError::Config(format!(
                        "{}: {key} of {file_name} must be a positive integer, found {v}",
                        config.display()
                    ))),
                },
            }
        };
        let cfg = Self {
            n_heads: positive("n_heads")?,
            window: positive("window_size")?,
            action_dim: positive("action_dim")?,
            temporal_size: positive("temporal_size")?,
            source: Some(format!("{}: entry for {file_name}", config.display())),
        };
        if let (Some(t), Some(w)) = (cfg.temporal_size, cfg.window) {
            if t > w {
                return Err(ModelError::Config(format!(
                    "{}: temporal_size {t} of {file_name} exceeds its window_size {w}",
                    config.display()
                )));
            }
        }
        Ok(cfg)
    }

    /// A configuration error about the `fields` this config set, naming its file when it came
    /// from one (else the weights at `weights`).
    fn error(&self, weights: &str, fields: &str, why: String) -> ModelError {
        match &self.source {
            Some(source) => ModelError::Config(format!("{source}: {fields}: {why}")),
            None => ModelError::Config(format!("{weights}: {why}")),
        }
    }
}

/// An action decoder head with its variant-specific wiring.
pub struct ActionHead {
    kind: HeadKind,
    window: i64,
    action_dim: i64,
    n_heads: i64,
    /// `temporal_size` recorded beside the weights, if any.
    temporal_size: Option<i64>,
    /// `None`: an R2R head trained with `add_visual_embed=False` (its output reads `z` alone).
    visual_pool: Option<MapBlock>,
    action_pool: MapBlock,
    proprio: Option<ProprioProj>,
    proj: Linear,
    device: Device,
}

impl ActionHead {
    /// Loads a head from a `.safetensors` file or a `torch.save` file (`.pt`, `.pth`, ...), with
    /// the sizes its `action_decoder_config.json` entry records (see [`HeadConfig`]).
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let config = HeadConfig::for_file(path)?;
        Self::load_with_config(path, &config, device)
    }

    /// As [`Self::load`] with an explicit head count (other sizes from the config beside it).
    pub fn load_with_heads(path: &Path, n_heads: i64, device: Device) -> Result<Self> {
        let config = HeadConfig {
            n_heads: Some(n_heads),
            ..HeadConfig::for_file(path)?
        };
        Self::load_with_config(path, &config, device)
    }

    /// As [`Self::load`] with the given sizes.
    pub fn load_with_config(path: &Path, config: &HeadConfig, device: Device) -> Result<Self> {
        let is_safetensors = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        let vb = if is_safetensors {
            VarBuilder::from_safetensors(&[path], Kind::Float, device)?
        } else {
            let tensors = torch_pt::read_state_dict(path, None)?;
            VarBuilder::from_tensors(path.display().to_string(), tensors, Kind::Float, device)
        };
        Self::with_config(&vb, config)
    }

    /// Builds the head from weights with `n_heads` attention heads and the default sizes.
    pub fn new(vb: &VarBuilder, n_heads: i64) -> Result<Self> {
        Self::with_config(
            vb,
            &HeadConfig {
                n_heads: Some(n_heads),
                ..HeadConfig::default()
            },
        )
    }

    /// Builds the head from weights; the variant is recognised from the keys, the sizes the
    /// weights do not record come from `config` (else the reference's defaults).
    pub fn with_config(vb: &VarBuilder, config: &HeadConfig) -> Result<Self> {
        let n_heads = config.n_heads.unwrap_or(DEFAULT_N_HEADS);
        if n_heads <= 0 {
            return Err(config.error(&vb.path("n_heads"), "n_heads", format!("{n_heads} heads")));
        }
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
        let pool_name = if kind == HeadKind::Libero {
            "latent_action_pool"
        } else {
            "attn_pool"
        };
        let action_pool = MapBlock::new(&vb.pp(pool_name), n_heads).map_err(|e| match (&config.n_heads, e) {
            (Some(_), ModelError::Config(why)) if config.source.is_some() => config.error("", "n_heads", why),
            (_, e) => e,
        })?;
        let embed = action_pool.embed_dim();
        // Only the R2R reference makes the visual pool optional (`add_visual_embed`); the arm
        // heads always have one, so a missing one there is a load error below.
        let visual_pool = if kind != HeadKind::R2r || vb.contains("visual_pool.latents") {
            let pool = MapBlock::new(&vb.pp("visual_pool"), n_heads)?;
            if pool.embed_dim() != embed {
                return Err(ModelError::Config(format!(
                    "visual_pool width {} differs from {pool_name} width {embed}",
                    pool.embed_dim()
                )));
            }
            Some(pool)
        } else {
            None
        };
        let (proj_vb, default_dim, proj_in) = match kind {
            HeadKind::Libero => (vb.pp("proj").pp(0), ARM_ACTION_DIM, embed),
            HeadKind::RealWorld => (vb.pp("proj").pp(0), ARM_ACTION_DIM, 2 * embed),
            HeadKind::R2r if visual_pool.is_some() => (vb.pp("proj"), NAV_ACTION_DIM, 2 * embed),
            HeadKind::R2r => (vb.pp("proj"), NAV_ACTION_DIM, embed),
        };
        let rows = match proj_vb.require_shape("weight")?.as_slice() {
            [rows, _] => *rows,
            other => {
                return Err(ModelError::Config(format!(
                    "{} has shape {other:?}, expected [rows, width]",
                    proj_vb.path("weight")
                )))
            }
        };
        let (window, action_dim) = chunk_shape(rows, config, default_dim).map_err(|why| {
            config.error(
                &proj_vb.path("weight"),
                "window_size / action_dim",
                format!("{why} (the weights {} have {rows} output rows)", proj_vb.path("weight")),
            )
        })?;
        if config.temporal_size.is_some_and(|t| t > window) {
            return Err(config.error(
                &proj_vb.path("weight"),
                "temporal_size",
                format!("exceeds the {window}-step window"),
            ));
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
            window,
            action_dim,
            n_heads,
            temporal_size: config.temporal_size,
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
        self.action_pool.in_dim()
    }

    /// Width of the pooled embeddings.
    pub fn embed_dim(&self) -> i64 {
        self.action_pool.embed_dim()
    }

    pub fn n_heads(&self) -> i64 {
        self.n_heads
    }

    /// The temporal ensemble size recorded with the head (`temporal_size` in its config), if any.
    pub fn temporal_size(&self) -> Option<i64> {
        self.temporal_size
    }

    /// Whether the head pools the visual embedding (R2R heads may be trained without it).
    pub fn uses_visual_embed(&self) -> bool {
        self.visual_pool.is_some()
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
        let visual_pool_out = match &self.visual_pool {
            Some(pool) => Some(pool.forward(&visual, None)?),
            None => None,
        };
        let (action_pool_out, proprio_out, raw) = match (self.kind, &visual_pool_out) {
            (HeadKind::Libero, Some(v)) => {
                let z = self.action_pool.forward(&latent, Some(v))?;
                let raw = self.proj.forward(&z)?.f_tanh()?;
                (z, None, raw)
            }
            (HeadKind::RealWorld, Some(v)) => {
                let z = self.action_pool.forward(&latent, Some(v))?;
                let p = self.proprio_forward(proprio, batch)?;
                let raw = self.proj.forward(&Tensor::f_cat(&[&z, &p], 1)?)?;
                (z, Some(p), raw)
            }
            (HeadKind::R2r, Some(v)) => {
                let z = self.action_pool.forward(&latent, None)?;
                let raw = self.proj.forward(&Tensor::f_cat(&[&z, v], 1)?)?;
                (z, None, raw)
            }
            (HeadKind::R2r, None) => {
                let z = self.action_pool.forward(&latent, None)?;
                let raw = self.proj.forward(&z)?;
                (z, None, raw)
            }
            (HeadKind::Libero | HeadKind::RealWorld, None) => {
                return Err(ModelError::Invalid(
                    "arm heads pool the visual embedding, but this one has no visual_pool".into(),
                ))
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
    Ok(HeadConfig::for_file(path)?.n_heads)
}

/// Splits `rows` output values into `(window, action_dim)`: from the config's `action_dim` or
/// `window_size` when given (both must agree with `rows`), else with `default_dim` values per step.
fn chunk_shape(rows: i64, config: &HeadConfig, default_dim: i64) -> std::result::Result<(i64, i64), String> {
    if config.window.is_some_and(|w| w <= 0) || config.action_dim.is_some_and(|a| a <= 0) || default_dim <= 0 {
        return Err("window_size and action_dim must be positive".into());
    }
    let (window, dim) = match (config.window, config.action_dim) {
        (Some(w), Some(a)) => (w, a),
        (Some(w), None) => (w, if rows % w == 0 { rows / w } else { 0 }),
        (None, a) => {
            let a = a.unwrap_or(default_dim);
            (if rows % a == 0 { rows / a } else { 0 }, a)
        }
    };
    if rows <= 0 || window <= 0 || dim <= 0 || window.checked_mul(dim) != Some(rows) {
        return Err(format!(
            "{rows} output rows do not split into a window of {} steps × {} values",
            config.window.map_or("W".into(), |w| w.to_string()),
            config.action_dim.unwrap_or(default_dim)
        ));
    }
    Ok((window, dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec §4.1/§4.2 key table of a MAP block at the released sizes.
    fn map_block_keys(prefix: &str, vis: i64, embed: i64) -> Vec<(String, Vec<i64>)> {
        let hidden = 4 * embed;
        [
            ("projection.weight", vec![embed, vis]),
            ("projection.bias", vec![embed]),
            ("latents", vec![1, embed]),
            ("attn_norm.g", vec![embed]),
            ("attn.q.weight", vec![embed, embed]),
            ("attn.kv.weight", vec![2 * embed, embed]),
            ("attn.proj.weight", vec![embed, embed]),
            ("attn.proj.bias", vec![embed]),
            ("mlp_norm.g", vec![embed]),
            ("mlp.0.project.weight", vec![2 * hidden, embed]),
            ("mlp.0.project.bias", vec![2 * hidden]),
            ("mlp.1.weight", vec![embed, hidden]),
            ("mlp.1.bias", vec![embed]),
        ]
        .into_iter()
        .map(|(k, s)| (format!("{prefix}.{k}"), s))
        .collect()
    }

    fn random_state_dict(keys: Vec<(String, Vec<i64>)>) -> Vec<(String, Tensor)> {
        tch::manual_seed(0);
        keys.into_iter()
            .map(|(k, s)| (k, Tensor::randn(s.as_slice(), (Kind::Float, Device::Cpu)) * 0.02))
            .collect()
    }

    #[test]
    fn released_libero_head_sizes_and_parameter_count() {
        let mut keys = map_block_keys("latent_action_pool", 4096, 512);
        keys.extend(map_block_keys("visual_pool", 4096, 512));
        keys.push(("proj.0.weight".into(), vec![84, 512]));
        keys.push(("proj.0.bias".into(), vec![84]));
        let params: i64 = keys.iter().map(|(_, s)| s.iter().product::<i64>()).sum();
        assert_eq!(params, 12_640_340, "spec §4.2 parameter count");
        let vb = VarBuilder::from_tensors("released-size", random_state_dict(keys), Kind::Float, Device::Cpu);
        let head = ActionHead::new(&vb, DEFAULT_N_HEADS).unwrap();
        assert_eq!(
            (head.kind(), head.window(), head.action_dim()),
            (HeadKind::Libero, 12, 7)
        );
        assert_eq!((head.vis_dim(), head.embed_dim()), (4096, 512));
        let visual = Tensor::randn([1, 256, 4096], (Kind::BFloat16, Device::Cpu));
        let latent = Tensor::randn([1, 5, 4096], (Kind::BFloat16, Device::Cpu));
        let out = head.forward(&visual, &latent, None).unwrap();
        assert_eq!(out.raw.size(), [1, 84]);
        assert_eq!(out.chunk.size(), [1, 12, 7]);
        let values = out.chunk_f64().unwrap();
        assert_eq!(values.len(), 84);
        assert!(values.iter().all(|v| v.abs() <= 1.0), "tanh output out of range");
    }

    #[test]
    fn unknown_layouts_are_rejected_with_the_keys_found() {
        let vb = VarBuilder::from_tensors(
            "other.pt",
            random_state_dict(vec![("encoder.weight".into(), vec![2, 2])]),
            Kind::Float,
            Device::Cpu,
        );
        let e = ActionHead::new(&vb, 8).err().unwrap().to_string();
        assert!(e.contains("encoder.weight"), "{e}");
        // A head count that does not divide the width is a configuration error.
        let keys = [
            map_block_keys("latent_action_pool", 8, 6),
            map_block_keys("visual_pool", 8, 6),
        ]
        .concat();
        let mut sd = random_state_dict(keys);
        sd.push((
            "proj.0.weight".into(),
            Tensor::zeros([14, 6], (Kind::Float, Device::Cpu)),
        ));
        sd.push(("proj.0.bias".into(), Tensor::zeros([14], (Kind::Float, Device::Cpu))));
        let vb = VarBuilder::from_tensors("odd.pt", sd, Kind::Float, Device::Cpu);
        assert!(ActionHead::new(&vb, 4).is_err());
        assert_eq!(ActionHead::new(&vb, 3).unwrap().window(), 2);
    }
}
