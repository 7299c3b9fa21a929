//! `control_msgs/FollowJointTrajectory` output for controllers that only take actions: the newest
//! trajectory is sent as a goal (which preempts the controller's previous goal); trajectories that
//! arrive while a goal is being sent are replaced, never queued.
use std::time::Duration;

use crate::ros::action::RosActionClient;
use crate::ros::msgs::control_msgs::{FollowJointTrajectory, FollowJointTrajectoryGoal};
use crate::ros::msgs::trajectory_msgs::JointTrajectory;

use super::error::NodeError;

/// Bound on one goal exchange with the controller.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends trajectories through the action client on its own thread.
pub struct TrajectoryActionSender {
    latest: tokio::sync::watch::Sender<Option<JointTrajectory>>,
}

impl TrajectoryActionSender {
    pub fn start(client: RosActionClient<FollowJointTrajectory>) -> Result<Self, NodeError> {
        let (latest, mut rx) = tokio::sync::watch::channel(None::<JointTrajectory>);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| NodeError::Thread(format!("trajectory action runtime: {e}")))?;
        std::thread::Builder::new()
            .name("univla-fjt".into())
            .spawn(move || {
                rt.block_on(async move {
                    while rx.changed().await.is_ok() {
                        let Some(trajectory) = rx.borrow_and_update().clone() else {
                            continue;
                        };
                        let goal = FollowJointTrajectoryGoal {
                            trajectory,
                            ..Default::default()
                        };
                        match tokio::time::timeout(SEND_TIMEOUT, client.send_goal(goal)).await {
                            Ok(Ok(Some(_))) => {}
                            Ok(Ok(None)) => tracing::warn!("the trajectory controller rejected a goal"),
                            Ok(Err(e)) => tracing::warn!("{e}"),
                            Err(_) => tracing::warn!("trajectory controller did not answer within {SEND_TIMEOUT:?}"),
                        }
                    }
                })
            })
            .map_err(|e| NodeError::Thread(format!("univla-fjt: {e}")))?;
        Ok(Self { latest })
    }

    /// Replaces the trajectory to send next.
    pub fn send(&self, t: JointTrajectory) {
        let _ = self.latest.send(Some(t));
    }
}
