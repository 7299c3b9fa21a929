//! A safe reader for files written by `torch.save` (the zip format of PyTorch ≥ 1.6): action
//! decoder `.pt` state dicts and PyTorch-Lightning `.ckpt` files.
//!
//! Layout: `<archive>/data.pkl` (a pickle whose tensors refer to storages through persistent ids
//! `('storage', torch.<Dtype>Storage, key, location, numel)`), `<archive>/data/<key>` (raw
//! little-endian storage bytes) and `<archive>/byteorder`. The pickle is interpreted by
//! [`pickle`], which never imports or runs anything; unknown globals (optimizer states, Lightning
//! hyper-parameters, ...) stay inert, so a checkpoint loads as long as the requested sub-dict holds
//! plain tensors. Every failure is an error naming the file (and key); work is bounded by the
//! file size and [`pickle::Limits`].
//!
//! Memory is bounded by a budget tied to the file size ([`BUDGET_FILE_MULTIPLE`] × size +
//! [`BUDGET_BASE_BYTES`]): every storage is read once and charged once, every tensor that is not
//! a whole storage is charged its own bytes, and so is the text of every key; all of it is
//! checked before the first storage is read, so a file whose tensors all view one huge expanded
//! storage, or whose keys repeat one huge memoised string, fails at once with
//! [`ModelError::Budget`]. Contiguous views share their storage; only strided ones are copied.
pub mod pickle;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use self::pickle::{Limits, Node, Pickle, Value};
use super::error::{ModelError, Result};

/// Largest `data.pkl` accepted (real checkpoints hold a few MB of pickle at most).
const MAX_PICKLE_BYTES: u64 = 1 << 28;
/// Largest expansion a deflated zip entry can have (deflate's maximum ratio is about 1032:1).
const MAX_DEFLATE_RATIO: u64 = 1100;
/// Most elements a zero-stride (expanded) view may materialise beyond its storage's size.
const MAX_EXPANDED_NUMEL: i64 = 1 << 26;
/// Most `Parameter(Parameter(...))` wrappers followed (torch writes one).
const MAX_PARAMETER_NESTING: usize = 4;
/// Most dict levels followed when flattening nested state dicts.
const MAX_NESTING: usize = 16;
/// Most dimensions a tensor may have (torch itself stops at 64).
const MAX_RANK: usize = 64;
/// Longest storage key accepted (torch writes small decimal integers).
const MAX_STORAGE_KEY_BYTES: usize = 64;
/// Bytes one file may make the reader build, per byte of the file...
pub const BUDGET_FILE_MULTIPLE: u64 = 2;
/// ...plus this much (small files with a few expanded views).
pub const BUDGET_BASE_BYTES: u64 = 64 << 20;
/// The budget rule, as error messages state it.
const BUDGET_RULE: &str = "2 × file size + 64 MiB";
/// Most entries [`read_scalars`] returns (hyper-parameter dicts hold a few dozen).
const MAX_SCALAR_ENTRIES: usize = 4096;
/// Bookkeeping bytes charged per tensor record on top of its sizes and strides.
const META_BYTES: u64 = 128;

/// Where a tensor's data lies inside a storage, as recorded by `_rebuild_tensor_v2`.
#[derive(Clone, Debug)]
struct TensorMeta {
    storage_key: String,
    kind: Kind,
    storage_numel: i64,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

/// Reads the state dict in a `torch.save` file as contiguous CPU tensors, in file order.
///
/// `subkey` selects an entry of the top-level dict (e.g. `"state_dict"` in a Lightning `.ckpt`);
/// `None` reads the top level itself. Nested dicts of tensors are flattened with `.`-joined keys;
/// values that are not tensors or dicts are skipped.
pub fn read_state_dict(path: &Path, subkey: Option<&str>) -> Result<Vec<(String, Tensor)>> {
    let file = std::fs::File::open(path).map_err(|source| ModelError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_state_dict_from(std::io::BufReader::new(file), path, subkey)
}

/// As [`read_state_dict`], from any seekable reader; `label` names the source in errors.
pub fn read_state_dict_from<R: Read + Seek>(
    mut reader: R,
    label: &Path,
    subkey: Option<&str>,
) -> Result<Vec<(String, Tensor)>> {
    let io = |source| ModelError::Io {
        path: label.to_owned(),
        source,
    };
    let file_len = reader.seek(SeekFrom::End(0)).map_err(io)?;
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let budget = Budget::for_file(file_len, label);
    let mut archive = TorchArchive::open(reader, label)?;
    let pickle = archive.pickle()?;
    let mut ctx = Ctx {
        pickle: &pickle,
        label,
        budget,
    };
    let root = match subkey {
        None => pickle.root,
        Some(key) => pickle.dict_get(pickle.root, key).ok_or_else(|| {
            let keys = pickle.dict_keys(pickle.root);
            ctx.error(format!("no top-level entry `{key}`; available: {}", keys.join(", ")))
        })?,
    };
    let mut metas = Vec::new();
    let mut seen = HashSet::new();
    ctx.collect(root, "", 0, &mut seen, &mut metas)?;
    if metas.is_empty() && pickle.as_dict(root).is_none() {
        return Err(ctx.error(format!("expected a dict of tensors, found {}", pickle.describe(root))));
    }
    plan(&metas, &mut ctx.budget).map_err(|e| match e {
        PlanError::Budget(e) => e,
        PlanError::Tensor(name, why) => ctx.error(format!("tensor `{name}`: {why}")),
    })?;
    archive.materialise(metas)
}

/// What one file may make the reader build, in bytes (see the module docs).
struct Budget {
    limit: u64,
    used: u64,
    path: PathBuf,
}

impl Budget {
    fn for_file(file_len: u64, path: &Path) -> Self {
        Self {
            limit: file_len
                .saturating_mul(BUDGET_FILE_MULTIPLE)
                .saturating_add(BUDGET_BASE_BYTES),
            used: 0,
            path: path.to_owned(),
        }
    }

    /// Adds `bytes` for `what` (built only on failure), failing once the total passes the limit.
    fn charge(&mut self, bytes: u64, what: impl FnOnce() -> String) -> Result<()> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(ModelError::Budget {
                path: self.path.clone(),
                what: what(),
                needed: self.used,
                limit: self.limit,
                rule: BUDGET_RULE,
            });
        }
        Ok(())
    }
}

/// Why [`plan`] refused the tensors.
enum PlanError {
    Budget(ModelError),
    /// Tensor name and reason.
    Tensor(String, String),
}

/// Checks every tensor against its storage before anything is read: one kind and one size per
/// storage key, views inside their storage, and the bytes of storages (each once) and of tensors
/// that are not whole storages within `budget`.
fn plan(metas: &[(String, TensorMeta)], budget: &mut Budget) -> std::result::Result<(), PlanError> {
    let mut storages: HashMap<&str, (Kind, i64)> = HashMap::new();
    for (name, m) in metas {
        let bad = |why: String| PlanError::Tensor(name.clone(), why);
        let elt = m.kind.elt_size_in_bytes() as u64;
        match storages.get(m.storage_key.as_str()) {
            Some(&(kind, numel)) if (kind, numel) != (m.kind, m.storage_numel) => {
                return Err(bad(format!(
                    "storage {} is declared as {} × {:?} here and {} × {:?} elsewhere",
                    m.storage_key, m.storage_numel, m.kind, numel, kind
                )));
            }
            Some(_) => {}
            None => {
                storages.insert(&m.storage_key, (m.kind, m.storage_numel));
                let bytes = (m.storage_numel as u64).saturating_mul(elt);
                budget
                    .charge(bytes, || format!("storage {} of tensor `{name}`", m.storage_key))
                    .map_err(PlanError::Budget)?;
            }
        }
        let numel = check_view(m).map_err(bad)?;
        let is_whole = m.offset == 0 && numel == m.storage_numel && is_contiguous_layout(&m.size, &m.stride);
        if !is_whole {
            let bytes = (numel as u64).saturating_mul(elt);
            budget
                .charge(bytes, || {
                    format!("tensor `{name}` ({numel} elements viewing storage {})", m.storage_key)
                })
                .map_err(PlanError::Budget)?;
        }
    }
    Ok(())
}

/// Whether `stride` is the row-major layout of `size` (dimensions of size 1 may have any stride).
fn is_contiguous_layout(size: &[i64], stride: &[i64]) -> bool {
    let mut expected = 1i64;
    for (&s, &st) in size.iter().zip(stride).rev() {
        if s != 1 && st != expected {
            return false;
        }
        expected = expected.saturating_mul(s);
    }
    true
}

/// A plain value of a pickled dict (e.g. a Lightning checkpoint's `hyper_parameters`): numbers,
/// text and flags as they are, anything else only described.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Another kind of value (container, object, big integer), as a short description.
    Other(String),
}

/// The string-keyed entries of the top-level dict entry `key` (e.g. `"hyper_parameters"`) of a
/// `torch.save` file, as [`Scalar`]s; `None` when the file has no such entry. No storage is read.
pub fn read_scalars(path: &Path, key: &str) -> Result<Option<Vec<(String, Scalar)>>> {
    let file = std::fs::File::open(path).map_err(|source| ModelError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut archive = TorchArchive::open(std::io::BufReader::new(file), path)?;
    let pickle = archive.pickle()?;
    let Some(dict) = pickle.dict_get(pickle.root, key) else {
        return Ok(None);
    };
    let Some(items) = pickle.as_dict(dict) else {
        return Err(archive.error(format!("`{key}` is {}, not a dict", pickle.describe(dict))));
    };
    let scalar = |v: Value| match v {
        Value::None => Scalar::None,
        Value::Bool(b) => Scalar::Bool(b),
        Value::Int(i) => Scalar::Int(i),
        Value::Float(f) => Scalar::Float(f),
        Value::Ref(_) => match pickle.as_str(v) {
            Some(s) => Scalar::Str(truncated(s)),
            None => Scalar::Other(pickle.describe(v)),
        },
    };
    Ok(Some(
        items
            .iter()
            .take(MAX_SCALAR_ENTRIES)
            .filter_map(|&(k, v)| pickle.as_str(k).map(|k| (truncated(k), scalar(v))))
            .collect(),
    ))
}

/// Keeps the entries whose key starts with `prefix` and removes the prefix (e.g. `lam.` in the
/// latent action model checkpoint).
pub fn strip_prefix(tensors: Vec<(String, Tensor)>, prefix: &str) -> Vec<(String, Tensor)> {
    tensors
        .into_iter()
        .filter_map(|(k, t)| k.strip_prefix(prefix).map(|k| (k.to_owned(), t)))
        .collect()
}

/// Whether `path` looks like a `torch.save` zip archive (starts with a zip local header).
pub fn is_torch_zip(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"PK\x03\x04"
}

struct TorchArchive<R: Read + Seek> {
    zip: zip::ZipArchive<R>,
    prefix: String,
    label: PathBuf,
}

impl<R: Read + Seek> TorchArchive<R> {
    fn open(reader: R, label: &Path) -> Result<Self> {
        let format = |reason: String| ModelError::Format {
            path: label.to_owned(),
            reason,
        };
        let zip = zip::ZipArchive::new(reader).map_err(|e| {
            format(format!(
                "not a torch.save zip archive ({e}); legacy (pre-1.6) pickles are not supported"
            ))
        })?;
        let pkl = zip
            .file_names()
            .filter(|n| n.ends_with("data.pkl"))
            .min_by_key(|n| n.len())
            .map(str::to_owned)
            .ok_or_else(|| format("the archive has no data.pkl".into()))?;
        let prefix = pkl.trim_end_matches("data.pkl").to_owned();
        let mut archive = Self {
            zip,
            prefix,
            label: label.to_owned(),
        };
        if let Some(order) = archive.read_entry_opt("byteorder", 64)? {
            if order != b"little" {
                return Err(archive.error(format!(
                    "byte order `{}` is not supported (little-endian only)",
                    String::from_utf8_lossy(&order)
                )));
            }
        }
        Ok(archive)
    }

    fn error(&self, reason: String) -> ModelError {
        ModelError::Format {
            path: self.label.clone(),
            reason,
        }
    }

    fn pickle(&mut self) -> Result<Pickle> {
        let bytes = self
            .read_entry_opt("data.pkl", MAX_PICKLE_BYTES)?
            .ok_or_else(|| self.error("data.pkl is missing".into()))?;
        pickle::parse(&bytes, Limits::default()).map_err(|e| self.error(format!("data.pkl: {e}")))
    }

    /// Reads `<prefix><name>` completely if present, refusing entries larger than `max` bytes or
    /// whose declared size the data does not match.
    fn read_entry_opt(&mut self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let full = format!("{}{name}", self.prefix);
        let label = self.label.clone();
        let format = |reason: String| ModelError::Format {
            path: label.clone(),
            reason,
        };
        let mut entry = match self.zip.by_name(&full) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(format(format!("{full}: {e}"))),
        };
        let size = entry.size();
        if size > max {
            return Err(format(format!("{full}: {size} bytes exceeds the limit of {max}")));
        }
        let ratio_ok = match entry.compression() {
            zip::CompressionMethod::Stored => entry.compressed_size() == size,
            _ => size <= entry.compressed_size().saturating_mul(MAX_DEFLATE_RATIO),
        };
        if !ratio_ok {
            return Err(format(format!(
                "{full}: declared size {size} is inconsistent with the stored data"
            )));
        }
        let mut buf = Vec::new();
        let cap = usize::try_from(size).map_err(|_| format(format!("{full}: too large")))?;
        buf.try_reserve_exact(cap)
            .map_err(|_| format(format!("{full}: cannot allocate {size} bytes")))?;
        // One byte more than declared, so the zip reader reaches its end and verifies the CRC.
        (&mut entry)
            .take(size.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| format(format!("{full}: {e} (truncated or corrupt?)")))?;
        if buf.len() as u64 != size {
            return Err(format(format!(
                "{full}: holds {} bytes, expected {size} (truncated?)",
                buf.len()
            )));
        }
        Ok(Some(buf))
    }

    /// Loads each storage once (dropping it after its last user) and cuts the tensors out of it
    /// (`metas` checked by [`plan`]).
    fn materialise(&mut self, metas: Vec<(String, TensorMeta)>) -> Result<Vec<(String, Tensor)>> {
        let mut uses: HashMap<String, usize> = HashMap::new();
        for (_, m) in &metas {
            *uses.entry(m.storage_key.clone()).or_default() += 1;
        }
        let mut cache: HashMap<String, Tensor> = HashMap::new();
        let mut out = Vec::with_capacity(metas.len());
        for (name, m) in metas {
            let storage = match cache.get(&m.storage_key) {
                Some(s) => s.shallow_clone(),
                None => {
                    let s = self.load_storage(&name, &m)?;
                    cache.insert(m.storage_key.clone(), s.shallow_clone());
                    s
                }
            };
            let t = view(&storage, &m)
                .map_err(|e| self.error(format!("tensor `{name}`: cannot view its storage ({e})")))?;
            out.push((name, t));
            if let Some(n) = uses.get_mut(&m.storage_key) {
                *n -= 1;
                if *n == 0 {
                    cache.remove(&m.storage_key);
                }
            }
        }
        Ok(out)
    }

    fn load_storage(&mut self, name: &str, m: &TensorMeta) -> Result<Tensor> {
        let elt = m.kind.elt_size_in_bytes() as u64;
        let expected = (m.storage_numel as u64).checked_mul(elt).ok_or_else(|| {
            self.error(format!(
                "tensor `{name}`: storage of {} elements overflows",
                m.storage_numel
            ))
        })?;
        let entry = format!("data/{}", m.storage_key);
        let bytes = self.read_entry_opt(&entry, expected)?.ok_or_else(|| {
            self.error(format!(
                "tensor `{name}`: storage entry {}{entry} is missing",
                self.prefix
            ))
        })?;
        if bytes.len() as u64 != expected {
            return Err(self.error(format!(
                "tensor `{name}`: storage {} holds {} bytes, expected {expected} ({} × {:?})",
                m.storage_key,
                bytes.len(),
                m.storage_numel,
                m.kind
            )));
        }
        // Bool bytes other than 0/1 are not valid torch bools: read them as bytes and compare.
        let raw_kind = if m.kind == Kind::Bool { Kind::Uint8 } else { m.kind };
        let t = Tensor::f_from_data_size(&bytes, &[m.storage_numel], raw_kind).and_then(|t| {
            if m.kind == Kind::Bool {
                t.f_ne(0)
            } else {
                Ok(t)
            }
        });
        t.map_err(|e| self.error(format!("tensor `{name}`: {e}")))
    }
}

/// Checks that the view `m` describes lies inside its storage and returns its element count.
fn check_view(m: &TensorMeta) -> std::result::Result<i64, String> {
    if m.size.len() != m.stride.len() {
        return Err(format!("{} sizes but {} strides", m.size.len(), m.stride.len()));
    }
    if m.offset < 0 || m.size.iter().any(|&s| s < 0) || m.stride.iter().any(|&s| s < 0) {
        return Err("negative offset, size or stride".into());
    }
    let numel = m
        .size
        .iter()
        .try_fold(1i64, |acc, &s| acc.checked_mul(s))
        .ok_or("element count overflows")?;
    if numel > m.storage_numel.max(MAX_EXPANDED_NUMEL) {
        return Err(format!("{numel} elements from a storage of {}", m.storage_numel));
    }
    if numel > 0 {
        let last = m
            .size
            .iter()
            .zip(&m.stride)
            .try_fold(m.offset, |acc, (&s, &st)| {
                (s - 1).checked_mul(st).and_then(|d| acc.checked_add(d))
            })
            .ok_or("extent overflows")?;
        if last >= m.storage_numel {
            return Err(format!("reaches element {last} of a storage of {}", m.storage_numel));
        }
    }
    Ok(numel)
}

/// The tensor `m` describes: a view sharing `storage` when contiguous, else a contiguous copy
/// (bounds checked before viewing).
fn view(storage: &Tensor, m: &TensorMeta) -> std::result::Result<Tensor, String> {
    check_view(m)?;
    if storage.kind() != m.kind || storage.size() != [m.storage_numel] {
        return Err(format!(
            "storage holds {:?} {:?}, the tensor expects {} × {:?}",
            storage.size(),
            storage.kind(),
            m.storage_numel,
            m.kind
        ));
    }
    let t = storage
        .f_as_strided(m.size.as_slice(), m.stride.as_slice(), m.offset)
        .map_err(|e| e.to_string())?;
    if t.is_contiguous() {
        Ok(t)
    } else {
        let mut out = Tensor::f_empty(m.size.as_slice(), (m.kind, tch::Device::Cpu)).map_err(|e| e.to_string())?;
        out.f_copy_(&t).map_err(|e| e.to_string())?;
        Ok(out)
    }
}

struct Ctx<'a> {
    pickle: &'a Pickle,
    label: &'a Path,
    /// Charged for key text and tensor records while walking.
    budget: Budget,
}

impl Ctx<'_> {
    fn error(&self, reason: String) -> ModelError {
        ModelError::Format {
            path: self.label.to_owned(),
            reason,
        }
    }

    /// Walks a dict, recording the tensors (nested dicts flattened with `.`).
    fn collect(
        &mut self,
        dict: Value,
        prefix: &str,
        depth: usize,
        seen: &mut HashSet<usize>,
        out: &mut Vec<(String, TensorMeta)>,
    ) -> Result<()> {
        let p = self.pickle;
        let Some(items) = p.as_dict(dict) else { return Ok(()) };
        if let Value::Ref(id) = dict {
            if !seen.insert(id) {
                return Ok(());
            }
        }
        for &(k, v) in items {
            let is_dict = p.as_dict(v).is_some() && depth < MAX_NESTING;
            if !is_dict && !self.is_tensor(v) {
                continue;
            }
            let key: std::borrow::Cow<str> = match k {
                Value::Int(i) => i.to_string().into(),
                k => match p.as_str(k) {
                    Some(s) => s.into(),
                    None => continue,
                },
            };
            // The name is charged before it is built: a huge key repeated a million times fails
            // here, not in the allocator.
            let len = (prefix.len() + 1 + key.len()) as u64;
            self.budget.charge(len, || {
                format!("key text (a key of {} bytes under `{}`)", key.len(), truncated(prefix))
            })?;
            let name = if prefix.is_empty() {
                key.into_owned()
            } else {
                format!("{prefix}.{key}")
            };
            if let Some(meta) = self.tensor_meta(v, &name)? {
                let record = META_BYTES + 16 * meta.size.len() as u64;
                self.budget
                    .charge(record, || format!("tensor records (at `{}`)", truncated(&name)))?;
                out.push((name, meta));
            } else if is_dict {
                self.collect(v, &name, depth + 1, seen, out)?;
            }
        }
        Ok(())
    }

    /// Whether `v` is built by one of torch's rebuild functions (checked in full by
    /// [`Self::tensor_meta`]).
    fn is_tensor(&self, v: Value) -> bool {
        let p = self.pickle;
        let Some(Node::Object { class, .. }) = p.node(v) else {
            return false;
        };
        p.as_global(*class)
            .is_some_and(|(module, func)| module == "torch._utils" && func.starts_with("_rebuild"))
    }

    /// `Some` if `v` is a tensor rebuilt by one of torch's tensor/parameter constructors.
    fn tensor_meta(&self, v: Value, name: &str) -> Result<Option<TensorMeta>> {
        self.tensor_meta_at(v, name, 0)
    }

    fn tensor_meta_at(&self, v: Value, name: &str, depth: usize) -> Result<Option<TensorMeta>> {
        let p = self.pickle;
        let Some(Node::Object { class, args, .. }) = p.node(v) else {
            return Ok(None);
        };
        let Some((module, func)) = p.as_global(*class) else {
            return Ok(None);
        };
        let args = p.as_tuple(*args).unwrap_or(&[]);
        let bad = |what: &str| self.error(format!("tensor `{name}`: {what}"));
        match (module, func) {
            ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
                let inner = *args.first().ok_or_else(|| bad("parameter without data"))?;
                if depth >= MAX_PARAMETER_NESTING {
                    return Err(bad("parameters nested too deeply"));
                }
                match self.tensor_meta_at(inner, name, depth + 1)? {
                    Some(m) => Ok(Some(m)),
                    None => Err(bad("parameter data is not a tensor")),
                }
            }
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                if args.len() < 4 {
                    return Err(bad("too few rebuild arguments"));
                }
                let (storage_key, kind, storage_numel) = self.storage(args[0]).map_err(|e| bad(&e))?;
                let offset = p
                    .as_int(args[1])
                    .ok_or_else(|| bad("storage offset is not an integer"))?;
                let ints = |v: Value, what: &str| -> Result<Vec<i64>> {
                    if p.as_tuple(v).is_some_and(|t| t.len() > MAX_RANK) {
                        return Err(bad(&format!("{what} has more than {MAX_RANK} dimensions")));
                    }
                    p.as_tuple(v)
                        .and_then(|t| t.iter().map(|&x| p.as_int(x)).collect::<Option<Vec<i64>>>())
                        .ok_or_else(|| bad(&format!("{what} is not a tuple of integers")))
                };
                let size = ints(args[2], "size")?;
                let stride = ints(args[3], "stride")?;
                Ok(Some(TensorMeta {
                    storage_key,
                    kind,
                    storage_numel,
                    offset,
                    size,
                    stride,
                }))
            }
            ("torch._utils", f) if f.starts_with("_rebuild") => Err(bad(&format!("unsupported tensor type ({f})"))),
            _ => Ok(None),
        }
    }

    /// Decodes a storage persistent id `('storage', cls, key, location, numel)`.
    fn storage(&self, v: Value) -> std::result::Result<(String, Kind, i64), String> {
        let p = self.pickle;
        let Some(Node::PersId(pid)) = p.node(v) else {
            return Err("storage is not a persistent id".into());
        };
        let t = p.as_tuple(*pid).ok_or("persistent id is not a tuple")?;
        if t.len() != 5 || p.as_str(t[0]) != Some("storage") {
            return Err("persistent id is not ('storage', class, key, location, numel)".into());
        }
        let (module, class) = p.as_global(t[1]).ok_or("storage class is not a global")?;
        if !module.starts_with("torch") {
            return Err(format!("unexpected storage class {module}.{class}"));
        }
        let kind = storage_kind(class).ok_or_else(|| format!("unsupported storage class {module}.{class}"))?;
        let key = match t[2] {
            Value::Int(i) => i.to_string(),
            k => {
                let s = p.as_str(k).ok_or("storage key is not a string")?;
                if s.len() > MAX_STORAGE_KEY_BYTES {
                    return Err(format!(
                        "storage key of {} bytes (at most {MAX_STORAGE_KEY_BYTES})",
                        s.len()
                    ));
                }
                s.to_owned()
            }
        };
        if key.is_empty() || key.contains(['/', '\\']) || key.contains("..") {
            return Err(format!("invalid storage key {key:?}"));
        }
        let numel = p
            .as_int(t[4])
            .filter(|&n| n >= 0)
            .ok_or("storage size is not a non-negative integer")?;
        Ok((key, kind, numel))
    }
}

/// The element kind of a `torch.<Name>Storage` class.
fn storage_kind(class: &str) -> Option<Kind> {
    Some(match class {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" | "UntypedStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

/// At most 80 characters of `s`, for error messages.
fn truncated(s: &str) -> String {
    let mut t: String = s.chars().take(80).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    t
}
