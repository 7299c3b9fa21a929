//! The README flow without ROS: a generated checkpoint, `univla_arm` with the instruction topic on,
//! and the synthetic robot (camera + joint states + instruction). The repeated instruction starts
//! one task, not one per message. DDS test: run it in a private network namespace.
mod node_common;

use std::time::{Duration, Instant};

use node_common::*;
use univla_ros::node::synthetic::{run_synthetic_robot, SyntheticRobotConfig};
use univla_ros::ros::msgs::diagnostic_msgs::DiagnosticArray;
use univla_ros::ros::msgs::trajectory_msgs::JointTrajectory;
use univla_ros::ros::{Qos, RosContext};

const BIN: &str = env!("CARGO_BIN_EXE_univla_arm");

#[test]
fn synthetic_robot_drives_the_arm_node_through_the_instruction_topic() {
    guard();
    let domain = 81;
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let names: Vec<String> = (1..=7).map(|i| format!("joint{i}")).collect();
    let args: Vec<String> = vec![
        "-p".into(),
        format!("checkpoint:={}", ckpt.display()),
        "-p".into(),
        "decoder:=action_decoder.safetensors".into(),
        "-p".into(),
        format!("joint_names:=[{}]", names.join(", ")),
        "-p".into(),
        "max_step:=[9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0]".into(),
        "-p".into(),
        "use_instruction_topic:=true".into(),
        "-p".into(),
        "dry_run:=false".into(),
        "-p".into(),
        "diagnostics_period_s:=0.5".into(),
    ];
    let mut child = spawn(BIN, domain, &args, false);
    let trajectories = Collector::<JointTrajectory>::start(domain, "/joint_trajectory", Qos::default_profile());
    let diagnostics = Collector::<DiagnosticArray>::start(domain, "/diagnostics", Qos::default_profile());
    let robot = std::thread::spawn(move || {
        let ctx = RosContext::with_domain(domain).unwrap();
        let mut node = peer(&ctx, "synthetic_robot");
        let cfg = SyntheticRobotConfig {
            width: 160,
            height: 120,
            rate_hz: 15.0,
            joint_names: names,
            instruction: Some("pick up the cup".into()),
            duration: Duration::from_secs(20),
            ..Default::default()
        };
        run_synthetic_robot(&mut node, &cfg).unwrap()
    });
    let t0 = Instant::now() - WAIT;
    let t = trajectories.wait_for(t0, "trajectory", |t| t.points.len() > 1);
    assert_eq!(t.joint_names.len(), 7);
    // Let a few more instructions arrive, then check that only one goal was started.
    std::thread::sleep(Duration::from_secs(3));
    let d = diagnostics.wait_for(Instant::now(), "diagnostics", |_| true);
    let accepted = d.status[0].values.iter().find(|kv| kv.key == "goals_accepted").unwrap();
    assert_eq!(accepted.value, "1", "{d:?}");
    let frames = robot.join().unwrap();
    assert!(frames > 100, "{frames}");
    assert!(child.interrupt_and_wait(WAIT).success());
}
