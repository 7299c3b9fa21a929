//! Control steps of several episodes as one model call (the server's batches): each row's image,
//! prompt and proprio are prepared on their own (a bad row fails alone), the prepared rows go
//! through vision, projector, prefill and the three decode steps together
//! ([`UniVla::latent_step_batch`](crate::model::vla::UniVla)), then each row's head, ensemble and
//! post-processing run as in [`Session::step`](super::session::Session::step).
use std::sync::Arc;

use tch::{Kind, Tensor};

use crate::model::batch::BatchState;
use crate::model::generate::Decoding;
use crate::model::prompt::{extract_latent_ids, LATENT_TOKENS};
use crate::model::vla::{LatentOutput, StageObserver};
use crate::runtime::preprocess::RgbImage;
use crate::runtime::session::{Clock, Episode, Inference, Policy, Result, RuntimeError, StepOutput};

/// One episode's input for a batched step.
pub struct BatchRow<'a> {
    pub episode: &'a mut Episode,
    pub image: &'a RgbImage,
    /// Raw joint positions (the real-world head needs them).
    pub proprio: Option<&'a [f64]>,
}

/// Runs batched control steps with one loaded policy; holds the batch's KV cache.
pub struct BatchRunner {
    policy: Arc<Policy>,
    state: BatchState,
    max_rows: usize,
}

/// A row that will query the model, prepared.
struct Prepared {
    row: usize,
    pixel_values: Tensor,
    prompt: String,
    input_ids: Vec<i64>,
    proprio: Option<Tensor>,
}

impl BatchRunner {
    /// A runner for batches of up to `max_rows` episodes.
    pub fn new(policy: Arc<Policy>, max_rows: usize) -> Result<Self> {
        let max_rows = max_rows.max(1);
        let state = policy.vla().batch_state(max_rows as i64, policy.sequence_capacity())?;
        Ok(Self {
            policy,
            state,
            max_rows,
        })
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// One control step for every row, in order; each row's result stands alone. Rows beyond
    /// [`Self::max_rows`] are refused.
    pub fn step(&mut self, rows: &mut [BatchRow<'_>]) -> Vec<Result<StepOutput>> {
        let _span = tracing::debug_span!("batch_step", rows = rows.len()).entered();
        let p = Arc::clone(&self.policy);
        let mut clock = Clock::new(p.options().device, false);
        let mut results: Vec<Option<Result<Option<Inference>>>> = (0..rows.len()).map(|_| None).collect();
        let mut prepared = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if i >= self.max_rows {
                results[i] = Some(Err(RuntimeError::Invalid(format!(
                    "a batch holds at most {} rows",
                    self.max_rows
                ))));
            } else if !row.episode.needs_plan() {
                results[i] = Some(Ok(None));
            } else {
                match prepare(&p, i, row) {
                    Ok(r) => prepared.push(r),
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
        }
        clock.stage_done("preprocess");
        if !prepared.is_empty() {
            match tch::no_grad(|| self.infer(&prepared, rows, &mut clock)) {
                Ok(outs) => {
                    for (r, out) in prepared.into_iter().zip(outs) {
                        results[r.row] = Some(out.map(Some));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for r in &prepared {
                        results[r.row] = Some(Err(RuntimeError::Invalid(msg.clone())));
                    }
                }
            }
        }
        let mut outputs = Vec::with_capacity(rows.len());
        for (row, result) in rows.iter_mut().zip(results) {
            let out = match result {
                Some(Ok(inference)) => row
                    .episode
                    .advance(&p, inference.as_ref())
                    .map(|(pre_action, action)| (inference, pre_action, action)),
                Some(Err(e)) => Err(e),
                None => Err(RuntimeError::Invalid("row was not processed".into())),
            };
            outputs.push(out);
        }
        clock.stage_done("postprocess");
        outputs
            .into_iter()
            .map(|out| {
                out.map(|(inference, pre_action, action)| StepOutput {
                    inference,
                    pre_action,
                    action,
                    timings: clock.timings.clone(),
                })
            })
            .collect()
    }

    /// The model part for the prepared rows: one batched VLM call, then each row's history and
    /// head. The outer error fails every row; an inner one only its row.
    fn infer(
        &mut self,
        prepared: &[Prepared],
        rows: &mut [BatchRow<'_>],
        clock: &mut Clock,
    ) -> Result<Vec<Result<Inference>>> {
        let p = Arc::clone(&self.policy);
        let pixels: Vec<&Tensor> = prepared.iter().map(|r| &r.pixel_values).collect();
        let pixel_values = Tensor::f_cat(&pixels, 0)?;
        let projected = p.vla().encode_image(&pixel_values, clock)?;
        let ids: Vec<Vec<i64>> = prepared.iter().map(|r| r.input_ids.clone()).collect();
        let decoding = p.options().decoding;
        let noise = match decoding {
            Decoding::Sample { .. } => self.sampling_noise(prepared, rows)?,
            Decoding::Greedy => None,
        };
        let outs = p
            .vla()
            .latent_step_batch(&projected, &ids, decoding, noise.as_deref(), &mut self.state, clock)?;
        let mut inferences = Vec::with_capacity(prepared.len());
        for (r, out) in prepared.iter().zip(outs) {
            inferences.push(self.finish_row(r, out, rows));
        }
        clock.stage_done("head");
        Ok(inferences)
    }

    /// Per-row Exp(1) draws for the 4 tokens when any row samples with its own generator (rows
    /// without one draw from libtorch's); `None` when none has one (libtorch draws for all).
    fn sampling_noise(&self, prepared: &[Prepared], rows: &mut [BatchRow<'_>]) -> Result<Option<Vec<Tensor>>> {
        if !prepared.iter().any(|r| rows[r.row].episode.rng_mut().is_some()) {
            return Ok(None);
        }
        let vocab = self.policy.vla().config().text_config.vocab_size;
        let device = self.policy.options().device;
        let mut tokens = Vec::with_capacity(LATENT_TOKENS);
        for _ in 0..LATENT_TOKENS {
            let mut per_row = Vec::with_capacity(prepared.len());
            for r in prepared {
                let row = match rows[r.row].episode.rng_mut() {
                    Some(rng) => Tensor::from_slice(&rng.exponential(vocab as usize)).view([1, vocab]),
                    None => {
                        let mut q = Tensor::empty([1, vocab], (Kind::Float, tch::Device::Cpu));
                        let _ = q.exponential_(1.0);
                        q
                    }
                };
                per_row.push(row);
            }
            tokens.push(Tensor::f_cat(&per_row, 0)?.to_device(device));
        }
        Ok(Some(tokens))
    }

    fn finish_row(&self, r: &Prepared, out: LatentOutput, rows: &mut [BatchRow<'_>]) -> Result<Inference> {
        let p = &self.policy;
        let latent_ids = extract_latent_ids(&r.input_ids, &out.generated);
        rows[r.row]
            .episode
            .record(p.prompt_style(), &latent_ids, &out.generated);
        let chunk = p.head_chunk(&out.visual_embed, &out.latent_action, r.proprio.as_ref())?;
        Ok(Inference {
            prompt: r.prompt.clone(),
            input_ids: r.input_ids.clone(),
            latent_ids,
            chunk,
        })
    }
}

/// Checks and converts one row's inputs before the model runs.
fn prepare(p: &Policy, row: usize, input: &BatchRow<'_>) -> Result<Prepared> {
    let pixel_values = p.processor().pixel_values(input.image)?;
    let (prompt, input_ids) = p.prompt_ids(&*input.episode)?;
    let proprio = p.proprio_tensor(input.proprio)?;
    Ok(Prepared {
        row,
        pixel_values,
        prompt,
        input_ids,
        proprio,
    })
}
