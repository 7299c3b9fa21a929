//! `univla_arm` with `policy_url`: no checkpoint, the chunks come from a stub policy server on
//! 127.0.0.1. The trajectories the emulated `joint_trajectory_controller` receives are the
//! server's rows; when the server stops answering, the goal is aborted and the arm holds still,
//! as after a local inference stall; a later goal runs on a new connection.
//! DDS tests: run them in a private network namespace (scripts/test.sh); they fail outside one.
mod node_common;
mod remote_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use node_common::jtc::{EmulatedJtc, JtcSetup};
use node_common::*;
use remote_common::{Reply, StubServer};
use univla_ros::ros::action::{GoalStatus, RosActionClient};
use univla_ros::ros::msgs::builtin_interfaces::Duration as RosDuration;
use univla_ros::ros::msgs::univla_msgs::{Execute, ExecuteGoal, ExecuteResult};
use univla_ros::ros::{RosArgs, RosContext};

const DOMAIN: u16 = 85;
const PERIOD: Duration = Duration::from_millis(100);
const SLACK: Duration = Duration::from_millis(60);
const OBSERVE: Duration = Duration::from_millis(600);
const JOINT_START: f64 = 0.125;
/// Each chunk row steps every joint this far from the proprio the server received.
const DELTA: f32 = 0.005;
const ROWS: usize = 8;
/// The policy server's answer timeout of the node.
const POLICY_TIMEOUT_S: f64 = 0.5;

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

/// Runs `univla_arm` (with the policy loading of the binary) on a thread of this process.
struct Node {
    shutdown: Arc<AtomicBool>,
    result: Arc<Mutex<Option<Result<(), String>>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    fn start(ros_args: &[String]) -> Self {
        let mut argv = vec!["node".to_string(), "--ros-args".to_string()];
        argv.extend_from_slice(ros_args);
        let (args, _) = RosArgs::parse(argv).unwrap();
        univla_ros::ros::logging::init_tracing(&args);
        let shutdown = Arc::new(AtomicBool::new(false));
        let result = Arc::new(Mutex::new(None));
        let (s, r) = (Arc::clone(&shutdown), Arc::clone(&result));
        let handle = std::thread::spawn(move || {
            let out = univla_ros::node::wiring::arm_node::run_arm(&args, s);
            *r.lock().unwrap() = Some(out.map_err(|e| e.to_string()));
        });
        Self {
            shutdown,
            result,
            handle: Some(handle),
        }
    }

    fn ended(&self) -> Option<Result<(), String>> {
        self.result.lock().unwrap().clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn arm_params(dir: &std::path::Path, url: &str) -> Vec<String> {
    let params = dir.join("remote.yaml");
    let list = |v: f64| vec![format!("{v:?}"); 7].join(", ");
    std::fs::write(
        &params,
        format!(
            "/**:\n  ros__parameters:\n    policy_url: {url}\n    policy_timeout_s: {POLICY_TIMEOUT_S:?}\n    \
             control_rate_hz: 10.0\n    execution: open_loop\n    image_timeout_s: 2.0\n    \
             joint_state_timeout_s: 0.3\n    joint_names: [{names}]\n    position_min: [{min}]\n    \
             position_max: [{max}]\n    max_velocity: [{vel}]\n    max_step: [{step}]\n",
            names = joint_names().join(", "),
            min = list(-3.0),
            max = list(3.0),
            vel = list(2.0),
            step = list(0.5),
        ),
    )
    .unwrap();
    [
        "-r",
        "__node:=arm_policy",
        "-r",
        "__ns:=/remote_arm",
        "--params-file",
        params.to_str().unwrap(),
        "-r",
        "image_raw:=/remote_cam/image",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn send_when_ready(client: &RosActionClient<Execute>, g: &ExecuteGoal) -> univla_ros::ros::action::GoalId {
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

/// True if `p` equals a row of a chunk the server sent (f32 on the wire).
fn from_server(p: &[f64], sent: &[Vec<Vec<f32>>]) -> bool {
    sent.iter()
        .flatten()
        .any(|row| row.len() == p.len() && row.iter().zip(p).all(|(&r, &x)| (f64::from(r) - x).abs() < 1e-9))
}

#[test]
fn arm_runs_on_a_policy_server_and_holds_when_it_goes_silent() {
    guard();
    std::env::set_var("ROS_DOMAIN_ID", DOMAIN.to_string());
    let stub = StubServer::start_with(
        "real_world",
        Reply::Drift {
            rows: ROWS,
            dim: 7,
            delta: DELTA,
        },
        vec![],
    );
    let dir = tempfile::tempdir().unwrap();
    let args = arm_params(dir.path(), &stub.url());
    let ctx = RosContext::with_domain(DOMAIN).unwrap();
    let arm = EmulatedJtc::start(
        DOMAIN,
        JtcSetup {
            joints: joint_names(),
            initial: vec![JOINT_START; 7],
            trajectory_topic: Some("/remote_arm/joint_trajectory".into()),
            action: None,
            joint_state_topic: "/remote_arm/joint_states".into(),
        },
    );
    let _camera = SyntheticRobot::start(DOMAIN, "/remote_cam/image", None, 15.0);
    let node = Node::start(&args);
    let mut client_node = peer(&ctx, "remote_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, "/remote_arm/arm_policy/execute").unwrap();
    let rt = runtime();
    rt.block_on(async {
        wait_for_action_server(&client, &client_node).await;
        assert_eq!(node.ended(), None, "the node ended at start-up");
        let a = send_when_ready(&client, &goal("pick up the cup")).await;
        let since = Instant::now();
        arm.wait_moving(since, 0.02, "the arm moving on the server's chunks");

        // What the server saw: the instruction, a new episode first, the camera and the joints.
        let seen = stub.seen();
        assert_eq!(seen[0].prompt, "pick up the cup");
        assert!(seen[0].reset && !seen.get(1).is_some_and(|s| s.reset), "{seen:?}");
        assert_eq!(seen[0].image_shape.len(), 3);
        assert_eq!(seen[0].state.as_ref().map(Vec::len), Some(7));

        // 2. The server goes silent: the goal aborts with the reason and the arm holds.
        stub.silent.store(true, Ordering::SeqCst);
        let (status, result) = bounded("result of the goal", client.result(a)).await.unwrap();
        let t = Instant::now();
        assert_eq!(
            (status, result.outcome),
            (GoalStatus::Aborted, ExecuteResult::ABORTED),
            "{result:?}"
        );
        assert!(
            result.reason.contains("did not answer within 0.5 s"),
            "{:?}",
            result.reason
        );
        // The hold went out before the result; at most the rest of one step of travel remains.
        arm.assert_stops(
            "silent server",
            t,
            PERIOD + SLACK,
            OBSERVE,
            2.0 * f64::from(DELTA) + 1e-9,
        );

        // 3. It answers again: the next goal runs on a new connection.
        stub.silent.store(false, Ordering::SeqCst);
        let since = Instant::now();
        let b = send_when_ready(&client, &goal("put it down")).await;
        arm.wait_moving(since, 0.02, "the arm moving after the server is back");
        assert!(stub.connections() >= 2, "{} connections", stub.connections());
        assert!(bounded("cancel", client.cancel(b)).await.unwrap());
    });
    drop(node);

    // Every multi-point trajectory the controller got consists of the server's rows, and the
    // controller accepted everything.
    let sent = stub.sent();
    let all = arm.received();
    let chunks: Vec<_> = all.iter().filter(|r| r.trajectory.points.len() > 1).collect();
    assert!(!chunks.is_empty(), "no chunk reached the controller");
    for r in &chunks {
        assert!(r.accepted(), "{:?}", r.verdict);
        for p in &r.trajectory.points {
            assert!(
                from_server(&p.positions, &sent),
                "{:?} is no row the server sent",
                p.positions
            );
        }
    }
    assert!(all.iter().any(|r| r.trajectory.points.len() == 1), "no hold was sent");
}
