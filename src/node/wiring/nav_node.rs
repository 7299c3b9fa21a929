//! `univla_nav`: the navigation node (R2R head). Wires the camera, the instruction topic and the
//! `~/execute` action server to the [`NavCore`] and publishes `Twist` or `TwistStamped`.
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::ros::msgs::geometry_msgs::{Twist, TwistStamped, Vector3};
use crate::ros::msgs::std_msgs::Header;
use crate::ros::{Qos, RosArgs, RosContext, RosNode, RosPublisher};
use crate::runtime::postprocess::Preset;

use crate::node::config::{NavConfig, PolicyConfig};
use crate::node::control::nav::{NavCore, NavSettings, Velocity};
use crate::node::error::NodeError;
use crate::node::wiring::driver::{self, publish, Actuator, NodeIo};
use crate::node::wiring::ros_io::{self, ModelInfo};
use crate::node::wiring::worker::InferenceWorker;

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
    run_nav_with(args, shutdown, ros_io::load_policy)
}

/// [`run_nav`] with the policy loaded by `load` (tests wrap the real session to inject faults).
pub fn run_nav_with(
    args: &RosArgs,
    shutdown: Arc<AtomicBool>,
    load: impl FnOnce(&PolicyConfig) -> Result<(InferenceWorker, ModelInfo), NodeError>,
) -> Result<(), NodeError> {
    let identity = args.resolve_node(NavConfig::NODE_NAME, "/")?;
    let cfg = NavConfig::from_params(&identity.params)?;
    let (worker, info) = load(&cfg.common.policy)?;
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
            inference_timeout: c.inference_timeout,
            max_image_pixels: c.max_image_pixels,
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
    let cmd_vel_topic = match &cmd_vel {
        CmdVel::Plain(p) => p.topic().to_string(),
        CmdVel::Stamped(p) => p.topic().to_string(),
    };
    tracing::info!(
        "{} ready: {}, velocities on {cmd_vel_topic}, action {}/execute, {} Hz{}",
        node.fqn(),
        io.describe(),
        node.fqn(),
        c.control_rate_hz,
        if c.dry_run {
            " (dry run: no velocity commands)"
        } else {
            ""
        }
    );
    driver::run(&node, io, core, cmd_vel, c, shutdown)?;
    Ok(())
}
