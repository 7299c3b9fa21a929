//! CDR decoding of bag payloads into the serde structs of [`crate::ros::msgs`], with type checks.
use serde::Serialize;

use super::reader::RawMessage;
use super::BagError;
use crate::ros::msgs::{from_cdr, to_cdr, RosMessage};

/// Decodes `msg` as `T` after checking that the bag's type name is `T`'s (encapsulation header
/// CDR_LE or CDR_BE is checked by the codec).
pub fn decode<T: RosMessage>(msg: &RawMessage) -> Result<T, BagError> {
    let expected = T::ros_type();
    if !msg.type_name.is_empty() && *msg.type_name != *expected {
        return Err(BagError::WrongType {
            topic: msg.topic.to_string(),
            expected,
            found: msg.type_name.to_string(),
        });
    }
    from_cdr(&msg.data).map_err(|e| BagError::Decode {
        topic: msg.topic.to_string(),
        type_name: expected,
        log_time_ns: msg.log_time_ns,
        why: e.to_string(),
    })
}

/// Encodes `msg` as little-endian CDR with its encapsulation header.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, BagError> {
    to_cdr(msg).map_err(|e| BagError::Config(format!("cannot encode message: {e}")))
}
