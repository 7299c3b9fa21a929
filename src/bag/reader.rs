//! Streaming, time-ordered reading of rosbag2 bags: MCAP (via `mcap`'s indexed reader, zstd/lz4
//! chunks) and sqlite3 (via `rusqlite`), one or several storage files per bag.
//!
//! Memory stays bounded: MCAP chunks are loaded one (or a few overlapping) at a time and sqlite3
//! payloads are fetched row by row after an index pass over (id, topic, timestamp).
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcap::sans_io::indexed_reader::{IndexedReadEvent, IndexedReader, IndexedReaderOptions, ReadOrder};
use mcap::sans_io::summary_reader::{SummaryReadEvent, SummaryReader, SummaryReaderOptions};
use rusqlite::limits::Limit;
use rusqlite::{Connection, OpenFlags};

use super::metadata::{require_regular_file, BagMetadata, StorageKind, METADATA_FILE};
use super::BagError;

/// Serialization format of ROS 2 messages in bags.
pub const CDR_FORMAT: &str = "cdr";
/// Upper bound on reads issued for one MCAP summary (guards against a looping reader).
const MAX_SUMMARY_READS: usize = 1 << 20;
/// Largest MCAP record, chunk (compressed or decompressed) and sqlite3 payload read: far above a
/// camera frame (a 4K rgb8 image is 25 MB), small enough that a corrupted length cannot make the
/// reader allocate gigabytes.
pub const MAX_RECORD_BYTES: usize = 128 << 20;
/// Longest one sqlite3 query may run (the index pass over a long recording takes seconds); a
/// crafted schema cannot make a query loop past it.
const SQLITE_QUERY_BUDGET: Duration = Duration::from_secs(20);
/// Virtual-machine instructions between two looks at the query budget.
const SQLITE_PROGRESS_OPS: i32 = 100_000;

/// One serialized message as stored in the bag.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    pub topic: Arc<str>,
    /// ROS type, e.g. `sensor_msgs/msg/Image`.
    pub type_name: Arc<str>,
    /// Receive time the recorder logged (the bag timestamp), nanoseconds.
    pub log_time_ns: i64,
    /// CDR payload including its 4-byte encapsulation header.
    pub data: Vec<u8>,
}

/// A topic of the bag.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicInfo {
    pub name: String,
    pub type_name: String,
    pub serialization_format: String,
    pub message_count: u64,
}

/// An opened bag: a rosbag2 directory (with or without `metadata.yaml`) or one bare storage file.
#[derive(Debug, Clone)]
pub struct BagReader {
    path: PathBuf,
    storage: StorageKind,
    files: Vec<PathBuf>,
    topics: Vec<TopicInfo>,
}

impl BagReader {
    /// Opens a bag directory or a single `.mcap` / `.db3` file and reads its topic list.
    ///
    /// A directory without `metadata.yaml` (a recording that was killed before closing) is read
    /// from its storage files in name order.
    pub fn open(path: &Path) -> Result<Self, BagError> {
        if path.is_dir() {
            if path.join(METADATA_FILE).exists() {
                let meta = BagMetadata::load(path)?;
                let files = meta.file_paths();
                for f in &files {
                    if !f.exists() {
                        return Err(BagError::Metadata {
                            path: path.join(METADATA_FILE),
                            why: format!("lists storage file {} which does not exist", f.display()),
                        });
                    }
                }
                let mut topics: Vec<TopicInfo> = meta
                    .info
                    .topics_with_message_count
                    .iter()
                    .map(|t| TopicInfo {
                        name: t.topic_metadata.name.clone(),
                        type_name: t.topic_metadata.type_name.clone(),
                        serialization_format: t.topic_metadata.serialization_format.clone(),
                        message_count: t.message_count,
                    })
                    .collect();
                // Validate every file now (truncation shows here) and add topics the metadata misses.
                for f in &files {
                    merge_topics(&mut topics, file_topics(meta.storage, f)?);
                }
                return Ok(Self {
                    path: path.to_path_buf(),
                    storage: meta.storage,
                    files,
                    topics,
                });
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| BagError::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| StorageKind::from_path(p).is_some())
                .collect();
            files.sort();
            let Some(first) = files.first() else {
                return Err(BagError::Metadata {
                    path: path.to_path_buf(),
                    why: "not a rosbag2 directory: no metadata.yaml and no .mcap/.db3 files".into(),
                });
            };
            let storage = StorageKind::from_path(first).unwrap_or(StorageKind::Mcap);
            if files.iter().any(|f| StorageKind::from_path(f) != Some(storage)) {
                return Err(BagError::Unsupported {
                    path: path.to_path_buf(),
                    why: "mixed .mcap and .db3 files without metadata.yaml".into(),
                });
            }
            return Self::from_files(path, storage, files);
        }
        let storage = StorageKind::from_path(path).ok_or_else(|| BagError::Unsupported {
            path: path.to_path_buf(),
            why: "expected a rosbag2 directory, a .mcap or a .db3 file".into(),
        })?;
        if !path.exists() {
            return Err(BagError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        Self::from_files(path, storage, vec![path.to_path_buf()])
    }

    fn from_files(path: &Path, storage: StorageKind, files: Vec<PathBuf>) -> Result<Self, BagError> {
        let mut topics = Vec::new();
        for f in &files {
            merge_topics(&mut topics, file_topics(storage, f)?);
        }
        Ok(Self {
            path: path.to_path_buf(),
            storage,
            files,
            topics,
        })
    }

    /// The path the bag was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Storage plugin.
    pub fn storage(&self) -> StorageKind {
        self.storage
    }

    /// Storage files, in reading order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// All topics (unknown types included; they are only decoded when asked for).
    pub fn topics(&self) -> &[TopicInfo] {
        &self.topics
    }

    /// The topic of this name, or an error that lists the bag's topics.
    pub fn require_topic(&self, name: &str) -> Result<&TopicInfo, BagError> {
        self.topics
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| BagError::MissingTopic {
                bag: self.path.clone(),
                topic: name.to_string(),
                available: self.topic_list(),
            })
    }

    fn topic_list(&self) -> String {
        let names: Vec<String> = self
            .topics
            .iter()
            .map(|t| format!("{} [{}]", t.name, t.type_name))
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// Streams the messages of `topics` in log-time order across all files (ties: file order,
    /// then storage order). Every topic must exist and be CDR-serialized.
    pub fn messages(&self, topics: &[&str]) -> Result<MessageStream, BagError> {
        for t in topics {
            let info = self.require_topic(t)?;
            if !info.serialization_format.is_empty() && info.serialization_format != CDR_FORMAT {
                return Err(BagError::Unsupported {
                    path: self.path.clone(),
                    why: format!("topic {t} is serialized as {:?}, not cdr", info.serialization_format),
                });
            }
        }
        let wanted: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let mut sources = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let src = match self.storage {
                StorageKind::Mcap => Source::Mcap(Box::new(McapSource::open(f, &wanted)?)),
                StorageKind::Sqlite3 => Source::Sqlite(Box::new(SqliteSource::open(f, &wanted)?)),
            };
            sources.push(src);
        }
        let heads = vec![None; sources.len()];
        Ok(MessageStream {
            sources,
            heads,
            primed: false,
        })
    }
}

/// Adds topics not yet present (metadata wins; storage files fill gaps).
fn merge_topics(into: &mut Vec<TopicInfo>, more: Vec<TopicInfo>) {
    for t in more {
        match into.iter_mut().find(|x| x.name == t.name) {
            Some(existing) if existing.type_name.is_empty() => *existing = t,
            Some(_) => {}
            None => into.push(t),
        }
    }
}

/// Topics stored in one file (also checks that the file is readable and complete).
fn file_topics(storage: StorageKind, path: &Path) -> Result<Vec<TopicInfo>, BagError> {
    match storage {
        StorageKind::Mcap => {
            let mut file = open_regular(path)?;
            let summary = read_mcap_summary(path, &mut file)?;
            let mut counts: HashMap<u16, u64> = HashMap::new();
            if let Some(stats) = &summary.stats {
                counts.extend(stats.channel_message_counts.iter().map(|(k, v)| (*k, *v)));
            }
            let mut channels: Vec<_> = summary.channels.values().collect();
            channels.sort_by_key(|c| c.id);
            Ok(channels
                .into_iter()
                .map(|c| TopicInfo {
                    name: c.topic.clone(),
                    type_name: c.schema.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                    serialization_format: c.message_encoding.clone(),
                    message_count: counts.get(&c.id).copied().unwrap_or(0),
                })
                .collect())
        }
        StorageKind::Sqlite3 => {
            let db = SqliteFile::open(path)?;
            db.budget.arm();
            let conn = &db.conn;
            let sql_err = |source| BagError::Sqlite {
                path: path.to_path_buf(),
                source,
            };
            let mut stmt = conn
                .prepare("SELECT t.name, t.type, t.serialization_format, (SELECT COUNT(*) FROM messages m WHERE m.topic_id = t.id) FROM topics t ORDER BY t.id")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(TopicInfo {
                        name: r.get(0)?,
                        type_name: r.get(1)?,
                        serialization_format: r.get(2)?,
                        message_count: r.get::<_, i64>(3)?.max(0) as u64,
                    })
                })
                .map_err(sql_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql_err)
        }
    }
}

/// Opens a storage file for reading, refusing anything but a regular file (a FIFO named
/// `x.mcap` would otherwise block the open forever). The open itself does not block
/// (`O_NONBLOCK`, no effect on regular files), and the type is checked on the opened descriptor.
fn open_regular(path: &Path) -> Result<File, BagError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| BagError::io(path, e))?;
    let meta = file.metadata().map_err(|e| BagError::io(path, e))?;
    if !meta.is_file() {
        return Err(BagError::Unsupported {
            path: path.to_path_buf(),
            why: "not a regular file (a directory, FIFO, socket or device)".into(),
        });
    }
    Ok(file)
}

/// A time budget for each sqlite3 query: [`QueryBudget::arm`] before a query, and sqlite's
/// progress handler interrupts it once [`SQLITE_QUERY_BUDGET`] has passed.
struct QueryBudget {
    epoch: Instant,
    /// Milliseconds after `epoch` at which the running query is interrupted.
    deadline_ms: Arc<AtomicU64>,
}

impl QueryBudget {
    fn install(conn: &Connection) -> Self {
        let epoch = Instant::now();
        let deadline_ms = Arc::new(AtomicU64::new(u64::MAX));
        let deadline = Arc::clone(&deadline_ms);
        conn.progress_handler(
            SQLITE_PROGRESS_OPS,
            Some(move || epoch.elapsed().as_millis() as u64 > deadline.load(Ordering::Relaxed)),
        );
        Self { epoch, deadline_ms }
    }

    /// Starts the budget of the next query.
    fn arm(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.deadline_ms
            .store(now + SQLITE_QUERY_BUDGET.as_millis() as u64, Ordering::Relaxed);
    }
}

/// An opened sqlite3 storage file with its query budget.
struct SqliteFile {
    conn: Connection,
    budget: QueryBudget,
}

impl SqliteFile {
    /// Opens a sqlite3 storage file read-only. sqlite opens by path, so the file type is checked
    /// first (a FIFO named `x.db3` would block sqlite's open forever). The schema must hold plain
    /// tables `topics` and `messages` (a view of the same name can run arbitrary queries), values
    /// are capped at [`MAX_RECORD_BYTES`], and each query runs under a time budget.
    fn open(path: &Path) -> Result<Self, BagError> {
        require_regular_file(path)?;
        let sql_err = |source| BagError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(sql_err)?;
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_RECORD_BYTES as i32)
            .map_err(sql_err)?;
        // Functions named in the schema (views, triggers, defaults) are not run from this file.
        conn.pragma_update(None, "trusted_schema", false).map_err(sql_err)?;
        let budget = QueryBudget::install(&conn);
        budget.arm();
        for table in ["topics", "messages"] {
            let kind: Option<(String, String)> = conn
                .query_row(
                    "SELECT type, COALESCE(sql, '') FROM sqlite_master WHERE name = ?1",
                    [table],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(|source| corrupt_sqlite(path, source))?;
            match kind {
                Some((ty, sql))
                    if ty == "table" && !sql.trim_start().to_ascii_uppercase().starts_with("CREATE VIRTUAL") => {}
                Some((ty, _)) => {
                    return Err(BagError::Corrupt {
                        path: path.to_path_buf(),
                        why: format!("sqlite3: `{table}` is a {ty:.16}, not a plain table as rosbag2 writes it"),
                    })
                }
                None => {
                    return Err(BagError::Corrupt {
                        path: path.to_path_buf(),
                        why: format!("sqlite3: no `{table}` table (not a rosbag2 file)"),
                    })
                }
            }
        }
        Ok(Self { conn, budget })
    }
}

/// Reads the summary section of an MCAP file; a missing footer means the file was cut short.
fn read_mcap_summary(path: &Path, file: &mut File) -> Result<mcap::Summary, BagError> {
    let corrupt = |why: String| BagError::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    let size = file.metadata().map_err(|e| BagError::io(path, e))?.len();
    super::mcap_guard::check_summary(file, size).map_err(corrupt)?;
    let mut reader = SummaryReader::new_with_options(
        SummaryReaderOptions::default()
            .with_file_size(size)
            .with_record_length_limit(MAX_RECORD_BYTES),
    );
    let mut reads = 0usize;
    while let Some(event) = reader.next_event() {
        reads += 1;
        if reads > MAX_SUMMARY_READS {
            return Err(corrupt("summary section does not end".into()));
        }
        match event.map_err(|e| corrupt(format!("cannot read the MCAP footer/summary ({e}); the recording was probably interrupted (try `mcap recover`)")))? {
            SummaryReadEvent::ReadRequest(need) => {
                let n = file.read(reader.insert(need)).map_err(|e| BagError::io(path, e))?;
                reader.notify_read(n);
            }
            SummaryReadEvent::SeekRequest(to) => {
                let pos = file.seek(to).map_err(|e| BagError::io(path, e))?;
                reader.notify_seeked(pos);
            }
        }
    }
    let summary = reader
        .finish()
        .ok_or_else(|| corrupt("MCAP file has no summary section (no index); run `mcap recover` on it".into()))?;
    if summary.chunk_indexes.is_empty() && summary.stats.as_ref().is_some_and(|s| s.message_count > 0) {
        return Err(BagError::Unsupported {
            path: path.to_path_buf(),
            why: "MCAP file without chunk indexes (unchunked); rewrite it with `mcap convert`".into(),
        });
    }
    Ok(summary)
}

/// Time-ordered merge of the per-file message streams.
pub struct MessageStream {
    sources: Vec<Source>,
    heads: Vec<Option<RawMessage>>,
    primed: bool,
}

enum Source {
    Mcap(Box<McapSource>),
    Sqlite(Box<SqliteSource>),
}

impl Source {
    fn next_message(&mut self) -> Result<Option<RawMessage>, BagError> {
        match self {
            Self::Mcap(s) => s.next_message(),
            Self::Sqlite(s) => s.next_message(),
        }
    }
}

impl MessageStream {
    fn next_inner(&mut self) -> Result<Option<RawMessage>, BagError> {
        if !self.primed {
            for (head, src) in self.heads.iter_mut().zip(self.sources.iter_mut()) {
                *head = src.next_message()?;
            }
            self.primed = true;
        }
        let mut best: Option<(usize, i64)> = None;
        for (i, h) in self.heads.iter().enumerate() {
            if let Some(m) = h {
                if best.is_none_or(|(_, t)| m.log_time_ns < t) {
                    best = Some((i, m.log_time_ns));
                }
            }
        }
        let Some((i, _)) = best else {
            return Ok(None);
        };
        let next = self.sources[i].next_message()?;
        Ok(std::mem::replace(&mut self.heads[i], next))
    }
}

impl Iterator for MessageStream {
    type Item = Result<RawMessage, BagError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_inner() {
            Ok(Some(m)) => Some(Ok(m)),
            Ok(None) => None,
            Err(e) => {
                // Stop after the first error.
                self.heads.iter_mut().for_each(|h| *h = None);
                self.sources.clear();
                self.heads.clear();
                self.primed = true;
                Some(Err(e))
            }
        }
    }
}

/// One MCAP file read through its chunk index in log-time order.
struct McapSource {
    path: PathBuf,
    file: File,
    reader: IndexedReader,
    channels: HashMap<u16, (Arc<str>, Arc<str>)>,
    buf: Vec<u8>,
}

impl McapSource {
    fn open(path: &Path, topics: &[String]) -> Result<Self, BagError> {
        let mut file = open_regular(path)?;
        let summary = read_mcap_summary(path, &mut file)?;
        let mut channels = HashMap::new();
        for c in summary.channels.values() {
            if topics.iter().any(|t| *t == c.topic) {
                if c.message_encoding != CDR_FORMAT {
                    return Err(BagError::Unsupported {
                        path: path.to_path_buf(),
                        why: format!(
                            "topic {} has message encoding {:?}, not cdr",
                            c.topic, c.message_encoding
                        ),
                    });
                }
                let ty = c.schema.as_ref().map(|s| s.name.as_str()).unwrap_or("");
                channels.insert(c.id, (Arc::from(c.topic.as_str()), Arc::from(ty)));
            }
        }
        let options = IndexedReaderOptions::new()
            .with_order(ReadOrder::LogTime)
            .with_record_length_limit(MAX_RECORD_BYTES)
            .include_topics(topics.iter().cloned());
        let reader = IndexedReader::new_with_options(&summary, options).map_err(|source| BagError::Mcap {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            reader,
            channels,
            buf: Vec::new(),
        })
    }

    fn next_message(&mut self) -> Result<Option<RawMessage>, BagError> {
        loop {
            let (offset, length) = match self.reader.next_event() {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(BagError::Corrupt {
                        path: self.path.clone(),
                        why: e.to_string(),
                    })
                }
                Some(Ok(IndexedReadEvent::ReadChunkRequest { offset, length })) => (offset, length),
                Some(Ok(IndexedReadEvent::Message { header, data })) => {
                    let Some((topic, ty)) = self.channels.get(&header.channel_id) else {
                        continue;
                    };
                    return Ok(Some(RawMessage {
                        topic: topic.clone(),
                        type_name: ty.clone(),
                        log_time_ns: i64::try_from(header.log_time).unwrap_or(i64::MAX),
                        data: data.to_vec(),
                    }));
                }
            };
            self.file
                .seek(SeekFrom::Start(offset))
                .map_err(|e| BagError::io(&self.path, e))?;
            self.buf.resize(length, 0);
            self.file.read_exact(&mut self.buf).map_err(|e| BagError::Corrupt {
                path: self.path.clone(),
                why: format!("chunk at byte {offset} ({length} bytes) cannot be read: {e}"),
            })?;
            self.reader
                .insert_chunk_record_data(offset, &self.buf)
                .map_err(|e| BagError::Corrupt {
                    path: self.path.clone(),
                    why: format!("chunk at byte {offset}: {e}"),
                })?;
        }
    }
}

/// One sqlite3 file: an index pass over (id, topic, timestamp), then payloads by row id.
struct SqliteSource {
    path: PathBuf,
    db: SqliteFile,
    topics: HashMap<i64, (Arc<str>, Arc<str>)>,
    order: VecDeque<(i64, i64, i64)>,
}

impl SqliteSource {
    fn open(path: &Path, wanted: &[String]) -> Result<Self, BagError> {
        let db = SqliteFile::open(path)?;
        let conn = &db.conn;
        let sql_err = |source| BagError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut topics = HashMap::new();
        db.budget.arm();
        {
            let mut stmt = conn.prepare("SELECT id, name, type FROM topics").map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(sql_err)?;
            for row in rows {
                let (id, name, ty) = row.map_err(sql_err)?;
                if wanted.contains(&name) {
                    topics.insert(id, (Arc::from(name.as_str()), Arc::from(ty.as_str())));
                }
            }
        }
        let mut order = VecDeque::new();
        if !topics.is_empty() {
            let ids: Vec<String> = topics.keys().map(|k| k.to_string()).collect();
            let sql = format!(
                "SELECT id, topic_id, timestamp FROM messages WHERE topic_id IN ({}) ORDER BY timestamp, id",
                ids.join(",")
            );
            db.budget.arm();
            let mut stmt = conn.prepare(&sql).map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(sql_err)?;
            for row in rows {
                order.push_back(row.map_err(|source| corrupt_sqlite(path, source))?);
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            db,
            topics,
            order,
        })
    }

    fn next_message(&mut self) -> Result<Option<RawMessage>, BagError> {
        let Some((id, topic_id, ts)) = self.order.pop_front() else {
            return Ok(None);
        };
        let Some((topic, ty)) = self.topics.get(&topic_id) else {
            return Ok(None);
        };
        self.db.budget.arm();
        let data: Vec<u8> = self
            .db
            .conn
            .prepare_cached("SELECT data FROM messages WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)))
            .map_err(|source| corrupt_sqlite(&self.path, source))?;
        Ok(Some(RawMessage {
            topic: topic.clone(),
            type_name: ty.clone(),
            log_time_ns: ts,
            data,
        }))
    }
}

fn corrupt_sqlite(path: &Path, source: rusqlite::Error) -> BagError {
    BagError::Corrupt {
        path: path.to_path_buf(),
        why: format!("sqlite3: {source}"),
    }
}
