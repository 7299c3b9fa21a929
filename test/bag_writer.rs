//! Bags written by our MCAP writer: round trips (chunk compression, split files, ordering),
//! schemas, corrupt/unsupported inputs, and as-of alignment edge cases of the replay.
#[path = "bag_common.rs"]
mod common;

use std::path::Path;

use common::{action, FakePolicy};
use univla_ros::bag::cdr::decode;
use univla_ros::bag::msgdefs::schema_text;
use univla_ros::bag::msgs::Float64MultiArray;
use univla_ros::bag::reader::BagReader;
use univla_ros::bag::replay::{replay_bag, BagTopics, CommandAlignment, EpisodeTrace, ReplayConfig};
use univla_ros::bag::writer::{ChunkCompression, McapBagWriter, WriterOptions};
use univla_ros::bag::BagError;
use univla_ros::ros::msgs::builtin_interfaces::Time;
use univla_ros::ros::msgs::sensor_msgs::{Image, JointState};
use univla_ros::ros::msgs::std_msgs::Header;

const T0: i64 = 1_700_000_000_000_000_000;
const MS: i64 = 1_000_000;
const W: u32 = 16;
const H: u32 = 12;

/// Frame k: rgb8, first byte k, the rest a pattern.
fn image(k: usize, t: i64) -> Image {
    let mut data: Vec<u8> = (0..(W * H * 3) as usize).map(|i| ((k * 13 + i) % 251) as u8).collect();
    data[0] = k as u8;
    Image {
        header: Header {
            stamp: Time::from_nanos(t),
            frame_id: "cam".into(),
        },
        height: H,
        width: W,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: W * 3,
        data,
    }
}

fn joints(t: i64, q: f64) -> JointState {
    JointState {
        header: Header {
            stamp: Time::from_nanos(t),
            frame_id: String::new(),
        },
        name: vec!["a".into(), "b".into()],
        position: vec![q, -q],
        ..Default::default()
    }
}

fn options(compression: ChunkCompression, split: Option<u64>) -> WriterOptions {
    WriterOptions {
        compression,
        chunk_size: Some(4096),
        max_messages_per_file: split,
    }
}

#[test]
fn round_trip_all_compressions_and_split_files() {
    for (compression, split) in [
        (ChunkCompression::None, None),
        (ChunkCompression::Zstd, Some(7)),
        (ChunkCompression::Lz4, Some(5)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let bag = dir.path().join("rt");
        let mut w = McapBagWriter::create(&bag, options(compression, split)).unwrap();
        let mut written = Vec::new();
        for k in 0..12usize {
            let t = T0 + k as i64 * 100 * MS;
            w.write("/cam", t, &image(k, t)).unwrap();
            w.write("/act", t + MS, &Float64MultiArray::vector("a", action(k)))
                .unwrap();
            written.push((k, t));
        }
        let info = w.finish().unwrap();
        assert_eq!(info.message_count, 24);
        let expected_files = split.map_or(1, |s| 24_u64.div_ceil(s) as usize);
        assert_eq!(info.relative_file_paths.len(), expected_files, "{compression:?}");
        let reader = BagReader::open(&bag).unwrap();
        assert_eq!(reader.files().len(), expected_files);
        let msgs: Vec<_> = reader
            .messages(&["/cam", "/act"])
            .unwrap()
            .map(|m| m.unwrap())
            .collect();
        assert_eq!(msgs.len(), 24);
        for (i, m) in msgs.iter().enumerate() {
            let (k, t) = written[i / 2];
            if i % 2 == 0 {
                assert_eq!((&*m.topic, m.log_time_ns), ("/cam", t));
                assert_eq!(decode::<Image>(m).unwrap(), image(k, t));
            } else {
                assert_eq!((&*m.topic, m.log_time_ns), ("/act", t + MS));
                assert_eq!(decode::<Float64MultiArray>(m).unwrap().data, action(k));
            }
        }
    }
}

#[test]
fn schemas_carry_the_message_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("schemas");
    let mut w = McapBagWriter::create(&bag, WriterOptions::default()).unwrap();
    w.write("/cam", T0, &image(0, T0)).unwrap();
    w.write("/js", T0, &joints(T0, 1.0)).unwrap();
    w.finish().unwrap();
    let bytes = std::fs::read(bag.join("schemas_0.mcap")).unwrap();
    let summary = mcap::Summary::read(&bytes).unwrap().unwrap();
    let mut seen = 0;
    for c in summary.channels.values() {
        let s = c.schema.as_ref().unwrap();
        assert_eq!(s.encoding, "ros2msg");
        assert_eq!(c.message_encoding, "cdr");
        assert_eq!(std::str::from_utf8(&s.data).unwrap(), schema_text(&s.name).unwrap());
        assert!(std::str::from_utf8(&s.data)
            .unwrap()
            .contains("MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n"));
        seen += 1;
    }
    assert_eq!(seen, 2);
    let header = mcap::read::LinearReader::new(&bytes).unwrap().next().unwrap().unwrap();
    match header {
        mcap::records::Record::Header(h) => assert_eq!(h.profile, "ros2"),
        other => panic!("first record is {other:?}"),
    }
}

#[test]
fn out_of_order_writes_are_read_in_time_order_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("ooo");
    let mut w = McapBagWriter::create(&bag, options(ChunkCompression::Zstd, Some(4))).unwrap();
    // Times 9, 8, ..., 0 spread over 3 files, plus duplicates of t=5 on two topics.
    for i in (0..10i64).rev() {
        w.write("/js", T0 + i * MS, &joints(T0 + i * MS, i as f64)).unwrap();
    }
    w.write("/js2", T0 + 5 * MS, &joints(T0 + 5 * MS, 50.0)).unwrap();
    w.finish().unwrap();
    let reader = BagReader::open(&bag).unwrap();
    assert_eq!(reader.files().len(), 3);
    let times: Vec<i64> = reader
        .messages(&["/js", "/js2"])
        .unwrap()
        .map(|m| m.unwrap().log_time_ns - T0)
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    assert_eq!(times.len(), 11);
}

#[test]
fn truncated_mcap_is_reported_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("cut");
    let mut w = McapBagWriter::create(&bag, WriterOptions::default()).unwrap();
    for k in 0..10 {
        w.write("/cam", T0 + k as i64, &image(k, T0)).unwrap();
    }
    w.finish().unwrap();
    let file = bag.join("cut_0.mcap");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = BagReader::open(&bag).unwrap_err();
    assert!(matches!(err, BagError::Corrupt { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("cut_0.mcap") && text.contains("truncated"), "{text}");
}

#[test]
fn file_compression_and_unknown_versions_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("meta");
    let mut w = McapBagWriter::create(&bag, WriterOptions::default()).unwrap();
    w.write("/js", T0, &joints(T0, 0.0)).unwrap();
    w.finish().unwrap();
    let meta = bag.join("metadata.yaml");
    let text = std::fs::read_to_string(&meta).unwrap();
    let compressed = text
        .replace("compression_format: ''", "compression_format: zstd")
        .replace("compression_mode: ''", "compression_mode: FILE");
    std::fs::write(&meta, &compressed).unwrap();
    let err = BagReader::open(&bag).unwrap_err().to_string();
    assert!(err.contains("file-level zstd compression"), "{err}");
    std::fs::write(&meta, text.replace("version: 9", "version: 3")).unwrap();
    let err = BagReader::open(&bag).unwrap_err().to_string();
    assert!(err.contains("metadata version 3 not supported"), "{err}");
}

/// Writes a bag with frames at `frames` (index, time), commands `action(k)` 1 ms before each frame
/// unless listed in `no_command`, and joint states at `joint_times`.
fn alignment_bag(dir: &Path, frames: &[(usize, i64)], no_command: &[usize], joint_times: &[i64]) -> std::path::PathBuf {
    let bag = dir.join("align");
    let mut w = McapBagWriter::create(&bag, WriterOptions::default()).unwrap();
    for &(k, t) in frames {
        w.write("/cam", t, &image(k, t)).unwrap();
        if !no_command.contains(&k) {
            w.write("/cmd", t - MS, &Float64MultiArray::vector("a", action(k)))
                .unwrap();
        }
    }
    for (i, &t) in joint_times.iter().enumerate() {
        w.write("/js", t, &joints(t, i as f64)).unwrap();
    }
    w.finish().unwrap();
    std::fs::write(bag.join("instruction.txt"), "stack the cups\n").unwrap();
    bag
}

/// Replays with the as-of ground-truth rule (these bags record each command before its frame).
fn replay(bag: &Path, policy: &mut FakePolicy) -> EpisodeTrace {
    let config = ReplayConfig {
        topics: BagTopics {
            camera: "/cam".into(),
            command: "/cmd".into(),
            joint_states: Some("/js".into()),
            max_age_ms: 150.0,
            ..Default::default()
        },
        command_alignment: CommandAlignment::AsOf,
        ..Default::default()
    };
    replay_bag(bag, &config, policy, &mut || {}).unwrap()
}

fn assert_exact(trace: &EpisodeTrace) {
    for s in &trace.steps {
        assert_eq!(s.predicted, s.ground_truth, "frame {}", s.frame);
    }
}

#[test]
fn missing_and_stale_joint_states_skip_frames() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<(usize, i64)> = (0..20).map(|k| (k, T0 + k as i64 * 100 * MS)).collect();
    // Joint states every 50 ms from 490 ms (so frame 5 is the first with one), none between 1.04 s
    // and 1.54 s: frames 12..=15 find only the 1.04 s one, more than 150 ms old.
    let joint_times: Vec<i64> = (10..40)
        .map(|j| T0 + (j * 50 - 10) * MS)
        .filter(|t| !(T0 + 1050 * MS..T0 + 1500 * MS).contains(t))
        .collect();
    let bag = alignment_bag(dir.path(), &frames, &[], &joint_times);
    let mut policy = FakePolicy::new(vec![0.0; 4]);
    let trace = replay(&bag, &mut policy);
    assert_eq!(policy.resets, ["stack the cups"]);
    assert_eq!(trace.frames, 20);
    assert_eq!(trace.skipped.no_joint_states, 5);
    assert_eq!(trace.skipped.stale_joint_states, 4);
    let evaluated: Vec<usize> = trace.steps.iter().map(|s| s.frame).collect();
    let expected: Vec<usize> = (5..12).chain(16..20).collect();
    assert_eq!(evaluated, expected);
    assert_exact(&trace);
}

#[test]
fn clock_jump_skips_until_streams_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let jump = 1000 * 1000 * MS; // 1000 s
    let frames: Vec<(usize, i64)> = (0..20)
        .map(|k| (k, T0 + k as i64 * 100 * MS + if k >= 10 { jump } else { 0 }))
        .collect();
    // Joint states every 50 ms from t0 - 10 ms; after the jump they resume 60 ms after frame 10.
    let mut joint_times: Vec<i64> = (0..20).map(|j| T0 - 10 * MS + j * 50 * MS).collect();
    joint_times.extend((0..20).map(|j| T0 + jump + 1060 * MS + j * 50 * MS));
    let bag = alignment_bag(dir.path(), &frames, &[], &joint_times);
    let mut policy = FakePolicy::new(vec![0.0; 4]);
    let trace = replay(&bag, &mut policy);
    assert_eq!(trace.skipped.stale_joint_states, 1);
    assert_eq!(trace.steps.len(), 19);
    assert!(trace.steps.iter().all(|s| s.frame != 10));
    assert_exact(&trace);
}

#[test]
fn duplicate_stamps_and_same_time_messages_count_as_of() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("dup");
    let mut w = McapBagWriter::create(&bag, WriterOptions::default()).unwrap();
    // Frames 0 and 1 share t0; the command for frame 1 has exactly the frame's time (must be used),
    // frame 2 has no command of its own (the previous, 100 ms old, is still fresh).
    let t1 = T0 + 100 * MS;
    w.write("/cmd", T0 - MS, &Float64MultiArray::vector("a", action(0)))
        .unwrap();
    w.write("/js", T0 - MS, &joints(T0, 0.0)).unwrap();
    w.write("/cam", T0, &image(0, T0)).unwrap();
    w.write("/cmd", T0, &Float64MultiArray::vector("a", action(1))).unwrap();
    w.write("/cam", T0, &image(1, T0)).unwrap();
    w.write("/js", t1 - MS, &joints(T0, 0.0)).unwrap();
    w.write("/cam", t1, &image(2, t1)).unwrap();
    w.finish().unwrap();
    std::fs::write(bag.join("instruction.txt"), "x").unwrap();
    let mut policy = FakePolicy::new(vec![0.0; 4]);
    let trace = replay(&bag, &mut policy);
    assert_eq!(trace.steps.len(), 3);
    // Both frames at t0 are steps. The reader yields equal times in file order, so frame 0 sees
    // the command of frame 0 and frame 1 the one written after it at the same time.
    assert_eq!(trace.steps[0].ground_truth, action(0));
    assert_eq!(trace.steps[1].ground_truth, action(1));
    assert_eq!(trace.steps[2].ground_truth, action(1));
    assert_eq!(trace.steps[2].predicted, action(2));
}

#[test]
fn missing_ground_truth_is_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<(usize, i64)> = (0..10).map(|k| (k, T0 + k as i64 * 100 * MS)).collect();
    // Commands missing for frames 0 (none yet), 4, 5 (stale after 150 ms: frame 5 is 201 ms after).
    let joint_times: Vec<i64> = (0..25).map(|j| T0 - 10 * MS + j * 50 * MS).collect();
    let bag = alignment_bag(dir.path(), &frames, &[0, 4, 5], &joint_times);
    let mut policy = FakePolicy::new(vec![0.0; 4]);
    let trace = replay(&bag, &mut policy);
    assert_eq!(trace.skipped.no_ground_truth, 1);
    assert_eq!(trace.skipped.stale_ground_truth, 1);
    // Frame 4 uses frame 3's command (101 ms old): the as-of rule, not an exact match.
    let f4 = trace.steps.iter().find(|s| s.frame == 4).unwrap();
    assert_eq!(f4.ground_truth, action(3));
    assert_eq!(trace.steps.len(), 8);
}

#[test]
fn missing_configured_topic_fails_before_replay() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<(usize, i64)> = (0..3).map(|k| (k, T0 + k as i64 * 100 * MS)).collect();
    let bag = alignment_bag(dir.path(), &frames, &[], &[]);
    let mut policy = FakePolicy::new(vec![0.0; 4]);
    let config = ReplayConfig {
        topics: BagTopics {
            camera: "/cam".into(),
            command: "/cmd".into(),
            joint_states: Some("/js".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = replay_bag(&bag, &config, &mut policy, &mut || {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("topic /js not found"), "{err}");
    assert_eq!(policy.calls, 0);
}

fn bench_args(frames: usize, width: u32, height: u32, zstd: bool) -> univla_ros::bag::bench::BenchBagArgs {
    univla_ros::bag::bench::BenchBagArgs {
        frames,
        width,
        height,
        zstd,
        dir: None,
    }
}

#[test]
fn bench_bag_runs_on_a_small_recording() {
    let r = univla_ros::bag::bench::bench_bag(&bench_args(30, 64, 48, true)).unwrap();
    assert_eq!(r.frames, 30);
    assert!(r.bag_bytes > 0);
    // Reading, decoding and writing 30 frames takes time: a zero would mean nothing was measured.
    assert!(
        r.overhead_ms_per_frame > 0.0 && r.overhead_ms_per_frame.is_finite(),
        "{}",
        r.overhead_ms_per_frame
    );
    assert!(r.evaluate_s >= r.policy_s);
}

/// The figure: `cargo test --release --test bag_writer -- --ignored --nocapture bench_`.
#[test]
#[ignore]
fn bench_1000_frames_640x480() {
    for zstd in [false, true] {
        let r = univla_ros::bag::bench::bench_bag(&bench_args(1000, 640, 480, zstd)).unwrap();
        println!("{}", serde_json::to_string_pretty(&r).unwrap());
    }
}

#[cfg(feature = "opencv")] // writes its frames with OpenCV
#[test]
fn compressed_camera_and_twist_commands_replay() {
    use opencv::core::{Mat, Vector};
    use opencv::prelude::*;
    use univla_ros::ros::msgs::geometry_msgs::{Twist, Vector3};
    use univla_ros::ros::msgs::sensor_msgs::CompressedImage;

    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("png");
    let mut w = McapBagWriter::create(&bag, WriterOptions::default()).unwrap();
    for k in 0..6usize {
        let t = T0 + k as i64 * 100 * MS;
        // PNG is lossless, so the fake policy still reads k from the first byte.
        let rgb = image(k, t).data;
        let mat = Mat::from_slice(&rgb).unwrap();
        let mat = mat.reshape(3, H as i32).unwrap();
        let mut bgr = Mat::default();
        opencv::imgproc::cvt_color_def(&mat, &mut bgr, opencv::imgproc::COLOR_RGB2BGR).unwrap();
        let mut png = Vector::<u8>::new();
        opencv::imgcodecs::imencode_def(".png", &bgr, &mut png).unwrap();
        let msg = CompressedImage {
            format: "png".into(),
            data: png.to_vec(),
            ..Default::default()
        };
        w.write("/cam/compressed", t, &msg).unwrap();
        let a = action(k);
        let twist = Twist {
            linear: Vector3 {
                x: a[0],
                ..Default::default()
            },
            angular: Vector3 {
                z: a[1],
                ..Default::default()
            },
        };
        w.write("/cmd_vel", t - MS, &twist).unwrap();
    }
    w.finish().unwrap();
    let config = ReplayConfig {
        topics: BagTopics {
            camera: "/cam/compressed".into(),
            command: "/cmd_vel".into(),
            ..Default::default()
        },
        instruction: Some("drive".into()),
        // Each Twist is written 1 ms before its frame.
        command_alignment: CommandAlignment::AsOf,
        ..Default::default()
    };
    let mut policy = FakePolicy::new(vec![0.0; 4]);
    // The policy answers 4 dimensions, a Twist gives 2: a clear configuration error.
    let err = replay_bag(&bag, &config, &mut policy, &mut || {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("4 dimensions") && err.contains("/cmd_vel gives 2"),
        "{err}"
    );
    struct TwoDims(FakePolicy);
    impl univla_ros::bag::replay::ReplayPolicy for TwoDims {
        fn reset(&mut self, i: &str) {
            self.0.reset(i)
        }
        fn step(
            &mut self,
            image: &univla_ros::runtime::preprocess::RgbImage,
            p: Option<&[f32]>,
        ) -> Result<univla_ros::bag::replay::PolicyStep, String> {
            let mut s = self.0.step(image, p)?;
            s.action.truncate(2);
            Ok(s)
        }
    }
    let mut policy = TwoDims(FakePolicy::new(vec![0.0; 4]));
    let trace = replay_bag(&bag, &config, &mut policy, &mut || {}).unwrap();
    assert_eq!(trace.steps.len(), 6);
    assert_exact(&trace);
    assert_eq!(trace.command_type, "geometry_msgs/msg/Twist");
}
