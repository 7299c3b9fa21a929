//! A policy served over the network: the client side of the openpi remote-inference protocol
//! (WebSocket, msgpack with numpy arrays), so a node can run on a robot computer without the model.
//!
//! * [`codec`]: openpi's msgpack-numpy encoding and the request/response/metadata messages.
//! * [`client`]: a blocking WebSocket connection with bounded waits.
//! * [`policy`]: [`RemotePolicy`], the node's [`PolicyBackend`](crate::node::wiring::worker::PolicyBackend)
//!   over a connection that reconnects with backoff.
pub mod client;
pub mod codec;
pub mod error;
pub mod policy;

pub use error::RemoteError;
pub use policy::{RemotePolicy, RemoteSettings};
