//! Opening LAM checkpoints: safetensors (keys with or without the Lightning `lam.` prefix) and
//! the reference's Lightning `.ckpt` (`state_dict`, `lam.` prefix) read without unpickling code.
use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::error::{LamError, Result};
use super::model::{LamConfig, LatentActionModel};
use crate::model::{torch_pt, VarBuilder};

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

/// Loads the model from `path` (see [`open`]).
pub fn load_model(path: &Path, cfg: &LamConfig, device: Device) -> Result<LatentActionModel> {
    LatentActionModel::load(&open(path, device)?, cfg)
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
