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

use super::arm::{ArmCommand, ArmCore, ArmKind, ArmSettings};
use super::config::{ArmConfig, ArmOutput, FkPath};
use super::driver::{self, publish, Actuator, NodeIo};
use super::error::NodeError;
use super::fjt::TrajectoryActionSender;
use super::monitor;
use super::ros_io::{self, Float64};

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

impl Actuator<ArmCommand> for Outputs {
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
                    // Holding: the measured positions, or an empty trajectory (the controller stops).
                    let points: Vec<Vec<f64>> = positions.iter().cloned().collect();
                    let t = trajectory(header, names, &points, period);
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
        alignment: cfg.alignment.resolve(info.preset),
        action_dim: info.action_dim,
        default_ensemble: info.temporal_size,
        preview: c.publish_monitoring,
    }
}

/// Runs `univla_arm` until SIGINT/SIGTERM or until `shutdown` is set.
pub fn run_arm(args: &RosArgs, shutdown: Arc<AtomicBool>) -> Result<(), NodeError> {
    // Names and parameters are checked before any weight is loaded or socket opened.
    let identity = args.resolve_node(ArmConfig::NODE_NAME, "/")?;
    let cfg = ArmConfig::from_params(&identity.params)?;
    let (worker, info) = ros_io::load_policy(&cfg.common.policy)?;
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
        period: c.period(),
    };
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
    driver::run(&node, io, core, out, c, shutdown)?;
    Ok(())
}
