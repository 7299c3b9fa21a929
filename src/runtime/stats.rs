//! Normalisation statistics (spec §2.4): the `dataset_statistics.json` written next to fine-tuned
//! checkpoints (q01/q99 bounds per dataset key) and the real-world z-score statistics
//! (`action_mean/std`, `qpos_mean/std`) from a YAML or JSON file.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Smallest standard deviation used for z-scoring (the reference clips `std` at this value).
pub const MIN_STD: f64 = 1e-2;
/// Suffix of the LIBERO dataset keys the evaluation falls back to (`libero_10` → `libero_10_no_noops`).
const NO_NOOPS_SUFFIX: &str = "_no_noops";

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("{path}: no statistics for `{key}`; available keys: {available}")]
    UnknownKey {
        path: String,
        key: String,
        available: String,
    },
    #[error("{path}: statistics `{key}`: {reason}")]
    Invalid { path: String, key: String, reason: String },
}

/// A list of numbers stored flat (`[…7]`) or nested once (`[[…7]]`, CALVIN).
#[derive(Deserialize)]
#[serde(untagged)]
enum Numbers {
    Flat(Vec<f64>),
    Nested(Vec<Vec<f64>>),
}

impl Numbers {
    fn flatten(self) -> Vec<f64> {
        match self {
            Numbers::Flat(v) => v,
            Numbers::Nested(v) => v.into_iter().flatten().collect(),
        }
    }
}

#[derive(Deserialize)]
struct RawAction {
    q01: Option<Numbers>,
    q99: Option<Numbers>,
    mask: Option<Vec<bool>>,
    mean: Option<Numbers>,
    std: Option<Numbers>,
}

#[derive(Deserialize)]
struct RawEntry {
    action: Option<RawAction>,
}

/// Action bounds of one dataset key, used to un-normalise `[-1, 1]` outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionBounds {
    pub q01: Vec<f64>,
    pub q99: Vec<f64>,
    /// Dimensions that were normalised (defaults to all); the gripper usually is not.
    pub mask: Vec<bool>,
    pub mean: Option<Vec<f64>>,
    pub std: Option<Vec<f64>>,
}

impl ActionBounds {
    pub fn dim(&self) -> usize {
        self.q01.len()
    }

    /// Inverse of the BOUNDS_Q99 normalisation: `0.5·(x+1)·(q99−q01)+q01` where masked in.
    pub fn unnormalize(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .enumerate()
            .map(|(i, &v)| match (self.mask.get(i), self.q01.get(i), self.q99.get(i)) {
                (Some(true), Some(lo), Some(hi)) => 0.5 * (v + 1.0) * (hi - lo) + lo,
                _ => v,
            })
            .collect()
    }
}

/// All entries of a `dataset_statistics.json` (or a config's `norm_stats`).
#[derive(Debug, Clone)]
pub struct DatasetStatistics {
    label: String,
    entries: BTreeMap<String, serde_json::Value>,
}

impl DatasetStatistics {
    pub fn from_file(path: &Path) -> Result<Self, StatsError> {
        let text = std::fs::read_to_string(path).map_err(|source| StatsError::Io {
            path: path.to_owned(),
            source,
        })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| StatsError::Parse {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_value(path.display().to_string(), value)
    }

    /// From an already parsed JSON object (e.g. `norm_stats` of a `config.json`).
    pub fn from_value(label: impl Into<String>, value: serde_json::Value) -> Result<Self, StatsError> {
        let label = label.into();
        match value {
            serde_json::Value::Object(map) => Ok(Self {
                label,
                entries: map.into_iter().collect(),
            }),
            _ => Err(StatsError::Parse {
                path: label,
                reason: "expected a JSON object of dataset keys".into(),
            }),
        }
    }

    /// The dataset keys, sorted.
    pub fn keys(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// The key actually used for `key`: itself, else `<key>_no_noops` (LIBERO evaluation), else,
    /// when `key` is `None`, the only key of the file.
    pub fn resolve_key(&self, key: Option<&str>) -> Result<String, StatsError> {
        let unknown = |key: &str| StatsError::UnknownKey {
            path: self.label.clone(),
            key: key.to_owned(),
            available: self.keys().join(", "),
        };
        match key {
            Some(k) if self.entries.contains_key(k) => Ok(k.to_owned()),
            Some(k) => {
                let alt = format!("{k}{NO_NOOPS_SUFFIX}");
                if self.entries.contains_key(&alt) {
                    Ok(alt)
                } else {
                    Err(unknown(k))
                }
            }
            None if self.entries.len() == 1 => Ok(self.entries.keys().next().cloned().unwrap_or_default()),
            None => Err(unknown("<none given; the file has several>")),
        }
    }

    /// The action bounds of `key` (see [`Self::resolve_key`]).
    pub fn action_bounds(&self, key: Option<&str>) -> Result<ActionBounds, StatsError> {
        let key = self.resolve_key(key)?;
        let invalid = |reason: String| StatsError::Invalid {
            path: self.label.clone(),
            key: key.clone(),
            reason,
        };
        let raw = self.entries.get(&key).cloned().unwrap_or_default();
        let entry: RawEntry = serde_json::from_value(raw).map_err(|e| invalid(e.to_string()))?;
        let action = entry.action.ok_or_else(|| invalid("no `action` entry".into()))?;
        let q01 = action.q01.ok_or_else(|| invalid("no `action.q01`".into()))?.flatten();
        let q99 = action.q99.ok_or_else(|| invalid("no `action.q99`".into()))?.flatten();
        if q01.len() != q99.len() || q01.is_empty() {
            return Err(invalid(format!("q01 has {} values, q99 {}", q01.len(), q99.len())));
        }
        let mask = action.mask.unwrap_or_else(|| vec![true; q01.len()]);
        if mask.len() != q01.len() {
            return Err(invalid(format!("mask has {} values, q01 {}", mask.len(), q01.len())));
        }
        if q01.iter().chain(&q99).any(|v| !v.is_finite()) {
            return Err(invalid("non-finite bound".into()));
        }
        Ok(ActionBounds {
            q01,
            q99,
            mask,
            mean: action.mean.map(Numbers::flatten),
            std: action.std.map(Numbers::flatten),
        })
    }
}

/// Real-world z-score statistics (the reference's `dataset_stats.pkl`, exported to YAML/JSON):
///
/// ```yaml
/// action_mean: [7 values]
/// action_std: [7 values]
/// qpos_mean: [7 values]
/// qpos_std: [7 values]
/// ```
///
/// Standard deviations are clipped to at least [`MIN_STD`] on load.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ZScoreStats {
    pub action_mean: Vec<f64>,
    pub action_std: Vec<f64>,
    pub qpos_mean: Vec<f64>,
    pub qpos_std: Vec<f64>,
}

impl ZScoreStats {
    /// Reads a `.yaml`/`.yml` or `.json` file with the four lists.
    pub fn from_file(path: &Path) -> Result<Self, StatsError> {
        let text = std::fs::read_to_string(path).map_err(|source| StatsError::Io {
            path: path.to_owned(),
            source,
        })?;
        let label = path.display().to_string();
        let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let stats: Self = if is_json {
            serde_json::from_str(&text).map_err(|e| StatsError::Parse {
                path: label.clone(),
                reason: e.to_string(),
            })?
        } else {
            serde_yaml::from_str(&text).map_err(|e| StatsError::Parse {
                path: label.clone(),
                reason: e.to_string(),
            })?
        };
        stats.validated(&label)
    }

    /// Checks lengths and finiteness and clips the standard deviations.
    pub fn validated(mut self, label: &str) -> Result<Self, StatsError> {
        let invalid = |reason: String| StatsError::Invalid {
            path: label.to_owned(),
            key: "z-score".into(),
            reason,
        };
        if self.action_mean.len() != self.action_std.len() || self.action_mean.is_empty() {
            return Err(invalid(
                "action_mean and action_std differ in length (or are empty)".into(),
            ));
        }
        if self.qpos_mean.len() != self.qpos_std.len() || self.qpos_mean.is_empty() {
            return Err(invalid("qpos_mean and qpos_std differ in length (or are empty)".into()));
        }
        let all = [&self.action_mean, &self.action_std, &self.qpos_mean, &self.qpos_std];
        if all.iter().any(|v| v.iter().any(|x| !x.is_finite())) {
            return Err(invalid("non-finite value".into()));
        }
        for s in self.action_std.iter_mut().chain(self.qpos_std.iter_mut()) {
            *s = s.max(MIN_STD);
        }
        Ok(self)
    }

    /// `(q − qpos_mean) / qpos_std`: the proprio the real-world head expects.
    pub fn normalize_proprio(&self, qpos: &[f64]) -> Option<Vec<f64>> {
        (qpos.len() == self.qpos_mean.len()).then(|| {
            qpos.iter()
                .zip(&self.qpos_mean)
                .zip(&self.qpos_std)
                .map(|((q, m), s)| (q - m) / s)
                .collect()
        })
    }

    /// `x·action_std + action_mean`: a head output in robot units.
    pub fn unnormalize_action(&self, x: &[f64]) -> Option<Vec<f64>> {
        (x.len() == self.action_mean.len()).then(|| {
            x.iter()
                .zip(&self.action_std)
                .zip(&self.action_mean)
                .map(|((v, s), m)| v * s + m)
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stats() -> DatasetStatistics {
        let v = json!({
            "libero_10_no_noops": {"action": {"q01": [-1.0, 0.0], "q99": [1.0, 2.0], "mask": [true, false]}},
            "calvin": {"action": {"q01": [[-2.0, -2.0]], "q99": [[2.0, 2.0]]}},
        });
        DatasetStatistics::from_value("test", v).unwrap()
    }

    #[test]
    fn key_fallback_and_error_lists_keys() {
        let s = stats();
        assert_eq!(s.resolve_key(Some("libero_10")).unwrap(), "libero_10_no_noops");
        let e = s.action_bounds(Some("bridge_oxe")).unwrap_err().to_string();
        assert!(e.contains("calvin, libero_10_no_noops"), "{e}");
        assert!(s.resolve_key(None).is_err());
    }

    #[test]
    fn nested_lists_and_default_mask() {
        let b = stats().action_bounds(Some("calvin")).unwrap();
        assert_eq!(b.q01, vec![-2.0, -2.0]);
        assert_eq!(b.mask, vec![true, true]);
        assert_eq!(b.unnormalize(&[0.0, 1.0]), vec![0.0, 2.0]);
    }

    #[test]
    fn masked_dims_pass_through() {
        let b = stats().action_bounds(Some("libero_10_no_noops")).unwrap();
        assert_eq!(b.unnormalize(&[0.5, 0.7]), vec![0.5, 0.7]);
        assert_eq!(b.unnormalize(&[-1.0, 0.7])[0], -1.0);
    }

    #[test]
    fn zscore_clips_std_and_round_trips() {
        let yaml = "action_mean: [1.0, 2.0]\naction_std: [0.0, 2.0]\nqpos_mean: [0.5]\nqpos_std: [0.25]\n";
        let z: ZScoreStats = serde_yaml::from_str(yaml).unwrap();
        let z = z.validated("t").unwrap();
        assert_eq!(z.action_std, vec![MIN_STD, 2.0]);
        assert_eq!(z.unnormalize_action(&[1.0, 1.0]).unwrap(), vec![1.0 + MIN_STD, 4.0]);
        assert_eq!(z.normalize_proprio(&[1.0]).unwrap(), vec![2.0]);
        assert!(z.normalize_proprio(&[1.0, 2.0]).is_none());
    }
}
