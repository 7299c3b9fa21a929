//! The inference worker: one thread owns the policy session, so the model never runs on transport
//! or control threads. It takes one job at a time (the control loop submits only when it is idle,
//! always with the newest frame) and returns the raw chunk with the measured latency.
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::runtime::postprocess::Action;
use crate::runtime::preprocess::RgbImage;
use crate::runtime::session::Session;

use crate::node::error::NodeError;
use crate::node::input::CameraFrame;

/// What one inference produced.
#[derive(Clone, Debug)]
pub struct Inferred {
    /// Latent action token ids.
    pub latent_ids: Vec<i64>,
    /// The head's raw chunk, one row per future control step.
    pub chunk: Vec<Vec<f64>>,
    /// The session's own (ensembled, post-processed) action for this step.
    pub action: Action,
    /// The preprocessed model input (224×224), when asked for.
    pub preview: Option<RgbImage>,
}

/// The policy as the worker sees it; the real one is [`Session`], tests use stand-ins.
pub trait PolicyBackend: 'static {
    /// Starts an episode with a new instruction.
    fn reset(&mut self, instruction: &str);
    /// Runs the model on one image.
    fn infer(&mut self, image: &RgbImage, proprio: Option<&[f64]>, preview: bool) -> Result<Inferred, String>;
}

impl PolicyBackend for Session {
    fn reset(&mut self, instruction: &str) {
        Session::reset(self, instruction)
    }

    fn infer(&mut self, image: &RgbImage, proprio: Option<&[f64]>, preview: bool) -> Result<Inferred, String> {
        let out = self.step(image, proprio).map_err(|e| e.to_string())?;
        let inf = out
            .inference
            .ok_or_else(|| "the session did not run the model".to_string())?;
        let preview = if preview {
            self.policy().processor().prepare(image).ok()
        } else {
            None
        };
        Ok(Inferred {
            latent_ids: inf.latent_ids,
            chunk: inf.chunk,
            action: out.action,
            preview,
        })
    }
}

/// One inference request.
#[derive(Clone, Debug)]
pub struct Job {
    /// Goal epoch: a new epoch resets the session with `instruction`.
    pub epoch: u64,
    pub instruction: String,
    pub frame: CameraFrame,
    pub proprio: Option<Vec<f64>>,
    /// Control step of the frame.
    pub step: u64,
    pub preview: bool,
    /// Images declaring more pixels are refused undecoded.
    pub max_image_pixels: u64,
    /// Wall-clock arrival of the frame and how long it waited for the worker (overhead trace).
    pub received: Instant,
    pub worker_wait: Duration,
}

/// Why a job produced no chunk.
#[derive(Clone, Debug, PartialEq)]
pub enum JobError {
    /// The frame could not be decoded (wrong encoding, truncated, …).
    BadInput(String),
    /// The model failed (e.g. instruction too long, wrong proprio).
    Inference(String),
}

/// Wall-clock marks of one job, for the overhead trace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JobMarks {
    /// The transport handed the frame over.
    pub received: Instant,
    /// Time the frame waited because the worker was still running an older frame.
    pub worker_wait: Duration,
    /// The control loop submitted the job; the worker picked it up, had decoded the frame, and
    /// finished.
    pub submitted: Instant,
    pub started: Instant,
    pub decoded: Instant,
    pub finished: Instant,
    /// The model alone (`PolicyBackend::infer`).
    pub model: Duration,
}

/// A finished job.
#[derive(Clone, Debug)]
pub struct JobResult {
    pub epoch: u64,
    pub step: u64,
    /// Submission to result: decoding and the model.
    pub latency: Duration,
    pub marks: JobMarks,
    pub result: Result<Inferred, JobError>,
}

/// The message of a caught panic.
fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    let s = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    crate::node::control::core::clip(&s, crate::node::control::core::MESSAGE_TEXT_CHARS).into_owned()
}

/// How long dropping the worker waits for a running job, and how often it looks.
const DROP_WAIT: Duration = Duration::from_secs(2);
const DROP_POLL: Duration = Duration::from_millis(5);

/// Called on the worker thread after each result (wakes the control loop).
type Notifier = Arc<Mutex<Option<Box<dyn Fn() + Send>>>>;

/// Handle of the worker thread.
pub struct InferenceWorker {
    tx: Option<Sender<(Job, Instant)>>,
    rx: Receiver<JobResult>,
    ready: Option<JobResult>,
    /// Wall time the running job was submitted (None: idle).
    busy_since: Option<Instant>,
    /// The worker thread has gone (it cannot run jobs any more).
    dead: bool,
    notify: Notifier,
    handle: Option<JoinHandle<()>>,
}

impl InferenceWorker {
    /// Starts the worker with a backend that can move between threads (stand-ins in tests).
    pub fn spawn(backend: impl PolicyBackend + Send) -> Result<Self, NodeError> {
        Self::spawn_with(move || Ok((backend, ()))).map(|(w, ())| w)
    }

    /// Starts the worker and builds its backend on the worker thread (a libtorch policy cannot
    /// move between threads); `factory` also returns information for the caller, e.g. the
    /// model's action width. Blocks until the factory has finished; its error is returned.
    pub fn spawn_with<B, M, F>(factory: F) -> Result<(Self, M), NodeError>
    where
        B: PolicyBackend,
        M: Send + 'static,
        F: FnOnce() -> Result<(B, M), String> + Send + 'static,
    {
        let (tx, jobs) = mpsc::channel::<(Job, Instant)>();
        let (results, rx) = mpsc::channel();
        let (info_tx, info_rx) = mpsc::channel::<Result<M, String>>();
        let notify: Notifier = Arc::new(Mutex::new(None));
        let notify_worker = Arc::clone(&notify);
        let handle = std::thread::Builder::new()
            .name("univla-inference".into())
            .spawn(move || {
                let mut backend = match factory() {
                    Ok((b, info)) => {
                        if info_tx.send(Ok(info)).is_err() {
                            return;
                        }
                        b
                    }
                    Err(e) => {
                        let _ = info_tx.send(Err(e));
                        return;
                    }
                };
                let mut epoch = None;
                while let Ok((job, submitted)) = jobs.recv() {
                    let started = Instant::now();
                    if epoch != Some(job.epoch) {
                        backend.reset(&job.instruction);
                        epoch = Some(job.epoch);
                    }
                    let mut model = Duration::ZERO;
                    let decoded_img = job.frame.decode(job.max_image_pixels);
                    let decoded = Instant::now();
                    let result = match decoded_img {
                        Err(e) => Err(JobError::BadInput(e)),
                        Ok(img) => {
                            let start = Instant::now();
                            // A panic in the model (libtorch errors surface as panics in tch) is a
                            // failed inference: the goal is aborted, the thread lives on, and the
                            // next job resets the session.
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                backend.infer(&img, job.proprio.as_deref(), job.preview)
                            }));
                            model = start.elapsed();
                            match r {
                                Ok(r) => r.map_err(JobError::Inference),
                                Err(p) => {
                                    epoch = None;
                                    Err(JobError::Inference(format!("the model panicked: {}", panic_text(&p))))
                                }
                            }
                        }
                    };
                    let done = JobResult {
                        epoch: job.epoch,
                        step: job.step,
                        latency: submitted.elapsed(),
                        marks: JobMarks {
                            received: job.received,
                            worker_wait: job.worker_wait,
                            submitted,
                            started,
                            decoded,
                            finished: Instant::now(),
                            model,
                        },
                        result,
                    };
                    if results.send(done).is_err() {
                        break;
                    }
                    if let Ok(n) = notify_worker.lock() {
                        if let Some(f) = n.as_ref() {
                            f();
                        }
                    }
                }
            })
            .map_err(|e| NodeError::Thread(format!("univla-inference: {e}")))?;
        let info = match info_rx.recv() {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => return Err(NodeError::Load(e)),
            Err(_) => return Err(NodeError::Thread("univla-inference stopped while loading".into())),
        };
        Ok((
            Self {
                tx: Some(tx),
                rx,
                ready: None,
                busy_since: None,
                dead: false,
                notify,
                handle: Some(handle),
            },
            info,
        ))
    }

    /// Calls `f` on the worker thread whenever a result is ready.
    pub fn set_notifier(&self, f: Box<dyn Fn() + Send>) {
        if let Ok(mut n) = self.notify.lock() {
            *n = Some(f);
        }
    }

    /// True once the worker thread has stopped (no job will ever finish).
    pub fn is_dead(&self) -> bool {
        self.dead || self.handle.as_ref().is_some_and(|h| h.is_finished())
    }

    /// True while a job runs.
    pub fn is_busy(&self) -> bool {
        self.busy_since.is_some()
    }

    /// Why the worker cannot serve a goal, if it cannot: its thread has stopped, or the running
    /// job has taken longer than `limit` (zero: no limit).
    pub fn fault(&self, limit: Duration) -> Option<String> {
        if self.is_dead() {
            return Some("the inference worker has stopped".into());
        }
        let busy = self.busy_since?.elapsed();
        (!limit.is_zero() && busy > limit).then(|| {
            format!(
                "inference stalled: running for {:.1} s (inference_timeout_s {:.1})",
                busy.as_secs_f64(),
                limit.as_secs_f64()
            )
        })
    }

    /// Submits a job; false (the job is dropped) while busy, so frames never queue.
    pub fn submit(&mut self, job: Job) -> bool {
        if self.is_busy() {
            return false;
        }
        let now = Instant::now();
        match &self.tx {
            Some(tx) if tx.send((job, now)).is_ok() => {
                self.busy_since = Some(now);
                true
            }
            _ => false,
        }
    }

    /// The finished job, if any.
    pub fn poll(&mut self) -> Option<JobResult> {
        if let Some(r) = self.ready.take() {
            self.busy_since = None;
            return Some(r);
        }
        match self.rx.try_recv() {
            Ok(r) => {
                self.busy_since = None;
                Some(r)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.busy_since = None;
                self.dead = true;
                None
            }
        }
    }

    /// Waits up to `timeout` for the running job (tests, shutdown).
    pub fn wait(&mut self, timeout: Duration) -> Option<JobResult> {
        if let Some(r) = self.ready.take() {
            self.busy_since = None;
            return Some(r);
        }
        let r = self.rx.recv_timeout(timeout).ok();
        if r.is_some() {
            self.busy_since = None;
        }
        r
    }

    /// Waits up to `timeout` until the running job has finished, leaving its result for
    /// [`Self::poll`]; true if a result is ready (or nothing was running).
    pub fn wait_ready(&mut self, timeout: Duration) -> bool {
        if self.ready.is_some() || !self.is_busy() {
            return true;
        }
        self.ready = self.rx.recv_timeout(timeout).ok();
        self.ready.is_some()
    }
}

impl Drop for InferenceWorker {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            // The thread ends after its current job. Give that job a moment, so the process does
            // not tear libtorch down under a running inference, but never wait for a slow model
            // forever.
            let start = Instant::now();
            while !h.is_finished() && start.elapsed() < DROP_WAIT {
                std::thread::sleep(DROP_POLL);
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stand-in policy: every chunk row is `[value; dim]`, `value` rising by 1 per inference.
    pub struct FakePolicy {
        pub dim: usize,
        pub window: usize,
        pub value: f64,
        pub step_by: f64,
        pub instruction: String,
    }

    impl FakePolicy {
        pub fn new(dim: usize, window: usize, value: f64) -> Self {
            Self {
                dim,
                window,
                value,
                step_by: 0.0,
                instruction: String::new(),
            }
        }
    }

    impl PolicyBackend for FakePolicy {
        fn reset(&mut self, instruction: &str) {
            self.instruction = instruction.to_string();
        }

        fn infer(&mut self, _: &RgbImage, _: Option<&[f64]>, _: bool) -> Result<Inferred, String> {
            if self.instruction == "fail" {
                return Err("model failed".into());
            }
            let v = self.value;
            self.value += self.step_by;
            Ok(Inferred {
                latent_ids: vec![32001, 32002, 32003, 32004],
                chunk: vec![vec![v; self.dim]; self.window],
                action: Action::Arm(vec![v; self.dim]),
                preview: None,
            })
        }
    }

    fn job(epoch: u64, instruction: &str, frame: CameraFrame) -> Job {
        Job {
            epoch,
            instruction: instruction.into(),
            frame,
            proprio: None,
            step: 3,
            preview: false,
            max_image_pixels: crate::runtime::preprocess::DEFAULT_MAX_PIXELS,
            received: Instant::now(),
            worker_wait: Duration::ZERO,
        }
    }

    #[test]
    fn worker_runs_one_job_at_a_time_and_reports_bad_input() {
        let mut w = InferenceWorker::spawn(FakePolicy::new(2, 3, 0.5)).unwrap();
        let img = CameraFrame::Decoded(RgbImage::filled(4, 4, [1, 2, 3]).unwrap());
        assert!(w.submit(job(1, "go", img.clone())));
        assert!(w.is_busy());
        assert!(!w.submit(job(1, "go", img.clone())), "a second job must not queue");
        let r = w.wait(Duration::from_secs(10)).unwrap();
        assert_eq!((r.epoch, r.step), (1, 3));
        assert_eq!(r.result.unwrap().chunk, vec![vec![0.5; 2]; 3]);
        assert!(!w.is_busy());
        let bad = CameraFrame::Raw(crate::ros::msgs::sensor_msgs::Image {
            width: 4,
            height: 4,
            encoding: "rgb8".into(),
            step: 12,
            data: vec![0; 5],
            ..Default::default()
        });
        assert!(w.submit(job(1, "go", bad)));
        let r = w.wait(Duration::from_secs(10)).unwrap();
        assert!(matches!(r.result, Err(JobError::BadInput(ref e)) if e.contains("truncated")));
        assert!(w.submit(job(2, "fail", img)));
        let r = w.wait(Duration::from_secs(10)).unwrap();
        assert_eq!(r.result.unwrap_err(), JobError::Inference("model failed".into()));
    }
}
