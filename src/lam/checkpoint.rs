//! Opening LAM checkpoints: safetensors (keys with or without the Lightning `lam.` prefix) and
//! the reference's Lightning `.ckpt` (`state_dict`, `lam.` prefix) read without unpickling code.
//! A `.ckpt` also records the module's constructor arguments (`hyper_parameters`): the encoder's
//! head count comes from there (the weights cannot tell it), and the sizes the weights do tell
//! are checked against it.
use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::error::{LamError, Result};
use super::model::{LamConfig, LatentActionModel};
use crate::model::torch_pt::{self, Scalar};
use crate::model::VarBuilder;

/// Top-level entry of a Lightning checkpoint that holds the weights.
const LIGHTNING_STATE_DICT: &str = "state_dict";
/// A key every stage-2 LAM has; its prefix locates the model inside the checkpoint.
const ANCHOR_KEY: &str = "action_latent_controllable";

/// Opens `path` in f32 on `device` and returns a builder positioned at the LAM's keys.
pub fn open(path: &Path, device: Device) -> Result<VarBuilder> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let vb = match ext.as_deref() {
        Some("safetensors") => VarBuilder::from_safetensors(&[path], Kind::Float, device)?,
        Some("ckpt" | "pt" | "pth" | "bin") => {
            let tensors = read_torch_state_dict(path)?;
            VarBuilder::from_tensors(path.display().to_string(), tensors, Kind::Float, device)
        }
        _ => {
            return Err(LamError::Checkpoint {
                path: path.to_path_buf(),
                reason: "unknown checkpoint type (expected .safetensors or a Lightning .ckpt)".into(),
            })
        }
    };
    locate(vb, path)
}

/// Top-level entry of a Lightning checkpoint with the module's constructor arguments.
const LIGHTNING_HYPER_PARAMETERS: &str = "hyper_parameters";

/// Loads the model from `path` (see [`open`]). Head counts not given in `cfg` come from the
/// checkpoint's `hyper_parameters` when it has them; sizes there must match the weights.
pub fn load_model(path: &Path, cfg: &LamConfig, device: Device) -> Result<LatentActionModel> {
    let hp = LamHyperParameters::from_checkpoint(path)?;
    let cfg = match &hp {
        Some(hp) => hp.apply(cfg)?,
        None => cfg.clone(),
    };
    let model = LatentActionModel::load(&open(path, device)?, &cfg).map_err(|e| match (e, &hp) {
        (LamError::Config(why), Some(hp)) => LamError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!(
                "{why} (head counts: lam_num_heads {}, dino_num_heads {} from {LIGHTNING_HYPER_PARAMETERS} or given)",
                show(cfg.encoder_heads.or(hp.num_heads)),
                show(cfg.dino_heads.or(hp.dino_num_heads))
            ),
        },
        (e, _) => e,
    })?;
    if let Some(hp) = &hp {
        hp.check(&model)?;
    }
    Ok(model)
}

/// A count for messages: the number, or `default` (width / 64).
fn show(n: Option<i64>) -> String {
    n.map_or_else(|| "default".into(), |n| n.to_string())
}

/// The sizes the reference's Lightning module (`DINO_LAM.save_hyperparameters()`) records, as
/// far as labeling needs them. `dino_num_heads` is not written by the reference (its DINOv2-B has
/// 64-wide heads, the default); it lets checkpoints with another DINO width carry their count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LamHyperParameters {
    /// `lam_model_dim`: encoder width.
    pub model_dim: Option<i64>,
    /// `lam_latent_dim`: codebook vector width.
    pub latent_dim: Option<i64>,
    /// `lam_num_latents`: task-centric codebook size.
    pub num_latents: Option<i64>,
    /// `lam_enc_blocks`: encoder depth.
    pub enc_blocks: Option<i64>,
    /// `lam_num_heads`: encoder attention heads.
    pub num_heads: Option<i64>,
    /// `dino_num_heads`: DINOv2 attention heads.
    pub dino_num_heads: Option<i64>,
    /// The checkpoint, for errors.
    path: std::path::PathBuf,
}

impl LamHyperParameters {
    /// The `hyper_parameters` of a `torch.save` checkpoint; `None` for safetensors files and
    /// checkpoints without that entry.
    pub fn from_checkpoint(path: &Path) -> Result<Option<Self>> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("ckpt" | "pt" | "pth" | "bin")) || !torch_pt::is_torch_zip(path) {
            return Ok(None);
        }
        let Some(entries) = torch_pt::read_scalars(path, LIGHTNING_HYPER_PARAMETERS)? else {
            return Ok(None);
        };
        Self::from_entries(&entries, path).map(Some)
    }

    /// Reads and checks the known keys of `entries` (others are ignored).
    pub fn from_entries(entries: &[(String, Scalar)], path: &Path) -> Result<Self> {
        let bad = |reason: String| LamError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("{LIGHTNING_HYPER_PARAMETERS}.{reason}"),
        };
        let positive = |key: &str| -> Result<Option<i64>> {
            match entries.iter().find(|(k, _)| k == key).map(|(_, v)| v) {
                None | Some(Scalar::None) => Ok(None),
                Some(Scalar::Int(n)) if *n > 0 => Ok(Some(*n)),
                Some(other) => Err(bad(format!("{key} must be a positive integer, found {other:?}"))),
            }
        };
        let hp = Self {
            model_dim: positive("lam_model_dim")?,
            latent_dim: positive("lam_latent_dim")?,
            num_latents: positive("lam_num_latents")?,
            enc_blocks: positive("lam_enc_blocks")?,
            num_heads: positive("lam_num_heads")?,
            dino_num_heads: positive("dino_num_heads")?,
            path: path.to_path_buf(),
        };
        if let (Some(dim), Some(heads)) = (hp.model_dim, hp.num_heads) {
            if dim % heads != 0 {
                return Err(bad(format!(
                    "lam_num_heads {heads} does not divide lam_model_dim {dim}"
                )));
            }
        }
        Ok(hp)
    }

    fn error(&self, reason: String) -> LamError {
        LamError::Checkpoint {
            path: self.path.clone(),
            reason: format!("{LIGHTNING_HYPER_PARAMETERS}.{reason}"),
        }
    }

    /// `cfg` with the head counts it leaves open taken from here; a count given in both must agree.
    pub fn apply(&self, cfg: &LamConfig) -> Result<LamConfig> {
        let merge = |given: Option<i64>, recorded: Option<i64>, key: &str, flag: &str| match (given, recorded) {
            (Some(g), Some(r)) if g != r => Err(self.error(format!("{key} is {r}, but {flag} {g} was given"))),
            (g, r) => Ok(g.or(r)),
        };
        Ok(LamConfig {
            encoder_heads: merge(cfg.encoder_heads, self.num_heads, "lam_num_heads", "--encoder-heads")?,
            dino_heads: merge(cfg.dino_heads, self.dino_num_heads, "dino_num_heads", "--dino-heads")?,
            ..cfg.clone()
        })
    }

    /// Checks the recorded sizes against the loaded weights.
    pub fn check(&self, model: &LatentActionModel) -> Result<()> {
        for (key, recorded, actual) in [
            ("lam_model_dim", self.model_dim, model.model_dim()),
            ("lam_latent_dim", self.latent_dim, model.latent_dim()),
            ("lam_num_latents", self.num_latents, model.codebook_size() as i64),
            ("lam_enc_blocks", self.enc_blocks, model.encoder_depth() as i64),
        ] {
            if let Some(r) = recorded.filter(|&r| r != actual) {
                return Err(self.error(format!("{key} is {r}, but the weights have {actual}")));
            }
        }
        Ok(())
    }
}

/// Moves `vb` to the prefix under which the LAM's keys live (`""`, `lam`, …).
pub fn locate(vb: VarBuilder, path: &Path) -> Result<VarBuilder> {
    let keys = vb.keys();
    let anchor = keys
        .iter()
        .find(|k| k.as_str() == ANCHOR_KEY || k.ends_with(&format!(".{ANCHOR_KEY}")));
    match anchor {
        Some(key) => {
            let prefix = key.strip_suffix(ANCHOR_KEY).unwrap_or("").trim_end_matches('.');
            Ok(if prefix.is_empty() { vb } else { vb.pp(prefix) })
        }
        None => {
            let stage1 = keys.iter().any(|k| k.ends_with("action_latent"));
            let reason = if stage1 {
                "stage-1 LAM (no `action_latent_controllable`): labeling needs the stage-2 task-centric model"
            } else {
                "no LAM weights (no `action_latent_controllable` key)"
            };
            Err(LamError::Checkpoint {
                path: path.to_path_buf(),
                reason: reason.into(),
            })
        }
    }
}

/// The `state_dict` entry of a Lightning `.ckpt`, or the whole dict of a plain `torch.save`
/// state dict, read without running pickled code.
fn read_torch_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    match torch_pt::read_state_dict(path, Some(LIGHTNING_STATE_DICT)) {
        Ok(tensors) => Ok(tensors),
        Err(lightning_err) => torch_pt::read_state_dict(path, None).map_err(|_| LamError::from(lightning_err)),
    }
}
