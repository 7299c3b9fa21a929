//! Latent-action accuracy of a replay (the metric the reference logs during fine-tuning): the
//! policy's `<ACT_i>` tokens at step t against the LAM's label of the recorded (o_t, o_{t+k}).
//!
//! Labeling is a second streaming pass over the camera topic, so memory stays bounded by the
//! LAM's window of k + 1 frame features (plus one small label per frame).
use std::path::{Path, PathBuf};

use clap::Args;

use super::image::CameraKind;
use super::metrics::latent_code;
use super::reader::BagReader;
use super::replay::{BagTopics, EpisodeTrace};
use super::BagError;
use crate::lam::checkpoint::load_model;
use crate::lam::label::{frame_interval, parse_device, DEFAULT_BATCH};
use crate::lam::score_steps;
use crate::lam::{LamConfig, LamDataset, LatentActionAccuracy, LatentActionModel, SequenceLabeler, StepLabel};

/// Code given to a policy token that is not an `<ACT_i>` (never equal to a LAM code).
const NOT_A_CODE: i64 = -1;

/// The `--lam*` arguments of `univla eval-bag`.
#[derive(Debug, Clone, Args)]
pub struct LamArgs {
    /// LAM checkpoint (safetensors or Lightning .ckpt): score the policy's latent tokens against
    /// the LAM labels of the recorded frames.
    #[arg(id = "lam", long = "lam", value_name = "CHECKPOINT")]
    pub lam_checkpoint: Option<PathBuf>,
    /// LAM frame interval k: step t is scored against the label of (o_t, o_{t+k}).
    #[arg(long, value_name = "K", conflicts_with = "lam_dataset", requires = "lam")]
    pub lam_interval: Option<usize>,
    /// Take k from the benchmark (11 LIBERO/CALVIN, 3 R2R, W-1 real world).
    #[arg(long, value_enum, requires = "lam")]
    pub lam_dataset: Option<LamDataset>,
    /// Real-world action chunk W (with `--lam-dataset realworld`).
    #[arg(long, value_name = "W")]
    pub lam_window: Option<usize>,
    /// LAM encoder attention heads (default: width/64).
    #[arg(long)]
    pub lam_encoder_heads: Option<i64>,
    /// LAM DINOv2 attention heads (default: width/64).
    #[arg(long)]
    pub lam_dino_heads: Option<i64>,
    /// Frame pairs per LAM encoder batch.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub lam_batch: usize,
    /// Torch device of the LAM: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    pub lam_device: String,
}

impl LamArgs {
    /// The frame interval the arguments select.
    pub fn resolve_interval(&self) -> Result<usize, BagError> {
        match (self.lam_interval, self.lam_dataset) {
            (Some(0), _) => Err(BagError::Config("--lam-interval must be at least 1".into())),
            (Some(k), _) => Ok(k),
            (None, Some(d)) => Ok(frame_interval(d, self.lam_window)?),
            (None, None) => Err(BagError::Config("--lam needs --lam-interval K or --lam-dataset".into())),
        }
    }

    /// Loads the LAM when `--lam` is given.
    pub fn scorer(&self) -> Result<Option<LamScorer>, BagError> {
        let Some(path) = &self.lam_checkpoint else {
            return Ok(None);
        };
        let interval = self.resolve_interval()?;
        if self.lam_batch == 0 {
            return Err(BagError::Config("--lam-batch must be at least 1".into()));
        }
        let cfg = LamConfig {
            encoder_heads: self.lam_encoder_heads,
            dino_heads: self.lam_dino_heads,
            ..LamConfig::default()
        };
        let model = load_model(path, &cfg, parse_device(&self.lam_device)?)?;
        Ok(Some(LamScorer::new(model, interval, self.lam_batch)))
    }
}

/// A loaded LAM with its frame interval: labels bags and scores replays.
pub struct LamScorer {
    model: LatentActionModel,
    interval: usize,
    batch: usize,
}

impl LamScorer {
    pub fn new(model: LatentActionModel, interval: usize, batch: usize) -> Self {
        Self { model, interval, batch }
    }

    pub fn interval(&self) -> usize {
        self.interval
    }

    /// LAM labels of the camera frames of `bag`, indexed like the replay's frames (the first
    /// `max_frames` camera messages). A frame that does not decode has no label, and neither
    /// do pairs that span it.
    pub fn label_bag(
        &self,
        bag: &Path,
        topics: &BagTopics,
        max_frames: Option<usize>,
    ) -> Result<Vec<StepLabel>, BagError> {
        let reader = BagReader::open(bag)?;
        let info = reader.require_topic(&topics.camera)?;
        let kind = CameraKind::of_topic(&topics.camera, &info.type_name)?;
        let mut labels = Vec::new();
        // Frames are labeled in runs of decodable frames; `start` is the bag index of the run's first.
        let mut start = 0;
        let mut labeler = self.labeler()?;
        for (frame, item) in reader.messages(&[topics.camera.as_str()])?.enumerate() {
            if max_frames.is_some_and(|m| frame >= m) {
                break;
            }
            let msg = item?;
            match kind.decode_rgb(&msg, crate::runtime::preprocess::DEFAULT_MAX_PIXELS) {
                Ok(rgb) => labels.extend(shifted(labeler.push(rgb)?, start)),
                Err(e) => {
                    tracing::warn!("LAM labeling, frame {frame}: {e}");
                    let done = std::mem::replace(&mut labeler, self.labeler()?);
                    labels.extend(shifted(done.finish()?, start));
                    start = frame + 1;
                }
            }
        }
        labels.extend(shifted(labeler.finish()?, start));
        Ok(labels)
    }

    /// Scores every policy query of `trace` against `labels` (queries without a label, the last
    /// k frames, are not counted).
    pub fn score(&self, trace: &EpisodeTrace, labels: &[StepLabel]) -> LatentActionAccuracy {
        let predicted: Vec<(usize, Vec<i64>)> = trace
            .queries
            .iter()
            .map(|q| {
                let codes = q
                    .latent_ids
                    .iter()
                    .map(|&id| latent_code(id).map_or(NOT_A_CODE, |c| c as i64))
                    .collect();
                (q.frame, codes)
            })
            .collect();
        score_steps(&predicted, labels)
    }

    fn labeler(&self) -> Result<SequenceLabeler<'_>, BagError> {
        Ok(SequenceLabeler::new(&self.model, self.interval, self.batch)?)
    }
}

/// Labels of a run that starts at bag frame `start`, in bag frame indices.
fn shifted(labels: Vec<StepLabel>, start: usize) -> impl Iterator<Item = StepLabel> {
    labels.into_iter().map(move |mut l| {
        l.step += start;
        l.target_step += start;
        l
    })
}
