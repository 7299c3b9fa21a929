//! Latent-action accuracy in `univla eval-bag`: a bag of the LAM fixture frames, policies that
//! answer exactly the LAM's labels (accuracy 1) or never agree with them (accuracy 0).
use std::path::{Path, PathBuf};

use clap::Parser;
use tch::Device;
use univla_ros::bag::eval::{run_eval_bag, EvalBagArgs};
use univla_ros::bag::msgs::Float64MultiArray;
use univla_ros::bag::replay::{PolicyStep, ReplayPolicy};
use univla_ros::bag::writer::{McapBagWriter, WriterOptions};
use univla_ros::lam::checkpoint::load_model;
use univla_ros::lam::{label_frames, LamConfig, StepLabel};
use univla_ros::ros::msgs::sensor_msgs::Image;
use univla_ros::runtime::preprocess::RgbImage;

/// Attention heads of the LAM fixture (DINO stand-in 3, encoder 4).
const DINO_HEADS: i64 = 3;
const ENCODER_HEADS: i64 = 4;
const INTERVAL: usize = 2;
const T0: i64 = 1_700_000_000_000_000_000;
const PERIOD_NS: i64 = 100_000_000;
const ACT_BASE: i64 = 32001;
/// Which frame each recorded frame is: fixture frame 0, 1, or 0 and 1 turned upside down.
const PATTERN: [usize; 7] = [0, 1, 2, 0, 3, 1, 0];

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test/data/univla-tiny/lam")
        .join(rel)
}

fn frames() -> Vec<RgbImage> {
    let f0 = RgbImage::load(data("frame0.png")).unwrap();
    let f1 = RgbImage::load(data("frame1.png")).unwrap();
    let f = [f0.rotate_180(), f1.rotate_180(), f0, f1];
    PATTERN.iter().map(|&i| f[i].clone()).collect()
}

/// Labels computed directly from the frames (not through the bag).
fn reference_labels() -> Vec<StepLabel> {
    let cfg = LamConfig {
        encoder_heads: Some(ENCODER_HEADS),
        dino_heads: Some(DINO_HEADS),
        ..LamConfig::default()
    };
    let model = load_model(&data("lam_model.safetensors"), &cfg, Device::Cpu).unwrap();
    label_frames(&model, frames().into_iter().map(Ok), INTERVAL, 3)
        .unwrap()
        .0
}

fn write_bag(dir: &Path) -> PathBuf {
    let bag = dir.join("lam_episode");
    let mut w = McapBagWriter::create(&bag, WriterOptions::default()).unwrap();
    for (k, f) in frames().into_iter().enumerate() {
        let t = T0 + k as i64 * PERIOD_NS;
        w.write("/cmd", t - 1_000_000, &Float64MultiArray::vector("a", vec![0.0, 0.0]))
            .unwrap();
        let img = Image {
            height: f.height(),
            width: f.width(),
            encoding: "rgb8".into(),
            step: f.width() * 3,
            data: f.into_raw(),
            ..Default::default()
        };
        w.write("/cam", t, &img).unwrap();
    }
    w.finish().unwrap();
    std::fs::write(bag.join("instruction.txt"), "pick up the cup\n").unwrap();
    bag
}

/// Answers the code tuple `codes[t]` (as `<ACT_i>` ids) at its t-th call, offset by `shift` mod 16.
struct LabelPolicy {
    codes: Vec<Vec<i64>>,
    shift: i64,
    calls: usize,
}

impl ReplayPolicy for LabelPolicy {
    fn reset(&mut self, _instruction: &str) {}

    fn step(&mut self, _image: &RgbImage, _proprio: Option<&[f32]>) -> Result<PolicyStep, String> {
        let codes = self.codes.get(self.calls).cloned().unwrap_or_else(|| vec![0; 4]);
        self.calls += 1;
        Ok(PolicyStep {
            latent_ids: codes.iter().map(|c| ACT_BASE + (c + self.shift) % 16).collect(),
            action: vec![0.0, 0.0],
            chunk: vec![vec![0.0, 0.0]],
            inference_ms: 1.0,
        })
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    eval: EvalBagArgs,
}

/// `eval-bag BAG` on the test topics with the fixture LAM, then `extra` arguments.
fn parse(bag: &Path, extra: &[&str]) -> Cli {
    let lam = data("lam_model.safetensors");
    let base = [
        "eval-bag",
        bag.to_str().unwrap(),
        "--camera",
        "/cam",
        "--command",
        "/cmd",
        "--quiet",
        "--lam",
        lam.to_str().unwrap(),
    ];
    Cli::try_parse_from(base.iter().chain(extra)).unwrap()
}

fn eval(bag: &Path, out: &Path, shift: i64, labels: &[StepLabel]) -> serde_json::Value {
    let cli = parse(
        bag,
        &[
            "--out",
            out.to_str().unwrap(),
            "--no-plots",
            "--no-mcap",
            "--lam-interval",
            "2",
            "--lam-encoder-heads",
            "4",
            "--lam-dino-heads",
            "3",
            "--lam-batch",
            "2",
        ],
    );
    let mut codes: Vec<Vec<i64>> = vec![vec![0; 4]; PATTERN.len()];
    for l in labels {
        codes[l.step] = l.action.codes.clone();
    }
    let mut policy = LabelPolicy { codes, shift, calls: 0 };
    run_eval_bag(&cli.eval, &mut policy).unwrap();
    assert_eq!(policy.calls, PATTERN.len());
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn policy_tokens_scored_against_lam_labels_of_the_recorded_frames() {
    let labels = reference_labels();
    let scored = PATTERN.len() - INTERVAL;
    assert_eq!(labels.len(), scored);
    let dir = tempfile::tempdir().unwrap();
    let bag = write_bag(dir.path());

    let exact = eval(&bag, &dir.path().join("exact"), 0, &labels);
    for m in [&exact["episodes"][0]["metrics"], &exact["overall"]] {
        let la = &m["latent_accuracy"];
        assert_eq!(la["token_accuracy"], 1.0, "{la}");
        assert_eq!(la["exact_accuracy"], 1.0, "{la}");
        assert_eq!(la["scored_steps"], scored as u64, "{la}");
        assert_eq!(la["counts"]["tokens"], (4 * scored) as u64, "{la}");
    }

    let wrong = eval(&bag, &dir.path().join("wrong"), 1, &labels);
    for m in [&wrong["episodes"][0]["metrics"], &wrong["overall"]] {
        let la = &m["latent_accuracy"];
        assert_eq!(la["token_accuracy"], 0.0, "{la}");
        assert_eq!(la["exact_accuracy"], 0.0, "{la}");
        assert_eq!(la["scored_steps"], scored as u64, "{la}");
        assert_eq!(la["counts"]["token_matches"], 0, "{la}");
    }
}

#[test]
fn lam_needs_an_interval() {
    let dir = tempfile::tempdir().unwrap();
    let bag = write_bag(dir.path());
    let out = dir.path().join("out");
    let cli = parse(&bag, &["--out", out.to_str().unwrap()]);
    let mut policy = LabelPolicy {
        codes: Vec::new(),
        shift: 0,
        calls: 0,
    };
    let err = run_eval_bag(&cli.eval, &mut policy).unwrap_err().to_string();
    assert!(err.contains("--lam-interval"), "{err}");
    assert!(Cli::try_parse_from(["eval-bag", "b", "--lam-interval", "2"]).is_err());
}
