//! The openpi wire format: each frame is one msgpack map; numpy arrays travel as maps with the
//! keys `__ndarray__` (true), `data` (raw bytes), `dtype` (numpy's dtype string, `<f4`, `|u1`, …)
//! and `shape`, as openpi-client's `msgpack_numpy` writes them (its keys are msgpack bin; str
//! keys are accepted too). Requests are checked against a budget of msgpack items before they
//! are decoded, and every array's byte length against its declared shape and dtype before use.
use rmpv::{Value, ValueRef};

use super::mapping::Mapping;
use crate::runtime::preprocess::RgbImage;

/// Most msgpack items (values, keys included) a request may hold: decoded values are far
/// larger than their encoding, so a frame of many tiny items is refused before decoding.
pub const MAX_ITEMS: usize = 100_000;
/// Largest image side accepted.
pub const MAX_IMAGE_SIDE: usize = 8192;
/// Most proprio values accepted.
pub const MAX_STATE_LEN: usize = 4096;
/// Longest instruction accepted, in bytes.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;

/// Why a request was refused (sent back as the text of an error frame).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("malformed msgpack: {0}")]
    Malformed(String),
    #[error("the request must be a msgpack map")]
    NotAMap,
    #[error("missing key `{0}`")]
    Missing(String),
    #[error("`{key}`: {reason}")]
    Field { key: String, reason: String },
}

fn field(key: &str, reason: impl Into<String>) -> WireError {
    WireError::Field {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// What one request asks for.
#[derive(Debug)]
pub struct Request {
    pub image: RgbImage,
    pub state: Option<Vec<f64>>,
    pub prompt: String,
    pub reset: bool,
}

/// Counts the msgpack items of one value spanning all of `buf`, without allocating; refuses
/// more than `limit` items, truncated input, the reserved byte and trailing bytes.
pub fn check_items(buf: &[u8], limit: usize) -> Result<(), WireError> {
    let bad = |what: &str| WireError::Malformed(what.to_owned());
    let mut at = 0usize;
    let mut pending: u64 = 1;
    let mut items = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<usize, WireError> {
        let end = at
            .checked_add(n)
            .filter(|&e| e <= buf.len())
            .ok_or_else(|| bad("truncated"))?;
        let start = *at;
        *at = end;
        Ok(start)
    };
    let be = |at: &mut usize, n: usize| -> Result<u64, WireError> {
        let s = take(at, n)?;
        Ok(buf[s..s + n].iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
    };
    while pending > 0 {
        pending -= 1;
        items += 1;
        if items > limit {
            return Err(WireError::Malformed(format!("more than {limit} items")));
        }
        let m = buf[take(&mut at, 1)?];
        let skip: u64 = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
            0x80..=0x8f => {
                pending += 2 * u64::from(m & 0x0f);
                0
            }
            0x90..=0x9f => {
                pending += u64::from(m & 0x0f);
                0
            }
            0xa0..=0xbf => u64::from(m & 0x1f),
            0xc1 => return Err(bad("reserved byte 0xc1")),
            0xc4 | 0xd9 => be(&mut at, 1)?,
            0xc5 | 0xda => be(&mut at, 2)?,
            0xc6 | 0xdb => be(&mut at, 4)?,
            0xc7 => be(&mut at, 1)? + 1,
            0xc8 => be(&mut at, 2)? + 1,
            0xc9 => be(&mut at, 4)? + 1,
            0xca => 4,
            0xcb => 8,
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 => 2,
            0xce | 0xd2 => 4,
            0xcf | 0xd3 => 8,
            0xd4 => 2,
            0xd5 => 3,
            0xd6 => 5,
            0xd7 => 9,
            0xd8 => 17,
            0xdc => {
                pending += be(&mut at, 2)?;
                0
            }
            0xdd => {
                pending += be(&mut at, 4)?;
                0
            }
            0xde => {
                pending += 2 * be(&mut at, 2)?;
                0
            }
            0xdf => {
                pending += 2 * be(&mut at, 4)?;
                0
            }
        };
        take(&mut at, usize::try_from(skip).map_err(|_| bad("length overflows"))?)?;
    }
    if at != buf.len() {
        return Err(bad("trailing bytes after the request map"));
    }
    Ok(())
}

/// A key's text, for str and bin keys alike.
fn key_text<'m>(v: &'m ValueRef<'_>) -> Option<&'m str> {
    match v {
        ValueRef::String(s) => s.as_str(),
        ValueRef::Binary(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

fn get<'m, 'a>(map: &'m [(ValueRef<'a>, ValueRef<'a>)], key: &str) -> Option<&'m ValueRef<'a>> {
    map.iter().find(|(k, _)| key_text(k) == Some(key)).map(|(_, v)| v)
}

/// `key` as a top-level entry, else as a `/`-separated path through nested maps.
fn lookup<'m, 'a>(map: &'m [(ValueRef<'a>, ValueRef<'a>)], key: &str) -> Option<&'m ValueRef<'a>> {
    if let Some(v) = get(map, key) {
        return Some(v);
    }
    let mut parts = key.split('/');
    let mut cur = get(map, parts.next()?)?;
    for part in parts {
        match cur {
            ValueRef::Map(m) => cur = get(m, part)?,
            _ => return None,
        }
    }
    Some(cur)
}

/// Element types numpy arrays may carry here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    U8,
    I32,
    I64,
    F32,
    F64,
}

impl Dtype {
    fn parse(s: &str) -> Option<Self> {
        let (order, code) = s.split_at_checked(1)?;
        // Little-endian (or byte order irrelevant) only; numpy writes `<`, `|` or `>`.
        if !matches!(order, "<" | "|" | "=") {
            return None;
        }
        Some(match code {
            "u1" => Self::U8,
            "i4" => Self::I32,
            "i8" => Self::I64,
            "f4" => Self::F32,
            "f8" => Self::F64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::I32 | Self::F32 => 4,
            Self::I64 | Self::F64 => 8,
        }
    }

    /// numpy's dtype string.
    pub fn numpy(self) -> &'static str {
        match self {
            Self::U8 => "|u1",
            Self::I32 => "<i4",
            Self::I64 => "<i8",
            Self::F32 => "<f4",
            Self::F64 => "<f8",
        }
    }
}

/// A decoded numpy array: its bytes checked against shape and dtype.
struct NdArray<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    data: &'a [u8],
}

impl NdArray<'_> {
    /// Element `i` as f64 (the length was checked).
    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        let size = self.dtype.size();
        self.data.chunks_exact(size).map(move |c| match self.dtype {
            Dtype::U8 => f64::from(c[0]),
            Dtype::I32 => f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            Dtype::I64 => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64,
            Dtype::F32 => f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            Dtype::F64 => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        })
    }
}

/// The array a msgpack-numpy map describes, `None` if `v` is no such map.
fn ndarray<'a>(key: &str, v: &ValueRef<'a>) -> Result<Option<NdArray<'a>>, WireError> {
    let ValueRef::Map(m) = v else { return Ok(None) };
    if get(m, "__ndarray__").is_none() {
        return Ok(None);
    }
    let dtype_text = match get(m, "dtype") {
        Some(d) => key_text(d).ok_or_else(|| field(key, "`dtype` is not a string"))?,
        None => return Err(field(key, "array without `dtype`")),
    };
    let dtype = Dtype::parse(dtype_text).ok_or_else(|| {
        field(
            key,
            format!("unsupported dtype `{dtype_text}` (uint8, int32, int64, float32 or float64, little-endian)"),
        )
    })?;
    let shape = match get(m, "shape") {
        Some(ValueRef::Array(dims)) => dims
            .iter()
            .map(|d| match d {
                ValueRef::Integer(i) => i.as_u64().and_then(|u| usize::try_from(u).ok()),
                _ => None,
            })
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| field(key, "`shape` must be a list of non-negative integers"))?,
        _ => return Err(field(key, "array without a `shape` list")),
    };
    let data = match get(m, "data") {
        Some(ValueRef::Binary(b)) => *b,
        _ => return Err(field(key, "array without `data` bytes")),
    };
    let expected = shape
        .iter()
        .try_fold(dtype.size(), |n, &d| n.checked_mul(d))
        .ok_or_else(|| field(key, "shape overflows"))?;
    if expected != data.len() {
        return Err(field(
            key,
            format!(
                "shape {shape:?} of {dtype_text} needs {expected} bytes, `data` has {}",
                data.len()
            ),
        ));
    }
    Ok(Some(NdArray { dtype, shape, data }))
}

/// An RGB image from uint8 HxWx3 or 3xHxW, or float32/float64 in [0, 1] (scaled by 255 and
/// rounded).
fn image(key: &str, v: &ValueRef<'_>) -> Result<RgbImage, WireError> {
    let a = ndarray(key, v)?.ok_or_else(|| field(key, "expected a numpy array (msgpack-numpy map)"))?;
    let (h, w, chw) = match a.shape.as_slice() {
        [h, w, 3] => (*h, *w, false),
        [3, h, w] => (*h, *w, true),
        s => return Err(field(key, format!("image shape must be HxWx3 or 3xHxW, got {s:?}"))),
    };
    if h == 0 || w == 0 || h > MAX_IMAGE_SIDE || w > MAX_IMAGE_SIDE {
        return Err(field(
            key,
            format!("image sides must be 1 to {MAX_IMAGE_SIDE}, got {h}x{w}"),
        ));
    }
    let to_u8: fn(f64) -> u8 = match a.dtype {
        Dtype::U8 => |x| x as u8,
        Dtype::F32 | Dtype::F64 => |x| (x.clamp(0.0, 1.0) * 255.0).round() as u8,
        Dtype::I32 | Dtype::I64 => {
            return Err(field(
                key,
                format!(
                    "image dtype must be uint8 (or float in [0, 1]), got {}",
                    a.dtype.numpy()
                ),
            ))
        }
    };
    let values: Vec<u8> = a.values().map(to_u8).collect();
    let rgb = if chw {
        let plane = h * w;
        (0..plane)
            .flat_map(|i| [values[i], values[plane + i], values[2 * plane + i]])
            .collect()
    } else {
        values
    };
    RgbImage::new(w as u32, h as u32, rgb).map_err(|e| field(key, e.to_string()))
}

/// A proprio vector from a numeric array (any shape, flattened) or a list of numbers.
fn state(key: &str, v: &ValueRef<'_>) -> Result<Vec<f64>, WireError> {
    let values: Vec<f64> = match ndarray(key, v)? {
        Some(a) => {
            if a.data.len() / a.dtype.size() > MAX_STATE_LEN {
                return Err(field(key, format!("more than {MAX_STATE_LEN} values")));
            }
            a.values().collect()
        }
        None => match v {
            ValueRef::Array(items) if items.len() <= MAX_STATE_LEN => items
                .iter()
                .map(|x| match x {
                    ValueRef::F32(f) => Some(f64::from(*f)),
                    ValueRef::F64(f) => Some(*f),
                    ValueRef::Integer(i) => i.as_f64(),
                    _ => None,
                })
                .collect::<Option<Vec<f64>>>()
                .ok_or_else(|| field(key, "expected numbers"))?,
            _ => return Err(field(key, "expected a numeric array or list")),
        },
    };
    if values.iter().any(|x| !x.is_finite()) {
        return Err(field(key, "values must be finite"));
    }
    Ok(values)
}

/// Decodes and checks one request frame under `mapping`.
pub fn decode_request(frame: &[u8], mapping: &Mapping) -> Result<Request, WireError> {
    check_items(frame, MAX_ITEMS)?;
    let mut rd = frame;
    let root = rmpv::decode::read_value_ref(&mut rd).map_err(|e| WireError::Malformed(e.to_string()))?;
    let ValueRef::Map(map) = &root else {
        return Err(WireError::NotAMap);
    };
    let image = image(
        &mapping.image,
        lookup(map, &mapping.image).ok_or_else(|| WireError::Missing(mapping.image.clone()))?,
    )?;
    let state = match &mapping.state {
        Some(k) => lookup(map, k).map(|v| state(k, v)).transpose()?,
        None => None,
    };
    let prompt = match lookup(map, &mapping.prompt) {
        Some(v) => key_text(v).ok_or_else(|| field(&mapping.prompt, "expected a string"))?,
        None => return Err(WireError::Missing(mapping.prompt.clone())),
    };
    if prompt.len() > MAX_PROMPT_BYTES {
        return Err(field(&mapping.prompt, format!("longer than {MAX_PROMPT_BYTES} bytes")));
    }
    let reset = match lookup(map, &mapping.reset) {
        None | Some(ValueRef::Nil) => false,
        Some(ValueRef::Boolean(b)) => *b,
        Some(ValueRef::Integer(i)) => i.as_i64() != Some(0),
        Some(_) => return Err(field(&mapping.reset, "expected a boolean")),
    };
    Ok(Request {
        image,
        state,
        prompt: prompt.to_owned(),
        reset,
    })
}

/// A msgpack-numpy array map (bin keys, as openpi-client's decoder looks them up).
pub fn ndarray_value(dtype: Dtype, shape: &[usize], data: Vec<u8>) -> Value {
    Value::Map(vec![
        (Value::Binary(b"__ndarray__".to_vec()), Value::Boolean(true)),
        (Value::Binary(b"data".to_vec()), Value::Binary(data)),
        (Value::Binary(b"dtype".to_vec()), Value::from(dtype.numpy())),
        (
            Value::Binary(b"shape".to_vec()),
            Value::Array(shape.iter().map(|&d| Value::from(d as u64)).collect()),
        ),
    ])
}

/// float32 array of `values` in `shape`.
pub fn f32_array(values: impl IntoIterator<Item = f64>, shape: &[usize]) -> Value {
    let data = values.into_iter().flat_map(|v| (v as f32).to_le_bytes()).collect();
    ndarray_value(Dtype::F32, shape, data)
}

/// int64 array of `values` (1-D).
pub fn i64_array(values: &[i64]) -> Value {
    let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    ndarray_value(Dtype::I64, &[values.len()], data)
}

/// A msgpack map with str keys.
pub fn str_map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
}

/// Encodes a value into one frame.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

/// Reads a whole frame as a value (clients and tests).
pub fn decode_value(frame: &[u8]) -> Result<Value, WireError> {
    check_items(frame, MAX_ITEMS)?;
    let mut rd = frame;
    rmpv::decode::read_value(&mut rd).map_err(|e| WireError::Malformed(e.to_string()))
}

/// A float array from a msgpack-numpy map value (clients and tests): `(shape, values)`.
pub fn read_f64_array(v: &Value) -> Option<(Vec<usize>, Vec<f64>)> {
    let Value::Map(m) = v else { return None };
    let entry = |k: &str| {
        m.iter()
            .find(|(key, _)| match key {
                Value::Binary(b) => b.as_slice() == k.as_bytes(),
                Value::String(s) => s.as_str() == Some(k),
                _ => false,
            })
            .map(|(_, v)| v)
    };
    let dtype = Dtype::parse(entry("dtype")?.as_str()?)?;
    let shape: Vec<usize> = entry("shape")?
        .as_array()?
        .iter()
        .map(|d| d.as_u64().and_then(|u| usize::try_from(u).ok()))
        .collect::<Option<_>>()?;
    let data = entry("data")?.as_slice()?;
    let a = NdArray {
        dtype,
        shape: shape.clone(),
        data,
    };
    let n = shape.iter().product::<usize>();
    if n * dtype.size() != data.len() {
        return None;
    }
    Some((shape, a.values().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(image: Value, extra: Vec<(&str, Value)>) -> Vec<u8> {
        let mut entries = vec![("observation/image", image), ("prompt", Value::from("pick up the cup"))];
        entries.extend(extra);
        encode(&str_map(entries))
    }

    #[test]
    fn decodes_hwc_chw_and_float_images() {
        let m = Mapping::default();
        let hwc: Vec<u8> = (0..2 * 4 * 3).map(|i| i as u8).collect();
        let r = decode_request(&request(ndarray_value(Dtype::U8, &[2, 4, 3], hwc.clone()), vec![]), &m).unwrap();
        assert_eq!((r.image.width(), r.image.height()), (4, 2));
        assert_eq!(r.image.as_raw(), hwc.as_slice());
        // The same pixels channel-first.
        let chw: Vec<u8> = (0..3).flat_map(|c| hwc.iter().skip(c).step_by(3).copied()).collect();
        let r = decode_request(&request(ndarray_value(Dtype::U8, &[3, 2, 4], chw), vec![]), &m).unwrap();
        assert_eq!(r.image.as_raw(), hwc.as_slice());
        let f = f32_array(hwc.iter().map(|&x| f64::from(x) / 255.0), &[2, 4, 3]);
        let r = decode_request(&request(f, vec![("reset", Value::Boolean(true))]), &m).unwrap();
        assert_eq!(r.image.as_raw(), hwc.as_slice());
        assert!(r.reset);
    }

    #[test]
    fn refuses_bad_requests_with_the_reason() {
        let m = Mapping::default();
        let ok_image = || ndarray_value(Dtype::U8, &[2, 2, 3], vec![0; 12]);
        let err = |frame: &[u8]| decode_request(frame, &m).unwrap_err().to_string();
        assert!(err(b"\xc1").contains("malformed"));
        assert!(err(&[0x92, 0x01]).contains("truncated"));
        assert!(err(&encode(&Value::from(3))).contains("map"));
        // An array of 100 001 nils: refused by count before decoding.
        let mut many = vec![0xdd, 0x00, 0x01, 0x86, 0xa1];
        many.extend(std::iter::repeat_n(0xc0, 100_001));
        assert!(err(&many).contains("more than 100000 items"));
        let no_prompt = encode(&str_map(vec![("observation/image", ok_image())]));
        assert_eq!(err(&no_prompt), "missing key `prompt`");
        let wrong_dtype = ndarray_value(Dtype::I64, &[2, 2, 3], vec![0; 96]);
        assert!(err(&request(wrong_dtype, vec![])).contains("uint8"));
        let short = ndarray_value(Dtype::U8, &[200, 200, 3], vec![0; 12]);
        assert!(err(&request(short, vec![])).contains("needs 120000 bytes"));
        let flat = ndarray_value(Dtype::U8, &[12], vec![0; 12]);
        assert!(err(&request(flat, vec![])).contains("HxWx3"));
        let bad_state = vec![("observation/state", Value::from("x"))];
        assert!(err(&request(ok_image(), bad_state)).contains("observation/state"));
    }

    #[test]
    fn nested_keys_and_state() {
        let m = Mapping::from_yaml("image: images/cam_high\nstate: state\n").unwrap();
        let frame = encode(&str_map(vec![
            (
                "images",
                str_map(vec![("cam_high", ndarray_value(Dtype::U8, &[3, 1, 1], vec![1, 2, 3]))]),
            ),
            ("state", f32_array([0.5, -1.0], &[2])),
            ("prompt", Value::Binary(b"go".to_vec())),
        ]));
        let r = decode_request(&frame, &m).unwrap();
        assert_eq!(r.image.as_raw(), &[1, 2, 3]);
        assert_eq!(r.state, Some(vec![0.5, -1.0]));
        assert_eq!(r.prompt, "go");
        let (shape, values) = read_f64_array(&f32_array([1.0, 2.0], &[1, 2])).unwrap();
        assert_eq!((shape, values), (vec![1, 2], vec![1.0, 2.0]));
    }
}
