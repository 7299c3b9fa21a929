//! Errors of the remote-policy layer.

/// Why talking to a policy server failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The `policy_url` cannot be used (wrong scheme, no host, …).
    #[error("policy_url '{url}': {reason}")]
    Url { url: String, reason: String },
    /// Connecting or the WebSocket handshake failed.
    #[error("cannot connect to the policy server at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// Nothing came back within the allowed time.
    #[error("the policy server did not answer within {0:.1} s")]
    Timeout(f64),
    /// The connection broke (closed by the server, reset, I/O error).
    #[error("connection to the policy server lost: {0}")]
    Disconnected(String),
    /// The server answered with an error message (a text frame); the connection stays usable.
    #[error("policy server error: {0}")]
    Server(String),
    /// A message does not follow the protocol (bad msgpack, missing or mistyped fields).
    #[error("malformed message from the policy server: {0}")]
    Protocol(String),
    /// The server's answer does not fit the model it announced (shape, width, length).
    #[error("policy server answer does not fit: {0}")]
    Mismatch(String),
}
