//! Time-aligned chunk scheduling for asynchronous execution.
//!
//! A chunk inferred from the image of control step `s` predicts the actions of steps `s, s+1, …`.
//! It arrives some steps later (the inference latency); rows whose step has already passed are
//! dropped (and counted). The action of a step is the newest chunk's row (open loop) or the
//! reference's weighted average `exp(−0.1·n)` over the last N chunks covering it, newest first
//! (temporal ensembling, here over time-aligned chunks).
//!
//! [`Alignment::Reference`] instead places a chunk's rows from the step it arrives at, as the
//! reference deployment scripts do; for the real-world head only the chunk's last 8 rows are used
//! (`real_world_deployment.py` slices `[W−8:]` "to tackle latency": the skipped rows stand for the
//! steps that pass during inference).
use std::collections::VecDeque;

use crate::runtime::ensemble::BALANCING_FACTOR;

/// How chunks become per-step actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkMode {
    /// Average over the last `size` chunks covering a step (0: the preset's default).
    Ensemble { size: usize },
    /// The newest chunk alone; re-plan when it runs out or every `replan_every` steps.
    OpenLoop { replan_every: Option<usize> },
}

/// Which control step a chunk's first row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alignment {
    /// Row `i` is the action of the frame's step + `i`; rows whose step passed during inference are
    /// dropped (measured latency).
    Measured,
    /// The reference's convention: the chunk (its last `keep` rows when given) starts at the step
    /// it arrives at; nothing is dropped.
    Reference { keep: Option<usize> },
}

/// A chunk that cannot be scheduled.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk row {row} has {got} values, expected {expected}")]
    Width { row: usize, got: usize, expected: usize },
    #[error("chunk row {row} contains NaN or Inf")]
    NonFinite { row: usize },
    #[error("empty chunk")]
    Empty,
}

#[derive(Clone, Debug)]
struct TimedChunk {
    start: u64,
    rows: Vec<Vec<f64>>,
}

impl TimedChunk {
    fn end(&self) -> u64 {
        self.start + self.rows.len() as u64
    }

    fn row(&self, step: u64) -> Option<&[f64]> {
        step.checked_sub(self.start)
            .and_then(|i| self.rows.get(i as usize))
            .map(Vec::as_slice)
    }
}

/// Chunks keyed by the control step they start at.
#[derive(Clone, Debug)]
pub struct ChunkScheduler {
    mode: ChunkMode,
    alignment: Alignment,
    ensemble_size: usize,
    dim: usize,
    chunks: VecDeque<TimedChunk>,
    dropped_steps: u64,
}

impl ChunkScheduler {
    /// `default_size` replaces an ensemble size of 0.
    pub fn new(mode: ChunkMode, dim: usize, default_size: usize) -> Self {
        let ensemble_size = match mode {
            ChunkMode::Ensemble { size: 0 } => default_size.max(1),
            ChunkMode::Ensemble { size } => size,
            ChunkMode::OpenLoop { .. } => 1,
        };
        Self {
            mode,
            alignment: Alignment::Measured,
            ensemble_size,
            dim,
            chunks: VecDeque::new(),
            dropped_steps: 0,
        }
    }

    /// Uses `alignment` for the chunks inserted from now on.
    pub fn with_alignment(mut self, alignment: Alignment) -> Self {
        self.alignment = alignment;
        self
    }

    pub fn alignment(&self) -> Alignment {
        self.alignment
    }

    pub fn mode(&self) -> ChunkMode {
        self.mode
    }

    /// Forgets all chunks (new goal, hold).
    pub fn reset(&mut self) {
        self.chunks.clear();
    }

    /// Steps dropped because their time had passed when their chunk arrived.
    pub fn dropped_steps(&self) -> u64 {
        self.dropped_steps
    }

    /// Adds a chunk predicted from the image of step `start`, arriving at step `now`.
    /// Returns how many of its steps were already past.
    pub fn insert(&mut self, start: u64, mut rows: Vec<Vec<f64>>, now: u64) -> Result<usize, ChunkError> {
        if rows.is_empty() {
            return Err(ChunkError::Empty);
        }
        for (i, r) in rows.iter().enumerate() {
            if r.len() != self.dim {
                return Err(ChunkError::Width {
                    row: i,
                    got: r.len(),
                    expected: self.dim,
                });
            }
            if r.iter().any(|v| !v.is_finite()) {
                return Err(ChunkError::NonFinite { row: i });
            }
        }
        let start = match self.alignment {
            Alignment::Measured => start,
            Alignment::Reference { keep } => {
                if let Some(k) = keep.filter(|&k| k > 0 && k < rows.len()) {
                    rows.drain(..rows.len() - k);
                }
                now.max(start)
            }
        };
        let late = now.saturating_sub(start).min(rows.len() as u64) as usize;
        self.dropped_steps += late as u64;
        let chunk = TimedChunk {
            start: start + late as u64,
            rows: rows.into_iter().skip(late).collect(),
        };
        if !chunk.rows.is_empty() {
            self.chunks.push_back(chunk);
        }
        while self.chunks.len() > self.ensemble_size {
            self.chunks.pop_front();
        }
        self.prune(now);
        Ok(late)
    }

    /// Removes chunks that ended before `step`.
    pub fn prune(&mut self, step: u64) {
        self.chunks.retain(|c| c.end() > step);
    }

    /// The action of `step`, if any chunk covers it.
    pub fn action_at(&self, step: u64) -> Option<Vec<f64>> {
        match self.mode {
            ChunkMode::OpenLoop { .. } => self.chunks.back().and_then(|c| c.row(step)).map(<[f64]>::to_vec),
            ChunkMode::Ensemble { .. } => {
                let mut sum = vec![0.0; self.dim];
                let mut total = 0.0;
                // Newest first: n = 0 gets weight 1.
                for (n, row) in self.chunks.iter().rev().filter_map(|c| c.row(step)).enumerate() {
                    let w = (-BALANCING_FACTOR * n as f64).exp();
                    sum.iter_mut().zip(row).for_each(|(s, v)| *s += w * v);
                    total += w;
                }
                (total > 0.0).then(|| sum.into_iter().map(|s| s / total).collect())
            }
        }
    }

    /// Actions from `step` to the end of the newest chunk (the planned horizon).
    pub fn horizon(&self, step: u64) -> Vec<Vec<f64>> {
        let end = self.chunks.back().map_or(step, TimedChunk::end);
        (step..end).map_while(|s| self.action_at(s)).collect()
    }

    /// Steps still covered by the newest chunk from `step` on.
    pub fn remaining(&self, step: u64) -> u64 {
        self.chunks.back().map_or(0, |c| c.end().saturating_sub(step))
    }

    /// Whether a new inference should start at `step`, given the expected latency in steps.
    pub fn wants_plan(&self, step: u64, latency_steps: u64) -> bool {
        match self.mode {
            ChunkMode::Ensemble { .. } => true,
            ChunkMode::OpenLoop { replan_every } => {
                let Some(newest) = self.chunks.back() else {
                    return true;
                };
                if let Some(k) = replan_every {
                    if step >= newest.start + k as u64 {
                        return true;
                    }
                }
                self.remaining(step) <= latency_steps
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(start_val: f64, n: usize) -> Vec<Vec<f64>> {
        (0..n).map(|i| vec![start_val + i as f64]).collect()
    }

    #[test]
    fn late_rows_are_dropped_by_measured_latency() {
        let mut s = ChunkScheduler::new(ChunkMode::OpenLoop { replan_every: None }, 1, 1);
        // Inferred from step 10's image, arrives at step 13: rows for 10, 11, 12 are past.
        assert_eq!(s.insert(10, chunk(0.0, 8), 13).unwrap(), 3);
        assert_eq!(s.dropped_steps(), 3);
        assert_eq!(s.action_at(12), None);
        assert_eq!(s.action_at(13), Some(vec![3.0]));
        assert_eq!(s.action_at(17), Some(vec![7.0]));
        assert_eq!(s.action_at(18), None);
        assert_eq!(s.horizon(15), vec![vec![5.0], vec![6.0], vec![7.0]]);
        assert_eq!(s.remaining(15), 3);
        // Open loop re-plans when the rest is within the latency.
        assert!(!s.wants_plan(14, 2));
        assert!(s.wants_plan(16, 2));
        // A chunk entirely in the past is dropped whole.
        assert_eq!(s.insert(0, chunk(0.0, 4), 20).unwrap(), 4);
        assert_eq!(s.dropped_steps(), 7);
    }

    #[test]
    fn open_loop_uses_the_newest_chunk_and_replans_every_k() {
        let mut s = ChunkScheduler::new(ChunkMode::OpenLoop { replan_every: Some(2) }, 1, 1);
        s.insert(0, chunk(0.0, 8), 0).unwrap();
        assert!(!s.wants_plan(1, 0));
        assert!(s.wants_plan(2, 0));
        s.insert(1, chunk(100.0, 8), 2).unwrap();
        assert_eq!(s.action_at(2), Some(vec![101.0]));
    }

    #[test]
    fn ensemble_weights_time_aligned_chunks_newest_first() {
        let mut s = ChunkScheduler::new(ChunkMode::Ensemble { size: 0 }, 1, 2);
        s.insert(0, vec![vec![1.0]; 4], 0).unwrap();
        s.insert(1, vec![vec![3.0]; 4], 1).unwrap();
        let w1 = (-0.1f64).exp();
        let expect = (3.0 + w1 * 1.0) / (1.0 + w1);
        let got = s.action_at(2).unwrap()[0];
        assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
        // Only the newest covers step 4.
        assert_eq!(s.action_at(4), Some(vec![3.0]));
        // Size 2: a third chunk evicts the oldest.
        s.insert(2, vec![vec![5.0]; 4], 2).unwrap();
        let got = s.action_at(3).unwrap()[0];
        let expect = (5.0 + w1 * 3.0) / (1.0 + w1);
        assert!((got - expect).abs() < 1e-12);
        assert!(s.wants_plan(3, 10));
    }

    #[test]
    fn reference_alignment_keeps_the_tail_from_the_arrival_step() {
        // A real-world chunk of 12 rows from step 10's image, arriving at step 13: the last 8 rows
        // are the actions of steps 13..21, nothing counts as late.
        let mut s = ChunkScheduler::new(ChunkMode::Ensemble { size: 8 }, 1, 8)
            .with_alignment(Alignment::Reference { keep: Some(8) });
        assert_eq!(s.insert(10, chunk(0.0, 12), 13).unwrap(), 0);
        assert_eq!(s.action_at(13), Some(vec![4.0]));
        assert_eq!(s.action_at(20), Some(vec![11.0]));
        assert_eq!(s.action_at(21), None);
        assert_eq!(s.dropped_steps(), 0);
        // Without a tail the whole chunk starts at the arrival step.
        let mut s = ChunkScheduler::new(ChunkMode::OpenLoop { replan_every: None }, 1, 1)
            .with_alignment(Alignment::Reference { keep: None });
        s.insert(0, chunk(0.0, 4), 2).unwrap();
        assert_eq!((s.action_at(2), s.action_at(5)), (Some(vec![0.0]), Some(vec![3.0])));
        // A tail longer than the chunk keeps everything.
        let mut s = ChunkScheduler::new(ChunkMode::OpenLoop { replan_every: None }, 1, 1)
            .with_alignment(Alignment::Reference { keep: Some(8) });
        s.insert(0, chunk(0.0, 4), 0).unwrap();
        assert_eq!(s.horizon(0).len(), 4);
    }

    #[test]
    fn bad_chunks_are_refused() {
        let mut s = ChunkScheduler::new(ChunkMode::Ensemble { size: 2 }, 2, 2);
        assert_eq!(s.insert(0, vec![], 0), Err(ChunkError::Empty));
        assert_eq!(
            s.insert(0, vec![vec![1.0]], 0),
            Err(ChunkError::Width {
                row: 0,
                got: 1,
                expected: 2
            })
        );
        assert_eq!(
            s.insert(0, vec![vec![1.0, 2.0], vec![f64::NAN, 0.0]], 0),
            Err(ChunkError::NonFinite { row: 1 })
        );
        assert_eq!(s.action_at(0), None);
    }
}
