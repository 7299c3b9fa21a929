//! A variable builder over checkpoint tensors, in the spirit of candle's `VarBuilder`: modules ask
//! for tensors by their checkpoint key (the builder's path equals the key, so no rename table
//! exists), with the shape they expect. A mismatch names the file, the key, expected and found.
//!
//! Sources: safetensors files (each tensor is read with `pread` straight into its final tensor, or
//! into one reused host buffer and converted into it, so neither a mapping of the file nor a
//! second copy of a weight stays resident beside the loaded weights), in-memory tensors (e.g.
//! from `torch.save` files), or a
//! seeded random source that records what was created, which is how small checkpoints in the
//! official on-disk layout are generated.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use tch::{Device, Kind, Tensor};

use super::error::{ModelError, Result};

/// How a random source initialises a tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// N(0, std) with the builder's default std.
    Randn,
    /// N(0, std) with this std.
    RandnStd(f64),
    /// All ones (norm weights, layer scales).
    Ones,
    /// All zeros.
    Zeros,
    /// Uniform in [-a, a].
    Uniform(f64),
}

struct WeightsFile {
    path: PathBuf,
    file: std::fs::File,
    data_start: usize,
}

struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<i64>,
    start: usize,
    end: usize,
}

enum Source {
    Files {
        files: Vec<WeightsFile>,
        entries: HashMap<String, Entry>,
        /// Host buffer (8-byte aligned) that stored bytes land in when the target tensor has
        /// another dtype or lives on another device; reused for every tensor, so converting
        /// allocates nothing but the converted weights.
        scratch: Mutex<Vec<u64>>,
    },
    Memory {
        label: String,
        tensors: HashMap<String, Tensor>,
    },
    Random {
        std: f64,
        created: Mutex<BTreeMap<String, Tensor>>,
    },
}

// SAFETY: tensors in the map are only read (shallow-cloned) after construction; the random
// source's map is guarded by a mutex. libtorch tensors may be used from several threads.
unsafe impl Sync for Source {}
unsafe impl Send for Source {}

impl WeightsFile {
    /// The stored dtype of `e` and its byte length, checked against its shape.
    fn layout(&self, key: &str, e: &Entry) -> Result<(Kind, usize)> {
        let kind = kind_of(e.dtype).ok_or_else(|| ModelError::Format {
            path: self.path.clone(),
            reason: format!("tensor `{key}` has unsupported dtype {:?}", e.dtype),
        })?;
        let len = e.end.saturating_sub(e.start);
        let numel: i64 = e.shape.iter().product();
        if numel as usize * kind.elt_size_in_bytes() != len {
            return Err(ModelError::Format {
                path: self.path.clone(),
                reason: format!("tensor `{key}`: {len} bytes stored for shape {:?} of {kind:?}", e.shape),
            });
        }
        Ok((kind, len))
    }

    /// Reads the stored bytes of `e` into `dst` (exactly its length) with `pread`: nothing of
    /// the file is mapped, so nothing of it stays resident once the bytes are converted.
    fn read(&self, key: &str, e: &Entry, dst: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.file
            .read_exact_at(dst, (self.data_start + e.start) as u64)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::UnexpectedEof => ModelError::Format {
                    path: self.path.clone(),
                    reason: format!("tensor `{key}` lies outside the file (truncated?)"),
                },
                _ => ModelError::Io {
                    path: self.path.clone(),
                    source,
                },
            })
    }
}

/// Row-major strides of a contiguous tensor of `shape`.
fn contiguous_strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Hands out tensors by checkpoint key, converted to one dtype and device.
#[derive(Clone)]
pub struct VarBuilder {
    source: Arc<Source>,
    prefix: String,
    kind: Kind,
    device: Device,
    progress: Option<indicatif::ProgressBar>,
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

impl VarBuilder {
    /// Opens safetensors files (one checkpoint may be sharded over several) and reads their
    /// headers; tensors are read when asked for.
    pub fn from_safetensors<P: AsRef<Path>>(paths: &[P], kind: Kind, device: Device) -> Result<Self> {
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (index, path) in paths.iter().enumerate() {
            let path = path.as_ref().to_path_buf();
            let file = std::fs::File::open(&path).map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })?;
            // The header is parsed from a mapping (which also checks that the file is as long as
            // the header says) that is dropped before any tensor is read: only its first pages
            // were touched.
            // SAFETY: the file is opened read-only and not modified while mapped.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })?;
            let (header_len, metadata) = SafeTensors::read_metadata(&mmap).map_err(|e| ModelError::Format {
                path: path.clone(),
                reason: format!("not a valid safetensors file ({e})"),
            })?;
            drop(mmap);
            for (name, info) in metadata.tensors() {
                let (start, end) = info.data_offsets;
                let entry = Entry {
                    file: index,
                    dtype: info.dtype,
                    shape: info.shape.iter().map(|&d| d as i64).collect(),
                    start,
                    end,
                };
                if let Some(old) = entries.insert(name.clone(), entry) {
                    let first: &WeightsFile = &files[old.file];
                    return Err(ModelError::Format {
                        path: path.clone(),
                        reason: format!("tensor `{name}` is also stored in {}", first.path.display()),
                    });
                }
            }
            files.push(WeightsFile {
                path,
                file,
                data_start: 8 + header_len,
            });
        }
        Ok(Self::with_source(
            Source::Files {
                files,
                entries,
                scratch: Mutex::new(Vec::new()),
            },
            kind,
            device,
        ))
    }

    /// Wraps tensors already in memory; `label` names them in error messages (usually the file).
    pub fn from_tensors(label: impl Into<String>, tensors: Vec<(String, Tensor)>, kind: Kind, device: Device) -> Self {
        let source = Source::Memory {
            label: label.into(),
            tensors: tensors.into_iter().collect(),
        };
        Self::with_source(source, kind, device)
    }

    /// A source that creates every requested tensor at random (seed libtorch's RNG first with
    /// `tch::manual_seed` for reproducible output) and records it under its key.
    pub fn random(std: f64, kind: Kind, device: Device) -> Self {
        Self::with_source(
            Source::Random {
                std,
                created: Mutex::new(BTreeMap::new()),
            },
            kind,
            device,
        )
    }

    fn with_source(source: Source, kind: Kind, device: Device) -> Self {
        Self {
            source: Arc::new(source),
            prefix: String::new(),
            kind,
            device,
            progress: None,
        }
    }

    /// Advances `bar` by one for every tensor handed out (loading progress of large checkpoints).
    pub fn with_progress(mut self, bar: indicatif::ProgressBar) -> Self {
        self.progress = Some(bar);
        self
    }

    /// The same source under a sub-path: `vb.pp("blocks").pp("0")` asks for `blocks.0.*`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let mut vb = self.clone();
        vb.prefix = self.path(&name.to_string());
        vb
    }

    /// The same source, converting to another dtype (heads run in f32 whatever the LM uses).
    pub fn with_kind(&self, kind: Kind) -> Self {
        let mut vb = self.clone();
        vb.kind = kind;
        vb
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key of `name` under this builder's prefix.
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else if name.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    fn label(&self, key: &str) -> String {
        match &*self.source {
            Source::Files { files, entries, .. } => match entries.get(key) {
                Some(e) => files[e.file].path.display().to_string(),
                None => files
                    .iter()
                    .map(|f| f.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            Source::Memory { label, .. } => label.clone(),
            Source::Random { .. } => "<random>".to_owned(),
        }
    }

    /// Elements of every stored tensor (safetensors sources; others: what they hold): how much
    /// memory the weights need in a given dtype.
    pub fn total_numel(&self) -> i64 {
        match &*self.source {
            Source::Files { entries, .. } => entries.values().map(|e| e.shape.iter().product::<i64>()).sum(),
            Source::Memory { tensors, .. } => tensors.values().map(|t| t.numel() as i64).sum(),
            Source::Random { created, .. } => created
                .lock()
                .map(|m| m.values().map(|t| t.numel() as i64).sum())
                .unwrap_or(0),
        }
    }

    /// Whether the source holds `name` (a random source holds what it has created).
    pub fn contains(&self, name: &str) -> bool {
        let key = self.path(name);
        match &*self.source {
            Source::Files { entries, .. } => entries.contains_key(&key),
            Source::Memory { tensors, .. } => tensors.contains_key(&key),
            Source::Random { created, .. } => created.lock().map(|m| m.contains_key(&key)).unwrap_or(false),
        }
    }

    /// The stored shape of `name`, if present: how sizes are read from weights.
    pub fn shape_of(&self, name: &str) -> Option<Vec<i64>> {
        let key = self.path(name);
        match &*self.source {
            Source::Files { entries, .. } => entries.get(&key).map(|e| e.shape.clone()),
            Source::Memory { tensors, .. } => tensors.get(&key).map(|t| t.size()),
            Source::Random { created, .. } => created.lock().ok()?.get(&key).map(|t| t.size()),
        }
    }

    /// Like [`Self::shape_of`] but an error naming the file and key when absent.
    pub fn require_shape(&self, name: &str) -> Result<Vec<i64>> {
        self.shape_of(name).ok_or_else(|| ModelError::MissingKey {
            file: self.label(&self.path(name)),
            key: self.path(name),
        })
    }

    /// All keys under this builder's prefix (without the prefix), sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = match &*self.source {
            Source::Files { entries, .. } => entries.keys().cloned().collect(),
            Source::Memory { tensors, .. } => tensors.keys().cloned().collect(),
            Source::Random { created, .. } => created.lock().map(|m| m.keys().cloned().collect()).unwrap_or_default(),
        };
        if !self.prefix.is_empty() {
            let p = format!("{}.", self.prefix);
            keys = keys
                .into_iter()
                .filter_map(|k| k.strip_prefix(&p).map(str::to_owned))
                .collect();
        }
        keys.sort();
        keys
    }

    /// The tensor `name` with exactly `shape`, in this builder's dtype and device.
    pub fn get(&self, shape: &[i64], name: &str) -> Result<Tensor> {
        self.get_with_init(shape, name, Init::Randn)
    }

    /// As [`Self::get`]; `init` says how a random source fills it.
    pub fn get_with_init(&self, shape: &[i64], name: &str, init: Init) -> Result<Tensor> {
        let key = self.path(name);
        let tensor = match &*self.source {
            Source::Random { std, created } => {
                let mut created = created
                    .lock()
                    .map_err(|_| ModelError::Invalid("random source poisoned".into()))?;
                if let Some(t) = created.get(&key) {
                    if t.size() != shape {
                        return Err(ModelError::Shape {
                            file: "<random>".into(),
                            key,
                            expected: shape.to_vec(),
                            found: t.size(),
                        });
                    }
                    t.shallow_clone()
                } else {
                    let opts = (Kind::Float, Device::Cpu);
                    let t = match init {
                        Init::Randn => Tensor::randn(shape, opts) * *std,
                        Init::RandnStd(s) => Tensor::randn(shape, opts) * s,
                        Init::Ones => Tensor::ones(shape, opts),
                        Init::Zeros => Tensor::zeros(shape, opts),
                        Init::Uniform(a) => Tensor::rand(shape, opts) * (2.0 * a) - a,
                    };
                    created.insert(key.clone(), t.shallow_clone());
                    t
                }
            }
            Source::Files { .. } => {
                let t = Tensor::f_empty(shape, (self.kind, self.device))?;
                self.read_into(&key, &t)?;
                if let Some(bar) = &self.progress {
                    bar.inc(1);
                }
                return Ok(t);
            }
            Source::Memory { .. } => {
                let t = self.load(&key)?;
                if t.size() != shape {
                    return Err(ModelError::Shape {
                        file: self.label(&key),
                        key,
                        expected: shape.to_vec(),
                        found: t.size(),
                    });
                }
                t
            }
        };
        // Device first: the dtype conversion then runs on the target device, so no converted
        // (f32) copy is made on the host, and the host copy is the stored bf16 bytes only.
        let out = tensor.f_to_device(self.device)?.f_to_kind(self.kind)?;
        if let Some(bar) = &self.progress {
            bar.inc(1);
        }
        Ok(out)
    }

    /// The tensor `name` with whatever shape it is stored with (random sources: error).
    pub fn get_unchecked(&self, name: &str) -> Result<Tensor> {
        let key = self.path(name);
        let t = match &*self.source {
            Source::Random { created, .. } => created
                .lock()
                .ok()
                .and_then(|m| m.get(&key).map(|t| t.shallow_clone()))
                .ok_or_else(|| ModelError::MissingKey {
                    file: "<random>".into(),
                    key: key.clone(),
                })?,
            _ => self.load(&key)?,
        };
        Ok(t.f_to_device(self.device)?.f_to_kind(self.kind)?)
    }

    /// Tensors stored under `parts` (name, shape), concatenated along their first dimension,
    /// e.g. fused q/k/v projections. From files, each part is read straight into its rows of
    /// the result: no separate copies of the parts exist beside it.
    pub fn get_rows(&self, parts: &[(&str, &[i64])]) -> Result<Tensor> {
        let tail = |shape: &[i64]| shape.get(1..).map(<[i64]>::to_vec);
        let first = parts
            .first()
            .ok_or_else(|| ModelError::Invalid("no tensors to concatenate".into()))?;
        if parts
            .iter()
            .any(|(_, shape)| shape.is_empty() || tail(shape) != tail(first.1))
        {
            return Err(ModelError::Invalid(format!(
                "{}: parts {:?} differ beyond their first dimension",
                self.path(first.0),
                parts.iter().map(|(n, _)| *n).collect::<Vec<_>>()
            )));
        }
        if !matches!(&*self.source, Source::Files { .. }) {
            let tensors = parts
                .iter()
                .map(|(name, shape)| self.get(shape, name))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Tensor::f_cat(&tensors, 0)?);
        }
        let rows: i64 = parts.iter().map(|(_, shape)| shape[0]).sum();
        let mut shape = first.1.to_vec();
        shape[0] = rows;
        let out = Tensor::f_empty(shape.as_slice(), (self.kind, self.device))?;
        let mut offset = 0;
        for (name, part) in parts {
            self.read_into(&self.path(name), &out.f_narrow(0, offset, part[0])?)?;
            offset += part[0];
            if let Some(bar) = &self.progress {
                bar.inc(1);
            }
        }
        Ok(out)
    }

    /// Fills `dst` (any dtype and device, the stored shape) with the stored tensor `key`.
    /// A contiguous CPU `dst` of the stored dtype receives the file's bytes directly; otherwise
    /// they land in the reused scratch buffer and are converted by one copy into `dst`.
    fn read_into(&self, key: &str, dst: &Tensor) -> Result<()> {
        let Source::Files {
            files,
            entries,
            scratch,
        } = &*self.source
        else {
            return Err(ModelError::Invalid(
                "only safetensors sources are read from files".into(),
            ));
        };
        let e = entries.get(key).ok_or_else(|| ModelError::MissingKey {
            file: self.label(key),
            key: key.to_owned(),
        })?;
        let f = &files[e.file];
        if dst.size() != e.shape {
            return Err(ModelError::Shape {
                file: f.path.display().to_string(),
                key: key.to_owned(),
                expected: dst.size(),
                found: e.shape.clone(),
            });
        }
        let (kind, len) = f.layout(key, e)?;
        if len == 0 {
            return Ok(());
        }
        if dst.device() == Device::Cpu && dst.kind() == kind && dst.is_contiguous() {
            // SAFETY: `dst` is a contiguous CPU tensor of exactly `len` bytes (same shape and
            // dtype as stored) that the caller allocated and nothing else uses yet.
            let bytes = unsafe { std::slice::from_raw_parts_mut(dst.data_ptr() as *mut u8, len) };
            return f.read(key, e, bytes);
        }
        let mut scratch = scratch
            .lock()
            .map_err(|_| ModelError::Invalid("weights scratch buffer poisoned".into()))?;
        let words = len.div_ceil(8);
        if scratch.len() < words {
            *scratch = Vec::new();
            scratch.resize(words, 0);
        }
        // SAFETY: the buffer holds at least `len` bytes and is only used under its lock.
        let bytes = unsafe { std::slice::from_raw_parts_mut(scratch.as_mut_ptr() as *mut u8, len) };
        f.read(key, e, bytes)?;
        // SAFETY: the view covers `len` initialised bytes of the locked buffer and is dropped
        // (after `copy_` has finished with it) before the lock is released.
        let view = unsafe {
            Tensor::f_from_blob(
                bytes.as_ptr(),
                &e.shape,
                &contiguous_strides(&e.shape),
                kind,
                Device::Cpu,
            )
        }?;
        dst.shallow_clone().f_copy_(&view)?;
        drop(view);
        Ok(())
    }

    /// Reads a stored tensor in its stored dtype on the CPU.
    fn load(&self, key: &str) -> Result<Tensor> {
        match &*self.source {
            Source::Files { files, entries, .. } => {
                let e = entries.get(key).ok_or_else(|| ModelError::MissingKey {
                    file: self.label(key),
                    key: key.to_owned(),
                })?;
                let (kind, _) = files[e.file].layout(key, e)?;
                let tensor = Tensor::f_empty(e.shape.as_slice(), (kind, Device::Cpu))?;
                self.read_into(key, &tensor)?;
                Ok(tensor)
            }
            Source::Memory { label, tensors } => {
                tensors
                    .get(key)
                    .map(|t| t.shallow_clone())
                    .ok_or_else(|| ModelError::MissingKey {
                        file: label.clone(),
                        key: key.to_owned(),
                    })
            }
            Source::Random { .. } => Err(ModelError::Invalid("random source has no stored tensors".into())),
        }
    }

    /// Everything a random source created, by key (to be written as a checkpoint).
    pub fn created(&self) -> Vec<(String, Tensor)> {
        match &*self.source {
            Source::Random { created, .. } => created
                .lock()
                .map(|m| m.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Replaces a tensor a random source created (e.g. to shape a generated LM head).
    pub fn set_created(&self, key: &str, tensor: Tensor) -> Result<()> {
        match &*self.source {
            Source::Random { created, .. } => {
                let mut m = created
                    .lock()
                    .map_err(|_| ModelError::Invalid("random source poisoned".into()))?;
                m.insert(key.to_owned(), tensor);
                Ok(())
            }
            _ => Err(ModelError::Invalid("only a random source can be modified".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bf16 safetensors file with `a` [2, 3] and `b` [1, 3].
    fn bf16_file(dir: &Path) -> (PathBuf, Tensor, Tensor) {
        let a = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]) * 0.5;
        let b = Tensor::from_slice(&[-1.0f32, 2.0, 3.5]).view([1, 3]);
        let path = dir.join("w.safetensors");
        let views: Vec<(String, Tensor)> = vec![
            ("a.weight".into(), a.to_kind(Kind::BFloat16)),
            ("b.weight".into(), b.to_kind(Kind::BFloat16)),
        ];
        Tensor::write_safetensors(&views, &path).unwrap();
        (path, a, b)
    }

    #[test]
    fn tensors_are_read_into_their_dtype_and_the_file_is_not_left_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let (path, a, b) = bf16_file(dir.path());
        for kind in [Kind::Float, Kind::BFloat16, Kind::Half] {
            let vb = VarBuilder::from_safetensors(&[&path], kind, Device::Cpu).unwrap();
            let got = vb.get(&[2, 3], "a.weight").unwrap();
            assert_eq!(got.kind(), kind);
            assert!(got.to_kind(Kind::Float).equal(&a), "{kind:?}");
            // Fused rows are filled in place and equal the concatenation.
            let rows = vb.get_rows(&[("a.weight", &[2, 3]), ("b.weight", &[1, 3])]).unwrap();
            assert!(rows.to_kind(Kind::Float).equal(&Tensor::cat(&[&a, &b], 0)), "{kind:?}");
            assert_eq!(vb.total_numel(), 9);
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            assert!(!maps.contains(path.to_str().unwrap()), "{kind:?}: file still mapped");
        }
    }

    #[test]
    fn shape_mismatches_and_missing_keys_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, _) = bf16_file(dir.path());
        let vb = VarBuilder::from_safetensors(&[&path], Kind::Float, Device::Cpu).unwrap();
        let err = vb.get(&[3, 2], "a.weight").unwrap_err().to_string();
        assert!(err.contains("a.weight") && err.contains("w.safetensors"), "{err}");
        let err = vb
            .get_rows(&[("a.weight", &[2, 3]), ("b.weight", &[2, 3])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("b.weight"), "{err}");
        let err = vb.get(&[1], "c.weight").unwrap_err().to_string();
        assert!(err.contains("c.weight"), "{err}");
        assert!(vb.get_rows(&[("a.weight", &[2, 3]), ("b.weight", &[1, 2])]).is_err());
    }
}
