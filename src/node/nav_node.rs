//! `univla_nav`: the navigation node (R2R head). Wires the camera, the instruction topic and the
//! `~/execute` action server to the [`NavCore`] and publishes `Twist` or `TwistStamped`.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ros::action::{GoalId, GoalOutcome, RosActionServer};
use crate::ros::msgs::diagnostic_msgs::{DiagnosticArray, DiagnosticStatus};
use crate::ros::msgs::geometry_msgs::{Twist, TwistStamped, Vector3};
use crate::ros::msgs::sensor_msgs::Image;
use crate::ros::msgs::std_msgs::{Bool, Header, StringMsg};
use crate::ros::msgs::univla_msgs::{Execute, ExecuteResult, LatentActions};
use crate::ros::{Qos, RosArgs, RosContext, RosNode, RosPublisher, RosSubscription};
use crate::runtime::postprocess::Preset;

use super::arm::{Ended, GoalSpec, NodeState};
use super::arm_node::{drain, publish, CameraSub};
use super::config::NavConfig;
use super::error::NodeError;
use super::monitor;
use super::nav::{NavCore, NavSettings, Velocity};
use super::ros_io::{self, ActionBridge, ActionEvent};

/// Best-effort reader with a small queue: matches reliable and best-effort publishers.
const BEST_EFFORT_10: Qos = Qos {
    reliable: false,
    transient_local: false,
    depth: 10,
};
/// How long shutdown waits for clients to fetch final results.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// The velocity output (plain or stamped).
pub enum CmdVel {
    Plain(RosPublisher<Twist>),
    Stamped(RosPublisher<TwistStamped>),
}

impl CmdVel {
    fn send(&self, v: Velocity, header: &Header) {
        let twist = Twist {
            linear: Vector3 {
                x: v.linear,
                ..Default::default()
            },
            angular: Vector3 {
                z: v.angular,
                ..Default::default()
            },
        };
        match self {
            CmdVel::Plain(p) => publish(p, twist),
            CmdVel::Stamped(p) => publish(
                p,
                TwistStamped {
                    header: header.clone(),
                    twist,
                },
            ),
        }
    }
}

/// Runs `univla_nav` until SIGINT/SIGTERM or until `shutdown` is set.
pub fn run_nav(args: &RosArgs, shutdown: Arc<AtomicBool>) -> Result<(), NodeError> {
    let identity = args.resolve_node(NavConfig::NODE_NAME, "/")?;
    let cfg = NavConfig::from_params(&identity.params)?;
    let (worker, info) = ros_io::load_policy(&cfg.common.policy)?;
    if info.preset != Preset::R2r {
        return Err(NodeError::config(format!(
            "univla_nav needs an R2R head (4 discrete actions); the decoder is a {:?} head",
            info.preset
        )));
    }
    let c = &cfg.common;
    let mut core = NavCore::new(
        NavSettings {
            profile: cfg.profile.clone(),
            image_timeout: c.image_timeout,
            max_instruction_chars: c.max_instruction_chars,
            dry_run: c.dry_run,
            max_decisions: cfg.max_decisions,
            preview: c.publish_monitoring,
        },
        worker,
    );
    let context = RosContext::from_env()?;
    let mut node = RosNode::new(&context, args, NavConfig::NODE_NAME, "/")?;
    let camera = CameraSub::create(&mut node, c)?;
    let estop: RosSubscription<Bool> = node.create_subscription(&c.estop_topic, BEST_EFFORT_10)?;
    let instruction: Option<RosSubscription<StringMsg>> = match &c.instruction_topic {
        Some(t) => Some(node.create_subscription(t, BEST_EFFORT_10)?),
        None => None,
    };
    let cmd_vel = if cfg.twist_stamped {
        CmdVel::Stamped(node.create_publisher(&cfg.cmd_vel_topic, Qos::default_profile())?)
    } else {
        CmdVel::Plain(node.create_publisher(&cfg.cmd_vel_topic, Qos::default_profile())?)
    };
    let preview: RosPublisher<Image> = node.create_publisher("~/input_image", Qos::sensor_data())?;
    let latent: RosPublisher<LatentActions> = node.create_publisher("~/latent_actions", Qos::default_profile())?;
    let diagnostics: RosPublisher<DiagnosticArray> = node.create_publisher("/diagnostics", Qos::default_profile())?;
    let bridge = ActionBridge::start(RosActionServer::<Execute>::new(&mut node, "~/execute")?)?;
    let clock = node.clock();
    tracing::info!(
        "{} ready: camera {}, cmd_vel {}",
        node.fqn(),
        c.image_topic,
        cfg.cmd_vel_topic
    );

    let actuate = !c.dry_run;
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
            if let Some(d) = super::arm_node::transport_latency(&f) {
                core.counters.transport.push(d);
            }
            core.on_image(f, now)
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
                    Ok((_, Some(e))) => end_goal(e, &mut goal_ids),
                    Ok(_) => {}
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
                            if actuate {
                                cmd_vel.send(Velocity::ZERO, &header);
                            }
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
        if let (Some(v), true) = (tick.velocity, tick.actuate) {
            cmd_vel.send(v, &header);
        }
        if let Some(fb) = tick.feedback {
            if let Some(id) = goal_ids.get(&fb.epoch) {
                bridge.feedback(
                    *id,
                    ros_io::feedback_msg(fb.step, &fb.latent_ids, fb.latency_ms, fb.commanded),
                );
            }
        }
        if let Some(d) = tick.decision {
            tracing::info!("decision: {d:?}");
        }
        if let Some(e) = tick.ended {
            end_goal(e, &mut goal_ids);
        }
        if c.publish_monitoring {
            if let Some(ids) = &tick.latent_ids {
                publish(&latent, monitor::latent_msg(&header, ids));
            }
            if let Some(img) = &tick.preview {
                publish(&preview, monitor::preview_image(&header, img));
            }
        }
        if now >= next_diag {
            next_diag = now + c.diagnostics_period;
            core.counters.update_rate(now);
            let state = core.state().clone();
            let level = match state {
                NodeState::Holding(_) => DiagnosticStatus::WARN,
                _ => DiagnosticStatus::OK,
            };
            publish(
                &diagnostics,
                core.counters.to_msg(node.fqn(), &state.label(), level, header.clone()),
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
    tracing::info!("shutting down: stopping the base");
    let header = Header {
        stamp: clock.now(),
        frame_id: c.frame_id.clone(),
    };
    if actuate {
        cmd_vel.send(Velocity::ZERO, &header);
    }
    if let Some(epoch) = core.goal_epoch() {
        if let Some(id) = goal_ids.remove(&epoch) {
            bridge.finish(
                id,
                GoalOutcome::Aborted,
                ros_io::result_msg(ExecuteResult::ABORTED, 0, "node shutting down"),
            );
        }
    }
    std::thread::sleep(SHUTDOWN_GRACE);
    Ok(())
}
