//! `generation_config.json` of an HF checkpoint. HF `generate` takes `eos_token_id` from it (the
//! token blocked until 4 latent tokens exist); UniVLA passes its sampling settings explicitly, so
//! the other fields are either overridden or unused. Strictly parsed: a field that would change
//! what HF generates and that this port does not implement (beam search, repetition penalties,
//! another top-k, ...) is an error naming it, not silently ignored.
use std::path::Path;

use serde::Deserialize;

use super::error::{ModelError, Result};

/// File name beside `config.json`.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";
/// HF's default top-k, which the reference's sampling uses (it does not pass `top_k`).
const HF_DEFAULT_TOP_K: i64 = 50;

/// One token id or several (HF accepts both for `eos_token_id`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum TokenIds {
    One(i64),
    Many(Vec<i64>),
}

impl TokenIds {
    pub fn ids(&self) -> Vec<i64> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// The fields of `generation_config.json` this port reads or knows to be harmless.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfig {
    #[serde(default)]
    pub bos_token_id: Option<i64>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// Overridden by the explicit `generate` arguments of the reference (4 new tokens, sampling
    /// with T = 0.75, top-p 0.9): checked for type only.
    #[serde(default)]
    pub max_length: Option<i64>,
    #[serde(default)]
    pub max_new_tokens: Option<i64>,
    #[serde(default)]
    pub min_new_tokens: Option<i64>,
    #[serde(default)]
    pub do_sample: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Not overridden by the reference: must be HF's default when present.
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub use_cache: Option<bool>,
    #[serde(default, rename = "_from_model_config")]
    pub from_model_config: Option<bool>,
    #[serde(default)]
    pub transformers_version: Option<String>,
}

impl GenerationConfig {
    /// Reads and checks `path` against a vocabulary of `vocab_size` ids (the LM's logits).
    pub fn from_file(path: &Path, vocab_size: i64) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.into(),
            source,
        })?;
        Self::from_json_str(&text, vocab_size).map_err(|why| ModelError::Config(format!("{}: {why}", path.display())))
    }

    /// Parses and checks the JSON text (errors name the field, not the file).
    pub fn from_json_str(text: &str, vocab_size: i64) -> std::result::Result<Self, String> {
        let cfg: GenerationConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate(vocab_size)?;
        Ok(cfg)
    }

    fn validate(&self, vocab_size: i64) -> std::result::Result<(), String> {
        let in_vocab = |field: &str, id: i64| {
            if (0..vocab_size).contains(&id) {
                Ok(())
            } else {
                Err(format!(
                    "{field} {id} is outside the vocabulary (vocab_size {vocab_size})"
                ))
            }
        };
        if let Some(id) = self.bos_token_id {
            in_vocab("bos_token_id", id)?;
        }
        if let Some(id) = self.pad_token_id {
            in_vocab("pad_token_id", id)?;
        }
        if let Some(eos) = &self.eos_token_id {
            let ids = eos.ids();
            if ids.is_empty() {
                return Err("eos_token_id is an empty list".into());
            }
            for id in ids {
                in_vocab("eos_token_id", id)?;
            }
        }
        for (field, value) in [("max_length", self.max_length), ("max_new_tokens", self.max_new_tokens)] {
            if let Some(v) = value.filter(|&v| v <= 0) {
                return Err(format!("{field} must be a positive integer, found {v}"));
            }
        }
        if let Some(v) = self.min_new_tokens.filter(|&v| v < 0) {
            return Err(format!("min_new_tokens must not be negative, found {v}"));
        }
        if let Some(t) = self.temperature.filter(|t| !(t.is_finite() && *t > 0.0)) {
            return Err(format!("temperature must be a positive finite number, found {t}"));
        }
        if let Some(p) = self.top_p.filter(|p| !(p.is_finite() && *p > 0.0 && *p <= 1.0)) {
            return Err(format!("top_p must be in (0, 1], found {p}"));
        }
        if let Some(k) = self.top_k.filter(|&k| k != HF_DEFAULT_TOP_K) {
            return Err(format!(
                "top_k {k} is not supported: the reference samples with HF's default top-k {HF_DEFAULT_TOP_K}"
            ));
        }
        Ok(())
    }

    /// The ids `generate` must never choose (HF: `eos_token_id`), if the file names any.
    pub fn eos_ids(&self) -> Option<Vec<i64>> {
        self.eos_token_id.as_ref().map(TokenIds::ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_file_parses() {
        let text = r#"{"_from_model_config": true, "bos_token_id": 1, "eos_token_id": 2,
                       "pad_token_id": 32000, "transformers_version": "4.40.1"}"#;
        let cfg = GenerationConfig::from_json_str(text, 32064).unwrap();
        assert_eq!(cfg.eos_ids(), Some(vec![2]));
        let cfg = GenerationConfig::from_json_str(r#"{"eos_token_id": [2, 7]}"#, 32064).unwrap();
        assert_eq!(cfg.eos_ids(), Some(vec![2, 7]));
    }

    #[test]
    fn hostile_fields_are_named() {
        for (text, field) in [
            (r#"{"eos_token_id": 40000}"#, "eos_token_id"),
            (r#"{"eos_token_id": [2, -1]}"#, "eos_token_id"),
            (r#"{"eos_token_id": []}"#, "eos_token_id"),
            (r#"{"pad_token_id": 32064}"#, "pad_token_id"),
            (r#"{"bos_token_id": -5}"#, "bos_token_id"),
            (r#"{"top_k": 3}"#, "top_k"),
            (r#"{"temperature": 0}"#, "temperature"),
            (r#"{"max_new_tokens": -4}"#, "max_new_tokens"),
            (r#"{"num_beams": 4}"#, "num_beams"),
        ] {
            let e = GenerationConfig::from_json_str(text, 32064).unwrap_err();
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
