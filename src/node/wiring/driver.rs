//! The control loop both nodes run: it wakes on every input (frame, joint state, e-stop, goal,
//! cancel, finished inference) and at every control period, feeds the [`ControlCore`], and
//! publishes what it returns. Inputs reach the core the moment they arrive, so a frame goes to an
//! idle model at once and a new chunk goes out at once; the period only paces the steps.
//!
//! Stops never wait for a step: an e-stop change is handled first on the wake-up it causes, and
//! its hold is published before anything else; the dead-man heartbeat, the wall-clock input
//! watchdogs and the worker's health are checked on every wake-up (at least every
//! [`MAX_WAIT`] of wall time, whatever `/clock` does).
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ros::action::{GoalId, GoalOutcome, RosActionServer};
use crate::ros::msgs::diagnostic_msgs::{DiagnosticArray, DiagnosticStatus};
use crate::ros::msgs::sensor_msgs::Image;
use crate::ros::msgs::std_msgs::Header;
use crate::ros::msgs::univla_msgs::{Execute, ExecuteResult, LatentActions};
use crate::ros::msgs::RosMessage;
use crate::ros::{Qos, RosNode, RosPublisher};

use crate::node::config::{CommonConfig, FaultPolicy};
use crate::node::control::core::{ControlCore, Ended, GoalSpec, Throttle, Tick};
use crate::node::control::stop::STOP_REPEATS;
use crate::node::control::timebase::ControlClock;
use crate::node::diagnostics::Counters;
use crate::node::error::NodeError;
use crate::node::wiring::events::{Batch, EventQueue};
use crate::node::wiring::monitor;
use crate::node::wiring::pump::{self, CameraSub, Inputs};
use crate::node::wiring::ros_io::{self, ActionBridge, ActionEvent};

/// Best-effort reader with a small queue: matches reliable and best-effort publishers.
const BEST_EFFORT_10: Qos = Qos {
    reliable: false,
    transient_local: false,
    depth: 10,
};
/// Longest sleep: a shutdown request, a silent dead-man heartbeat or a stalled worker is seen
/// within this much wall time.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// How long shutdown waits for clients to fetch final results.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// Spacing of the repeated holds at shutdown (within [`SHUTDOWN_GRACE`]).
const SHUTDOWN_REPEAT_MIN: Duration = Duration::from_millis(20);
const SHUTDOWN_REPEAT_MAX: Duration = Duration::from_millis(100);
/// A repeated input warning (malformed joint states) is logged at most this often.
const INPUT_WARN_EVERY: Duration = Duration::from_secs(5);

/// Logs a publish failure instead of stopping the control loop.
pub fn publish<T: RosMessage>(p: &RosPublisher<T>, msg: T) {
    if let Err(e) = p.publish(msg) {
        tracing::warn!("{e}");
    }
}

/// The embodiment's output side: turns a core command into messages.
pub trait Actuator<C> {
    /// Sends `cmd` stamped with `header`; `actuate` false (dry run) sends only monitoring,
    /// `monitoring` false only actuator messages.
    fn send(&self, cmd: &C, header: &Header, actuate: bool, monitoring: bool);

    /// Why a goal cannot start because the actuators cannot be reached, if it cannot (a
    /// controller that is not on the graph would miss the motion and the stop alike).
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The endpoints every policy node has besides its actuators (and `/rosout` for its logs).
pub struct NodeIo {
    pub inputs: Inputs,
    pub server: RosActionServer<Execute>,
    preview: RosPublisher<Image>,
    latent: RosPublisher<LatentActions>,
    diagnostics: RosPublisher<DiagnosticArray>,
}

impl NodeIo {
    /// Creates the camera, e-stop and instruction subscriptions (and joint states when
    /// `joint_topic` is given), the monitoring publishers and the `~/execute` action server.
    /// The e-stop is read reliable + transient-local and best-effort (see the readers below).
    pub fn create(node: &mut RosNode, c: &CommonConfig, joint_topic: Option<&str>) -> Result<Self, NodeError> {
        crate::ros::logging::attach_rosout(node)?;
        let qos = if c.image_reliable {
            Qos::default_profile()
        } else {
            Qos::sensor_data()
        };
        let camera = if c.compressed {
            CameraSub::Compressed(node.create_subscription(&c.image_topic, qos)?)
        } else {
            CameraSub::Raw(node.create_subscription(&c.image_topic, qos)?)
        };
        let joints = match joint_topic {
            Some(t) => Some(node.create_subscription(t, Qos::sensor_data())?),
            None => None,
        };
        let instruction = match &c.instruction_topic {
            Some(t) => Some(node.create_subscription(t, BEST_EFFORT_10)?),
            None => None,
        };
        Ok(Self {
            inputs: Inputs {
                camera,
                joints,
                // Two readers: a reliable transient-local one gets a latched `true` published
                // before start-up; a best-effort one matches every publisher (a transient-local
                // reader does not match volatile publishers such as `ros2 topic pub`'s).
                estop: vec![
                    node.create_subscription(&c.estop_topic, Qos::transient_local())?,
                    node.create_subscription(&c.estop_topic, BEST_EFFORT_10)?,
                ],
                instruction,
            },
            server: RosActionServer::<Execute>::with_result_timeout(node, "~/execute", c.result_timeout)?,
            preview: node.create_publisher("~/input_image", Qos::sensor_data())?,
            latent: node.create_publisher("~/latent_actions", Qos::default_profile())?,
            diagnostics: node.create_publisher("/diagnostics", Qos::default_profile())?,
        })
    }
}

impl NodeIo {
    /// The resolved (remapped) input topics and the action, for the "ready" log line.
    pub fn describe(&self) -> String {
        let camera = match &self.inputs.camera {
            CameraSub::Raw(s) => s.topic(),
            CameraSub::Compressed(s) => s.topic(),
        };
        let mut out = format!("camera {camera}");
        if let Some(j) = &self.inputs.joints {
            out.push_str(&format!(", joint states {}", j.topic()));
        }
        if let Some(e) = self.inputs.estop.first() {
            out.push_str(&format!(", e-stop {}", e.topic()));
        }
        if let Some(i) = &self.inputs.instruction {
            out.push_str(&format!(", instructions {}", i.topic()));
        }
        out
    }
}

/// Why the e-stop holds the robot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EstopCause {
    /// `true` on the topic.
    Topic,
    /// Dead-man mode, and no `false` has arrived yet.
    NoHeartbeat,
    /// Dead-man mode, and the last `false` is older than the timeout.
    HeartbeatLate,
}

/// The e-stop as the loop sees it: the topic's last value and the dead-man heartbeat.
struct EstopState {
    /// Last value on the topic.
    topic: bool,
    /// Wall time of the last `false` (the heartbeat); none yet holds in dead-man mode.
    heartbeat: Option<Instant>,
    /// Dead-man timeout (zero: off).
    timeout: Duration,
    /// What the core was last told (`Some`: engaged).
    applied: Option<EstopCause>,
}

impl EstopState {
    /// Why the robot must be held by the e-stop now, if it must (checked on every wake-up, so
    /// it allocates nothing).
    fn cause(&self, wall: Instant) -> Option<EstopCause> {
        if self.topic {
            return Some(EstopCause::Topic);
        }
        if self.timeout.is_zero() {
            return None;
        }
        match self.heartbeat {
            None => Some(EstopCause::NoHeartbeat),
            Some(h) => (wall.saturating_duration_since(h) > self.timeout).then_some(EstopCause::HeartbeatLate),
        }
    }

    /// The reason shown to operators for `cause`.
    fn reason(&self, cause: EstopCause, topic_name: &str) -> String {
        match cause {
            EstopCause::Topic => format!("e-stop engaged on {topic_name}"),
            EstopCause::NoHeartbeat => format!("dead-man mode: no e-stop heartbeat (false) on {topic_name} yet"),
            EstopCause::HeartbeatLate => format!(
                "dead-man mode: no e-stop heartbeat (false) on {topic_name} within {:.2} s",
                self.timeout.as_secs_f64()
            ),
        }
    }
}

/// The loop's state around the core.
struct Driver<'a, C: ControlCore, A> {
    core: C,
    actuator: A,
    cfg: &'a CommonConfig,
    name: String,
    clock: ControlClock,
    bridge: ActionBridge,
    preview: RosPublisher<Image>,
    latent: RosPublisher<LatentActions>,
    diagnostics: RosPublisher<DiagnosticArray>,
    goal_ids: HashMap<u64, GoalId>,
    estop: EstopState,
    estop_topic: String,
    /// A fault seen with `on_fault: exit`: the loop ends and the node exits non-zero.
    exit_fault: Option<String>,
    joint_warnings: Throttle,
}

impl<C: ControlCore, A: Actuator<C::Command>> Driver<'_, C, A> {
    fn header(&self, stamp_at: Option<Instant>) -> Header {
        Header {
            stamp: stamp_at.map_or_else(|| self.clock.stamp(), |t| self.clock.stamp_at(t)),
            frame_id: self.cfg.frame_id.clone(),
        }
    }

    fn end_goal(&mut self, e: Ended) {
        if e.status == GoalOutcome::Aborted {
            tracing::warn!("goal {} aborted: {}", e.epoch, e.reason);
        } else {
            tracing::info!("goal {} ended {:?}: {}", e.epoch, e.status, e.reason);
        }
        if let Some(id) = self.goal_ids.remove(&e.epoch) {
            self.bridge
                .finish(id, e.status, ros_io::result_msg(e.outcome, e.steps, &e.reason));
        }
    }

    fn start(&mut self, spec: GoalSpec, id: Option<GoalId>) {
        let now = self.clock.now();
        let ready = if self.cfg.dry_run {
            Ok(())
        } else {
            self.actuator.ready()
        };
        match ready.and_then(|()| self.core.start_goal(spec, now)) {
            Ok(started) => {
                let epoch = started.epoch;
                // The preempted motion's stop first, then the bookkeeping.
                self.emit(started.tick);
                match id {
                    Some(id) => {
                        self.bridge.accept(id);
                        self.goal_ids.insert(epoch, id);
                        tracing::info!("accepted goal {id} as episode {epoch}");
                    }
                    None => tracing::info!("instruction topic started episode {epoch}"),
                }
                if let Some(e) = started.preempted {
                    self.end_goal(e);
                }
            }
            Err(reason) => match id {
                Some(id) => {
                    tracing::warn!("rejected goal {id}: {reason}");
                    self.bridge.reject(id);
                }
                None => tracing::warn!("instruction ignored: {reason}"),
            },
        }
    }

    /// Tells the core about an e-stop change (engaged, released, or a new reason) and sends
    /// what it returns at once.
    fn apply_estop(&mut self, wall: Instant) {
        let cause = self.estop.cause(wall);
        if cause == self.estop.applied {
            return;
        }
        let reason = cause.map(|c| self.estop.reason(c, &self.estop_topic));
        let tick = self.core.set_estop(reason.as_deref(), self.clock.now());
        self.estop.applied = cause;
        self.emit(tick);
    }

    fn handle_action(&mut self, ev: ActionEvent) {
        match ev {
            ActionEvent::Goal { id, goal } => {
                let spec = GoalSpec {
                    time_limit: ros_io::time_limit(&goal),
                    instruction: goal.instruction,
                    max_steps: goal.max_steps,
                    mode: goal.mode,
                };
                self.start(spec, Some(id));
            }
            ActionEvent::Cancel { key, goals } => {
                let current = self
                    .core
                    .goal_epoch()
                    .and_then(|e| self.goal_ids.get(&e).map(|id| (e, *id)));
                match current.filter(|(_, id)| goals.contains(id)) {
                    Some((epoch, id)) => {
                        let tick = self.core.cancel(epoch, self.clock.now());
                        self.bridge.answer_cancel(key, vec![id]);
                        self.emit(tick);
                    }
                    None => self.bridge.answer_cancel(key, vec![]),
                }
            }
        }
    }

    /// Handles everything that arrived: e-stop changes first (each one's stop is sent before
    /// anything else is looked at), then inputs, then requests.
    fn handle(&mut self, batch: Batch) {
        let wall = Instant::now();
        if batch.heartbeat.is_some() {
            self.estop.heartbeat = batch.heartbeat;
        }
        for engaged in batch.estop {
            self.estop.topic = engaged;
            self.apply_estop(wall);
        }
        let counters = self.core.counters_mut();
        counters.events_dropped += batch.replaced;
        for d in batch.transport {
            counters.transport.push(d);
        }
        for (js, at) in &batch.joints {
            if let Err(e) = self.core.on_joint_state(js, *at) {
                if let Some(held_back) = self.joint_warnings.allow(wall) {
                    tracing::warn!("{e} ({held_back} similar warnings held back)");
                }
            }
        }
        if let Some(text) = batch.instruction {
            // Repeating the running task's text does not restart it.
            if self.core.running_instruction() != Some(text.as_str()) {
                let spec = GoalSpec {
                    instruction: text,
                    ..Default::default()
                };
                self.start(spec, None);
            }
        }
        for ev in batch.actions {
            self.handle_action(ev);
        }
    }

    /// Publishes what the core produced.
    fn emit(&mut self, tick: Tick<C::Command>) {
        let monitoring = self.cfg.publish_monitoring;
        if let Some(cmd) = &tick.command {
            let header = self.header(tick.starts_at);
            self.actuator.send(cmd, &header, tick.actuate, monitoring);
            if let Some(trace) = tick.trace {
                let sent = Instant::now();
                let counters = self.core.counters_mut();
                counters.overhead.push(trace.overhead(sent));
                for (w, d) in counters.overhead_parts.iter_mut().zip(trace.parts(sent)) {
                    w.push(d);
                }
            }
        }
        if let Some(fb) = tick.feedback {
            if let Some(id) = self.goal_ids.get(&fb.epoch) {
                self.bridge.feedback(
                    *id,
                    ros_io::feedback_msg(fb.step, &fb.latent_ids, fb.latency_ms, fb.commanded),
                );
            }
        }
        if let Some(e) = tick.ended {
            self.end_goal(e);
        }
        if monitoring && (tick.latent_ids.is_some() || tick.preview.is_some()) {
            let header = self.header(None);
            if let Some(ids) = &tick.latent_ids {
                publish(&self.latent, monitor::latent_msg(&header, ids));
            }
            if let Some(img) = &tick.preview {
                publish(&self.preview, monitor::preview_image(&header, img));
            }
        }
        if self.cfg.on_fault == FaultPolicy::Exit && self.exit_fault.is_none() {
            self.exit_fault = self.core.counters().fault.clone();
        }
    }

    fn publish_diagnostics(&mut self, now: Instant) {
        let counters = self.core.counters_mut();
        counters.update_rate(now);
        let state = self.core.state().clone();
        let level = if self.core.counters().fault.is_some() {
            DiagnosticStatus::ERROR
        } else if state.is_holding() {
            DiagnosticStatus::WARN
        } else {
            DiagnosticStatus::OK
        };
        let msg = self
            .core
            .counters()
            .to_msg(&self.name, &state.label(), level, self.header(None));
        publish(&self.diagnostics, msg);
    }

    fn run(&mut self, queue: &EventQueue, shutdown: &AtomicBool) {
        let period = self.cfg.period();
        let mut next_tick = self.clock.now();
        // Diagnostics run on the wall clock: operators see a paused simulation too.
        let mut next_diag = Instant::now();
        // A dead-man e-stop holds from start-up until the first heartbeat.
        self.apply_estop(Instant::now());
        while !shutdown.load(Ordering::SeqCst) && self.exit_fault.is_none() {
            let now = self.clock.now();
            let wall = Instant::now();
            if wall >= next_diag {
                next_diag = wall + self.cfg.diagnostics_period;
                self.publish_diagnostics(now);
            }
            if now >= next_tick {
                let work = Instant::now();
                let tick = self.core.tick(now);
                self.emit(tick);
                self.core.counters_mut().loop_work.push(work.elapsed());
                // Never run missed steps in a burst: a late step moves the schedule.
                next_tick += period;
                if next_tick <= now {
                    next_tick = now + period;
                }
            }
            let batch = queue.wait(self.clock.wait_for(next_tick, MAX_WAIT));
            let work = Instant::now();
            let woke = !batch.is_empty();
            self.handle(batch);
            self.apply_estop(Instant::now());
            let tick = self.core.supervise(self.clock.now());
            self.emit(tick);
            if woke {
                let tick = self.core.react(self.clock.now());
                self.emit(tick);
                self.core.counters_mut().loop_work.push(work.elapsed());
            }
        }
    }

    /// Holds the robot (repeated over the grace period, so one lost message does not matter),
    /// aborts the running goal and gives clients time to fetch results.
    fn shut_down(&mut self, why: &str) {
        tracing::info!("shutting down ({why}): holding the robot");
        let header = self.header(None);
        let stop = self.core.stop_command(self.clock.now());
        let actuate = !self.cfg.dry_run;
        if let Some(cmd) = &stop {
            self.actuator.send(cmd, &header, actuate, false);
        }
        if let Some(epoch) = self.core.goal_epoch() {
            if let Some(id) = self.goal_ids.remove(&epoch) {
                self.bridge.finish(
                    id,
                    GoalOutcome::Aborted,
                    ros_io::result_msg(ExecuteResult::ABORTED, 0, &format!("node shutting down ({why})")),
                );
            }
        }
        let spacing = self.cfg.period().clamp(SHUTDOWN_REPEAT_MIN, SHUTDOWN_REPEAT_MAX);
        let start = Instant::now();
        if let Some(cmd) = &stop {
            for _ in 0..STOP_REPEATS {
                std::thread::sleep(spacing);
                self.actuator.send(cmd, &self.header(None), actuate, false);
            }
        }
        std::thread::sleep(SHUTDOWN_GRACE.saturating_sub(start.elapsed()));
    }
}

/// Runs `core` with `actuator` on `node` until `shutdown` is set (SIGINT/SIGTERM), then holds the
/// robot, aborts the running goal and returns the final counters. With `on_fault: exit`, a fault
/// inside the node ends the loop the same way and returns [`NodeError::Fault`].
pub fn run<C, A>(
    node: &RosNode,
    io: NodeIo,
    mut core: C,
    actuator: A,
    cfg: &CommonConfig,
    shutdown: Arc<AtomicBool>,
) -> Result<Counters, NodeError>
where
    C: ControlCore,
    A: Actuator<C::Command>,
{
    let clock = ControlClock::new(node.clock());
    let queue = Arc::new(EventQueue::default());
    let q = Arc::clone(&queue);
    core.set_result_notifier(Box::new(move || q.inferred()));
    let q = Arc::clone(&queue);
    let bridge = ActionBridge::start(io.server, Box::new(move |ev| q.action(ev)))?;
    let estop_topic = io
        .inputs
        .estop
        .first()
        .map_or_else(|| cfg.estop_topic.clone(), |s| s.topic().to_string());
    pump::start(
        io.inputs,
        core.frame_inbox(),
        Arc::clone(&queue),
        clock.clone(),
        cfg.realtime_priority,
    )?;
    if cfg.realtime_priority > 0 {
        match crate::node::priority::realtime_current_thread(cfg.realtime_priority) {
            Ok(()) => tracing::info!("control loop runs SCHED_FIFO at priority {}", cfg.realtime_priority),
            Err(e) => tracing::warn!("control loop: {e}"),
        }
    }
    let mut driver = Driver {
        core,
        actuator,
        cfg,
        name: node.fqn().to_string(),
        clock,
        bridge,
        preview: io.preview,
        latent: io.latent,
        diagnostics: io.diagnostics,
        goal_ids: HashMap::new(),
        estop: EstopState {
            topic: false,
            heartbeat: None,
            timeout: cfg.estop_heartbeat_timeout,
            applied: None,
        },
        estop_topic,
        exit_fault: None,
        joint_warnings: Throttle::new(INPUT_WARN_EVERY),
    };
    driver.run(&queue, &shutdown);
    match driver.exit_fault.clone() {
        Some(fault) => {
            driver.shut_down("fault");
            Err(NodeError::Fault(fault))
        }
        None => {
            driver.shut_down("signal");
            Ok(driver.core.counters().clone())
        }
    }
}
