//! The model thread: collects requests from any sessions for up to the batch window (or until
//! the batch is full), runs them as one batch, and hands each session its episode back with its
//! result. Sessions talk to it through a bounded queue and a one-shot reply each; nothing here
//! touches a socket.
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::runtime::batch::{BatchRow, BatchRunner};
use crate::runtime::preprocess::RgbImage;
use crate::runtime::session::{Episode, StepOutput};

/// One session's step request; the episode travels with it and comes back in [`Done`].
pub struct Job {
    pub episode: Episode,
    pub image: RgbImage,
    pub proprio: Option<Vec<f64>>,
    pub reply: oneshot::Sender<Done>,
}

/// A finished job.
pub struct Done {
    pub episode: Episode,
    pub result: Result<StepOutput, String>,
    /// Rows in the batch this job ran in.
    pub batch_size: usize,
    /// Wall time of the batch's model call.
    pub infer: Duration,
}

/// How the worker forms batches.
#[derive(Clone, Copy, Debug)]
pub struct BatchPolicy {
    pub max_batch: usize,
    pub window: Duration,
}

/// Serves jobs until every sender is gone.
pub fn run(mut runner: BatchRunner, jobs: Receiver<Job>, batching: BatchPolicy) {
    let max_batch = batching.max_batch.clamp(1, runner.max_rows());
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + batching.window;
        while batch.len() < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match jobs.recv_timeout(left) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        // A session that went away while waiting needs no answer: its episode is dropped here.
        batch.retain(|j| !j.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        run_batch(&mut runner, batch);
    }
}

fn run_batch(runner: &mut BatchRunner, mut batch: Vec<Job>) {
    let started = Instant::now();
    let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut rows: Vec<BatchRow<'_>> = batch
            .iter_mut()
            .map(|j| BatchRow {
                episode: &mut j.episode,
                image: &j.image,
                proprio: j.proprio.as_deref(),
            })
            .collect();
        runner.step(&mut rows)
    }));
    let infer = started.elapsed();
    let batch_size = batch.len();
    let results: Vec<Result<StepOutput, String>> = match results {
        Ok(r) => r.into_iter().map(|r| r.map_err(|e| e.to_string())).collect(),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            tracing::error!("the model panicked: {msg}");
            (0..batch_size).map(|_| Err(format!("internal error: {msg}"))).collect()
        }
    };
    for (job, result) in batch.into_iter().zip(results) {
        let done = Done {
            episode: job.episode,
            result,
            batch_size,
            infer,
        };
        // The session may have gone meanwhile; then its episode is dropped with the reply.
        let _ = job.reply.send(done);
    }
}
