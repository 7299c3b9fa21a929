//! The UniVLA VLM: fused vision backbone → projector → LLaMA-2, and the latent-action step the
//! reference's `predict_latent_action` performs: one prefill over
//! `[BOS, 256 projected patches, prompt ids[1:]]` plus three cached single-token steps, greedy or
//! sampled, EOS blocked; the final-norm hidden states at positions 0..255 (`visual_embed`: BOS +
//! the first 255 patches, the reference's off-by-one kept) and at the four positions whose logits
//! produced the four tokens (`latent_action`).
use tch::{Device, Kind, Tensor};

use super::checkpoint::CheckpointFiles;
use super::config::VlaConfig;
use super::error::{ModelError, Result};
use super::generate::Decoding;
use super::llama::{KvCache, Llama, Rope};
use super::projector::{Projector, ProjectorConfig};
use super::prompt::LATENT_TOKENS;
use super::vision::{FusedVisionBackbone, VisionConfig};
use super::weights::VarBuilder;

/// Number of leading sequence positions the action head reads as `visual_embed`.
pub const VISUAL_EMBED_POSITIONS: i64 = 256;

/// The VLM, weights loaded once on one device in one dtype.
#[derive(Debug)]
pub struct UniVla {
    vision: FusedVisionBackbone,
    projector: Projector,
    llm: Llama,
    cfg: VlaConfig,
    kind: Kind,
    device: Device,
}

/// Reusable decoding state: rotary tables and the KV cache, allocated once per session.
#[derive(Debug)]
pub struct DecodeState {
    rope: Rope,
    cache: KvCache,
}

/// What one latent-action step produces.
#[derive(Debug)]
pub struct LatentOutput {
    /// The 4 generated vocabulary ids.
    pub generated: Vec<i64>,
    /// `[1, 256, H]` f32.
    pub visual_embed: Tensor,
    /// `[1, 4, H]` f32.
    pub latent_action: Tensor,
    /// Prefix length of the first forward pass.
    pub prefix_len: i64,
    /// `[4, V]` f32 logits of the 4 decoding steps, when asked for.
    pub logits: Option<Tensor>,
}

/// Hook called after each stage with its name, so callers can time stages without the model
/// knowing about clocks.
pub trait StageObserver {
    fn stage_done(&mut self, stage: &'static str);
}

impl StageObserver for () {
    fn stage_done(&mut self, _: &'static str) {}
}

impl UniVla {
    pub fn new(vb: &VarBuilder, cfg: &VlaConfig) -> Result<Self> {
        let vision_cfg: VisionConfig = serde_json::from_value(cfg.raw.clone())
            .map_err(|e| ModelError::Config(format!("vision backbone fields of config.json: {e}")))?;
        let vision = FusedVisionBackbone::new(vb.pp("vision_backbone"), &vision_cfg)?;
        let projector_cfg = ProjectorConfig {
            vision_dim: vision.embed_dim(),
            llm_dim: cfg.text_config.hidden_size,
            fused: cfg
                .raw
                .get("arch_specifier")
                .and_then(|a| a.as_str())
                .is_none_or(|a| a.contains("fused")),
        };
        let projector = Projector::new(vb.pp("projector"), &projector_cfg)?;
        let llm = Llama::new(&vb.pp("language_model"), &cfg.text_config)?;
        Ok(Self {
            vision,
            projector,
            llm,
            cfg: cfg.clone(),
            kind: vb.kind(),
            device: vb.device(),
        })
    }

    /// Loads a checkpoint directory straight to `device` in `kind`, with a progress bar on
    /// stderr when `progress` is set.
    pub fn load(files: &CheckpointFiles, kind: Kind, device: Device, progress: bool) -> Result<Self> {
        let cfg = VlaConfig::from_file(&files.config)?;
        let mut vb = VarBuilder::from_safetensors(&files.weights, kind, device)?;
        if progress {
            let bar = indicatif::ProgressBar::new(vb.keys().len() as u64).with_message("loading weights");
            if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tensors ({eta})") {
                bar.set_style(style);
            }
            vb = vb.with_progress(bar);
        }
        Self::new(&vb, &cfg)
    }

    pub fn config(&self) -> &VlaConfig {
        &self.cfg
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Image patches spliced into the prompt.
    pub fn num_patches(&self) -> i64 {
        self.vision.num_patches()
    }

    pub fn hidden_size(&self) -> i64 {
        self.cfg.text_config.hidden_size
    }

    /// A decoding state for sequences of up to `capacity` tokens (prefix + 4).
    pub fn decode_state(&self, capacity: i64) -> DecodeState {
        DecodeState {
            rope: Rope::new(&self.cfg.text_config, capacity, self.kind, self.device),
            cache: KvCache::new(&self.cfg.text_config, capacity, self.kind, self.device),
        }
    }

    /// Patch features of `pixel_values` [1, 6, 224, 224] projected into the LM space [1, P, H].
    pub fn encode_image(&self, pixel_values: &Tensor, obs: &mut dyn StageObserver) -> Result<Tensor> {
        let pv = pixel_values.f_to_device(self.device)?.f_to_kind(self.kind)?;
        let features = self.vision.forward(&pv)?;
        obs.stage_done("vision");
        let projected = self.projector.forward(&features)?;
        obs.stage_done("projector");
        Ok(projected)
    }

    /// Generates the 4 latent tokens for projected patches and prompt ids (BOS first, `▁` last).
    pub fn latent_step(
        &self,
        projected: &Tensor,
        input_ids: &[i64],
        decoding: Decoding,
        state: &mut DecodeState,
        keep_logits: bool,
        obs: &mut dyn StageObserver,
    ) -> Result<LatentOutput> {
        if input_ids.len() < 2 {
            return Err(ModelError::Invalid(
                "prompt must hold BOS and at least one token".into(),
            ));
        }
        let patches = projected.size()[1];
        if patches < VISUAL_EMBED_POSITIONS {
            return Err(ModelError::Invalid(format!(
                "{patches} image patches; the action head needs at least {VISUAL_EMBED_POSITIONS}"
            )));
        }
        let prefix_len = patches + input_ids.len() as i64;
        let needed = prefix_len + LATENT_TOKENS as i64 - 1;
        if needed > state.cache.capacity() {
            return Err(ModelError::Invalid(format!(
                "prompt of {} tokens needs {needed} positions, more than the {} this session holds",
                input_ids.len(),
                state.cache.capacity()
            )));
        }
        let ids = Tensor::from_slice(input_ids).to_device(self.device).view([1, -1]);
        let embeds = Tensor::f_cat(
            &[
                self.llm.embed(&ids.narrow(1, 0, 1)),
                projected.shallow_clone(),
                self.llm.embed(&ids.narrow(1, 1, ids.size()[1] - 1)),
            ],
            1,
        )?;
        state.cache.reset();
        let hidden = self.llm.forward_embeds(&embeds, &state.rope, &mut state.cache, None)?;
        let eos = self.cfg.text_config.eos_token_id;
        let mut states = Vec::with_capacity(LATENT_TOKENS);
        let mut logits = Vec::with_capacity(LATENT_TOKENS);
        let mut tokens = Vec::with_capacity(LATENT_TOKENS);
        let mut last = hidden.narrow(1, prefix_len - 1, 1);
        obs.stage_done("prefill");
        for (step, stage) in DECODE_STAGES.iter().enumerate() {
            let step_logits = self.llm.logits(&last).squeeze_dim(1);
            let token = decoding.next_token(&step_logits, eos);
            states.push(last.shallow_clone());
            if keep_logits {
                logits.push(step_logits);
            }
            tokens.push(token.shallow_clone());
            if step + 1 < LATENT_TOKENS {
                last = self
                    .llm
                    .forward_embeds(&self.llm.embed(&token), &state.rope, &mut state.cache, None)?;
            }
            obs.stage_done(stage);
        }
        // The only host sync of the step: read the 4 ids at the end.
        let generated = Vec::<i64>::try_from(Tensor::f_cat(&tokens, 1)?.view([-1]).to_device(Device::Cpu))?;
        Ok(LatentOutput {
            generated,
            visual_embed: hidden.narrow(1, 0, VISUAL_EMBED_POSITIONS).to_kind(Kind::Float),
            latent_action: Tensor::f_cat(&states, 1)?.to_kind(Kind::Float),
            prefix_len,
            logits: keep_logits.then(|| Tensor::cat(&logits, 0)),
        })
    }
}

/// Stage names of the 4 token steps (the first comes from the prefill's logits).
pub const DECODE_STAGES: [&str; LATENT_TOKENS] = ["token1", "decode1", "decode2", "decode3"];
