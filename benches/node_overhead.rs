//! Node overhead benchmark (not a timed test): publishes 640×480 rgb8 frames at 30 Hz into a
//! running `univla_arm` (tiny generated checkpoint, real engine, one inference thread) with a goal
//! executing, and reports every 10 s the node's own transport-in → command-out overhead per frame
//! (everything but the model and the wait for a worker busy with an older frame: hand-over,
//! decoding, scheduling, safety, publishing), the camera transport latency, the control-loop work,
//! and the frame, inference and memory counters, to show that nothing queues or grows.
//!
//! Run it inside a private network namespace (it opens DDS sockets):
//!   unshare -n sh -c 'ip link set lo up && ip link set lo multicast on && \
//!     ip route add 224.0.0.0/4 dev lo && cargo bench --bench node_overhead'
//! UNIVLA_BENCH_SECS sets the duration (default 300 s); UNIVLA_BENCH_RT=N runs the node's control
//! threads SCHED_FIFO at priority N (`realtime_priority`, needs CAP_SYS_NICE).
#[path = "../test/node_common/mod.rs"]
mod node_common;

use std::time::{Duration, Instant};

use node_common::*;
use univla_ros::ros::action::RosActionClient;
use univla_ros::ros::msgs::diagnostic_msgs::DiagnosticArray;
use univla_ros::ros::msgs::univla_msgs::{Execute, ExecuteGoal};
use univla_ros::ros::{Qos, RosContext};

const BIN: &str = env!("CARGO_BIN_EXE_univla_arm");
const REPORT_EVERY: Duration = Duration::from_secs(10);
const DOMAIN: u16 = 91;

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn value(d: &DiagnosticArray, key: &str) -> String {
    d.status
        .first()
        .and_then(|s| s.values.iter().find(|kv| kv.key == key))
        .map_or_else(|| "?".into(), |kv| kv.value.clone())
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful either.
    guard();
    let secs: u64 = std::env::var("UNIVLA_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().expect("tempdir");
    let ckpt = checkpoint(dir.path());
    let names: Vec<String> = (1..=7).map(|i| format!("joint{i}")).collect();
    let args: Vec<String> = vec![
        "-r".into(),
        "__node:=arm".into(),
        "-p".into(),
        format!("checkpoint:={}", ckpt.display()),
        "-p".into(),
        "decoder:=action_decoder.safetensors".into(),
        "-p".into(),
        format!("realworld_stats:={}/realworld_stats.json", ckpt.display()),
        "-p".into(),
        format!("joint_names:=[{}]", names.join(", ")),
        "-p".into(),
        "max_step:=[9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0]".into(),
        "-p".into(),
        "max_velocity:=[90.0, 90.0, 90.0, 90.0, 90.0, 90.0, 90.0]".into(),
        "-p".into(),
        "control_rate_hz:=30.0".into(),
        "-p".into(),
        "greedy:=true".into(),
        "-p".into(),
        "image_timeout_s:=2.0".into(),
        "-p".into(),
        "joint_state_timeout_s:=2.0".into(),
        "-p".into(),
        "diagnostics_period_s:=1.0".into(),
        "-p".into(),
        "threads:=1".into(),
    ];
    let mut args = args;
    let rt_priority = std::env::var("UNIVLA_BENCH_RT").unwrap_or_else(|_| "0".into());
    args.extend(["-p".into(), format!("realtime_priority:={rt_priority}")]);
    let mut child = spawn(BIN, DOMAIN, &args, false);
    let pid = child.0.id();
    let lifetime = Duration::from_secs(secs + 120);
    let spec = CameraSpec {
        width: 640,
        height: 480,
        encoding: "rgb8",
        padding: 0,
        stamped: true,
    };
    let _robot = SyntheticRobot::start_with(
        DOMAIN,
        "/image_raw",
        Some(("/joint_states", names.clone(), 0.0)),
        30.0,
        spec,
        lifetime,
    );
    let diagnostics = Collector::<DiagnosticArray>::start(DOMAIN, "/diagnostics", Qos::default_profile());
    let ctx = RosContext::with_domain(DOMAIN).expect("context");
    let mut client_node = peer(&ctx, "bench_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, "/arm/execute").expect("client");
    let rt = runtime();
    rt.block_on(async {
        bounded("server", client.wait_for_server(&client_node)).await;
        let start = Instant::now();
        loop {
            let goal = ExecuteGoal {
                instruction: "pick up the block".into(),
                ..Default::default()
            };
            if bounded("goal", client.send_goal(goal)).await.expect("send").is_some() {
                break;
            }
            assert!(start.elapsed() < WAIT, "goal never accepted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    println!(
        "node_overhead: 640x480 rgb8 at 30 Hz into univla_arm (30 Hz control, realtime_priority {rt_priority}) for {secs} s"
    );
    println!(
        "{:>6} {:>8} {:>8} {:>7} {:>10} {:>8} {:>8} {:>11} {:>9} {:>9} {:>8}",
        "t_s",
        "frames",
        "dropped",
        "infer",
        "infer_p50",
        "ovh_p50",
        "ovh_p99",
        "transp_p99",
        "loop_p99",
        "rss_MiB",
        "state"
    );
    let start = Instant::now();
    let mut rss = Vec::new();
    let (mut ovh_p50, mut ovh_p99) = (Vec::new(), Vec::new());
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(
            REPORT_EVERY
                .min(Duration::from_secs(secs).saturating_sub(start.elapsed()))
                .max(Duration::from_millis(100)),
        );
        let Some((_, d)) = diagnostics.snapshot().pop() else {
            continue;
        };
        let r = rss_kib(pid).unwrap_or(0);
        rss.push(r);
        ovh_p50.extend(value(&d, "overhead_p50_ms").parse::<f64>().ok());
        ovh_p99.extend(value(&d, "overhead_p99_ms").parse::<f64>().ok());
        println!(
            "{:>6} {:>8} {:>8} {:>7} {:>10} {:>8} {:>8} {:>11} {:>9} {:>9.1} {:>8}",
            start.elapsed().as_secs(),
            value(&d, "frames_received"),
            value(&d, "frames_dropped"),
            value(&d, "inferences"),
            value(&d, "inference_latency_p50_ms"),
            value(&d, "overhead_p50_ms"),
            value(&d, "overhead_p99_ms"),
            value(&d, "image_transport_p99_ms"),
            value(&d, "loop_work_p99_ms"),
            r as f64 / 1024.0,
            value(&d, "state").split(':').next().unwrap_or("?"),
        );
    }
    if let Some((_, d)) = diagnostics.snapshot().pop() {
        println!("overhead parts, p99 ms: {}", value(&d, "overhead_parts_p99_ms"));
    }
    if !ovh_p99.is_empty() {
        ovh_p50.sort_by(f64::total_cmp);
        ovh_p99.sort_by(f64::total_cmp);
        let worst = ovh_p99[ovh_p99.len() - 1];
        println!(
            "overhead (transport-in -> command-out without the model): median of the p50s {:.2} ms, \
             median p99 {:.2} ms, worst p99 {:.2} ms (target <= 2 ms p99: {})",
            ovh_p50[ovh_p50.len() / 2],
            ovh_p99[ovh_p99.len() / 2],
            worst,
            if worst <= 2.0 { "met" } else { "NOT met" }
        );
    }
    if let (Some(first), Some(last)) = (rss.get(rss.len().min(1)), rss.last()) {
        println!(
            "rss after warm-up {:.1} MiB, at the end {:.1} MiB (growth {:+.1} MiB)",
            *first as f64 / 1024.0,
            *last as f64 / 1024.0,
            (*last as f64 - *first as f64) / 1024.0
        );
    }
    let status = child.interrupt_and_wait(WAIT);
    println!("node exited: {status}");
}
