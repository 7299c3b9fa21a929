//! Action server and client on our boundary, for any [`RosAction`] (e.g. `univla_msgs/Execute`,
//! `control_msgs/FollowJointTrajectory`), over ros2-client's async action server.
//!
//! Server flow: [`RosActionServer::next_event`] yields new goals and cancel requests; a goal is
//! [`accept`](RosActionServer::accept)ed (and starts executing) or
//! [`reject`](RosActionServer::reject)ed; feedback goes out with
//! [`publish_feedback`](RosActionServer::publish_feedback); every accepted goal ends with
//! [`finish`](RosActionServer::finish), which waits until the client asks for the result
//! (bound it with a timeout).
use std::fmt;
use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt};
use ros2_client::action::{
    ActionClientQosPolicies, ActionServerQosPolicies, CancelHandle, ExecutingGoalHandle, GoalEndStatus, GoalStatusEnum,
    NewGoalHandle,
};
use ros2_client::{ActionClient, ActionServer, ActionTypeName, AsyncActionServer, Name, ServiceMapping};

use super::error::RosError;
use super::msgs::RosAction;
use super::qos::Qos;
use super::transport::RosNode;

/// Environment variable naming the RMW of the ROS 2 peers (selects the service mapping).
const RMW_ENV: &str = "RMW_IMPLEMENTATION";

/// The request/reply mapping of the peers: Cyclone's for `rmw_cyclonedds_cpp`, else the
/// RPC-over-DDS "enhanced" mapping used by Fast DDS (the ROS 2 default RMW).
fn service_mapping() -> ServiceMapping {
    match std::env::var(RMW_ENV) {
        Ok(rmw) if rmw.contains("cyclonedds") => ServiceMapping::Cyclone,
        _ => ServiceMapping::Enhanced,
    }
}

/// rclcpp action QoS: services and feedback reliable depth 10, status reliable transient-local depth 1.
fn server_qos() -> ActionServerQosPolicies {
    let services = Qos::default_profile().to_profile();
    ActionServerQosPolicies {
        goal_service: services.clone(),
        result_service: services.clone(),
        cancel_service: services.clone(),
        feedback_publisher: services,
        status_publisher: Qos::transient_local().to_profile(),
    }
}

fn client_qos() -> ActionClientQosPolicies {
    let services = Qos::default_profile().to_profile();
    ActionClientQosPolicies {
        goal_service: services.clone(),
        result_service: services.clone(),
        cancel_service: services.clone(),
        feedback_subscription: services,
        status_subscription: Qos::transient_local().to_profile(),
    }
}

/// The unique id of one goal.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoalId(ros2_client::action::GoalId);

impl std::hash::Hash for GoalId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.uuid.hash(state)
    }
}

impl fmt::Debug for GoalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.uuid)
    }
}

impl fmt::Display for GoalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.uuid)
    }
}

/// How an accepted goal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoalOutcome {
    Succeeded,
    Aborted,
    Canceled,
}

/// Goal status as the client sees it (`action_msgs/GoalStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoalStatus {
    Unknown,
    Accepted,
    Executing,
    Canceling,
    Succeeded,
    Canceled,
    Aborted,
}

impl From<GoalStatusEnum> for GoalStatus {
    fn from(s: GoalStatusEnum) -> Self {
        match s {
            GoalStatusEnum::Unknown => Self::Unknown,
            GoalStatusEnum::Accepted => Self::Accepted,
            GoalStatusEnum::Executing => Self::Executing,
            GoalStatusEnum::Canceling => Self::Canceling,
            GoalStatusEnum::Succeeded => Self::Succeeded,
            GoalStatusEnum::Canceled => Self::Canceled,
            GoalStatusEnum::Aborted => Self::Aborted,
        }
    }
}

/// A goal that arrived and awaits accept or reject.
pub struct GoalRequest<A: RosAction> {
    handle: NewGoalHandle<A::Goal>,
    /// Goal id chosen by the client.
    pub id: GoalId,
    /// The goal itself.
    pub goal: A::Goal,
}

/// An accepted, executing goal.
pub struct ActiveGoal<A: RosAction> {
    handle: ExecutingGoalHandle<A::Goal>,
    /// Goal id chosen by the client.
    pub id: GoalId,
}

/// A cancel request; `goals` are the accepted/executing goals it names.
pub struct CancelRequest {
    handle: CancelHandle,
    /// Goals the client asks to cancel (only ones that are still active).
    pub goals: Vec<GoalId>,
}

/// What the server must handle next.
pub enum ServerEvent<A: RosAction> {
    Goal(GoalRequest<A>),
    Cancel(CancelRequest),
}

/// An action server for `A` on one action name.
pub struct RosActionServer<A: RosAction> {
    inner: Arc<AsyncActionServer<A::Goal, A::Result, A::Feedback>>,
    name: String,
}

impl<A: RosAction> RosActionServer<A> {
    /// Serves `A` on `name` (resolved and remapped like a topic).
    pub fn new(node: &mut RosNode, name: &str) -> Result<Self, RosError> {
        let resolved = node.resolve(name)?;
        let create = |reason: String| RosError::Create {
            what: format!("action server {resolved}"),
            reason,
        };
        let ros_name = Name::parse(&resolved).map_err(|e| create(format!("{e:?}")))?;
        let server: ActionServer<A::Goal, A::Result, A::Feedback> = node
            .inner_mut()
            .create_action_server(
                service_mapping(),
                &ros_name,
                &ActionTypeName::new(A::PACKAGE, A::NAME),
                server_qos(),
            )
            .map_err(|e| create(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(AsyncActionServer::new(server)),
            name: resolved,
        })
    }

    /// Resolved action name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn err(&self, reason: String) -> RosError {
        RosError::Action {
            action: self.name.clone(),
            reason,
        }
    }

    /// Waits for the next goal or cancel request.
    pub async fn next_event(&self) -> Result<ServerEvent<A>, RosError> {
        futures::select! {
            goal = self.inner.receive_new_goal().fuse() => {
                let handle = goal.map_err(|e| self.err(format!("receiving a goal: {e}")))?;
                let goal = self.inner.get_new_goal(handle.clone()).ok_or_else(|| self.err("goal vanished".into()))?;
                Ok(ServerEvent::Goal(GoalRequest { id: GoalId(handle.goal_id()), handle, goal }))
            }
            cancel = self.inner.receive_cancel_request().fuse() => {
                let handle = cancel.map_err(|e| self.err(format!("receiving a cancel request: {e}")))?;
                let goals = handle.goals().map(GoalId).collect();
                Ok(ServerEvent::Cancel(CancelRequest { handle, goals }))
            }
        }
    }

    /// Accepts a goal and marks it executing.
    pub async fn accept(&self, req: GoalRequest<A>) -> Result<ActiveGoal<A>, RosError> {
        let accepted = self
            .inner
            .accept_goal(req.handle)
            .await
            .map_err(|e| self.err(format!("accept {}: {e:?}", req.id)))?;
        let handle = self
            .inner
            .start_executing_goal(accepted)
            .await
            .map_err(|e| self.err(format!("start {}: {e:?}", req.id)))?;
        Ok(ActiveGoal { handle, id: req.id })
    }

    /// Rejects a goal.
    pub async fn reject(&self, req: GoalRequest<A>) -> Result<(), RosError> {
        self.inner
            .reject_goal(req.handle)
            .await
            .map_err(|e| self.err(format!("reject {}: {e:?}", req.id)))
    }

    /// Answers a cancel request: the goals in `accept` start canceling (finish them with
    /// [`GoalOutcome::Canceled`]); if none, the request is rejected.
    pub async fn answer_cancel(&self, req: &CancelRequest, accept: &[GoalId]) -> Result<(), RosError> {
        let ids: Vec<_> = accept.iter().filter(|g| req.goals.contains(g)).map(|g| g.0).collect();
        self.inner
            .respond_to_cancel_requests(&req.handle, ids.into_iter())
            .await
            .map_err(|e| self.err(format!("cancel response: {e}")))
    }

    /// Publishes feedback for an executing goal.
    pub async fn publish_feedback(&self, goal: &ActiveGoal<A>, feedback: A::Feedback) -> Result<(), RosError> {
        self.inner
            .publish_feedback(goal.handle.clone(), feedback)
            .await
            .map_err(|e| self.err(format!("feedback for {}: {e:?}", goal.id)))
    }

    /// Ends a goal and sends its result; resolves once the client has requested the result.
    pub async fn finish(&self, goal: ActiveGoal<A>, outcome: GoalOutcome, result: A::Result) -> Result<(), RosError> {
        let status = match outcome {
            GoalOutcome::Succeeded => GoalEndStatus::Succeeded,
            GoalOutcome::Aborted => GoalEndStatus::Aborted,
            GoalOutcome::Canceled => GoalEndStatus::Canceled,
        };
        self.inner
            .send_result_response(goal.handle, status, result)
            .await
            .map_err(|e| self.err(format!("result for {}: {e:?}", goal.id)))
    }
}

/// An action client for `A` on one action name.
pub struct RosActionClient<A: RosAction> {
    inner: ActionClient<A::Goal, A::Result, A::Feedback>,
    name: String,
}

impl<A: RosAction> RosActionClient<A> {
    /// A client for `A` on `name` (resolved and remapped like a topic).
    pub fn new(node: &mut RosNode, name: &str) -> Result<Self, RosError> {
        let resolved = node.resolve(name)?;
        let create = |reason: String| RosError::Create {
            what: format!("action client {resolved}"),
            reason,
        };
        let ros_name = Name::parse(&resolved).map_err(|e| create(format!("{e:?}")))?;
        let inner = node
            .inner_mut()
            .create_action_client(
                service_mapping(),
                &ros_name,
                &ActionTypeName::new(A::PACKAGE, A::NAME),
                client_qos(),
            )
            .map_err(|e| create(e.to_string()))?;
        Ok(Self { inner, name: resolved })
    }

    fn err(&self, reason: String) -> RosError {
        RosError::Action {
            action: self.name.clone(),
            reason,
        }
    }

    /// Resolves once the server's goal service is matched (unbounded: wrap it in a timeout).
    pub async fn wait_for_server(&self, node: &RosNode) {
        self.inner.goal_client().wait_for_service(node.inner()).await
    }

    /// Sends a goal; `Some(id)` if accepted, `None` if rejected.
    pub async fn send_goal(&self, goal: A::Goal) -> Result<Option<GoalId>, RosError> {
        let (id, response) = self
            .inner
            .async_send_goal(goal)
            .await
            .map_err(|e| self.err(format!("send goal: {e:?}")))?;
        Ok(response.accepted.then_some(GoalId(id)))
    }

    /// Asks the server to cancel a goal; true if it started canceling it.
    pub async fn cancel(&self, id: GoalId) -> Result<bool, RosError> {
        let response = self
            .inner
            .async_cancel_goal(id.0, ros2_client::builtin_interfaces::Time::ZERO)
            .await
            .map_err(|e| self.err(format!("cancel {id}: {e:?}")))?;
        Ok(response.goals_canceling.iter().any(|g| g.goal_id == id.0))
    }

    /// Waits for the final status and result of a goal.
    pub async fn result(&self, id: GoalId) -> Result<(GoalStatus, A::Result), RosError> {
        let (status, result) = self
            .inner
            .async_request_result(id.0)
            .await
            .map_err(|e| self.err(format!("result of {id}: {e:?}")))?;
        Ok((status.into(), result))
    }

    /// Feedback of one goal as a stream (pin it with `futures::pin_mut!`).
    pub fn feedback(&self, id: GoalId) -> impl Stream<Item = Result<A::Feedback, RosError>> + '_ {
        self.inner
            .feedback_stream(id.0)
            .map(move |r| r.map_err(|e| self.err(format!("feedback of {id}: {e}"))))
    }
}
