//! `config.json` of an HF UniVLA/OpenVLA checkpoint (model_type `openvla`).
//!
//! Only the language-model part is typed here; fields HF omits because they equal the
//! `LlamaConfig` defaults (transformers 4.40.1) take those defaults, e.g. `rms_norm_eps = 1e-6`.
use std::path::Path;

use serde::Deserialize;

use super::error::{ModelError, Result};
use super::generation_config::{GenerationConfig, GENERATION_CONFIG_FILE};

/// LLaMA-2 decoder sizes (`text_config`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct LlamaConfig {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: Option<i64>,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub vocab_size: i64,
    pub max_position_embeddings: i64,
    pub bos_token_id: i64,
    pub eos_token_id: i64,
    pub pad_token_id: Option<i64>,
}

impl Default for LlamaConfig {
    fn default() -> Self {
        Self {
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            vocab_size: 32000,
            max_position_embeddings: 2048,
            bos_token_id: 1,
            eos_token_id: 2,
            pad_token_id: None,
        }
    }
}

impl LlamaConfig {
    pub fn kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks every field a forward pass reads, once at load, so that a corrupted or hostile
    /// `config.json` ends in an error naming the field instead of a division by zero or a
    /// tensor op on a negative size deep inside the model.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(m));
        for (field, value) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if value <= 0 {
                return bad(format!("text_config.{field} must be a positive integer, found {value}"));
            }
        }
        for (field, value) in [("rope_theta", self.rope_theta), ("rms_norm_eps", self.rms_norm_eps)] {
            if !(value.is_finite() && value > 0.0) {
                return bad(format!(
                    "text_config.{field} must be a positive finite number, found {value}"
                ));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return bad(format!(
                "text_config.hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.head_dim() % 2 != 0 {
            return bad(format!(
                "text_config: head dim {} (hidden_size / num_attention_heads) must be even for rotary embeddings",
                self.head_dim()
            ));
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return bad(format!(
                "text_config.num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        // `pad_token_id` is not read (LLaMA configs may carry -1 there), so it is not checked.
        for (field, id) in [("bos_token_id", self.bos_token_id), ("eos_token_id", self.eos_token_id)] {
            if !(0..self.vocab_size).contains(&id) {
                return bad(format!(
                    "text_config.{field} {id} is outside the vocabulary (vocab_size {})",
                    self.vocab_size
                ));
            }
        }
        Ok(())
    }
}

/// The parts of `config.json` the VLA needs beyond the vision backbone.
#[derive(Clone, Debug, Deserialize)]
pub struct VlaConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub text_config: LlamaConfig,
    #[serde(default = "default_pad")]
    pub pad_token_id: i64,
    #[serde(default = "default_pad_multiple")]
    pub pad_to_multiple_of: i64,
    #[serde(default = "default_max_len")]
    pub llm_max_length: i64,
    /// Statistics for un-normalisation, keyed by dataset (may be replaced by `dataset_statistics.json`).
    #[serde(default)]
    pub norm_stats: Option<serde_json::Value>,
    /// The whole file, for the sections other modules parse (vision backbone).
    #[serde(skip)]
    pub raw: serde_json::Value,
    /// `generation_config.json` beside `config.json`, when there is one.
    #[serde(skip)]
    pub generation: Option<GenerationConfig>,
}

fn default_pad() -> i64 {
    32000
}
fn default_pad_multiple() -> i64 {
    64
}
fn default_max_len() -> i64 {
    2048
}

impl VlaConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.into(),
            source,
        })?;
        let mut cfg = Self::from_json_str(&text).map_err(|e| match e {
            ModelError::Config(m) => ModelError::Config(format!("{}: {m}", path.display())),
            other => other,
        })?;
        let generation = path.with_file_name(GENERATION_CONFIG_FILE);
        if generation.is_file() {
            cfg.generation = Some(GenerationConfig::from_file(&generation, cfg.text_config.vocab_size)?);
        }
        Ok(cfg)
    }

    /// The ids generation never chooses: `eos_token_id` of `generation_config.json` when it
    /// names one (what HF `generate` uses), else `text_config.eos_token_id`.
    pub fn eos_ids(&self) -> Vec<i64> {
        self.generation
            .as_ref()
            .and_then(GenerationConfig::eos_ids)
            .unwrap_or_else(|| vec![self.text_config.eos_token_id])
    }

    pub fn from_json_str(text: &str) -> Result<Self> {
        let raw: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ModelError::Config(format!("invalid JSON: {e}")))?;
        let mut cfg: VlaConfig =
            serde_json::from_value(raw.clone()).map_err(|e| ModelError::Config(format!("unexpected field: {e}")))?;
        cfg.raw = raw;
        if let Some(mt) = &cfg.model_type {
            if mt != "openvla" && mt != "prismatic" {
                return Err(ModelError::Config(format!(
                    "model_type is `{mt}`, expected `openvla` (a UniVLA/OpenVLA HF checkpoint)"
                )));
            }
        }
        cfg.text_config.validate()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The top-level fields beside `text_config`: padding and prompt-length limits.
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(m));
        for (field, value) in [
            ("pad_to_multiple_of", self.pad_to_multiple_of),
            ("llm_max_length", self.llm_max_length),
        ] {
            if value <= 0 {
                return bad(format!("{field} must be a positive integer, found {value}"));
            }
        }
        Ok(())
    }
}
