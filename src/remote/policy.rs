//! [`RemotePolicy`]: the node's policy backend when the model runs on a policy server. Each
//! inference sends the camera image, the proprio and the instruction and waits, bounded by
//! `policy_timeout_s`, for the server's chunk; every failure is an error for the node's fault
//! handling (which holds the robot), never a panic. A dropped connection is reopened on the next
//! inference, after a bounded backoff; the server then starts a new episode.
use std::time::{Duration, Instant};

use crate::node::wiring::worker::{Inferred, PolicyBackend};
use crate::runtime::postprocess::{Action, BridgeAction, NavAction, PostProcessor, Preset};
use crate::runtime::preprocess::RgbImage;

use super::client::{Connection, Endpoint};
use super::codec::{Request, Response, ServerMetadata};
use super::error::RemoteError;

/// First wait before reconnecting after a failed attempt; doubled per failure up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How to reach the server.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteSettings {
    pub endpoint: Endpoint,
    /// Longest wait for one answer (and for one connection attempt).
    pub timeout: Duration,
    /// How long start-up keeps trying to reach the server (zero: one attempt).
    pub startup_wait: Duration,
}

/// What the node expects of every answer: the model the server announced at start-up.
#[derive(Clone, Debug)]
pub struct RemoteModel {
    pub preset: Preset,
    /// The node's post-processing (turns the server's R2R probabilities into a decision).
    pub post: PostProcessor,
    pub action_dim: usize,
    /// Rows per chunk.
    pub window: usize,
}

/// Connects at start-up, retrying with backoff for up to `startup_wait` (a server that is still
/// loading its model accepts no connection yet).
pub fn connect_at_startup(s: &RemoteSettings) -> Result<Connection, RemoteError> {
    let start = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        match Connection::open(&s.endpoint, s.timeout) {
            Ok(c) => return Ok(c),
            Err(e @ (RemoteError::Connect { .. } | RemoteError::Timeout(_) | RemoteError::Disconnected(_)))
                if start.elapsed() + backoff < s.startup_wait =>
            {
                tracing::info!("waiting for the policy server: {e}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The server's `action` vector as the node's [`Action`]. R2R: one value, the Habitat action id
/// (0 stop, 1 forward, 2 left, 3 right), or the 4 ensembled probabilities (their argmax, as the
/// local post-processing takes it). Bridge: world vector, axis-angle, gripper and optionally
/// terminate. Other arms: the vector itself.
pub fn server_action(model: &RemoteModel, v: &[f64]) -> Result<Action, RemoteError> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err(RemoteError::Mismatch("'action' holds NaN or Inf".into()));
    }
    match model.preset {
        Preset::R2r => match v {
            [id] => {
                let n = id.round();
                NavAction::from_id(n as usize)
                    .filter(|_| (n - id).abs() < 1e-6 && n >= 0.0)
                    .map(Action::Nav)
                    .ok_or_else(|| RemoteError::Mismatch(format!("'action' {id} is not a navigation action id")))
            }
            _ => model
                .post
                .apply(v)
                .map_err(|e| RemoteError::Mismatch(format!("'action': {e}"))),
        },
        Preset::Bridge => match v {
            [x, y, z, r0, r1, r2, g, rest @ ..] if rest.len() <= 1 => Ok(Action::Bridge(BridgeAction {
                world_vector: [*x, *y, *z],
                rot_axangle: [*r0, *r1, *r2],
                gripper: *g,
                terminate: rest.first().copied().unwrap_or(0.0),
            })),
            _ => Err(RemoteError::Mismatch(format!(
                "'action' has {} values; a Bridge action has 7 or 8",
                v.len()
            ))),
        },
        Preset::Libero | Preset::Calvin | Preset::RealWorld => Ok(Action::Arm(v.to_vec())),
    }
}

/// The policy backend over a server connection.
pub struct RemotePolicy {
    settings: RemoteSettings,
    model: RemoteModel,
    /// What the server announced first; a reconnect must find the same model.
    announced: ServerMetadata,
    conn: Option<Connection>,
    prompt: String,
    /// The next request starts a new episode (after `reset` and after a reconnect).
    reset_next: bool,
    /// Earliest next connection attempt and the wait after the next failure.
    next_attempt: Option<Instant>,
    backoff: Duration,
    reconnects: u64,
}

impl RemotePolicy {
    /// A backend over the connection made at start-up.
    pub fn new(settings: RemoteSettings, conn: Connection, model: RemoteModel) -> Self {
        Self {
            settings,
            model,
            announced: conn.metadata().clone(),
            conn: Some(conn),
            prompt: String::new(),
            reset_next: true,
            next_attempt: None,
            backoff: FIRST_BACKOFF,
            reconnects: 0,
        }
    }

    /// Connections reopened since start-up.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// True while a connection is open.
    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The open connection, reopened if needed: at most one attempt per call, after the backoff
    /// of earlier failures (at most [`MAX_BACKOFF`]).
    fn connection(&mut self) -> Result<&mut Connection, RemoteError> {
        if self.conn.is_none() {
            if let Some(wait) = self.next_attempt.and_then(|t| t.checked_duration_since(Instant::now())) {
                std::thread::sleep(wait.min(MAX_BACKOFF));
            }
            match Connection::open(&self.settings.endpoint, self.settings.timeout) {
                Ok(c) => {
                    let m = c.metadata();
                    let a = &self.announced;
                    if (m.embodiment.as_deref(), m.action_dim, m.chunk)
                        != (a.embodiment.as_deref(), a.action_dim, a.chunk)
                    {
                        self.next_attempt = Some(Instant::now() + MAX_BACKOFF);
                        return Err(RemoteError::Mismatch(format!(
                            "after reconnecting, the server serves another model ({:?}, {:?} values × {:?} steps; \
                             at start-up {:?}, {:?} × {:?}): restart the node",
                            m.embodiment, m.action_dim, m.chunk, a.embodiment, a.action_dim, a.chunk
                        )));
                    }
                    tracing::info!("reconnected to the policy server at {}", self.settings.endpoint.url());
                    self.reconnects += 1;
                    self.next_attempt = None;
                    self.backoff = FIRST_BACKOFF;
                    // The server keeps the episode per connection: this one starts afresh.
                    self.reset_next = true;
                    self.conn = Some(c);
                }
                Err(e) => {
                    self.next_attempt = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    return Err(e);
                }
            }
        }
        self.conn
            .as_mut()
            .ok_or_else(|| RemoteError::Disconnected("no connection".into()))
    }

    /// One round trip; see [`PolicyBackend::infer`].
    pub fn try_infer(&mut self, image: &RgbImage, proprio: Option<&[f64]>) -> Result<Inferred, RemoteError> {
        // Connect first: a new connection starts a new episode, which the request must say.
        self.connection()?;
        let request = Request {
            image,
            state: proprio,
            prompt: &self.prompt,
            reset: self.reset_next,
        }
        .encode();
        let timeout = self.settings.timeout;
        let bytes = match self.connection()?.call(request, timeout) {
            Ok(b) => b,
            // The server answered with an error and keeps the connection.
            Err(e @ RemoteError::Server(_)) => return Err(e),
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        };
        let r = Response::decode(&bytes)?;
        let m = &self.model;
        if r.actions.len() != m.window || r.actions.iter().any(|row| row.len() != m.action_dim) {
            return Err(RemoteError::Mismatch(format!(
                "'actions' is {} × {}, the server announced {} steps × {} values",
                r.actions.len(),
                r.actions.first().map_or(0, Vec::len),
                m.window,
                m.action_dim
            )));
        }
        let action = server_action(m, &r.action)?;
        self.reset_next = false;
        Ok(Inferred {
            latent_ids: r.latent_tokens,
            chunk: r.actions,
            action,
            preview: None,
        })
    }
}

impl PolicyBackend for RemotePolicy {
    /// Marks the next request as the start of an episode with this instruction.
    fn reset(&mut self, instruction: &str) {
        self.prompt = instruction.to_string();
        self.reset_next = true;
    }

    /// The server's chunk for this image. No preview: the model input is made on the server.
    fn infer(&mut self, image: &RgbImage, proprio: Option<&[f64]>, _preview: bool) -> Result<Inferred, String> {
        self.try_infer(image, proprio).map_err(|e| e.to_string())
    }
}
