//! End-to-end tests of `univla_nav` as a separate process with the real engine and a tiny R2R head:
//! goals through the action server and the instruction topic, Twist profiles, STOP/limits, cancel
//! and diagnostics. DDS tests: run them in a private network namespace; they fail outside one.
mod node_common;

use std::time::{Duration, Instant};

use node_common::*;
use univla_ros::ros::action::{GoalStatus, RosActionClient};
use univla_ros::ros::msgs::builtin_interfaces::Duration as RosDuration;
use univla_ros::ros::msgs::diagnostic_msgs::DiagnosticArray;
use univla_ros::ros::msgs::geometry_msgs::Twist;
use univla_ros::ros::msgs::std_msgs::StringMsg;
use univla_ros::ros::msgs::univla_msgs::{Execute, ExecuteGoal, ExecuteResult};
use univla_ros::ros::{Qos, RosContext};

const BIN: &str = env!("CARGO_BIN_EXE_univla_nav");
const LINEAR: f64 = 0.5;
const ANGULAR_DEG: f64 = 30.0;

fn goal(instruction: &str, max_steps: u32, mode: &str) -> ExecuteGoal {
    ExecuteGoal {
        instruction: instruction.into(),
        max_steps,
        time_limit: RosDuration::default(),
        mode: mode.into(),
    }
}

/// Every non-zero command is one of the profiles: forward at LINEAR, or a turn at ±ANGULAR_DEG.
fn is_profile(t: &Twist) -> bool {
    let w = ANGULAR_DEG.to_radians();
    let zero = t.linear.x == 0.0 && t.angular.z == 0.0;
    let fwd = t.linear.x == LINEAR && t.angular.z == 0.0;
    let turn = t.linear.x == 0.0 && (t.angular.z.abs() - w).abs() < 1e-9;
    zero || fwd || turn
}

#[test]
fn nav_node_twist_profiles_stop_limits_cancel_and_instruction_topic() {
    guard();
    let domain = 71;
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let params = dir.path().join("nav.yaml");
    std::fs::write(
        &params,
        format!(
            "/**:\n  ros__parameters:\n    checkpoint: {}\n    decoder: action_decoder_r2r.safetensors\n    greedy: true\n    control_rate_hz: 20.0\n    linear_speed: {LINEAR}\n    angular_speed_deg: {ANGULAR_DEG}\n    settle_s: 0.05\n    image_timeout_s: 2.0\n",
            ckpt.display()
        ),
    )
    .unwrap();
    let args: Vec<String> = [
        "-r",
        "__node:=nav_policy",
        "-r",
        "__ns:=/base",
        "--params-file",
        params.to_str().unwrap(),
        "-r",
        "image_raw:=/cam/image",
        "-r",
        "cmd_vel:=/base/cmd_vel_out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = spawn(BIN, domain, &args, false);
    let _robot = SyntheticRobot::start(domain, "/cam/image", None, 15.0);
    let twists = Collector::<Twist>::start(domain, "/base/cmd_vel_out", Qos::default_profile());
    let diagnostics = Collector::<DiagnosticArray>::start(domain, "/diagnostics", Qos::default_profile());
    let ctx = RosContext::with_domain(domain).unwrap();
    let mut client_node = peer(&ctx, "nav_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, "/base/nav_policy/execute").unwrap();
    let rt = runtime();
    rt.block_on(async {
        bounded("action server discovery", client.wait_for_server(&client_node)).await;
        let start = Instant::now();
        let first = loop {
            assert_eq!(
                bounded("bad mode", client.send_goal(goal("go", 0, "open_loop")))
                    .await
                    .unwrap(),
                None
            );
            if let Some(id) = bounded("goal", client.send_goal(goal("walk to the sofa", 3, "")))
                .await
                .unwrap()
            {
                break id;
            }
            assert!(start.elapsed() < WAIT, "the goal was never accepted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // At most 3 decisions: STOP (succeeded) or the decision limit.
        let (status, result) = bounded("result", client.result(first)).await.unwrap();
        assert_eq!(status, GoalStatus::Succeeded, "{result:?}");
        match result.outcome {
            ExecuteResult::SUCCEEDED => {
                assert!(result.steps >= 1 && result.steps <= 3 && result.reason.contains("STOP"))
            }
            ExecuteResult::STEP_LIMIT => assert_eq!(result.steps, 3),
            other => panic!("unexpected outcome {other}: {result:?}"),
        }
        // Cancel stops the base with a zero twist (unless the policy chose STOP first).
        let mut canceled = false;
        for _ in 0..3 {
            let id = bounded("goal", client.send_goal(goal("find the kitchen", 0, "")))
                .await
                .unwrap()
                .expect("accepted");
            let t_cancel = Instant::now();
            let accepted = bounded("cancel", client.cancel(id)).await.unwrap();
            let (status, result) = bounded("result", client.result(id)).await.unwrap();
            if accepted {
                assert_eq!(status, GoalStatus::Canceled, "{result:?}");
                assert_eq!(result.outcome, ExecuteResult::CANCELED);
                twists.wait_for(t_cancel, "zero twist after cancel", |t| {
                    t.linear.x == 0.0 && t.angular.z == 0.0
                });
                canceled = true;
                break;
            }
            assert_eq!(result.outcome, ExecuteResult::SUCCEEDED, "{result:?}");
        }
        assert!(canceled, "no goal could be canceled before STOP");
    });
    // The instruction topic starts a goal without an action client.
    let since = Instant::now();
    {
        let mut n = peer(&ctx, "instruction_pub");
        let p = n
            .create_publisher::<StringMsg>("/base/instruction", Qos::default_profile())
            .unwrap();
        let d = diagnostics.wait_for(since, "diagnostics", |_| true);
        let accepted0 = value(&d, "goals_accepted");
        let start = Instant::now();
        loop {
            p.publish(StringMsg {
                data: "go to the door".into(),
            })
            .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let d = diagnostics.snapshot().last().map(|(_, d)| d.clone()).unwrap();
            if value(&d, "goals_accepted") > accepted0 {
                break;
            }
            assert!(start.elapsed() < WAIT, "instruction topic never started a goal");
        }
    }
    let all = twists.snapshot();
    assert!(!all.is_empty());
    for (_, t) in &all {
        assert!(is_profile(t), "{t:?} is not a configured profile");
    }
    let status = child.interrupt_and_wait(WAIT);
    assert!(status.success(), "{status:?}");
}

fn value(d: &DiagnosticArray, key: &str) -> u64 {
    d.status[0]
        .values
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.parse().ok())
        .unwrap_or(0)
}

#[test]
fn nav_node_refuses_a_non_r2r_head() {
    guard();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let args = vec![
        "-p".to_string(),
        format!("checkpoint:={}", ckpt.display()),
        "-p".into(),
        "decoder:=action_decoder_libero.safetensors".into(),
        "-p".into(),
        "unnorm_key:=libero_10_no_noops".into(),
    ];
    let (st, err) = spawn(BIN, 72, &args, true).wait_exit(WAIT);
    assert!(!st.success());
    assert!(err.contains("needs an R2R head"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
