//! A blocking WebSocket connection to a policy server, as openpi's client opens it: no
//! compression, the optional api key as `Authorization: Api-Key KEY` on the upgrade request, one
//! binary metadata frame from the server on connect, then one binary answer (or one text error)
//! per binary request. Every wait has a deadline (socket timeouts), so the caller's thread never
//! blocks longer than it asked.
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{HeaderValue, Uri};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::codec::ServerMetadata;
use super::error::RemoteError;

/// Largest message accepted from the server (a 7B server's answers are a few KB).
const MAX_MESSAGE: usize = 64 << 20;
/// Pings and pongs skipped while waiting for one answer before giving up.
const MAX_CONTROL_FRAMES: usize = 64;
/// Longest server text quoted in an error.
const MAX_TEXT: usize = 300;

/// Where the server is: a checked `ws://host[:port][/path]` URL and the api key to send.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: String,
    host: String,
    port: u16,
    api_key: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    /// The api key is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Endpoint {
    /// Checks a `policy_url`: `ws://` only (this build has no TLS, so `wss://` is refused with the
    /// reason), a host, and an optional port (default 80).
    pub fn parse(url: &str, api_key: Option<String>) -> Result<Self, RemoteError> {
        let bad = |reason: &str| RemoteError::Url {
            url: crate::node::control::core::clip(url, 200).into_owned(),
            reason: reason.into(),
        };
        let uri: Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
        match uri.scheme_str() {
            Some("ws") => {}
            Some("wss") => {
                return Err(bad(
                    "wss:// (TLS) is not supported by this build: use ws:// on a trusted network, \
                     or a TLS tunnel (ssh -L, stunnel) that ends on the robot computer",
                ))
            }
            _ => return Err(bad("expected ws://host:port")),
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if let Some(key) = &api_key {
            HeaderValue::from_str(&format!("Api-Key {key}"))
                .map_err(|_| bad("'policy_api_key' holds characters an HTTP header cannot carry"))?;
        }
        Ok(Self {
            url: url.to_string(),
            host,
            port: uri.port_u16().unwrap_or(80),
            api_key,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn connect_error(&self, reason: impl Into<String>) -> RemoteError {
        RemoteError::Connect {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// An open connection and the metadata the server sent on it.
pub struct Connection {
    ws: WebSocket<TcpStream>,
    metadata: ServerMetadata,
    timeout_s: f64,
}

impl Connection {
    /// Connects, upgrades and reads the server's metadata, all within `timeout`.
    pub fn open(ep: &Endpoint, timeout: Duration) -> Result<Self, RemoteError> {
        let deadline = Instant::now() + timeout;
        let addrs: Vec<SocketAddr> = (ep.host.as_str(), ep.port)
            .to_socket_addrs()
            .map_err(|e| ep.connect_error(format!("cannot resolve {}: {e}", ep.host)))?
            .collect();
        let mut last = format!("{} resolves to no address", ep.host);
        let mut stream = None;
        for addr in addrs {
            let Some(left) = remaining(deadline) else { break };
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        let stream = stream.ok_or_else(|| ep.connect_error(last))?;
        let left = remaining(deadline).ok_or(RemoteError::Timeout(timeout.as_secs_f64()))?;
        let io = |e: std::io::Error| ep.connect_error(e.to_string());
        stream.set_nodelay(true).map_err(io)?;
        stream.set_read_timeout(Some(left)).map_err(io)?;
        stream.set_write_timeout(Some(left)).map_err(io)?;
        let mut request = ep
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| ep.connect_error(e.to_string()))?;
        if let Some(key) = &ep.api_key {
            let value = HeaderValue::from_str(&format!("Api-Key {key}"))
                .map_err(|_| ep.connect_error("the api key cannot be sent in a header"))?;
            request.headers_mut().insert("Authorization", value);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let ws = match tungstenite::client::client_with_config(request, stream, Some(config)) {
            Ok((ws, _)) => ws,
            // A blocking socket whose timeout ran out mid-handshake.
            Err(HandshakeError::Interrupted(_)) => return Err(RemoteError::Timeout(timeout.as_secs_f64())),
            Err(HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                return Err(ep.connect_error(format!("the server refused the upgrade: HTTP {}", resp.status())))
            }
            Err(HandshakeError::Failure(e)) => return Err(ep.connect_error(e.to_string())),
        };
        let mut conn = Self {
            ws,
            metadata: ServerMetadata::default(),
            timeout_s: timeout.as_secs_f64(),
        };
        let first = conn.receive(deadline)?;
        conn.metadata = ServerMetadata::decode(&first)?;
        Ok(conn)
    }

    /// What the server announced on connect.
    pub fn metadata(&self) -> &ServerMetadata {
        &self.metadata
    }

    /// Sends one binary request and returns the binary answer, within `timeout`. A text answer is
    /// the server's error ([`RemoteError::Server`]); the connection then stays usable. After any
    /// other error the connection must be dropped (an answer may still be on its way).
    pub fn call(&mut self, request: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, RemoteError> {
        self.timeout_s = timeout.as_secs_f64();
        let deadline = Instant::now() + timeout;
        let left = remaining(deadline).ok_or(RemoteError::Timeout(self.timeout_s))?;
        self.ws
            .get_mut()
            .set_write_timeout(Some(left))
            .map_err(|e| RemoteError::Disconnected(e.to_string()))?;
        self.ws.send(Message::binary(request)).map_err(|e| self.lost(e))?;
        self.receive(deadline)
    }

    /// The next data frame before `deadline` (pings are answered by the WebSocket on the way).
    fn receive(&mut self, deadline: Instant) -> Result<Vec<u8>, RemoteError> {
        for _ in 0..MAX_CONTROL_FRAMES {
            let left = remaining(deadline).ok_or(RemoteError::Timeout(self.timeout_s))?;
            self.ws
                .get_mut()
                .set_read_timeout(Some(left))
                .map_err(|e| RemoteError::Disconnected(e.to_string()))?;
            match self.ws.read() {
                Ok(Message::Binary(b)) => return Ok(b.to_vec()),
                Ok(Message::Text(t)) => {
                    return Err(RemoteError::Server(
                        crate::node::control::core::clip(t.as_str().trim(), MAX_TEXT).into_owned(),
                    ))
                }
                Ok(Message::Close(frame)) => {
                    return Err(RemoteError::Disconnected(match frame {
                        Some(f) if !f.reason.is_empty() => format!("closed by the server ({})", f.reason),
                        _ => "closed by the server".into(),
                    }))
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Err(e) => return Err(self.lost(e)),
            }
        }
        Err(RemoteError::Protocol(format!(
            "{MAX_CONTROL_FRAMES} control frames and no answer"
        )))
    }

    fn lost(&self, e: tungstenite::Error) -> RemoteError {
        match e {
            tungstenite::Error::Io(e) if is_timeout(&e) => RemoteError::Timeout(self.timeout_s),
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                RemoteError::Disconnected("closed".into())
            }
            tungstenite::Error::Capacity(e) => RemoteError::Protocol(e.to_string()),
            other => RemoteError::Disconnected(other.to_string()),
        }
    }
}

impl Drop for Connection {
    /// Says goodbye without waiting for the server's close frame.
    fn drop(&mut self) {
        let _ = self.ws.get_mut().set_write_timeout(Some(Duration::from_millis(100)));
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let ep = Endpoint::parse("ws://gpu-box:8000", Some("k".into())).unwrap();
        assert_eq!((ep.host.as_str(), ep.port), ("gpu-box", 8000));
        assert!(!format!("{ep:?}").contains("\"k\""), "the key must not be printed");
        assert_eq!(Endpoint::parse("ws://10.0.0.2/policy", None).unwrap().port, 80);
        assert_eq!(Endpoint::parse("ws://[::1]:9000", None).unwrap().host, "::1");
        let e = Endpoint::parse("wss://gpu-box:8000", None).unwrap_err().to_string();
        assert!(e.contains("wss://") && e.contains("not supported"), "{e}");
        for bad in ["http://gpu-box:8000", "gpu-box:8000", "ws://", "not a url"] {
            assert!(Endpoint::parse(bad, None).is_err(), "{bad} was accepted");
        }
        assert!(Endpoint::parse("ws://h:1", Some("a\nb".into())).is_err());
    }
}
