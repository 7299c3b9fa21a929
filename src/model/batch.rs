//! Latent-action steps for several sequences at once (the server's batches): the prompts go
//! through one right-padded prefill (every row from position 0, a causal mask that also hides
//! each row's padding keys), then the three decode steps run with one position per row over a
//! shared KV cache (rotary rows gathered per row, K/V scattered to each row's position, keys past
//! it masked). Each row gets what it would get alone: the same ids, hidden states equal up to the
//! order of float sums.
use tch::{Device, Kind, Tensor};

use super::error::{ModelError, Result};
use super::generate::Decoding;
use super::llama::{KvCache, Rope};
use super::prompt::LATENT_TOKENS;
use super::vla::{LatentOutput, StageObserver, UniVla, DECODE_STAGES, VISUAL_EMBED_POSITIONS};

/// Rotary tables and a KV cache for batches of up to `rows` sequences of `capacity` positions,
/// allocated once (a batch of B rows uses the first B).
#[derive(Debug)]
pub struct BatchState {
    rope: Rope,
    cache: KvCache,
}

impl BatchState {
    /// The most rows one batch may have.
    pub fn rows(&self) -> i64 {
        self.cache.rows()
    }

    /// Positions per row (prefix + 3).
    pub fn capacity(&self) -> i64 {
        self.cache.capacity()
    }
}

impl UniVla {
    /// A batch state for up to `rows` sequences of up to `capacity` tokens (prefix + 3).
    /// Refused when `capacity` exceeds `max_position_embeddings` or `rows` is below 1.
    pub fn batch_state(&self, rows: i64, capacity: i64) -> Result<BatchState> {
        let cfg = &self.config().text_config;
        Ok(BatchState {
            rope: Rope::new(cfg, capacity, self.kind(), self.device())?,
            cache: KvCache::with_rows(cfg, rows, capacity, self.kind(), self.device())?,
        })
    }

    /// The 4 latent tokens for each of B rows: `projected` [B, P, H] (row b's image), and
    /// `input_ids[b]`, row b's prompt ids (BOS first, `▁` last). When sampling with per-row
    /// generators, `exp_noise` holds for each of the 4 tokens the [B, V] Exp(1) variates of the
    /// draw (see [`Decoding::next_token_with`]); `None` draws from libtorch's generator.
    pub fn latent_step_batch(
        &self,
        projected: &Tensor,
        input_ids: &[Vec<i64>],
        decoding: Decoding,
        exp_noise: Option<&[Tensor]>,
        state: &mut BatchState,
        obs: &mut dyn StageObserver,
    ) -> Result<Vec<LatentOutput>> {
        let b = input_ids.len() as i64;
        let size = projected.size();
        let (patches, width) = match size.as_slice() {
            [rows, p, h] if *rows == b => (*p, *h),
            _ => {
                return Err(ModelError::Invalid(format!(
                    "projected patches {size:?} do not hold one image for each of the {b} prompts"
                )))
            }
        };
        if b == 0 || b > state.rows() {
            return Err(ModelError::Invalid(format!(
                "a batch holds 1 to {} rows, got {b}",
                state.rows()
            )));
        }
        if patches < VISUAL_EMBED_POSITIONS {
            return Err(ModelError::Invalid(format!(
                "{patches} image patches; the action head needs at least {VISUAL_EMBED_POSITIONS}"
            )));
        }
        if input_ids.iter().any(|ids| ids.len() < 2) {
            return Err(ModelError::Invalid(
                "prompt must hold BOS and at least one token".into(),
            ));
        }
        if exp_noise.is_some_and(|n| n.len() != LATENT_TOKENS) {
            return Err(ModelError::Invalid(format!(
                "sampling noise must come for each of the {LATENT_TOKENS} tokens"
            )));
        }
        let lens: Vec<i64> = input_ids.iter().map(|ids| patches + ids.len() as i64).collect();
        let max_len = lens.iter().copied().max().unwrap_or(0);
        let needed = max_len + LATENT_TOKENS as i64 - 1;
        if needed > state.capacity() {
            return Err(ModelError::Invalid(format!(
                "the longest prompt needs {needed} positions, more than the {} the batch holds",
                state.capacity()
            )));
        }
        let (kind, device) = (self.kind(), self.device());
        let llm = self.llm();
        let mut rows = Vec::with_capacity(input_ids.len());
        for (i, ids) in input_ids.iter().enumerate() {
            let t = Tensor::from_slice(ids).f_to_device(device)?.f_view([1, -1])?;
            let n = ids.len() as i64;
            let mut parts = vec![
                llm.embed(&t.f_narrow(1, 0, 1)?)?,
                projected.f_narrow(0, i as i64, 1)?.f_to_kind(kind)?,
                llm.embed(&t.f_narrow(1, 1, n - 1)?)?,
            ];
            if lens[i] < max_len {
                parts.push(Tensor::f_zeros([1, max_len - lens[i], width], (kind, device))?);
            }
            rows.push(Tensor::f_cat(&parts, 1)?);
        }
        let embeds = Tensor::f_cat(&rows, 0)?;
        let lens_t = Tensor::from_slice(&lens).f_to_device(device)?;
        let positions = Tensor::f_arange(max_len, (Kind::Int64, device))?;
        // [B, 1, query, key]: key ≤ query, and key inside the row.
        let causal = positions.view([1, -1]).le_tensor(&positions.view([-1, 1]));
        let inside = positions.view([1, -1]).lt_tensor(&lens_t.view([-1, 1]));
        let mask = causal.unsqueeze(0).logical_and(&inside.unsqueeze(1)).unsqueeze(1);
        let hidden = llm.forward_padded(&embeds, &mask, &state.rope, &mut state.cache)?;
        obs.stage_done("prefill");
        let eos = self.config().eos_ids();
        let noise = |k: usize| exp_noise.map(|n| &n[k]);
        // Token 1 from each row's last prompt position.
        let last_index = (&lens_t - 1).view([b, 1, 1]).expand([b, 1, width], false);
        let last = hidden.gather(1, &last_index, false);
        let first_logits = llm.logits(&last).squeeze_dim(1);
        let mut tokens = vec![decoding.next_token_with(&first_logits, &eos, noise(0))?];
        let mut states = vec![last];
        obs.stage_done(DECODE_STAGES[0]);
        for (k, stage) in DECODE_STAGES[1..].iter().enumerate() {
            let pos = &lens_t + k as i64;
            let len = max_len + k as i64 + 1;
            let keys = Tensor::f_arange(len, (Kind::Int64, device))?;
            let step_mask = keys.view([1, -1]).le_tensor(&pos.view([-1, 1])).view([b, 1, 1, len]);
            let input = llm.embed(&tokens[k])?;
            let h = llm.forward_rows(&input, &pos, &step_mask, len, &state.rope, &mut state.cache)?;
            let logits = llm.logits(&h).squeeze_dim(1);
            tokens.push(decoding.next_token_with(&logits, &eos, noise(k + 1))?);
            states.push(h);
            obs.stage_done(stage);
        }
        // The only host sync: the ids, row after row.
        let generated = Vec::<i64>::try_from(Tensor::f_cat(&tokens, 1)?.view([-1]).to_device(Device::Cpu))?;
        let states = Tensor::f_cat(&states, 1)?.to_kind(Kind::Float);
        let visual = hidden.f_narrow(1, 0, VISUAL_EMBED_POSITIONS)?.f_to_kind(Kind::Float)?;
        Ok((0..b)
            .map(|i| {
                let n = LATENT_TOKENS;
                let at = i as usize * n;
                LatentOutput {
                    generated: generated[at..at + n].to_vec(),
                    visual_embed: visual.narrow(0, i, 1),
                    latent_action: states.narrow(0, i, 1),
                    prefix_len: lens[i as usize],
                    logits: None,
                }
            })
            .collect())
    }
}
