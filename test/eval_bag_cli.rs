//! `univla eval-bag` end to end with the real engine: a bag written by our MCAP writer (camera
//! frames from the fixture, a recorded 7-D command), evaluated with the fixture checkpoint and
//! its LIBERO head; the report, plots and prediction MCAP appear, and the replay is
//! deterministic.
mod common;

use std::path::Path;
use std::process::Command;

use univla_ros::bag::reader::BagReader;
use univla_ros::bag::writer::{McapBagWriter, WriterOptions};
use univla_ros::ros::msgs::builtin_interfaces::Time;
use univla_ros::ros::msgs::sensor_msgs::Image;
use univla_ros::ros::msgs::std_msgs::Header;
use univla_ros::ros::msgs::trajectory_msgs::{JointTrajectory, JointTrajectoryPoint};
use univla_ros::runtime::preprocess::RgbImage;

const PERIOD_NS: i64 = 100_000_000;
const T0: i64 = 1_700_000_000_000_000_000;

/// A camera message carrying `img` as rgb8.
fn rgb8_image(img: &RgbImage, stamp: Time) -> Image {
    Image {
        header: Header {
            stamp,
            frame_id: "camera".into(),
        },
        height: img.height(),
        width: img.width(),
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: img.width() * 3,
        data: img.as_raw().to_vec(),
    }
}

fn write_bag(dir: &Path) {
    let mut w = McapBagWriter::create(dir, WriterOptions::default()).unwrap();
    for k in 0..6 {
        let img = RgbImage::load(common::fixture().join(format!("images/libero_step{k}.png"))).unwrap();
        let t = T0 + k as i64 * PERIOD_NS;
        let stamp = Time::from_nanos(t);
        let image = rgb8_image(&img, stamp);
        w.write("/camera/image_raw", t, &image).unwrap();
        let positions = vec![
            0.01 * k as f64,
            -0.02,
            0.03,
            0.0,
            0.0,
            0.1,
            if k < 3 { -1.0 } else { 1.0 },
        ];
        let cmd = JointTrajectory {
            header: Header {
                stamp,
                frame_id: String::new(),
            },
            joint_names: (0..7).map(|j| format!("j{j}")).collect(),
            points: vec![JointTrajectoryPoint {
                positions,
                ..Default::default()
            }],
        };
        // The command answering this frame, recorded just after it.
        w.write("/joint_trajectory", t + 1_000_000, &cmd).unwrap();
    }
    w.finish().unwrap();
    std::fs::write(
        dir.join("instruction.txt"),
        "put both the alphabet soup and the tomato sauce in the basket\n",
    )
    .unwrap();
}

fn eval(bag: &Path, out: &Path) -> serde_json::Value {
    let status = Command::new(env!("CARGO_BIN_EXE_univla"))
        .args([
            "eval-bag",
            "--greedy",
            "--unnorm-key",
            "libero_10_no_noops",
            "--gripper-dim",
            "6",
            "--checkpoint",
        ])
        .arg(common::checkpoint())
        .arg("--decoder")
        .arg(common::checkpoint().join("action_decoder_libero.pt"))
        .args([
            "--camera",
            "/camera/image_raw",
            "--command",
            "/joint_trajectory",
            "--quiet",
            "-o",
        ])
        .arg(out)
        .arg(bag)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "eval-bag failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn eval_bag_with_real_engine_writes_report_plots_and_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let bag = tmp.path().join("episode_1");
    write_bag(&bag);
    let report = eval(&bag, &tmp.path().join("out"));
    let text = report.to_string();
    assert!(text.contains("mae") || text.contains("MAE"), "{text}");
    let plots: Vec<_> = std::fs::read_dir(tmp.path().join("out/plots")).unwrap().collect();
    assert_eq!(plots.len(), 7, "one plot per action dimension");
    let predictions = tmp.path().join("out/predictions");
    let episode = std::fs::read_dir(&predictions).unwrap().next().unwrap().unwrap().path();
    let reader = BagReader::open(&episode).unwrap();
    assert!(
        reader.topics().iter().any(|t| t.name.contains("predicted")),
        "prediction topics: {:?}",
        reader.topics()
    );
    // Same bag, same config, same metrics.
    let again = eval(&bag, &tmp.path().join("out2"));
    for key in ["dims", "gripper", "latent", "mae", "rmse", "skipped", "switches"] {
        assert_eq!(
            report["episodes"][0]["metrics"][key], again["episodes"][0]["metrics"][key],
            "{key}"
        );
    }
    assert_eq!(report["episodes"][0]["metrics"]["frames"], 6);
}

#[test]
fn label_command_reads_camera_frames_from_a_bag() {
    let tmp = tempfile::tempdir().unwrap();
    let bag = tmp.path().join("lam_bag");
    let mut w = McapBagWriter::create(&bag, WriterOptions::default()).unwrap();
    let lam_dir = common::fixture().join("lam");
    for k in 0..4 {
        let img = RgbImage::load(lam_dir.join(format!("frame{}.png", k % 2))).unwrap();
        let t = T0 + k as i64 * PERIOD_NS;
        let image = rgb8_image(&img, Time::from_nanos(t));
        w.write("/cam", t, &image).unwrap();
    }
    w.finish().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_univla"))
        .args([
            "label",
            "--interval",
            "1",
            "--encoder-heads",
            "4",
            "--dino-heads",
            "3",
            "--camera",
            "/cam",
        ])
        .arg("--checkpoint")
        .arg(lam_dir.join("lam_model.safetensors"))
        .arg("--bag")
        .arg(&bag)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "univla label failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lam_dir.join("lam_golden.json")).unwrap()).unwrap();
    let text = report.to_string();
    assert_eq!(report["num_frames"], 4, "{text}");
    assert_eq!(report["steps"].as_array().unwrap().len(), 3, "{text}");
    // The first pair is the golden (frame0 → frame1) pair.
    let want: String = golden["latent_action_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let first = report["steps"][0].to_string();
    assert!(first.contains(&want), "first pair {first}, golden {want}");
}
