//! Shared helpers of the node end-to-end tests: checkpoint generation, spawning a node binary with
//! `--ros-args` exactly as launch_ros passes them, a synthetic camera and bounded waits.
#![allow(dead_code)]
pub mod inproc;
pub mod jtc;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use univla_ros::model::synthetic::{write_checkpoint, HeadVariant, SyntheticSpec};
use univla_ros::ros::msgs::sensor_msgs::{Image, JointState};
use univla_ros::ros::msgs::RosMessage;
use univla_ros::ros::{require_private_netns, Qos, RosArgs, RosContext, RosNode, RosSubscription};

/// Upper bound of any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(90);
/// Longest a synthetic publisher runs.
const PUBLISHER_LIFETIME: Duration = Duration::from_secs(300);

pub fn guard() {
    if let Err(msg) = require_private_netns() {
        panic!("{msg}");
    }
}

/// A tiny random checkpoint with all three heads.
pub fn checkpoint(dir: &Path) -> PathBuf {
    let ckpt = dir.join("ckpt");
    write_checkpoint(
        &ckpt,
        &SyntheticSpec::tiny(),
        &[HeadVariant::RealWorld, HeadVariant::Libero, HeadVariant::R2r],
        7,
    )
    .unwrap();
    ckpt
}

pub fn peer(ctx: &RosContext, name: &str) -> RosNode {
    let (args, _) = RosArgs::parse(["test"]).unwrap();
    RosNode::new(ctx, &args, name, "/").unwrap()
}

/// Kills the child on drop if it still runs (by its own handle).
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Sends SIGINT (as Ctrl-C in `ros2 launch`) and waits for a clean exit.
    pub fn interrupt_and_wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let start = Instant::now();
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(
                start.elapsed() < timeout,
                "node did not exit within {timeout:?} after SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the child to exit by itself (bad config), returning status and stderr.
    pub fn wait_exit(&mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.0.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return (st, err);
            }
            assert!(start.elapsed() < timeout, "node did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Spawns a node binary the way launch_ros does: `--ros-args -r __node:= -r __ns:= --params-file`.
pub fn spawn(bin: &str, domain: u16, ros_args: &[String], capture_stderr: bool) -> ChildGuard {
    spawn_inner(bin, domain, ros_args, capture_stderr, &[])
}

/// [`spawn`] with extra environment variables (e.g. `ROS_DISTRO`); stderr is inherited.
pub fn spawn_with_env(bin: &str, domain: u16, ros_args: &[String], env: &[(&str, &str)]) -> ChildGuard {
    spawn_inner(bin, domain, ros_args, false, env)
}

fn spawn_inner(bin: &str, domain: u16, ros_args: &[String], capture_stderr: bool, env: &[(&str, &str)]) -> ChildGuard {
    let mut cmd = Command::new(bin);
    cmd.envs(env.iter().copied());
    cmd.arg("--ros-args")
        .args(ros_args)
        .env("ROS_DOMAIN_ID", domain.to_string())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(if capture_stderr {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
    ChildGuard(cmd.spawn().unwrap())
}

/// Publishes a padded bgr8 test pattern and joint states until stopped (bounded lifetime).
pub struct SyntheticRobot {
    stop: Arc<AtomicBool>,
    pub images: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// The synthetic camera's frames.
#[derive(Clone, Copy, Debug)]
pub struct CameraSpec {
    pub width: u32,
    pub height: u32,
    /// `rgb8` or `bgr8` (3 bytes per pixel).
    pub encoding: &'static str,
    /// Bytes of padding after each row.
    pub padding: u32,
    /// Stamp frames with the system time (for transport latency).
    pub stamped: bool,
}

impl CameraSpec {
    /// A small padded bgr8 frame (fast tests).
    pub const SMALL: CameraSpec = CameraSpec {
        width: 64,
        height: 48,
        encoding: "bgr8",
        padding: 8,
        stamped: false,
    };
}

impl SyntheticRobot {
    pub fn start(domain: u16, image_topic: &str, joint_topic: Option<(&str, Vec<String>, f64)>, rate_hz: f64) -> Self {
        Self::start_with(
            domain,
            image_topic,
            joint_topic,
            rate_hz,
            CameraSpec::SMALL,
            PUBLISHER_LIFETIME,
        )
    }

    pub fn start_with(
        domain: u16,
        image_topic: &str,
        joint_topic: Option<(&str, Vec<String>, f64)>,
        rate_hz: f64,
        spec: CameraSpec,
        lifetime: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let images = Arc::new(AtomicBool::new(true));
        let (s, im) = (Arc::clone(&stop), Arc::clone(&images));
        let image_topic = image_topic.to_string();
        let joints = joint_topic.map(|(t, n, v)| (t.to_string(), n, v));
        let handle = std::thread::spawn(move || {
            let ctx = RosContext::with_domain(domain).unwrap();
            let mut node = peer(&ctx, "synthetic_robot");
            let cam = node
                .create_publisher::<Image>(&image_topic, Qos::sensor_data())
                .unwrap();
            let js = joints
                .as_ref()
                .map(|(t, _, _)| node.create_publisher::<JointState>(t, Qos::default_profile()).unwrap());
            let (w, h) = (spec.width, spec.height);
            let step = w * 3 + spec.padding;
            let start = Instant::now();
            let period = Duration::from_secs_f64(1.0 / rate_hz);
            let mut next = start;
            let mut k = 0u8;
            while !s.load(Ordering::SeqCst) && start.elapsed() < lifetime {
                if im.load(Ordering::SeqCst) {
                    let mut data = vec![0u8; (step * h) as usize];
                    for (i, b) in data.iter_mut().enumerate() {
                        *b = (i as u8).wrapping_mul(31).wrapping_add(k);
                    }
                    let mut header = univla_ros::ros::msgs::std_msgs::Header::default();
                    if spec.stamped {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap();
                        header.stamp.sec = now.as_secs() as i32;
                        header.stamp.nanosec = now.subsec_nanos();
                    }
                    cam.publish(Image {
                        header,
                        height: h,
                        width: w,
                        encoding: spec.encoding.into(),
                        step,
                        data,
                        ..Default::default()
                    })
                    .unwrap();
                }
                if let (Some(p), Some((_, names, v))) = (&js, &joints) {
                    p.publish(JointState {
                        name: names.clone(),
                        position: vec![*v; names.len()],
                        ..Default::default()
                    })
                    .unwrap();
                }
                k = k.wrapping_add(1);
                next += period;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        Self {
            stop,
            images,
            handle: Some(handle),
        }
    }
}

impl Drop for SyntheticRobot {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Collects every message of a subscription on a background thread.
pub struct Collector<T> {
    pub items: Arc<std::sync::Mutex<Vec<(Instant, T)>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl<T: RosMessage> Collector<T> {
    pub fn start(domain: u16, topic: &str, qos: Qos) -> Self {
        let items = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (it, s) = (Arc::clone(&items), Arc::clone(&stop));
        let topic = topic.to_string();
        let handle = std::thread::spawn(move || {
            let ctx = RosContext::with_domain(domain).unwrap();
            let mut node = peer(&ctx, "collector");
            let sub: RosSubscription<T> = node.create_subscription(&topic, qos).unwrap();
            let start = Instant::now();
            while !s.load(Ordering::SeqCst) && start.elapsed() < PUBLISHER_LIFETIME {
                while let Ok(Some(m)) = sub.try_take() {
                    it.lock().unwrap().push((Instant::now(), m));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self {
            items,
            stop,
            handle: Some(handle),
        }
    }

    pub fn snapshot(&self) -> Vec<(Instant, T)> {
        self.items.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for some message received after `since`; returns it.
    pub fn wait_for(&self, since: Instant, what: &str, pred: impl Fn(&T) -> bool) -> T {
        let start = Instant::now();
        loop {
            if let Some((_, m)) = self.snapshot().into_iter().find(|(t, m)| *t >= since && pred(m)) {
                return m;
            }
            assert!(start.elapsed() < WAIT, "no {what} within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl<T> Drop for Collector<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {WAIT:?}"),
    }
}

/// Polls `f` every 20 ms until it returns a value; panics after [`WAIT`].
pub fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < WAIT, "no {what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl<T: RosMessage> Collector<T> {
    /// Waits until at least `n` messages received after `since` satisfy `pred`; returns them, in
    /// arrival order.
    pub fn wait_count(&self, since: Instant, n: usize, what: &str, pred: impl Fn(&T) -> bool) -> Vec<T> {
        wait_until(what, || {
            let found: Vec<T> = self
                .snapshot()
                .into_iter()
                .filter(|(t, m)| *t >= since && pred(m))
                .map(|(_, m)| m)
                .collect();
            (found.len() >= n).then_some(found)
        })
    }
}

/// How long one discovery attempt waits before re-checking the match state.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);

/// Waits until the action server is matched. ros2-client's wait resolves on graph events, which
/// its spinner drops when a waiter's 8-event channel is full; retrying re-reads the match state.
pub async fn wait_for_action_server<A: univla_ros::ros::msgs::RosAction>(
    client: &univla_ros::ros::action::RosActionClient<A>,
    node: &RosNode,
) {
    let start = Instant::now();
    while tokio::time::timeout(DISCOVERY_RETRY, client.wait_for_server(node))
        .await
        .is_err()
    {
        assert!(start.elapsed() < WAIT, "action server not discovered within {WAIT:?}");
    }
}
