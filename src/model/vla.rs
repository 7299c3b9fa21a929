//! The UniVLA VLM: fused vision backbone → projector → LLaMA-2, and the latent-action step the
//! reference's `predict_latent_action` performs: one prefill over
//! `[BOS, 256 projected patches, prompt ids[1:]]` plus three cached single-token steps, greedy or
//! sampled, EOS blocked; the final-norm hidden states at positions 0..255 (`visual_embed`: BOS +
//! the first 255 patches, the reference's off-by-one kept) and at the four positions whose logits
//! produced the four tokens (`latent_action`).
//!
//! The three decode steps run one of three ways ([`DecodeMode`]): with host-side positions
//! (`Dynamic`), or over fixed buffers with the position in a device tensor (`Fixed`: the same
//! kernels at every step, which is what lets `Graphs` record each step once as a CUDA graph and
//! replay it with one launch).
use tch::{Device, Kind, Tensor};

use super::checkpoint::CheckpointFiles;
use super::config::VlaConfig;
use super::cuda_graph::CudaGraph;
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

/// How the three single-token decode steps run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecodeMode {
    /// `Graphs` where CUDA graphs are available (a CUDA device and a build with the
    /// `cuda-graphs` feature), else `Dynamic`.
    #[default]
    Auto,
    /// Positions known on the host; attention reads the cache up to the current length.
    Dynamic,
    /// Fixed buffers, position in a device tensor, attention over the whole cache under a mask:
    /// capture-safe, run eagerly.
    Fixed,
    /// `Fixed`, each step recorded once as a CUDA graph and replayed (eager `Fixed` where
    /// graphs are unavailable).
    Graphs,
}

impl std::str::FromStr for DecodeMode {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "dynamic" => Ok(Self::Dynamic),
            "fixed" => Ok(Self::Fixed),
            "graphs" => Ok(Self::Graphs),
            other => Err(ModelError::Invalid(format!(
                "unknown decode mode `{other}`: use auto, dynamic, fixed or graphs"
            ))),
        }
    }
}

/// Reusable decoding state: rotary tables and the KV cache, allocated once per session, and the
/// fixed buffers and graphs of the device-position decode steps.
#[derive(Debug)]
pub struct DecodeState {
    rope: Rope,
    cache: KvCache,
    fixed: FixedBuffers,
    mode: DecodeMode,
    graphs: GraphSlot,
    vision: VisionSlot,
}

impl DecodeState {
    /// How the decode steps actually ran: `dynamic`, `fixed`, `graphs`, or `fixed` after a
    /// failed capture.
    pub fn effective_mode(&self) -> &'static str {
        match (self.mode, &self.graphs) {
            (DecodeMode::Graphs, GraphSlot::Ready(..)) => "graphs",
            (DecodeMode::Graphs, GraphSlot::Empty) => "graphs (not captured yet)",
            (DecodeMode::Graphs, GraphSlot::Failed) => "fixed (graph capture failed)",
            (DecodeMode::Fixed, _) => "fixed",
            _ => "dynamic",
        }
    }
}

/// The buffers a device-position decode step reads and writes, at fixed addresses: step `k`
/// reads token `k` and position `pos + k`, and writes the hidden state, logits and token `k + 1`.
#[derive(Debug)]
struct FixedBuffers {
    /// `arange(capacity)` (int64): the attention mask is `positions <= pos + k`.
    positions: Tensor,
    /// `[1]` int64: the position of token 0, i.e. the prefix length.
    pos: Tensor,
    /// `[1, 4]` int64.
    tokens: Tensor,
    /// `[1, 4, H]` in the model dtype: the state each token was chosen from.
    states: Tensor,
    /// `[4, V]` f32.
    logits: Tensor,
}

/// The vision towers and the projector as two CUDA graphs over a fixed input buffer (the image
/// size never changes within a session); their outputs are the tensors the capture produced,
/// which every replay rewrites in place.
#[derive(Debug, Default)]
enum VisionSlot {
    #[default]
    Empty,
    Ready {
        input: Tensor,
        /// Not read here, but the projector graph reads it: it must stay allocated.
        _features: Tensor,
        projected: Tensor,
        vision: CudaGraph,
        projector: CudaGraph,
    },
    Failed,
}

/// The captured decode-step graphs, for the decoding settings they were captured with.
#[derive(Debug, Default)]
enum GraphSlot {
    #[default]
    Empty,
    Ready(Decoding, Vec<CudaGraph>),
    /// Capture failed once (reason logged); eager `Fixed` from then on.
    Failed,
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

    /// Side in pixels of the square images the vision backbone takes (`image_sizes` in config.json).
    pub fn image_size(&self) -> i64 {
        self.vision.featurizer().config().img_size
    }

    /// Channels of `pixel_values` (3 per backbone).
    pub fn image_channels(&self) -> i64 {
        self.vision.num_channels()
    }

    /// The language model (the batched latent step drives it directly).
    pub fn llm(&self) -> &Llama {
        &self.llm
    }

    /// Image patches spliced into the prompt.
    pub fn num_patches(&self) -> i64 {
        self.vision.num_patches()
    }

    pub fn hidden_size(&self) -> i64 {
        self.cfg.text_config.hidden_size
    }

    /// A decoding state for sequences of up to `capacity` tokens (prefix + 4), decoding the
    /// `Auto` way; `capacity` must lie in 1..=max_position_embeddings.
    pub fn decode_state(&self, capacity: i64) -> Result<DecodeState> {
        self.decode_state_with(capacity, DecodeMode::Auto)
    }

    /// A decoding state whose decode steps run the `mode` way.
    pub fn decode_state_with(&self, capacity: i64, mode: DecodeMode) -> Result<DecodeState> {
        let (device, n) = (self.device, LATENT_TOKENS as i64);
        let mode = match mode {
            DecodeMode::Auto if self.device.is_cuda() && super::cuda_graph::COMPILED => DecodeMode::Graphs,
            DecodeMode::Auto => DecodeMode::Dynamic,
            other => other,
        };
        Ok(DecodeState {
            rope: Rope::new(&self.cfg.text_config, capacity, self.kind, device)?,
            cache: KvCache::new(&self.cfg.text_config, capacity, self.kind, device)?,
            fixed: FixedBuffers {
                positions: Tensor::f_arange(capacity, (Kind::Int64, device))?,
                pos: Tensor::f_zeros([1], (Kind::Int64, device))?,
                tokens: Tensor::f_zeros([1, n], (Kind::Int64, device))?,
                states: Tensor::f_zeros([1, n, self.hidden_size()], (self.kind, device))?,
                logits: Tensor::f_zeros([n, self.cfg.text_config.vocab_size], (Kind::Float, device))?,
            },
            mode,
            graphs: GraphSlot::Empty,
            vision: VisionSlot::Empty,
        })
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

    /// [`UniVla::encode_image`] within a session: in `Graphs` mode, the vision towers and the
    /// projector replay CUDA graphs captured on first use (eager if capture fails or the image
    /// shape changes). The result is the caller's own tensor.
    pub fn encode_image_in(
        &self,
        pixel_values: &Tensor,
        state: &mut DecodeState,
        obs: &mut dyn StageObserver,
    ) -> Result<Tensor> {
        if state.mode != DecodeMode::Graphs || matches!(state.vision, VisionSlot::Failed) {
            return self.encode_image(pixel_values, obs);
        }
        if let VisionSlot::Ready { input, .. } = &state.vision {
            if input.size() != pixel_values.size() {
                state.vision = VisionSlot::Empty;
            }
        }
        if matches!(state.vision, VisionSlot::Empty) {
            match self.capture_vision(pixel_values) {
                Ok(slot) => state.vision = slot,
                Err(e) => {
                    tracing::warn!("CUDA graphs unavailable for the vision towers, running them eagerly: {e}");
                    state.vision = VisionSlot::Failed;
                    return self.encode_image(pixel_values, obs);
                }
            }
        }
        let VisionSlot::Ready {
            input,
            projected,
            vision,
            projector,
            ..
        } = &mut state.vision
        else {
            return self.encode_image(pixel_values, obs);
        };
        input.f_copy_(&pixel_values.f_to_device(self.device)?.f_to_kind(self.kind)?)?;
        vision.replay()?;
        obs.stage_done("vision");
        projector.replay()?;
        obs.stage_done("projector");
        Ok(projected.copy())
    }

    fn capture_vision(&self, pixel_values: &Tensor) -> Result<VisionSlot> {
        let input = pixel_values.f_to_device(self.device)?.f_to_kind(self.kind)?.copy();
        let mut features = None;
        let vision = CudaGraph::capture(self.device, || {
            features = Some(self.vision.forward(&input)?);
            Ok(())
        })?;
        let features = features.ok_or_else(|| ModelError::Graph("the vision capture produced nothing".into()))?;
        let mut projected = None;
        let projector = CudaGraph::capture(self.device, || {
            projected = Some(self.projector.forward(&features)?);
            Ok(())
        })?;
        let projected = projected.ok_or_else(|| ModelError::Graph("the projector capture produced nothing".into()))?;
        Ok(VisionSlot::Ready {
            input,
            _features: features,
            projected,
            vision,
            projector,
        })
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
        let vocab = self.cfg.text_config.vocab_size;
        if let Some(id) = input_ids.iter().find(|id| !(0..vocab).contains(*id)) {
            return Err(ModelError::Invalid(format!(
                "prompt id {id} is outside the vocabulary (vocab_size {vocab})"
            )));
        }
        let patches = match projected.size().as_slice() {
            [1, p, h] if *h == self.hidden_size() => *p,
            other => {
                return Err(ModelError::Invalid(format!(
                    "projected patches must be [1, patches, {}], got {other:?}",
                    self.hidden_size()
                )))
            }
        };
        if patches < VISUAL_EMBED_POSITIONS {
            return Err(ModelError::Invalid(format!(
                "{patches} image patches; the action head needs at least {VISUAL_EMBED_POSITIONS}"
            )));
        }
        let prefix_len = patches + input_ids.len() as i64;
        let n_ids = input_ids.len() as i64;
        let needed = prefix_len + LATENT_TOKENS as i64 - 1;
        if needed > state.cache.capacity() {
            return Err(ModelError::Invalid(format!(
                "prompt of {} tokens needs {needed} positions, more than the {} this session holds",
                input_ids.len(),
                state.cache.capacity()
            )));
        }
        let ids = Tensor::f_from_slice(input_ids)?
            .f_to_device(self.device)?
            .f_view([1, -1])?;
        let embeds = Tensor::f_cat(
            &[
                self.llm.embed(&ids.f_narrow(1, 0, 1)?)?,
                projected.shallow_clone(),
                self.llm.embed(&ids.f_narrow(1, 1, n_ids - 1)?)?,
            ],
            1,
        )?;
        state.cache.reset();
        let hidden = self.llm.forward_embeds(&embeds, &state.rope, &mut state.cache, None)?;
        obs.stage_done("prefill");
        let eos = self.cfg.eos_ids();
        // Token 1 from the prefill's last position; each decode step then feeds the last token
        // in and chooses the next one from its logits.
        let last = hidden.f_narrow(1, prefix_len - 1, 1)?;
        let first_logits = self.llm.logits(&last).squeeze_dim(1);
        let first = decoding.next_token(&first_logits, &eos)?;
        let (generated, states, logits) = match state.mode {
            DecodeMode::Dynamic | DecodeMode::Auto => {
                obs.stage_done(DECODE_STAGES[0]);
                let mut states = vec![last];
                let mut logits = vec![first_logits];
                let mut tokens = vec![first];
                for stage in &DECODE_STAGES[1..] {
                    let input = match tokens.last() {
                        Some(t) => self.llm.embed(t)?,
                        None => return Err(ModelError::Invalid("no token to decode from".into())),
                    };
                    let h = self.llm.forward_embeds(&input, &state.rope, &mut state.cache, None)?;
                    let step_logits = self.llm.logits(&h).squeeze_dim(1);
                    tokens.push(decoding.next_token(&step_logits, &eos)?);
                    states.push(h);
                    if keep_logits {
                        logits.push(step_logits);
                    }
                    obs.stage_done(stage);
                }
                let logits = keep_logits.then(|| Tensor::cat(&logits, 0));
                (Tensor::f_cat(&tokens, 1)?, Tensor::f_cat(&states, 1)?, logits)
            }
            DecodeMode::Fixed | DecodeMode::Graphs => {
                let f = &mut state.fixed;
                let _ = f.pos.fill_(prefix_len);
                f.tokens.narrow(1, 0, 1).copy_(&first);
                f.states.narrow(1, 0, 1).copy_(&last);
                f.logits.narrow(0, 0, 1).copy_(&first_logits);
                obs.stage_done(DECODE_STAGES[0]);
                self.fixed_decode(decoding, state, obs)?;
                state.cache.advance(LATENT_TOKENS as i64 - 1);
                // Copies: the buffers are overwritten by the next step.
                let f = &state.fixed;
                let logits = keep_logits.then(|| f.logits.copy());
                (f.tokens.copy(), f.states.copy(), logits)
            }
        };
        // The only host sync of the step: read the 4 ids at the end.
        let generated = Vec::<i64>::try_from(generated.view([-1]).to_device(Device::Cpu))?;
        Ok(LatentOutput {
            generated,
            visual_embed: hidden.f_narrow(1, 0, VISUAL_EMBED_POSITIONS)?.f_to_kind(Kind::Float)?,
            latent_action: states.to_kind(Kind::Float),
            prefix_len,
            logits,
        })
    }

    /// The three device-position decode steps over `state.fixed`: replayed CUDA graphs in
    /// `Graphs` mode (captured on first use, and again when the decoding settings change), else
    /// eagerly. Reports each step to `obs`.
    fn fixed_decode(&self, decoding: Decoding, state: &mut DecodeState, obs: &mut dyn StageObserver) -> Result<()> {
        let steps = (LATENT_TOKENS - 1) as i64;
        let stale = !matches!(&state.graphs, GraphSlot::Ready(d, _) if *d == decoding);
        if state.mode == DecodeMode::Graphs && stale && !matches!(state.graphs, GraphSlot::Failed) {
            state.graphs = GraphSlot::Empty;
            let mut graphs = Vec::with_capacity(steps as usize);
            for k in 0..steps {
                // Capture runs the step once for real (warm-up) and then records it, so the
                // buffers already hold step k's results when step k + 1 is captured.
                match CudaGraph::capture(self.device, || self.fixed_step(k, decoding, state)) {
                    Ok(g) => graphs.push(g),
                    Err(e) => {
                        tracing::warn!("CUDA graphs unavailable, decoding eagerly: {e}");
                        state.graphs = GraphSlot::Failed;
                        // The buffers from the failed step on are recomputed eagerly.
                        for j in k..steps {
                            self.fixed_step(j, decoding, state)?;
                            obs.stage_done(DECODE_STAGES[j as usize + 1]);
                        }
                        return Ok(());
                    }
                }
                obs.stage_done(DECODE_STAGES[k as usize + 1]);
            }
            state.graphs = GraphSlot::Ready(decoding, graphs);
            return Ok(());
        }
        for k in 0..steps {
            match &state.graphs {
                GraphSlot::Ready(_, graphs) if state.mode == DecodeMode::Graphs => graphs[k as usize].replay()?,
                _ => self.fixed_step(k, decoding, state)?,
            }
            obs.stage_done(DECODE_STAGES[k as usize + 1]);
        }
        Ok(())
    }

    /// Decode step `k` (0..3) with the position on the device: token `k` at position `pos + k`
    /// in, hidden state, logits and token `k + 1` out, all in `state.fixed`.
    fn fixed_step(&self, k: i64, decoding: Decoding, state: &mut DecodeState) -> Result<()> {
        let DecodeState {
            rope, cache, fixed: f, ..
        } = state;
        let pos = &f.pos + k;
        let mask = f.positions.le_tensor(&pos).view([1, 1, 1, -1]);
        let input = self.llm.embed(&f.tokens.narrow(1, k, 1))?;
        let h = self.llm.forward_token_at(&input, &pos, &mask, rope, cache)?;
        let logits = self.llm.logits(&h).squeeze_dim(1);
        let next = decoding.next_token(&logits, &self.cfg.eos_ids())?;
        f.states.narrow(1, k + 1, 1).copy_(&h);
        f.logits.narrow(0, k + 1, 1).copy_(&logits);
        f.tokens.narrow(1, k + 1, 1).copy_(&next);
        Ok(())
    }
}

/// Stage names of the 4 token steps (the first comes from the prefill's logits).
pub const DECODE_STAGES: [&str; LATENT_TOKENS] = ["token1", "decode1", "decode2", "decode3"];
