//! `univla serve`: the policy behind openpi's remote-inference protocol (a WebSocket of msgpack
//! frames, as the PyPI `openpi-client` speaks it), so fleets of robots or simulators can share one
//! loaded model. Each connection owns an [`Episode`](crate::runtime::session::Episode) (history,
//! ensemble buffer, generator); requests of different connections that arrive close together
//! run as one batch on the model thread.
pub mod client;
pub mod mapping;
pub mod server;
pub mod wire;
pub mod worker;

pub use mapping::Mapping;
pub use server::{ServeOptions, Server};

/// Errors of the serving layer (per-request problems travel as text frames instead).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("serve configuration: {0}")]
    Config(String),
    #[error("serve: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::session::RuntimeError),
    #[error("websocket: {0}")]
    WebSocket(String),
    #[error("server answered with an error: {0}")]
    Remote(String),
}
