//! End-to-end tests of `univla_arm`'s two other outputs, with the real engine on a tiny generated
//! checkpoint in a separate process: `control_msgs/FollowJointTrajectory` goals to an emulated
//! joint_trajectory_controller (it validates goals as the real one does, moves a simulated arm and
//! publishes its joint states; the test can make it reject everything), and end-effector-delta mode
//! with the LIBERO head (PoseStamped targets, gripper commands, e-stop). DDS tests: run them in a
//! private network namespace (scripts/test.sh); they fail outside one.
mod node_common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use node_common::jtc::{EmulatedJtc, JtcSetup};
use node_common::*;
use univla_ros::node::wiring::ros_io::Float64;
use univla_ros::ros::action::{GoalId, GoalStatus, RosActionClient};
use univla_ros::ros::msgs::builtin_interfaces::{Duration as RosDuration, Time};
use univla_ros::ros::msgs::diagnostic_msgs::{DiagnosticArray, DiagnosticStatus};
use univla_ros::ros::msgs::geometry_msgs::PoseStamped;
use univla_ros::ros::msgs::rcl_interfaces::Log;
use univla_ros::ros::msgs::std_msgs::Bool;
use univla_ros::ros::msgs::trajectory_msgs::JointTrajectory;
use univla_ros::ros::msgs::univla_msgs::{Execute, ExecuteFeedback, ExecuteGoal, ExecuteResult};
use univla_ros::ros::{Qos, RosContext, RosPublisher};

const BIN: &str = env!("CARGO_BIN_EXE_univla_arm");
/// Every joint of the synthetic robot reads this position.
const JOINT_VALUE: f64 = 0.125;
const CONTROL_RATE_HZ: f64 = 10.0;
/// One control period in nanoseconds (the spacing of trajectory points).
const PERIOD_NS: i64 = 100_000_000;
/// Joint limits given to the node (the same for every joint).
const POSITION_LIMIT: f64 = 1.0;
const MAX_VELOCITY: f64 = 0.5;
const MAX_STEP: f64 = 0.1;
/// Slack of float comparisons against configured limits.
const EPS: f64 = 1e-9;
/// The controller's action, as a ros2_controllers joint_trajectory_controller names it.
const CONTROLLER_ACTION: &str = "/arm_controller/follow_joint_trajectory";
/// Transport and scheduling slack on top of one control period for a stop to arrive.
const STOP_SLACK: Duration = Duration::from_millis(300);
/// Bound of one goal request while waiting for the node to get ready.
const SEND_RETRY: Duration = Duration::from_secs(5);

/// End-effector settings (as in config/libero_eef.yaml).
const INITIAL_POSE: [f64; 6] = [0.45, 0.0, 0.35, std::f64::consts::PI, 0.0, 0.0];
const WORKSPACE_MIN: [f64; 3] = [0.2, -0.4, 0.02];
const WORKSPACE_MAX: [f64; 3] = [0.8, 0.4, 0.6];
const MAX_TRANSLATION_STEP: f64 = 0.02;
const EEF_FRAME: &str = "panda_link0";

fn joint_names() -> Vec<String> {
    (1..=7).map(|i| format!("joint{i}")).collect()
}

fn goal(instruction: &str, max_steps: u32) -> ExecuteGoal {
    ExecuteGoal {
        instruction: instruction.into(),
        max_steps,
        time_limit: RosDuration::default(),
        mode: String::new(),
    }
}

fn list(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", ")
}

fn node_args(node: &str, params: &std::path::Path) -> Vec<String> {
    [
        "-r",
        &format!("__node:={node}"),
        "-r",
        "__ns:=/robot",
        "--params-file",
        params.to_str().unwrap(),
        "-r",
        "image_raw:=/cam/image",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Sends `g` until the node accepts it (it rejects goals until it has seen images).
async fn send_when_ready(client: &RosActionClient<Execute>, g: &ExecuteGoal) -> GoalId {
    let start = Instant::now();
    loop {
        // Each attempt is bounded on its own: a request sent before the server matched the reply
        // reader gets no answer, and the next attempt repeats it.
        if let Ok(r) = tokio::time::timeout(SEND_RETRY, client.send_goal(g.clone())).await {
            if let Some(id) = r.unwrap() {
                return id;
            }
        }
        assert!(start.elapsed() < WAIT, "goal '{}' was never accepted", g.instruction);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The next `n` feedback messages of a goal.
async fn feedback(client: &RosActionClient<Execute>, id: GoalId, n: usize) -> Vec<ExecuteFeedback> {
    let fb: Vec<ExecuteFeedback> = bounded(
        "feedback",
        client
            .feedback(id)
            .filter_map(|f| async move { f.ok() })
            .take(n)
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(fb.len(), n);
    for w in fb.windows(2) {
        assert_eq!(w[1].step, w[0].step + 1, "feedback every control step: {fb:?}");
    }
    fb
}

/// Cancels a running goal and checks it ends canceled.
async fn cancel(client: &RosActionClient<Execute>, id: GoalId) {
    assert!(bounded("cancel", client.cancel(id)).await.unwrap(), "cancel refused");
    let (status, result) = bounded("result of the canceled goal", client.result(id)).await.unwrap();
    assert_eq!(status, GoalStatus::Canceled, "{result:?}");
    assert_eq!(result.outcome, ExecuteResult::CANCELED, "{result:?}");
}

fn state_of(d: &DiagnosticArray) -> Option<(&str, u8)> {
    let s = d.status.first()?;
    let v = s.values.iter().find(|kv| kv.key == "state")?;
    Some((v.value.as_str(), s.level))
}

fn plus_secs(t: Time, s: f64) -> Time {
    Time::from_nanos(t.to_nanos() + (s * 1e9) as i64)
}

// ---------------------------------------------------------------------------------------------
// FollowJointTrajectory output
// ---------------------------------------------------------------------------------------------

/// The hold the node sends when a goal ends: one point (at the measured position).
fn is_hold(t: &JointTrajectory) -> bool {
    t.points.len() == 1
}

/// Slack on the first point's step: the node measured the arm up to a few joint-state periods
/// before the controller received the trajectory, and the arm moved meanwhile.
const MEASURE_SLACK: f64 = MAX_VELOCITY * 0.05;

/// A running trajectory: configured joint names, one point per control period, finite positions
/// inside the position limits, moving at most `MAX_VELOCITY` per period, and `MAX_STEP` from
/// `measured` (the simulated arm when it arrived) to the first point.
fn check_trajectory(t: &JointTrajectory, measured: &[f64]) {
    assert_eq!(t.joint_names, joint_names());
    assert!(t.header.stamp.sec > 0, "trajectories are stamped: {:?}", t.header);
    assert!(!t.points.is_empty(), "{t:?}");
    let mut prev = measured.to_vec();
    for (k, p) in t.points.iter().enumerate() {
        assert_eq!(
            p.time_from_start.to_nanos(),
            (k as i64 + 1) * PERIOD_NS,
            "point {k} is not at the control period: {t:?}"
        );
        assert_eq!(p.positions.len(), 7, "{t:?}");
        let allowed = if k == 0 {
            MAX_STEP.min(MAX_VELOCITY * 0.1) + MEASURE_SLACK
        } else {
            MAX_VELOCITY * 0.1
        };
        for (i, &v) in p.positions.iter().enumerate() {
            assert!(v.is_finite(), "point {k} joint {i}: {v}");
            assert!(
                (-POSITION_LIMIT..=POSITION_LIMIT).contains(&v),
                "point {k} joint {i} = {v} outside the limits"
            );
            assert!(
                (v - prev[i]).abs() <= allowed + EPS,
                "point {k} joint {i} moves {} from {}, more than {allowed}",
                v - prev[i],
                prev[i]
            );
        }
        prev.clone_from(&p.positions);
    }
}

#[test]
fn arm_node_follow_joint_trajectory_goals_hold_and_rejecting_controller() {
    guard();
    let domain = 65;
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let params = dir.path().join("arm_fjt.yaml");
    std::fs::write(
        &params,
        format!(
            "/**:\n  ros__parameters:\n    checkpoint: {ckpt}\n    decoder: action_decoder.safetensors\n    realworld_stats: {ckpt}/realworld_stats.json\n    greedy: true\n    control_rate_hz: {CONTROL_RATE_HZ:?}\n    image_timeout_s: 2.0\n    joint_state_timeout_s: 2.0\n    joint_names: [{names}]\n    position_min: [{min}]\n    position_max: [{max}]\n    max_velocity: [{vel}]\n    max_step: [{step}]\n    use_follow_joint_trajectory: true\n    follow_joint_trajectory_action: {CONTROLLER_ACTION}\n",
            ckpt = ckpt.display(),
            names = joint_names().join(", "),
            min = list(&[-POSITION_LIMIT; 7]),
            max = list(&[POSITION_LIMIT; 7]),
            vel = list(&[MAX_VELOCITY; 7]),
            step = list(&[MAX_STEP; 7]),
        ),
    )
    .unwrap();
    let mut child = spawn(BIN, domain, &node_args("arm_policy", &params), false);
    // The emulated controller publishes the joint states of the arm it moves.
    let _robot = SyntheticRobot::start(domain, "/cam/image", None, 15.0);
    let topic = Collector::<JointTrajectory>::start(domain, "/robot/joint_trajectory", Qos::default_profile());
    let rosout = Collector::<Log>::start(domain, "/rosout", Qos::default_profile());
    let ctx = RosContext::with_domain(domain).unwrap();
    let mut client_node = peer(&ctx, "goal_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, "/robot/arm_policy/execute").unwrap();
    let rt = runtime();
    // 0. No controller on the graph yet: goals are refused, since what the node would send (the
    // motion and the stop alike) would be lost.
    rt.block_on(async {
        wait_for_action_server(&client, &client_node).await;
        let t0 = Instant::now();
        let refused = bounded("goal without a controller", client.send_goal(goal("wave", 0)))
            .await
            .unwrap();
        assert_eq!(
            refused, None,
            "a goal was accepted with no trajectory controller on the graph"
        );
        rosout.wait_for(t0, "the rejection naming the controller", |l| {
            l.msg.contains("rejected goal")
                && l.msg.contains(CONTROLLER_ACTION)
                && l.msg.contains("not been discovered")
        });
    });
    let controller = EmulatedJtc::start(
        domain,
        JtcSetup {
            joints: joint_names(),
            initial: vec![JOINT_VALUE; 7],
            trajectory_topic: None,
            action: Some(CONTROLLER_ACTION.into()),
            joint_state_topic: "/robot/joint_states".into(),
        },
    );
    rt.block_on(async {
        // 1. An accepting controller gets the planned trajectories as goals; cancel sends a hold.
        let t_a = Instant::now();
        let a = send_when_ready(&client, &goal("pick up the red cup", 0)).await;
        feedback(&client, a, 3).await;
        let running = controller.wait_received(t_a, 3, "accepted multi-point controller goals", |g| {
            g.accepted() && g.trajectory.points.len() > 1
        });
        running
            .iter()
            .for_each(|g| check_trajectory(&g.trajectory, &measured_at(&controller, g.at)));
        let t_cancel = Instant::now();
        cancel(&client, a).await;
        // The hold goal preempts the running goal (a goal still in flight when the hold went out
        // is preempted too: both travel on the same writer, the hold last).
        let hold = controller.wait_received(t_cancel, 1, "hold goal after cancel", |g| is_hold(&g.trajectory));
        let took = hold[0].at.duration_since(t_cancel);
        assert!(
            took < Duration::from_nanos(PERIOD_NS as u64) + STOP_SLACK,
            "the hold goal took {took:?}"
        );
        assert_eq!(hold[0].trajectory.joint_names, joint_names());
        assert_eq!(hold[0].trajectory.points[0].time_from_start.to_nanos(), PERIOD_NS);
        assert!(hold[0].accepted());
        controller.assert_stops(
            "cancel with the hold goal accepted",
            t_cancel,
            Duration::from_nanos(2 * PERIOD_NS as u64) + STOP_SLACK,
            Duration::from_millis(300),
            MAX_VELOCITY * 0.5,
        );

        // 1b. A controller that refuses the hold goal: the node's cancel of the running goal
        // alone stops the arm (a joint_trajectory_controller holds where it is on a cancel).
        controller.reject_holds.store(true, Ordering::SeqCst);
        let t_h = Instant::now();
        let h = send_when_ready(&client, &goal("push the button", 0)).await;
        feedback(&client, h, 3).await;
        controller.wait_moving(t_h, 1e-3, "the arm moving before the refused hold");
        let t_cancel = Instant::now();
        cancel(&client, h).await;
        let canceled = wait_until("cancel of the controller's running goal", || {
            controller
                .cancels
                .lock()
                .unwrap()
                .iter()
                .copied()
                .find(|t| *t >= t_cancel)
        });
        let took = canceled.duration_since(t_cancel);
        assert!(
            took < Duration::from_nanos(PERIOD_NS as u64) + STOP_SLACK,
            "the cancel of the running goal took {took:?}"
        );
        let refused = controller.wait_received(t_cancel, 1, "the refused hold goal", |g| is_hold(&g.trajectory));
        assert!(!refused[0].accepted());
        controller.assert_stops(
            "cancel with the hold goal refused",
            t_cancel,
            Duration::from_nanos(PERIOD_NS as u64) + STOP_SLACK,
            Duration::from_millis(300),
            MAX_VELOCITY * 0.5,
        );
        controller.reject_holds.store(false, Ordering::SeqCst);

        // 2. A controller that rejects every goal: the node keeps stepping and cancels cleanly.
        controller.reject_all.store(true, Ordering::SeqCst);
        let t_b = Instant::now();
        let b = send_when_ready(&client, &goal("open the drawer", 0)).await;
        let rejected = controller.wait_received(t_b, 3, "rejected controller goals", |g| {
            !g.accepted() && g.trajectory.points.len() > 1
        });
        rejected
            .iter()
            .for_each(|g| check_trajectory(&g.trajectory, &measured_at(&controller, g.at)));
        let fb = feedback(&client, b, 3).await;
        assert!(fb.iter().all(|f| f.commanded_action.len() == 7), "{fb:?}");
        assert!(child.0.try_wait().unwrap().is_none(), "the node exited");
        let t_cancel = Instant::now();
        cancel(&client, b).await;
        let hold = controller.wait_received(t_cancel, 1, "hold goal to the rejecting controller", |g| {
            is_hold(&g.trajectory)
        });
        assert!(!hold[0].accepted());
        // The refused hold changes nothing: the controller still holds where the first cancel left
        // it (nothing of ours runs there to cancel), so the arm stays still.
        controller.assert_stops(
            "hold refused by the controller",
            t_cancel,
            Duration::ZERO,
            Duration::from_millis(500),
            0.0,
        );

        // 3. The controller accepts again: a step-limited goal runs to its end and holds.
        controller.reject_all.store(false, Ordering::SeqCst);
        let t_c = Instant::now();
        let c = bounded("goal C", client.send_goal(goal("stack the blocks", 6)))
            .await
            .unwrap()
            .expect("goal C accepted");
        let (status, result) = bounded("result C", client.result(c)).await.unwrap();
        assert_eq!(status, GoalStatus::Succeeded, "{result:?}");
        assert_eq!((result.outcome, result.steps), (ExecuteResult::STEP_LIMIT, 6));
        controller.wait_received(t_c, 1, "accepted goals after rejections", |g| {
            g.accepted() && g.trajectory.points.len() > 1
        });
        controller.wait_received(t_c, 1, "hold goal after the step limit", |g| {
            g.accepted() && is_hold(&g.trajectory)
        });
    });
    // Every goal the controller saw is a valid trajectory or a hold.
    let all = controller.received();
    assert!(all.iter().any(|g| g.accepted()) && all.iter().any(|g| !g.accepted()));
    for g in &all {
        if !is_hold(&g.trajectory) {
            check_trajectory(&g.trajectory, &measured_at(&controller, g.at));
        }
    }
    // Only the test's switches rejected goals: every trajectory passed the
    // joint_trajectory_controller's validation.
    for g in all.iter().filter(|g| !g.accepted()) {
        let why = g.verdict.clone().unwrap_err();
        assert!(
            why.contains("rejects every goal") || (why.contains("rejects one-point goals") && is_hold(&g.trajectory)),
            "the controller rejected a goal: {why}"
        );
    }
    assert!(
        topic.snapshot().is_empty(),
        "with use_follow_joint_trajectory nothing goes to the trajectory topic"
    );
    // The node follows up its goals: the controller could hand over results of preempted goals.
    assert!(
        controller.fetched.load(Ordering::SeqCst) > 0,
        "the node never fetched a FollowJointTrajectory result"
    );
    let status = child.interrupt_and_wait(WAIT);
    assert!(status.success(), "node exit status {status:?}");
}

/// The simulated arm's position when a trajectory arrived at `at`.
fn measured_at(c: &EmulatedJtc, at: Instant) -> Vec<f64> {
    c.history(at - Duration::from_secs(1), at)
        .last()
        .map_or_else(|| vec![JOINT_VALUE; 7], |(_, p)| p.clone())
}

// ---------------------------------------------------------------------------------------------
// End-effector-delta output
// ---------------------------------------------------------------------------------------------

fn position(p: &PoseStamped) -> [f64; 3] {
    [p.pose.position.x, p.pose.position.y, p.pose.position.z]
}

fn distance(a: [f64; 3], b: [f64; 3]) -> f64 {
    (0..3).map(|i| (a[i] - b[i]).powi(2)).sum::<f64>().sqrt()
}

/// Publishes `on` on the e-stop topic until the diagnostics show `state`; returns that report.
fn press(
    estop: &RosPublisher<Bool>,
    on: bool,
    diagnostics: &Collector<DiagnosticArray>,
    state: &str,
) -> DiagnosticArray {
    let since = Instant::now();
    wait_until(&format!("diagnostics state '{state}'"), || {
        estop.publish(Bool { data: on }).unwrap();
        std::thread::sleep(Duration::from_millis(80));
        diagnostics
            .snapshot()
            .into_iter()
            .find(|(t, d)| *t >= since && state_of(d).is_some_and(|(s, _)| s == state))
            .map(|(_, d)| d)
    })
}

/// `univla_arm` in eef_delta mode with the LIBERO head, a camera, and collectors of its pose
/// targets, gripper commands and diagnostics.
struct EefRig {
    child: ChildGuard,
    poses: Collector<PoseStamped>,
    grippers: Collector<Float64>,
    diagnostics: Collector<DiagnosticArray>,
    _robot: SyntheticRobot,
    _dir: tempfile::TempDir,
}

impl EefRig {
    fn start(domain: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = checkpoint(dir.path());
        let params = dir.path().join("arm_eef.yaml");
        std::fs::write(
            &params,
            format!(
                "/**:\n  ros__parameters:\n    checkpoint: {ckpt}\n    decoder: action_decoder_libero.safetensors\n    unnorm_key: libero_10_no_noops\n    greedy: true\n    control_rate_hz: {CONTROL_RATE_HZ:?}\n    image_timeout_s: 2.0\n    action_space: eef_delta\n    pose_topic: eef_target\n    gripper_topic: gripper_command\n    initial_pose: [{pose}]\n    workspace_min: [{lo}]\n    workspace_max: [{hi}]\n    max_translation_step: {MAX_TRANSLATION_STEP:?}\n    frame_id: {EEF_FRAME}\n    diagnostics_period_s: 0.3\n",
                ckpt = ckpt.display(),
                pose = list(&INITIAL_POSE),
                lo = list(&WORKSPACE_MIN),
                hi = list(&WORKSPACE_MAX),
            ),
        )
        .unwrap();
        let child = spawn(BIN, domain, &node_args("eef_policy", &params), false);
        Self {
            child,
            _robot: SyntheticRobot::start(domain, "/cam/image", None, 15.0),
            poses: Collector::start(domain, "/robot/eef_target", Qos::default_profile()),
            grippers: Collector::start(domain, "/robot/gripper_command", Qos::default_profile()),
            diagnostics: Collector::start(domain, "/diagnostics", Qos::default_profile()),
            _dir: dir,
        }
    }

    /// Every target so far, in stamp order.
    fn targets(&self) -> Vec<PoseStamped> {
        let mut all: Vec<PoseStamped> = self.poses.snapshot().into_iter().map(|(_, p)| p).collect();
        all.sort_by_key(|p| p.header.stamp);
        all
    }
}

#[test]
fn arm_node_eef_delta_pose_targets_gripper_and_estop() {
    guard();
    let domain = 66;
    let mut rig = EefRig::start(domain);
    let (poses, grippers, diagnostics) = (&rig.poses, &rig.grippers, &rig.diagnostics);
    let ctx = RosContext::with_domain(domain).unwrap();
    let mut client_node = peer(&ctx, "goal_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, "/robot/eef_policy/execute").unwrap();
    // Its own participant: two nodes' spinners on one participant share (and steal) its match
    // events, and the goal client's server wait could then never resolve.
    let estop_ctx = RosContext::with_domain(domain).unwrap();
    let mut estop_node = peer(&estop_ctx, "estop_button");
    let estop = estop_node
        .create_publisher::<Bool>("/robot/estop", Qos::default_profile())
        .unwrap();
    let rt = runtime();
    let initial = [INITIAL_POSE[0], INITIAL_POSE[1], INITIAL_POSE[2]];

    // Goal A moves the end effector.
    let t_a = Instant::now();
    let a = rt.block_on(async {
        wait_for_action_server(&client, &client_node).await;
        let a = send_when_ready(&client, &goal("put the bowl on the plate", 0)).await;
        for f in feedback(&client, a, 3).await {
            // x y z, quaternion, gripper
            assert_eq!(f.commanded_action.len(), 8, "{f:?}");
            assert!(f.commanded_action.iter().all(|v| v.is_finite()), "{f:?}");
        }
        a
    });
    poses.wait_count(t_a, 10, "pose targets of goal A", |_| true);
    let g = grippers.wait_count(t_a, 10, "gripper commands of goal A", |_| true);
    assert!(
        g.iter().all(|c| [-1.0, 0.0, 1.0].contains(&c.data)),
        "LIBERO gripper commands are binary: {g:?}"
    );

    // E-stop: the node holds, reports it, refuses goals and sends no new targets.
    let held = press(&estop, true, diagnostics, "holding: e-stop engaged on /robot/estop");
    assert_eq!(state_of(&held).map(|s| s.1), Some(DiagnosticStatus::WARN));
    let t_hold = held.header.stamp;
    assert!(t_hold.sec > 0, "diagnostics are stamped");
    rt.block_on(async {
        assert_eq!(
            bounded("goal during e-stop", client.send_goal(goal("wipe the table", 0)))
                .await
                .unwrap(),
            None,
            "a goal was accepted during the e-stop"
        );
    });
    // The control loop keeps running (and holding) for another second of its own clock.
    let later = plus_secs(t_hold, 1.0);
    diagnostics.wait_for(t_a, "holding diagnostics a second later", |d| {
        d.header.stamp >= later && state_of(d).is_some_and(|(s, _)| s == "holding: e-stop engaged on /robot/estop")
    });
    // What goes out after the hold began is the last target again (the stop of a pose arm,
    // repeated): no new target.
    let mut all: Vec<PoseStamped> = poses.snapshot().into_iter().map(|(_, p)| p).collect();
    all.sort_by_key(|p| p.header.stamp);
    let last_before = all
        .iter()
        .rev()
        .find(|p| p.header.stamp < t_hold)
        .expect("targets before the hold")
        .pose;
    let during: Vec<&PoseStamped> = all.iter().filter(|p| p.header.stamp >= t_hold).collect();
    assert!(
        during.iter().all(|p| p.pose == last_before),
        "new pose targets after the e-stop hold began at {t_hold:?}: {during:?} (held: {last_before:?})"
    );

    // Release: goal A resumes (from where it stopped), then goal B replaces it from the start pose.
    let running = press(&estop, false, diagnostics, "running");
    let t_run = running.header.stamp;
    wait_until("pose targets after the release", || {
        poses
            .snapshot()
            .iter()
            .any(|(_, p)| p.header.stamp >= t_run)
            .then_some(())
    });
    let t_b = Instant::now();
    rt.block_on(async {
        let b = bounded("goal B", client.send_goal(goal("close the microwave", 0)))
            .await
            .unwrap()
            .expect("goal B accepted after the release");
        let (status, result) = bounded("result A", client.result(a)).await.unwrap();
        assert_eq!(status, GoalStatus::Aborted, "{result:?}");
        assert_eq!(result.outcome, ExecuteResult::PREEMPTED, "{result:?}");
        feedback(&client, b, 2).await;
        poses.wait_count(t_b, 5, "pose targets of goal B", |_| true);
        cancel(&client, b).await;
    });

    // Every target: configured frame, inside the workspace, unit quaternion, and within one
    // translation step of its predecessor (also across the preemption: no jump back to the start).
    let all = rig.targets();
    let mut prev = initial;
    for p in &all {
        assert_eq!(p.header.frame_id, EEF_FRAME);
        let x = position(p);
        assert!(
            (0..3).all(|i| x[i] >= WORKSPACE_MIN[i] - EPS && x[i] <= WORKSPACE_MAX[i] + EPS),
            "target {x:?} outside the workspace"
        );
        let q = &p.pose.orientation;
        let norm = (q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w).sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "quaternion norm {norm}: {q:?}");
        assert!(
            distance(prev, x) <= MAX_TRANSLATION_STEP + EPS,
            "target {x:?} stamped {:?} is {} m from the previous {prev:?}",
            p.header.stamp,
            distance(prev, x)
        );
        prev = x;
    }
    let g = grippers.snapshot();
    assert!(g.iter().all(|(_, c)| (-1.0..=1.0).contains(&c.data)), "{g:?}");
    let status = rig.child.interrupt_and_wait(WAIT);
    assert!(status.success(), "node exit status {status:?}");
}

/// `max_translation_step` bounds the distance between consecutive targets, also when a new goal
/// preempts a running one (the arm is wherever goal A left it, not at `initial_pose`).
#[test]
fn arm_node_eef_delta_preempting_goal_keeps_the_translation_step() {
    guard();
    let domain = 67;
    let mut rig = EefRig::start(domain);
    let ctx = RosContext::with_domain(domain).unwrap();
    let mut client_node = peer(&ctx, "goal_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, "/robot/eef_policy/execute").unwrap();
    let initial = [INITIAL_POSE[0], INITIAL_POSE[1], INITIAL_POSE[2]];
    let rt = runtime();
    rt.block_on(async {
        wait_for_action_server(&client, &client_node).await;
        let t_a = Instant::now();
        send_when_ready(&client, &goal("put the bowl on the plate", 0)).await;
        // Let goal A move the target well away from the start pose.
        wait_until("goal A's target away from the start pose", || {
            rig.poses
                .snapshot()
                .iter()
                .any(|(t, p)| *t >= t_a && distance(position(p), initial) > 3.0 * MAX_TRANSLATION_STEP)
                .then_some(())
        });
        let t_b = Instant::now();
        let b = bounded("goal B", client.send_goal(goal("close the microwave", 0)))
            .await
            .unwrap()
            .expect("goal B accepted");
        rig.poses.wait_count(t_b, 3, "pose targets of goal B", |_| true);
        cancel(&client, b).await;
    });
    let all = rig.targets();
    for w in all.windows(2) {
        let (a, b) = (position(&w[0]), position(&w[1]));
        assert!(
            distance(a, b) <= MAX_TRANSLATION_STEP + EPS,
            "consecutive targets {a:?} → {b:?} (stamped {:?}) are {:.4} m apart, more than max_translation_step {MAX_TRANSLATION_STEP}",
            w[1].header.stamp,
            distance(a, b)
        );
    }
    let status = rig.child.interrupt_and_wait(WAIT);
    assert!(status.success(), "node exit status {status:?}");
}
