//! Latent-action accuracy: how often the VLA's generated `<ACT_i>` tokens at step t agree with
//! the LAM's label of (o_t, o_{t+k}) for the same recording.
use serde::Serialize;

use super::model::ACT_TOKEN_OFFSET;

/// Latent code of a vocabulary id, if it is an `<ACT_i>` token of a `codebook`-entry codebook.
pub fn code_of_token_id(id: i64, codebook: usize) -> Option<i64> {
    let code = id - ACT_TOKEN_OFFSET;
    (0..codebook as i64).contains(&code).then_some(code)
}

/// Codes of an `<ACT_i><ACT_j>…` string, in order; other text is skipped.
pub fn parse_act_tokens(text: &str) -> Vec<i64> {
    text.split("<ACT_")
        .skip(1)
        .filter_map(|rest| rest.split_once('>').and_then(|(n, _)| n.parse().ok()))
        .collect()
}

/// Running agreement counts between predicted and LAM codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatentActionAccuracy {
    /// Steps compared.
    pub steps: usize,
    /// Code positions compared (4 per step when lengths agree).
    pub tokens: usize,
    /// Positions whose codes agree.
    pub token_matches: usize,
    /// Steps whose codes agree at every position (and in length).
    pub exact_matches: usize,
}

impl LatentActionAccuracy {
    /// Adds one step: `predicted` against `reference`, position by position.
    pub fn add(&mut self, predicted: &[i64], reference: &[i64]) {
        self.steps += 1;
        self.tokens += predicted.len().max(reference.len());
        self.token_matches += predicted.iter().zip(reference).filter(|(a, b)| a == b).count();
        if predicted == reference {
            self.exact_matches += 1;
        }
    }

    /// Fraction of code positions that agree (0 when nothing was compared).
    pub fn token_accuracy(&self) -> f64 {
        ratio(self.token_matches, self.tokens)
    }

    /// Fraction of steps whose whole code tuple agrees.
    pub fn exact_accuracy(&self) -> f64 {
        ratio(self.exact_matches, self.steps)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_positions_and_exact_steps() {
        let mut acc = LatentActionAccuracy::default();
        acc.add(&[1, 2, 3, 4], &[1, 2, 3, 4]);
        acc.add(&[1, 2, 0, 0], &[1, 2, 3, 4]);
        assert_eq!(
            (acc.steps, acc.tokens, acc.token_matches, acc.exact_matches),
            (2, 8, 6, 1)
        );
        assert!((acc.token_accuracy() - 0.75).abs() < 1e-12);
        assert!((acc.exact_accuracy() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn token_parsing() {
        assert_eq!(parse_act_tokens("▁<ACT_11><ACT_0> x <ACT_15>"), vec![11, 0, 15]);
        assert_eq!(code_of_token_id(32001 + 15, 16), Some(15));
        assert_eq!(code_of_token_id(32001 + 16, 16), None);
        assert_eq!(code_of_token_id(31999, 16), None);
    }
}
