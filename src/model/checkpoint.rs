//! Locating the files of an HF UniVLA checkpoint directory.
//!
//! Layout (as `save_pretrained` writes it): `config.json`, `model.safetensors` or
//! `model-0000K-of-0000M.safetensors` + `model.safetensors.index.json`, `preprocessor_config.json`,
//! `tokenizer.json` (+ the slow-tokenizer files, unused), `dataset_statistics.json`.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::error::{ModelError, Result};

pub const CONFIG_FILE: &str = "config.json";
pub const SINGLE_WEIGHTS_FILE: &str = "model.safetensors";
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";
pub const DATASET_STATISTICS_FILE: &str = "dataset_statistics.json";

/// The files of one checkpoint directory.
#[derive(Clone, Debug)]
pub struct CheckpointFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    /// One file, or every shard named in the index's `weight_map`.
    pub weights: Vec<PathBuf>,
    pub tokenizer: PathBuf,
    pub preprocessor: Option<PathBuf>,
    pub dataset_statistics: Option<PathBuf>,
}

fn required(dir: &Path, name: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(ModelError::Io {
            path: p,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        })
    }
}

fn optional(dir: &Path, name: &str) -> Option<PathBuf> {
    let p = dir.join(name);
    p.is_file().then_some(p)
}

impl CheckpointFiles {
    pub fn locate(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(ModelError::Io {
                path: dir.into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "checkpoint directory not found"),
            });
        }
        let weights = if let Some(index) = optional(dir, WEIGHTS_INDEX_FILE) {
            shards_from_index(&index)?
        } else {
            vec![required(dir, SINGLE_WEIGHTS_FILE)?]
        };
        Ok(Self {
            dir: dir.into(),
            config: required(dir, CONFIG_FILE)?,
            weights,
            tokenizer: required(dir, TOKENIZER_FILE)?,
            preprocessor: optional(dir, PREPROCESSOR_FILE),
            dataset_statistics: optional(dir, DATASET_STATISTICS_FILE),
        })
    }
}

/// The distinct shard files of `model.safetensors.index.json`, in order of first appearance.
fn shards_from_index(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|source| ModelError::Io {
        path: index.into(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: index.into(),
        source,
    })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::Format {
            path: index.into(),
            reason: "no `weight_map` object".into(),
        })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut seen = BTreeSet::new();
    let mut shards = Vec::new();
    for (key, file) in map {
        let name = file.as_str().ok_or_else(|| ModelError::Format {
            path: index.into(),
            reason: format!("weight_map entry `{key}` is not a file name"),
        })?;
        if name.contains('/') || name.contains("..") {
            return Err(ModelError::Format {
                path: index.into(),
                reason: format!("shard name `{name}` is not a plain file name"),
            });
        }
        if seen.insert(name.to_owned()) {
            shards.push(required(dir, name)?);
        }
    }
    if shards.is_empty() {
        return Err(ModelError::Format {
            path: index.into(),
            reason: "weight_map is empty".into(),
        });
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_layout_is_found() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test/data/univla-tiny/checkpoint");
        let f = CheckpointFiles::locate(&dir).unwrap();
        assert_eq!(f.weights, vec![dir.join(SINGLE_WEIGHTS_FILE)]);
        assert!(f.preprocessor.is_some() && f.dataset_statistics.is_some());
    }

    #[test]
    fn sharded_index_lists_each_shard_once_and_missing_shard_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let index = tmp.path().join(WEIGHTS_INDEX_FILE);
        std::fs::write(
            &index,
            r#"{"weight_map":{"a":"m-1.safetensors","b":"m-2.safetensors","c":"m-1.safetensors"}}"#,
        )
        .unwrap();
        let err = shards_from_index(&index).unwrap_err().to_string();
        assert!(err.contains("m-1.safetensors"), "{err}");
        std::fs::write(tmp.path().join("m-1.safetensors"), b"").unwrap();
        std::fs::write(tmp.path().join("m-2.safetensors"), b"").unwrap();
        let shards = shards_from_index(&index).unwrap();
        assert_eq!(
            shards,
            vec![tmp.path().join("m-1.safetensors"), tmp.path().join("m-2.safetensors")]
        );
        std::fs::write(&index, r#"{"weight_map":{"a":"../x.safetensors"}}"#).unwrap();
        assert!(shards_from_index(&index).is_err());
    }
}
