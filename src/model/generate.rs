//! Choosing the next token from LM logits, as HF `generate` does for UniVLA: EOS is blocked
//! (min_new_tokens = max_new_tokens = 4); greedy argmax, or sampling with temperature, top-k and
//! top-p (the reference deploys T = 0.75, top-k 50 (HF default), top-p 0.9).
//! Everything stays on the device: no host sync inside the decode loop, so a CUDA graph can
//! capture it.
use tch::{Kind, Tensor};

use super::error::{ModelError, Result};

/// The reference's sampling settings.
pub const REFERENCE_TEMPERATURE: f64 = 0.75;
pub const REFERENCE_TOP_K: i64 = 50;
pub const REFERENCE_TOP_P: f64 = 0.9;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Decoding {
    Greedy,
    Sample { temperature: f64, top_k: i64, top_p: f64 },
}

impl Decoding {
    /// Sampling exactly as the reference deploys it.
    pub fn reference_sampling() -> Self {
        Decoding::Sample {
            temperature: REFERENCE_TEMPERATURE,
            top_k: REFERENCE_TOP_K,
            top_p: REFERENCE_TOP_P,
        }
    }

    /// Next token ids [B, 1] (int64) from f32 `logits` [B, V]; no id of `eos` is ever chosen.
    /// An id outside 0..V, logits that are not [B, V] or sampling settings that are not finite
    /// and positive are an error (checked on the host: no device sync).
    pub fn next_token(&self, logits: &Tensor, eos: &[i64]) -> Result<Tensor> {
        self.next_token_with(logits, eos, None)
    }

    /// [`Decoding::next_token`] with the sampling draw's Exp(1) variates given ([B, V] f32, as
    /// `exponential_` would fill them), so each row can draw from its own generator; greedy
    /// decoding ignores them.
    pub fn next_token_with(&self, logits: &Tensor, eos: &[i64], exp_noise: Option<&Tensor>) -> Result<Tensor> {
        let size = logits.size();
        let vocab = match size.as_slice() {
            [b, v] if *b > 0 && *v > 0 => *v,
            _ => {
                return Err(ModelError::Invalid(format!(
                    "logits must be [batch, vocab], got {size:?}"
                )))
            }
        };
        if let Some(id) = eos.iter().find(|id| !(0..vocab).contains(*id)) {
            return Err(ModelError::Invalid(format!(
                "EOS id {id} is outside the {vocab} logits"
            )));
        }
        // On a copy (the caller's logits stay untouched) and without a host-to-device transfer.
        let mut scores = logits.f_to_dtype(Kind::Float, false, true)?;
        for &id in eos {
            let _ = scores.f_narrow(-1, id, 1)?.f_fill_(f64::NEG_INFINITY)?;
        }
        match *self {
            Decoding::Greedy => Ok(scores.f_argmax(-1, true)?),
            Decoding::Sample {
                temperature,
                top_k,
                top_p,
            } => {
                if !(temperature.is_finite() && temperature > 0.0 && (0.0..=1.0).contains(&top_p)) {
                    return Err(ModelError::Invalid(format!(
                        "sampling needs a positive finite temperature and top-p in [0, 1] (got {temperature}, {top_p})"
                    )));
                }
                scores = scores.f_div_scalar(temperature)?;
                let k = top_k.min(vocab);
                if k > 0 {
                    let (top, _) = scores.f_topk(k, -1, true, true)?;
                    let kth = top.f_narrow(-1, k - 1, 1)?;
                    scores = scores.f_masked_fill(&scores.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?;
                }
                if top_p < 1.0 {
                    let (sorted, idx) = scores.f_sort(-1, false)?;
                    let cum = sorted.f_softmax(-1, Kind::Float)?.f_cumsum(-1, Kind::Float)?;
                    let remove_sorted = cum.f_le(1.0 - top_p)?;
                    // Always keep the most likely token (the last in ascending order).
                    let _ = remove_sorted.f_narrow(-1, vocab - 1, 1)?.f_fill_(0)?;
                    let remove = remove_sorted.f_scatter(-1, &idx, &remove_sorted)?;
                    scores = scores.f_masked_fill(&remove, f64::NEG_INFINITY)?;
                }
                let probs = scores.f_softmax(-1, Kind::Float)?;
                match exp_noise {
                    Some(q) => Ok(probs.f_div(q)?.f_argmax(-1, true)?),
                    None => sample_one(&probs),
                }
            }
        }
    }
}

/// One draw from each row of `probs` [B, V]: `argmax(probs / q)` with `q ~ Exp(1)`, the fast
/// path libtorch's `multinomial(1)` takes (the same random numbers, the same ids), minus its
/// check of the probabilities, which reads a value back to the host and so cannot be captured in a
/// CUDA graph (the probabilities here come from a softmax: finite and non-negative).
fn sample_one(probs: &Tensor) -> Result<Tensor> {
    let mut q = probs.f_empty_like()?;
    let _ = q.f_exponential_(1.0)?;
    Ok(probs.f_div(&q)?.f_argmax(-1, true)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_blocks_eos() {
        let logits = Tensor::from_slice(&[0.0f32, 1.0, 9.0, 2.0]).view([1, 4]);
        let t = Decoding::Greedy.next_token(&logits, &[2]).unwrap();
        assert_eq!(t.int64_value(&[0, 0]), 3);
    }

    #[test]
    fn sampling_respects_top_k_and_top_p() {
        tch::manual_seed(7);
        // After EOS masking, token 0 holds nearly all mass: top-p 0.9 keeps only it.
        let logits = Tensor::from_slice(&[10.0f32, 0.0, 50.0, 0.5, 0.2]).view([1, 5]);
        let d = Decoding::Sample {
            temperature: 0.75,
            top_k: 50,
            top_p: 0.9,
        };
        for _ in 0..50 {
            assert_eq!(d.next_token(&logits, &[2]).unwrap().int64_value(&[0, 0]), 0);
        }
        // top-k 2 over near-uniform logits: only the two largest may appear.
        let logits = Tensor::from_slice(&[1.0f32, 1.1, 0.0, 1.2, 0.9]).view([1, 5]);
        let d = Decoding::Sample {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
        };
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.insert(d.next_token(&logits, &[2]).unwrap().int64_value(&[0, 0]));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn sampling_draws_what_multinomial_draws() {
        // Same generator state: the same ids as libtorch's multinomial, draw for draw. The
        // generator is process-wide and other tests running in parallel draw from it, so each
        // side is one batched op right after seeding, and a disturbed attempt is retried; a real
        // difference fails every attempt.
        let probs = Tensor::from_slice(&[0.1f32, 0.2, 0.05, 0.3, 0.15, 0.2])
            .view([1, 6])
            .repeat([400, 1]);
        let draw = |f: &dyn Fn() -> Tensor| {
            tch::manual_seed(11);
            Vec::<i64>::try_from(f().view([-1])).unwrap()
        };
        let mut last = None;
        for _ in 0..5 {
            let ours = draw(&|| sample_one(&probs).unwrap());
            let theirs = draw(&|| probs.multinomial(1, false));
            if ours == theirs {
                let distinct: std::collections::BTreeSet<i64> = ours.iter().copied().collect();
                assert!(distinct.len() >= 5, "{distinct:?}");
                return;
            }
            last = Some((ours, theirs));
        }
        let (ours, theirs) = last.unwrap();
        assert_eq!(ours, theirs);
    }
}
