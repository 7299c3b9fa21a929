//! The listening side: plain HTTP for `GET /healthz` and `GET /status`, WebSocket sessions on
//! any other path. Every connection runs in its own task and only awaits its own socket and its
//! own reply from the model thread, so a stalled client delays nobody; no lock is held across an
//! await.
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rmpv::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::mapping::Mapping;
use super::wire::{self, f32_array, i64_array, str_map};
use super::worker::{self, BatchPolicy, Done, Job};
use super::ServeError;
use crate::model::prompt::LATENT_TOKENS;
use crate::runtime::batch::BatchRunner;
use crate::runtime::postprocess::Action;
use crate::runtime::session::{Episode, EpisodeRng, Policy, StepOutput};

/// Longest HTTP request head read before a connection is dropped.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub mapping: Mapping,
    /// Most requests run as one batch.
    pub max_batch: usize,
    /// How long the model thread waits for more requests after the first of a batch.
    pub batch_window: Duration,
    /// Most sessions at once; more are refused.
    pub max_sessions: usize,
    /// Required `Authorization: Api-Key KEY` when set.
    pub api_key: Option<String>,
    /// With sampling: session `k` (0, 1, … in connection order) draws from its own generator
    /// seeded with `seed + k`. `None`: libtorch's generator (greedy decoding draws nothing).
    pub seed: Option<u64>,
    /// Largest request frame, in bytes.
    pub max_frame_bytes: usize,
    /// A session that sends nothing for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            mapping: Mapping::default(),
            max_batch: 8,
            batch_window: Duration::from_millis(5),
            max_sessions: 64,
            api_key: None,
            seed: None,
            max_frame_bytes: 64 << 20,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// State every connection task shares (counters only; no locks).
struct Shared {
    policy: Arc<Policy>,
    opts: ServeOptions,
    jobs: SyncSender<Job>,
    sessions: AtomicUsize,
    connections: AtomicU64,
    steps: AtomicU64,
}

/// A bound server; [`Server::run`] serves until the future is dropped.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds `addr` and starts the model thread.
    pub async fn bind(policy: Arc<Policy>, opts: ServeOptions, addr: SocketAddr) -> Result<Self, ServeError> {
        if opts.max_batch == 0 || opts.max_sessions == 0 {
            return Err(ServeError::Config(
                "--max-batch and --max-sessions must be at least 1".into(),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        // Each session has at most one request in flight, so this queue never fills.
        let (tx, rx) = sync_channel(opts.max_sessions);
        let batching = BatchPolicy {
            max_batch: opts.max_batch,
            window: opts.batch_window,
        };
        // The batch KV cache is allocated here, so a size the model refuses fails the bind.
        let runner = BatchRunner::new(Arc::clone(&policy), opts.max_batch)?;
        std::thread::Builder::new()
            .name("univla-serve-model".into())
            .spawn(move || worker::run(runner, rx, batching))?;
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                policy,
                opts,
                jobs: tx,
                sessions: AtomicUsize::new(0),
                connections: AtomicU64::new(0),
                steps: AtomicU64::new(0),
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections, each in its own task.
    pub async fn run(self) -> Result<(), ServeError> {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait a little instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let shared = Arc::clone(&self.shared);
            tokio::spawn(async move {
                tracing::debug!(%peer, "connection");
                connection(stream, shared).await;
            });
        }
    }
}

/// The parts of an HTTP request head the server looks at.
#[derive(Debug, Default)]
struct Head {
    path: String,
    upgrade: bool,
    authorization: Option<String>,
}

fn parse_head(bytes: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?, first.next()?);
    if method != "GET" {
        return None;
    }
    let mut head = Head {
        path: path.split('?').next().unwrap_or("/").to_owned(),
        ..Head::default()
    };
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("upgrade") {
            head.upgrade = value.eq_ignore_ascii_case("websocket");
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(value.to_owned());
        }
    }
    Some(head)
}

/// Reads up to the end of the request head (and whatever came with it).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    while buf.len() < MAX_HEAD_BYTES {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(buf);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "no complete request head",
    ))
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let head_bytes = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(b)) => b,
        _ => return,
    };
    let Some(head) = parse_head(&head_bytes) else {
        let _ = respond(&mut stream, "400 Bad Request", "text/plain", "bad request\n").await;
        return;
    };
    if !head.upgrade {
        let _ = plain_http(&mut stream, &head, &shared).await;
        return;
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(shared.opts.max_frame_bytes))
        .max_frame_size(Some(shared.opts.max_frame_bytes));
    let replay = Replay {
        prefix: head_bytes,
        at: 0,
        inner: stream,
    };
    match tokio_tungstenite::accept_async_with_config(replay, Some(config)).await {
        Ok(ws) => session(ws, head.authorization, shared).await,
        Err(e) => tracing::debug!("websocket handshake failed: {e}"),
    }
}

async fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &str) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(msg.as_bytes()).await?;
    stream.shutdown().await
}

async fn plain_http(stream: &mut TcpStream, head: &Head, shared: &Shared) -> std::io::Result<()> {
    match head.path.as_str() {
        "/healthz" => respond(stream, "200 OK", "text/plain", "ok").await,
        "/status" => {
            let body = serde_json::json!({
                "sessions": shared.sessions.load(Ordering::SeqCst),
                "max_sessions": shared.opts.max_sessions,
                "connections": shared.connections.load(Ordering::SeqCst),
                "steps": shared.steps.load(Ordering::SeqCst),
                "max_batch": shared.opts.max_batch,
            });
            respond(stream, "200 OK", "application/json", &body.to_string()).await
        }
        _ => {
            respond(
                stream,
                "426 Upgrade Required",
                "text/plain",
                "connect with a WebSocket client\n",
            )
            .await
        }
    }
}

/// Counts a session while it lives.
struct SessionSlot(Arc<Shared>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

fn admit(shared: &Arc<Shared>) -> Option<(SessionSlot, usize)> {
    let max = shared.opts.max_sessions;
    let n = shared.sessions.fetch_add(1, Ordering::SeqCst) + 1;
    let slot = SessionSlot(Arc::clone(shared));
    (n <= max).then_some((slot, n))
}

fn key_matches(given: Option<&str>, key: &str) -> bool {
    let Some(given) = given.and_then(|g| g.strip_prefix("Api-Key ")) else {
        return false;
    };
    // Compare every byte whatever the first difference, so timing tells nothing of the key.
    given.len() == key.len() && given.bytes().zip(key.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

type Ws = WebSocketStream<Replay>;

async fn refuse(mut ws: Ws, text: String) {
    let _ = ws.send(Message::text(text)).await;
    let _ = ws.close(None).await;
}

async fn session(mut ws: Ws, authorization: Option<String>, shared: Arc<Shared>) {
    if let Some(key) = &shared.opts.api_key {
        if !key_matches(authorization.as_deref(), key) {
            return refuse(ws, "unauthorized: send the header `Authorization: Api-Key KEY`".into()).await;
        }
    }
    let Some((_slot, active)) = admit(&shared) else {
        let max = shared.opts.max_sessions;
        return refuse(ws, format!("too many sessions: this server takes at most {max}")).await;
    };
    let index = shared.connections.fetch_add(1, Ordering::SeqCst);
    let policy = Arc::clone(&shared.policy);
    let new_episode = || {
        Episode::new(&policy).map(|e| match shared.opts.seed {
            Some(seed) => e.with_rng(EpisodeRng::new(seed.wrapping_add(index))),
            None => e,
        })
    };
    let mut episode = match new_episode() {
        Ok(e) => Some(e),
        Err(e) => return refuse(ws, format!("cannot start an episode: {e}")).await,
    };
    if ws
        .send(Message::binary(wire::encode(&metadata(&shared, active, index))))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let msg = match tokio::time::timeout(shared.opts.idle_timeout, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => {
                tracing::debug!(index, "session ended: {e}");
                break;
            }
            Ok(None) => break,
            Err(_) => {
                let _ = ws.send(Message::text("idle for too long, closing")).await;
                break;
            }
        };
        let reply = match msg {
            Message::Binary(frame) => match step(&shared, &mut episode, &frame).await {
                Ok(bytes) => Message::binary(bytes),
                Err(text) => Message::text(text),
            },
            Message::Text(_) => Message::text("requests are binary frames of msgpack maps"),
            Message::Close(_) => break,
            _ => continue,
        };
        if episode.is_none() {
            // The model thread lost it (it stopped): start over rather than fail forever.
            episode = new_episode().ok();
        }
        if ws.send(reply).await.is_err() {
            break;
        }
    }
    let _ = ws.close(None).await;
}

/// One request: decode, start a new episode when asked or when the instruction changed, run it
/// on the model thread, encode the answer. `Err` is the text of an error frame.
async fn step(shared: &Shared, slot: &mut Option<Episode>, frame: &[u8]) -> Result<Vec<u8>, String> {
    let req = wire::decode_request(frame, &shared.opts.mapping).map_err(|e| e.to_string())?;
    let mut episode = slot.take().ok_or("internal error: the session has no episode")?;
    if req.reset || episode.instruction() != req.prompt {
        episode.reset(&req.prompt);
    }
    let step_index = episode.steps();
    let (tx, rx) = oneshot::channel();
    let job = Job {
        episode,
        image: req.image,
        proprio: req.state,
        reply: tx,
    };
    if let Err(e) = shared.jobs.try_send(job) {
        let (TrySendError::Full(job) | TrySendError::Disconnected(job)) = e;
        *slot = Some(job.episode);
        return Err("server busy: the model queue is full".into());
    }
    let done = rx
        .await
        .map_err(|_| "internal error: the model thread stopped".to_owned())?;
    let Done {
        episode,
        result,
        batch_size,
        infer,
    } = done;
    *slot = Some(episode);
    let out = result?;
    shared.steps.fetch_add(1, Ordering::Relaxed);
    Ok(wire::encode(&response(
        &shared.policy,
        &out,
        step_index,
        batch_size,
        infer,
    )))
}

fn response(policy: &Policy, out: &StepOutput, step: u64, batch_size: usize, infer: Duration) -> Value {
    let dim = policy.action_dim();
    let (actions, latent, prompt) = match &out.inference {
        Some(inf) => (
            f32_array(inf.chunk.iter().flatten().copied(), &[inf.chunk.len(), dim]),
            i64_array(&inf.latent_ids),
            Value::from(inf.prompt.as_str()),
        ),
        None => (f32_array([], &[0, dim]), i64_array(&[]), Value::Nil),
    };
    let (action, name) = match &out.action {
        Action::Arm(v) => (v.clone(), Value::Nil),
        Action::Bridge(b) => {
            let mut v = b.world_vector.to_vec();
            v.extend(b.rot_axangle);
            v.extend([b.gripper, b.terminate]);
            (v, Value::Nil)
        }
        Action::Nav(a) => (vec![a.id() as f64], Value::from(format!("{a:?}"))),
    };
    let mut timing = vec![
        (Value::from("infer_ms"), Value::F64(infer.as_secs_f64() * 1e3)),
        (Value::from("batch_size"), Value::from(batch_size as u64)),
    ];
    timing.extend(
        out.timings
            .stages
            .iter()
            .map(|(s, d)| (Value::from(format!("{s}_ms")), Value::F64(d.as_secs_f64() * 1e3))),
    );
    let timing_map = Value::Map(timing);
    str_map(vec![
        ("actions", actions),
        ("action", f32_array(action.iter().copied(), &[action.len()])),
        (
            "pre_action",
            f32_array(out.pre_action.iter().copied(), &[out.pre_action.len()]),
        ),
        ("action_name", name),
        ("latent_tokens", latent),
        ("episode_step", Value::from(step)),
        ("prompt", prompt),
        ("server_timing", timing_map),
    ])
}

fn metadata(shared: &Shared, active: usize, index: u64) -> Value {
    let p = &shared.policy;
    let m = &shared.opts.mapping;
    let decoding = match p.options().decoding {
        crate::model::generate::Decoding::Greedy => "greedy",
        crate::model::generate::Decoding::Sample { .. } => "sample",
    };
    str_map(vec![
        ("server", Value::from("univla_ros")),
        ("version", Value::from(env!("CARGO_PKG_VERSION"))),
        ("embodiment", Value::from(m.embodiment.as_str())),
        ("head", Value::from(format!("{:?}", p.head().kind()).to_lowercase())),
        ("action_dim", Value::from(p.action_dim() as u64)),
        ("chunk", Value::from(p.window() as u64)),
        ("latent_tokens", Value::from(LATENT_TOKENS as u64)),
        // What a remote node (`policy_url`) needs to ensemble the chunks as this server does.
        ("needs_proprio", Value::Boolean(p.head().needs_proprio())),
        ("temporal_size", Value::from(p.temporal_size() as u64)),
        ("image_key", Value::from(m.image.as_str())),
        ("state_key", m.state.as_deref().map_or(Value::Nil, Value::from)),
        ("prompt_key", Value::from(m.prompt.as_str())),
        ("reset_key", Value::from(m.reset.as_str())),
        ("decoding", Value::from(decoding)),
        ("sessions", Value::from(active as u64)),
        ("max_sessions", Value::from(shared.opts.max_sessions as u64)),
        ("max_batch", Value::from(shared.opts.max_batch as u64)),
        ("session_index", Value::from(index)),
    ])
}

/// The TCP stream with the request head already read put back in front, for the handshake.
pub struct Replay {
    prefix: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl AsyncRead for Replay {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_keys() {
        let h = parse_head(b"GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!((h.path.as_str(), h.upgrade), ("/healthz", false));
        let h = parse_head(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nauthorization: Api-Key k1\r\n\r\n").unwrap();
        assert!(h.upgrade);
        assert!(key_matches(h.authorization.as_deref(), "k1"));
        assert!(!key_matches(h.authorization.as_deref(), "k2"));
        assert!(!key_matches(Some("Bearer k1"), "k1"));
        assert!(!key_matches(None, "k1"));
        assert!(parse_head(b"POST / HTTP/1.1\r\n\r\n").is_none());
    }
}
