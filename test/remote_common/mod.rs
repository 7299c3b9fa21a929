//! A stub policy server for the remote-policy tests: speaks the openpi protocol on 127.0.0.1
//! (metadata frame on connect, one binary answer per request) with a fixed chunk, and misbehaves
//! on cue: a text error for one request, a dropped connection, or silence.
#![allow(dead_code)]
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rmpv::Value;
use tungstenite::handshake::server::{ErrorResponse, Request as HsRequest, Response as HsResponse};
use tungstenite::Message;
use univla_ros::remote::codec::{self, get, NdArray};

/// Longest a stub server runs.
const LIFETIME: Duration = Duration::from_secs(300);
/// How often its threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// What the stub does with the `n`-th request it receives (1-based, over all connections).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Misbehave {
    /// Answers a text error to this request.
    TextError(usize),
    /// Drops the connection instead of answering this request.
    Drop(usize),
}

/// One request as the stub saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub connection: usize,
    pub prompt: String,
    pub reset: bool,
    pub image_shape: Vec<usize>,
    pub state: Option<Vec<f64>>,
}

/// What the stub answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// The same chunk and action every time.
    Fixed { chunk: Vec<Vec<f32>>, action: Vec<f32> },
    /// Rows that step away from the received proprio: row `k` is `state + (k + 1) · delta` (a
    /// policy that keeps the arm moving); the action is the first row.
    Drift { rows: usize, dim: usize, delta: f32 },
}

impl Reply {
    fn size(&self) -> (usize, usize) {
        match self {
            Reply::Fixed { chunk, .. } => (chunk.len(), chunk[0].len()),
            Reply::Drift { rows, dim, .. } => (*rows, *dim),
        }
    }

    fn chunk(&self, state: Option<&[f64]>) -> Option<(Vec<Vec<f32>>, Vec<f32>)> {
        match self {
            Reply::Fixed { chunk, action } => Some((chunk.clone(), action.clone())),
            Reply::Drift { rows, delta, .. } => {
                let state = state?;
                let chunk: Vec<Vec<f32>> = (0..*rows)
                    .map(|k| state.iter().map(|&s| s as f32 + (k + 1) as f32 * delta).collect())
                    .collect();
                let action = chunk[0].clone();
                Some((chunk, action))
            }
        }
    }
}

fn answer_bytes(chunk: &[Vec<f32>], action: &[f32]) -> Vec<u8> {
    let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
    codec::to_bytes(&Value::Map(vec![
        (
            Value::from("actions"),
            NdArray::from_f32s(vec![chunk.len(), chunk[0].len()], &flat)
                .unwrap()
                .to_value(),
        ),
        (
            Value::from("action"),
            NdArray::from_f32s(vec![action.len()], action).unwrap().to_value(),
        ),
        (
            Value::from("latent_tokens"),
            NdArray::from_i64s(&[32001, 32002, 32003, 32004]).to_value(),
        ),
        (Value::from("episode_step"), Value::from(0)),
        (
            Value::from("server_timing"),
            Value::Map(vec![
                (Value::from("infer_ms"), Value::from(1.0)),
                (Value::from("batch_size"), Value::from(1)),
            ]),
        ),
    ]))
}

#[derive(Default)]
struct Shared {
    seen: Vec<Seen>,
    /// Every chunk sent.
    sent: Vec<Vec<Vec<f32>>>,
    connections: usize,
    auth: Vec<Option<String>>,
}

pub struct StubServer {
    pub port: u16,
    /// While set, requests are read but never answered.
    pub silent: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    handle: Option<JoinHandle<()>>,
}

/// The error text the stub sends for [`Misbehave::TextError`].
pub const STUB_ERROR: &str = "stub: instruction rejected";

impl StubServer {
    /// Serves `chunk` (rows × width, float32 on the wire) and `action`, announcing `embodiment`.
    pub fn start(embodiment: &str, chunk: Vec<Vec<f32>>, action: Vec<f32>, misbehave: Vec<Misbehave>) -> Self {
        Self::start_with(embodiment, Reply::Fixed { chunk, action }, misbehave)
    }

    /// Serves what `reply` says, announcing `embodiment`.
    pub fn start_with(embodiment: &str, reply: Reply, misbehave: Vec<Misbehave>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let silent = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (rows, dim) = reply.size();
        let metadata = codec::to_bytes(&Value::Map(vec![
            (Value::from("server"), Value::from("stub")),
            (Value::from("version"), Value::from("0")),
            (Value::from("embodiment"), Value::from(embodiment)),
            (Value::from("action_dim"), Value::from(dim)),
            (Value::from("chunk"), Value::from(rows)),
            (Value::from("latent_tokens"), Value::from(4)),
        ]));
        let (st, si, sh) = (Arc::clone(&stop), Arc::clone(&silent), Arc::clone(&shared));
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let mut conns = Vec::new();
            while !st.load(Ordering::SeqCst) && start.elapsed() < LIFETIME {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (st, si, sh) = (Arc::clone(&st), Arc::clone(&si), Arc::clone(&sh));
                        let (metadata, reply) = (metadata.clone(), reply.clone());
                        let misbehave = misbehave.clone();
                        conns.push(std::thread::spawn(move || {
                            serve(stream, &metadata, &reply, &misbehave, &st, &si, &sh)
                        }));
                    }
                    Err(_) => std::thread::sleep(POLL),
                }
            }
            st.store(true, Ordering::SeqCst);
            for c in conns {
                let _ = c.join();
            }
        });
        Self {
            port,
            silent,
            stop,
            shared,
            handle: Some(handle),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().unwrap().seen.clone()
    }

    /// Every chunk the stub sent.
    pub fn sent(&self) -> Vec<Vec<Vec<f32>>> {
        self.shared.lock().unwrap().sent.clone()
    }

    pub fn connections(&self) -> usize {
        self.shared.lock().unwrap().connections
    }

    /// The `Authorization` header of each upgrade request.
    pub fn auth(&self) -> Vec<Option<String>> {
        self.shared.lock().unwrap().auth.clone()
    }

    /// Stops listening and closes every connection (the server is gone).
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[allow(clippy::result_large_err)] // the handshake callback type is fixed by tungstenite
fn serve(
    stream: TcpStream,
    metadata: &[u8],
    reply: &Reply,
    misbehave: &[Misbehave],
    stop: &AtomicBool,
    silent: &AtomicBool,
    shared: &Mutex<Shared>,
) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut auth = None;
    let callback = |req: &HsRequest, resp: HsResponse| -> Result<HsResponse, ErrorResponse> {
        auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(resp)
    };
    let Ok(mut ws) = tungstenite::accept_hdr(stream, callback) else {
        return;
    };
    let connection = {
        let mut s = shared.lock().unwrap();
        s.connections += 1;
        s.auth.push(auth);
        s.connections
    };
    ws.get_mut().set_read_timeout(Some(POLL)).unwrap();
    if ws.send(Message::binary(metadata.to_vec())).is_err() {
        return;
    }
    let start = Instant::now();
    while !stop.load(Ordering::SeqCst) && start.elapsed() < LIFETIME {
        let msg = match ws.read() {
            Ok(m) => m,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                continue
            }
            Err(_) => return,
        };
        let Message::Binary(bytes) = msg else { continue };
        let v = codec::from_bytes(&bytes).unwrap();
        let m = v.as_map().unwrap();
        let image = NdArray::from_value(get(m, codec::KEY_IMAGE).unwrap()).unwrap().unwrap();
        let state = get(m, codec::KEY_STATE).map(|s| NdArray::from_value(s).unwrap().unwrap().to_f64s());
        let n = {
            let mut s = shared.lock().unwrap();
            s.seen.push(Seen {
                connection,
                prompt: get(m, codec::KEY_PROMPT)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                reset: get(m, codec::KEY_RESET).and_then(Value::as_bool).unwrap_or(false),
                image_shape: image.shape,
                state,
            });
            s.seen.len()
        };
        if silent.load(Ordering::SeqCst) {
            continue;
        }
        if misbehave.contains(&Misbehave::Drop(n)) {
            // No close frame: the connection just goes away.
            let _ = ws.get_mut().shutdown(std::net::Shutdown::Both);
            return;
        }
        let seen_state = shared.lock().unwrap().seen[n - 1].state.clone();
        let answer = if misbehave.contains(&Misbehave::TextError(n)) {
            Message::text(STUB_ERROR)
        } else {
            match reply.chunk(seen_state.as_deref()) {
                Some((chunk, action)) => {
                    shared.lock().unwrap().sent.push(chunk.clone());
                    Message::binary(answer_bytes(&chunk, &action))
                }
                None => Message::text("stub: no observation/state"),
            }
        };
        if ws.send(answer).is_err() {
            return;
        }
    }
}
