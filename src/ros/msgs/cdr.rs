//! CDR payloads with the 4-byte encapsulation header, as carried in DDS samples and rosbag2.
use byteorder::{BigEndian, LittleEndian};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encapsulation header of a little-endian plain-CDR payload (CDR_LE, options 0).
pub const CDR_LE_HEADER: [u8; 4] = [0x00, 0x01, 0x00, 0x00];
/// Encapsulation identifier of big-endian plain CDR (CDR_BE).
const CDR_BE_ID: [u8; 2] = [0x00, 0x00];
/// Encapsulation identifier of little-endian plain CDR (CDR_LE).
const CDR_LE_ID: [u8; 2] = [0x00, 0x01];

/// Errors while encoding or decoding a CDR payload.
#[derive(Debug, thiserror::Error)]
pub enum CdrError {
    /// Payload shorter than the 4-byte encapsulation header.
    #[error("CDR payload too short: {0} bytes, need at least the 4-byte encapsulation header")]
    TooShort(usize),
    /// Encapsulation other than plain CDR (e.g. XCDR2 or parameter lists).
    #[error("unsupported CDR encapsulation {0:#04x} {1:#04x} (only plain CDR_LE/CDR_BE)")]
    Encapsulation(u8, u8),
    /// The serializer or deserializer failed.
    #[error("CDR codec: {0}")]
    Codec(#[from] cdr_encoding::Error),
}

/// Serializes `msg` as little-endian CDR, prefixed with the encapsulation header `00 01 00 00`.
pub fn to_cdr<T: Serialize>(msg: &T) -> Result<Vec<u8>, CdrError> {
    let mut out = CDR_LE_HEADER.to_vec();
    cdr_encoding::to_writer::<T, LittleEndian, _>(&mut out, msg)?;
    Ok(out)
}

/// Deserializes a CDR payload that starts with its encapsulation header (CDR_LE or CDR_BE).
pub fn from_cdr<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CdrError> {
    if bytes.len() < CDR_LE_HEADER.len() {
        return Err(CdrError::TooShort(bytes.len()));
    }
    let body = &bytes[CDR_LE_HEADER.len()..];
    let (msg, _) = match [bytes[0], bytes[1]] {
        CDR_LE_ID => cdr_encoding::from_bytes::<T, LittleEndian>(body)?,
        CDR_BE_ID => cdr_encoding::from_bytes::<T, BigEndian>(body)?,
        _ => return Err(CdrError::Encapsulation(bytes[0], bytes[1])),
    };
    Ok(msg)
}
