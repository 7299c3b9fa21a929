//! Prompts and tokenization exactly as the reference deployment builds them.
//!
//! * standard: `In: What action should the robot take to {task}?\nOut:` and, with the previous
//!   step's four latent tokens, `In: What action should the robot take to {task}? History action
//!   <ACT_a><ACT_b><ACT_c><ACT_d>\nOut:` (task lower-cased);
//! * R2R evaluation formats the history as a Python list repr: `History action ['<ACT_..>…']`,
//!   and `History action ['']` on the first step.
//!
//! Token ids come from the checkpoint's `tokenizer.json` (HF fast tokenizer, BOS added, no EOS);
//! `▁` (29871) is appended when the ids do not already end with it, as `predict_latent_action` does.
use std::path::{Path, PathBuf};

use super::error::{ModelError, Result};

/// Vocabulary id of `<ACT_0>`; `<ACT_i>` = `ACT_TOKEN_BASE + i`.
pub const ACT_TOKEN_BASE: i64 = 32001;
/// Size of the task-centric latent action codebook.
pub const NUM_LATENT_CODES: i64 = 16;
/// Latent action tokens generated per control step.
pub const LATENT_TOKENS: usize = 4;
/// The lone SentencePiece `▁` piece appended to every prompt.
pub const SPACE_PIECE_ID: i64 = 29871;
/// The reference maps generated ids to `<ACT_i>` strings through a table of this many entries.
const ACT_STRING_TABLE: i64 = 32;

/// How the history of latent tokens enters the prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptStyle {
    /// Real-world deployment and LIBERO: `History action <ACT_..>` when there is history.
    Standard,
    /// No history at all (blocking LIBERO, CALVIN, Bridge).
    NoHistory,
    /// R2R evaluation: `History action ['…']` (a Python list repr), present from the first step.
    R2rListRepr,
}

/// `<ACT_a><ACT_b>…` for latent token ids; errors on ids the reference cannot name.
pub fn history_string(ids: &[i64]) -> Result<String> {
    ids.iter()
        .map(|&id| {
            let code = id - ACT_TOKEN_BASE;
            if (0..ACT_STRING_TABLE).contains(&code) {
                Ok(format!("<ACT_{code}>"))
            } else {
                Err(ModelError::Invalid(format!(
                    "token id {id} is not a latent action token"
                )))
            }
        })
        .collect()
}

/// Whether every id is one of the 16 codebook tokens.
pub fn all_latent_codes(ids: &[i64]) -> bool {
    ids.iter()
        .all(|&id| (ACT_TOKEN_BASE..ACT_TOKEN_BASE + NUM_LATENT_CODES).contains(&id))
}

/// The prompt string for `instruction` and the previous step's history string (`""` = none).
pub fn build_prompt(instruction: &str, history: &str, style: PromptStyle) -> String {
    let task = instruction.to_lowercase();
    match style {
        PromptStyle::Standard if !history.is_empty() => {
            format!("In: What action should the robot take to {task}? History action {history}\nOut:")
        }
        PromptStyle::Standard | PromptStyle::NoHistory => {
            format!("In: What action should the robot take to {task}?\nOut:")
        }
        PromptStyle::R2rListRepr => {
            format!("In: What action should the robot take to {task}? History action ['{history}']\nOut:")
        }
    }
}

/// The checkpoint's HF tokenizer.
pub struct PromptTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl PromptTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            path: path.into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            inner,
            path: path.into(),
        })
    }

    /// Ids the language model receives for `prompt`: BOS, the pieces, and a final `▁`.
    pub fn encode(&self, prompt: &str) -> Result<Vec<i64>> {
        let enc = self.inner.encode(prompt, true).map_err(|e| ModelError::Tokenizer {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i64::from(i)).collect();
        if ids.last() != Some(&SPACE_PIECE_ID) {
            ids.push(SPACE_PIECE_ID);
        }
        Ok(ids)
    }
}

/// The 4 latent ids as the reference extracts them: all ids above `<PAD>` in the prompt (after
/// BOS) followed by the generated ones, keeping the last four.
pub fn extract_latent_ids(prompt_ids: &[i64], generated: &[i64]) -> Vec<i64> {
    let pad = ACT_TOKEN_BASE - 1;
    let all: Vec<i64> = prompt_ids
        .iter()
        .skip(1)
        .chain(generated)
        .copied()
        .filter(|&id| id > pad)
        .collect();
    all[all.len().saturating_sub(LATENT_TOKENS)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_match_reference_strings() {
        assert_eq!(
            build_prompt("Put the Cup", "", PromptStyle::Standard),
            "In: What action should the robot take to put the cup?\nOut:"
        );
        assert_eq!(
            build_prompt("go", "<ACT_1><ACT_2><ACT_3><ACT_4>", PromptStyle::Standard),
            "In: What action should the robot take to go? History action <ACT_1><ACT_2><ACT_3><ACT_4>\nOut:"
        );
        assert_eq!(
            build_prompt("Walk.", "", PromptStyle::R2rListRepr),
            "In: What action should the robot take to walk.? History action ['']\nOut:"
        );
        assert_eq!(
            build_prompt("go", "<ACT_1>", PromptStyle::NoHistory),
            build_prompt("go", "", PromptStyle::Standard)
        );
    }

    #[test]
    fn history_strings_and_extraction() {
        assert_eq!(history_string(&[32001, 32016]).unwrap(), "<ACT_0><ACT_15>");
        assert!(history_string(&[13]).is_err());
        assert_eq!(
            extract_latent_ids(&[1, 5, 32003], &[32004, 7, 32005, 32006]),
            vec![32003, 32004, 32005, 32006]
        );
        assert!(all_latent_codes(&[32001, 32016]));
        assert!(!all_latent_codes(&[32017]));
    }
}
