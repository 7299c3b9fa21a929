//! The policy session the nodes, `univla infer` and the bag evaluator share.
//!
//! [`Policy`] holds what is loaded once (VLM, action head, tokenizer, image processor,
//! post-processing); [`Session`] holds one episode's state (instruction, latent-token history, KV
//! cache, ensemble buffer). `Session::step` is one control step: preprocess → vision → projector
//! → prefill → 3 cached decode steps → head → ensembling/queueing → post-processing.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};

use crate::model::checkpoint::CheckpointFiles;
use crate::model::generate::Decoding;
use crate::model::heads::{ActionHead, HeadKind};
use crate::model::prompt::{build_prompt, extract_latent_ids, history_string, PromptStyle, PromptTokenizer};
use crate::model::vla::{DecodeMode, DecodeState, StageObserver, UniVla};
use crate::model::ModelError;
use crate::runtime::ensemble::{EnsembleError, OpenLoopQueue, TemporalEnsembler, REAL_WORLD_TEMPORAL_SIZE};
use crate::runtime::postprocess::{Action, PostProcessError, PostProcessor, Preset};
use crate::runtime::preprocess::{ImageProcessor, PreprocessError, ResizeMethod, RgbImage};
use crate::runtime::stats::{DatasetStatistics, StatsError, ZScoreStats};

/// Room for prompt tokens beyond the image patches; longer instructions are rejected.
pub const DEFAULT_MAX_PROMPT_TOKENS: i64 = 256;

/// Ids the R2R evaluation accepts as history (its ACT string table has 32 entries).
const R2R_HISTORY_IDS: std::ops::Range<i64> = 32001..32033;

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error(transparent)]
    Stats(#[from] StatsError),
    #[error(transparent)]
    PostProcess(#[from] PostProcessError),
    #[error(transparent)]
    Ensemble(#[from] EnsembleError),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// How chunks become executed actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Execution {
    /// Query every step; temporal ensemble over the last N chunks (the reference's default).
    Ensemble,
    /// Execute each chunk open-loop; re-plan when it runs out, or every `replan_every` steps.
    OpenLoop { replan_every: Option<usize> },
}

/// Everything needed to load a policy.
#[derive(Clone, Debug)]
pub struct PolicyOptions {
    pub checkpoint: PathBuf,
    pub decoder: PathBuf,
    pub device: Device,
    pub dtype: Kind,
    pub decoding: Decoding,
    /// Seeds libtorch's generator for sampling (`None`: nondeterministic).
    pub seed: Option<i64>,
    /// Deployment conventions; `None`: the reference's for the head found in `decoder`.
    pub preset: Option<Preset>,
    /// Dataset key in `dataset_statistics.json` (LIBERO/Bridge).
    pub unnorm_key: Option<String>,
    /// Real-world z-score statistics (YAML/JSON), to un-normalise real-world head outputs and
    /// normalise proprio.
    pub realworld_stats: Option<PathBuf>,
    pub execution: Execution,
    /// Ensemble size; `None`: the `temporal_size` recorded with the head, else the reference's
    /// for the preset and the head's window ([`default_temporal_size`]).
    pub temporal_size: Option<usize>,
    /// `None`: the reference's for the preset.
    pub prompt_style: Option<PromptStyle>,
    pub resize: ResizeMethod,
    /// Progress bar while loading weights.
    pub progress: bool,
    pub max_prompt_tokens: i64,
    /// How the decode steps run (CUDA graphs where available by default).
    pub decode: DecodeMode,
}

impl PolicyOptions {
    pub fn new(checkpoint: impl Into<PathBuf>, decoder: impl Into<PathBuf>) -> Self {
        Self {
            checkpoint: checkpoint.into(),
            decoder: decoder.into(),
            device: Device::Cpu,
            dtype: Kind::Float,
            decoding: Decoding::reference_sampling(),
            seed: None,
            preset: None,
            unnorm_key: None,
            realworld_stats: None,
            execution: Execution::Ensemble,
            temporal_size: None,
            prompt_style: None,
            resize: ResizeMethod::default(),
            progress: false,
            max_prompt_tokens: DEFAULT_MAX_PROMPT_TOKENS,
            decode: DecodeMode::Auto,
        }
    }
}

/// The reference's ensemble size for a head of `window` steps: the whole chunk
/// (`temporal_size = window_size` in the LIBERO, Bridge and R2R evaluations, so 12, 10 and 4 for
/// the released heads), except the real-world deployment, which ensembles the last
/// [`REAL_WORLD_TEMPORAL_SIZE`] steps of its chunk (all of a shorter one).
pub fn default_temporal_size(preset: Preset, window: usize) -> usize {
    match preset {
        Preset::RealWorld => REAL_WORLD_TEMPORAL_SIZE.min(window),
        Preset::Libero | Preset::Bridge | Preset::R2r | Preset::Calvin => window,
    }
}

/// The reference's prompt history convention for a preset.
pub fn default_prompt_style(preset: Preset) -> PromptStyle {
    match preset {
        Preset::R2r => PromptStyle::R2rListRepr,
        Preset::Bridge | Preset::Calvin => PromptStyle::NoHistory,
        Preset::Libero | Preset::RealWorld => PromptStyle::Standard,
    }
}

/// A loaded policy; share it between sessions with `Arc`.
pub struct Policy {
    vla: UniVla,
    head: ActionHead,
    tokenizer: PromptTokenizer,
    processor: ImageProcessor,
    post: PostProcessor,
    zscore: Option<ZScoreStats>,
    preset: Preset,
    style: PromptStyle,
    temporal_size: usize,
    opts: PolicyOptions,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("preset", &self.preset)
            .field("head", &self.head.kind())
            .finish()
    }
}

impl Policy {
    pub fn load(opts: PolicyOptions) -> Result<Arc<Self>> {
        let files = CheckpointFiles::locate(&opts.checkpoint)?;
        let span = tracing::info_span!("load_policy", checkpoint = %opts.checkpoint.display());
        let _g = span.enter();
        let vla = tch::no_grad(|| UniVla::load(&files, opts.dtype, opts.device, opts.progress))?;
        let head = ActionHead::load(&opts.decoder, opts.device)?;
        if head.vis_dim() != vla.hidden_size() {
            return Err(RuntimeError::Invalid(format!(
                "{}: head expects {}-wide hidden states, the LM produces {}",
                opts.decoder.display(),
                head.vis_dim(),
                vla.hidden_size()
            )));
        }
        let tokenizer = PromptTokenizer::from_file(&files.tokenizer)?;
        let processor = match &files.preprocessor {
            Some(p) => ImageProcessor::from_config_file(p)?,
            None => {
                return Err(RuntimeError::Invalid(format!(
                    "{}: preprocessor_config.json is missing",
                    files.dir.display()
                )))
            }
        }
        .with_resize_method(opts.resize);
        let (crop_h, crop_w) = processor.output_size();
        let side = vla.image_size();
        if i64::from(crop_h) != side
            || i64::from(crop_w) != side
            || processor.num_channels() as i64 != vla.image_channels()
        {
            return Err(RuntimeError::Invalid(format!(
                "{}: tvf_crop_params output {crop_h}x{crop_w} with {} channels does not fit the vision backbone \
                 of config.json ({side}x{side} px, {} channels)",
                files.preprocessor.as_deref().unwrap_or(files.dir.as_path()).display(),
                processor.num_channels(),
                vla.image_channels()
            )));
        }
        let preset = opts.preset.unwrap_or_else(|| Preset::for_head(head.kind()));
        check_preset(preset, head.kind())?;
        let bounds = match preset {
            Preset::Libero | Preset::Bridge => {
                let stats = match &files.dataset_statistics {
                    Some(p) => DatasetStatistics::from_file(p)?,
                    None => match &vla.config().norm_stats {
                        Some(v) => DatasetStatistics::from_value(files.config.display().to_string(), v.clone())?,
                        None => {
                            return Err(RuntimeError::Invalid(format!(
                                "{}: no dataset_statistics.json and no norm_stats in config.json",
                                files.dir.display()
                            )))
                        }
                    },
                };
                Some(stats.action_bounds(opts.unnorm_key.as_deref())?)
            }
            _ => None,
        };
        let zscore = opts
            .realworld_stats
            .as_deref()
            .map(ZScoreStats::from_file)
            .transpose()?;
        let post = PostProcessor::new(preset, bounds, zscore.clone())?.with_action_dim(head.action_dim() as usize)?;
        let window = head.window() as usize;
        let temporal_size = opts
            .temporal_size
            .or_else(|| head.temporal_size().map(|n| n as usize))
            .unwrap_or_else(|| default_temporal_size(preset, window));
        if temporal_size == 0 || temporal_size > window {
            return Err(RuntimeError::Invalid(format!(
                "temporal ensemble size {temporal_size} must be between 1 and the chunk length {window}"
            )));
        }
        // Only the real-world deployment ensembles part of a chunk (its last rows); the others
        // ensemble whole chunks, so their size is the window.
        if preset != Preset::RealWorld && opts.execution == Execution::Ensemble && temporal_size != window {
            return Err(RuntimeError::Invalid(format!(
                "temporal ensemble size {temporal_size} differs from the {window}-step chunks of this \
                 {preset:?} head; only the real-world preset ensembles the last rows of a chunk"
            )));
        }
        let style = opts.prompt_style.unwrap_or_else(|| default_prompt_style(preset));
        if let Some(seed) = opts.seed {
            tch::manual_seed(seed);
        }
        tracing::info!(head = ?head.kind(), ?preset, window, temporal_size, "policy loaded");
        Ok(Arc::new(Self {
            vla,
            head,
            tokenizer,
            processor,
            post,
            zscore,
            preset,
            style,
            temporal_size,
            opts,
        }))
    }

    pub fn head(&self) -> &ActionHead {
        &self.head
    }

    pub fn vla(&self) -> &UniVla {
        &self.vla
    }

    pub fn preset(&self) -> Preset {
        self.preset
    }

    pub fn prompt_style(&self) -> PromptStyle {
        self.style
    }

    pub fn options(&self) -> &PolicyOptions {
        &self.opts
    }

    pub fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    pub fn post_processor(&self) -> &PostProcessor {
        &self.post
    }

    /// Ensemble size N the sessions use: how many chunks are averaged per step (the whole
    /// chunk's window for LIBERO, Bridge and R2R heads; the real-world head's last rows).
    pub fn temporal_size(&self) -> usize {
        self.temporal_size
    }

    /// Steps per chunk of the loaded head (from its weights or config).
    pub fn window(&self) -> usize {
        self.head.window() as usize
    }

    /// Values per chunk step of the loaded head (from its weights or config).
    pub fn action_dim(&self) -> usize {
        self.head.action_dim() as usize
    }
}

// SAFETY: a `Policy` is immutable after loading: its tensors are weights that are only read,
// and libtorch supports concurrent forward passes over shared read-only tensors (as tch's
// `CModule` is `Sync`). Per-episode mutable state (KV cache, ensemble) lives in `Session`.
unsafe impl Sync for Policy {}

fn check_preset(preset: Preset, kind: HeadKind) -> Result<()> {
    let ok = matches!(
        (preset, kind),
        (Preset::R2r, HeadKind::R2r)
            | (Preset::RealWorld, HeadKind::RealWorld)
            | (Preset::Libero | Preset::Bridge | Preset::Calvin, HeadKind::Libero)
    );
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Invalid(format!(
            "post-processing preset {preset:?} does not fit a {kind:?} action head"
        )))
    }
}

/// Wall time of each stage of one step.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StageTimings {
    pub stages: Vec<(&'static str, Duration)>,
}

impl StageTimings {
    pub fn total(&self) -> Duration {
        self.stages.iter().map(|(_, d)| *d).sum()
    }

    pub fn get(&self, stage: &str) -> Option<Duration> {
        self.stages.iter().find(|(s, _)| *s == stage).map(|(_, d)| *d)
    }
}

/// Records stage boundaries; on CUDA it synchronises first when asked, so times are real.
pub(crate) struct Clock {
    last: Instant,
    pub(crate) timings: StageTimings,
    sync: Option<i64>,
}

impl Clock {
    pub(crate) fn new(device: Device, sync: bool) -> Self {
        let sync = match device {
            Device::Cuda(i) if sync => Some(i as i64),
            _ => None,
        };
        Self {
            last: Instant::now(),
            timings: StageTimings::default(),
            sync,
        }
    }
}

impl StageObserver for Clock {
    fn stage_done(&mut self, stage: &'static str) {
        if let Some(i) = self.sync {
            tch::Cuda::synchronize(i);
        }
        let now = Instant::now();
        self.timings.stages.push((stage, now - self.last));
        self.last = now;
    }
}

/// What the model inferred in one step.
#[derive(Clone, Debug)]
pub struct Inference {
    pub prompt: String,
    /// What the LM receives (BOS … `▁`).
    pub input_ids: Vec<i64>,
    /// The 4 latent-action vocabulary ids (`<ACT_i>` = 32001 + i).
    pub latent_ids: Vec<i64>,
    /// The head's raw chunk, `window` rows of `action_dim` (R2R: softmax probabilities).
    pub chunk: Vec<Vec<f64>>,
}

/// One control step's outcome.
#[derive(Clone, Debug)]
pub struct StepOutput {
    /// `None` when an open-loop chunk was still executing and the model was not queried.
    pub inference: Option<Inference>,
    /// The value fed to post-processing (ensembled or queued).
    pub pre_action: Vec<f64>,
    /// What goes to the robot.
    pub action: Action,
    pub timings: StageTimings,
}

enum Executor {
    Ensemble(TemporalEnsembler),
    OpenLoop(OpenLoopQueue),
}

/// A small seeded generator (SplitMix64) for an episode that samples on its own, apart from
/// libtorch's process-wide one: a server's sessions must not draw from each other's streams.
#[derive(Clone, Debug)]
pub struct EpisodeRng(u64);

impl EpisodeRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `n` Exp(1) variates (`-ln u`, `u` uniform in (0, 1]), the draw `exponential_` makes.
    pub fn exponential(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u = ((self.next_u64() >> 40) + 1) as f64 / (1u64 << 24) as f64;
                -(u.ln()) as f32
            })
            .collect()
    }
}

/// One episode's state apart from the model: instruction, latent-token history, ensemble buffer
/// or open-loop queue, step count and, where it samples on its own, its generator. A server keeps
/// one per connection and runs many through one batched model call.
pub struct Episode {
    instruction: String,
    history: String,
    executor: Executor,
    steps: u64,
    rng: Option<EpisodeRng>,
}

impl std::fmt::Debug for Episode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Episode")
            .field("instruction", &self.instruction)
            .field("steps", &self.steps)
            .finish()
    }
}

impl Episode {
    pub fn new(policy: &Policy) -> Result<Self> {
        let dim = policy.head.action_dim() as usize;
        let executor = match policy.opts.execution {
            Execution::Ensemble if policy.preset == Preset::RealWorld => {
                Executor::Ensemble(TemporalEnsembler::with_tail(policy.temporal_size, dim)?)
            }
            Execution::Ensemble => Executor::Ensemble(TemporalEnsembler::new(policy.temporal_size, dim)?),
            Execution::OpenLoop { replan_every } => Executor::OpenLoop(OpenLoopQueue::new(replan_every)),
        };
        Ok(Self {
            instruction: String::new(),
            history: String::new(),
            executor,
            steps: 0,
            rng: None,
        })
    }

    /// Samples with its own generator (batched serving) instead of libtorch's.
    pub fn with_rng(mut self, rng: EpisodeRng) -> Self {
        self.rng = Some(rng);
        self
    }

    /// Starts a new episode: new instruction, empty history, empty ensemble/queue (the generator
    /// runs on).
    pub fn reset(&mut self, instruction: &str) {
        self.instruction = instruction.to_owned();
        self.history.clear();
        self.steps = 0;
        match &mut self.executor {
            Executor::Ensemble(e) => e.reset(),
            Executor::OpenLoop(q) => q.reset(),
        }
    }

    pub fn instruction(&self) -> &str {
        &self.instruction
    }

    /// The latent-token history that the next prompt will carry.
    pub fn history(&self) -> &str {
        &self.history
    }

    /// Steps taken since the last reset.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Whether the next step queries the model (always when ensembling).
    pub fn needs_plan(&self) -> bool {
        match &self.executor {
            Executor::Ensemble(_) => true,
            Executor::OpenLoop(q) => q.needs_plan(),
        }
    }

    pub(crate) fn rng_mut(&mut self) -> Option<&mut EpisodeRng> {
        self.rng.as_mut()
    }

    /// The next prompt's history, as the reference keeps it.
    pub(crate) fn record(&mut self, style: PromptStyle, latent_ids: &[i64], generated: &[i64]) {
        self.history = match style {
            PromptStyle::NoHistory => String::new(),
            // R2R clears the history when any generated id is not one of the codebook tokens.
            PromptStyle::R2rListRepr if !generated.iter().all(|id| R2R_HISTORY_IDS.contains(id)) => String::new(),
            _ => history_string(latent_ids).unwrap_or_default(),
        };
    }

    /// Feeds this step's chunk (if the model ran) to the ensemble or queue, post-processes the
    /// result and counts the step: `(pre_action, action)`.
    pub(crate) fn advance(&mut self, policy: &Policy, inference: Option<&Inference>) -> Result<(Vec<f64>, Action)> {
        let pre_action = match (&mut self.executor, inference) {
            (Executor::Ensemble(e), Some(inf)) => e.push(&inf.chunk.concat())?,
            (Executor::OpenLoop(q), inf) => {
                if let Some(inf) = inf {
                    q.load(&inf.chunk.concat(), policy.head.action_dim() as usize)?;
                }
                q.pop()
                    .ok_or_else(|| RuntimeError::Invalid("open-loop queue is empty after planning".into()))?
            }
            (Executor::Ensemble(_), None) => {
                return Err(RuntimeError::Invalid("ensemble step without inference".into()))
            }
        };
        let action = policy.post.apply(&pre_action)?;
        self.steps += 1;
        Ok((pre_action, action))
    }
}

impl Policy {
    /// Rows of KV cache a sequence needs: image patches, the longest allowed prompt and the
    /// generated tokens, within the LM's position limit.
    pub(crate) fn sequence_capacity(&self) -> i64 {
        self.vla
            .config()
            .text_config
            .max_position_embeddings
            .min(self.vla.num_patches() + self.opts.max_prompt_tokens + crate::model::prompt::LATENT_TOKENS as i64)
    }

    /// The prompt for an episode's next step and its ids, refused when too long.
    pub(crate) fn prompt_ids(&self, episode: &Episode) -> Result<(String, Vec<i64>)> {
        let prompt = build_prompt(&episode.instruction, &episode.history, self.style);
        let input_ids = self.tokenizer.encode(&prompt)?;
        if input_ids.len() as i64 > self.opts.max_prompt_tokens {
            return Err(RuntimeError::Invalid(format!(
                "instruction too long: the prompt has {} tokens, at most {} are allowed",
                input_ids.len(),
                self.opts.max_prompt_tokens
            )));
        }
        Ok((prompt, input_ids))
    }

    /// The head's proprio input `[1, D]` (z-scored when statistics were given), or `None` for
    /// heads without one; refused when missing or of the wrong length.
    pub(crate) fn proprio_tensor(&self, proprio: Option<&[f64]>) -> Result<Option<Tensor>> {
        match (self.head.needs_proprio(), proprio) {
            (false, _) => Ok(None),
            (true, None) => Err(RuntimeError::Invalid(
                "the real-world head needs proprio (joint positions)".into(),
            )),
            (true, Some(q)) => {
                let expected = self.head.proprio_dim().unwrap_or(q.len() as i64) as usize;
                if q.len() != expected {
                    return Err(RuntimeError::Invalid(format!(
                        "proprio has {} values, the head expects {expected}",
                        q.len()
                    )));
                }
                let q = match &self.zscore {
                    Some(z) => z.normalize_proprio(q).ok_or_else(|| {
                        RuntimeError::Invalid("proprio length does not match the qpos statistics".into())
                    })?,
                    None => q.to_vec(),
                };
                let v: Vec<f32> = q.iter().map(|&x| x as f32).collect();
                Ok(Some(Tensor::from_slice(&v).view([1, -1]).to_device(self.opts.device)))
            }
        }
    }

    /// The head's raw chunk (`window` rows of `action_dim`) for one sequence's hidden states.
    pub(crate) fn head_chunk(
        &self,
        visual_embed: &Tensor,
        latent_action: &Tensor,
        proprio: Option<&Tensor>,
    ) -> Result<Vec<Vec<f64>>> {
        let head_out = self.head.forward(visual_embed, latent_action, proprio)?;
        let flat = head_out.chunk_f64()?;
        let dim = self.head.action_dim() as usize;
        Ok(flat.chunks(dim).map(<[f64]>::to_vec).collect())
    }
}

/// One episode with a policy.
pub struct Session {
    policy: Arc<Policy>,
    state: DecodeState,
    episode: Episode,
    sync_timing: bool,
}

impl Session {
    /// How the decode steps ran so far (see [`DecodeState::effective_mode`]).
    pub fn decode_mode(&self) -> &'static str {
        self.state.effective_mode()
    }

    pub fn new(policy: Arc<Policy>) -> Result<Self> {
        let state = policy
            .vla
            .decode_state_with(policy.sequence_capacity(), policy.opts.decode)?;
        let episode = Episode::new(&policy)?;
        Ok(Self {
            policy,
            state,
            episode,
            sync_timing: false,
        })
    }

    /// Synchronise the device at stage boundaries so timings are exact (benchmarks).
    pub fn set_sync_timing(&mut self, on: bool) {
        self.sync_timing = on;
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Starts a new episode: new instruction, empty history, empty ensemble/queue.
    pub fn reset(&mut self, instruction: &str) {
        self.episode.reset(instruction);
    }

    pub fn instruction(&self) -> &str {
        self.episode.instruction()
    }

    /// The latent-token history that the next prompt will carry.
    pub fn history(&self) -> &str {
        self.episode.history()
    }

    pub fn steps(&self) -> u64 {
        self.episode.steps()
    }

    /// One control step on a camera image; `proprio` is required by the real-world head (raw
    /// joint positions; z-scored here when statistics were given).
    pub fn step(&mut self, image: &RgbImage, proprio: Option<&[f64]>) -> Result<StepOutput> {
        let _span = tracing::debug_span!("policy_step", step = self.episode.steps()).entered();
        let mut clock = Clock::new(self.policy.opts.device, self.sync_timing);
        let inference = if self.episode.needs_plan() {
            Some(tch::no_grad(|| self.infer(image, proprio, &mut clock))?)
        } else {
            None
        };
        let (pre_action, action) = self.episode.advance(&self.policy, inference.as_ref())?;
        clock.stage_done("postprocess");
        Ok(StepOutput {
            inference,
            pre_action,
            action,
            timings: clock.timings,
        })
    }

    fn infer(&mut self, image: &RgbImage, proprio: Option<&[f64]>, clock: &mut Clock) -> Result<Inference> {
        let p = Arc::clone(&self.policy);
        let pixel_values = p.processor.pixel_values(image)?;
        clock.stage_done("preprocess");
        let projected = p.vla.encode_image_in(&pixel_values, &mut self.state, clock)?;
        let (prompt, input_ids) = p.prompt_ids(&self.episode)?;
        let out = p
            .vla
            .latent_step(&projected, &input_ids, p.opts.decoding, &mut self.state, false, clock)?;
        let latent_ids = extract_latent_ids(&input_ids, &out.generated);
        self.episode.record(p.style, &latent_ids, &out.generated);
        let proprio_t = p.proprio_tensor(proprio)?;
        let chunk = p.head_chunk(&out.visual_embed, &out.latent_action, proprio_t.as_ref())?;
        clock.stage_done("head");
        Ok(Inference {
            prompt,
            input_ids,
            latent_ids,
            chunk,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ensemble_spans_the_head_window() {
        // The released windows give the reference's sizes.
        assert_eq!(default_temporal_size(Preset::Libero, 12), 12);
        assert_eq!(default_temporal_size(Preset::Bridge, 10), 10);
        assert_eq!(default_temporal_size(Preset::R2r, 4), 4);
        assert_eq!(default_temporal_size(Preset::RealWorld, 12), REAL_WORLD_TEMPORAL_SIZE);
        // Other windows: the whole chunk (the real-world head: at most its last 8 rows).
        assert_eq!(default_temporal_size(Preset::R2r, 5), 5);
        assert_eq!(default_temporal_size(Preset::Libero, 14), 14);
        assert_eq!(default_temporal_size(Preset::Bridge, 12), 12);
        assert_eq!(default_temporal_size(Preset::RealWorld, 5), 5);
        assert_eq!(default_temporal_size(Preset::RealWorld, 16), REAL_WORLD_TEMPORAL_SIZE);
    }
}
