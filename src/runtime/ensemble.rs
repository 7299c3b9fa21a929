//! Chunk execution strategies: the reference's temporal ensemble (spec §4.3) and an open-loop
//! queue (blocking LIBERO, CALVIN).
//!
//! [`TemporalEnsembler`] keeps the last `N` chunks in an `N × N × d` f64 buffer. Each query shifts
//! the rows down (older chunks) and the columns left (one step of time), masks what has run out
//! of horizon, stores the new chunk in row 0 and returns the weighted average of column 0 with
//! weights `exp(−0.1·n)`, newest (n = 0) first. It reproduces the reference's float64 numpy code.
use std::collections::VecDeque;

use crate::model::heads::HeadKind;

/// Ensemble size of the real-world deployment: the last 8 steps of each chunk (spec §4.3).
pub const REAL_WORLD_TEMPORAL_SIZE: usize = 8;

/// Decay of the ensemble weights `exp(−BALANCING_FACTOR·n)`.
pub const BALANCING_FACTOR: f64 = 0.1;

/// Bad chunk shapes or sizes.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnsembleError {
    #[error("ensemble size {0} and action width {1} must both be positive")]
    Size(usize, usize),
    #[error("chunk of {len} values is not a whole number of {dim}-wide rows")]
    Ragged { len: usize, dim: usize },
    #[error("chunk has {rows} rows, the ensemble needs {need}{}", if *.tail { " or more" } else { "" })]
    Rows { rows: usize, need: usize, tail: bool },
    #[error("chunk contains a non-finite value")]
    NonFinite,
}

/// The reference's temporal ensemble over the last `N` chunks.
#[derive(Clone, Debug)]
pub struct TemporalEnsembler {
    n: usize,
    dim: usize,
    tail: bool,
    buffer: Vec<f64>,
    mask: Vec<bool>,
    weights: Vec<f64>,
}

impl TemporalEnsembler {
    /// An ensemble over `n` chunks of exactly `n` rows of `dim` values (LIBERO, Bridge, R2R).
    pub fn new(n: usize, dim: usize) -> Result<Self, EnsembleError> {
        if n == 0 || dim == 0 {
            return Err(EnsembleError::Size(n, dim));
        }
        let weights = (0..n).map(|i| (-BALANCING_FACTOR * i as f64).exp()).collect();
        Ok(Self {
            n,
            dim,
            tail: false,
            buffer: vec![0.0; n * n * dim],
            mask: vec![false; n * n],
            weights,
        })
    }

    /// As [`Self::new`], but longer chunks are cut to their last `n` rows (the real-world
    /// deployment ensembles the last 8 steps of its W-step chunk to absorb latency).
    pub fn with_tail(n: usize, dim: usize) -> Result<Self, EnsembleError> {
        Ok(Self {
            tail: true,
            ..Self::new(n, dim)?
        })
    }

    /// The reference's ensemble for a head: N = `window` over whole chunks (the evaluations set
    /// `temporal_size = window_size`: 12 for LIBERO, 10 for Bridge, 4 for R2R with the released
    /// heads), except the real-world head, which ensembles the last
    /// [`REAL_WORLD_TEMPORAL_SIZE`] steps of each chunk (all of a shorter chunk).
    pub fn for_head(kind: HeadKind, window: usize, action_dim: usize) -> Result<Self, EnsembleError> {
        match kind {
            HeadKind::RealWorld => Self::with_tail(REAL_WORLD_TEMPORAL_SIZE.min(window), action_dim),
            HeadKind::Libero | HeadKind::R2r => Self::new(window, action_dim),
        }
    }

    /// Clears the buffer and mask (start of an episode).
    pub fn reset(&mut self) {
        self.buffer.fill(0.0);
        self.mask.fill(false);
    }

    /// Ensemble size N.
    pub fn temporal_size(&self) -> usize {
        self.n
    }

    pub fn action_dim(&self) -> usize {
        self.dim
    }

    /// The weights `exp(−0.1·n)`, n = 0 (newest chunk) first.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The buffer, row-major `[chunk n][step j][value]` (n = 0 newest).
    pub fn buffer(&self) -> &[f64] {
        &self.buffer
    }

    /// The mask, row-major `[chunk n][step j]`.
    pub fn mask(&self) -> &[bool] {
        &self.mask
    }

    /// Adds a chunk (row-major `rows × dim`) and returns the ensembled action for this step.
    pub fn push(&mut self, chunk: &[f64]) -> Result<Vec<f64>, EnsembleError> {
        let (n, d) = (self.n, self.dim);
        if !chunk.len().is_multiple_of(d) {
            return Err(EnsembleError::Ragged {
                len: chunk.len(),
                dim: d,
            });
        }
        let rows = chunk.len() / d;
        if rows < n || (rows > n && !self.tail) {
            return Err(EnsembleError::Rows {
                rows,
                need: n,
                tail: self.tail,
            });
        }
        let chunk = &chunk[(rows - n) * d..];
        if chunk.iter().any(|v| !v.is_finite()) {
            return Err(EnsembleError::NonFinite);
        }
        // 1. Older chunks move one row down (row 0 keeps its stale copy, overwritten in 4.).
        self.buffer.copy_within(0..(n - 1) * n * d, n * d);
        self.mask.copy_within(0..(n - 1) * n, n);
        // 2. One step of time passes: columns move left, the last column keeps its value.
        for r in 0..n {
            self.buffer.copy_within(r * n * d + d..(r + 1) * n * d, r * n * d);
            self.mask.copy_within(r * n + 1..(r + 1) * n, r * n);
        }
        // 3. Chunk n only reaches step N−1−n: mask with the flipped upper triangle.
        for r in 0..n {
            for j in (n - r)..n {
                self.mask[r * n + j] = false;
            }
        }
        // 4. The new chunk becomes row 0.
        self.buffer[..n * d].copy_from_slice(chunk);
        self.mask[..n].fill(true);
        // 5. Weighted average of every live chunk's prediction for this step.
        let mut sum = vec![0.0; d];
        let mut norm = 0.0;
        for r in 0..n {
            if self.mask[r * n] {
                let w = self.weights[r];
                for (s, v) in sum.iter_mut().zip(&self.buffer[r * n * d..r * n * d + d]) {
                    *s += v * w;
                }
                norm += w;
            }
        }
        Ok(sum.into_iter().map(|s| s / norm).collect())
    }
}

/// Open-loop execution: a chunk is queued and popped step by step; a new one is planned when the
/// queue is empty or, if `replan_every` is set, after that many steps.
#[derive(Clone, Debug, Default)]
pub struct OpenLoopQueue {
    queue: VecDeque<Vec<f64>>,
    replan_every: Option<usize>,
    since_plan: usize,
}

impl OpenLoopQueue {
    /// `replan_every`: `None` runs every chunk to its end (the reference's blocking mode).
    pub fn new(replan_every: Option<usize>) -> Self {
        Self {
            queue: VecDeque::new(),
            replan_every: replan_every.filter(|&k| k > 0),
            since_plan: 0,
        }
    }

    /// Whether the caller should query the policy before the next [`Self::pop`].
    pub fn needs_plan(&self) -> bool {
        self.queue.is_empty() || self.replan_every.is_some_and(|k| self.since_plan >= k)
    }

    /// Replaces the queue with `chunk` (row-major `rows × dim`).
    pub fn load(&mut self, chunk: &[f64], dim: usize) -> Result<(), EnsembleError> {
        if dim == 0 || !chunk.len().is_multiple_of(dim) {
            return Err(EnsembleError::Ragged { len: chunk.len(), dim });
        }
        self.queue = chunk.chunks_exact(dim).map(<[f64]>::to_vec).collect();
        self.since_plan = 0;
        Ok(())
    }

    /// The next action of the current chunk.
    pub fn pop(&mut self) -> Option<Vec<f64>> {
        let a = self.queue.pop_front()?;
        self.since_plan += 1;
        Some(a)
    }

    /// Actions left in the queue.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn reset(&mut self) {
        self.queue.clear();
        self.since_plan = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_returns_the_first_row() {
        let mut e = TemporalEnsembler::new(3, 2).unwrap();
        let a = e.push(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(a, vec![1.0, 2.0]);
        assert_eq!(e.mask(), &[true, true, true, false, false, false, false, false, false]);
    }

    #[test]
    fn averages_overlapping_predictions_newest_heaviest() {
        let mut e = TemporalEnsembler::new(3, 1).unwrap();
        e.push(&[10.0, 11.0, 12.0]).unwrap();
        let a = e.push(&[20.0, 21.0, 22.0]).unwrap();
        // Step 1: newest chunk predicts 20 (w=1), previous predicted 11 (w=e^-0.1).
        let w = (-0.1f64).exp();
        assert!((a[0] - (20.0 + 11.0 * w) / (1.0 + w)).abs() < 1e-12);
        let a = e.push(&[30.0, 31.0, 32.0]).unwrap();
        let w2 = (-0.2f64).exp();
        assert!((a[0] - (30.0 + 21.0 * w + 12.0 * w2) / (1.0 + w + w2)).abs() < 1e-12);
        // Row 2 (oldest) only keeps its last step; the shifted-out columns keep stale values.
        assert_eq!(&e.mask()[6..], &[true, false, false]);
        assert_eq!(&e.buffer()[6..], &[12.0, 12.0, 12.0]);
        e.reset();
        assert!(e.mask().iter().all(|m| !m));
    }

    #[test]
    fn tail_mode_uses_the_last_rows_and_strict_mode_refuses() {
        let mut e = TemporalEnsembler::with_tail(2, 1).unwrap();
        assert_eq!(e.push(&[1.0, 2.0, 3.0, 4.0]).unwrap(), vec![3.0]);
        let mut s = TemporalEnsembler::new(2, 1).unwrap();
        assert!(matches!(
            s.push(&[1.0, 2.0, 3.0]),
            Err(EnsembleError::Rows {
                rows: 3,
                need: 2,
                tail: false
            })
        ));
        assert!(matches!(s.push(&[1.0]), Err(EnsembleError::Rows { .. })));
        assert!(matches!(s.push(&[1.0, f64::NAN]), Err(EnsembleError::NonFinite)));
        assert!(TemporalEnsembler::new(0, 7).is_err());
    }

    #[test]
    fn reference_sizes_per_head() {
        let e = TemporalEnsembler::for_head(HeadKind::RealWorld, 12, 7).unwrap();
        assert_eq!((e.temporal_size(), e.action_dim()), (8, 7));
        let mut e = TemporalEnsembler::for_head(HeadKind::R2r, 4, 4).unwrap();
        assert_eq!(e.temporal_size(), 4);
        assert!(e.push(&[0.25; 20]).is_err());
        assert_eq!(e.weights()[1], (-0.1f64).exp());
        // Non-default windows: the ensemble spans the whole chunk (R2R window 5, LIBERO 10).
        let mut e = TemporalEnsembler::for_head(HeadKind::R2r, 5, 4).unwrap();
        assert_eq!(e.temporal_size(), 5);
        assert_eq!(e.push(&[0.25; 20]).unwrap(), vec![0.25; 4]);
        let e = TemporalEnsembler::for_head(HeadKind::Libero, 10, 6).unwrap();
        assert_eq!((e.temporal_size(), e.action_dim()), (10, 6));
        // A real-world chunk shorter than 8 steps is ensembled whole.
        let mut e = TemporalEnsembler::for_head(HeadKind::RealWorld, 5, 7).unwrap();
        assert_eq!(e.temporal_size(), 5);
        assert!(e.push(&[0.5; 35]).is_ok());
    }

    #[test]
    fn open_loop_queue_replans_when_empty_or_every_k() {
        let mut q = OpenLoopQueue::new(None);
        assert!(q.needs_plan());
        q.load(&[1.0, 2.0, 3.0, 4.0], 2).unwrap();
        assert_eq!(q.pop(), Some(vec![1.0, 2.0]));
        assert!(!q.needs_plan());
        assert_eq!(q.pop(), Some(vec![3.0, 4.0]));
        assert!(q.needs_plan());
        assert_eq!(q.pop(), None);

        let mut k = OpenLoopQueue::new(Some(1));
        k.load(&[1.0, 2.0, 3.0], 1).unwrap();
        assert!(!k.needs_plan());
        k.pop();
        assert!(k.needs_plan());
        assert_eq!(k.len(), 2);
        assert!(k.load(&[1.0, 2.0, 3.0], 2).is_err());
    }
}
