//! ROS plumbing shared by both nodes: the action-server bridge thread, policy loading on the
//! worker thread, shutdown signals and small message helpers.
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::remote::codec::ServerMetadata;
use crate::remote::policy::RemoteModel;
use crate::remote::RemotePolicy;
use crate::ros::action::{CancelRequest, GoalId, GoalOutcome, GoalRequest, RosActionServer, ServerEvent};
use crate::ros::msgs::univla_msgs::{Execute, ExecuteFeedback, ExecuteGoal, ExecuteResult};
use crate::runtime::postprocess::{PostProcessor, Preset};
use crate::runtime::session::{default_temporal_size, Policy, Session};
use crate::runtime::stats::{DatasetStatistics, ZScoreStats};

use crate::node::config::PolicyConfig;
use crate::node::error::NodeError;
use crate::node::wiring::worker::{InferenceWorker, PolicyBackend};

/// `std_msgs/Float64` (gripper commands).
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Float64 {
    pub data: f64,
}
crate::ros::msgs::ros_message!(Float64, "std_msgs", "Float64");

/// What the loaded model looks like to the node.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub action_dim: usize,
    pub window: usize,
    pub needs_proprio: bool,
    pub preset: Preset,
    pub post: PostProcessor,
    pub temporal_size: usize,
}

/// Loads the policy once, on the inference thread, with a progress log; with `policy_url`,
/// connects to the policy server instead.
pub fn load_policy(cfg: &PolicyConfig) -> Result<(InferenceWorker, ModelInfo), NodeError> {
    if cfg.remote.is_some() {
        return load_remote_policy(cfg);
    }
    load_policy_with(cfg, |session| session)
}

/// Connects to the policy server of `cfg.remote` (waiting up to `policy_startup_wait_s` for it)
/// on the inference thread and builds the node's view of the model from the server's metadata
/// and the local post-processing settings. No checkpoint and no weights are loaded.
pub fn load_remote_policy(cfg: &PolicyConfig) -> Result<(InferenceWorker, ModelInfo), NodeError> {
    let remote = cfg
        .remote
        .clone()
        .ok_or_else(|| NodeError::config("'policy_url' is not set"))?;
    let cfg = cfg.clone();
    tracing::info!("connecting to the policy server at {}", remote.endpoint.url());
    let start = Instant::now();
    let (worker, info) = InferenceWorker::spawn_with(move || {
        let conn = crate::remote::policy::connect_at_startup(&remote).map_err(|e| e.to_string())?;
        let meta = conn.metadata().clone();
        let info = remote_model_info(&cfg, &meta)?;
        tracing::info!(
            "policy server {} {} at {}: {:?} head, {} values × {} steps",
            meta.server.as_deref().unwrap_or("(unnamed)"),
            meta.version.as_deref().unwrap_or(""),
            remote.endpoint.url(),
            info.preset,
            info.action_dim,
            info.window
        );
        let model = RemoteModel {
            preset: info.preset,
            post: info.post.clone(),
            action_dim: info.action_dim,
            window: info.window,
        };
        Ok((RemotePolicy::new(remote, conn, model), info))
    })?;
    tracing::info!("policy server ready in {:.1} s", start.elapsed().as_secs_f64());
    Ok((worker, info))
}

/// The model as the server announced it, with the node's own post-processing: the `preset`
/// parameter or the server's `embodiment`, `realworld_stats`, and for LIBERO/Bridge the bounds
/// of `dataset_statistics` (`unnorm_key`).
pub fn remote_model_info(cfg: &PolicyConfig, meta: &ServerMetadata) -> Result<ModelInfo, String> {
    let served = match meta.embodiment.as_deref() {
        Some(e) => Some(Preset::from_name(e).ok_or_else(|| {
            format!(
                "the policy server's embodiment '{e}' is unknown; expected libero, bridge, calvin, real_world or r2r"
            )
        })?),
        None => None,
    };
    let preset = match (cfg.options.preset, served) {
        // Bridge and CALVIN run the LIBERO head with other conventions.
        (Some(p), Some(s))
            if p != s
                && !([p, s]
                    .iter()
                    .all(|x| matches!(x, Preset::Libero | Preset::Bridge | Preset::Calvin))) =>
        {
            return Err(format!("'preset' is {p:?} but the policy server serves a {s:?} head"))
        }
        (Some(p), _) => p,
        (None, Some(s)) => s,
        (None, None) => {
            return Err("the policy server does not name its embodiment: set the 'preset' parameter".into())
        }
    };
    let action_dim = meta
        .action_dim
        .filter(|&d| d > 0)
        .ok_or("the policy server's metadata has no 'action_dim'")?;
    let window = meta
        .chunk
        .filter(|&c| c > 0)
        .ok_or("the policy server's metadata has no 'chunk' (steps per chunk)")?;
    let bounds = match preset {
        Preset::Libero | Preset::Bridge => {
            let path = cfg.dataset_statistics.as_deref().ok_or_else(|| {
                format!(
                    "a {preset:?} head needs its q01/q99 action bounds on this computer: \
                     set 'dataset_statistics' (the checkpoint's dataset_statistics.json) and 'unnorm_key'"
                )
            })?;
            let stats = DatasetStatistics::from_file(path).map_err(|e| format!("'dataset_statistics': {e}"))?;
            Some(
                stats
                    .action_bounds(cfg.options.unnorm_key.as_deref())
                    .map_err(|e| format!("'dataset_statistics': {e}"))?,
            )
        }
        _ => None,
    };
    let zscore = cfg
        .options
        .realworld_stats
        .as_deref()
        .map(ZScoreStats::from_file)
        .transpose()
        .map_err(|e| format!("'realworld_stats': {e}"))?;
    let post = PostProcessor::new(preset, bounds, zscore)
        .and_then(|p| p.with_action_dim(action_dim))
        .map_err(|e| e.to_string())?;
    let temporal_size = meta
        .temporal_size
        .unwrap_or_else(|| default_temporal_size(preset, window));
    if temporal_size == 0 || temporal_size > window {
        return Err(format!(
            "the policy server's temporal_size {temporal_size} must be between 1 and its chunk length {window}"
        ));
    }
    Ok(ModelInfo {
        action_dim,
        window,
        needs_proprio: meta.needs_proprio.unwrap_or(preset == Preset::RealWorld),
        preset,
        post,
        temporal_size,
    })
}

/// [`load_policy`], with the session wrapped by `wrap` on the inference thread (fault injection
/// in tests: a wrapper that fails, panics or stalls on cue).
pub fn load_policy_with<B: PolicyBackend>(
    cfg: &PolicyConfig,
    wrap: impl FnOnce(Session) -> B + Send + 'static,
) -> Result<(InferenceWorker, ModelInfo), NodeError> {
    let opts = cfg.options.clone();
    let threads = cfg.threads;
    let nice = cfg.inference_nice;
    tracing::info!(
        "loading checkpoint {} with head {} on {:?}",
        opts.checkpoint.display(),
        opts.decoder.display(),
        opts.device
    );
    let start = Instant::now();
    let (worker, info) = InferenceWorker::spawn_with(move || {
        if nice > 0 {
            if let Err(e) = crate::node::priority::lower_current_thread(nice) {
                tracing::warn!("inference thread priority: {e}");
            }
        }
        if threads > 0 {
            tch::set_num_threads(threads as i32);
        }
        let policy = Policy::load(opts).map_err(|e| e.to_string())?;
        let info = ModelInfo {
            action_dim: policy.head().action_dim() as usize,
            window: policy.head().window() as usize,
            needs_proprio: policy.head().needs_proprio(),
            preset: policy.preset(),
            post: policy.post_processor().clone(),
            temporal_size: policy.temporal_size(),
        };
        let session = Session::new(policy).map_err(|e| e.to_string())?;
        Ok((wrap(session), info))
    })?;
    tracing::info!(
        "policy loaded in {:.1} s: {:?} head, {} values × {} steps",
        start.elapsed().as_secs_f64(),
        info.preset,
        info.action_dim,
        info.window
    );
    Ok((worker, info))
}

/// Sets the returned flag on SIGINT or SIGTERM (what `ros2 launch` sends on Ctrl-C).
pub fn shutdown_flag() -> Result<Arc<AtomicBool>, NodeError> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&flag);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NodeError::Thread(format!("signal runtime: {e}")))?;
    std::thread::Builder::new()
        .name("univla-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                let term = async {
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                        Ok(mut s) => {
                            s.recv().await;
                        }
                        Err(_) => futures::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term => {}
                }
                f.store(true, Ordering::SeqCst);
            })
        })
        .map_err(|e| NodeError::Thread(format!("univla-signals: {e}")))?;
    Ok(flag)
}

/// An action event for the control loop.
#[derive(Debug)]
pub enum ActionEvent {
    Goal {
        id: GoalId,
        goal: ExecuteGoal,
    },
    /// `key` identifies the request for [`ActionBridge::answer_cancel`].
    Cancel {
        key: u64,
        goals: Vec<GoalId>,
    },
}

enum Command {
    Accept(GoalId),
    Reject(GoalId),
    Feedback(GoalId, ExecuteFeedback),
    Finish(GoalId, GoalOutcome, ExecuteResult),
    AnswerCancel(u64, Vec<GoalId>),
}

/// Receives the server's events; returns false when the request could not be handed over.
pub type EventSink = Box<dyn Fn(ActionEvent) -> bool + Send>;

/// Runs the `Execute` action server on its own thread; the control loop talks to it with
/// non-blocking calls and receives its events through the sink.
pub struct ActionBridge {
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
}

impl ActionBridge {
    pub fn start(server: RosActionServer<Execute>, sink: EventSink) -> Result<Self, NodeError> {
        let (commands, cmd_rx) = tokio::sync::mpsc::unbounded_channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| NodeError::Thread(format!("action runtime: {e}")))?;
        std::thread::Builder::new()
            .name("univla-action".into())
            .spawn(move || rt.block_on(serve(Arc::new(server), sink, cmd_rx)))
            .map_err(|e| NodeError::Thread(format!("univla-action: {e}")))?;
        Ok(Self { commands })
    }

    fn send(&self, c: Command) {
        if self.commands.send(c).is_err() {
            tracing::error!("action server thread has stopped");
        }
    }

    pub fn accept(&self, id: GoalId) {
        self.send(Command::Accept(id));
    }

    pub fn reject(&self, id: GoalId) {
        self.send(Command::Reject(id));
    }

    pub fn feedback(&self, id: GoalId, fb: ExecuteFeedback) {
        self.send(Command::Feedback(id, fb));
    }

    pub fn finish(&self, id: GoalId, outcome: GoalOutcome, result: ExecuteResult) {
        self.send(Command::Finish(id, outcome, result));
    }

    pub fn answer_cancel(&self, key: u64, accept: Vec<GoalId>) {
        self.send(Command::AnswerCancel(key, accept));
    }
}

type Event = Result<ServerEvent<Execute>, crate::ros::RosError>;

fn next_event(server: &Arc<RosActionServer<Execute>>) -> Pin<Box<dyn Future<Output = Event>>> {
    let s = Arc::clone(server);
    Box::pin(async move { s.next_event().await })
}

async fn serve(
    server: Arc<RosActionServer<Execute>>,
    events: EventSink,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
) {
    let mut pending: HashMap<GoalId, GoalRequest<Execute>> = HashMap::new();
    let mut active = HashMap::new();
    let mut cancels: HashMap<u64, CancelRequest> = HashMap::new();
    let mut next_key = 0u64;
    let mut event_fut = next_event(&server);
    loop {
        tokio::select! {
            ev = &mut event_fut => {
                event_fut = next_event(&server);
                let msg = match ev {
                    Ok(ServerEvent::Goal(req)) => {
                        let msg = ActionEvent::Goal { id: req.id, goal: req.goal.clone() };
                        pending.insert(req.id, req);
                        msg
                    }
                    Ok(ServerEvent::Cancel(c)) => {
                        next_key += 1;
                        let msg = ActionEvent::Cancel { key: next_key, goals: c.goals.clone() };
                        cancels.insert(next_key, c);
                        msg
                    }
                    Err(e) => {
                        tracing::warn!("{e}");
                        continue;
                    }
                };
                let goal = match &msg {
                    ActionEvent::Goal { id, .. } => Some(*id),
                    ActionEvent::Cancel { .. } => None,
                };
                if !events(msg) {
                    // The control loop took no request for seconds: refuse rather than leave the
                    // client waiting for an answer that never comes.
                    tracing::error!("the control loop is not taking action requests; refusing one");
                    if let Some(req) = goal.and_then(|id| pending.remove(&id)) {
                        if let Err(e) = server.reject(req).await {
                            tracing::warn!("{e}");
                        }
                    }
                }
            }
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                let r = match cmd {
                    Command::Accept(id) => match pending.remove(&id) {
                        Some(req) => server.accept(req).await.map(|g| { active.insert(id, g); }),
                        None => Ok(()),
                    },
                    Command::Reject(id) => match pending.remove(&id) {
                        Some(req) => server.reject(req).await,
                        None => Ok(()),
                    },
                    Command::Feedback(id, fb) => match active.get(&id) {
                        Some(g) => server.publish_feedback(g, fb).await,
                        None => Ok(()),
                    },
                    // The server keeps the result for its result timeout and answers every
                    // `get_result`, early or late, itself.
                    Command::Finish(id, outcome, result) => match active.remove(&id) {
                        Some(g) => server.finish(g, outcome, result).await,
                        None => Ok(()),
                    },
                    Command::AnswerCancel(key, ids) => match cancels.remove(&key) {
                        Some(c) => server.answer_cancel(&c, &ids).await,
                        None => Ok(()),
                    },
                };
                if let Err(e) = r {
                    tracing::warn!("{e}");
                }
            }
        }
    }
}

/// The result message for an ended goal.
pub fn result_msg(outcome: u8, steps: u32, reason: &str) -> ExecuteResult {
    ExecuteResult {
        outcome,
        steps,
        reason: reason.to_string(),
    }
}

/// Feedback message.
pub fn feedback_msg(step: u32, latent_ids: &[i64], latency_ms: f32, commanded: Vec<f64>) -> ExecuteFeedback {
    ExecuteFeedback {
        step,
        latent_tokens: latent_ids.iter().map(|&i| i32::try_from(i).unwrap_or(-1)).collect(),
        inference_latency_ms: latency_ms,
        commanded_action: commanded,
    }
}

/// The goal's time limit, if any.
pub fn time_limit(goal: &ExecuteGoal) -> Option<Duration> {
    (!goal.time_limit.is_zero()).then(|| goal.time_limit.to_std()).flatten()
}

/// `<ACT_i>` text of latent ids (`<ACT_i>` = 32001 + i).
pub fn latent_text(ids: &[i64]) -> String {
    ids.iter()
        .map(|&i| format!("<ACT_{}>", i - crate::model::prompt::ACT_TOKEN_BASE))
        .collect()
}

/// A node's entry point: `--ros-args` parsing, the command-line parser `C` (for `--help` and
/// `--version`) on the rest, logging, SIGINT/SIGTERM handling, then `run`.
pub fn node_main<C: clap::Parser>(
    run: fn(&crate::ros::RosArgs, Arc<AtomicBool>) -> Result<(), NodeError>,
) -> Result<(), NodeError> {
    let (ros_args, rest) = crate::ros::RosArgs::from_env()?;
    C::parse_from(rest);
    crate::ros::logging::init_tracing(&ros_args);
    run(&ros_args, shutdown_flag()?)
}
