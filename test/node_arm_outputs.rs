//! End-to-end tests of `univla_arm`'s two other outputs, with the real engine on a tiny generated
//! checkpoint in a separate process: `control_msgs/FollowJointTrajectory` goals to a fake
//! trajectory controller (that accepts, finishes or rejects them), and end-effector-delta mode
//! with the LIBERO head (PoseStamped targets, gripper commands, e-stop). DDS tests: run them in a
//! private network namespace (scripts/test.sh); they fail outside one.
mod node_common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use node_common::*;
use univla_ros::node::ros_io::Float64;
use univla_ros::ros::action::{GoalId, GoalOutcome, GoalStatus, RosActionClient, RosActionServer, ServerEvent};
use univla_ros::ros::msgs::builtin_interfaces::{Duration as RosDuration, Time};
use univla_ros::ros::msgs::control_msgs::{FollowJointTrajectory, FollowJointTrajectoryResult};
use univla_ros::ros::msgs::diagnostic_msgs::{DiagnosticArray, DiagnosticStatus};
use univla_ros::ros::msgs::geometry_msgs::PoseStamped;
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
/// How long the fake controller waits for the node to fetch the result of a finished goal.
const FINISH_WAIT: Duration = Duration::from_secs(2);
/// Bound of one goal request while waiting for the node to get ready.
const SEND_RETRY: Duration = Duration::from_secs(5);
/// Longest the fake controller runs.
const CONTROLLER_LIFETIME: Duration = Duration::from_secs(300);

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

/// One goal the fake controller received.
#[derive(Clone, Debug)]
struct ControllerGoal {
    at: Instant,
    trajectory: JointTrajectory,
    accepted: bool,
}

type BoxFut = Pin<Box<dyn Future<Output = ()>>>;
type Event = Result<ServerEvent<FollowJointTrajectory>, univla_ros::ros::RosError>;

/// A fake joint_trajectory_controller: serves `FollowJointTrajectory`, records every goal, rejects
/// goals while `reject` is set, else accepts them and finishes the previous one (a new goal
/// preempts the running trajectory, as in ros2_controllers); cancel requests are granted.
struct FakeController {
    goals: Arc<Mutex<Vec<ControllerGoal>>>,
    errors: Arc<Mutex<Vec<String>>>,
    /// Finished goals whose result the node fetched.
    fetched: Arc<AtomicUsize>,
    /// When cancel requests arrived.
    cancels: Arc<Mutex<Vec<Instant>>>,
    reject: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

fn next_event(server: &Arc<RosActionServer<FollowJointTrajectory>>) -> Pin<Box<dyn Future<Output = Event>>> {
    let s = Arc::clone(server);
    Box::pin(async move { s.next_event().await })
}

/// Ends a goal; it completes once the node's client has fetched the result (bounded wait), which
/// is counted in `fetched`.
fn finish(
    server: &Arc<RosActionServer<FollowJointTrajectory>>,
    g: univla_ros::ros::action::ActiveGoal<FollowJointTrajectory>,
    outcome: GoalOutcome,
    fetched: &Arc<AtomicUsize>,
) -> BoxFut {
    let s = Arc::clone(server);
    let fetched = Arc::clone(fetched);
    Box::pin(async move {
        let result = FollowJointTrajectoryResult {
            error_code: FollowJointTrajectoryResult::SUCCESSFUL,
            error_string: String::new(),
        };
        if let Ok(Ok(())) = tokio::time::timeout(FINISH_WAIT, s.finish(g, outcome, result)).await {
            fetched.fetch_add(1, Ordering::SeqCst);
        }
    })
}

impl FakeController {
    fn start(domain: u16, action: &str) -> Self {
        let goals = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let reject = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let fetched = Arc::new(AtomicUsize::new(0));
        let cancels = Arc::new(Mutex::new(Vec::new()));
        let (g, e, r, s, f, c) = (
            Arc::clone(&goals),
            Arc::clone(&errors),
            Arc::clone(&reject),
            Arc::clone(&stop),
            Arc::clone(&fetched),
            Arc::clone(&cancels),
        );
        let action = action.to_string();
        let handle = std::thread::spawn(move || {
            let ctx = RosContext::with_domain(domain).unwrap();
            let mut node = peer(&ctx, "arm_controller");
            let server = Arc::new(RosActionServer::<FollowJointTrajectory>::new(&mut node, &action).unwrap());
            runtime().block_on(Self::serve(server, g, e, r, s, f, c));
        });
        Self {
            goals,
            errors,
            fetched,
            cancels,
            reject,
            stop,
            handle: Some(handle),
        }
    }

    async fn serve(
        server: Arc<RosActionServer<FollowJointTrajectory>>,
        goals: Arc<Mutex<Vec<ControllerGoal>>>,
        errors: Arc<Mutex<Vec<String>>>,
        reject: Arc<AtomicBool>,
        stop: Arc<AtomicBool>,
        fetched: Arc<AtomicUsize>,
        cancels: Arc<Mutex<Vec<Instant>>>,
    ) {
        let mut event = next_event(&server);
        let mut finishing: FuturesUnordered<BoxFut> = FuturesUnordered::new();
        let mut active = None;
        let mut ticker = tokio::time::interval(Duration::from_millis(50));
        let start = Instant::now();
        while !stop.load(Ordering::SeqCst) && start.elapsed() < CONTROLLER_LIFETIME {
            tokio::select! {
                ev = &mut event => {
                    event = next_event(&server);
                    let r = match ev {
                        Ok(ServerEvent::Goal(req)) => {
                            let at = Instant::now();
                            let trajectory = req.goal.trajectory.clone();
                            let accepted = !reject.load(Ordering::SeqCst);
                            goals.lock().unwrap().push(ControllerGoal { at, trajectory, accepted });
                            if accepted {
                                server.accept(req).await.map(|g| {
                                    if let Some(prev) = active.replace(g) {
                                        // ros2_controllers cancels the goal a new one preempts.
                                        finishing.push(finish(&server, prev, GoalOutcome::Canceled, &fetched));
                                    }
                                })
                            } else {
                                server.reject(req).await
                            }
                        }
                        Ok(ServerEvent::Cancel(c)) => {
                            cancels.lock().unwrap().push(Instant::now());
                            let ids = c.goals.clone();
                            server.answer_cancel(&c, &ids).await
                        }
                        Err(e) => Err(e),
                    };
                    if let Err(e) = r {
                        errors.lock().unwrap().push(e.to_string());
                    }
                }
                Some(()) = finishing.next(), if !finishing.is_empty() => {}
                _ = ticker.tick() => {}
            }
        }
        if let Some(g) = active {
            finish(&server, g, GoalOutcome::Succeeded, &fetched).await;
        }
    }

    fn snapshot(&self) -> Vec<ControllerGoal> {
        self.goals.lock().unwrap().clone()
    }

    /// Waits until `n` goals received after `since` satisfy `pred`; returns them.
    fn wait_goals(
        &self,
        since: Instant,
        n: usize,
        what: &str,
        pred: impl Fn(&ControllerGoal) -> bool,
    ) -> Vec<ControllerGoal> {
        wait_until(what, || {
            let found: Vec<ControllerGoal> = self
                .snapshot()
                .into_iter()
                .filter(|g| g.at >= since && pred(g))
                .collect();
            (found.len() >= n).then_some(found)
        })
    }
}

impl Drop for FakeController {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The hold the node sends when a goal ends: the measured positions as a single point.
fn is_hold(t: &JointTrajectory) -> bool {
    t.points.len() == 1 && t.points[0].positions == vec![JOINT_VALUE; 7]
}

/// A running trajectory: configured joint names, one point per control period, finite positions
/// inside the position limits, moving at most `MAX_VELOCITY` per period and `MAX_STEP` from the
/// measured state to the first point.
fn check_trajectory(t: &JointTrajectory) {
    assert_eq!(t.joint_names, joint_names());
    assert!(t.header.stamp.sec > 0, "trajectories are stamped: {:?}", t.header);
    assert!(!t.points.is_empty(), "{t:?}");
    let mut prev = vec![JOINT_VALUE; 7];
    for (k, p) in t.points.iter().enumerate() {
        assert_eq!(
            p.time_from_start.to_nanos(),
            (k as i64 + 1) * PERIOD_NS,
            "point {k} is not at the control period: {t:?}"
        );
        assert_eq!(p.positions.len(), 7, "{t:?}");
        let allowed = if k == 0 {
            MAX_STEP.min(MAX_VELOCITY * 0.1)
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
    let controller = FakeController::start(domain, CONTROLLER_ACTION);
    let mut child = spawn(BIN, domain, &node_args("arm_policy", &params), false);
    let _robot = SyntheticRobot::start(
        domain,
        "/cam/image",
        Some(("/robot/joint_states", joint_names(), JOINT_VALUE)),
        15.0,
    );
    let topic = Collector::<JointTrajectory>::start(domain, "/robot/joint_trajectory", Qos::default_profile());
    let ctx = RosContext::with_domain(domain).unwrap();
    let mut client_node = peer(&ctx, "goal_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, "/robot/arm_policy/execute").unwrap();
    let rt = runtime();
    rt.block_on(async {
        wait_for_action_server(&client, &client_node).await;

        // 1. An accepting controller gets the planned trajectories as goals; cancel sends a hold.
        let t_a = Instant::now();
        let a = send_when_ready(&client, &goal("pick up the red cup", 0)).await;
        feedback(&client, a, 3).await;
        let running = controller.wait_goals(t_a, 3, "accepted multi-point controller goals", |g| {
            g.accepted && g.trajectory.points.len() > 1
        });
        running.iter().for_each(|g| check_trajectory(&g.trajectory));
        let t_cancel = Instant::now();
        cancel(&client, a).await;
        let hold = controller.wait_goals(t_cancel, 1, "hold goal after cancel", |g| is_hold(&g.trajectory));
        assert_eq!(hold[0].trajectory.joint_names, joint_names());
        assert_eq!(hold[0].trajectory.points[0].time_from_start.to_nanos(), PERIOD_NS);
        assert!(hold[0].accepted);

        // 2. A controller that rejects every goal: the node keeps stepping and cancels cleanly.
        controller.reject.store(true, Ordering::SeqCst);
        let t_b = Instant::now();
        let b = send_when_ready(&client, &goal("open the drawer", 0)).await;
        let rejected = controller.wait_goals(t_b, 3, "rejected controller goals", |g| {
            !g.accepted && g.trajectory.points.len() > 1
        });
        rejected.iter().for_each(|g| check_trajectory(&g.trajectory));
        let fb = feedback(&client, b, 3).await;
        assert!(fb.iter().all(|f| f.commanded_action.len() == 7), "{fb:?}");
        assert!(child.0.try_wait().unwrap().is_none(), "the node exited");
        let t_cancel = Instant::now();
        cancel(&client, b).await;
        let hold = controller.wait_goals(t_cancel, 1, "hold goal to the rejecting controller", |g| {
            is_hold(&g.trajectory)
        });
        assert!(!hold[0].accepted);
        // A hold the controller refuses cancels its running goal, so the arm stops anyway.
        wait_until("cancel of the controller's running goal", || {
            controller
                .cancels
                .lock()
                .unwrap()
                .iter()
                .any(|t| *t >= t_cancel)
                .then_some(())
        });

        // 3. The controller accepts again: a step-limited goal runs to its end and holds.
        controller.reject.store(false, Ordering::SeqCst);
        let t_c = Instant::now();
        let c = bounded("goal C", client.send_goal(goal("stack the blocks", 6)))
            .await
            .unwrap()
            .expect("goal C accepted");
        let (status, result) = bounded("result C", client.result(c)).await.unwrap();
        assert_eq!(status, GoalStatus::Succeeded, "{result:?}");
        assert_eq!((result.outcome, result.steps), (ExecuteResult::STEP_LIMIT, 6));
        controller.wait_goals(t_c, 1, "accepted goals after rejections", |g| {
            g.accepted && g.trajectory.points.len() > 1
        });
        controller.wait_goals(t_c, 1, "hold goal after the step limit", |g| {
            g.accepted && is_hold(&g.trajectory)
        });
    });
    // Every goal the controller saw is a valid trajectory or a hold.
    let all = controller.snapshot();
    assert!(all.iter().any(|g| g.accepted) && all.iter().any(|g| !g.accepted));
    for g in &all {
        if !is_hold(&g.trajectory) {
            check_trajectory(&g.trajectory);
        }
    }
    assert!(
        topic.snapshot().is_empty(),
        "with use_follow_joint_trajectory nothing goes to the trajectory topic"
    );
    let errors = controller.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "controller errors: {errors:?}");
    // The node follows up its goals: the controller could hand over results of preempted goals.
    assert!(
        controller.fetched.load(Ordering::SeqCst) > 0,
        "the node never fetched a FollowJointTrajectory result"
    );
    let status = child.interrupt_and_wait(WAIT);
    assert!(status.success(), "node exit status {status:?}");
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
    let held = press(&estop, true, diagnostics, "holding: emergency stop");
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
        d.header.stamp >= later && state_of(d).is_some_and(|(s, _)| s == "holding: emergency stop")
    });
    let during: Vec<Time> = poses
        .snapshot()
        .into_iter()
        .map(|(_, p)| p.header.stamp)
        .filter(|s| *s >= t_hold)
        .collect();
    assert!(
        during.is_empty(),
        "pose targets stamped after the e-stop hold began at {t_hold:?}: {during:?}"
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
