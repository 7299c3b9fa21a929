//! A variable builder over checkpoint tensors, in the spirit of candle's `VarBuilder`: modules ask
//! for tensors by their checkpoint key (the builder's path equals the key, so no rename table
//! exists), with the shape they expect. A mismatch names the file, the key, expected and found.
//!
//! Sources: safetensors files (memory-mapped; tensors are materialised one at a time, straight
//! into the target dtype and device), in-memory tensors (e.g. from `torch.save` files), or a
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

struct MappedFile {
    path: PathBuf,
    mmap: Mmap,
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
    Mapped {
        files: Vec<MappedFile>,
        entries: HashMap<String, Entry>,
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
    /// Memory-maps safetensors files (one checkpoint may be sharded over several).
    pub fn from_safetensors<P: AsRef<Path>>(paths: &[P], kind: Kind, device: Device) -> Result<Self> {
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (index, path) in paths.iter().enumerate() {
            let path = path.as_ref().to_path_buf();
            let file = std::fs::File::open(&path).map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })?;
            // SAFETY: the file is opened read-only and not modified while mapped.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })?;
            let (header_len, metadata) = SafeTensors::read_metadata(&mmap).map_err(|e| ModelError::Format {
                path: path.clone(),
                reason: format!("not a valid safetensors file ({e})"),
            })?;
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
                    let first: &MappedFile = &files[old.file];
                    return Err(ModelError::Format {
                        path: path.clone(),
                        reason: format!("tensor `{name}` is also stored in {}", first.path.display()),
                    });
                }
            }
            files.push(MappedFile {
                path,
                mmap,
                data_start: 8 + header_len,
            });
        }
        Ok(Self::with_source(Source::Mapped { files, entries }, kind, device))
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
            Source::Mapped { files, entries } => match entries.get(key) {
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

    /// Whether the source holds `name` (a random source holds what it has created).
    pub fn contains(&self, name: &str) -> bool {
        let key = self.path(name);
        match &*self.source {
            Source::Mapped { entries, .. } => entries.contains_key(&key),
            Source::Memory { tensors, .. } => tensors.contains_key(&key),
            Source::Random { created, .. } => created.lock().map(|m| m.contains_key(&key)).unwrap_or(false),
        }
    }

    /// The stored shape of `name`, if present: how sizes are read from weights.
    pub fn shape_of(&self, name: &str) -> Option<Vec<i64>> {
        let key = self.path(name);
        match &*self.source {
            Source::Mapped { entries, .. } => entries.get(&key).map(|e| e.shape.clone()),
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
            Source::Mapped { entries, .. } => entries.keys().cloned().collect(),
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
            _ => {
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

    /// Reads a stored tensor in its stored dtype on the CPU.
    fn load(&self, key: &str) -> Result<Tensor> {
        match &*self.source {
            Source::Mapped { files, entries } => {
                let e = entries.get(key).ok_or_else(|| ModelError::MissingKey {
                    file: self.label(key),
                    key: key.to_owned(),
                })?;
                let f = &files[e.file];
                let kind = kind_of(e.dtype).ok_or_else(|| ModelError::Format {
                    path: f.path.clone(),
                    reason: format!("tensor `{key}` has unsupported dtype {:?}", e.dtype),
                })?;
                let bytes = f
                    .mmap
                    .get(f.data_start + e.start..f.data_start + e.end)
                    .ok_or_else(|| ModelError::Format {
                        path: f.path.clone(),
                        reason: format!("tensor `{key}` lies outside the file (truncated?)"),
                    })?;
                Ok(Tensor::f_from_data_size(bytes, &e.shape, kind)?)
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
