//! Action server and client on our boundary, for any [`RosAction`] (e.g. `univla_msgs/Execute`,
//! `control_msgs/FollowJointTrajectory`).
//!
//! Server flow: [`RosActionServer::next_event`] yields new goals and cancel requests; a goal is
//! [`accept`](RosActionServer::accept)ed (and starts executing) or
//! [`reject`](RosActionServer::reject)ed; feedback goes out with
//! [`publish_feedback`](RosActionServer::publish_feedback); every accepted goal ends with
//! [`finish`](RosActionServer::finish). The server keeps the goal table itself, on ros2-client's
//! synchronous action endpoints, so that `get_result` is answered as rcl_action answers it (see
//! [`RosActionServer`]). The client wraps ros2-client's action client.
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use byteorder::LittleEndian;
use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use ros2_client::action::{
    ActionClientQosPolicies, ActionServerQosPolicies, GetResultRequest, GetResultResponse, GoalId as ActionGoalId,
    GoalInfo, GoalStatusEnum, SendGoalRequest, SendGoalResponse,
};
use ros2_client::action_msgs::{CancelGoalResponse, GoalStatus as ActionGoalStatus, GoalStatusArray};
use ros2_client::builtin_interfaces::Time;
use ros2_client::dds::rustdds::mio1;
use ros2_client::{ActionClient, ActionServer, ActionTypeName, Name, RmwRequestId, ServiceMapping};
use serde::{Deserialize, Serialize};

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

/// How long an ended goal's result stays available to `get_result` when the server is created
/// with [`RosActionServer::new`]: rcl_action's default on Humble (Iron and later shortened it
/// to 10 s; a longer window only answers more clients).
pub const DEFAULT_RESULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Longest the I/O thread sleeps between checks for expired results and missed wake-ups.
const IO_TICK: Duration = Duration::from_millis(200);

const GOAL_TOKEN: mio1::Token = mio1::Token(0);
const CANCEL_TOKEN: mio1::Token = mio1::Token(1);
const RESULT_TOKEN: mio1::Token = mio1::Token(2);
const STOP_TOKEN: mio1::Token = mio1::Token(3);

/// `action_msgs/srv/CancelGoal` return codes.
mod cancel_code {
    use ros2_client::action_msgs::CancelGoalResponseEnum;
    pub const NONE: CancelGoalResponseEnum = CancelGoalResponseEnum::None;
    pub const REJECTED: CancelGoalResponseEnum = CancelGoalResponseEnum::Rejected;
    pub const UNKNOWN_GOAL: CancelGoalResponseEnum = CancelGoalResponseEnum::UnknownGoal;
    pub const GOAL_TERMINATED: CancelGoalResponseEnum = CancelGoalResponseEnum::GoalTerminated;
}

/// `action_msgs/srv/CancelGoal_Request` with a readable field (ros2-client keeps its own
/// copy's field crate-private; the CDR layout is the same, so we transcode through it).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CancelGoalRequestMsg {
    goal_info: GoalInfo,
}

/// A goal that arrived and awaits accept or reject.
pub struct GoalRequest<A: RosAction> {
    request: RmwRequestId,
    /// Goal id chosen by the client.
    pub id: GoalId,
    /// The goal itself.
    pub goal: A::Goal,
}

/// An accepted, executing goal.
pub struct ActiveGoal<A: RosAction> {
    /// Goal id chosen by the client.
    pub id: GoalId,
    _action: PhantomData<fn() -> A>,
}

/// A cancel request; `goals` are the accepted/executing goals it names.
pub struct CancelRequest {
    request: RmwRequestId,
    /// Goals the client asks to cancel (only ones that are still active).
    pub goals: Vec<GoalId>,
}

/// What the server must handle next.
pub enum ServerEvent<A: RosAction> {
    Goal(GoalRequest<A>),
    Cancel(CancelRequest),
}

/// One accepted goal, kept (as rcl_action keeps goal handles) until its result expires.
struct GoalEntry<R> {
    status: GoalStatusEnum,
    accepted: Time,
    /// The final result, once the goal has ended.
    result: Option<R>,
    /// When the goal ended (start of its `result_timeout`).
    ended: Option<Instant>,
    /// `get_result` requests that arrived while the goal was active.
    waiting: Vec<RmwRequestId>,
}

impl<R> GoalEntry<R> {
    fn cancelable(&self) -> bool {
        matches!(self.status, GoalStatusEnum::Accepted | GoalStatusEnum::Executing)
    }
}

type Shared<A> = ActionServer<<A as RosAction>::Goal, <A as RosAction>::Result, <A as RosAction>::Feedback>;

/// The server's state and DDS endpoints, shared by the application side and the I/O thread.
struct Core<A: RosAction> {
    dds: Shared<A>,
    goals: Mutex<BTreeMap<ActionGoalId, GoalEntry<A::Result>>>,
    result_timeout: Duration,
    name: String,
    stop: AtomicBool,
}

/// An action server for `A` on one action name, answering like an rcl_action server:
///
/// * `get_result` for a goal that is still active is answered when it ends; for an ended goal
///   at once, from a kept copy of the result, as often and to as many clients as ask, until
///   `result_timeout` after the goal ended; for an unknown or expired goal at once with
///   `STATUS_UNKNOWN` (ros2-client's own `AsyncActionServer` reads result requests only while a
///   goal is finishing, so a late or repeated request would never be answered);
/// * the status topic lists every goal, ended ones included, until its result expires;
/// * a cancel request naming an unknown goal is answered `ERROR_UNKNOWN_GOAL_ID`, one naming an
///   ended goal `ERROR_GOAL_TERMINATED`, without involving the application.
///
/// Result and cancel requests are served by a background thread (`ros-action-io`), so they are
/// answered even while the application is busy; goals and cancel requests reach the application
/// through [`next_event`](Self::next_event).
pub struct RosActionServer<A: RosAction> {
    core: Arc<Core<A>>,
    events: futures::lock::Mutex<mpsc::UnboundedReceiver<ServerEvent<A>>>,
    waker: Arc<mio1::Waker>,
}

impl<A: RosAction> RosActionServer<A> {
    /// Serves `A` on `name` (resolved and remapped like a topic), keeping results for
    /// [`DEFAULT_RESULT_TIMEOUT`].
    pub fn new(node: &mut RosNode, name: &str) -> Result<Self, RosError> {
        Self::with_result_timeout(node, name, DEFAULT_RESULT_TIMEOUT)
    }

    /// Serves `A` on `name`, keeping each ended goal's result for `result_timeout`.
    pub fn with_result_timeout(node: &mut RosNode, name: &str, result_timeout: Duration) -> Result<Self, RosError> {
        let resolved = node.resolve(name)?;
        let create = |reason: String| RosError::Create {
            what: format!("action server {resolved}"),
            reason,
        };
        let ros_name = Name::parse(&resolved).map_err(|e| create(format!("{e:?}")))?;
        let mut dds: Shared<A> = node
            .inner_mut()
            .create_action_server(
                service_mapping(),
                &ros_name,
                &ActionTypeName::new(A::PACKAGE, A::NAME),
                server_qos(),
            )
            .map_err(|e| create(e.to_string()))?;
        let poll = mio1::Poll::new().map_err(|e| create(format!("poll: {e}")))?;
        let registry = poll.registry();
        let interest = mio1::Interest::READABLE;
        registry
            .register(dds.goal_server(), GOAL_TOKEN, interest)
            .and_then(|_| registry.register(dds.cancel_server(), CANCEL_TOKEN, interest))
            .and_then(|_| registry.register(dds.result_server(), RESULT_TOKEN, interest))
            .map_err(|e| create(format!("register with poll: {e}")))?;
        let waker = Arc::new(mio1::Waker::new(registry, STOP_TOKEN).map_err(|e| create(format!("waker: {e}")))?);
        let core = Arc::new(Core {
            dds,
            goals: Mutex::new(BTreeMap::new()),
            result_timeout,
            name: resolved,
            stop: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::unbounded();
        let io_core = Arc::clone(&core);
        std::thread::Builder::new()
            .name("ros-action-io".into())
            .spawn(move || io_core.run(poll, tx))
            .map_err(|source| RosError::Thread {
                name: "ros-action-io",
                source,
            })?;
        // Latched empty status, as an rcl_action server publishes on start.
        core.publish_statuses();
        Ok(Self {
            core,
            events: futures::lock::Mutex::new(rx),
            waker,
        })
    }

    /// Resolved action name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// How long ended goals' results are kept.
    pub fn result_timeout(&self) -> Duration {
        self.core.result_timeout
    }

    fn err(&self, reason: String) -> RosError {
        self.core.err(reason)
    }

    /// Waits for the next goal or cancel request.
    pub async fn next_event(&self) -> Result<ServerEvent<A>, RosError> {
        let mut events = self.events.lock().await;
        events
            .next()
            .await
            .ok_or_else(|| self.err("the action server's I/O thread has stopped".into()))
    }

    /// Accepts a goal and marks it executing.
    pub async fn accept(&self, req: GoalRequest<A>) -> Result<ActiveGoal<A>, RosError> {
        let now = Time::now();
        {
            let mut goals = self.core.lock_goals();
            if goals.contains_key(&req.id.0) {
                return Err(self.err(format!("accept {}: the goal id is already in use", req.id)));
            }
            goals.insert(
                req.id.0,
                GoalEntry {
                    status: GoalStatusEnum::Accepted,
                    accepted: now,
                    result: None,
                    ended: None,
                    waiting: Vec::new(),
                },
            );
        }
        self.core
            .dds
            .send_goal_response(
                req.request,
                SendGoalResponse {
                    accepted: true,
                    stamp: now,
                },
            )
            .map_err(|e| self.err(format!("accept {}: {e:?}", req.id)))?;
        self.core.publish_statuses();
        self.core.set_status(req.id.0, GoalStatusEnum::Executing);
        self.core.publish_statuses();
        Ok(ActiveGoal {
            id: req.id,
            _action: PhantomData,
        })
    }

    /// Rejects a goal.
    pub async fn reject(&self, req: GoalRequest<A>) -> Result<(), RosError> {
        self.core
            .dds
            .send_goal_response(
                req.request,
                SendGoalResponse {
                    accepted: false,
                    stamp: Time::now(),
                },
            )
            .map_err(|e| self.err(format!("reject {}: {e:?}", req.id)))
    }

    /// Answers a cancel request: the goals in `accept` start canceling (finish them with
    /// [`GoalOutcome::Canceled`]); if none, the request is rejected.
    pub async fn answer_cancel(&self, req: &CancelRequest, accept: &[GoalId]) -> Result<(), RosError> {
        let canceling: Vec<GoalInfo> = {
            let mut goals = self.core.lock_goals();
            accept
                .iter()
                .filter(|g| req.goals.contains(g))
                .filter_map(|g| {
                    let entry = goals.get_mut(&g.0).filter(|e| e.cancelable())?;
                    entry.status = GoalStatusEnum::Canceling;
                    Some(GoalInfo {
                        goal_id: g.0,
                        stamp: entry.accepted,
                    })
                })
                .collect()
        };
        let code = if canceling.is_empty() {
            cancel_code::REJECTED
        } else {
            cancel_code::NONE
        };
        if !canceling.is_empty() {
            self.core.publish_statuses();
        }
        self.core
            .send_cancel(req.request, code, canceling)
            .map_err(|e| self.err(format!("cancel response: {e}")))
    }

    /// Publishes feedback for an executing goal.
    pub async fn publish_feedback(&self, goal: &ActiveGoal<A>, feedback: A::Feedback) -> Result<(), RosError> {
        let active = self
            .core
            .lock_goals()
            .get(&goal.id.0)
            .is_some_and(|e| e.result.is_none());
        if !active {
            return Err(self.err(format!("feedback for {}: the goal is not active", goal.id)));
        }
        self.core
            .dds
            .send_feedback(goal.id.0, feedback)
            .map_err(|e| self.err(format!("feedback for {}: {e:?}", goal.id)))
    }

    /// Ends a goal: publishes its final status, answers every `get_result` request waiting for
    /// it and keeps the result for `result_timeout`. Resolves at once.
    pub async fn finish(&self, goal: ActiveGoal<A>, outcome: GoalOutcome, result: A::Result) -> Result<(), RosError> {
        let status = match outcome {
            GoalOutcome::Succeeded => GoalStatusEnum::Succeeded,
            GoalOutcome::Aborted => GoalStatusEnum::Aborted,
            GoalOutcome::Canceled => GoalStatusEnum::Canceled,
        };
        let waiting = {
            let mut goals = self.core.lock_goals();
            let entry = goals
                .get_mut(&goal.id.0)
                .filter(|e| e.result.is_none())
                .ok_or_else(|| self.err(format!("result for {}: the goal is not active", goal.id)))?;
            entry.status = status;
            entry.result = Some(result.clone());
            entry.ended = Some(Instant::now());
            std::mem::take(&mut entry.waiting)
        };
        self.core.publish_statuses();
        let mut failed = Vec::new();
        for request in waiting {
            if let Err(e) = self.core.send_result(request, status, result.clone()) {
                failed.push(e);
            }
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(self.err(format!("result for {}: {}", goal.id, failed.join("; ")))),
        }
    }
}

impl<A: RosAction> Drop for RosActionServer<A> {
    fn drop(&mut self) {
        self.core.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            tracing::warn!("action server {}: cannot stop its I/O thread: {e}", self.core.name);
        }
    }
}

impl<A: RosAction> Core<A> {
    fn err(&self, reason: String) -> RosError {
        RosError::Action {
            action: self.name.clone(),
            reason,
        }
    }

    /// The goal table (a poisoned lock only means another thread panicked mid-update; the
    /// table itself stays consistent, so keep serving).
    fn lock_goals(&self) -> std::sync::MutexGuard<'_, BTreeMap<ActionGoalId, GoalEntry<A::Result>>> {
        self.goals.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_status(&self, id: ActionGoalId, status: GoalStatusEnum) {
        if let Some(e) = self.lock_goals().get_mut(&id) {
            e.status = status;
        }
    }

    fn publish_statuses(&self) {
        let status_list = self
            .lock_goals()
            .iter()
            .map(|(id, e)| ActionGoalStatus {
                goal_info: GoalInfo {
                    goal_id: *id,
                    stamp: e.accepted,
                },
                status: e.status,
            })
            .collect();
        if let Err(e) = self.dds.send_goal_statuses(GoalStatusArray { status_list }) {
            tracing::warn!("action server {}: status: {e:?}", self.name);
        }
    }

    fn send_result(&self, request: RmwRequestId, status: GoalStatusEnum, result: A::Result) -> Result<(), String> {
        self.dds
            .send_result(request, GetResultResponse { status, result })
            .map_err(|e| format!("{e:?}"))
    }

    fn send_cancel(
        &self,
        request: RmwRequestId,
        return_code: ros2_client::action_msgs::CancelGoalResponseEnum,
        goals_canceling: Vec<GoalInfo>,
    ) -> Result<(), String> {
        self.dds
            .send_cancel_response(
                request,
                CancelGoalResponse {
                    return_code,
                    goals_canceling,
                },
            )
            .map_err(|e| format!("{e:?}"))
    }

    /// The I/O thread: waits for requests, serves `get_result` and trivial cancels itself,
    /// hands goals and other cancels to the application, and expires old results.
    fn run(self: Arc<Self>, mut poll: mio1::Poll, events: mpsc::UnboundedSender<ServerEvent<A>>) {
        let mut ready = mio1::Events::with_capacity(8);
        while !self.stop.load(Ordering::SeqCst) {
            if let Err(e) = poll.poll(&mut ready, Some(IO_TICK)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("action server {}: poll failed: {e}", self.name);
                    break;
                }
            }
            // Drain every queue on each wake-up (and each tick): readiness may be coalesced.
            if !self.serve_goals(&events) || !self.serve_cancels(&events) {
                break; // the application dropped its side
            }
            self.serve_results();
            self.expire_results();
        }
    }

    fn serve_goals(&self, events: &mpsc::UnboundedSender<ServerEvent<A>>) -> bool {
        loop {
            match self.dds.receive_goal() {
                Ok(Some((request, SendGoalRequest { goal_id, goal }))) => {
                    if self.lock_goals().contains_key(&goal_id) {
                        tracing::warn!(
                            "action server {}: ignoring a goal with a reused id {goal_id:?}",
                            self.name
                        );
                        continue;
                    }
                    let req = GoalRequest {
                        request,
                        id: GoalId(goal_id),
                        goal,
                    };
                    if events.unbounded_send(ServerEvent::Goal(req)).is_err() {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(e) => tracing::warn!("action server {}: bad goal request: {e:?}", self.name),
            }
        }
    }

    fn serve_cancels(&self, events: &mpsc::UnboundedSender<ServerEvent<A>>) -> bool {
        loop {
            let (request, raw) = match self.dds.receive_cancel_request() {
                Ok(Some(r)) => r,
                Ok(None) => return true,
                Err(e) => {
                    tracing::warn!("action server {}: bad cancel request: {e:?}", self.name);
                    continue;
                }
            };
            let info = match transcode::<_, CancelGoalRequestMsg>(&raw) {
                Ok(m) => m.goal_info,
                Err(e) => {
                    tracing::warn!("action server {}: unreadable cancel request: {e}", self.name);
                    continue;
                }
            };
            match self.cancel_candidates(&info) {
                Ok(goals) => {
                    let req = CancelRequest {
                        request,
                        goals: goals.into_iter().map(GoalId).collect(),
                    };
                    if events.unbounded_send(ServerEvent::Cancel(req)).is_err() {
                        return false;
                    }
                }
                Err(code) => {
                    if let Err(e) = self.send_cancel(request, code, Vec::new()) {
                        tracing::warn!("action server {}: cancel response: {e}", self.name);
                    }
                }
            }
        }
    }

    /// The active goals a cancel request names, following rcl_action's rules: a goal id with a
    /// zero stamp names one goal (unknown or ended: answered at once with an error code), a
    /// zero id and zero stamp all goals, a stamp all goals accepted at or before it (plus the
    /// named one). `Err` carries the immediate answer when there is nothing to ask the
    /// application about.
    fn cancel_candidates(
        &self,
        info: &GoalInfo,
    ) -> Result<Vec<ActionGoalId>, ros2_client::action_msgs::CancelGoalResponseEnum> {
        let goals = self.lock_goals();
        let zero_id = info.goal_id == ActionGoalId::ZERO;
        let zero_stamp = info.stamp == Time::ZERO;
        if !zero_id && zero_stamp {
            return match goals.get(&info.goal_id) {
                None => Err(cancel_code::UNKNOWN_GOAL),
                Some(e) if !e.cancelable() => Err(cancel_code::GOAL_TERMINATED),
                Some(_) => Ok(vec![info.goal_id]),
            };
        }
        let limit = stamp_nanos(&info.stamp);
        let chosen: Vec<_> = goals
            .iter()
            .filter(|(_, e)| e.cancelable())
            .filter(|(id, e)| (zero_id && zero_stamp) || **id == info.goal_id || stamp_nanos(&e.accepted) <= limit)
            .map(|(id, _)| *id)
            .collect();
        if chosen.is_empty() {
            Err(cancel_code::NONE)
        } else {
            Ok(chosen)
        }
    }

    fn serve_results(&self) {
        loop {
            let (request, goal_id) = match self.dds.receive_result_request() {
                Ok(Some((request, GetResultRequest { goal_id }))) => (request, goal_id),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("action server {}: bad result request: {e:?}", self.name);
                    continue;
                }
            };
            let answer = {
                let mut goals = self.lock_goals();
                match goals.get_mut(&goal_id) {
                    None => Some((GoalStatusEnum::Unknown, A::Result::default())),
                    Some(GoalEntry {
                        result: Some(result),
                        status,
                        ..
                    }) => Some((*status, result.clone())),
                    Some(active) => {
                        active.waiting.push(request);
                        None
                    }
                }
            };
            if let Some((status, result)) = answer {
                if let Err(e) = self.send_result(request, status, result) {
                    tracing::warn!("action server {}: result response: {e}", self.name);
                }
            }
        }
    }

    fn expire_results(&self) {
        let expired = {
            let mut goals = self.lock_goals();
            let before = goals.len();
            goals.retain(|_, e| e.ended.is_none_or(|t| t.elapsed() < self.result_timeout));
            before != goals.len()
        };
        if expired {
            self.publish_statuses();
        }
    }
}

fn stamp_nanos(t: &Time) -> i64 {
    t.to_nanos()
}

/// Re-reads a message as another type with the same CDR layout.
fn transcode<T: Serialize, U: serde::de::DeserializeOwned>(value: &T) -> Result<U, String> {
    let bytes = cdr_encoding::to_vec::<T, LittleEndian>(value).map_err(|e| e.to_string())?;
    cdr_encoding::from_bytes::<U, LittleEndian>(&bytes)
        .map(|(v, _)| v)
        .map_err(|e| e.to_string())
}

/// Whether an action server is on the graph: the request readers and reply writers of its goal,
/// cancel and result services have been discovered (rclcpp's `action_server_is_ready` asks the same of
/// the matched endpoints). A request written before that is lost: DDS delivers a volatile sample
/// only to the readers known when it is written.
#[derive(Clone)]
pub struct ActionServerProbe {
    participant: ros2_client::dds::rustdds::DomainParticipant,
    /// DDS topic names of the server's request readers.
    request_topics: [String; 3],
    /// DDS topic names of the server's reply writers.
    reply_topics: [String; 3],
}

impl ActionServerProbe {
    fn new(participant: ros2_client::dds::rustdds::DomainParticipant, action: &str) -> Self {
        let topic = |prefix: &str, service: &str, suffix: &str| format!("{prefix}{action}/_action/{service}{suffix}");
        Self {
            participant,
            request_topics: ["send_goal", "cancel_goal", "get_result"].map(|s| topic("rq", s, "Request")),
            reply_topics: ["send_goal", "cancel_goal", "get_result"].map(|s| topic("rr", s, "Reply")),
        }
    }

    /// True when every endpoint of the goal, cancel and result services has been discovered.
    pub fn is_ready(&self) -> bool {
        let readers = self.participant.discovered_readers();
        let writers = self.participant.discovered_writers();
        self.request_topics
            .iter()
            .all(|t| readers.iter().any(|r| &r.subscription_topic_data.topic_name == t))
            && self
                .reply_topics
                .iter()
                .all(|t| writers.iter().any(|w| w.publication_topic_data.topic_name() == t))
    }
}

/// One `get_result` or `cancel_goal` request sent without waiting (see
/// [`RosActionClient::request_result`]): its answer is matched to it by this token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestToken(RmwRequestId);

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

    /// The resolved action name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Resolves once the server's goal, cancel and result services are all matched (unbounded:
    /// wrap it in a timeout). Each service is discovered on its own, so a result request sent
    /// when only the goal service was matched could be lost.
    pub async fn wait_for_server(&self, node: &RosNode) {
        futures::join!(
            self.inner.goal_client().wait_for_service(node.inner()),
            self.inner.cancel_client().wait_for_service(node.inner()),
            self.inner.result_client().wait_for_service(node.inner()),
        );
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

    /// A probe telling whether this client's server is on the graph (`context` must be the one
    /// this client's node was created in).
    pub fn server_probe(&self, context: &super::transport::RosContext) -> ActionServerProbe {
        ActionServerProbe::new(context.participant(), &self.name)
    }

    /// Sends a goal and returns at once with its request's token and the goal's id; the
    /// server's answer comes from [`Self::take_goal_answer`].
    pub fn request_goal(&self, goal: A::Goal) -> Result<(RequestToken, GoalId), RosError> {
        self.inner
            .send_goal(goal)
            .map(|(req, id)| (RequestToken(req), GoalId(id)))
            .map_err(|e| self.err(format!("send goal: {e:?}")))
    }

    /// The next answer to a goal sent with [`Self::request_goal`]: its token and whether the
    /// server accepted the goal.
    pub fn take_goal_answer(&self) -> Result<Option<(RequestToken, bool)>, RosError> {
        match self.inner.goal_client().receive_response() {
            Ok(Some((req, r))) => Ok(Some((RequestToken(req), r.accepted))),
            Ok(None) => Ok(None),
            Err(e) => Err(self.err(format!("reading goal answers: {e:?}"))),
        }
    }

    /// Sends a `get_result` request and returns at once. Answers come from
    /// [`Self::take_result`]; unlike [`Self::result`], any number may be outstanding, since one
    /// reader takes every answer and none is dropped as another request's.
    pub fn request_result(&self, id: GoalId) -> Result<RequestToken, RosError> {
        self.inner
            .request_result(id.0)
            .map(RequestToken)
            .map_err(|e| self.err(format!("request result of {id}: {e:?}")))
    }

    /// The next `get_result` answer that has arrived, with the token of its request.
    pub fn take_result(&self) -> Result<Option<(RequestToken, GoalStatus, A::Result)>, RosError> {
        match self.inner.result_client().receive_response() {
            Ok(Some((req, r))) => Ok(Some((RequestToken(req), r.status.into(), r.result))),
            Ok(None) => Ok(None),
            Err(e) => Err(self.err(format!("reading results: {e:?}"))),
        }
    }

    /// Sends a `cancel_goal` request for `id` and returns at once (answers from
    /// [`Self::take_cancel`]).
    pub fn request_cancel(&self, id: GoalId) -> Result<RequestToken, RosError> {
        self.inner
            .cancel_goal(id.0)
            .map(RequestToken)
            .map_err(|e| self.err(format!("cancel {id}: {e:?}")))
    }

    /// The next `cancel_goal` answer that has arrived: its request's token and the goals the
    /// server started canceling.
    pub fn take_cancel(&self) -> Result<Option<(RequestToken, Vec<GoalId>)>, RosError> {
        match self.inner.cancel_client().receive_response() {
            Ok(Some((req, r))) => Ok(Some((
                RequestToken(req),
                r.goals_canceling.iter().map(|g| GoalId(g.goal_id)).collect(),
            ))),
            Ok(None) => Ok(None),
            Err(e) => Err(self.err(format!("reading cancel answers: {e:?}"))),
        }
    }

    /// Feedback of one goal as a stream (pin it with `futures::pin_mut!`).
    pub fn feedback(&self, id: GoalId) -> impl Stream<Item = Result<A::Feedback, RosError>> + '_ {
        self.inner
            .feedback_stream(id.0)
            .map(move |r| r.map_err(|e| self.err(format!("feedback of {id}: {e}"))))
    }
}
