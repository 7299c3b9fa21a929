//! Every stop, asserted on the robot: `univla_arm` drives an emulated `joint_trajectory_controller`
//! (which rejects what the real one rejects and integrates a simulated arm), `univla_nav` an
//! emulated base. E-stop (latched before start-up too), stale joint states, cancel, preemption,
//! faults inside the node (an error, a panic, NaN output, a blocked inference) and shutdown each
//! stop the robot within one control period, and nothing moves it afterwards. The nodes run in
//! this process with the real engine on a tiny checkpoint, wrapped to inject the faults.
//! DDS tests: run them in a private network namespace (scripts/test.sh); they fail outside one.
mod node_common;

use std::time::{Duration, Instant};

use node_common::inproc::{Fault, InProcessNode, Kind};
use node_common::jtc::{trajectory, validate, EmulatedBase, EmulatedJtc, JtcSetup};
use node_common::*;
use univla_ros::ros::action::{GoalId, GoalStatus, RosActionClient};
use univla_ros::ros::msgs::builtin_interfaces::Duration as RosDuration;
use univla_ros::ros::msgs::diagnostic_msgs::{DiagnosticArray, DiagnosticStatus};
use univla_ros::ros::msgs::std_msgs::Bool;
use univla_ros::ros::msgs::univla_msgs::{Execute, ExecuteGoal, ExecuteResult};
use univla_ros::ros::{Qos, RosContext};
use univla_ros::runtime::postprocess::NavAction;

/// One DDS domain for this test binary (the in-process nodes read `ROS_DOMAIN_ID`); each test
/// uses its own namespace.
const DOMAIN: u16 = 81;
const RATE_HZ: f64 = 10.0;
const PERIOD: Duration = Duration::from_millis(100);
/// Transport and scheduling slack on top of one control period.
const SLACK: Duration = Duration::from_millis(60);
/// How long the robot must then stay still.
const OBSERVE: Duration = Duration::from_millis(600);
/// Joint states older than this hold the arm.
const JOINT_TIMEOUT: Duration = Duration::from_millis(300);
/// The supervision wake-up (the node checks its watchdogs at least this often).
const SUPERVISE: Duration = Duration::from_millis(50);
const JOINT_START: f64 = 0.125;
/// The gripper reads below its lower limit at start (a worn encoder).
const GRIPPER_START: f64 = -0.03;
const GRIPPER_LIMITS: (f64, f64) = (0.0, 1.0);
/// The largest distance a stop may still move a joint: one step at the velocity limit.
const MAX_VELOCITY: f64 = 0.5;
const STOP_TRAVEL: f64 = MAX_VELOCITY * 0.1 + 1e-9;

fn set_domain() {
    // Every test of this binary sets the same value; nothing else reads it concurrently.
    std::env::set_var("ROS_DOMAIN_ID", DOMAIN.to_string());
}

fn joint_names() -> Vec<String> {
    (1..=7).map(|i| format!("joint{i}")).collect()
}

fn goal(instruction: &str) -> ExecuteGoal {
    ExecuteGoal {
        instruction: instruction.into(),
        max_steps: 0,
        time_limit: RosDuration::default(),
        mode: String::new(),
    }
}

fn list(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", ")
}

/// Parameters of an arm node in `ns` with the real-world head, 7 joints (the gripper limited to
/// [`GRIPPER_LIMITS`]), and `extra` lines.
fn arm_params(dir: &std::path::Path, ns: &str, extra: &str) -> Vec<String> {
    let ckpt = checkpoint(dir);
    let params = dir.join(format!("{}.yaml", ns.trim_start_matches('/')));
    let mut min = vec![-1.0; 7];
    let mut max = vec![1.0; 7];
    (min[6], max[6]) = GRIPPER_LIMITS;
    std::fs::write(
        &params,
        format!(
            "/**:\n  ros__parameters:\n    checkpoint: {ckpt}\n    decoder: action_decoder.safetensors\n    realworld_stats: {ckpt}/realworld_stats.json\n    greedy: true\n    control_rate_hz: {RATE_HZ:?}\n    image_timeout_s: 2.0\n    joint_state_timeout_s: {jt:?}\n    joint_names: [{names}]\n    position_min: [{min}]\n    position_max: [{max}]\n    max_velocity: [{vel}]\n    max_step: [{step}]\n{extra}",
            ckpt = ckpt.display(),
            jt = JOINT_TIMEOUT.as_secs_f64(),
            names = joint_names().join(", "),
            min = list(&min),
            max = list(&max),
            vel = list(&[MAX_VELOCITY; 7]),
            step = list(&[0.1; 7]),
        ),
    )
    .unwrap();
    [
        "-r",
        "__node:=arm_policy",
        "-r",
        &format!("__ns:={ns}"),
        "--params-file",
        params.to_str().unwrap(),
        "-r",
        "image_raw:=/stops_cam/image",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn emulated_arm(ns: &str) -> EmulatedJtc {
    let mut initial = vec![JOINT_START; 7];
    initial[6] = GRIPPER_START;
    EmulatedJtc::start(
        DOMAIN,
        JtcSetup {
            joints: joint_names(),
            initial,
            trajectory_topic: Some(format!("{ns}/joint_trajectory")),
            action: None,
            joint_state_topic: format!("{ns}/joint_states"),
        },
    )
}

/// Sends `g` until the node accepts it (it rejects goals until it has seen images and joints).
async fn send_when_ready(client: &RosActionClient<Execute>, g: &ExecuteGoal) -> GoalId {
    let start = Instant::now();
    loop {
        if let Ok(r) = tokio::time::timeout(Duration::from_secs(5), client.send_goal(g.clone())).await {
            if let Some(id) = r.unwrap() {
                return id;
            }
        }
        assert!(start.elapsed() < WAIT, "goal '{}' was never accepted", g.instruction);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn estop_publisher(ctx: &RosContext, topic: &str) -> univla_ros::ros::RosPublisher<Bool> {
    let mut n = peer(ctx, "estop_button");
    n.create_publisher::<Bool>(topic, Qos::transient_local()).unwrap()
}

/// The node's last diagnostics status of level `level` whose `key` contains `text`.
fn wait_diagnostic(d: &Collector<DiagnosticArray>, since: Instant, node: &str, level: u8, key: &str, text: &str) {
    d.wait_for(
        since,
        &format!("{node} diagnostics at level {level} with {key} ~ '{text}'"),
        |m| {
            m.status.iter().any(|s| {
                s.name.contains(node)
                    && s.level == level
                    && s.values.iter().any(|kv| kv.key == key && kv.value.contains(text))
            })
        },
    );
}

#[test]
fn the_emulated_controller_rejects_what_joint_trajectory_controller_rejects() {
    let joints: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
    let now = 1_000_000_000_000i64;
    let ok = trajectory(&["a", "b"], now, &[(100, vec![0.0, 0.0]), (200, vec![0.1, 0.1])]);
    assert_eq!(validate(&ok, &joints, now), Ok(()));
    let cases = [
        (trajectory(&["a", "b"], 0, &[]), "Empty trajectory received."),
        (
            trajectory(&["a"], 0, &[(1, vec![0.0])]),
            "don't match the controller joints",
        ),
        (trajectory(&["a", "c"], 0, &[(1, vec![0.0, 0.0])]), "Incoming joint c"),
        (
            trajectory(&["a", "b"], now - 1_000_000_000, &[(100, vec![0.0, 0.0])]),
            "ends in the past",
        ),
        (
            trajectory(&["a", "b"], 0, &[(200, vec![0.0, 0.0]), (200, vec![0.0, 0.0])]),
            "not strictly increasing",
        ),
        (
            trajectory(&["a", "b"], 0, &[(100, vec![0.0])]),
            "Mismatch between joint_names size",
        ),
    ];
    for (t, msg) in cases {
        let e = validate(&t, &joints, now).unwrap_err();
        assert!(e.contains(msg), "{e} / {msg}");
    }
    let mut moving_end = ok.clone();
    moving_end.points[1].velocities = vec![0.0, 0.1];
    assert!(validate(&moving_end, &joints, now).unwrap_err().contains("is not zero"));
}

#[test]
fn arm_stops_on_estop_stale_joints_cancel_preemption_and_shutdown() {
    guard();
    set_domain();
    let ns = "/stops_arm";
    let dir = tempfile::tempdir().unwrap();
    let args = arm_params(dir.path(), ns, "");
    let ctx = RosContext::with_domain(DOMAIN).unwrap();
    // A latched e-stop pressed before the node starts.
    let estop = estop_publisher(&ctx, &format!("{ns}/estop"));
    estop.publish(Bool { data: true }).unwrap();
    let arm = emulated_arm(ns);
    let _camera = SyntheticRobot::start(DOMAIN, "/stops_cam/image", None, 15.0);
    let diagnostics = Collector::<DiagnosticArray>::start(DOMAIN, "/diagnostics", Qos::default_profile());
    let t0 = Instant::now();
    // A slow first inference after each preemption: the arm must stand still meanwhile.
    let mut node = InProcessNode::start(
        Kind::Arm,
        &args,
        Fault::SlowAfterReset(Duration::from_millis(1500)),
        None,
    );
    let mut client_node = peer(&ctx, "stops_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, &format!("{ns}/arm_policy/execute")).unwrap();
    let rt = runtime();
    rt.block_on(async {
        wait_for_action_server(&client, &client_node).await;
        // 1. Latched e-stop: goals are refused until it is released.
        wait_diagnostic(
            &diagnostics,
            t0,
            &format!("{ns}/arm_policy"),
            DiagnosticStatus::WARN,
            "state",
            "e-stop engaged",
        );
        assert_eq!(
            bounded("goal under e-stop", client.send_goal(goal("pick")))
                .await
                .unwrap(),
            None
        );
        estop.publish(Bool { data: false }).unwrap();
        let a = send_when_ready(&client, &goal("pick up the cup")).await;
        arm.wait_moving(Instant::now(), 1e-3, "the arm moving for goal A");

        // 2. E-stop mid-motion.
        let t = Instant::now();
        estop.publish(Bool { data: true }).unwrap();
        arm.assert_stops("e-stop", t, PERIOD + SLACK, OBSERVE, STOP_TRAVEL);
        estop.publish(Bool { data: false }).unwrap();
        arm.wait_moving(Instant::now(), 1e-3, "the arm moving again after the release");

        // 3. Joint states go quiet (the arm keeps executing what it has).
        arm.publish_states.store(false, std::sync::atomic::Ordering::SeqCst);
        let t = Instant::now() + JOINT_TIMEOUT;
        // The hold falls back on the last commanded point (the measured one is stale).
        arm.assert_stops(
            "stale joint states",
            t,
            PERIOD + SLACK + SUPERVISE,
            OBSERVE,
            2.0 * STOP_TRAVEL,
        );
        arm.publish_states.store(true, std::sync::atomic::Ordering::SeqCst);
        arm.wait_moving(Instant::now(), 1e-3, "the arm moving again with fresh joint states");

        // 4. Cancel.
        let t = Instant::now();
        assert!(bounded("cancel", client.cancel(a)).await.unwrap());
        arm.assert_stops("cancel", t, PERIOD + SLACK, OBSERVE, STOP_TRAVEL);
        let (status, _) = bounded("result A", client.result(a)).await.unwrap();
        assert_eq!(status, GoalStatus::Canceled);

        // 5. Preemption: a new goal stops the old motion at once; its own first chunk is 1.5 s away.
        let b = send_when_ready(&client, &goal("open the drawer")).await;
        arm.wait_moving(Instant::now(), 1e-3, "the arm moving for goal B");
        let t = Instant::now();
        let c = send_when_ready(&client, &goal("close the drawer")).await;
        arm.assert_stops("preemption", t, PERIOD + SLACK, Duration::from_millis(900), STOP_TRAVEL);
        let (status, result) = bounded("result B", client.result(b)).await.unwrap();
        assert_eq!(
            (status, result.outcome),
            (GoalStatus::Aborted, ExecuteResult::PREEMPTED)
        );
        arm.wait_moving(Instant::now(), 1e-3, "the arm moving for goal C");
        let _ = c;
    });
    // 6. Shutdown (what SIGINT does) with a goal running.
    let t = Instant::now();
    node.stop().unwrap();
    // The loop sees the request within one supervision wake-up.
    arm.assert_stops("shutdown", t, PERIOD + SLACK + SUPERVISE, OBSERVE, STOP_TRAVEL);

    // The controller accepted everything the node sent, the gripper never left its limits (it
    // started below them), and every stop was a one-point hold it executed.
    let all = arm.received();
    let rejected: Vec<_> = all
        .iter()
        .filter(|r| !r.accepted())
        .map(|r| (&r.verdict, &r.trajectory))
        .collect();
    assert!(rejected.is_empty(), "the controller rejected: {rejected:#?}");
    let holds = all.iter().filter(|r| r.trajectory.points.len() == 1).count();
    assert!(holds >= 5, "{holds} holds");
    for r in &all {
        for p in &r.trajectory.points {
            let g = p.positions[6];
            assert!(
                (GRIPPER_LIMITS.0..=GRIPPER_LIMITS.1).contains(&g),
                "gripper target {g} outside {GRIPPER_LIMITS:?}"
            );
        }
    }
}

#[test]
fn dead_man_mode_holds_without_a_heartbeat() {
    guard();
    set_domain();
    let ns = "/deadman_arm";
    let dir = tempfile::tempdir().unwrap();
    let args = arm_params(dir.path(), ns, "    estop_heartbeat_timeout_s: 0.5\n");
    let ctx = RosContext::with_domain(DOMAIN).unwrap();
    let estop = estop_publisher(&ctx, &format!("{ns}/estop"));
    let arm = emulated_arm(ns);
    let _camera = SyntheticRobot::start(DOMAIN, "/stops_cam/image", None, 15.0);
    let _node = InProcessNode::start(Kind::Arm, &args, Fault::None, None);
    let mut client_node = peer(&ctx, "deadman_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, &format!("{ns}/arm_policy/execute")).unwrap();
    let beating = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rt = runtime();
    rt.block_on(async {
        wait_for_action_server(&client, &client_node).await;
        // No heartbeat yet: refused (give the node time to see images and joints first).
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            bounded("goal without heartbeat", client.send_goal(goal("pick")))
                .await
                .unwrap(),
            None
        );
        // A `false` every 100 ms keeps it alive.
        beating.store(true, std::sync::atomic::Ordering::SeqCst);
        let heart = {
            let beating = std::sync::Arc::clone(&beating);
            std::thread::spawn(move || {
                let start = Instant::now();
                while beating.load(std::sync::atomic::Ordering::SeqCst) && start.elapsed() < WAIT {
                    estop.publish(Bool { data: false }).unwrap();
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let _a = send_when_ready(&client, &goal("pick up the cup")).await;
        arm.wait_moving(Instant::now(), 1e-3, "the arm moving while the heartbeat comes");
        // The heartbeat stops: held within the timeout (plus one supervision wake-up).
        beating.store(false, std::sync::atomic::Ordering::SeqCst);
        heart.join().unwrap();
        let t = Instant::now() + Duration::from_millis(500);
        arm.assert_stops("dead-man timeout", t, PERIOD + SLACK + SUPERVISE, OBSERVE, STOP_TRAVEL);
    });
}

/// One fault case: the goal aborts with `reason`, the arm stops, `/diagnostics` says ERROR, and
/// the node takes the next goal (or exits, with `on_fault: exit`).
fn fault_case(ns: &str, fault: Fault, reason: &str, stop_after_fire: Duration, exit: bool) {
    let dir = tempfile::tempdir().unwrap();
    let extra = if exit {
        "    on_fault: exit\n    inference_timeout_s: 1.0\n"
    } else {
        "    inference_timeout_s: 1.0\n"
    };
    let args = arm_params(dir.path(), ns, extra);
    let ctx = RosContext::with_domain(DOMAIN).unwrap();
    let arm = emulated_arm(ns);
    let _camera = SyntheticRobot::start(DOMAIN, "/stops_cam/image", None, 15.0);
    let diagnostics = Collector::<DiagnosticArray>::start(DOMAIN, "/diagnostics", Qos::default_profile());
    let mut node = InProcessNode::start(Kind::Arm, &args, fault, None);
    let mut client_node = peer(&ctx, "fault_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, &format!("{ns}/arm_policy/execute")).unwrap();
    let rt = runtime();
    rt.block_on(async {
        wait_for_action_server(&client, &client_node).await;
        let a = send_when_ready(&client, &goal("pick up the cup")).await;
        let (status, result) = bounded("result of the faulty goal", client.result(a)).await.unwrap();
        assert_eq!(
            (status, result.outcome),
            (GoalStatus::Aborted, ExecuteResult::ABORTED),
            "{result:?}"
        );
        assert!(
            result.reason.contains(reason),
            "{ns}: {:?} does not say '{reason}'",
            result.reason
        );
        let fired = node.fired_at().expect("the fault fired");
        arm.assert_stops(
            ns,
            fired + stop_after_fire,
            PERIOD + SLACK + SUPERVISE,
            OBSERVE,
            STOP_TRAVEL,
        );
        if exit {
            let end = node.wait_end("the node's exit after the fault");
            assert!(end.as_ref().is_err_and(|e| e.contains(reason)), "{end:?}");
            return;
        }
        wait_diagnostic(
            &diagnostics,
            fired,
            &format!("{ns}/arm_policy"),
            DiagnosticStatus::ERROR,
            "fault",
            reason,
        );
        // It recovers: the next goal runs.
        let since = Instant::now();
        let b = send_when_ready(&client, &goal("try again")).await;
        arm.wait_moving(since, 1e-3, "the arm moving for the goal after the fault");
        wait_diagnostic(
            &diagnostics,
            since,
            &format!("{ns}/arm_policy"),
            DiagnosticStatus::OK,
            "state",
            "running",
        );
        assert!(bounded("cancel", client.cancel(b)).await.unwrap());
    });
    if !exit {
        node.stop().unwrap();
    }
    let rejected: Vec<_> = arm
        .received()
        .into_iter()
        .filter(|r| !r.accepted())
        .map(|r| r.verdict)
        .collect();
    assert!(rejected.is_empty(), "{ns}: the controller rejected {rejected:?}");
}

/// The default panic hook prints the injected panic with a backtrace (under RUST_BACKTRACE) before
/// the unwinding reaches the worker, which can take longer than a control period; the injected
/// one is passed over silently, every other panic as before.
fn quiet_injected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|m| m.contains(node_common::inproc::INJECTED_PANIC));
        if !injected {
            default(info);
        }
    }));
}

#[test]
fn arm_faults_abort_hold_and_recover() {
    guard();
    set_domain();
    fault_case(
        "/fault_error",
        Fault::Error(4),
        "injected inference failure",
        Duration::ZERO,
        false,
    );
    quiet_injected_panics();
    fault_case("/fault_panic", Fault::Panic(4), "injected panic", Duration::ZERO, false);
    fault_case("/fault_nan", Fault::NonFinite(4), "NaN or Inf", Duration::ZERO, false);
    // A blocked inference is a fault once it runs past inference_timeout_s (1 s).
    fault_case(
        "/fault_block",
        Fault::Block(4, Duration::from_millis(2500)),
        "inference stalled",
        Duration::from_secs(1),
        false,
    );
}

#[test]
fn arm_fault_with_on_fault_exit_holds_then_exits_with_the_reason() {
    guard();
    set_domain();
    fault_case(
        "/fault_exit",
        Fault::Error(3),
        "injected inference failure",
        Duration::ZERO,
        true,
    );
}

#[test]
fn nav_sends_zero_twist_at_once_on_preemption_cancel_estop_and_shutdown() {
    guard();
    set_domain();
    let ns = "/stops_base";
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let params = dir.path().join("nav.yaml");
    std::fs::write(
        &params,
        format!(
            "/**:\n  ros__parameters:\n    checkpoint: {}\n    decoder: action_decoder_r2r.safetensors\n    greedy: true\n    control_rate_hz: 20.0\n    linear_speed: 0.25\n    settle_s: 0.05\n    image_timeout_s: 2.0\n",
            ckpt.display()
        ),
    )
    .unwrap();
    let args: Vec<String> = [
        "-r",
        "__node:=nav_policy",
        "-r",
        &format!("__ns:={ns}"),
        "--params-file",
        params.to_str().unwrap(),
        "-r",
        "image_raw:=/stops_nav_cam/image",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let period = Duration::from_millis(50);
    let ctx = RosContext::with_domain(DOMAIN).unwrap();
    let estop = estop_publisher(&ctx, &format!("{ns}/estop"));
    let base = EmulatedBase::start(DOMAIN, &format!("{ns}/cmd_vel"));
    let _camera = SyntheticRobot::start(DOMAIN, "/stops_nav_cam/image", None, 15.0);
    // Every decision is "forward 0.25 m" (1 s at 0.25 m/s), so the base is moving when a stop
    // comes; a new goal's first decision takes 1 s.
    let mut node = InProcessNode::start(
        Kind::Nav,
        &args,
        Fault::SlowAfterReset(Duration::from_secs(1)),
        Some(NavAction::Forward),
    );
    let mut client_node = peer(&ctx, "nav_stops_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, &format!("{ns}/nav_policy/execute")).unwrap();
    let rt = runtime();
    rt.block_on(async {
        wait_for_action_server(&client, &client_node).await;
        let a = send_when_ready(&client, &goal("walk to the door")).await;
        base.wait_moving(Instant::now() - Duration::from_secs(1), "the base moving for goal A");

        // Preemption: zero at once, repeated, and still until the new goal decides (1 s).
        let t = Instant::now();
        let b = send_when_ready(&client, &goal("walk to the sofa")).await;
        base.assert_stops("preemption", t, SLACK, Duration::from_millis(700));
        assert!(
            base.zeros(t, t + Duration::from_millis(700)) >= 3,
            "the zero twist is repeated"
        );
        let (status, result) = bounded("result A", client.result(a)).await.unwrap();
        assert_eq!(
            (status, result.outcome),
            (GoalStatus::Aborted, ExecuteResult::PREEMPTED)
        );
        base.wait_moving(t + Duration::from_millis(700), "the base moving for goal B");

        // E-stop while moving; release resumes.
        let t = Instant::now();
        estop.publish(Bool { data: true }).unwrap();
        base.assert_stops("e-stop", t, SLACK, OBSERVE);
        estop.publish(Bool { data: false }).unwrap();
        base.wait_moving(Instant::now(), "the base moving after the e-stop release");

        // Cancel while moving.
        let t = Instant::now();
        assert!(bounded("cancel", client.cancel(b)).await.unwrap());
        base.assert_stops("cancel", t, SLACK, OBSERVE);
        assert!(base.zeros(t, t + OBSERVE) >= 3, "the zero twist is repeated");

        let _c = send_when_ready(&client, &goal("walk to the kitchen")).await;
        base.wait_moving(Instant::now(), "the base moving for goal C");
    });
    let t = Instant::now();
    node.stop().unwrap();
    base.assert_stops("shutdown", t, period + SLACK + SUPERVISE, OBSERVE);
}
