//! rosbag2 `metadata.yaml` (format versions 4 to 9): storage plugin, files and topics.
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BagError;

/// File name of the bag description inside a bag directory.
pub const METADATA_FILE: &str = "metadata.yaml";
/// Oldest and newest `metadata.yaml` versions this reader understands.
pub const MIN_VERSION: u32 = 4;
pub const MAX_VERSION: u32 = 9;
/// The version our writer produces (Jazzy).
pub const WRITE_VERSION: u32 = 9;

/// Storage plugin of a bag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StorageKind {
    /// `mcap` (rosbag2 default since Iron).
    Mcap,
    /// `sqlite3` `.db3` files (Humble and older).
    Sqlite3,
}

impl StorageKind {
    /// From `storage_identifier`.
    pub fn from_identifier(id: &str) -> Option<Self> {
        match id {
            "mcap" => Some(Self::Mcap),
            "sqlite3" => Some(Self::Sqlite3),
            _ => None,
        }
    }

    /// From a storage file's extension (`.mcap`, `.db3`).
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("mcap") => Some(Self::Mcap),
            Some("db3") => Some(Self::Sqlite3),
            _ => None,
        }
    }

    /// The `storage_identifier` string.
    pub fn identifier(self) -> &'static str {
        match self {
            Self::Mcap => "mcap",
            Self::Sqlite3 => "sqlite3",
        }
    }
}

/// `rosbag2_bagfile_information`: the fields this crate reads and writes (others are ignored).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BagInfo {
    pub version: u32,
    pub storage_identifier: String,
    #[serde(default)]
    pub duration: Nanoseconds,
    #[serde(default)]
    pub starting_time: NanosecondsSinceEpoch,
    #[serde(default)]
    pub message_count: u64,
    #[serde(default)]
    pub topics_with_message_count: Vec<TopicWithCount>,
    #[serde(default)]
    pub compression_format: String,
    #[serde(default)]
    pub compression_mode: String,
    #[serde(default)]
    pub relative_file_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ros_distro: String,
}

/// `{nanoseconds: N}`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Nanoseconds {
    pub nanoseconds: i64,
}

/// `{nanoseconds_since_epoch: N}`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct NanosecondsSinceEpoch {
    pub nanoseconds_since_epoch: i64,
}

/// One entry of `topics_with_message_count`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicWithCount {
    pub topic_metadata: TopicMetadata,
    #[serde(default)]
    pub message_count: u64,
}

/// A topic: name, ROS type and serialization format (`cdr`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default)]
    pub serialization_format: String,
    /// A YAML string before version 9, a list since; kept opaque.
    #[serde(default)]
    pub offered_qos_profiles: serde_yaml::Value,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub type_description_hash: String,
}

/// One entry of `files` (version 5 and later).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileInfo {
    pub path: String,
    #[serde(default)]
    pub starting_time: NanosecondsSinceEpoch,
    #[serde(default)]
    pub duration: Nanoseconds,
    #[serde(default)]
    pub message_count: u64,
}

/// The top-level document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetadataDoc {
    pub rosbag2_bagfile_information: BagInfo,
}

/// A parsed and checked bag description.
#[derive(Debug, Clone)]
pub struct BagMetadata {
    /// The bag directory.
    pub dir: PathBuf,
    pub info: BagInfo,
    pub storage: StorageKind,
}

/// Whether `relative` names something inside the directory it is joined to: no root, drive
/// prefix or `..` component.
fn stays_inside(relative: &Path) -> bool {
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Largest `metadata.yaml` read (a bag of thousands of topics and files is a few hundred kB).
pub const MAX_METADATA_BYTES: u64 = 16 << 20;

/// Refuses anything but a regular file (after following symlinks) before it is opened: a FIFO
/// or device named like a bag file would block the reader forever or never end.
pub(crate) fn require_regular_file(path: &Path) -> Result<(), BagError> {
    let meta = std::fs::metadata(path).map_err(|e| BagError::io(path, e))?;
    if meta.is_file() {
        Ok(())
    } else {
        Err(BagError::Unsupported {
            path: path.to_path_buf(),
            why: "not a regular file (a directory, FIFO, socket or device)".into(),
        })
    }
}

impl BagMetadata {
    /// Reads and checks `<dir>/metadata.yaml`.
    pub fn load(dir: &Path) -> Result<Self, BagError> {
        let path = dir.join(METADATA_FILE);
        require_regular_file(&path)?;
        let size = std::fs::metadata(&path).map_err(|e| BagError::io(&path, e))?.len();
        if size > MAX_METADATA_BYTES {
            return Err(BagError::Metadata {
                path,
                why: format!("{size} bytes; a rosbag2 metadata file is at most {MAX_METADATA_BYTES} bytes here"),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| BagError::io(&path, e))?;
        Self::parse(dir, &path, &text)
    }

    /// Parses the text of a `metadata.yaml` (`path` only names it in errors).
    pub fn parse(dir: &Path, path: &Path, text: &str) -> Result<Self, BagError> {
        let meta_err = |why: String| BagError::Metadata {
            path: path.to_path_buf(),
            why,
        };
        let doc: MetadataDoc =
            serde_yaml::from_str(text).map_err(|e| meta_err(format!("not a rosbag2 metadata file: {e}")))?;
        let info = doc.rosbag2_bagfile_information;
        if !(MIN_VERSION..=MAX_VERSION).contains(&info.version) {
            return Err(meta_err(format!(
                "metadata version {} not supported (supported: {MIN_VERSION} to {MAX_VERSION})",
                info.version
            )));
        }
        let storage = StorageKind::from_identifier(&info.storage_identifier).ok_or_else(|| BagError::Unsupported {
            path: path.to_path_buf(),
            why: format!(
                "storage plugin {:?} (supported: mcap, sqlite3)",
                info.storage_identifier
            ),
        })?;
        if info.compression_mode.eq_ignore_ascii_case("file") {
            return Err(BagError::Unsupported {
                path: path.to_path_buf(),
                why: format!(
                    "file-level {} compression; decompress the files first (e.g. `ros2 bag convert`), \
                     or record with MCAP chunk compression instead",
                    info.compression_format
                ),
            });
        }
        if info.compression_mode.eq_ignore_ascii_case("message") {
            return Err(BagError::Unsupported {
                path: path.to_path_buf(),
                why: format!(
                    "per-message {} compression; convert the bag first (`ros2 bag convert`)",
                    info.compression_format
                ),
            });
        }
        if info.relative_file_paths.is_empty() {
            return Err(meta_err(
                "relative_file_paths is empty: the bag lists no storage files".into(),
            ));
        }
        // A hostile or careless metadata.yaml must not make us read files outside the bag.
        if let Some(p) = info.relative_file_paths.iter().find(|p| !stays_inside(Path::new(p))) {
            return Err(meta_err(format!(
                "relative_file_paths entry {p:?} is absolute or leaves the bag directory"
            )));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            info,
            storage,
        })
    }

    /// Absolute paths of the storage files, in the listed order.
    pub fn file_paths(&self) -> Vec<PathBuf> {
        self.info.relative_file_paths.iter().map(|p| self.dir.join(p)).collect()
    }

    /// Topics listed in the metadata.
    pub fn topics(&self) -> impl Iterator<Item = &TopicMetadata> {
        self.info.topics_with_message_count.iter().map(|t| &t.topic_metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Foxy-era (version 4) file: QoS as a YAML string, no `files`, no `custom_data`.
    const V4: &str = r#"rosbag2_bagfile_information:
  version: 4
  storage_identifier: sqlite3
  relative_file_paths:
    - demo_0.db3
    - demo_1.db3
  duration:
    nanoseconds: 5000000000
  starting_time:
    nanoseconds_since_epoch: 1600000000000000000
  message_count: 12
  topics_with_message_count:
    - topic_metadata:
        name: /camera/image_raw
        type: sensor_msgs/msg/Image
        serialization_format: cdr
        offered_qos_profiles: "- history: 3\n  depth: 0\n"
      message_count: 12
  compression_format: ""
  compression_mode: ""
"#;

    #[test]
    fn version_4_to_9_documents_parse() {
        let dir = Path::new("bag");
        let m = BagMetadata::parse(dir, &dir.join(METADATA_FILE), V4).unwrap();
        assert_eq!(m.storage, StorageKind::Sqlite3);
        assert_eq!(m.file_paths(), [dir.join("demo_0.db3"), dir.join("demo_1.db3")]);
        assert_eq!(m.topics().next().unwrap().type_name, "sensor_msgs/msg/Image");
        for version in 5..=9 {
            let text = V4
                .replace("version: 4", &format!("version: {version}"))
                .replace("storage_identifier: sqlite3", "storage_identifier: mcap")
                .replace(
                    "  compression_mode: \"\"\n",
                    "  compression_mode: \"\"\n  files:\n    - path: demo_0.db3\n      message_count: 12\n  custom_data: ~\n  ros_distro: jazzy\n",
                );
            let m = BagMetadata::parse(dir, &dir.join(METADATA_FILE), &text).unwrap();
            assert_eq!((m.info.version, m.storage), (version, StorageKind::Mcap));
            assert_eq!(m.info.files[0].message_count, 12);
        }
    }

    #[test]
    fn file_paths_outside_the_bag_are_refused() {
        let dir = Path::new("bag");
        let path = dir.join(METADATA_FILE);
        for hostile in ["/etc/passwd", "../other/demo_0.db3", "sub/../../x.db3", ".."] {
            let text = V4.replace("- demo_1.db3", &format!("- {hostile:?}"));
            let err = BagMetadata::parse(dir, &path, &text).unwrap_err().to_string();
            assert!(
                err.contains("bag/metadata.yaml") && err.contains("leaves the bag directory") && err.contains(hostile),
                "{hostile}: {err}"
            );
        }
        // Sub-directories and `./` inside the bag stay accepted.
        let text = V4.replace("- demo_1.db3", "- ./sub/demo_1.db3");
        let m = BagMetadata::parse(dir, &path, &text).unwrap();
        assert_eq!(m.file_paths()[1], dir.join("./sub/demo_1.db3"));
    }

    #[test]
    fn unsupported_inputs_are_named() {
        let dir = Path::new("bag");
        let path = dir.join(METADATA_FILE);
        let err = BagMetadata::parse(dir, &path, &V4.replace("sqlite3", "rosbag_v2")).unwrap_err();
        assert!(err.to_string().contains("storage plugin \"rosbag_v2\""), "{err}");
        let msg = V4
            .replace("compression_format: \"\"", "compression_format: zstd")
            .replace("compression_mode: \"\"", "compression_mode: MESSAGE");
        let err = BagMetadata::parse(dir, &path, &msg).unwrap_err();
        assert!(err.to_string().contains("per-message zstd compression"), "{err}");
        let err = BagMetadata::parse(dir, &path, "foo: 1").unwrap_err();
        assert!(
            err.to_string()
                .contains("bag/metadata.yaml: not a rosbag2 metadata file"),
            "{err}"
        );
    }
}
