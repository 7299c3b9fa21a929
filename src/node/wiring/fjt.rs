//! `control_msgs/FollowJointTrajectory` output for controllers that only take actions: the newest
//! trajectory is sent as a goal (which preempts the controller's previous goal); trajectories that
//! arrive while a goal is being sent are replaced, never queued. Each accepted goal's result is
//! fetched (controllers may wait for that), and a controller that aborts or reports an error code
//! is logged. A hold first cancels the controller's running goal (a `joint_trajectory_controller`
//! then stops where it is), then sends the one-point hold as a goal.
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;

use crate::ros::action::{GoalId, GoalStatus, RosActionClient};
use crate::ros::msgs::control_msgs::{FollowJointTrajectory, FollowJointTrajectoryGoal, FollowJointTrajectoryResult};
use crate::ros::msgs::trajectory_msgs::JointTrajectory;

use crate::node::error::NodeError;

/// Bound on one goal exchange with the controller.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a goal's result is awaited (a chunk lasts seconds; a preempted goal ends at once).
const RESULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Every how many rejected goals a warning is logged.
const REJECTION_LOG_EVERY: u64 = 100;
/// Results awaited at most at once; goals beyond that are not followed up.
const MAX_PENDING_RESULTS: usize = 64;

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

/// Sends trajectories through the action client on its own thread.
pub struct TrajectoryActionSender {
    latest: tokio::sync::watch::Sender<Option<Outgoing>>,
}

impl TrajectoryActionSender {
    pub fn start(client: RosActionClient<FollowJointTrajectory>) -> Result<Self, NodeError> {
        let (latest, mut rx) = tokio::sync::watch::channel(None::<Outgoing>);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| NodeError::Thread(format!("trajectory action runtime: {e}")))?;
        std::thread::Builder::new()
            .name("univla-fjt".into())
            .spawn(move || {
                rt.block_on(async move {
                    type Pending<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;
                    let client = &client;
                    let mut results: FuturesUnordered<Pending<'_>> = FuturesUnordered::new();
                    let mut rejected = 0u64;
                    let mut running: Option<GoalId> = None;
                    loop {
                        tokio::select! {
                            changed = rx.changed() => {
                                if changed.is_err() {
                                    break;
                                }
                                let Some(Outgoing { trajectory, hold }) = rx.borrow_and_update().clone() else {
                                    continue;
                                };
                                // A stop: the controller's running goal is canceled first (a
                                // joint_trajectory_controller then holds where it is), and the
                                // hold goal follows, so the arm stops even if one of them is lost.
                                if hold {
                                    if let Some(id) = running.take() {
                                        match tokio::time::timeout(SEND_TIMEOUT, client.cancel(id)).await {
                                            Ok(Ok(_)) => {}
                                            Ok(Err(e)) => tracing::error!("canceling goal {id}: {e}"),
                                            Err(_) => tracing::error!("canceling goal {id}: no answer within {SEND_TIMEOUT:?}"),
                                        }
                                    }
                                }
                                let goal = FollowJointTrajectoryGoal {
                                    trajectory,
                                    ..Default::default()
                                };
                                let accepted = match tokio::time::timeout(SEND_TIMEOUT, client.send_goal(goal)).await {
                                    Ok(Ok(Some(id))) => Some(id),
                                    Ok(Ok(None)) => {
                                        // At the control rate: the first and then every 100th.
                                        if rejected.is_multiple_of(REJECTION_LOG_EVERY) {
                                            tracing::warn!("the trajectory controller rejected a goal ({} so far)", rejected + 1);
                                        }
                                        rejected += 1;
                                        None
                                    }
                                    Ok(Err(e)) => {
                                        tracing::warn!("{e}");
                                        None
                                    }
                                    Err(_) => {
                                        tracing::warn!("trajectory controller did not answer within {SEND_TIMEOUT:?}");
                                        None
                                    }
                                };
                                if let Some(id) = accepted {
                                    running = Some(id);
                                    if results.len() < MAX_PENDING_RESULTS {
                                        results.push(Box::pin(async move {
                                            let r = match tokio::time::timeout(RESULT_TIMEOUT, client.result(id)).await {
                                                Ok(r) => r.map_err(|e| e.to_string()),
                                                Err(_) => Err(format!("none within {RESULT_TIMEOUT:?}")),
                                            };
                                            report(id, r);
                                        }));
                                    }
                                }
                            }
                            Some(()) = results.next(), if !results.is_empty() => {}
                        }
                    }
                })
            })
            .map_err(|e| NodeError::Thread(format!("univla-fjt: {e}")))?;
        Ok(Self { latest })
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
