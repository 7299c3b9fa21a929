//! Replays the fuzz corpora (`fuzz/seeds/<target>/`) through the same functions the cargo-fuzz
//! targets run (`fuzz/harness.rs`): deterministic, no fuzzing toolchain, every input must return.
//! `cargo test --test fuzz_replay -- --ignored write_seed_corpus` regenerates the seed inputs
//! from the test fixtures (the fuzzers' minimised findings are added by hand, see fuzz/README.md).
#[path = "bag_common.rs"]
mod bag_common;
#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

use univla_ros::ros::msgs::builtin_interfaces::{Duration as RosDuration, Time};
use univla_ros::ros::msgs::control_msgs::FollowJointTrajectoryGoal;
use univla_ros::ros::msgs::sensor_msgs::{CompressedImage, Image, JointState};
use univla_ros::ros::msgs::std_msgs::Header;
use univla_ros::ros::msgs::to_cdr;
use univla_ros::ros::msgs::trajectory_msgs::{JointTrajectory, JointTrajectoryPoint};
use univla_ros::ros::msgs::univla_msgs::ExecuteGoal;

/// The harness function a fuzz target runs on one input.
type Harness = fn(&[u8]);

/// Each target with the harness function it fuzzes.
const TARGETS: [(&str, Harness); 6] = [
    ("cdr_messages", harness::cdr_messages),
    ("image_decode", harness::image_decode),
    ("mcap_file", harness::mcap_file),
    ("sqlite_file", harness::sqlite_file),
    ("bag_metadata", harness::bag_metadata),
    ("urdf", harness::urdf),
];
/// A replayed corpus stays small (it is committed).
const MAX_CORPUS_FILES: usize = 200;
const MAX_CORPUS_BYTES: u64 = 4 << 20;

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target)
}

fn corpus(target: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(seeds_dir(target))
        .unwrap_or_else(|e| panic!("fuzz/seeds/{target}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_replays_without_a_panic() {
    for (target, run) in TARGETS {
        let files = corpus(target);
        assert!(!files.is_empty(), "fuzz/seeds/{target} is empty");
        assert!(files.len() <= MAX_CORPUS_FILES, "{target}: {} files", files.len());
        let bytes: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
        assert!(bytes <= MAX_CORPUS_BYTES, "{target}: {bytes} bytes");
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{target}: {} panicked", f.display());
        }
    }
}

/// The seeds reach the code behind the decoders (a corpus of rejected inputs would fuzz only
/// the first check).
#[test]
fn seeds_are_valid_inputs() {
    use univla_ros::bag::reader::BagReader;
    for target in ["mcap_file", "sqlite_file"] {
        let ext = if target == "mcap_file" { "mcap" } else { "db3" };
        let seed = corpus(target)
            .into_iter()
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("seed_"))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("x.{ext}"));
        std::fs::copy(&seed, &path).unwrap();
        let reader = BagReader::open(&path).unwrap();
        assert!(!reader.topics().is_empty(), "{target}");
    }
    let png = corpus("image_decode")
        .into_iter()
        .find(|p| p.ends_with("seed_fixture.png"))
        .unwrap();
    assert!(univla_ros::runtime::preprocess::RgbImage::load(png).is_ok());
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = seeds_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

/// Writes the seed inputs (named `seed_*`) from the fixtures and the independent `rosbags` bags.
#[test]
#[ignore = "regenerates fuzz/seeds; run by hand"]
fn write_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Small images (fuzzing speed): a 16x12 corner of a fixture frame as PNG and as JPEG.
    let frame =
        univla_ros::runtime::preprocess::RgbImage::load(root.join("test/data/univla-tiny/images/libero_step0.png"))
            .unwrap();
    let corner: Vec<u8> = (0..12)
        .flat_map(|y| {
            let row = (y * frame.width() as usize) * 3;
            frame.as_raw()[row..row + 16 * 3].to_vec()
        })
        .collect();
    let rgb = univla_ros::runtime::preprocess::RgbImage::new(16, 12, corner).unwrap();
    let encode = |format| {
        let mut out = std::io::Cursor::new(Vec::new());
        image::write_buffer_with_format(&mut out, rgb.as_raw(), 16, 12, image::ColorType::Rgb8, format).unwrap();
        out.into_inner()
    };
    let png = encode(image::ImageOutputFormat::Png);
    write("image_decode", "seed_fixture.png", &png);
    write(
        "image_decode",
        "seed_fixture.jpg",
        &encode(image::ImageOutputFormat::Jpeg(90)),
    );
    let header = Header {
        stamp: Time { sec: 1, nanosec: 2 },
        frame_id: "cam".into(),
    };
    let img = Image {
        header: header.clone(),
        height: 4,
        width: 4,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: 12,
        data: rgb.as_raw()[..48].to_vec(),
    };
    write("cdr_messages", "seed_image", &to_cdr(&img).unwrap());
    let comp = CompressedImage {
        header: header.clone(),
        format: "png".into(),
        data: png,
    };
    write("cdr_messages", "seed_compressed", &to_cdr(&comp).unwrap());
    let js = JointState {
        header: header.clone(),
        name: vec!["joint1".into(), "joint2".into()],
        position: vec![0.1, 0.2],
        velocity: vec![],
        effort: vec![],
    };
    write("cdr_messages", "seed_joint_state", &to_cdr(&js).unwrap());
    let traj = JointTrajectory {
        header,
        joint_names: vec!["joint1".into()],
        points: vec![JointTrajectoryPoint {
            positions: vec![0.5],
            time_from_start: RosDuration { sec: 0, nanosec: 100 },
            ..Default::default()
        }],
    };
    write("cdr_messages", "seed_trajectory", &to_cdr(&traj).unwrap());
    let goal = FollowJointTrajectoryGoal {
        trajectory: traj,
        ..Default::default()
    };
    write("cdr_messages", "seed_fjt_goal", &to_cdr(&goal).unwrap());
    let exec = ExecuteGoal {
        instruction: "pick up the bowl".into(),
        ..Default::default()
    };
    write("cdr_messages", "seed_execute_goal", &to_cdr(&exec).unwrap());
    let bags = bag_common::rosbags_dir();
    for (target, sub, ext) in [
        ("mcap_file", "rosbags_mcap", "mcap"),
        ("sqlite_file", "rosbags_sqlite3", "db3"),
    ] {
        let dir = bags.join(sub);
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == ext) {
                write(target, &format!("seed_rosbags.{ext}"), &std::fs::read(&p).unwrap());
            }
            if p.file_name().is_some_and(|n| n == "metadata.yaml") && ext == "mcap" {
                write("bag_metadata", "seed_rosbags.yaml", &std::fs::read(&p).unwrap());
            }
        }
    }
    // Small bags too (fuzzing speed): three String messages, as MCAP from the project's writer
    // and as sqlite3 in rosbag2's schema with 512-byte pages from Python's sqlite3.
    let tmp = tempfile::tempdir().unwrap();
    let mut w = univla_ros::bag::writer::McapBagWriter::create(&tmp.path().join("b"), Default::default()).unwrap();
    for k in 0..3i64 {
        let msg = univla_ros::ros::msgs::std_msgs::StringMsg {
            data: format!("go {k}"),
        };
        w.write("/instruction", k, &msg).unwrap();
    }
    w.finish().unwrap();
    for e in std::fs::read_dir(tmp.path().join("b")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "mcap") {
            write("mcap_file", "seed_small.mcap", &std::fs::read(&p).unwrap());
        }
    }
    let db3 = tmp.path().join("small.db3");
    let script = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA page_size=512")
c.execute("CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, "
          "serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL)")
c.execute("CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, "
          "timestamp INTEGER NOT NULL, data BLOB NOT NULL)")
c.execute("INSERT INTO topics VALUES(1, '/instruction', 'std_msgs/msg/String', 'cdr', '')")
for i, word in enumerate([b"go", b"hi"]):
    cdr = b"\x00\x01\x00\x00" + (len(word) + 1).to_bytes(4, "little") + word + b"\x00"
    c.execute("INSERT INTO messages VALUES(?, 1, ?, ?)", (i + 1, 5 + i, cdr))
c.commit()
"#;
    let st = std::process::Command::new(bag_common::venv_python())
        .args(["-c", script])
        .arg(&db3)
        .status()
        .unwrap();
    assert!(st.success());
    write("sqlite_file", "seed_small.db3", &std::fs::read(&db3).unwrap());
    write(
        "urdf",
        "seed_arm6.urdf",
        &std::fs::read(root.join("test/data/urdf/arm6.urdf")).unwrap(),
    );
}
