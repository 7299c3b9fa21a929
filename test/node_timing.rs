//! End-to-end timing behaviour of `univla_arm` (separate process, real engine, tiny checkpoint):
//! under `use_sim_time` the control steps follow `/clock` (and stop while it stands still), a chunk
//! that arrives between steps goes out at once stamped for the next step, trajectory stamps are
//! simulated time, the per-frame overhead is reported, and with a URDF chain the chunk is drawn as
//! the tool path in the chain's base frame. DDS test: run it in a private network namespace.
mod node_common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use node_common::*;
use univla_ros::ros::action::RosActionClient;
use univla_ros::ros::msgs::builtin_interfaces::Time;
use univla_ros::ros::msgs::diagnostic_msgs::DiagnosticArray;
use univla_ros::ros::msgs::rosgraph_msgs::Clock;
use univla_ros::ros::msgs::trajectory_msgs::JointTrajectory;
use univla_ros::ros::msgs::univla_msgs::{Execute, ExecuteGoal};
use univla_ros::ros::msgs::visualization_msgs::MarkerArray;
use univla_ros::ros::{Qos, RosContext};

const BIN: &str = env!("CARGO_BIN_EXE_univla_arm");
/// Simulated time starts here (far from the wall clock, so stamps tell which clock made them).
const SIM_START_S: i64 = 1000;
/// Control period at 5 Hz.
const PERIOD_NS: i64 = 200_000_000;

/// Publishes `/clock` at 100 Hz: simulated time advances with the wall clock while `running`,
/// and stands still otherwise (a paused simulator).
struct SimClock {
    running: Arc<AtomicBool>,
    nanos: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl SimClock {
    fn start(domain: u16) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let nanos = Arc::new(AtomicI64::new(SIM_START_S * 1_000_000_000));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, n, s) = (Arc::clone(&running), Arc::clone(&nanos), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            let ctx = RosContext::with_domain(domain).unwrap();
            let mut node = peer(&ctx, "sim_clock");
            let p = node
                .create_publisher::<Clock>("/clock", Qos::default_profile())
                .unwrap();
            let tick = Duration::from_millis(10);
            let start = Instant::now();
            while !s.load(Ordering::SeqCst) && start.elapsed() < WAIT * 6 {
                if r.load(Ordering::SeqCst) {
                    n.fetch_add(tick.as_nanos() as i64, Ordering::SeqCst);
                }
                let clock = Time::from_nanos(n.load(Ordering::SeqCst));
                p.publish(Clock { clock }).unwrap();
                std::thread::sleep(tick);
            }
        });
        Self {
            running,
            nanos,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for SimClock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn joint_names() -> Vec<String> {
    (1..=7).map(|i| format!("joint{i}")).collect()
}

#[test]
fn arm_node_runs_on_sim_time_sends_chunks_between_steps_and_draws_the_fk_path() {
    guard();
    let domain = 53;
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let urdf = concat!(env!("CARGO_MANIFEST_DIR"), "/test/data/urdf/arm6.urdf");
    let limits = |v: f64| format!("[{}]", vec![v.to_string(); 7].join(", "));
    let params: Vec<(String, String)> = vec![
        ("checkpoint".into(), ckpt.display().to_string()),
        ("decoder".into(), "action_decoder.safetensors".into()),
        (
            "realworld_stats".into(),
            format!("{}/realworld_stats.json", ckpt.display()),
        ),
        ("joint_names".into(), format!("[{}]", joint_names().join(", "))),
        ("position_min".into(), limits(-50.0)),
        ("position_max".into(), limits(50.0)),
        ("max_velocity".into(), limits(1000.0)),
        ("max_step".into(), limits(100.0)),
        ("greedy".into(), "true".into()),
        ("use_sim_time".into(), "true".into()),
        ("control_rate_hz".into(), "5.0".into()),
        ("image_timeout_s".into(), "2.0".into()),
        ("joint_state_timeout_s".into(), "2.0".into()),
        ("diagnostics_period_s".into(), "0.5".into()),
        ("frame_id".into(), "robot_base".into()),
        ("urdf_path".into(), urdf.into()),
        ("urdf_base_link".into(), "base_link".into()),
        ("urdf_tip_link".into(), "tool0".into()),
    ];
    let mut args: Vec<String> = vec!["-r".into(), "__node:=arm".into()];
    for (k, v) in &params {
        args.push("-p".into());
        args.push(format!("{k}:={v}"));
    }
    let clock = SimClock::start(domain);
    let mut child = spawn(BIN, domain, &args, false);
    let _robot = SyntheticRobot::start(domain, "/image_raw", Some(("/joint_states", joint_names(), 0.1)), 15.0);
    let trajectories = Collector::<JointTrajectory>::start(domain, "/joint_trajectory", Qos::default_profile());
    let markers = Collector::<MarkerArray>::start(domain, "/arm/chunk_markers", Qos::default_profile());
    let diagnostics = Collector::<DiagnosticArray>::start(domain, "/diagnostics", Qos::default_profile());
    let ctx = RosContext::with_domain(domain).unwrap();
    let mut client_node = peer(&ctx, "goal_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, "/arm/execute").unwrap();
    let rt = runtime();
    let (frozen_at, freeze_seen) = rt.block_on(async {
        bounded("action server discovery", client.wait_for_server(&client_node)).await;
        let start = Instant::now();
        let goal = loop {
            let g = ExecuteGoal {
                instruction: "stack the blocks".into(),
                ..Default::default()
            };
            if let Some(id) = bounded("goal", client.send_goal(g)).await.unwrap() {
                break id;
            }
            assert!(start.elapsed() < WAIT, "the goal was never accepted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let feedback = client.feedback(goal).filter_map(|f| async move { f.ok() });
        let mut feedback = std::pin::pin!(feedback);
        let mut last_step = 0;
        for _ in 0..3 {
            last_step = bounded("feedback while /clock runs", feedback.next())
                .await
                .unwrap()
                .step;
        }
        // Pause the simulation: control steps stop, so step feedback stops too.
        clock.running.store(false, Ordering::SeqCst);
        let frozen_at = clock.nanos.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let freeze_seen = Instant::now();
        let mut during_freeze = Vec::new();
        let quiet = tokio::time::timeout(Duration::from_millis(1500), async {
            while let Some(f) = feedback.next().await {
                during_freeze.push(f.step);
            }
        })
        .await;
        assert!(quiet.is_err(), "the feedback stream ended");
        // Steps already under way when /clock stopped may still report; no step starts later.
        assert!(
            during_freeze.len() <= 2,
            "steps ran while /clock stood still: {during_freeze:?}"
        );
        clock.running.store(true, Ordering::SeqCst);
        let after = bounded("feedback after /clock resumes", feedback.next())
            .await
            .unwrap()
            .step;
        assert!(after > last_step, "{after} after {last_step}");
        assert!(bounded("cancel", client.cancel(goal)).await.unwrap());
        (frozen_at, freeze_seen)
    });
    let all = trajectories.snapshot();
    let running: Vec<&(Instant, JointTrajectory)> = all.iter().filter(|(_, t)| t.points.len() > 1).collect();
    assert!(!running.is_empty(), "no trajectory was published");
    for (_, t) in &running {
        let s = t.header.stamp.to_nanos();
        assert!(
            (SIM_START_S * 1_000_000_000..(SIM_START_S + 120) * 1_000_000_000).contains(&s),
            "trajectory stamped {s} ns: not simulated time"
        );
    }
    // While /clock stood still, new chunks still went out at once (the model runs on wall time),
    // stamped to start at the next step: after the frozen time, never at it.
    let frozen: Vec<i64> = running
        .iter()
        .filter(|(at, _)| *at >= freeze_seen && *at < freeze_seen + Duration::from_millis(1200))
        .map(|(_, t)| t.header.stamp.to_nanos())
        .collect();
    assert!(!frozen.is_empty(), "no chunk went out between control steps");
    for s in &frozen {
        assert!(
            *s > frozen_at && *s <= frozen_at + PERIOD_NS,
            "a chunk sent between steps is stamped {s}, frozen time {frozen_at}"
        );
    }
    // Diagnostics keep coming while the simulation is paused (they run on the wall clock).
    let paused = diagnostics
        .snapshot()
        .iter()
        .filter(|(at, _)| *at >= freeze_seen && *at < freeze_seen + Duration::from_millis(1200))
        .count();
    assert!(paused >= 1, "no diagnostics while /clock stood still");
    // The FK path: a line through the tool positions in the URDF base frame.
    let m = markers.wait_for(Instant::now() - WAIT * 3, "FK path markers", |m| !m.markers.is_empty());
    let path = &m.markers[0];
    assert_eq!(path.header.frame_id, "base_link");
    assert!(path.points.len() > 1, "{path:?}");
    for p in &path.points {
        let r = (p.x * p.x + p.y * p.y + p.z * p.z).sqrt();
        assert!(r.is_finite() && r < 2.0, "tool point {p:?} outside the arm's reach");
    }
    // Per-frame overhead outside the model is measured and reported.
    let d = diagnostics.wait_for(Instant::now() - WAIT * 3, "overhead in diagnostics", |d| {
        d.status[0]
            .values
            .iter()
            .any(|kv| kv.key == "overhead_p99_ms" && kv.value.parse::<f64>().is_ok())
    });
    let p99: f64 = d.status[0]
        .values
        .iter()
        .find(|kv| kv.key == "overhead_p99_ms")
        .unwrap()
        .value
        .parse()
        .unwrap();
    // Real work was measured (a frame's way through the node is never free) and it is a
    // duration, not a wrapped or unset value.
    assert!(
        p99 > 0.0 && p99.is_finite() && p99 < 60_000.0,
        "overhead_p99_ms = {p99}"
    );
    let status = child.interrupt_and_wait(WAIT);
    assert!(status.success(), "{status}");
}
