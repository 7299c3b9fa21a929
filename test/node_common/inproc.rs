//! A policy node run inside the test process with the real engine wrapped by [`Scripted`]: it
//! injects faults on cue (an error, a panic, non-finite output, an inference that blocks) or
//! scripts the decisions of a navigation head, so the tests can drive the node into every stop.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use univla_ros::node::wiring::ros_io::load_policy_with;
use univla_ros::node::wiring::worker::{Inferred, PolicyBackend};
use univla_ros::node::NodeError;
use univla_ros::ros::RosArgs;
use univla_ros::runtime::postprocess::{Action, NavAction};
use univla_ros::runtime::preprocess::RgbImage;
use univla_ros::runtime::session::Session;

use super::WAIT;

/// The message of the injected panic.
pub const INJECTED_PANIC: &str = "injected panic in the model";

/// What the wrapper does to the `n`-th inference of the node's life (1-based).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    None,
    Error(usize),
    Panic(usize),
    /// The chunk (and action) come back as NaN.
    NonFinite(usize),
    /// The inference blocks this long, then answers normally.
    Block(usize, Duration),
    /// The first inference of every episode but the first blocks this long (a slow model after a
    /// preemption).
    SlowAfterReset(Duration),
}

/// The real session with a fault plan and, optionally, a fixed navigation decision.
pub struct Scripted {
    inner: Session,
    fault: Fault,
    count: usize,
    resets: usize,
    fresh_episode: bool,
    nav: Option<NavAction>,
    /// When the fault fired (wall clock).
    pub fired: Arc<Mutex<Option<Instant>>>,
}

impl PolicyBackend for Scripted {
    fn reset(&mut self, instruction: &str) {
        self.resets += 1;
        self.fresh_episode = true;
        PolicyBackend::reset(&mut self.inner, instruction)
    }

    fn infer(&mut self, image: &RgbImage, proprio: Option<&[f64]>, preview: bool) -> Result<Inferred, String> {
        self.count += 1;
        let n = self.count;
        let fresh = std::mem::take(&mut self.fresh_episode);
        let fire = |f: &Arc<Mutex<Option<Instant>>>| {
            f.lock().unwrap().get_or_insert_with(Instant::now);
        };
        match self.fault {
            Fault::Error(k) if k == n => {
                fire(&self.fired);
                return Err("injected inference failure".into());
            }
            Fault::Panic(k) if k == n => {
                fire(&self.fired);
                std::panic::panic_any(INJECTED_PANIC);
            }
            Fault::Block(k, d) if k == n => {
                fire(&self.fired);
                std::thread::sleep(d);
            }
            Fault::SlowAfterReset(d) if fresh && self.resets > 1 => {
                fire(&self.fired);
                std::thread::sleep(d);
            }
            _ => {}
        }
        let mut out = PolicyBackend::infer(&mut self.inner, image, proprio, preview)?;
        if matches!(self.fault, Fault::NonFinite(k) if k == n) {
            fire(&self.fired);
            out.chunk.iter_mut().flatten().for_each(|v| *v = f64::NAN);
            if let Action::Arm(a) = &mut out.action {
                a.iter_mut().for_each(|v| *v = f64::NAN);
            }
        }
        if let Some(decision) = self.nav {
            out.action = Action::Nav(decision);
        }
        Ok(out)
    }
}

/// Which node to run.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Arm,
    Nav,
}

/// A node running on a thread of the test process.
pub struct InProcessNode {
    pub shutdown: Arc<AtomicBool>,
    pub fired: Arc<Mutex<Option<Instant>>>,
    result: Arc<Mutex<Option<Result<(), String>>>>,
    handle: Option<JoinHandle<()>>,
}

impl InProcessNode {
    /// Starts `kind` with `ros_args` (what follows `--ros-args`) on `ROS_DOMAIN_ID` as the
    /// process has it, the policy wrapped with `fault` (and `nav` decisions, if given).
    pub fn start(kind: Kind, ros_args: &[String], fault: Fault, nav: Option<NavAction>) -> Self {
        let mut argv = vec!["node".to_string(), "--ros-args".to_string()];
        argv.extend_from_slice(ros_args);
        let (args, _) = RosArgs::parse(argv).unwrap();
        // Logs as the binaries have them (stderr and /rosout; RUST_LOG filters); the first node of
        // the process installs the subscriber.
        univla_ros::ros::logging::init_tracing(&args);
        let shutdown = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(Mutex::new(None));
        let result = Arc::new(Mutex::new(None));
        let (s, f, r) = (Arc::clone(&shutdown), Arc::clone(&fired), Arc::clone(&result));
        let handle = std::thread::spawn(move || {
            let load = move |cfg: &univla_ros::node::config::PolicyConfig| {
                load_policy_with(cfg, move |inner| Scripted {
                    inner,
                    fault,
                    count: 0,
                    resets: 0,
                    fresh_episode: false,
                    nav,
                    fired: f,
                })
            };
            let out: Result<(), NodeError> = match kind {
                Kind::Arm => univla_ros::node::wiring::arm_node::run_arm_with(&args, s, load),
                Kind::Nav => univla_ros::node::wiring::nav_node::run_nav_with(&args, s, load),
            };
            *r.lock().unwrap() = Some(out.map_err(|e| e.to_string()));
        });
        Self {
            shutdown,
            fired,
            result,
            handle: Some(handle),
        }
    }

    /// When the injected fault fired.
    pub fn fired_at(&self) -> Option<Instant> {
        *self.fired.lock().unwrap()
    }

    /// The node's own end, if it ended (`Err`: it exited with that error).
    pub fn ended(&self) -> Option<Result<(), String>> {
        self.result.lock().unwrap().clone()
    }

    /// Waits until the node ends by itself; returns how.
    pub fn wait_end(&self, what: &str) -> Result<(), String> {
        super::wait_until(what, || self.ended())
    }

    /// Asks the node to shut down (as SIGINT does) and waits for it.
    pub fn stop(&mut self) -> Result<(), String> {
        self.shutdown.store(true, Ordering::SeqCst);
        let start = Instant::now();
        while self.ended().is_none() {
            assert!(start.elapsed() < WAIT, "node did not shut down within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.ended().unwrap_or(Ok(()))
    }
}

impl Drop for InProcessNode {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
