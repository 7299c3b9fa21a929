//! `univla_nav`: the navigation node (R2R head). Wires the camera, the instruction topic and the
//! `~/execute` action server to the [`NavCore`] and publishes `Twist` or `TwistStamped`.
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::ros::msgs::geometry_msgs::{Twist, TwistStamped, Vector3};
use crate::ros::msgs::std_msgs::Header;
use crate::ros::{Qos, RosArgs, RosContext, RosNode, RosPublisher};
use crate::runtime::postprocess::Preset;

use super::config::NavConfig;
use super::driver::{self, publish, Actuator, NodeIo};
use super::error::NodeError;
use super::nav::{NavCore, NavSettings, Velocity};
use super::ros_io;

/// The velocity output (plain or stamped).
pub enum CmdVel {
    Plain(RosPublisher<Twist>),
    Stamped(RosPublisher<TwistStamped>),
}

impl Actuator<Velocity> for CmdVel {
    /// A base has nothing to monitor besides the velocity itself.
    fn send(&self, v: &Velocity, header: &Header, actuate: bool, _monitoring: bool) {
        if !actuate {
            return;
        }
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
    let core = NavCore::new(
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
    let io = NodeIo::create(&mut node, c, None)?;
    let cmd_vel = if cfg.twist_stamped {
        CmdVel::Stamped(node.create_publisher(&cfg.cmd_vel_topic, Qos::default_profile())?)
    } else {
        CmdVel::Plain(node.create_publisher(&cfg.cmd_vel_topic, Qos::default_profile())?)
    };
    tracing::info!(
        "{} ready: camera {}, cmd_vel {}",
        node.fqn(),
        c.image_topic,
        cfg.cmd_vel_topic
    );
    driver::run(&node, io, core, cmd_vel, c, shutdown)?;
    Ok(())
}
