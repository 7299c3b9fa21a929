//! End-to-end tests of `univla_arm` as a separate process with the real engine on a tiny generated
//! checkpoint: a test peer publishes camera frames and joint states, sends, preempts and cancels
//! goals, and checks trajectories, feedback, results, latent tokens and diagnostics. DDS tests: run
//! them in a private network namespace (scripts/test.sh); they fail outside one.
mod node_common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use node_common::*;
use univla_ros::ros::action::{GoalStatus, RosActionClient};
use univla_ros::ros::msgs::builtin_interfaces::Duration as RosDuration;
use univla_ros::ros::msgs::diagnostic_msgs::DiagnosticArray;
use univla_ros::ros::msgs::rcl_interfaces::Log;
use univla_ros::ros::msgs::sensor_msgs::Image;
use univla_ros::ros::msgs::std_msgs::Bool;
use univla_ros::ros::msgs::trajectory_msgs::JointTrajectory;
use univla_ros::ros::msgs::univla_msgs::{Execute, ExecuteGoal, ExecuteResult, LatentActions};
use univla_ros::ros::msgs::visualization_msgs::MarkerArray;
use univla_ros::ros::{Qos, RosContext};

const BIN: &str = env!("CARGO_BIN_EXE_univla_arm");
const JOINT_VALUE: f64 = 0.125;

fn joint_names() -> Vec<String> {
    (1..=7).map(|i| format!("joint{i}")).collect()
}

/// A user params file keyed by the node's full name (as in config/*.yaml), plus launch_ros's
/// own `/**` file with the overrides it generates.
fn params_files(dir: &std::path::Path, ckpt: &std::path::Path) -> (String, String) {
    let user = dir.join("arm.yaml");
    std::fs::write(
        &user,
        format!(
            "/robot/arm_policy:\n  ros__parameters:\n    checkpoint: {ckpt}\n    decoder: action_decoder.safetensors\n    realworld_stats: {ckpt}/realworld_stats.json\n    joint_names: [{names}]\n    position_min: [-50.0, -50.0, -50.0, -50.0, -50.0, -50.0, -50.0]\n    position_max: [50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0]\n    max_velocity: [100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0]\n    max_step: [100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0]\n    greedy: true\n",
            ckpt = ckpt.display(),
            names = joint_names().join(", ")
        ),
    )
    .unwrap();
    let launch = dir.join("launch_params.yaml");
    std::fs::write(
        &launch,
        "/**:\n  ros__parameters:\n    control_rate_hz: 10.0\n    image_timeout_s: 2.0\n    joint_state_timeout_s: 2.0\n",
    )
    .unwrap();
    (user.display().to_string(), launch.display().to_string())
}

fn goal(instruction: &str, max_steps: u32) -> ExecuteGoal {
    ExecuteGoal {
        instruction: instruction.into(),
        max_steps,
        time_limit: RosDuration::default(),
        mode: String::new(),
    }
}

#[test]
fn arm_node_goals_feedback_preemption_cancel_and_monitoring() {
    guard();
    let domain = 61;
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let (user, launch) = params_files(dir.path(), &ckpt);
    let args: Vec<String> = [
        "-r",
        "__node:=arm_policy",
        "-r",
        "__ns:=/robot",
        "--params-file",
        &user,
        "--params-file",
        &launch,
        "-r",
        "image_raw:=/cam/image",
        "-p",
        "diagnostics_period_s:=0.5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = spawn(BIN, domain, &args, false);
    let robot = SyntheticRobot::start(
        domain,
        "/cam/image",
        Some(("/robot/joint_states", joint_names(), JOINT_VALUE)),
        15.0,
    );
    let trajectories = Collector::<JointTrajectory>::start(domain, "/robot/joint_trajectory", Qos::default_profile());
    let diagnostics = Collector::<DiagnosticArray>::start(domain, "/diagnostics", Qos::default_profile());
    let latents = Collector::<LatentActions>::start(domain, "/robot/arm_policy/latent_actions", Qos::default_profile());
    let markers = Collector::<MarkerArray>::start(domain, "/robot/arm_policy/chunk_markers", Qos::default_profile());
    let previews = Collector::<Image>::start(domain, "/robot/arm_policy/input_image", Qos::sensor_data());
    let rosout = Collector::<Log>::start(domain, "/rosout", Qos::default_profile());

    let ctx = RosContext::with_domain(domain).unwrap();
    let mut client_node = peer(&ctx, "goal_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, "/robot/arm_policy/execute").unwrap();
    let rt = runtime();
    rt.block_on(async {
        bounded("action server discovery", client.wait_for_server(&client_node)).await;
        // Not ready yet or bad goals are rejected; retry until the node has seen images.
        let start = Instant::now();
        let goal_a = loop {
            assert_eq!(
                bounded("empty goal", client.send_goal(goal("", 0))).await.unwrap(),
                None
            );
            if let Some(id) = bounded("goal A", client.send_goal(goal("pick up the red cup", 0)))
                .await
                .unwrap()
            {
                break id;
            }
            assert!(start.elapsed() < WAIT, "goal A was never accepted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let long = "x".repeat(10 * 1024);
        assert_eq!(
            bounded("10 kB goal", client.send_goal(goal(&long, 0))).await.unwrap(),
            None
        );
        // Feedback every control step.
        let feedback: Vec<_> = bounded(
            "feedback of A",
            client
                .feedback(goal_a)
                .filter_map(|f| async move { f.ok() })
                .take(3)
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(feedback.len(), 3);
        for w in feedback.windows(2) {
            assert_eq!(w[1].step, w[0].step + 1, "{feedback:?}");
        }
        for f in &feedback {
            assert_eq!(f.commanded_action.len(), 7);
            assert!(f.commanded_action.iter().all(|v| v.is_finite()));
            assert_eq!(f.latent_tokens.len(), 4, "{f:?}");
            assert!(f.inference_latency_ms > 0.0);
        }
        // Preemption: B replaces A, A ends aborted with a reason.
        let goal_b = bounded("goal B", client.send_goal(goal("place it on the plate", 5)))
            .await
            .unwrap()
            .expect("goal B accepted");
        let (status_a, result_a) = bounded("result A", client.result(goal_a)).await.unwrap();
        assert_eq!(status_a, GoalStatus::Aborted);
        assert_eq!(result_a.outcome, ExecuteResult::PREEMPTED);
        assert!(result_a.reason.contains("preempted"), "{result_a:?}");
        let (status_b, result_b) = bounded("result B", client.result(goal_b)).await.unwrap();
        assert_eq!(status_b, GoalStatus::Succeeded, "{result_b:?}");
        assert_eq!((result_b.outcome, result_b.steps), (ExecuteResult::STEP_LIMIT, 5));
        // Cancel: the goal ends canceled and the arm holds its measured position.
        let goal_c = bounded("goal C", client.send_goal(goal("open the drawer", 0)))
            .await
            .unwrap()
            .expect("goal C accepted");
        let first: Vec<_> = bounded(
            "feedback of C",
            client
                .feedback(goal_c)
                .filter_map(|f| async move { f.ok() })
                .take(1)
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(first.len(), 1);
        let cancel_time = Instant::now();
        assert!(bounded("cancel C", client.cancel(goal_c)).await.unwrap());
        let (status_c, result_c) = bounded("result C", client.result(goal_c)).await.unwrap();
        assert_eq!(status_c, GoalStatus::Canceled, "{result_c:?}");
        assert_eq!(result_c.outcome, ExecuteResult::CANCELED);
        let hold = trajectories.wait_for(cancel_time, "hold trajectory", |t| {
            t.points.len() == 1 && t.points[0].positions == vec![JOINT_VALUE; 7]
        });
        assert_eq!(hold.joint_names, joint_names());
    });
    // Trajectories: joint names from config, one point per chunk step at the control rate.
    let running: Vec<JointTrajectory> = trajectories
        .snapshot()
        .into_iter()
        .map(|(_, t)| t)
        .filter(|t| t.points.len() > 1)
        .collect();
    assert!(!running.is_empty(), "no multi-point trajectory was published");
    for t in &running {
        assert_eq!(t.joint_names, joint_names());
        assert!(t.header.stamp.sec > 0, "trajectories are stamped");
        for (k, p) in t.points.iter().enumerate() {
            assert_eq!(p.positions.len(), 7);
            assert_eq!(p.time_from_start.to_nanos(), (k as i64 + 1) * 100_000_000);
        }
    }
    // Rejection reasons reach operators on /rosout (the action protocol has no field for them).
    let r = rosout.wait_for(Instant::now() - WAIT * 2, "goal rejection on /rosout", |l| {
        l.msg.contains("rejected goal") && l.msg.contains("empty instruction")
    });
    assert_eq!((r.level, r.name.as_str()), (Log::WARN, "robot.arm_policy"), "{r:?}");
    assert!(r.stamp.sec > 0);
    // The "ready" line names the topics as remapped and resolved, not as configured.
    let ready = rosout.wait_for(Instant::now() - WAIT * 3, "the ready line on /rosout", |l| {
        l.msg.contains(" ready: ")
    });
    for topic in [
        "camera /cam/image",
        "joint states /robot/joint_states",
        "e-stop /robot/estop",
        "trajectories on /robot/joint_trajectory",
    ] {
        assert!(ready.msg.contains(topic), "'{topic}' missing from: {}", ready.msg);
    }

    let l = latents.wait_for(Instant::now() - WAIT, "latent tokens", |l| l.ids.len() == 4);
    assert!(l.ids.iter().all(|&i| (32001..32017).contains(&i)), "{l:?}");
    assert!(l.tokens.starts_with("<ACT_"));
    let d = diagnostics.wait_for(Instant::now() - WAIT, "diagnostics with latency", |d| {
        d.status.iter().any(|s| {
            s.name.contains("/robot/arm_policy")
                && s.values
                    .iter()
                    .any(|kv| kv.key == "inference_latency_p50_ms" && kv.value != "n/a")
        })
    });
    let keys: Vec<&str> = d.status[0].values.iter().map(|kv| kv.key.as_str()).collect();
    for k in [
        "control_rate_hz",
        "frames_dropped",
        "clamp_events",
        "state",
        "inference_latency_p95_ms",
    ] {
        assert!(keys.contains(&k), "{keys:?}");
    }
    let m = markers.wait_for(Instant::now() - WAIT, "chunk markers", |m| !m.markers.is_empty());
    assert_eq!(m.markers.len(), 7, "one line strip per joint");
    assert!(m.markers.iter().all(|k| !k.points.is_empty()));
    let p = previews.wait_for(Instant::now() - WAIT, "preprocessed input image", |_| true);
    assert_eq!((p.width, p.height, p.encoding.as_str()), (224, 224, "rgb8"));
    assert_eq!(p.data.len(), 224 * 224 * 3);

    // Safety end to end: the e-stop holds until released, a silent camera holds, both are reported.
    let holding = |what: &'static str| {
        move |d: &DiagnosticArray| {
            d.status
                .iter()
                .any(|s| s.values.iter().any(|kv| kv.key == "state" && kv.value.contains(what)))
        }
    };
    let mut estop_node = peer(&ctx, "estop_button");
    let estop = estop_node
        .create_publisher::<Bool>("/robot/estop", Qos::default_profile())
        .unwrap();
    rt.block_on(async {
        bounded("goal D", client.send_goal(goal("stack the blocks", 0)))
            .await
            .unwrap()
            .expect("goal D accepted");
    });
    let t_estop = Instant::now();
    let press = |on: bool| {
        for _ in 0..5 {
            estop.publish(Bool { data: on }).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    press(true);
    diagnostics.wait_for(t_estop, "e-stop hold", holding("e-stop engaged on /robot/estop"));
    trajectories.wait_for(t_estop, "hold trajectory", |t| {
        t.points.len() == 1 && t.points[0].positions == vec![JOINT_VALUE; 7]
    });
    press(false);
    let t_release = Instant::now();
    diagnostics.wait_for(t_release, "running after release", holding("running"));
    robot.images.store(false, std::sync::atomic::Ordering::SeqCst);
    let t_stale = Instant::now();
    diagnostics.wait_for(t_stale, "camera-stale hold", holding("camera stale"));
    drop(robot);
    // Ctrl-C: the node holds the arm at its measured position, then exits cleanly.
    let t_int = Instant::now();
    let status = child.interrupt_and_wait(WAIT);
    assert!(status.success(), "node exit status {status:?}");
    trajectories.wait_for(t_int, "hold trajectory on shutdown", |t| {
        t.points.len() == 1 && t.points[0].positions == vec![JOINT_VALUE; 7]
    });
}

#[test]
fn arm_node_bad_config_exits_with_a_clear_message() {
    guard();
    let dir = tempfile::tempdir().unwrap();
    // A missing checkpoint with a valid joint list, plus `extra` parameters.
    let missing = |extra: &[&str]| -> Vec<String> {
        let base = ["checkpoint:=/nonexistent", "decoder:=x.safetensors", "joint_names:=[a]"];
        base.iter()
            .chain(extra)
            .flat_map(|p| ["-p".to_string(), p.to_string()])
            .collect()
    };
    let (st, err) = spawn(BIN, 62, &missing(&["rate:=3"]), true).wait_exit(WAIT);
    assert!(!st.success());
    assert!(
        err.contains("unknown parameter(s) 'rate'") && err.contains("control_rate_hz"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let args = missing(&[]);
    let (st, err) = spawn(BIN, 62, &args, true).wait_exit(WAIT);
    assert!(!st.success());
    assert!(
        err.contains("cannot load the policy") && err.contains("nonexistent"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // The log lines before it went to a pipe: plain text, no terminal colour codes.
    assert!(err.contains("loading checkpoint") && !err.contains('\u{1b}'), "{err:?}");
    // The checkpoint loads but its head does not fit the joint list.
    let ckpt = checkpoint(dir.path());
    let args: Vec<String> = vec![
        "-p".into(),
        format!("checkpoint:={}", ckpt.display()),
        "-p".into(),
        "decoder:=action_decoder.safetensors".into(),
        "-p".into(),
        "joint_names:=[a, b]".into(),
    ];
    let (st, err) = spawn(BIN, 62, &args, true).wait_exit(WAIT);
    assert!(!st.success());
    assert!(err.contains("'joint_names' has 2 names") && err.contains("7"), "{err}");
}
