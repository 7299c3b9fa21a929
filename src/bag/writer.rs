//! An MCAP rosbag2 writer (profile `ros2`, `ros2msg` schemas with the real definitions, CDR
//! payloads, `metadata.yaml` version 9), optionally chunk-compressed and split into several files.
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::cdr::encode;
use super::metadata::{
    BagInfo, FileInfo, MetadataDoc, Nanoseconds, NanosecondsSinceEpoch, TopicMetadata, TopicWithCount, METADATA_FILE,
    WRITE_VERSION,
};
use super::msgdefs::schema_text;
use super::reader::CDR_FORMAT;
use super::BagError;
use crate::ros::msgs::RosMessage;

/// MCAP profile of rosbag2 files.
const PROFILE: &str = "ros2";
/// Schema encoding for `.msg` definition text.
const SCHEMA_ENCODING: &str = "ros2msg";
/// ROS distribution written into `metadata.yaml`.
const ROS_DISTRO: &str = "jazzy";

/// Chunk compression of written MCAP files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkCompression {
    None,
    Zstd,
    Lz4,
}

/// Options of [`McapBagWriter`].
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub compression: ChunkCompression,
    /// Target uncompressed chunk size in bytes (`None`: the mcap crate's default).
    pub chunk_size: Option<u64>,
    /// Start a new storage file after this many messages (`None`: one file).
    pub max_messages_per_file: Option<u64>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            compression: ChunkCompression::Zstd,
            chunk_size: None,
            max_messages_per_file: None,
        }
    }
}

struct TopicEntry {
    type_name: String,
    schema: String,
    count: u64,
}

struct OpenFile {
    writer: mcap::Writer<BufWriter<File>>,
    channels: HashMap<String, u16>,
    info: FileInfo,
    end_ns: i64,
}

/// Writes a rosbag2 directory of MCAP files plus its `metadata.yaml`.
pub struct McapBagWriter {
    dir: PathBuf,
    options: WriterOptions,
    topics: BTreeMap<String, TopicEntry>,
    topic_order: Vec<String>,
    current: Option<OpenFile>,
    files: Vec<FileInfo>,
    start_ns: Option<i64>,
    end_ns: i64,
    total: u64,
    sequence: u32,
}

impl McapBagWriter {
    /// Creates the bag directory `dir` (which must not exist yet, as with `ros2 bag record -o`).
    pub fn create(dir: &Path, options: WriterOptions) -> Result<Self, BagError> {
        if dir.exists() {
            return Err(BagError::Output {
                path: dir.to_path_buf(),
                why: "already exists; choose a new bag directory".into(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| BagError::io(dir, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            options,
            topics: BTreeMap::new(),
            topic_order: Vec::new(),
            current: None,
            files: Vec::new(),
            start_ns: None,
            end_ns: 0,
            total: 0,
            sequence: 0,
        })
    }

    /// The bag directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Declares a topic of a ROS type known to [`super::msgdefs`].
    pub fn add_topic(&mut self, topic: &str, ros_type: &str) -> Result<(), BagError> {
        let schema = schema_text(ros_type).ok_or_else(|| {
            BagError::Config(format!(
                "no message definition for {ros_type}; use add_topic_with_definition"
            ))
        })?;
        self.add_topic_with_definition(topic, ros_type, &schema)
    }

    /// Declares a topic with an explicit `ros2msg` definition text.
    pub fn add_topic_with_definition(&mut self, topic: &str, ros_type: &str, definition: &str) -> Result<(), BagError> {
        match self.topics.get(topic) {
            Some(t) if t.type_name != ros_type => Err(BagError::WrongType {
                topic: topic.to_string(),
                expected: t.type_name.clone(),
                found: ros_type.to_string(),
            }),
            Some(_) => Ok(()),
            None => {
                self.topics.insert(
                    topic.to_string(),
                    TopicEntry {
                        type_name: ros_type.to_string(),
                        schema: definition.to_string(),
                        count: 0,
                    },
                );
                self.topic_order.push(topic.to_string());
                Ok(())
            }
        }
    }

    /// Serializes and writes one message (declaring the topic on first use).
    pub fn write<T: RosMessage>(&mut self, topic: &str, log_time_ns: i64, msg: &T) -> Result<(), BagError> {
        if !self.topics.contains_key(topic) {
            self.add_topic(topic, &T::ros_type())?;
        }
        let data = encode(msg)?;
        self.write_raw(topic, log_time_ns, &data)
    }

    /// Writes an already serialized CDR payload (with encapsulation header) on a declared topic.
    pub fn write_raw(&mut self, topic: &str, log_time_ns: i64, cdr: &[u8]) -> Result<(), BagError> {
        let split_now = match (&self.current, self.options.max_messages_per_file) {
            (Some(f), Some(max)) => f.info.message_count >= max,
            _ => false,
        };
        if split_now {
            self.close_file()?;
        }
        if self.current.is_none() {
            self.open_file()?;
        }
        let path = self.current_path();
        let mcap_err = |e: mcap::McapError| BagError::Output {
            path: path.clone(),
            why: e.to_string(),
        };
        let entry = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| BagError::Config(format!("topic {topic} was not declared")))?;
        let Some(file) = self.current.as_mut() else {
            return Err(BagError::Config("no open file".into()));
        };
        let channel = match file.channels.get(topic) {
            Some(c) => *c,
            None => {
                let schema = file
                    .writer
                    .add_schema(&entry.type_name, SCHEMA_ENCODING, entry.schema.as_bytes())
                    .map_err(mcap_err)?;
                let c = file
                    .writer
                    .add_channel(schema, topic, CDR_FORMAT, &BTreeMap::new())
                    .map_err(mcap_err)?;
                file.channels.insert(topic.to_string(), c);
                c
            }
        };
        let t = u64::try_from(log_time_ns).unwrap_or(0);
        self.sequence = self.sequence.wrapping_add(1);
        let header = mcap::records::MessageHeader {
            channel_id: channel,
            sequence: self.sequence,
            log_time: t,
            publish_time: t,
        };
        file.writer.write_to_known_channel(&header, cdr).map_err(mcap_err)?;
        if file.info.message_count == 0 || log_time_ns < file.info.starting_time.nanoseconds_since_epoch {
            file.info.starting_time.nanoseconds_since_epoch = log_time_ns;
        }
        file.end_ns = file.end_ns.max(log_time_ns);
        file.info.message_count += 1;
        entry.count += 1;
        self.total += 1;
        self.start_ns = Some(self.start_ns.map_or(log_time_ns, |s| s.min(log_time_ns)));
        self.end_ns = self.end_ns.max(log_time_ns);
        Ok(())
    }

    fn file_name(&self, index: usize) -> String {
        let stem = self.dir.file_name().and_then(|n| n.to_str()).unwrap_or("bag");
        format!("{stem}_{index}.mcap")
    }

    fn current_path(&self) -> PathBuf {
        self.dir.join(self.file_name(self.files.len()))
    }

    fn open_file(&mut self) -> Result<(), BagError> {
        let name = self.file_name(self.files.len());
        let path = self.dir.join(&name);
        let file = File::create(&path).map_err(|e| BagError::io(&path, e))?;
        let compression = match self.options.compression {
            ChunkCompression::None => None,
            ChunkCompression::Zstd => Some(mcap::Compression::Zstd),
            ChunkCompression::Lz4 => Some(mcap::Compression::Lz4),
        };
        let mut opts = mcap::WriteOptions::new()
            .profile(PROFILE)
            .library(concat!("univla_ros ", env!("CARGO_PKG_VERSION")))
            .compression(compression);
        if let Some(size) = self.options.chunk_size {
            opts = opts.chunk_size(Some(size));
        }
        let writer = opts.create(BufWriter::new(file)).map_err(|e| BagError::Output {
            path: path.clone(),
            why: e.to_string(),
        })?;
        self.current = Some(OpenFile {
            writer,
            channels: HashMap::new(),
            info: FileInfo {
                path: name,
                starting_time: NanosecondsSinceEpoch::default(),
                duration: Nanoseconds::default(),
                message_count: 0,
            },
            end_ns: 0,
        });
        Ok(())
    }

    fn close_file(&mut self) -> Result<(), BagError> {
        let path = self.current_path();
        if let Some(mut f) = self.current.take() {
            f.writer.finish().map_err(|e| BagError::Output {
                path: path.clone(),
                why: e.to_string(),
            })?;
            f.info.duration.nanoseconds = f.end_ns - f.info.starting_time.nanoseconds_since_epoch;
            self.files.push(f.info);
        }
        Ok(())
    }

    /// Closes the last file and writes `metadata.yaml`; returns what was written.
    pub fn finish(mut self) -> Result<BagInfo, BagError> {
        if self.current.is_none() && self.files.is_empty() {
            // An empty bag still gets one (empty) storage file, like rosbag2.
            self.open_file()?;
        }
        self.close_file()?;
        let start = self.start_ns.unwrap_or(0);
        let info = BagInfo {
            version: WRITE_VERSION,
            storage_identifier: "mcap".into(),
            duration: Nanoseconds {
                nanoseconds: self.end_ns.saturating_sub(start).max(0),
            },
            starting_time: NanosecondsSinceEpoch {
                nanoseconds_since_epoch: start,
            },
            message_count: self.total,
            topics_with_message_count: self
                .topic_order
                .iter()
                .filter_map(|name| {
                    self.topics.get(name).map(|t| TopicWithCount {
                        topic_metadata: TopicMetadata {
                            name: name.clone(),
                            type_name: t.type_name.clone(),
                            serialization_format: CDR_FORMAT.into(),
                            offered_qos_profiles: serde_yaml::Value::Sequence(Vec::new()),
                            type_description_hash: String::new(),
                        },
                        message_count: t.count,
                    })
                })
                .collect(),
            compression_format: String::new(),
            compression_mode: String::new(),
            relative_file_paths: self.files.iter().map(|f| f.path.clone()).collect(),
            files: self.files.clone(),
            custom_data: None,
            ros_distro: ROS_DISTRO.into(),
        };
        let doc = MetadataDoc {
            rosbag2_bagfile_information: info.clone(),
        };
        let path = self.dir.join(METADATA_FILE);
        let text = serde_yaml::to_string(&doc).map_err(|e| BagError::Output {
            path: path.clone(),
            why: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|e| BagError::io(&path, e))?;
        Ok(info)
    }
}
