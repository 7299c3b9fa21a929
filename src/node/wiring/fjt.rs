//! `control_msgs/FollowJointTrajectory` output for controllers that only take actions.
//!
//! Each trajectory is written as a goal at once (a `joint_trajectory_controller` preempts its
//! running goal with the newer one) and nothing waits on the controller's answers, which one
//! poller collects by request: acceptance, results (controllers may wait for them) and cancel
//! answers. A hold first cancels the controller's running goal (a `joint_trajectory_controller`
//! then stops where it is), then sends the one-point hold as a goal; a hold never waits behind a
//! goal that the controller is slow to answer. A goal still unanswered when the hold went out is
//! canceled the moment the controller reports it accepted: the hold normally preempts it, but if
//! the hold is lost or refused, the cancel is what stops the arm.
//!
//! Goals written before the controller's action server is discovered are lost (DDS delivers a
//! volatile sample only to readers it knows), so [`TrajectoryActionSender::ready`] refuses the
//! policy's goals until then, trajectories meanwhile are dropped and counted, and a hold waits
//! for the controller and goes out as soon as it appears.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ros::action::{ActionServerProbe, GoalId, GoalStatus, RequestToken, RosActionClient};
use crate::ros::msgs::control_msgs::{FollowJointTrajectory, FollowJointTrajectoryGoal, FollowJointTrajectoryResult};
use crate::ros::msgs::trajectory_msgs::JointTrajectory;

use crate::node::error::NodeError;

/// How long the controller has to accept a goal or answer a cancel before it is reported.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a goal's result is awaited (a chunk lasts seconds; a preempted goal ends at once).
const RESULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often answers are collected while requests are outstanding (results are nearly always
/// outstanding while the arm moves), and the controller looked for while a hold waits for it.
/// Nothing waits on these answers: a hold's cancel and goal are written at once.
const POLL: Duration = Duration::from_millis(20);
/// Every how many rejected (or undelivered) goals a warning is logged.
const LOG_EVERY: u64 = 100;
/// Requests followed up at most at once (goals, results, cancels each); older ones beyond that
/// are forgotten.
const MAX_OUTSTANDING: usize = 64;
/// Answers taken at most per poll (the reader keeps few; this only bounds the loop).
const MAX_TAKE: usize = 256;

/// Logs what the controller reports about one goal.
fn report(id: GoalId, outcome: Result<(GoalStatus, FollowJointTrajectoryResult), String>) {
    match outcome {
        // Preempted by our next trajectory: the normal case.
        Ok((GoalStatus::Canceled, _)) => {}
        Ok((GoalStatus::Succeeded, r)) if r.error_code == FollowJointTrajectoryResult::SUCCESSFUL => {}
        Ok((status, r)) => tracing::warn!(
            "trajectory controller: goal {id} ended {status:?} with error {} ({})",
            r.error_code,
            r.error_string
        ),
        Err(e) => tracing::debug!("trajectory controller: no result for goal {id}: {e}"),
    }
}

/// The next goal to send.
#[derive(Clone, Debug)]
struct Outgoing {
    trajectory: JointTrajectory,
    hold: bool,
}

/// One request whose answer is awaited.
struct Outstanding {
    token: RequestToken,
    goal: GoalId,
    /// Order in which goals were sent (goals only).
    seq: u64,
    sent: Instant,
}

/// Pushes `o`, forgetting the oldest entry beyond [`MAX_OUTSTANDING`].
fn push_bounded(list: &mut Vec<Outstanding>, o: Outstanding) {
    if list.len() >= MAX_OUTSTANDING {
        list.remove(0);
    }
    list.push(o);
}

/// Takes the entry answered by `token`, if it is still followed.
fn answered(list: &mut Vec<Outstanding>, token: RequestToken) -> Option<Outstanding> {
    list.iter().position(|o| o.token == token).map(|i| list.remove(i))
}

/// The sender thread's state: what was sent and what the controller has answered.
struct Link<'a> {
    client: &'a RosActionClient<FollowJointTrajectory>,
    probe: ActionServerProbe,
    /// Shared with [`TrajectoryActionSender::ready`]: the controller was found on the graph.
    ready: Arc<AtomicBool>,
    goals: Vec<Outstanding>,
    results: Vec<Outstanding>,
    cancels: Vec<Outstanding>,
    /// The newest goal the controller accepted, and its sequence number.
    running: Option<(GoalId, u64)>,
    /// Sequence number of the newest hold goal: goals sent before it are canceled once accepted.
    hold_seq: u64,
    /// A hold not yet sent because the controller is not on the graph.
    waiting_hold: Option<JointTrajectory>,
    seq: u64,
    rejected: u64,
    undelivered: u64,
}

impl Link<'_> {
    /// Whether goals can reach the controller now (looked up again while it is not known).
    fn controller_ready(&mut self) -> bool {
        if !self.ready.load(Ordering::Acquire) && self.probe.is_ready() {
            tracing::info!("trajectory controller {} discovered", self.client.name());
            self.ready.store(true, Ordering::Release);
        }
        self.ready.load(Ordering::Acquire)
    }

    fn outstanding(&self) -> bool {
        !(self.goals.is_empty() && self.results.is_empty() && self.cancels.is_empty() && self.waiting_hold.is_none())
    }

    /// Asks the controller to cancel goal `id` and follows up its answer.
    fn cancel(&mut self, id: GoalId) {
        match self.client.request_cancel(id) {
            Ok(token) => push_bounded(
                &mut self.cancels,
                Outstanding {
                    token,
                    goal: id,
                    seq: 0,
                    sent: Instant::now(),
                },
            ),
            Err(e) => tracing::error!("{e}"),
        }
    }

    fn send(&mut self, out: Outgoing) {
        if !self.controller_ready() {
            if out.hold {
                tracing::error!(
                    "trajectory controller {} not discovered: the hold is sent when it appears",
                    self.client.name()
                );
                self.waiting_hold = Some(out.trajectory);
            } else {
                if self.undelivered.is_multiple_of(LOG_EVERY) {
                    tracing::warn!(
                        "trajectory controller {} not discovered: trajectory dropped ({} so far)",
                        self.client.name(),
                        self.undelivered + 1
                    );
                }
                self.undelivered += 1;
            }
            return;
        }
        if out.hold {
            self.waiting_hold = None;
            if let Some((id, _)) = self.running.take() {
                self.cancel(id);
            }
        }
        let goal = FollowJointTrajectoryGoal {
            trajectory: out.trajectory,
            ..Default::default()
        };
        match self.client.request_goal(goal) {
            Ok((token, id)) => {
                self.seq += 1;
                let seq = self.seq;
                if out.hold {
                    self.hold_seq = seq;
                }
                push_bounded(
                    &mut self.goals,
                    Outstanding {
                        token,
                        goal: id,
                        seq,
                        sent: Instant::now(),
                    },
                );
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Collects the controller's answers and reports requests it left unanswered.
    fn poll(&mut self) {
        if let Some(t) = self.waiting_hold.take() {
            self.send(Outgoing {
                trajectory: t,
                hold: true,
            });
        }
        let now = Instant::now();
        for _ in 0..MAX_TAKE {
            match self.client.take_goal_answer() {
                Ok(Some((token, accepted))) => self.goal_answered(token, accepted, now),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("{e}");
                    break;
                }
            }
        }
        for _ in 0..MAX_TAKE {
            match self.client.take_result() {
                Ok(Some((token, status, result))) => {
                    if let Some(o) = answered(&mut self.results, token) {
                        report(o.goal, Ok((status, result)));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("{e}");
                    break;
                }
            }
        }
        for _ in 0..MAX_TAKE {
            match self.client.take_cancel() {
                Ok(Some((token, canceling))) => {
                    if let Some(o) = answered(&mut self.cancels, token) {
                        if !canceling.contains(&o.goal) {
                            tracing::debug!("trajectory controller: goal {} had ended before its cancel", o.goal);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("{e}");
                    break;
                }
            }
        }
        self.expire(now);
    }

    fn goal_answered(&mut self, token: RequestToken, accepted: bool, now: Instant) {
        let Some(o) = answered(&mut self.goals, token) else {
            return;
        };
        if !accepted {
            // At the control rate: the first and then every 100th.
            if self.rejected.is_multiple_of(LOG_EVERY) {
                tracing::warn!(
                    "the trajectory controller rejected a goal ({} so far)",
                    self.rejected + 1
                );
            }
            self.rejected += 1;
            return;
        }
        if o.seq < self.hold_seq {
            // Sent before the latest hold and taken by the controller after the hold's cancel
            // went out: it must not run on if the hold goal itself is lost or refused.
            self.cancel(o.goal);
        } else if self.running.is_none_or(|(_, seq)| seq < o.seq) {
            self.running = Some((o.goal, o.seq));
        }
        match self.client.request_result(o.goal) {
            Ok(token) => push_bounded(&mut self.results, Outstanding { token, sent: now, ..o }),
            Err(e) => tracing::debug!("{e}"),
        }
    }

    /// Reports and forgets requests past their deadline.
    fn expire(&mut self, now: Instant) {
        let late = |o: &Outstanding, limit: Duration| now.saturating_duration_since(o.sent) > limit;
        let mut unanswered = 0;
        self.goals.retain(|o| {
            let keep = !late(o, ANSWER_TIMEOUT);
            unanswered += usize::from(!keep);
            keep
        });
        if unanswered > 0 {
            tracing::warn!(
                "trajectory controller {} did not answer {unanswered} goal(s) within {ANSWER_TIMEOUT:?}",
                self.client.name()
            );
            // Looked up again before the next goal: the controller may be gone.
            self.ready.store(false, Ordering::Release);
        }
        self.cancels.retain(|o| {
            let keep = !late(o, ANSWER_TIMEOUT);
            if !keep {
                tracing::error!("canceling goal {}: no answer within {ANSWER_TIMEOUT:?}", o.goal);
            }
            keep
        });
        self.results.retain(|o| {
            let keep = !late(o, RESULT_TIMEOUT);
            if !keep {
                report(o.goal, Err(format!("none within {RESULT_TIMEOUT:?}")));
            }
            keep
        });
    }
}

/// Sends trajectories through the action client on its own thread.
pub struct TrajectoryActionSender {
    latest: tokio::sync::watch::Sender<Option<Outgoing>>,
    probe: ActionServerProbe,
    ready: Arc<AtomicBool>,
    name: String,
}

impl TrajectoryActionSender {
    /// Starts the sender thread; `probe` tells whether the client's server is on the graph.
    pub fn start(client: RosActionClient<FollowJointTrajectory>, probe: ActionServerProbe) -> Result<Self, NodeError> {
        let (latest, mut rx) = tokio::sync::watch::channel(None::<Outgoing>);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| NodeError::Thread(format!("trajectory action runtime: {e}")))?;
        let ready = Arc::new(AtomicBool::new(false));
        let name = client.name().to_string();
        let (thread_probe, thread_ready) = (probe.clone(), Arc::clone(&ready));
        std::thread::Builder::new()
            .name("univla-fjt".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut link = Link {
                        client: &client,
                        probe: thread_probe,
                        ready: thread_ready,
                        goals: Vec::new(),
                        results: Vec::new(),
                        cancels: Vec::new(),
                        running: None,
                        hold_seq: 0,
                        waiting_hold: None,
                        seq: 0,
                        rejected: 0,
                        undelivered: 0,
                    };
                    let mut tick = tokio::time::interval(POLL);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            changed = rx.changed() => {
                                if changed.is_err() {
                                    // The node is shutting down: everything it sent is written.
                                    break;
                                }
                                let next = rx.borrow_and_update().clone();
                                if let Some(out) = next {
                                    link.send(out);
                                }
                            }
                            _ = tick.tick(), if link.outstanding() => link.poll(),
                        }
                    }
                })
            })
            .map_err(|e| NodeError::Thread(format!("univla-fjt: {e}")))?;
        Ok(Self {
            latest,
            probe,
            ready,
            name,
        })
    }

    /// Whether goals can start: the controller's action server has been discovered (goals
    /// sent before that would be lost, and so would a stop).
    pub fn ready(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Acquire) || self.probe.is_ready() {
            Ok(())
        } else {
            Err(format!(
                "the FollowJointTrajectory server {} has not been discovered",
                self.name
            ))
        }
    }

    /// Replaces the trajectory to send next.
    pub fn send(&self, t: JointTrajectory) {
        let _ = self.latest.send(Some(Outgoing {
            trajectory: t,
            hold: false,
        }));
    }

    /// Sends a hold: cancels the controller's running goal, then sends `t` (one point at the hold
    /// position) as a goal.
    pub fn hold(&self, t: JointTrajectory) {
        let _ = self.latest.send(Some(Outgoing {
            trajectory: t,
            hold: true,
        }));
    }
}
