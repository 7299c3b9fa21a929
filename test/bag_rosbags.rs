//! Bags written by the independent PyPI `rosbags` writer (MCAP and sqlite3): byte-exact reading,
//! decoding, error messages, and `eval-bag` end to end with a deterministic fake policy, including
//! which recorded command is each frame's ground truth (`--command-alignment`).
#[path = "bag_common.rs"]
mod common;

use std::path::{Path, PathBuf};

use clap::Parser;
use common::{action, rosbags_dir, unhex, FakePolicy};
use serde_json::Value;
use univla_ros::bag::cdr::decode;
use univla_ros::bag::eval::{run_eval_bag, EvalBagArgs, REPORT_FILE};
use univla_ros::bag::reader::BagReader;
use univla_ros::bag::replay::{replay_bag, BagTopics, CommandAlignment, ReplayConfig};
use univla_ros::bag::report::EvalReport;
use univla_ros::ros::msgs::geometry_msgs::Twist;
use univla_ros::ros::msgs::sensor_msgs::{Image, JointState};
use univla_ros::ros::msgs::std_msgs::StringMsg;
use univla_ros::ros::msgs::to_cdr;
use univla_ros::ros::msgs::trajectory_msgs::JointTrajectory;

const WANTED: [&str; 5] = [
    "/camera/image_raw",
    "/joint_trajectory",
    "/joint_states",
    "/instruction",
    "/tf_like",
];

fn expected() -> Value {
    let text = std::fs::read_to_string(rosbags_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn check_byte_for_byte(bag: &str) {
    let exp = expected();
    let reader = BagReader::open(&rosbags_dir().join(bag)).unwrap();
    let want: Vec<&Value> = exp["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| WANTED.contains(&m["topic"].as_str().unwrap()))
        .collect();
    let got: Vec<_> = reader.messages(&WANTED).unwrap().map(|m| m.unwrap()).collect();
    assert_eq!(got.len(), want.len());
    let mut images = 0;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(&*g.topic, w["topic"].as_str().unwrap());
        assert_eq!(&*g.type_name, w["type"].as_str().unwrap());
        assert_eq!(g.log_time_ns, w["t"].as_i64().unwrap());
        assert_eq!(
            g.data,
            unhex(w["cdr"].as_str().unwrap()),
            "{} at {}",
            g.topic,
            g.log_time_ns
        );
        // Decoding into our structs and re-encoding gives the writer's bytes back.
        let again = match &*g.topic {
            "/camera/image_raw" => {
                let img: Image = decode(g).unwrap();
                let k = images;
                images += 1;
                assert_eq!(
                    (img.width, img.height, img.encoding.as_str(), img.step),
                    (32, 24, "rgb8", 96)
                );
                assert_eq!(img.data[0] as usize, k);
                assert_eq!(img.data[5], ((k * 7 + 5) % 256) as u8);
                assert_eq!(img.header.stamp.to_nanos(), g.log_time_ns);
                assert_eq!(img.header.frame_id, "camera");
                to_cdr(&img).unwrap()
            }
            "/joint_trajectory" => {
                let t: JointTrajectory = decode(g).unwrap();
                assert_eq!(t.joint_names, ["x", "y", "z", "gripper"]);
                // Recorded just after the frame it answers.
                assert_eq!(t.points[0].positions, action(images - 1));
                to_cdr(&t).unwrap()
            }
            "/joint_states" => to_cdr(&decode::<JointState>(g).unwrap()).unwrap(),
            "/instruction" => {
                let s: StringMsg = decode(g).unwrap();
                assert_eq!(s.data, exp["instruction"].as_str().unwrap());
                to_cdr(&s).unwrap()
            }
            "/tf_like" => to_cdr(&decode::<Twist>(g).unwrap()).unwrap(),
            other => panic!("unexpected topic {other}"),
        };
        assert_eq!(again, g.data, "re-encoded {} differs", g.topic);
    }
    assert_eq!(images, exp["frames"].as_u64().unwrap() as usize);
}

#[test]
fn rosbags_mcap_reads_byte_for_byte() {
    check_byte_for_byte("rosbags_mcap");
}

#[test]
fn rosbags_sqlite3_reads_byte_for_byte() {
    check_byte_for_byte("rosbags_sqlite3");
}

#[test]
fn bare_storage_files_open_without_metadata() {
    for f in ["rosbags_mcap/rosbags_mcap.mcap", "rosbags_sqlite3/rosbags_sqlite3.db3"] {
        let reader = BagReader::open(&rosbags_dir().join(f)).unwrap();
        let cam = reader.require_topic("/camera/image_raw").unwrap();
        assert_eq!(cam.message_count, 20, "{f}");
        assert_eq!(cam.type_name, "sensor_msgs/msg/Image");
    }
}

#[test]
fn unknown_types_are_listed_but_never_decoded() {
    for bag in ["rosbags_mcap", "rosbags_sqlite3"] {
        let reader = BagReader::open(&rosbags_dir().join(bag)).unwrap();
        let weird = reader.require_topic("/weird").unwrap();
        assert_eq!(weird.type_name, "my_pkg/msg/Weird");
        assert_eq!(weird.message_count, 5);
        // Asking for a known type on it is an error that names both types.
        let m = reader.messages(&["/weird"]).unwrap().next().unwrap().unwrap();
        let err = decode::<Image>(&m).unwrap_err().to_string();
        assert!(
            err.contains("my_pkg/msg/Weird") && err.contains("sensor_msgs/msg/Image"),
            "{err}"
        );
    }
}

#[test]
fn missing_topic_error_names_topic_and_lists_bag_topics() {
    for bag in ["rosbags_mcap", "rosbags_sqlite3"] {
        let reader = BagReader::open(&rosbags_dir().join(bag)).unwrap();
        let err = reader
            .messages(&["/camera/image_raw", "/nope"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("/nope") && err.contains("/camera/image_raw [sensor_msgs/msg/Image]"),
            "{err}"
        );
    }
}

#[test]
fn truncated_sqlite3_file_is_reported_with_its_path() {
    let src = rosbags_dir().join("rosbags_sqlite3");
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("cut");
    std::fs::create_dir(&bag).unwrap();
    for f in ["metadata.yaml", "rosbags_sqlite3.db3"] {
        std::fs::copy(src.join(f), bag.join(f)).unwrap();
    }
    let db = bag.join("rosbags_sqlite3.db3");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let result = BagReader::open(&bag).and_then(|r| {
        r.messages(&["/camera/image_raw"])?.collect::<Result<Vec<_>, _>>()?;
        Ok(())
    });
    let err = result
        .expect_err("a truncated sqlite3 file must not read cleanly")
        .to_string();
    assert!(err.contains("rosbags_sqlite3.db3"), "{err}");
}

/// `univla eval-bag` arguments as the binary would parse them.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: EvalBagArgs,
}

fn eval(bag: &Path, out: &Path, extra: &[&str], policy: &mut FakePolicy) -> EvalReport {
    let mut argv: Vec<String> = vec!["univla".into(), bag.display().to_string()];
    argv.extend(
        [
            "--command",
            "/joint_trajectory",
            "--joint-states",
            "/joint_states",
            "--gripper-dim",
            "3",
            "--quiet",
            "--out",
        ]
        .map(String::from),
    );
    argv.push(out.display().to_string());
    argv.extend(extra.iter().map(|s| s.to_string()));
    let cli = Cli::parse_from(argv);
    run_eval_bag(&cli.args, policy).unwrap()
}

fn check_exact_report(report: &EvalReport, out: &Path, bag: &Path) {
    let m = &report.overall;
    assert_eq!((m.frames, m.evaluated_steps, m.skipped_steps), (20, 20, 0));
    for d in &m.dims {
        assert_eq!((d.mae, d.rmse, d.max_abs), (0.0, 0.0, 0.0), "{}", d.name);
    }
    let g = m.gripper.as_ref().unwrap();
    assert_eq!((g.recorded_events, g.predicted_events, g.matched), (3, 3, 3));
    assert_eq!((g.precision, g.recall, g.mean_abs_timing_steps), (1.0, 1.0, Some(0.0)));
    assert_eq!(m.latent.queries, 20);
    assert_eq!(m.latent.histogram[1], 20 + 2); // <ACT_1> in every query, plus the first token of frames 1 and 17.
    let lat = m.latency.as_ref().unwrap();
    assert_eq!((lat.p50_ms, lat.max_ms), (19.5, 29.0));
    // JSON report, one plot per dimension, and a prediction bag that decodes.
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out.join(REPORT_FILE)).unwrap()).unwrap();
    assert_eq!(json["overall"]["evaluated_steps"], 20);
    let ep = &report.episodes[0];
    assert_eq!(ep.bag, bag);
    assert_eq!(ep.plots.len(), 4);
    for p in &ep.plots {
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display());
    }
    let pred = BagReader::open(ep.output_bag.as_ref().unwrap()).unwrap();
    let msgs: Vec<_> = pred
        .messages(&["/univla_eval/predicted", "/univla_eval/command"])
        .unwrap()
        .map(|m| m.unwrap())
        .collect();
    assert_eq!(msgs.len(), 40);
    let predicted: Vec<Vec<f64>> = msgs
        .iter()
        .filter(|m| &*m.topic == "/univla_eval/predicted")
        .map(|m| decode::<JointState>(m).unwrap().position)
        .collect();
    assert_eq!(predicted, (0..20).map(action).collect::<Vec<_>>());
    let cmd = msgs.iter().find(|m| &*m.topic == "/univla_eval/command").unwrap();
    assert_eq!(decode::<JointTrajectory>(cmd).unwrap().points[0].positions, action(0));
}

#[test]
fn eval_bag_with_exact_policy_scores_zero_on_both_storages() {
    let mut reports = Vec::new();
    for bag in ["rosbags_mcap", "rosbags_sqlite3"] {
        let out = tempfile::tempdir().unwrap();
        let path: PathBuf = rosbags_dir().join(bag);
        let mut policy = FakePolicy::new(vec![0.0; 4]);
        let report = eval(&path, out.path(), &[], &mut policy);
        // Instruction from the sidecar file; proprio from the as-of joint state.
        assert_eq!(policy.resets, ["put the red block in the bowl"]);
        assert_eq!(policy.proprio[0], Some(vec![0.0, 0.0]));
        assert_eq!(policy.proprio[1], Some(vec![1.0, -0.5]));
        check_exact_report(&report, out.path(), &path);
        reports.push(serde_json::to_value(&report.overall).unwrap());
    }
    // Same content, same report (timings aside).
    for r in &mut reports {
        r["timings"] = Value::Null;
    }
    assert_eq!(reports[0], reports[1]);
}

#[test]
fn known_offset_shows_up_as_that_error() {
    let offset = [0.1, -0.2, 0.05, 0.0];
    for bag in ["rosbags_mcap", "rosbags_sqlite3"] {
        let out = tempfile::tempdir().unwrap();
        let mut policy = FakePolicy::new(offset.to_vec());
        let report = eval(
            &rosbags_dir().join(bag),
            out.path(),
            &["--no-plots", "--no-mcap"],
            &mut policy,
        );
        for (d, o) in report.overall.dims.iter().zip(offset) {
            assert!((d.mae - o.abs()).abs() < 1e-12, "{}: {}", d.name, d.mae);
            assert!((d.rmse - o.abs()).abs() < 1e-12);
            assert!((d.bias - o).abs() < 1e-12);
        }
        let expected_mae = offset.iter().map(|o| o.abs()).sum::<f64>() / 4.0;
        assert!((report.overall.mae - expected_mae).abs() < 1e-12);
    }
}

/// The policy's outputs plus 0.1 recorded as the operator's commands, each just after its frame.
const RESPONSE_OFFSET: f64 = 0.1;

#[test]
fn commands_recorded_after_their_frames_are_their_ground_truth() {
    for bag in ["rosbags_mcap", "rosbags_sqlite3"] {
        let out = tempfile::tempdir().unwrap();
        // The recorded command of frame k is action(k); the policy answers action(k) − 0.1.
        let mut policy = FakePolicy::new(vec![-RESPONSE_OFFSET; 4]);
        let report = eval(
            &rosbags_dir().join(bag),
            out.path(),
            &["--no-plots", "--no-mcap"],
            &mut policy,
        );
        let m = &report.overall;
        assert_eq!((m.frames, m.evaluated_steps, m.skipped_steps), (20, 20, 0), "{bag}");
        for d in &m.dims {
            assert!(
                (d.mae - RESPONSE_OFFSET).abs() < 1e-12,
                "{bag} {}: MAE {}",
                d.name,
                d.mae
            );
            assert!(
                (d.max_abs - RESPONSE_OFFSET).abs() < 1e-12,
                "{bag} {}: max {}",
                d.name,
                d.max_abs
            );
            assert!(
                (d.bias + RESPONSE_OFFSET).abs() < 1e-12,
                "{bag} {}: bias {}",
                d.name,
                d.bias
            );
        }
        assert!((m.mae - RESPONSE_OFFSET).abs() < 1e-12);
        // The rule is recorded in the report and in the table's header.
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join(REPORT_FILE)).unwrap()).unwrap();
        assert_eq!(json["command_alignment"], "next");
        let header = report.summary_table();
        assert!(header.lines().next().unwrap().contains("`next`"), "{header}");
    }
}

#[test]
fn as_of_alignment_is_still_available_and_reported() {
    let out = tempfile::tempdir().unwrap();
    let mut policy = FakePolicy::new(vec![0.0; 4]);
    let args = ["--command-alignment", "as-of", "--no-plots", "--no-mcap"];
    let report = eval(&rosbags_dir().join("rosbags_sqlite3"), out.path(), &args, &mut policy);
    // Frame 0 has no earlier command; frame k ≥ 1 is scored against the answer to frame k − 1.
    let m = &report.overall;
    assert_eq!((m.evaluated_steps, m.skipped.no_ground_truth), (19, 1));
    assert!((m.dims[0].mae - 0.25).abs() < 1e-12 && (m.dims[1].mae - 0.5).abs() < 1e-12);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out.path().join(REPORT_FILE)).unwrap()).unwrap();
    assert_eq!(json["command_alignment"], "as-of");
    assert!(report.summary_table().lines().next().unwrap().contains("`as-of`"));
}

/// Ground truth of every evaluated frame of a jitter bag under `alignment`, with the skip count.
fn jitter_truth(storage: &str, alignment: CommandAlignment) -> (Vec<(usize, Vec<f64>)>, usize) {
    let config = ReplayConfig {
        topics: BagTopics {
            command: "/joint_trajectory".into(),
            ..Default::default()
        },
        command_alignment: alignment,
        ..Default::default()
    };
    let bag = rosbags_dir().join("alignment").join(format!("jitter_{storage}"));
    let mut policy = FakePolicy::new(vec![0.0; 4]);
    let trace = replay_bag(&bag, &config, &mut policy, &mut || {}).unwrap();
    // The policy runs on every frame, except on the as-of rule's frames without ground truth.
    let unscored = if alignment == CommandAlignment::AsOf {
        trace.skipped.total()
    } else {
        0
    };
    assert_eq!(policy.calls, 20 - unscored);
    let truth = trace.steps.iter().map(|s| (s.frame, s.ground_truth.clone())).collect();
    (truth, trace.skipped.total())
}

#[test]
fn alignment_rules_pick_next_previous_or_closest_command() {
    // Command k answers frame k, 80 ms after it for k < 10 (20 ms before frame k + 1), 10 ms
    // after it from k = 10 on.
    for storage in ["mcap", "sqlite3"] {
        let (next, skipped) = jitter_truth(storage, CommandAlignment::Next);
        assert_eq!(skipped, 0);
        assert_eq!(next, (0..20).map(|k| (k, action(k))).collect::<Vec<_>>(), "{storage}");
        let (as_of, skipped) = jitter_truth(storage, CommandAlignment::AsOf);
        assert_eq!(skipped, 1);
        assert_eq!(
            as_of,
            (1..20).map(|k| (k, action(k - 1))).collect::<Vec<_>>(),
            "{storage}"
        );
        let (nearest, skipped) = jitter_truth(storage, CommandAlignment::Nearest);
        assert_eq!(skipped, 0);
        let want: Vec<(usize, Vec<f64>)> = (0..20)
            .map(|k| (k, action(if (1..10).contains(&k) { k - 1 } else { k })))
            .collect();
        assert_eq!(nearest, want, "{storage}");
    }
}

#[test]
fn open_loop_chunks_replan_every_k_and_track_switches() {
    let out = tempfile::tempdir().unwrap();
    let mut policy = FakePolicy::new(vec![0.0; 4]);
    let args = ["--mode", "open-loop", "--replan-every", "4", "--no-plots", "--no-mcap"];
    let report = eval(&rosbags_dir().join("rosbags_mcap"), out.path(), &args, &mut policy);
    assert_eq!(policy.calls, 5);
    let m = &report.overall;
    assert_eq!(m.evaluated_steps, 20);
    assert!(m.dims.iter().all(|d| d.mae == 0.0));
    // Switches at steps 4, 8, 12, 16.
    assert_eq!(m.switches.switches, 4);
    // With latency the first 2 steps wait, the rest still match (elapsed rows are dropped).
    let mut policy = FakePolicy::new(vec![0.0; 4]);
    let args = [
        "--mode",
        "open-loop",
        "--replan-every",
        "4",
        "--latency-steps",
        "2",
        "--no-plots",
        "--no-mcap",
    ];
    let report = eval(&rosbags_dir().join("rosbags_sqlite3"), out.path(), &args, &mut policy);
    let m = &report.overall;
    assert_eq!((m.evaluated_steps, m.skipped.awaiting_policy), (18, 2));
    assert!(m.dims.iter().all(|d| d.mae == 0.0), "{:?}", m.dims);
}

#[test]
fn folder_of_episodes_is_one_run_with_one_report_entry_per_bag() {
    let out = tempfile::tempdir().unwrap();
    let mut policy = FakePolicy::new(vec![0.0, 0.0, 0.0, 0.5]);
    let report = eval(rosbags_dir(), out.path(), &["--no-plots"], &mut policy);
    let bags: Vec<_> = report
        .episodes
        .iter()
        .map(|e| e.bag.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(bags, ["rosbags_mcap", "rosbags_sqlite3"]);
    assert_eq!(policy.resets.len(), 2);
    let m = &report.overall;
    assert_eq!((m.frames, m.evaluated_steps), (40, 40));
    assert_eq!(m.dims[3].mae, 0.5);
    // Gripper +1/-1 shifted by 0.5 still crosses the 0 threshold at the same steps.
    let g = m.gripper.as_ref().unwrap();
    assert_eq!((g.recorded_events, g.matched), (6, 6));
    for e in &report.episodes {
        assert!(e.output_bag.as_ref().unwrap().join("metadata.yaml").exists());
    }
}

#[test]
fn rosbags_reads_our_bags_from_their_own_definitions() {
    use std::process::Command;
    use univla_ros::bag::msgs::Float64MultiArray;
    use univla_ros::bag::writer::{ChunkCompression, McapBagWriter, WriterOptions};
    use univla_ros::ros::msgs::geometry_msgs::{PoseStamped, Vector3};
    use univla_ros::ros::msgs::univla_msgs::LatentActions;
    use univla_ros::ros::msgs::visualization_msgs::{Marker, MarkerArray};

    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("ours");
    let options = WriterOptions {
        compression: ChunkCompression::Lz4,
        chunk_size: Some(1024),
        max_messages_per_file: Some(4),
    };
    let mut w = McapBagWriter::create(&bag, options).unwrap();
    let t = 1_700_000_000_000_000_000i64;
    let img = Image {
        width: 2,
        height: 1,
        encoding: "rgb8".into(),
        step: 6,
        data: vec![1, 2, 3, 4, 5, 6],
        ..Default::default()
    };
    w.write("/img", t, &img).unwrap();
    let js = JointState {
        name: vec!["a".into()],
        position: vec![0.25],
        ..Default::default()
    };
    w.write("/js", t + 1, &js).unwrap();
    let mut traj = JointTrajectory::default();
    traj.points.push(Default::default());
    traj.points[0].positions = action(3);
    w.write("/traj", t + 2, &traj).unwrap();
    let twist = Twist {
        linear: Vector3 {
            x: 1.5,
            y: 0.0,
            z: -2.0,
        },
        ..Default::default()
    };
    w.write("/twist", t + 3, &twist).unwrap();
    let mut pose = PoseStamped::default();
    pose.pose.position.x = 0.75;
    w.write("/pose", t + 4, &pose).unwrap();
    w.write("/arr", t + 5, &Float64MultiArray::vector("a", vec![1.0, -1.0]))
        .unwrap();
    w.write("/str", t + 6, &StringMsg { data: "hi".into() }).unwrap();
    let la = LatentActions {
        ids: vec![32001, 32016],
        tokens: "<ACT_0><ACT_15>".into(),
        ..Default::default()
    };
    w.write("/latent", t + 7, &la).unwrap();
    let mut marker = Marker {
        type_: Marker::TEXT_VIEW_FACING,
        text: "frame 0".into(),
        ..Default::default()
    };
    marker.header.frame_id = "base_link".into();
    w.write("/markers", t + 8, &MarkerArray { markers: vec![marker] })
        .unwrap();
    w.finish().unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("test/bags/read_bag.py");
    let out = Command::new(common::venv_python())
        .arg(&script)
        .arg(&bag)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["topics"]["/latent"], "univla_msgs/msg/LatentActions");
    assert_eq!(v["topics"]["/markers"], "visualization_msgs/msg/MarkerArray");
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 9);
    let f = |topic: &str| msgs.iter().find(|m| m["topic"] == topic).unwrap()["fields"].clone();
    assert_eq!(f("/img")["data"], serde_json::json!([1, 2, 3, 4, 5, 6]));
    assert_eq!(f("/img")["encoding"], "rgb8");
    assert_eq!(f("/js")["position"], serde_json::json!([0.25]));
    assert_eq!(f("/traj")["points"], serde_json::json!([action(3)]));
    assert_eq!(f("/twist")["linear"], serde_json::json!([1.5, 0.0, -2.0]));
    assert_eq!(f("/pose")["pose"], serde_json::json!([0.75, 1.0]));
    assert_eq!(f("/arr")["data"], serde_json::json!([1.0, -1.0]));
    assert_eq!(f("/str")["data"], "hi");
    assert_eq!(f("/latent")["ids"], serde_json::json!([32001, 32016]));
    assert_eq!(f("/latent")["tokens"], "<ACT_0><ACT_15>");
    assert_eq!(
        f("/markers")["markers"],
        serde_json::json!([{"text": "frame 0", "type": 9, "frame_id": "base_link"}])
    );
    let times: Vec<i64> = msgs.iter().map(|m| m["t"].as_i64().unwrap() - t).collect();
    assert_eq!(times, (0..9).collect::<Vec<_>>());
}
