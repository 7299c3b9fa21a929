//! The control loop both nodes run: it wakes on every input (frame, joint state, e-stop, goal,
//! cancel, finished inference) and at every control period, feeds the [`ControlCore`], and
//! publishes what it returns. Inputs reach the core the moment they arrive, so a frame goes to an
//! idle model at once and a new chunk goes out at once; the period only paces the steps.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ros::action::{GoalId, GoalOutcome, RosActionServer};
use crate::ros::msgs::diagnostic_msgs::{DiagnosticArray, DiagnosticStatus};
use crate::ros::msgs::sensor_msgs::Image;
use crate::ros::msgs::std_msgs::Header;
use crate::ros::msgs::univla_msgs::{Execute, ExecuteResult, LatentActions};
use crate::ros::msgs::RosMessage;
use crate::ros::{Qos, RosNode, RosPublisher};

use super::config::CommonConfig;
use super::core::{ControlCore, Ended, GoalSpec, NodeState, Tick};
use super::diagnostics::Counters;
use super::error::NodeError;
use super::monitor;
use super::pump::{self, CameraSub, Event, Inputs};
use super::ros_io::{self, ActionBridge, ActionEvent};
use super::timebase::ControlClock;

/// Best-effort reader with a small queue: matches reliable and best-effort publishers.
const BEST_EFFORT_10: Qos = Qos {
    reliable: false,
    transient_local: false,
    depth: 10,
};
/// Events handled per wake-up before the loop looks at the clock again (bounds one iteration).
const MAX_EVENTS_PER_WAKE: usize = 256;
/// Longest sleep, so a shutdown request is seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// How long shutdown waits for clients to fetch final results.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

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
                estop: node.create_subscription(&c.estop_topic, BEST_EFFORT_10)?,
                instruction,
            },
            server: RosActionServer::<Execute>::new(node, "~/execute")?,
            preview: node.create_publisher("~/input_image", Qos::sensor_data())?,
            latent: node.create_publisher("~/latent_actions", Qos::default_profile())?,
            diagnostics: node.create_publisher("/diagnostics", Qos::default_profile())?,
        })
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
}

impl<C: ControlCore, A: Actuator<C::Command>> Driver<'_, C, A> {
    fn header(&self, stamp_at: Option<Instant>) -> Header {
        Header {
            stamp: stamp_at.map_or_else(|| self.clock.stamp(), |t| self.clock.stamp_at(t)),
            frame_id: self.cfg.frame_id.clone(),
        }
    }

    fn end_goal(&mut self, e: Ended) {
        tracing::info!("goal {} ended {:?}: {}", e.epoch, e.status, e.reason);
        if let Some(id) = self.goal_ids.remove(&e.epoch) {
            self.bridge
                .finish(id, e.status, ros_io::result_msg(e.outcome, e.steps, &e.reason));
        }
    }

    /// Sends the hold command at once (cancel, shutdown).
    fn hold_now(&mut self) {
        let now = self.clock.now();
        let cmd = self.core.hold_command(now);
        self.actuator.send(&cmd, &self.header(None), !self.cfg.dry_run, false);
    }

    fn start(&mut self, spec: GoalSpec, id: Option<GoalId>) {
        let now = self.clock.now();
        match self.core.start_goal(spec, now) {
            Ok((epoch, preempted)) => {
                match id {
                    Some(id) => {
                        self.bridge.accept(id);
                        self.goal_ids.insert(epoch, id);
                        tracing::info!("accepted goal {id} as episode {epoch}");
                    }
                    None => tracing::info!("instruction topic started episode {epoch}"),
                }
                if let Some(e) = preempted {
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

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Frame { transport } => {
                if let Some(d) = transport {
                    self.core.counters_mut().transport.push(d);
                }
            }
            Event::Joints(js, at) => {
                if let Err(e) = self.core.on_joint_state(&js, at) {
                    tracing::warn!("{e}");
                }
            }
            Event::Estop(engaged) => self.core.set_estop(engaged),
            Event::Instruction(text) => {
                // Repeating the running task's text does not restart it.
                if self.core.running_instruction() != Some(text.as_str()) {
                    let spec = GoalSpec {
                        instruction: text,
                        ..Default::default()
                    };
                    self.start(spec, None);
                }
            }
            Event::Action(ActionEvent::Goal { id, goal }) => {
                let spec = GoalSpec {
                    time_limit: ros_io::time_limit(&goal),
                    instruction: goal.instruction,
                    max_steps: goal.max_steps,
                    mode: goal.mode,
                };
                self.start(spec, Some(id));
            }
            Event::Action(ActionEvent::Cancel { key, goals }) => {
                let current = self
                    .core
                    .goal_epoch()
                    .and_then(|e| self.goal_ids.get(&e).map(|id| (e, *id)));
                match current.filter(|(_, id)| goals.contains(id)) {
                    Some((epoch, id)) => {
                        self.hold_now();
                        self.bridge.answer_cancel(key, vec![id]);
                        if let Some(e) = self.core.cancel(epoch) {
                            self.end_goal(e);
                        }
                    }
                    None => self.bridge.answer_cancel(key, vec![]),
                }
            }
            Event::Inferred => {}
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
    }

    fn publish_diagnostics(&mut self, now: Instant) {
        let counters = self.core.counters_mut();
        counters.update_rate(now);
        let state = self.core.state().clone();
        let level = match state {
            NodeState::Holding(_) => DiagnosticStatus::WARN,
            _ => DiagnosticStatus::OK,
        };
        let msg = self
            .core
            .counters()
            .to_msg(&self.name, &state.label(), level, self.header(None));
        publish(&self.diagnostics, msg);
    }

    fn run(&mut self, events: &Receiver<Event>, shutdown: &AtomicBool) {
        let period = self.cfg.period();
        let mut next_tick = self.clock.now();
        // Diagnostics run on the wall clock: operators see a paused simulation too.
        let mut next_diag = Instant::now();
        while !shutdown.load(Ordering::SeqCst) {
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
            match events.recv_timeout(self.clock.wait_for(next_tick, MAX_WAIT)) {
                Ok(ev) => {
                    let work = Instant::now();
                    self.handle(ev);
                    for ev in events.try_iter().take(MAX_EVENTS_PER_WAKE) {
                        self.handle(ev);
                    }
                    let tick = self.core.react(self.clock.now());
                    self.emit(tick);
                    self.core.counters_mut().loop_work.push(work.elapsed());
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Cannot happen while the loop holds a sender; do not spin if it ever does.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(MAX_WAIT),
            }
        }
    }

    fn shut_down(&mut self) {
        tracing::info!("shutting down: holding the robot");
        self.hold_now();
        if let Some(epoch) = self.core.goal_epoch() {
            if let Some(id) = self.goal_ids.remove(&epoch) {
                self.bridge.finish(
                    id,
                    GoalOutcome::Aborted,
                    ros_io::result_msg(ExecuteResult::ABORTED, 0, "node shutting down"),
                );
            }
        }
        std::thread::sleep(SHUTDOWN_GRACE);
    }
}

/// Runs `core` with `actuator` on `node` until `shutdown` is set (SIGINT/SIGTERM), then holds the
/// robot, aborts the running goal and returns the final counters.
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
    let (tx, events) = mpsc::channel();
    let notify = tx.clone();
    core.set_result_notifier(Box::new(move || {
        let _ = notify.send(Event::Inferred);
    }));
    let actions = tx.clone();
    let bridge = ActionBridge::start(io.server, Box::new(move |ev| actions.send(Event::Action(ev)).is_ok()))?;
    pump::start(io.inputs, core.frame_inbox(), tx, clock.clone(), cfg.realtime_priority)?;
    if cfg.realtime_priority > 0 {
        match super::priority::realtime_current_thread(cfg.realtime_priority) {
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
    };
    driver.run(&events, &shutdown);
    driver.shut_down();
    Ok(driver.core.counters().clone())
}
