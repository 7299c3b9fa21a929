//! What each fuzz target does with one input, shared by the cargo-fuzz targets (`fuzz_targets/`)
//! and the corpus replay test (`test/fuzz_replay.rs`), so CI replays exactly what was fuzzed.
//! Every function must return (an error is fine) for any input: a panic, a hang or a huge
//! allocation is a finding.
#![allow(dead_code)]
use std::path::Path;
use std::time::Instant;

use univla_ros::bag::metadata::BagMetadata;
use univla_ros::bag::reader::BagReader;
use univla_ros::node::control::urdf::UrdfChain;
use univla_ros::node::input::{CameraFrame, JointCache};
use univla_ros::ros::msgs::control_msgs::FollowJointTrajectoryGoal;
use univla_ros::ros::msgs::from_cdr;
use univla_ros::ros::msgs::sensor_msgs::{CompressedImage, Image, JointState};
use univla_ros::ros::msgs::std_msgs::StringMsg;
use univla_ros::ros::msgs::trajectory_msgs::JointTrajectory;
use univla_ros::ros::msgs::univla_msgs::ExecuteGoal;
use univla_ros::runtime::preprocess::RgbImage;

/// Pixel limit while fuzzing: small, so that valid images decode fast.
const FUZZ_MAX_PIXELS: u64 = 1 << 20;
/// Most messages read from one fuzzed bag.
const MAX_BAG_MESSAGES: usize = 10_000;

/// The CDR decoders of every message the nodes take from the network, then the node's own
/// validation of what decoded.
pub fn cdr_messages(data: &[u8]) {
    if let Ok(img) = from_cdr::<Image>(data) {
        let _ = CameraFrame::Raw(img).decode(FUZZ_MAX_PIXELS);
    }
    if let Ok(img) = from_cdr::<CompressedImage>(data) {
        let _ = CameraFrame::Compressed(img).decode(FUZZ_MAX_PIXELS);
    }
    if let Ok(js) = from_cdr::<JointState>(data) {
        let mut cache = JointCache::new(vec!["joint1".into(), "joint2".into()]);
        let _ = cache.update(&js, Instant::now());
    }
    let _ = from_cdr::<FollowJointTrajectoryGoal>(data);
    let _ = from_cdr::<JointTrajectory>(data);
    let _ = from_cdr::<ExecuteGoal>(data);
    let _ = from_cdr::<StringMsg>(data);
}

/// Compressed-image decoding behind the header check.
pub fn image_decode(data: &[u8]) {
    let _ = RgbImage::decode_limited(data, FUZZ_MAX_PIXELS);
}

/// Writes `data` as a storage file named `name` in a fresh directory and reads the whole bag.
fn read_bag_file(data: &[u8], name: &str) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join(name);
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(reader) = BagReader::open(&path) else { return };
    let topics: Vec<String> = reader.topics().iter().map(|t| t.name.clone()).collect();
    let names: Vec<&str> = topics.iter().map(|s| s.as_str()).collect();
    if let Ok(stream) = reader.messages(&names) {
        for m in stream.take(MAX_BAG_MESSAGES) {
            if m.is_err() {
                break;
            }
        }
    }
}

/// The MCAP reader: summary, chunk index, chunks, messages.
pub fn mcap_file(data: &[u8]) {
    read_bag_file(data, "fuzz.mcap");
}

/// The sqlite3 reader: schema check, topics, the index pass and payloads.
pub fn sqlite_file(data: &[u8]) {
    read_bag_file(data, "fuzz.db3");
}

/// `metadata.yaml` parsing and its path rules.
pub fn bag_metadata(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(meta) = BagMetadata::parse(Path::new("bag"), Path::new("bag/metadata.yaml"), text) {
            let _ = meta.file_paths();
        }
    }
}

/// URDF parsing of the chain `base_link` → `tool0`, then forward kinematics on it.
pub fn urdf(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(chain) = UrdfChain::from_str(text, "base_link", "tool0") {
            let _ = chain.tip_pose(&vec![0.5; chain.dof()]);
        }
    }
}
