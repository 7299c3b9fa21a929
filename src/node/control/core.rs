//! What the arm and navigation controllers share: goal and step types, and the [`ControlCore`]
//! interface the control-loop driver ([`crate::node::wiring::driver`]) runs them through.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ros::action::GoalOutcome;
use crate::ros::msgs::sensor_msgs::JointState;
use crate::runtime::preprocess::RgbImage;

use crate::node::diagnostics::Counters;
use crate::node::input::CameraFrame;
use crate::node::slot::LatestSlot;
use crate::node::wiring::worker::{JobMarks, JobResult};

/// What the node is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeState {
    Idle,
    Running,
    /// Running a goal but holding the robot, with the reason.
    Holding(String),
    /// The e-stop (or the dead-man timeout) holds the robot and refuses goals; the reason says which.
    EStopped(String),
}

impl NodeState {
    pub fn label(&self) -> String {
        match self {
            NodeState::Idle => "idle".into(),
            NodeState::Running => "running".into(),
            NodeState::Holding(r) | NodeState::EStopped(r) => format!("holding: {r}"),
        }
    }

    /// True while the robot is held (a hold condition or the e-stop).
    pub fn is_holding(&self) -> bool {
        matches!(self, NodeState::Holding(_) | NodeState::EStopped(_))
    }
}

/// Longest text taken from a message into a log line, a hold reason or a goal result.
pub const MESSAGE_TEXT_CHARS: usize = 200;

/// `s` cut to at most `max` characters (with the number cut), for logs of message-derived text:
/// a 10 MB instruction or a joint name list of 10⁶ entries costs one short line.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(s),
        Some((cut, _)) => {
            let rest = s[cut..].chars().count();
            std::borrow::Cow::Owned(format!("{}… ({rest} more characters)", &s[..cut]))
        }
    }
}

/// Lets a repeated warning through at most once per `every`, counting what it held back.
#[derive(Clone, Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a warning may be logged now (`n` were held back since the last one).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now.saturating_duration_since(t) < self.every) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A goal that started: its epoch, the goal it preempted, and what to send now (the stop of the
/// preempted motion).
#[derive(Debug)]
pub struct Started<C> {
    pub epoch: u64,
    pub preempted: Option<Ended>,
    pub tick: Tick<C>,
}

/// A goal as the cores see it.
#[derive(Clone, Debug, Default)]
pub struct GoalSpec {
    pub instruction: String,
    /// 0: no limit.
    pub max_steps: u32,
    pub time_limit: Option<Duration>,
    /// `""` (node default), `"ensemble"` or `"open_loop"`.
    pub mode: String,
}

/// How a goal ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub epoch: u64,
    pub status: GoalOutcome,
    /// One of the `ExecuteResult` outcome constants.
    pub outcome: u8,
    pub steps: u32,
    pub reason: String,
}

/// Per-step feedback.
#[derive(Clone, Debug, PartialEq)]
pub struct StepFeedback {
    pub epoch: u64,
    pub step: u32,
    pub latent_ids: Vec<i64>,
    pub latency_ms: f32,
    pub commanded: Vec<f64>,
}

/// A camera frame with the wall-clock time the transport handed it over (for the overhead trace).
#[derive(Clone, Debug)]
pub struct InFrame {
    pub frame: CameraFrame,
    pub received: Instant,
}

/// The newest camera frame, shared by the input thread (which puts) and the control loop.
pub type FrameInbox = Arc<Mutex<LatestSlot<InFrame>>>;

/// Wall-clock marks of one frame's way from the transport to the command it produced. The node's
/// overhead is everything but the model and the wait for a worker busy with an older frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameTrace {
    /// Arrival, hand-over and the worker's marks.
    pub job: JobMarks,
    /// The control loop took the result.
    pub collected: Instant,
}

impl FrameTrace {
    /// The trace of `r`, taken by the control loop at `collected`.
    pub fn of(r: &JobResult, collected: Instant) -> Self {
        Self {
            job: r.marks,
            collected,
        }
    }

    /// Overhead outside the model when the command went out at `sent`.
    pub fn overhead(&self, sent: Instant) -> Duration {
        let j = &self.job;
        sent.saturating_duration_since(j.received)
            .saturating_sub(j.model)
            .saturating_sub(j.worker_wait)
    }

    /// The overhead's parts ([`crate::node::diagnostics::OVERHEAD_PARTS`]): arrival → submission (less the wait for a busy
    /// worker), submission → pick-up, decoding, model end → taken by the loop, taken → sent.
    pub fn parts(&self, sent: Instant) -> [Duration; 5] {
        let d = |a: Instant, b: Instant| b.saturating_duration_since(a);
        let j = &self.job;
        [
            d(j.received, j.submitted).saturating_sub(j.worker_wait),
            d(j.submitted, j.started),
            d(j.started, j.decoded),
            d(j.finished, self.collected),
            d(self.collected, sent),
        ]
    }
}

/// Everything one control step (or one reaction to an input) produced.
#[derive(Clone, Debug)]
pub struct Tick<C> {
    /// What goes to the actuators now.
    pub command: Option<C>,
    /// When the command takes effect, if later than now (a trajectory stamped for the next step).
    pub starts_at: Option<Instant>,
    /// False in dry-run mode: publish everything except actuator commands.
    pub actuate: bool,
    pub feedback: Option<StepFeedback>,
    pub ended: Option<Ended>,
    /// Latent tokens of an inference that finished now.
    pub latent_ids: Option<Vec<i64>>,
    pub preview: Option<RgbImage>,
    /// Set on the first command computed from a new inference.
    pub trace: Option<FrameTrace>,
}

impl<C> Default for Tick<C> {
    fn default() -> Self {
        Self {
            command: None,
            starts_at: None,
            actuate: false,
            feedback: None,
            ended: None,
            latent_ids: None,
            preview: None,
            trace: None,
        }
    }
}

/// What the last inference told the operator (feedback carries it on every step).
#[derive(Clone, Debug, Default)]
pub struct LastInference {
    pub latent_ids: Vec<i64>,
    pub latency_ms: f32,
}

impl LastInference {
    /// Notes a finished inference in the counters, for feedback, and for monitoring in `tick`.
    pub fn note<C>(
        &mut self,
        latency: Duration,
        latent_ids: Vec<i64>,
        preview: Option<RgbImage>,
        counters: &mut Counters,
        tick: &mut Tick<C>,
    ) {
        counters.record_latency(latency);
        self.latency_ms = (latency.as_secs_f64() * 1e3) as f32;
        self.latent_ids.clone_from(&latent_ids);
        tick.latent_ids = Some(latent_ids);
        tick.preview = preview;
    }
}

/// A controller the driver can run: the ROS-agnostic decision logic of one embodiment.
///
/// `tick` runs once per control period; `react` runs whenever an input or an inference result
/// arrives in between, so a new frame reaches the model and a new chunk reaches the robot without
/// waiting for the next period; `supervise` runs on every wake-up of the loop (at least every
/// 50 ms of wall time, whatever `/clock` does) and enters a hold the moment a condition appears.
/// Every call that stops the robot returns the stop in its [`Tick`].
pub trait ControlCore {
    /// What the actuators receive.
    type Command: Clone;

    fn counters(&self) -> &Counters;
    fn counters_mut(&mut self) -> &mut Counters;
    fn state(&self) -> &NodeState;
    /// Epoch of the running goal.
    fn goal_epoch(&self) -> Option<u64>;
    /// Instruction of the running goal.
    fn running_instruction(&self) -> Option<&str>;
    /// Starts a goal (preempting the running one, whose motion is stopped) or says why not.
    fn start_goal(&mut self, spec: GoalSpec, now: Instant) -> Result<Started<Self::Command>, String>;
    /// Cancels goal `epoch`: the tick carries its end and the stop (nothing if it is not running).
    fn cancel(&mut self, epoch: u64, now: Instant) -> Tick<Self::Command>;
    /// The stop for shutdown: what holds the robot where it is now (`None`: nothing to send).
    fn stop_command(&mut self, now: Instant) -> Option<Self::Command>;
    /// Where the input thread puts camera frames.
    fn frame_inbox(&self) -> FrameInbox;
    /// A joint state arrived; malformed ones are reported (default: ignored).
    fn on_joint_state(&mut self, _js: &JointState, _now: Instant) -> Result<(), String> {
        Ok(())
    }
    /// The e-stop was engaged (with the reason: the topic or the dead-man timeout) or released.
    fn set_estop(&mut self, engaged: Option<&str>, now: Instant) -> Tick<Self::Command>;
    /// Calls `notify` (from the worker thread) whenever an inference result is ready.
    fn set_result_notifier(&mut self, notify: Box<dyn Fn() + Send>);
    /// One control period at `now`.
    fn tick(&mut self, now: Instant) -> Tick<Self::Command>;
    /// Between periods: start inference on a new frame, use a finished one.
    fn react(&mut self, now: Instant) -> Tick<Self::Command>;
    /// Hold conditions checked on every wake-up (wall-clock input watchdogs, inference deadline).
    fn supervise(&mut self, now: Instant) -> Tick<Self::Command>;
}

fn lock(inbox: &FrameInbox) -> std::sync::MutexGuard<'_, LatestSlot<InFrame>> {
    // A panic elsewhere while holding the lock cannot leave the slot inconsistent.
    inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Puts a frame that arrived at `now` (control clock); an untaken older frame is dropped.
pub fn put_frame(inbox: &FrameInbox, frame: CameraFrame, now: Instant) {
    lock(inbox).put(
        InFrame {
            frame,
            received: Instant::now(),
        },
        now,
    );
}

/// Age of the newest frame (None: no frame ever arrived).
pub fn frame_age(inbox: &FrameInbox, now: Instant) -> Option<Duration> {
    lock(inbox).age(now)
}

/// Takes the newest untaken frame, with its arrival on the control clock.
pub fn take_frame(inbox: &FrameInbox) -> Option<(InFrame, Instant)> {
    let mut slot = lock(inbox);
    let at = slot.last_arrival()?;
    slot.take().map(|f| (f, at))
}

/// True if an untaken frame waits.
pub fn has_new_frame(inbox: &FrameInbox) -> bool {
    lock(inbox).has_new()
}

/// Frames received and dropped (replaced before use) so far.
pub fn frame_counts(inbox: &FrameInbox) -> (u64, u64) {
    let slot = lock(inbox);
    (slot.received(), slot.dropped())
}

/// Why an instruction cannot start a goal, if it cannot.
pub fn check_instruction(text: &str, max_chars: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("empty instruction".into());
    }
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(format!(
            "instruction has {chars} characters, at most {max_chars} are accepted"
        ));
    }
    Ok(())
}

/// Why a goal cannot start with the camera as it is (no frame yet or a stale one), if it cannot.
pub fn check_camera(inbox: &FrameInbox, now: Instant, timeout: Duration) -> Result<(), String> {
    match frame_age(inbox, now) {
        None => Err("no camera image received yet".into()),
        Some(a) if a > timeout => Err(format!("camera image is stale ({:.2} s old)", a.as_secs_f64())),
        _ => Ok(()),
    }
}

/// The hold reason when the camera went quiet while running: no image within `timeout` on the
/// control clock, or on the wall clock (so a stalled `/clock` cannot hide a dead camera).
pub fn camera_stale(inbox: &FrameInbox, now: Instant, timeout: Duration) -> Option<String> {
    let (age, wall) = {
        let slot = lock(inbox);
        (slot.age(now), slot.wall_age())
    };
    // The reason names the timeout, not the age: it stays the same while the hold lasts (one log
    // line per hold, not one per wake-up).
    let t = timeout.as_secs_f64();
    if age.is_some_and(|a| a > timeout) {
        return Some(format!("camera stale (no image within {t:.2} s)"));
    }
    wall.filter(|a| *a > timeout)
        .map(|_| format!("camera stale (no image within {t:.2} s of wall time)"))
}
