//! `univla_arm`: the manipulation node. Wires ROS topics and the `~/execute` action server to the
//! [`ArmCore`] and runs its control loop at the configured rate.
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::ros::action::RosActionClient;
use crate::ros::msgs::builtin_interfaces::Duration as RosDuration;
use crate::ros::msgs::geometry_msgs::{Point, Pose, PoseStamped, Quaternion};
use crate::ros::msgs::std_msgs::Header;
use crate::ros::msgs::trajectory_msgs::{JointTrajectory, JointTrajectoryPoint};
use crate::ros::msgs::visualization_msgs::MarkerArray;
use crate::ros::{Qos, RosArgs, RosContext, RosNode, RosPublisher};

use crate::node::config::{ArmConfig, ArmOutput, FkPath, PolicyConfig};
use crate::node::control::arm::{ArmCommand, ArmCore, ArmKind, ArmSettings};
use crate::node::control::stop::hold_settle;
use crate::node::error::NodeError;
use crate::node::wiring::driver::{self, publish, Actuator, NodeIo};
use crate::node::wiring::fjt::TrajectoryActionSender;
use crate::node::wiring::monitor;
use crate::node::wiring::ros_io::{self, Float64, ModelInfo};
use crate::node::wiring::worker::InferenceWorker;

/// One long-lived value per node, so the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Actuators {
    Joints {
        names: Vec<String>,
        topic: RosPublisher<JointTrajectory>,
        action: Option<TrajectoryActionSender>,
        /// Draw the chunk as the tool path through forward kinematics instead of per-joint lines.
        fk: Option<FkPath>,
    },
    Pose {
        pose: RosPublisher<PoseStamped>,
        gripper: RosPublisher<Float64>,
    },
}

struct Outputs {
    actuators: Actuators,
    markers: RosPublisher<MarkerArray>,
    period: Duration,
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

/// The stop of a joint-space arm (see [`crate::node::control::stop`]): one point at `positions`,
/// reached [`hold_settle`] after the stamp (now), no velocities. Every `joint_trajectory_controller`
/// release executes it; an empty trajectory is rejected by current ones.
fn hold_trajectory(header: &Header, names: &[String], positions: &[f64], period: Duration) -> JointTrajectory {
    JointTrajectory {
        header: header.clone(),
        joint_names: names.to_vec(),
        points: vec![JointTrajectoryPoint {
            positions: positions.to_vec(),
            time_from_start: ros_duration(hold_settle(period)),
            ..Default::default()
        }],
    }
}

impl Actuator<ArmCommand> for Outputs {
    fn ready(&self) -> Result<(), String> {
        match &self.actuators {
            Actuators::Joints { action: Some(a), .. } => a.ready(),
            _ => Ok(()),
        }
    }

    fn send(&self, cmd: &ArmCommand, header: &Header, actuate: bool, monitoring: bool) {
        let period = self.period;
        match (&self.actuators, cmd) {
            (
                Actuators::Joints {
                    names,
                    topic,
                    action,
                    fk,
                },
                ArmCommand::Joints(points),
            ) => {
                if monitoring {
                    let markers = match fk {
                        // The path is in the chain's base frame, whatever the node's frame_id.
                        Some(fk) => {
                            let base = Header {
                                stamp: header.stamp,
                                frame_id: fk.chain.base_link().to_string(),
                            };
                            monitor::pose_chunk_markers(&base, &fk.tip_path(points))
                        }
                        None => monitor::joint_chunk_markers(header, points),
                    };
                    publish(&self.markers, markers);
                }
                if actuate {
                    let t = trajectory(header, names, points, period);
                    match action {
                        Some(a) => a.send(t),
                        None => publish(topic, t),
                    }
                }
            }
            (
                Actuators::Joints {
                    names, topic, action, ..
                },
                ArmCommand::Hold(positions),
            ) => {
                if actuate {
                    let t = hold_trajectory(header, names, positions, period);
                    match action {
                        Some(a) => a.hold(t),
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
        alignment: cfg.alignment.resolve(info.preset, info.temporal_size),
        action_dim: info.action_dim,
        default_ensemble: info.temporal_size,
        preview: c.publish_monitoring,
        inference_timeout: c.inference_timeout,
        max_image_pixels: c.max_image_pixels,
    }
}

/// Runs `univla_arm` until SIGINT/SIGTERM or until `shutdown` is set.
pub fn run_arm(args: &RosArgs, shutdown: Arc<AtomicBool>) -> Result<(), NodeError> {
    run_arm_with(args, shutdown, ros_io::load_policy)
}

/// [`run_arm`] with the policy loaded by `load` (tests wrap the real session to inject faults).
pub fn run_arm_with(
    args: &RosArgs,
    shutdown: Arc<AtomicBool>,
    load: impl FnOnce(&PolicyConfig) -> Result<(InferenceWorker, ModelInfo), NodeError>,
) -> Result<(), NodeError> {
    // Names and parameters are checked before any weight is loaded or socket opened.
    let identity = args.resolve_node(ArmConfig::NODE_NAME, "/")?;
    let cfg = ArmConfig::from_params(&identity.params)?;
    let (worker, info) = load(&cfg.common.policy)?;
    cfg.check_model(info.action_dim, info.needs_proprio, info.preset)?;
    let core = ArmCore::new(settings(&cfg, &info), info.post.clone(), worker);

    let context = RosContext::from_env()?;
    let mut node = RosNode::new(&context, args, ArmConfig::NODE_NAME, "/")?;
    let c = &cfg.common;
    let io = NodeIo::create(&mut node, c, Some(&cfg.joint_state_topic))?;
    let actuators = match &cfg.output {
        ArmOutput::Joints {
            joint_names,
            trajectory_topic,
            follow_action,
            fk,
            ..
        } => Actuators::Joints {
            fk: fk.clone(),
            names: joint_names.clone(),
            topic: node.create_publisher(trajectory_topic, Qos::default_profile())?,
            action: match follow_action {
                Some(a) => {
                    let client = RosActionClient::new(&mut node, a)?;
                    let probe = client.server_probe(&context);
                    Some(TrajectoryActionSender::start(client, probe)?)
                }
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
        period: c.period(),
    };
    let output = match (&out.actuators, &cfg.output) {
        (
            Actuators::Joints { action: Some(_), .. },
            ArmOutput::Joints {
                follow_action: Some(a), ..
            },
        ) => format!(
            "FollowJointTrajectory goals to {}",
            node.resolve(a).unwrap_or_else(|_| a.clone())
        ),
        (Actuators::Joints { topic, .. }, _) => format!("trajectories on {}", topic.topic()),
        (Actuators::Pose { pose, gripper }, _) => {
            format!("pose targets on {}, gripper on {}", pose.topic(), gripper.topic())
        }
    };
    tracing::info!(
        "{} ready: {}, {output}, action {}/execute, {} Hz{}",
        node.fqn(),
        io.describe(),
        node.fqn(),
        c.control_rate_hz,
        if c.dry_run {
            " (dry run: no actuator commands)"
        } else {
            ""
        }
    );
    driver::run(&node, io, core, out, c, shutdown)?;
    Ok(())
}
