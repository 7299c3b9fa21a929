//! `univla_arm`: the manipulation node. Wires ROS topics and the `~/execute` action server to the
//! [`ArmCore`] and runs its control loop at the configured rate.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ros::action::{GoalId, GoalOutcome, RosActionClient, RosActionServer};
use crate::ros::msgs::builtin_interfaces::Duration as RosDuration;
use crate::ros::msgs::diagnostic_msgs::{DiagnosticArray, DiagnosticStatus};
use crate::ros::msgs::geometry_msgs::{Point, Pose, PoseStamped, Quaternion};
use crate::ros::msgs::sensor_msgs::{CompressedImage, Image, JointState};
use crate::ros::msgs::std_msgs::{Bool, Header, StringMsg};
use crate::ros::msgs::trajectory_msgs::{JointTrajectory, JointTrajectoryPoint};
use crate::ros::msgs::univla_msgs::{Execute, LatentActions};
use crate::ros::msgs::visualization_msgs::MarkerArray;
use crate::ros::{Qos, RosArgs, RosContext, RosNode, RosPublisher, RosSubscription};

use super::arm::{ArmCommand, ArmCore, ArmKind, ArmSettings, Ended, GoalSpec, NodeState};
use super::config::{ArmConfig, ArmOutput, CommonConfig};
use super::error::NodeError;
use super::fjt::TrajectoryActionSender;
use super::input::CameraFrame;
use super::monitor;
use super::ros_io::{self, ActionBridge, ActionEvent, Float64};

/// Messages taken from one subscription per control step (bounds the work of one step).
const MAX_TAKE: usize = 64;
/// Best-effort reader with a small queue: matches reliable and best-effort publishers.
const BEST_EFFORT_10: Qos = Qos {
    reliable: false,
    transient_local: false,
    depth: 10,
};
/// How long shutdown waits for clients to fetch final results.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Camera input (raw or compressed).
pub enum CameraSub {
    Raw(RosSubscription<Image>),
    Compressed(RosSubscription<CompressedImage>),
}

impl CameraSub {
    pub fn create(node: &mut RosNode, c: &CommonConfig) -> Result<Self, NodeError> {
        let qos = if c.image_reliable {
            Qos::default_profile()
        } else {
            Qos::sensor_data()
        };
        Ok(if c.compressed {
            CameraSub::Compressed(node.create_subscription(&c.image_topic, qos)?)
        } else {
            CameraSub::Raw(node.create_subscription(&c.image_topic, qos)?)
        })
    }

    /// Takes every waiting frame, oldest first.
    pub fn drain(&self, mut f: impl FnMut(CameraFrame)) {
        for _ in 0..MAX_TAKE {
            let next = match self {
                CameraSub::Raw(s) => s.try_take().map(|m| m.map(CameraFrame::Raw)),
                CameraSub::Compressed(s) => s.try_take().map(|m| m.map(CameraFrame::Compressed)),
            };
            match next {
                Ok(Some(frame)) => f(frame),
                Ok(None) => break,
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }
}

/// Camera stamp → now on the system clock, when the frame is stamped.
pub fn transport_latency(f: &CameraFrame) -> Option<Duration> {
    let stamp = match f {
        CameraFrame::Raw(m) => m.header.stamp,
        CameraFrame::Compressed(m) => m.header.stamp,
        CameraFrame::Decoded(_) => return None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let stamp = Duration::new(u64::try_from(stamp.sec).ok()?, stamp.nanosec);
    (stamp > Duration::ZERO).then(|| now.checked_sub(stamp)).flatten()
}

/// Drains a subscription, bounded.
pub fn drain<T: crate::ros::msgs::RosMessage>(sub: &RosSubscription<T>, mut f: impl FnMut(T)) {
    for _ in 0..MAX_TAKE {
        match sub.try_take() {
            Ok(Some(m)) => f(m),
            Ok(None) => break,
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

/// Logs a publish failure instead of stopping the control loop.
pub fn publish<T: crate::ros::msgs::RosMessage>(p: &RosPublisher<T>, msg: T) {
    if let Err(e) = p.publish(msg) {
        tracing::warn!("{e}");
    }
}

/// One long-lived value per node, so the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Actuators {
    Joints {
        names: Vec<String>,
        topic: RosPublisher<JointTrajectory>,
        action: Option<TrajectoryActionSender>,
    },
    Pose {
        pose: RosPublisher<PoseStamped>,
        gripper: RosPublisher<Float64>,
    },
}

struct Outputs {
    actuators: Actuators,
    markers: RosPublisher<MarkerArray>,
    preview: RosPublisher<Image>,
    latent: RosPublisher<LatentActions>,
    diagnostics: RosPublisher<DiagnosticArray>,
}

fn ros_duration(d: Duration) -> RosDuration {
    RosDuration::from_std(d)
}

fn trajectory(header: &Header, names: &[String], points: &[Vec<f64>], period: Duration) -> JointTrajectory {
    JointTrajectory {
        header: header.clone(),
        joint_names: names.to_vec(),
        points: points
            .iter()
            .enumerate()
            .map(|(k, p)| JointTrajectoryPoint {
                positions: p.clone(),
                time_from_start: ros_duration(period * (k as u32 + 1)),
                ..Default::default()
            })
            .collect(),
    }
}

impl Outputs {
    fn send(&self, cmd: &ArmCommand, header: &Header, period: Duration, actuate: bool, monitoring: bool) {
        match (&self.actuators, cmd) {
            (Actuators::Joints { names, topic, action }, ArmCommand::Joints(points)) => {
                if monitoring {
                    publish(&self.markers, monitor::joint_chunk_markers(header, points));
                }
                if actuate {
                    let t = trajectory(header, names, points, period);
                    match action {
                        Some(a) => a.send(t),
                        None => publish(topic, t),
                    }
                }
            }
            (Actuators::Joints { names, topic, action }, ArmCommand::Hold(positions)) => {
                if actuate {
                    // Holding: the measured positions, or an empty trajectory (the controller stops).
                    let points: Vec<Vec<f64>> = positions.iter().cloned().collect();
                    let t = trajectory(header, names, &points, period);
                    match action {
                        Some(a) => a.send(t),
                        None => publish(topic, t),
                    }
                }
            }
            (Actuators::Pose { pose, gripper }, ArmCommand::Pose(target)) => {
                if monitoring {
                    publish(&self.markers, monitor::pose_chunk_markers(header, &target.poses));
                }
                if actuate {
                    if let Some(p) = target.poses.first() {
                        let q = p.rotation;
                        publish(
                            pose,
                            PoseStamped {
                                header: header.clone(),
                                pose: Pose {
                                    position: Point {
                                        x: p.translation.x,
                                        y: p.translation.y,
                                        z: p.translation.z,
                                    },
                                    orientation: Quaternion {
                                        x: q.i,
                                        y: q.j,
                                        z: q.k,
                                        w: q.w,
                                    },
                                },
                            },
                        );
                    }
                    publish(gripper, Float64 { data: target.gripper });
                }
            }
            // A pose arm holds by not sending new targets (the last target stays).
            (Actuators::Pose { .. }, ArmCommand::Hold(_)) => {}
            (_, other) => tracing::error!("command {other:?} does not fit the configured output"),
        }
    }
}

fn settings(cfg: &ArmConfig, info: &ros_io::ModelInfo) -> ArmSettings {
    let c = &cfg.common;
    let kind = match &cfg.output {
        ArmOutput::Joints { limits, .. } => ArmKind::Joints(limits.clone()),
        ArmOutput::EefDelta {
            workspace,
            initial_pose,
            translation_scale,
            rotation_scale,
            ..
        } => ArmKind::Eef {
            workspace: workspace.clone(),
            initial: *initial_pose,
            translation_scale: *translation_scale,
            rotation_scale: *rotation_scale,
        },
    };
    let joints_mode = matches!(cfg.output, ArmOutput::Joints { .. });
    ArmSettings {
        kind,
        joint_names: cfg.joint_names().to_vec(),
        require_joints: joints_mode || info.needs_proprio,
        needs_proprio: info.needs_proprio,
        period: c.period(),
        image_timeout: c.image_timeout,
        joint_timeout: cfg.joint_state_timeout,
        max_instruction_chars: c.max_instruction_chars,
        dry_run: c.dry_run,
        chunk_mode: c.chunk_mode,
        action_dim: info.action_dim,
        default_ensemble: info.temporal_size,
        preview: c.publish_monitoring,
    }
}

fn level(state: &NodeState) -> u8 {
    match state {
        NodeState::Holding(_) => DiagnosticStatus::WARN,
        _ => DiagnosticStatus::OK,
    }
}

/// Runs `univla_arm` until SIGINT/SIGTERM or until `shutdown` is set.
pub fn run_arm(args: &RosArgs, shutdown: Arc<AtomicBool>) -> Result<(), NodeError> {
    // Names and parameters are checked before any weight is loaded or socket opened.
    let identity = args.resolve_node(ArmConfig::NODE_NAME, "/")?;
    let cfg = ArmConfig::from_params(&identity.params)?;
    let (worker, info) = ros_io::load_policy(&cfg.common.policy)?;
    cfg.check_model(info.action_dim, info.needs_proprio, info.preset)?;
    let mut core = ArmCore::new(settings(&cfg, &info), info.post.clone(), worker);

    let context = RosContext::from_env()?;
    let mut node = RosNode::new(&context, args, ArmConfig::NODE_NAME, "/")?;
    let c = &cfg.common;
    let camera = CameraSub::create(&mut node, c)?;
    let joints: RosSubscription<JointState> = node.create_subscription(&cfg.joint_state_topic, Qos::sensor_data())?;
    let estop: RosSubscription<Bool> = node.create_subscription(&c.estop_topic, BEST_EFFORT_10)?;
    let instruction: Option<RosSubscription<StringMsg>> = match &c.instruction_topic {
        Some(t) => Some(node.create_subscription(t, BEST_EFFORT_10)?),
        None => None,
    };
    let actuators = match &cfg.output {
        ArmOutput::Joints {
            joint_names,
            trajectory_topic,
            follow_action,
            ..
        } => Actuators::Joints {
            names: joint_names.clone(),
            topic: node.create_publisher(trajectory_topic, Qos::default_profile())?,
            action: match follow_action {
                Some(a) => Some(TrajectoryActionSender::start(RosActionClient::new(&mut node, a)?)?),
                None => None,
            },
        },
        ArmOutput::EefDelta {
            pose_topic,
            gripper_topic,
            ..
        } => Actuators::Pose {
            pose: node.create_publisher(pose_topic, Qos::default_profile())?,
            gripper: node.create_publisher(gripper_topic, Qos::default_profile())?,
        },
    };
    let out = Outputs {
        actuators,
        markers: node.create_publisher("~/chunk_markers", Qos::default_profile())?,
        preview: node.create_publisher("~/input_image", Qos::sensor_data())?,
        latent: node.create_publisher("~/latent_actions", Qos::default_profile())?,
        diagnostics: node.create_publisher("/diagnostics", Qos::default_profile())?,
    };
    let bridge = ActionBridge::start(RosActionServer::<Execute>::new(&mut node, "~/execute")?)?;
    let clock = node.clock();
    tracing::info!(
        "{} ready: camera {}, action {}/execute, {} Hz{}",
        node.fqn(),
        c.image_topic,
        node.fqn(),
        c.control_rate_hz,
        if c.dry_run {
            " (dry run: no actuator commands)"
        } else {
            ""
        }
    );

    let period = c.period();
    let mut goal_ids: HashMap<u64, GoalId> = HashMap::new();
    let end_goal = |e: Ended, goal_ids: &mut HashMap<u64, GoalId>| {
        tracing::info!("goal {} ended {:?}: {}", e.epoch, e.status, e.reason);
        if let Some(id) = goal_ids.remove(&e.epoch) {
            bridge.finish(id, e.status, ros_io::result_msg(e.outcome, e.steps, &e.reason));
        }
    };
    let mut next_tick = Instant::now();
    let mut next_diag = Instant::now();
    while !shutdown.load(Ordering::SeqCst) {
        let now = Instant::now();
        let header = Header {
            stamp: clock.now(),
            frame_id: c.frame_id.clone(),
        };
        camera.drain(|f| {
            if let Some(d) = transport_latency(&f) {
                core.counters.transport.push(d);
            }
            core.on_image(f, now)
        });
        drain(&joints, |js| {
            if let Err(e) = core.on_joint_state(&js, now) {
                tracing::warn!("{e}");
            }
        });
        drain(&estop, |b| core.set_estop(b.data));
        if let Some(sub) = &instruction {
            drain(sub, |m| {
                // Repeating the running task's text does not restart it.
                if core.running_instruction() == Some(m.data.as_str()) {
                    return;
                }
                let spec = GoalSpec {
                    instruction: m.data,
                    ..Default::default()
                };
                match core.start_goal(spec, now) {
                    Ok((epoch, pre)) => {
                        tracing::info!("instruction topic started goal {epoch}");
                        if let Some(e) = pre {
                            end_goal(e, &mut goal_ids);
                        }
                    }
                    Err(e) => tracing::warn!("instruction ignored: {e}"),
                }
            });
        }
        while let Some(ev) = bridge.try_event() {
            match ev {
                ActionEvent::Goal { id, goal } => {
                    let spec = GoalSpec {
                        time_limit: ros_io::time_limit(&goal),
                        instruction: goal.instruction,
                        max_steps: goal.max_steps,
                        mode: goal.mode,
                    };
                    match core.start_goal(spec, now) {
                        Ok((epoch, pre)) => {
                            bridge.accept(id);
                            goal_ids.insert(epoch, id);
                            tracing::info!("accepted goal {id} as episode {epoch}");
                            if let Some(e) = pre {
                                end_goal(e, &mut goal_ids);
                            }
                        }
                        Err(reason) => {
                            tracing::warn!("rejected goal {id}: {reason}");
                            bridge.reject(id);
                        }
                    }
                }
                ActionEvent::Cancel { key, goals } => {
                    let current = core.goal_epoch().and_then(|e| goal_ids.get(&e).map(|id| (e, *id)));
                    match current.filter(|(_, id)| goals.contains(id)) {
                        Some((epoch, id)) => {
                            out.send(&core.hold_command(now), &header, period, !c.dry_run, false);
                            bridge.answer_cancel(key, vec![id]);
                            if let Some(e) = core.cancel(epoch) {
                                end_goal(e, &mut goal_ids);
                            }
                        }
                        None => bridge.answer_cancel(key, vec![]),
                    }
                }
            }
        }
        let tick = core.tick(now);
        if let Some(cmd) = &tick.command {
            out.send(cmd, &header, period, tick.actuate, c.publish_monitoring);
        }
        if let Some(fb) = tick.feedback {
            if let Some(id) = goal_ids.get(&fb.epoch) {
                bridge.feedback(
                    *id,
                    ros_io::feedback_msg(fb.step, &fb.latent_ids, fb.latency_ms, fb.commanded),
                );
            }
        }
        if let Some(e) = tick.ended {
            end_goal(e, &mut goal_ids);
        }
        if c.publish_monitoring {
            if let Some(ids) = &tick.latent_ids {
                publish(&out.latent, monitor::latent_msg(&header, ids));
            }
            if let Some(img) = &tick.preview {
                publish(&out.preview, monitor::preview_image(&header, img));
            }
        }
        if now >= next_diag {
            next_diag = now + c.diagnostics_period;
            core.counters.update_rate(now);
            let state = core.state().clone();
            publish(
                &out.diagnostics,
                core.counters
                    .to_msg(node.fqn(), &state.label(), level(&state), header.clone()),
            );
        }
        core.counters.loop_work.push(now.elapsed());
        next_tick += period;
        let now = Instant::now();
        if next_tick < now {
            next_tick = now;
        }
        std::thread::sleep(next_tick - now);
    }
    // Ctrl-C: hold the robot and end the goal.
    tracing::info!("shutting down: holding the robot");
    let now = Instant::now();
    let header = Header {
        stamp: clock.now(),
        frame_id: c.frame_id.clone(),
    };
    out.send(&core.hold_command(now), &header, period, !c.dry_run, false);
    if let Some(epoch) = core.goal_epoch() {
        if let Some(id) = goal_ids.remove(&epoch) {
            bridge.finish(
                id,
                GoalOutcome::Aborted,
                ros_io::result_msg(
                    crate::ros::msgs::univla_msgs::ExecuteResult::ABORTED,
                    0,
                    "node shutting down",
                ),
            );
        }
    }
    std::thread::sleep(SHUTDOWN_GRACE);
    Ok(())
}
