//! Comparing the policy on a device and dtype (a GPU in bf16, say) with the CPU f32 reference,
//! step by step over an episode of images, greedy:
//!
//! * **free-running**: two [`Session`]s, each with its own latent-token history, as a robot would
//!   run them: do the 4 latent tokens agree, and how close are the chunks and the actions
//!   (cosine, max |Δ|)? A token disagreement changes the next prompts, so later steps can drift.
//! * **teacher-forced**: both models get the reference's prompt ids and the same `pixel_values`:
//!   do the greedy tokens agree, and how close are the LM hidden states the head reads
//!   (`visual_embed`, `latent_action`) and the 4 steps' logits?
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use super::preprocess::RgbImage;
use super::session::{Policy, PolicyOptions, Result, RuntimeError, Session};
use crate::model::generate::Decoding;
use crate::model::prompt::LATENT_TOKENS;
use crate::model::vla::LatentOutput;

/// One step's agreement between a target and the reference.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepComparison {
    pub step: usize,
    /// The reference's latent ids (free-running = teacher-forced for the reference).
    pub reference_ids: Vec<i64>,
    /// The target session's own latent ids.
    pub free_ids: Vec<i64>,
    /// The target's ids on the reference's prompt.
    pub forced_ids: Vec<i64>,
    /// Cosine similarity of the free-running raw chunks.
    pub cos_chunk: f64,
    /// Cosine similarity of the free-running ensembled/queued actions (before post-processing).
    pub cos_action: f64,
    /// Largest |Δ| between the free-running actions.
    pub max_abs_action: f64,
    /// Teacher-forced cosines of the head's inputs and the logits.
    pub cos_visual_embed: f64,
    pub cos_latent_action: f64,
    pub cos_logits: f64,
    /// Largest relative difference ‖Δ‖/‖ref‖ of the teacher-forced `latent_action`.
    pub rel_latent_action: f64,
}

/// A target's comparison over the whole episode.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TargetReport {
    pub device: String,
    pub dtype: String,
    pub steps: Vec<StepComparison>,
    /// Latent tokens equal to the reference's, free-running (out of `4 · steps`).
    pub free_tokens_equal: usize,
    /// Latent tokens equal to the reference's, teacher-forced.
    pub forced_tokens_equal: usize,
    pub tokens_total: usize,
    /// Minima over the steps.
    pub min_cos_chunk: f64,
    pub min_cos_action: f64,
    pub min_cos_visual_embed: f64,
    pub min_cos_latent_action: f64,
    pub min_cos_logits: f64,
    pub max_abs_action: f64,
}

/// Cosine similarity of two tensors of the same number of elements, in f64 on the CPU
/// (1 when both are zero, 0 when only one is).
pub fn cosine(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_reshape([-1])?;
    let b = b.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_reshape([-1])?;
    if a.size() != b.size() {
        return Err(RuntimeError::Invalid(format!(
            "cosine of tensors with {:?} and {:?} elements",
            a.size(),
            b.size()
        )));
    }
    let dot = a.f_dot(&b)?.f_double_value(&[])?;
    let (na, nb) = (a.f_norm()?.f_double_value(&[])?, b.f_norm()?.f_double_value(&[])?);
    Ok(match (na == 0.0, nb == 0.0) {
        (true, true) => 1.0,
        (true, false) | (false, true) => 0.0,
        _ => dot / (na * nb),
    })
}

/// ‖a − b‖ / ‖b‖ in f64 (0 when both are zero).
fn relative_error(a: &Tensor, reference: &Tensor) -> Result<f64> {
    let a = a.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?;
    let r = reference.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?;
    let num = (&a - &r).f_norm()?.f_double_value(&[])?;
    let den = r.f_norm()?.f_double_value(&[])?;
    Ok(if den == 0.0 { num } else { num / den })
}

fn slice_cosine(a: &[f64], b: &[f64]) -> Result<f64> {
    cosine(&Tensor::from_slice(a), &Tensor::from_slice(b))
}

/// Runs the latent step of `policy` on `pixel_values` and prompt `ids`, greedy, keeping logits.
fn forced_step(policy: &Policy, pixel_values: &Tensor, ids: &[i64]) -> Result<LatentOutput> {
    let vla = policy.vla();
    let capacity = vla.num_patches() + policy.options().max_prompt_tokens + LATENT_TOKENS as i64;
    let mut state = vla.decode_state_with(capacity, policy.options().decode)?;
    tch::no_grad(|| {
        let projected = vla.encode_image_in(pixel_values, &mut state, &mut ())?;
        Ok(vla.latent_step(&projected, ids, Decoding::Greedy, &mut state, true, &mut ())?)
    })
}

/// Compares each `(device, dtype)` target with the CPU f32 reference on `images` (one control
/// step each, `proprio[t]` for the real-world head). `base` names the checkpoint, decoder and
/// post-processing; its device, dtype and decoding are overridden (greedy).
pub fn compare_with_reference(
    base: &PolicyOptions,
    targets: &[(Device, Kind)],
    instruction: &str,
    images: &[RgbImage],
    proprio: Option<&[Vec<f64>]>,
) -> Result<Vec<TargetReport>> {
    if let Some(p) = proprio {
        if p.len() < images.len() {
            return Err(RuntimeError::Invalid(format!(
                "{} proprio vectors for {} images",
                p.len(),
                images.len()
            )));
        }
    }
    let with = |device, dtype| {
        let mut o = base.clone();
        o.device = device;
        o.dtype = dtype;
        o.decoding = Decoding::Greedy;
        o.seed = None;
        o
    };
    let reference = Policy::load(with(Device::Cpu, Kind::Float))?;
    let mut reports = Vec::with_capacity(targets.len());
    for &(device, dtype) in targets {
        let target = Policy::load(with(device, dtype))?;
        reports.push(compare_one(&reference, &target, instruction, images, proprio)?);
    }
    Ok(reports)
}

fn compare_one(
    reference: &Arc<Policy>,
    target: &Arc<Policy>,
    instruction: &str,
    images: &[RgbImage],
    proprio: Option<&[Vec<f64>]>,
) -> Result<TargetReport> {
    let mut ref_session = Session::new(Arc::clone(reference))?;
    let mut tgt_session = Session::new(Arc::clone(target))?;
    ref_session.reset(instruction);
    tgt_session.reset(instruction);
    let mut steps = Vec::with_capacity(images.len());
    for (t, image) in images.iter().enumerate() {
        let q = proprio.map(|p| p[t].as_slice());
        let r = ref_session.step(image, q)?;
        let g = tgt_session.step(image, q)?;
        let (Some(ri), Some(gi)) = (&r.inference, &g.inference) else {
            return Err(RuntimeError::Invalid(
                "comparison needs a model query every step (ensemble execution)".into(),
            ));
        };
        let pixel_values = reference.processor().pixel_values(image)?;
        let ro = forced_step(reference, &pixel_values, &ri.input_ids)?;
        let go = forced_step(target, &pixel_values, &ri.input_ids)?;
        let (Some(rl), Some(gl)) = (&ro.logits, &go.logits) else {
            return Err(RuntimeError::Invalid("latent step kept no logits".into()));
        };
        let max_abs_action = r
            .pre_action
            .iter()
            .zip(&g.pre_action)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        steps.push(StepComparison {
            step: t,
            reference_ids: ri.latent_ids.clone(),
            free_ids: gi.latent_ids.clone(),
            forced_ids: go.generated.clone(),
            cos_chunk: slice_cosine(&ri.chunk.concat(), &gi.chunk.concat())?,
            cos_action: slice_cosine(&r.pre_action, &g.pre_action)?,
            max_abs_action,
            cos_visual_embed: cosine(&go.visual_embed, &ro.visual_embed)?,
            cos_latent_action: cosine(&go.latent_action, &ro.latent_action)?,
            cos_logits: cosine(gl, rl)?,
            rel_latent_action: relative_error(&go.latent_action, &ro.latent_action)?,
        });
    }
    Ok(summarise(target, steps))
}

fn summarise(target: &Policy, steps: Vec<StepComparison>) -> TargetReport {
    fn equal(reference: &[i64], other: &[i64]) -> usize {
        reference.iter().zip(other).filter(|(a, b)| a == b).count()
    }
    let min = |f: fn(&StepComparison) -> f64| steps.iter().map(f).fold(f64::INFINITY, f64::min);
    TargetReport {
        device: format!("{:?}", target.options().device),
        dtype: format!("{:?}", target.options().dtype),
        free_tokens_equal: steps.iter().map(|s| equal(&s.reference_ids, &s.free_ids)).sum(),
        forced_tokens_equal: steps.iter().map(|s| equal(&s.reference_ids, &s.forced_ids)).sum(),
        tokens_total: steps.iter().map(|s| s.reference_ids.len()).sum(),
        min_cos_chunk: min(|s| s.cos_chunk),
        min_cos_action: min(|s| s.cos_action),
        min_cos_visual_embed: min(|s| s.cos_visual_embed),
        min_cos_latent_action: min(|s| s.cos_latent_action),
        min_cos_logits: min(|s| s.cos_logits),
        max_abs_action: steps.iter().map(|s| s.max_abs_action).fold(0.0, f64::max),
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_handles_scale_sign_and_zeros() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        assert!((cosine(&a, &(&a * 3.0)).unwrap() - 1.0).abs() < 1e-12);
        assert!((cosine(&a, &(-&a)).unwrap() + 1.0).abs() < 1e-12);
        let z = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        assert_eq!(cosine(&z, &z).unwrap(), 1.0);
        assert_eq!(cosine(&a, &z).unwrap(), 0.0);
        assert!(cosine(&a, &Tensor::from_slice(&[1.0f32])).is_err());
        assert!((relative_error(&(&a * 1.1), &a).unwrap() - 0.1).abs() < 1e-6);
    }
}
