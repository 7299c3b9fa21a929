//! Latent-action accuracy: how often the VLA's generated `<ACT_i>` tokens at step t agree with
//! the LAM's label of (o_t, o_{t+k}) for the same recording.
use std::collections::HashMap;

use serde::Serialize;

use super::model::ACT_TOKEN_OFFSET;
use super::sequence::StepLabel;

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

/// Scores VLA predictions `(step t, codes)` against LAM labels of (o_t, o_{t+k}); steps without a
/// label (the last k of a recording) are skipped.
pub fn score_steps(predicted: &[(usize, Vec<i64>)], labels: &[StepLabel]) -> LatentActionAccuracy {
    let by_step: HashMap<usize, &[i64]> = labels.iter().map(|l| (l.step, l.action.codes.as_slice())).collect();
    let mut acc = LatentActionAccuracy::default();
    for (step, codes) in predicted {
        if let Some(reference) = by_step.get(step) {
            acc.add(codes, reference);
        }
    }
    acc
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
    fn steps_align_by_index() {
        use crate::lam::model::LatentAction;
        let label = |step: usize, codes: Vec<i64>| StepLabel {
            step,
            target_step: step + 2,
            action: LatentAction {
                codes,
                uncontrol_codes: vec![0; 4],
                margin: 0.1,
            },
        };
        let labels = vec![label(0, vec![1, 1, 1, 1]), label(1, vec![2, 2, 2, 2])];
        let predicted = vec![(1, vec![2, 2, 2, 0]), (0, vec![1, 1, 1, 1]), (7, vec![3, 3, 3, 3])];
        let acc = score_steps(&predicted, &labels);
        assert_eq!(
            (acc.steps, acc.tokens, acc.token_matches, acc.exact_matches),
            (2, 8, 7, 1)
        );
    }

    #[test]
    fn token_parsing() {
        assert_eq!(parse_act_tokens("▁<ACT_11><ACT_0> x <ACT_15>"), vec![11, 0, 15]);
        assert_eq!(code_of_token_id(32001 + 15, 16), Some(15));
        assert_eq!(code_of_token_id(32001 + 16, 16), None);
        assert_eq!(code_of_token_id(31999, 16), None);
    }
}
