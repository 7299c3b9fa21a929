//! Labels a frame stream: every pair (o_t, o_{t+k}) gets its latent action. DINOv2 runs once
//! per frame (features of the last k+1 frames are kept), the encoder runs on batches of pairs.
//! Frames come from any iterator (an image folder now, a rosbag2 camera topic later).
use std::collections::VecDeque;

use serde::Serialize;
use tch::Tensor;

use super::error::{LamError, Result};
use super::model::{latent_actions, LatentAction, LatentActionModel};
use super::preprocess::frames_to_tensor;
use crate::runtime::preprocess::RgbImage;

/// The latent action from frame `step` to frame `target_step` = step + interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepLabel {
    pub step: usize,
    pub target_step: usize,
    #[serde(flatten)]
    pub action: LatentAction,
}

/// Incremental labeler: [`push`](Self::push) frames in order, then [`finish`](Self::finish).
pub struct SequenceLabeler<'m> {
    model: &'m LatentActionModel,
    interval: usize,
    batch_size: usize,
    /// Frames waiting for DINOv2, already resized.
    raw: Vec<RgbImage>,
    /// DINO features of the most recent frames (at most interval + 1), oldest first.
    recent: VecDeque<Tensor>,
    /// Frames that went through DINOv2 so far.
    seen: usize,
    /// Pairs (t, features_t, features_t+k) waiting for the encoder.
    pairs: Vec<(usize, Tensor, Tensor)>,
}

impl<'m> SequenceLabeler<'m> {
    pub fn new(model: &'m LatentActionModel, interval: usize, batch_size: usize) -> Result<Self> {
        if interval == 0 || batch_size == 0 {
            return Err(LamError::Input(format!(
                "interval ({interval}) and batch size ({batch_size}) must be ≥ 1"
            )));
        }
        Ok(Self {
            model,
            interval,
            batch_size,
            raw: Vec::new(),
            recent: VecDeque::new(),
            seen: 0,
            pairs: Vec::new(),
        })
    }

    /// Frames pushed so far.
    pub fn frames_pushed(&self) -> usize {
        self.seen + self.raw.len()
    }

    /// Adds the next frame; returns the labels that became ready (possibly none).
    pub fn push(&mut self, frame: RgbImage) -> Result<Vec<StepLabel>> {
        self.raw.push(frame);
        if self.raw.len() < self.batch_size {
            return Ok(Vec::new());
        }
        self.run_dino()?;
        let mut out = Vec::new();
        while self.pairs.len() >= self.batch_size {
            out.extend(self.run_encoder()?);
        }
        Ok(out)
    }

    /// Labels everything still pending.
    pub fn finish(mut self) -> Result<Vec<StepLabel>> {
        self.run_dino()?;
        let mut out = Vec::new();
        while !self.pairs.is_empty() {
            out.extend(self.run_encoder()?);
        }
        Ok(out)
    }

    fn run_dino(&mut self) -> Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        let frames: Vec<&RgbImage> = self.raw.iter().collect();
        let feats = self
            .model
            .dino_features(&frames_to_tensor(&frames, self.model.device())?)?;
        self.raw.clear();
        for i in 0..feats.size()[0] {
            self.recent.push_back(feats.f_select(0, i)?);
            if self.recent.len() > self.interval + 1 {
                self.recent.pop_front();
            }
            if self.recent.len() == self.interval + 1 {
                if let (Some(first), Some(last)) = (self.recent.front(), self.recent.back()) {
                    self.pairs
                        .push((self.seen - self.interval, first.shallow_clone(), last.shallow_clone()));
                }
            }
            self.seen += 1;
        }
        Ok(())
    }

    fn run_encoder(&mut self) -> Result<Vec<StepLabel>> {
        let take = self.pairs.len().min(self.batch_size);
        let batch: Vec<_> = self.pairs.drain(..take).collect();
        let feats_t: Vec<&Tensor> = batch.iter().map(|p| &p.1).collect();
        let feats_tk: Vec<&Tensor> = batch.iter().map(|p| &p.2).collect();
        let out = self
            .model
            .encode_features(&Tensor::f_stack(&feats_t, 0)?, &Tensor::f_stack(&feats_tk, 0)?)?;
        Ok(batch
            .iter()
            .zip(latent_actions(&out)?)
            .map(|(p, action)| StepLabel {
                step: p.0,
                target_step: p.0 + self.interval,
                action,
            })
            .collect())
    }
}

/// Labels a whole stream of frames at `interval`; also returns how many frames were read.
pub fn label_frames<I>(
    model: &LatentActionModel,
    frames: I,
    interval: usize,
    batch_size: usize,
) -> Result<(Vec<StepLabel>, usize)>
where
    I: IntoIterator<Item = Result<RgbImage>>,
{
    let mut labeler = SequenceLabeler::new(model, interval, batch_size)?;
    let mut labels = Vec::new();
    for frame in frames {
        labels.extend(labeler.push(frame?)?);
    }
    let count = labeler.frames_pushed();
    labels.extend(labeler.finish()?);
    Ok((labels, count))
}
