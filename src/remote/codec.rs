//! openpi's msgpack-numpy encoding and the messages of its remote-inference protocol.
//!
//! A numpy array travels as a msgpack map `{"__ndarray__": true, "data": <bin>, "dtype": <str>,
//! "shape": [..]}`, where `dtype` is numpy's `dtype.str` (`|u1`, `<f4`, `<f8`, `<i8`, …) and the
//! data is the C-order buffer. openpi's packer writes these four keys as msgpack *bin* (Python
//! `bytes`); we write them the same way and accept both bin and str keys when reading. A numpy
//! scalar travels as `{"__npgeneric__": true, "data": <value>, "dtype": <str>}`.
use rmpv::Value;

use super::error::RemoteError;
use crate::runtime::preprocess::RgbImage;

/// Request key of the camera image (uint8 H×W×3, RGB).
pub const KEY_IMAGE: &str = "observation/image";
/// Request key of the proprio vector (float64, joint positions).
pub const KEY_STATE: &str = "observation/state";
/// Request key of the instruction.
pub const KEY_PROMPT: &str = "prompt";
/// Request key that starts a new episode (new history, empty ensemble).
pub const KEY_RESET: &str = "reset";

/// Largest number of elements accepted in one decoded array (a 4K RGB image is 25 M).
const MAX_ELEMENTS: usize = 1 << 26;
/// Largest accepted number of dimensions.
const MAX_DIMS: usize = 8;
/// Nesting depth accepted when reading a message (ours are three levels deep).
const MAX_DEPTH: usize = 16;

fn protocol(msg: impl Into<String>) -> RemoteError {
    RemoteError::Protocol(msg.into())
}

/// Element types that cross the wire, by numpy `dtype.str`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    U8,
    Bool,
    I32,
    I64,
    F32,
    F64,
}

impl DType {
    /// numpy's `dtype.str` of this type on a little-endian machine.
    pub fn numpy_str(self) -> &'static str {
        match self {
            DType::U8 => "|u1",
            DType::Bool => "|b1",
            DType::I32 => "<i4",
            DType::I64 => "<i8",
            DType::F32 => "<f4",
            DType::F64 => "<f8",
        }
    }

    /// Parses a numpy `dtype.str`; big-endian and other types are refused by name.
    pub fn parse(s: &str) -> Result<Self, RemoteError> {
        Ok(match s {
            "|u1" | "<u1" => DType::U8,
            "|b1" => DType::Bool,
            "<i4" => DType::I32,
            "<i8" => DType::I64,
            "<f4" => DType::F32,
            "<f8" => DType::F64,
            other => return Err(protocol(format!("unsupported array dtype '{}'", clip(other)))),
        })
    }

    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::Bool => 1,
            DType::I32 | DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }
}

/// A numpy array as it travels: element type, shape and the little-endian C-order buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl NdArray {
    /// Checks that `data` holds exactly the elements `shape` asks for.
    pub fn new(dtype: DType, shape: Vec<usize>, data: Vec<u8>) -> Result<Self, RemoteError> {
        if shape.len() > MAX_DIMS {
            return Err(protocol(format!("array with {} dimensions", shape.len())));
        }
        let n = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| protocol(format!("array shape {shape:?} is too large")))?;
        if n * dtype.size() != data.len() {
            return Err(protocol(format!(
                "array of shape {shape:?} and dtype {} needs {} bytes, got {}",
                dtype.numpy_str(),
                n * dtype.size(),
                data.len()
            )));
        }
        Ok(Self { dtype, shape, data })
    }

    pub fn from_f64s(values: &[f64]) -> Self {
        Self {
            dtype: DType::F64,
            shape: vec![values.len()],
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn from_f32s(shape: Vec<usize>, values: &[f32]) -> Result<Self, RemoteError> {
        Self::new(DType::F32, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    pub fn from_i64s(values: &[i64]) -> Self {
        Self {
            dtype: DType::I64,
            shape: vec![values.len()],
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An RGB image as uint8 H×W×3.
    pub fn from_image(img: &RgbImage) -> Self {
        Self {
            dtype: DType::U8,
            shape: vec![img.height() as usize, img.width() as usize, 3],
            data: img.as_raw().to_vec(),
        }
    }

    /// Elements as f64 (any numeric dtype; integers beyond 2^53 lose precision).
    pub fn to_f64s(&self) -> Vec<f64> {
        let d = &self.data;
        match self.dtype {
            DType::U8 | DType::Bool => d.iter().map(|&b| f64::from(b)).collect(),
            DType::I32 => d
                .chunks_exact(4)
                .map(|c| f64::from(i32::from_le_bytes(arr(c))))
                .collect(),
            DType::I64 => d.chunks_exact(8).map(|c| i64::from_le_bytes(arr(c)) as f64).collect(),
            DType::F32 => d
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(arr(c))))
                .collect(),
            DType::F64 => d.chunks_exact(8).map(|c| f64::from_le_bytes(arr(c))).collect(),
        }
    }

    /// Elements as i64 (integer dtypes only).
    pub fn to_i64s(&self) -> Result<Vec<i64>, RemoteError> {
        let d = &self.data;
        Ok(match self.dtype {
            DType::U8 | DType::Bool => d.iter().map(|&b| i64::from(b)).collect(),
            DType::I32 => d
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(arr(c))))
                .collect(),
            DType::I64 => d.chunks_exact(8).map(|c| i64::from_le_bytes(arr(c))).collect(),
            DType::F32 | DType::F64 => {
                return Err(protocol(format!(
                    "expected an integer array, got dtype {}",
                    self.dtype.numpy_str()
                )))
            }
        })
    }

    /// The msgpack value openpi's packer writes for this array.
    pub fn to_value(&self) -> Value {
        Value::Map(vec![
            (Value::Binary(b"__ndarray__".to_vec()), Value::Boolean(true)),
            (Value::Binary(b"data".to_vec()), Value::Binary(self.data.clone())),
            (Value::Binary(b"dtype".to_vec()), Value::from(self.dtype.numpy_str())),
            (
                Value::Binary(b"shape".to_vec()),
                Value::Array(self.shape.iter().map(|&d| Value::from(d)).collect()),
            ),
        ])
    }

    /// Reads an encoded array; `None` if `v` is not one.
    pub fn from_value(v: &Value) -> Result<Option<Self>, RemoteError> {
        let Some(map) = v.as_map() else { return Ok(None) };
        if get(map, "__ndarray__").is_none() {
            return Ok(None);
        }
        let field = |k: &str| get(map, k).ok_or_else(|| protocol(format!("array without '{k}'")));
        let data = field("data")?
            .as_slice()
            .ok_or_else(|| protocol("array 'data' is not bytes"))?;
        let dtype = field("dtype")?
            .as_slice()
            .and_then(|s| std::str::from_utf8(s).ok())
            .ok_or_else(|| protocol("array 'dtype' is not a string"))
            .and_then(DType::parse)?;
        let shape = field("shape")?
            .as_array()
            .ok_or_else(|| protocol("array 'shape' is not a list"))?
            .iter()
            .map(|d| {
                d.as_u64()
                    .and_then(|d| usize::try_from(d).ok())
                    .ok_or_else(|| protocol("array 'shape' holds a non-integer"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(dtype, shape, data.to_vec()).map(Some)
    }
}

fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(c);
    a
}

/// Text from the server, clipped for error messages.
fn clip(s: &str) -> String {
    crate::node::control::core::clip(s, 120).into_owned()
}

/// The value under key `k` (msgpack str or bin) of a map.
pub fn get<'a>(map: &'a [(Value, Value)], k: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(key, _)| key.as_slice() == Some(k.as_bytes()))
        .map(|(_, v)| v)
}

/// A numpy scalar (`__npgeneric__`) as its plain value; any other value as it is.
fn scalar(v: &Value) -> &Value {
    v.as_map()
        .filter(|m| get(m, "__npgeneric__").is_some())
        .and_then(|m| get(m, "data"))
        .unwrap_or(v)
}

/// Encodes one value as msgpack bytes.
pub fn to_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

/// Decodes one msgpack value that must fill `bytes` exactly.
pub fn from_bytes(bytes: &[u8]) -> Result<Value, RemoteError> {
    let mut rd = bytes;
    let v = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH).map_err(|e| protocol(e.to_string()))?;
    if !rd.is_empty() {
        return Err(protocol(format!("{} bytes after the message", rd.len())));
    }
    Ok(v)
}

/// One observation for the server.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub image: &'a RgbImage,
    pub state: Option<&'a [f64]>,
    pub prompt: &'a str,
    pub reset: bool,
}

impl Request<'_> {
    /// The msgpack bytes, keys in the order an openpi client's observation dict has them.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = vec![(Value::from(KEY_IMAGE), NdArray::from_image(self.image).to_value())];
        if let Some(s) = self.state {
            m.push((Value::from(KEY_STATE), NdArray::from_f64s(s).to_value()));
        }
        m.push((Value::from(KEY_PROMPT), Value::from(self.prompt)));
        m.push((Value::from(KEY_RESET), Value::Boolean(self.reset)));
        to_bytes(&Value::Map(m))
    }
}

/// The server's answer to one observation.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The head's raw chunk, `[T][D]`.
    pub actions: Vec<Vec<f64>>,
    /// The server's ensembled, post-processed action.
    pub action: Vec<f64>,
    pub latent_tokens: Vec<i64>,
    pub episode_step: Option<i64>,
    /// `server_timing.infer_ms`, when sent.
    pub infer_ms: Option<f64>,
}

fn map_of(v: &Value, what: &str) -> Result<Vec<(Value, Value)>, RemoteError> {
    v.as_map()
        .cloned()
        .ok_or_else(|| protocol(format!("{what} is not a map")))
}

fn array_field(map: &[(Value, Value)], k: &str) -> Result<NdArray, RemoteError> {
    let v = get(map, k).ok_or_else(|| protocol(format!("no '{k}'")))?;
    NdArray::from_value(v)?.ok_or_else(|| protocol(format!("'{k}' is not an array")))
}

impl Response {
    pub fn decode(bytes: &[u8]) -> Result<Self, RemoteError> {
        let v = from_bytes(bytes)?;
        let map = map_of(&v, "the response")?;
        let actions = array_field(&map, "actions")?;
        let [t, d] = actions.shape[..] else {
            return Err(protocol(format!(
                "'actions' has shape {:?}, expected [T, D]",
                actions.shape
            )));
        };
        let flat = actions.to_f64s();
        let actions = if d == 0 {
            vec![Vec::new(); t]
        } else {
            flat.chunks_exact(d).map(<[f64]>::to_vec).collect()
        };
        let action = array_field(&map, "action")?;
        if action.shape.len() != 1 {
            return Err(protocol(format!("'action' has shape {:?}, expected [D]", action.shape)));
        }
        let latent_tokens = array_field(&map, "latent_tokens")?.to_i64s()?;
        let episode_step = get(&map, "episode_step").map(scalar).and_then(Value::as_i64);
        let infer_ms = get(&map, "server_timing")
            .and_then(Value::as_map)
            .and_then(|t| get(t, "infer_ms"))
            .map(scalar)
            .and_then(Value::as_f64);
        Ok(Self {
            actions,
            action: action.to_f64s(),
            latent_tokens,
            episode_step,
            infer_ms,
        })
    }
}

/// What the server announces on connect (the fields the node uses; others are ignored).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerMetadata {
    pub server: Option<String>,
    pub version: Option<String>,
    /// The deployment conventions (`real_world`, `libero`, `bridge`, `calvin`, `r2r`).
    pub embodiment: Option<String>,
    /// Values per chunk row.
    pub action_dim: Option<usize>,
    /// Rows per chunk.
    pub chunk: Option<usize>,
    pub latent_tokens: Option<usize>,
    /// Whether the head reads proprio (`observation/state`), when the server says.
    pub needs_proprio: Option<bool>,
    /// The ensemble size the server's head uses, when it says.
    pub temporal_size: Option<usize>,
}

impl ServerMetadata {
    pub fn decode(bytes: &[u8]) -> Result<Self, RemoteError> {
        let v = from_bytes(bytes)?;
        let map = map_of(&v, "the server metadata")?;
        let text = |k: &str| {
            get(&map, k)
                .map(scalar)
                .and_then(Value::as_slice)
                .map(|s| clip(&String::from_utf8_lossy(s)))
        };
        let count = |k: &str| -> Result<Option<usize>, RemoteError> {
            match get(&map, k).map(scalar) {
                None | Some(Value::Nil) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| protocol(format!("metadata '{k}' is not a count"))),
            }
        };
        Ok(Self {
            server: text("server"),
            version: text("version"),
            embodiment: text("embodiment"),
            action_dim: count("action_dim")?,
            chunk: count("chunk")?,
            latent_tokens: count("latent_tokens")?,
            needs_proprio: get(&map, "needs_proprio").map(scalar).and_then(Value::as_bool),
            temporal_size: count("temporal_size")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_value(actions: &NdArray, action: &NdArray, tokens: &[i64]) -> Value {
        Value::Map(vec![
            (Value::from("actions"), actions.to_value()),
            (Value::from("action"), action.to_value()),
            (Value::from("latent_tokens"), NdArray::from_i64s(tokens).to_value()),
            (Value::from("episode_step"), Value::from(3)),
            (
                Value::from("server_timing"),
                Value::Map(vec![
                    (Value::from("infer_ms"), Value::from(12.5)),
                    (Value::from("batch_size"), Value::from(1)),
                ]),
            ),
        ])
    }

    /// Bytes written by openpi's own packer (test/data/remote/make_golden.py).
    const GOLDEN_REQUEST: &[u8] = include_bytes!("../../test/data/remote/request.msgpack");
    const GOLDEN_RESPONSE: &[u8] = include_bytes!("../../test/data/remote/response.msgpack");
    const GOLDEN_METADATA: &[u8] = include_bytes!("../../test/data/remote/metadata.msgpack");

    #[test]
    fn request_bytes_equal_openpi_packer() {
        let img = RgbImage::new(3, 2, (0..18).collect()).unwrap();
        let bytes = Request {
            image: &img,
            state: Some(&[0.5, -1.25, 3.0]),
            prompt: "pick up the cup",
            reset: true,
        }
        .encode();
        assert_eq!(bytes, GOLDEN_REQUEST);
    }

    #[test]
    fn openpi_response_and_metadata_decode() {
        let r = Response::decode(GOLDEN_RESPONSE).unwrap();
        let expected: Vec<Vec<f64>> = (0..4)
            .map(|t| (0..7).map(|d| f64::from((t * 7 + d) as f32 * 0.25 - 1.0)).collect())
            .collect();
        assert_eq!(r.actions, expected);
        assert_eq!(r.action, vec![-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(r.latent_tokens, vec![32001, 32010, 32100, 32005]);
        assert_eq!((r.episode_step, r.infer_ms), (Some(5), Some(12.5)));
        let m = ServerMetadata::decode(GOLDEN_METADATA).unwrap();
        assert_eq!(
            m,
            ServerMetadata {
                server: Some("univla".into()),
                version: Some("0.1.0".into()),
                embodiment: Some("real_world".into()),
                action_dim: Some(7),
                chunk: Some(12),
                latent_tokens: Some(4),
                needs_proprio: None,
                temporal_size: None,
            }
        );
    }

    #[test]
    fn arrays_round_trip_and_check_their_size() {
        let a = NdArray::from_f32s(vec![2, 3], &[1.0, -2.0, 3.5, 0.0, 1e-3, 7.0]).unwrap();
        let back = NdArray::from_value(&from_bytes(&to_bytes(&a.to_value())).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(back, a);
        assert_eq!(back.to_f64s(), vec![1.0, -2.0, 3.5, 0.0, f64::from(1e-3f32), 7.0]);
        let i = NdArray::from_i64s(&[32001, -5]);
        assert_eq!(i.to_i64s().unwrap(), vec![32001, -5]);
        assert!(a.to_i64s().is_err());
        // Size checks: wrong byte count, overflow, too many dimensions.
        assert!(NdArray::new(DType::F32, vec![2, 3], vec![0; 23]).is_err());
        assert!(NdArray::new(DType::U8, vec![usize::MAX, 2], vec![]).is_err());
        assert!(NdArray::new(DType::U8, vec![1; 9], vec![0]).is_err());
        // Big-endian and object dtypes are refused by name.
        assert!(DType::parse(">f4").unwrap_err().to_string().contains(">f4"));
        assert!(DType::parse("|O").is_err());
        // A plain value is not an array.
        assert_eq!(NdArray::from_value(&Value::from(3)).unwrap(), None);
    }

    #[test]
    fn response_decodes_and_rejects_bad_shapes() {
        let actions = NdArray::from_f32s(vec![2, 3], &[0.5, 1.0, 1.5, 2.0, 2.5, 3.0]).unwrap();
        let action = NdArray::from_f32s(vec![3], &[0.25, 0.5, 0.75]).unwrap();
        let bytes = to_bytes(&response_value(&actions, &action, &[1, 2, 3, 4]));
        let r = Response::decode(&bytes).unwrap();
        assert_eq!(r.actions, vec![vec![0.5, 1.0, 1.5], vec![2.0, 2.5, 3.0]]);
        assert_eq!(r.action, vec![0.25, 0.5, 0.75]);
        assert_eq!(r.latent_tokens, vec![1, 2, 3, 4]);
        assert_eq!((r.episode_step, r.infer_ms), (Some(3), Some(12.5)));
        let flat = NdArray::from_f32s(vec![6], &[0.0; 6]).unwrap();
        let e = Response::decode(&to_bytes(&response_value(&flat, &action, &[1])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[T, D]"), "{e}");
        assert!(Response::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0xc0);
        assert!(Response::decode(&extra)
            .unwrap_err()
            .to_string()
            .contains("after the message"));
        assert!(Response::decode(&to_bytes(&Value::from("x"))).is_err());
    }

    #[test]
    fn request_holds_image_state_prompt_and_reset() {
        let img = RgbImage::new(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let bytes = Request {
            image: &img,
            state: Some(&[0.5, -1.0]),
            prompt: "pick",
            reset: true,
        }
        .encode();
        let v = from_bytes(&bytes).unwrap();
        let m = v.as_map().unwrap();
        let keys: Vec<_> = m.iter().map(|(k, _)| k.as_str().unwrap()).collect();
        assert_eq!(keys, [KEY_IMAGE, KEY_STATE, KEY_PROMPT, KEY_RESET]);
        let im = NdArray::from_value(get(m, KEY_IMAGE).unwrap()).unwrap().unwrap();
        assert_eq!(
            (im.dtype, im.shape.clone(), im.data.clone()),
            (DType::U8, vec![1, 2, 3], vec![1, 2, 3, 4, 5, 6])
        );
        let st = NdArray::from_value(get(m, KEY_STATE).unwrap()).unwrap().unwrap();
        assert_eq!(st.to_f64s(), vec![0.5, -1.0]);
        assert_eq!(get(m, KEY_RESET), Some(&Value::Boolean(true)));
        let no_state = Request {
            image: &img,
            state: None,
            prompt: "pick",
            reset: false,
        }
        .encode();
        assert!(get(from_bytes(&no_state).unwrap().as_map().unwrap(), KEY_STATE).is_none());
    }

    #[test]
    fn metadata_reads_known_fields_and_numpy_scalars() {
        let generic = Value::Map(vec![
            (Value::Binary(b"__npgeneric__".to_vec()), Value::Boolean(true)),
            (Value::Binary(b"data".to_vec()), Value::from(12)),
            (Value::Binary(b"dtype".to_vec()), Value::from("<i8")),
        ]);
        let v = Value::Map(vec![
            (Value::from("server"), Value::from("univla")),
            (Value::from("embodiment"), Value::from("real_world")),
            (Value::from("action_dim"), Value::from(7)),
            (Value::from("chunk"), generic),
            (Value::from("other"), Value::Nil),
        ]);
        let m = ServerMetadata::decode(&to_bytes(&v)).unwrap();
        assert_eq!(m.embodiment.as_deref(), Some("real_world"));
        assert_eq!((m.action_dim, m.chunk, m.needs_proprio), (Some(7), Some(12), None));
        let bad = Value::Map(vec![(Value::from("chunk"), Value::from(-1))]);
        assert!(ServerMetadata::decode(&to_bytes(&bad))
            .unwrap_err()
            .to_string()
            .contains("chunk"));
    }
}
