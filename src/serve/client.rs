//! A minimal client of the serve protocol (benchmarks and tests): connect, read the metadata,
//! then one request frame → one response per call.
use futures::{SinkExt, StreamExt};
use rmpv::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::wire;
use super::ServeError;

fn ws_err(e: impl std::fmt::Display) -> ServeError {
    ServeError::WebSocket(e.to_string())
}

/// One connection to a server.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    metadata: Value,
}

impl Client {
    /// Connects to `url` (`ws://host:port`), sending `Authorization: Api-Key KEY` when given, and
    /// reads the metadata frame (a text frame there is the server's refusal).
    pub async fn connect(url: &str, api_key: Option<&str>) -> Result<Self, ServeError> {
        let mut request = url.into_client_request().map_err(ws_err)?;
        if let Some(key) = api_key {
            let value = HeaderValue::from_str(&format!("Api-Key {key}")).map_err(ws_err)?;
            request.headers_mut().insert("Authorization", value);
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.map_err(ws_err)?;
        let metadata = match next_frame(&mut ws).await? {
            Ok(frame) => wire::decode_value(&frame).map_err(ws_err)?,
            Err(text) => return Err(ServeError::Remote(text)),
        };
        Ok(Self { ws, metadata })
    }

    pub fn metadata(&self) -> &Value {
        &self.metadata
    }

    /// Sends one frame; `Ok(Ok(response))`, or `Ok(Err(text))` when the server answered with an
    /// error frame.
    pub async fn call(&mut self, frame: Vec<u8>) -> Result<Result<Value, String>, ServeError> {
        self.ws.send(Message::binary(frame)).await.map_err(ws_err)?;
        Ok(match next_frame(&mut self.ws).await? {
            Ok(frame) => Ok(wire::decode_value(&frame).map_err(ws_err)?),
            Err(text) => Err(text),
        })
    }

    /// Sends a raw message (tests of malformed input).
    pub async fn send_raw(&mut self, msg: Message) -> Result<Result<Value, String>, ServeError> {
        self.ws.send(msg).await.map_err(ws_err)?;
        Ok(match next_frame(&mut self.ws).await? {
            Ok(frame) => Ok(wire::decode_value(&frame).map_err(ws_err)?),
            Err(text) => Err(text),
        })
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// The next data frame: binary as `Ok`, text as `Err`; the connection's end is an error.
async fn next_frame(
    ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>,
) -> Result<Result<Vec<u8>, String>, ServeError> {
    // Pings and pongs in between are skipped; a server sends few.
    for _ in 0..64 {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => return Ok(Ok(b.to_vec())),
            Some(Ok(Message::Text(t))) => return Ok(Err(t.as_str().to_owned())),
            Some(Ok(Message::Close(_))) | None => return Err(ServeError::WebSocket("connection closed".into())),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ws_err(e)),
        }
    }
    Err(ServeError::WebSocket("no data frame among 64 control frames".into()))
}
