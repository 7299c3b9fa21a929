//! An emulated ros2_controllers `joint_trajectory_controller` (default parameters) driving a
//! simulated arm, and an emulated mobile base driven by `Twist`s: the counterparts the stop tests
//! assert on.
//!
//! The controller validates every trajectory as `JointTrajectoryController::validate_trajectory_msg`
//! does (Humble and Jazzy, default parameters: `allow_partial_joints_goal`,
//! `allow_nonzero_velocity_at_trajectory_end` and `allow_integration_in_goal_trajectories` false),
//! rejecting with its messages; splices accepted trajectories by their stamp (zero: now); samples
//! them (linear interpolation from the position where a trajectory takes over) every
//! [`SIM_STEP`]; and publishes the simulated positions as joint states, which the test can pause
//! (a dead encoder bus). Over `FollowJointTrajectory`, a new goal preempts the running one
//! (finished Canceled) and a cancel naming the running goal holds the arm where it is, as the
//! real controller does (a cancel naming an older, preempted goal changes nothing).
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use univla_ros::ros::action::{ActiveGoal, GoalOutcome, RosActionServer, ServerEvent};
use univla_ros::ros::msgs::builtin_interfaces::Duration as RosDuration;
use univla_ros::ros::msgs::control_msgs::{FollowJointTrajectory, FollowJointTrajectoryResult};
use univla_ros::ros::msgs::geometry_msgs::Twist;
use univla_ros::ros::msgs::sensor_msgs::JointState;
use univla_ros::ros::msgs::trajectory_msgs::{JointTrajectory, JointTrajectoryPoint};
use univla_ros::ros::{Qos, RosContext, RosSubscription};

use super::{peer, runtime, wait_until};

/// Simulation step of the arm (and sampling of its position history).
pub const SIM_STEP: Duration = Duration::from_millis(5);
/// Joint states are published every this many simulation steps (100 Hz).
const STATE_EVERY: u32 = 2;
/// Longest an emulator runs.
const LIFETIME: Duration = Duration::from_secs(300);
/// How long a finished goal waits for the client to fetch its result.
const FINISH_WAIT: Duration = Duration::from_secs(2);
/// Position changes below this are "not moving" (rad). A repeated hold restarts the controller's
/// approach to the same point; what is left of that approach is far below this, while one step of
/// a trajectory is thousands of times more.
pub const STILL: f64 = 1e-4;

/// ROS time now (wall clock), in nanoseconds.
pub fn ros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn secs(ns: i64) -> f64 {
    ns as f64 * 1e-9
}

/// `validate_trajectory_msg` of ros2_controllers' joint_trajectory_controller with default
/// parameters, in its order, with its messages.
pub fn validate(t: &JointTrajectory, joints: &[String], now_ns: i64) -> Result<(), String> {
    if t.joint_names.len() != joints.len() {
        return Err("Joints on incoming trajectory don't match the controller joints.".into());
    }
    if t.joint_names.is_empty() {
        return Err("Empty joint names on incoming trajectory.".into());
    }
    if t.points.is_empty() {
        return Err("Empty trajectory received.".into());
    }
    let start = t.header.stamp.to_nanos();
    if start != 0 {
        let end = start + t.points[t.points.len() - 1].time_from_start.to_nanos();
        if end < now_ns {
            return Err(format!(
                "Received trajectory with non-zero start time ({:.6}) that ends in the past ({:.6})",
                secs(start),
                secs(end)
            ));
        }
    }
    for name in &t.joint_names {
        if !joints.contains(name) {
            return Err(format!("Incoming joint {name} doesn't match the controller's joints."));
        }
    }
    let last = &t.points[t.points.len() - 1];
    for (i, v) in last.velocities.iter().enumerate() {
        if *v != 0.0 {
            return Err(format!(
                "Velocity of last trajectory point of joint {} is not zero: {v:.15}",
                t.joint_names[i]
            ));
        }
    }
    let n = t.joint_names.len();
    let mut previous = 0i64;
    for (i, p) in t.points.iter().enumerate() {
        let tfs = p.time_from_start.to_nanos();
        if i > 0 && tfs <= previous {
            return Err(format!(
                "Time between points {} and {} is not strictly increasing, it is {:.6} and {:.6} respectively",
                i - 1,
                i,
                secs(previous),
                secs(tfs)
            ));
        }
        previous = tfs;
        if p.positions.is_empty() && p.velocities.is_empty() && p.accelerations.is_empty() {
            return Err(format!("Empty trajectory point #{i}."));
        }
        for (field, values, allow_empty) in [
            ("positions", &p.positions, true),
            ("velocities", &p.velocities, true),
            ("accelerations", &p.accelerations, true),
            ("effort", &p.effort, true),
        ] {
            if values.len() != n && !(allow_empty && values.is_empty()) {
                return Err(format!(
                    "Mismatch between joint_names size ({n}) and {field} ({}) at point #{i}.",
                    values.len()
                ));
            }
        }
    }
    Ok(())
}

/// A trajectory the controller took, in the controller's joint order, with its start time.
#[derive(Clone, Debug)]
struct Accepted {
    start_ns: i64,
    /// (time from start, positions) of each point.
    points: Vec<(i64, Vec<f64>)>,
    /// Where and when it took over from the previous one.
    from: Option<(i64, Vec<f64>)>,
}

impl Accepted {
    fn new(t: &JointTrajectory, joints: &[String], now_ns: i64) -> Self {
        let order: Vec<usize> = joints
            .iter()
            .map(|j| t.joint_names.iter().position(|n| n == j).unwrap_or(0))
            .collect();
        let stamp = t.header.stamp.to_nanos();
        Self {
            start_ns: if stamp == 0 { now_ns } else { stamp },
            points: t
                .points
                .iter()
                .map(|p| {
                    (
                        p.time_from_start.to_nanos(),
                        order.iter().map(|&k| p.positions[k]).collect(),
                    )
                })
                .collect(),
            from: None,
        }
    }

    /// The controller's own hold (on cancel): stay at `here` from now.
    fn hold_at(here: &[f64], now_ns: i64) -> Self {
        Self {
            start_ns: now_ns,
            points: vec![(0, here.to_vec())],
            from: Some((now_ns, here.to_vec())),
        }
    }

    fn sample(&self, now_ns: i64) -> Vec<f64> {
        let lerp = |a: &[f64], b: &[f64], s: f64| -> Vec<f64> {
            a.iter().zip(b).map(|(x, y)| x + (y - x) * s.clamp(0.0, 1.0)).collect()
        };
        let (t0, p0) = self
            .from
            .clone()
            .unwrap_or_else(|| (self.start_ns, self.points[0].1.clone()));
        let first_at = self.start_ns + self.points[0].0;
        if now_ns <= first_at {
            if first_at <= t0 {
                return self.points[0].1.clone();
            }
            return lerp(&p0, &self.points[0].1, (now_ns - t0) as f64 / (first_at - t0) as f64);
        }
        for w in self.points.windows(2) {
            let (a, b) = (self.start_ns + w[0].0, self.start_ns + w[1].0);
            if now_ns <= b {
                return lerp(&w[0].1, &w[1].1, (now_ns - a) as f64 / (b - a) as f64);
            }
        }
        self.points[self.points.len() - 1].1.clone()
    }
}

/// One trajectory (topic message or action goal) the controller received.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub trajectory: JointTrajectory,
    /// `Err(message)`: rejected, with the controller's message.
    pub verdict: Result<(), String>,
    pub via_action: bool,
}

impl Received {
    pub fn accepted(&self) -> bool {
        self.verdict.is_ok()
    }
}

#[derive(Default)]
struct Arm {
    joints: Vec<String>,
    position: Vec<f64>,
    active: Option<Accepted>,
    /// Accepted, not yet started (stamped in the future), in order of acceptance.
    pending: Vec<Accepted>,
    received: Vec<Received>,
    history: Vec<(Instant, Vec<f64>)>,
}

impl Arm {
    /// Validates and, if valid, takes a trajectory.
    fn receive(
        &mut self,
        t: JointTrajectory,
        via_action: bool,
        force_reject: bool,
        reject_holds: bool,
    ) -> Result<(), String> {
        let now = ros_now();
        let verdict = if force_reject {
            Err("Goal rejected (the test's controller rejects every goal).".into())
        } else if reject_holds && t.points.len() == 1 {
            Err("Goal rejected (the test's controller rejects one-point goals).".into())
        } else {
            validate(&t, &self.joints, now)
        };
        if verdict.is_ok() {
            self.pending.push(Accepted::new(&t, &self.joints, now));
        }
        self.received.push(Received {
            at: Instant::now(),
            trajectory: t,
            verdict: verdict.clone(),
            via_action,
        });
        verdict
    }

    fn hold_here(&mut self) {
        self.pending.clear();
        self.active = Some(Accepted::hold_at(&self.position, ros_now()));
    }

    fn step(&mut self) {
        let now = ros_now();
        // The newest accepted trajectory that has started replaces the running one (and any
        // older one still waiting): a new trajectory takes over at its stamp.
        if let Some(k) = self.pending.iter().rposition(|a| a.start_ns <= now) {
            let mut next = self.pending.remove(k);
            self.pending.drain(..k);
            next.from = Some((now, self.position.clone()));
            self.active = Some(next);
        }
        if let Some(a) = &self.active {
            self.position = a.sample(now);
        }
        self.history.push((Instant::now(), self.position.clone()));
    }
}

/// Where the emulated controller listens and publishes.
#[derive(Clone, Debug)]
pub struct JtcSetup {
    pub joints: Vec<String>,
    pub initial: Vec<f64>,
    /// `~/joint_trajectory` topic of the controller, if it listens on one.
    pub trajectory_topic: Option<String>,
    /// `~/follow_joint_trajectory` action, if it serves one.
    pub action: Option<String>,
    pub joint_state_topic: String,
}

/// The emulated controller with its simulated arm.
pub struct EmulatedJtc {
    arm: Arc<Mutex<Arm>>,
    /// Reject every goal (a controller that is not active).
    pub reject_all: Arc<AtomicBool>,
    /// Reject one-point goals (a hold that never takes effect: only a cancel stops the arm).
    pub reject_holds: Arc<AtomicBool>,
    /// Publish joint states (false: the encoders went quiet; the arm keeps executing).
    pub publish_states: Arc<AtomicBool>,
    /// Cancels that named the running goal (and so held the arm), and finished goals whose
    /// result the client fetched.
    pub cancels: Arc<Mutex<Vec<Instant>>>,
    pub fetched: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

type BoxFut = Pin<Box<dyn Future<Output = ()>>>;
type ActionEvent = Result<ServerEvent<FollowJointTrajectory>, univla_ros::ros::RosError>;

fn next_event(server: &Arc<RosActionServer<FollowJointTrajectory>>) -> Pin<Box<dyn Future<Output = ActionEvent>>> {
    let s = Arc::clone(server);
    Box::pin(async move { s.next_event().await })
}

fn next_message(sub: &Arc<RosSubscription<JointTrajectory>>) -> Pin<Box<dyn Future<Output = Option<JointTrajectory>>>> {
    let s = Arc::clone(sub);
    Box::pin(async move { s.recv().await.ok() })
}

fn finish(
    server: &Arc<RosActionServer<FollowJointTrajectory>>,
    g: ActiveGoal<FollowJointTrajectory>,
    outcome: GoalOutcome,
    fetched: &Arc<AtomicUsize>,
) -> BoxFut {
    let (s, fetched) = (Arc::clone(server), Arc::clone(fetched));
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

impl EmulatedJtc {
    pub fn start(domain: u16, setup: JtcSetup) -> Self {
        let arm = Arc::new(Mutex::new(Arm {
            joints: setup.joints.clone(),
            position: setup.initial.clone(),
            ..Default::default()
        }));
        let reject_all = Arc::new(AtomicBool::new(false));
        let reject_holds = Arc::new(AtomicBool::new(false));
        let publish_states = Arc::new(AtomicBool::new(true));
        let cancels = Arc::new(Mutex::new(Vec::new()));
        let fetched = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, r, rh, p, c, f, s) = (
            Arc::clone(&arm),
            Arc::clone(&reject_all),
            Arc::clone(&reject_holds),
            Arc::clone(&publish_states),
            Arc::clone(&cancels),
            Arc::clone(&fetched),
            Arc::clone(&stop),
        );
        let handle = std::thread::spawn(move || {
            let ctx = RosContext::with_domain(domain).unwrap();
            let mut node = peer(&ctx, "arm_controller");
            // rclcpp's SystemDefaultsQoS (reliable): a best-effort command publisher never matches.
            let sub = setup.trajectory_topic.as_ref().map(|t| {
                Arc::new(
                    node.create_subscription::<JointTrajectory>(t, Qos::default_profile())
                        .unwrap(),
                )
            });
            let server = setup
                .action
                .as_ref()
                .map(|name| Arc::new(RosActionServer::<FollowJointTrajectory>::new(&mut node, name).unwrap()));
            let states = node
                .create_publisher::<JointState>(&setup.joint_state_topic, Qos::default_profile())
                .unwrap();
            runtime().block_on(async move {
                let mut message = sub.as_ref().map(next_message);
                let mut event = server.as_ref().map(next_event);
                let mut finishing: FuturesUnordered<BoxFut> = FuturesUnordered::new();
                let mut active_goal: Option<ActiveGoal<FollowJointTrajectory>> = None;
                let mut ticker = tokio::time::interval(SIM_STEP);
                let mut k = 0u32;
                let start = Instant::now();
                while !s.load(Ordering::SeqCst) && start.elapsed() < LIFETIME {
                    let pending_message = async {
                        match message.as_mut() {
                            Some(m) => m.await,
                            None => futures::future::pending().await,
                        }
                    };
                    let pending_event = async {
                        match event.as_mut() {
                            Some(e) => e.await,
                            None => futures::future::pending().await,
                        }
                    };
                    tokio::select! {
                        m = pending_message => {
                            message = sub.as_ref().map(next_message);
                            if let Some(t) = m {
                                let _ = a.lock().unwrap().receive(t, false, false, false);
                            }
                        }
                        ev = pending_event => {
                            let server = server.as_ref().unwrap();
                            event = Some(next_event(server));
                            match ev {
                                Ok(ServerEvent::Goal(req)) => {
                                    let t = req.goal.trajectory.clone();
                                    let verdict = a.lock().unwrap().receive(
                                        t,
                                        true,
                                        r.load(Ordering::SeqCst),
                                        rh.load(Ordering::SeqCst),
                                    );
                                    if verdict.is_ok() {
                                        if let Ok(g) = server.accept(req).await {
                                            // "Current goal cancelled due to new incoming action."
                                            if let Some(prev) = active_goal.replace(g) {
                                                finishing.push(finish(server, prev, GoalOutcome::Canceled, &f));
                                            }
                                        }
                                    } else {
                                        let _ = server.reject(req).await;
                                    }
                                }
                                Ok(ServerEvent::Cancel(cancel)) => {
                                    let ids = cancel.goals.clone();
                                    let _ = server.answer_cancel(&cancel, &ids).await;
                                    // "Canceling active action goal because cancel callback
                                    // received." (only when it names the active goal)
                                    if let Some(g) = active_goal.take_if(|g| ids.contains(&g.id)) {
                                        c.lock().unwrap().push(Instant::now());
                                        a.lock().unwrap().hold_here();
                                        finishing.push(finish(server, g, GoalOutcome::Canceled, &f));
                                    }
                                }
                                Err(_) => {}
                            }
                        }
                        Some(()) = finishing.next(), if !finishing.is_empty() => {}
                        _ = ticker.tick() => {
                            let msg = {
                                let mut arm = a.lock().unwrap();
                                arm.step();
                                JointState {
                                    name: arm.joints.clone(),
                                    position: arm.position.clone(),
                                    ..Default::default()
                                }
                            };
                            k = k.wrapping_add(1);
                            if k.is_multiple_of(STATE_EVERY) && p.load(Ordering::SeqCst) {
                                let _ = states.publish(msg);
                            }
                        }
                    }
                }
            });
        });
        Self {
            arm,
            reject_all,
            reject_holds,
            publish_states,
            cancels,
            fetched,
            stop,
            handle: Some(handle),
        }
    }

    /// Everything the controller received so far.
    pub fn received(&self) -> Vec<Received> {
        self.arm.lock().unwrap().received.clone()
    }

    /// Waits until `n` received trajectories after `since` satisfy `pred`; returns them.
    pub fn wait_received(
        &self,
        since: Instant,
        n: usize,
        what: &str,
        pred: impl Fn(&Received) -> bool,
    ) -> Vec<Received> {
        wait_until(what, || {
            let found: Vec<Received> = self
                .received()
                .into_iter()
                .filter(|r| r.at >= since && pred(r))
                .collect();
            (found.len() >= n).then_some(found)
        })
    }

    /// The simulated position now.
    pub fn position(&self) -> Vec<f64> {
        self.arm.lock().unwrap().position.clone()
    }

    /// The simulated positions recorded in `[from, to]`.
    pub fn history(&self, from: Instant, to: Instant) -> Vec<(Instant, Vec<f64>)> {
        self.arm
            .lock()
            .unwrap()
            .history
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .cloned()
            .collect()
    }

    /// Waits until the arm has moved by more than `by` (any joint) since `since`.
    pub fn wait_moving(&self, since: Instant, by: f64, what: &str) {
        let start = Instant::now();
        loop {
            let h = self.history(since, Instant::now());
            if let Some((_, first)) = h.first() {
                if h.iter()
                    .any(|(_, p)| p.iter().zip(first).any(|(a, b)| (a - b).abs() > by))
                {
                    return;
                }
            }
            assert!(
                start.elapsed() < super::WAIT,
                "{what}: the arm did not move by {by} within {:?}; it is at {:?}; last trajectories: {:#?}",
                super::WAIT,
                self.position(),
                self.received().iter().rev().take(3).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts the arm stops: still from `event + within` for `observe` (no later trajectory
    /// moves it), having moved at most `max_travel` on any joint after `event`. Returns the
    /// position it stopped at.
    pub fn assert_stops(
        &self,
        what: &str,
        event: Instant,
        within: Duration,
        observe: Duration,
        max_travel: f64,
    ) -> Vec<f64> {
        let settled = event + within;
        let end = settled + observe;
        std::thread::sleep(end.saturating_duration_since(Instant::now()) + SIM_STEP * 2);
        let after = self.history(settled, end);
        assert!(after.len() > 2, "{what}: no simulated positions recorded");
        let stop = after[0].1.clone();
        for (t, p) in &after {
            let moved = p.iter().zip(&stop).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(
                moved <= STILL,
                "{what}: the arm still moves {:.3} s after the stop ({:.3} s allowed): {moved:.6} rad from {stop:?}; last trajectories: {:#?}",
                t.duration_since(event).as_secs_f64(),
                within.as_secs_f64(),
                self.last_received(3)
            );
        }
        let before = self.history(event, settled);
        if let Some((_, p0)) = before.first() {
            for (_, p) in &before {
                let travel = p.iter().zip(p0).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                assert!(
                    travel <= max_travel,
                    "{what}: the arm travelled {travel:.4} after the stop, at most {max_travel} allowed"
                );
            }
        }
        stop
    }

    fn last_received(&self, n: usize) -> Vec<(f64, Result<(), String>, usize)> {
        let all = self.received();
        let start = all.first().map(|r| r.at);
        all.iter()
            .rev()
            .take(n)
            .map(|r| {
                (
                    start.map_or(0.0, |s| r.at.duration_since(s).as_secs_f64()),
                    r.verdict.clone(),
                    r.trajectory.points.len(),
                )
            })
            .collect()
    }
}

impl Drop for EmulatedJtc {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// An emulated mobile base: keeps the last velocity it was sent (no command timeout, the
/// strictest case) and records every `Twist` it receives.
pub struct EmulatedBase {
    pub twists: Arc<Mutex<Vec<(Instant, Twist)>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EmulatedBase {
    pub fn start(domain: u16, topic: &str) -> Self {
        let twists = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tw, s) = (Arc::clone(&twists), Arc::clone(&stop));
        let topic = topic.to_string();
        let handle = std::thread::spawn(move || {
            let ctx = RosContext::with_domain(domain).unwrap();
            let mut node = peer(&ctx, "base_controller");
            let sub = node
                .create_subscription::<Twist>(&topic, Qos::default_profile())
                .unwrap();
            let start = Instant::now();
            // Woken by each message (its arrival time is when it was taken), and every 50 ms to
            // look at the stop flag.
            runtime().block_on(async {
                while !s.load(Ordering::SeqCst) && start.elapsed() < LIFETIME {
                    if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(50), sub.recv()).await {
                        tw.lock().unwrap().push((Instant::now(), m));
                    }
                }
            });
        });
        Self {
            twists,
            stop,
            handle: Some(handle),
        }
    }

    pub fn snapshot(&self) -> Vec<(Instant, Twist)> {
        self.twists.lock().unwrap().clone()
    }

    /// The velocity in force at `t` (the last one received by then), as (linear x, angular z).
    pub fn velocity_at(&self, t: Instant) -> (f64, f64) {
        self.snapshot()
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .map_or((0.0, 0.0), |(_, m)| (m.linear.x, m.angular.z))
    }

    /// Waits until a non-zero velocity arrives after `since`; returns when it arrived.
    pub fn wait_moving(&self, since: Instant, what: &str) -> Instant {
        wait_until(what, || {
            self.snapshot()
                .iter()
                .find(|(t, m)| *t >= since && (m.linear.x != 0.0 || m.angular.z != 0.0))
                .map(|(t, _)| *t)
        })
    }

    /// The first zero velocity received after `since`, and when.
    pub fn wait_zero(&self, since: Instant, what: &str) -> Instant {
        wait_until(what, || {
            self.snapshot()
                .iter()
                .find(|(t, m)| *t >= since && m.linear.x == 0.0 && m.angular.z == 0.0)
                .map(|(t, _)| *t)
        })
    }

    /// Asserts the base is stopped from `event + within` until `observe` later: the velocity in
    /// force is zero and nothing non-zero arrives.
    pub fn assert_stops(&self, what: &str, event: Instant, within: Duration, observe: Duration) {
        let settled = event + within;
        std::thread::sleep((settled + observe).saturating_duration_since(Instant::now()));
        assert_eq!(
            self.velocity_at(settled),
            (0.0, 0.0),
            "{what}: the base still moves {:.3} s after the stop",
            within.as_secs_f64()
        );
        let moving: Vec<_> = self
            .snapshot()
            .into_iter()
            .filter(|(t, m)| *t > settled && *t <= settled + observe && (m.linear.x != 0.0 || m.angular.z != 0.0))
            .collect();
        assert!(moving.is_empty(), "{what}: velocities after the stop: {moving:?}");
    }

    /// Zero twists received in `[from, to]`.
    pub fn zeros(&self, from: Instant, to: Instant) -> usize {
        self.snapshot()
            .iter()
            .filter(|(t, m)| *t >= from && *t <= to && m.linear.x == 0.0 && m.angular.z == 0.0)
            .count()
    }
}

impl Drop for EmulatedBase {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A trajectory the way a test builds one (for checking the validator against JTC's rules).
pub fn trajectory(names: &[&str], stamp_ns: i64, points: &[(i64, Vec<f64>)]) -> JointTrajectory {
    let mut t = JointTrajectory {
        joint_names: names.iter().map(|s| s.to_string()).collect(),
        points: points
            .iter()
            .map(|(tfs, p)| JointTrajectoryPoint {
                positions: p.clone(),
                time_from_start: RosDuration::from_nanos(*tfs),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    t.header.stamp = univla_ros::ros::msgs::builtin_interfaces::Time::from_nanos(stamp_ns);
    t
}
