//! Parity of the latent action model with the official `ControllableDINOLatentActionModel`
//! (golden tensors in test/data/univla-tiny/lam), the antialiased bicubic resampling with
//! PyTorch (test/data/lam-aa-bicubic), both DINOv2 key layouts, and `univla label` end to end.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};
use univla_ros::lam::checkpoint;
use univla_ros::lam::interp::resize_bicubic_aa;
#[cfg(feature = "opencv")]
use univla_ros::lam::label::{histogram_path, run_label, LabelArgs};
use univla_ros::lam::preprocess::frames_to_tensor;
use univla_ros::lam::{LamConfig, LatentActionModel};
use univla_ros::model::VarBuilder;
use univla_ros::runtime::preprocess::RgbImage;

/// Attention heads of the fixture (lam_golden.json: DINO stand-in 3, encoder 4).
const FIXTURE_DINO_HEADS: i64 = 3;
const FIXTURE_ENCODER_HEADS: i64 = 4;
/// Golden indices from lam_golden.json.
const GOLDEN_INDICES: [i64; 4] = [11, 11, 11, 12];
const GOLDEN_INDICES_UNCONTROL: [i64; 4] = [13, 13, 9, 6];
const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test/data").join(rel)
}

fn fixture_config() -> LamConfig {
    LamConfig {
        encoder_heads: Some(FIXTURE_ENCODER_HEADS),
        dino_heads: Some(FIXTURE_DINO_HEADS),
        ..LamConfig::default()
    }
}

fn read(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

fn load_fixture_model() -> LatentActionModel {
    checkpoint::load_model(
        &data("univla-tiny/lam/lam_model.safetensors"),
        &fixture_config(),
        Device::Cpu,
    )
    .unwrap()
}

fn fixture_frames() -> (RgbImage, RgbImage) {
    (
        RgbImage::load(data("univla-tiny/lam/frame0.png")).unwrap(),
        RgbImage::load(data("univla-tiny/lam/frame1.png")).unwrap(),
    )
}

fn fixture_video() -> Tensor {
    let (f0, f1) = fixture_frames();
    frames_to_tensor(&[&f0, &f1], Device::Cpu).unwrap().unsqueeze(0)
}

/// |got − want| ≤ ATOL + RTOL·|want| everywhere; returns the largest absolute difference.
fn assert_close(name: &str, got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.size(), want.size(), "{name}: shape");
    let got = got.to_kind(Kind::Double);
    let want = want.to_kind(Kind::Double);
    let diff = (&got - &want).abs();
    let excess = (&diff - (want.abs() * RTOL + ATOL)).max().double_value(&[]);
    let max_diff = diff.max().double_value(&[]);
    assert!(excess <= 0.0, "{name}: max |diff| {max_diff:e} exceeds tolerance");
    max_diff
}

fn indices(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.reshape([-1])).unwrap()
}

#[test]
fn golden_tensors_match_official_vq_encode() {
    let model = load_fixture_model();
    let golden = read(&data("univla-tiny/lam/lam_golden.safetensors"));
    let out = model.vq_encode(&fixture_video()).unwrap();
    let pairs = [
        ("dino_patchtokens", &out.dino_patchtokens),
        ("encoder_out", &out.encoder_out),
        ("z_action_pre_vq", &out.z_action_pre_vq),
        ("z_action_quantized", &out.z_action_quantized),
        ("z_uncontrol_pre_vq", &out.z_uncontrol_pre_vq),
        ("distances_action", &out.distances_action),
        ("distances_uncontrol", &out.distances_uncontrol),
    ];
    for (name, got) in pairs {
        let d = assert_close(name, got, &golden[name]);
        eprintln!("{name}: max |diff| {d:e}");
    }
    assert_eq!(indices(&out.indices), indices(&golden["indices"]));
    assert_eq!(indices(&out.indices_uncontrol), indices(&golden["indices_uncontrol"]));
    assert_eq!(indices(&out.indices), GOLDEN_INDICES);
    assert_eq!(indices(&out.indices_uncontrol), GOLDEN_INDICES_UNCONTROL);
}

#[test]
fn batched_label_keeps_pairs_apart() {
    let model = load_fixture_model();
    let golden = read(&data("univla-tiny/lam/lam_golden.safetensors"));
    let (f0, f1) = fixture_frames();
    let first = frames_to_tensor(&[&f0, &f1], Device::Cpu).unwrap();
    let second = frames_to_tensor(&[&f1, &f0], Device::Cpu).unwrap();
    let labels = model.label(&first, &second).unwrap();
    assert_eq!(labels.len(), 2);
    assert_eq!(labels[0].codes, GOLDEN_INDICES);
    assert_eq!(labels[0].uncontrol_codes, GOLDEN_INDICES_UNCONTROL);
    assert_eq!(labels[0].tokens(), "<ACT_11><ACT_11><ACT_11><ACT_12>");
    assert_eq!(labels[0].token_ids(), vec![32012, 32012, 32012, 32013]);
    // The golden margin (lam_golden.json) is reproduced.
    assert!(
        (f64::from(labels[0].margin) - 0.2750091552734375).abs() < 1e-4,
        "margin {}",
        labels[0].margin
    );
    // The reversed pair is a different input: it must be computed on its own.
    let video = Tensor::stack(&[&second.narrow(0, 0, 1), &first.narrow(0, 0, 1)], 1);
    let alone = model.vq_encode(&video).unwrap();
    assert_eq!(labels[1].codes, indices(&alone.indices));
    let batched = model.vq_encode(&Tensor::stack(&[&first, &second], 1)).unwrap();
    assert_close(
        "batch row 0 encoder_out",
        &batched.encoder_out.narrow(0, 0, 1),
        &golden["encoder_out"],
    );
}

#[test]
fn lightning_prefixed_safetensors_loads() {
    let src = read(&data("univla-tiny/lam/lam_model.safetensors"));
    let prefixed: Vec<(String, Tensor)> = src
        .iter()
        .map(|(k, v)| (format!("lam.{k}"), v.shallow_clone()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lam-stage-2.safetensors");
    Tensor::write_safetensors(&prefixed, &path).unwrap();
    let model = checkpoint::load_model(&path, &fixture_config(), Device::Cpu).unwrap();
    let out = model.vq_encode(&fixture_video()).unwrap();
    assert_eq!(indices(&out.indices), GOLDEN_INDICES);
}

#[test]
fn lightning_ckpt_loads_natively() {
    // No head counts given: the checkpoint's hyper_parameters hold them.
    let model = checkpoint::load_model(&data("lam-ckpt/lam_tiny.ckpt"), &LamConfig::default(), Device::Cpu).unwrap();
    let golden = read(&data("univla-tiny/lam/lam_golden.safetensors"));
    let out = model.vq_encode(&fixture_video()).unwrap();
    assert_close("ckpt encoder_out", &out.encoder_out, &golden["encoder_out"]);
    assert_close(
        "ckpt distances_action",
        &out.distances_action,
        &golden["distances_action"],
    );
    assert_eq!(indices(&out.indices), GOLDEN_INDICES);
    assert_eq!(indices(&out.indices_uncontrol), GOLDEN_INDICES_UNCONTROL);
}

/// A copy of `lam_tiny.ckpt` in `dir` whose integer hyper-parameter `key` reads `value`.
fn ckpt_with_hyper_parameter(dir: &Path, key: &str, value: u8) -> PathBuf {
    use std::io::{Read, Write};
    let src = data("lam-ckpt/lam_tiny.ckpt");
    let mut z = zip::ZipArchive::new(std::fs::File::open(&src).unwrap()).unwrap();
    let out = dir.join(format!("{key}-{value}.ckpt"));
    let mut w = zip::ZipWriter::new(std::fs::File::create(&out).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().to_owned();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        if name.ends_with("/data.pkl") {
            // `X <len> key`, an optional BINPUT/LONG_BINPUT, then `K <value>` (BININT1).
            let mut needle = vec![b'X'];
            needle.extend((key.len() as u32).to_le_bytes());
            needle.extend(key.as_bytes());
            let mut at = bytes
                .windows(needle.len())
                .position(|w| w == needle.as_slice())
                .unwrap()
                + needle.len();
            at += match bytes[at] {
                b'q' => 2,
                b'r' => 5,
                _ => 0,
            };
            assert_eq!(bytes[at], b'K', "{key} is not a small integer");
            bytes[at + 1] = value;
        }
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(&bytes).unwrap();
    }
    w.finish().unwrap();
    out
}

#[test]
fn inconsistent_hyper_parameters_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let load = |path: &Path, cfg: &LamConfig| {
        checkpoint::load_model(path, cfg, Device::Cpu)
            .err()
            .unwrap()
            .to_string()
    };
    let default = LamConfig::default();
    for (key, value, expected) in [
        ("lam_num_heads", 5, "lam_num_heads 5 does not divide lam_model_dim 32"),
        ("lam_num_heads", 0, "lam_num_heads must be a positive integer"),
        ("lam_model_dim", 64, "lam_model_dim is 64, but the weights have 32"),
        ("lam_enc_blocks", 3, "lam_enc_blocks is 3, but the weights have 2"),
        ("lam_latent_dim", 8, "lam_latent_dim is 8, but the weights have 16"),
        ("lam_num_latents", 32, "lam_num_latents is 32, but the weights have 16"),
        ("dino_num_heads", 5, "5 heads do not divide width 48"),
    ] {
        let path = ckpt_with_hyper_parameter(dir.path(), key, value);
        let e = load(&path, &default);
        assert!(
            e.contains(expected) && e.contains(&format!("{key}-{value}.ckpt")),
            "{key} = {value}: {e}"
        );
    }
    // A head count given explicitly must agree with the recorded one.
    let e = load(
        &data("lam-ckpt/lam_tiny.ckpt"),
        &LamConfig {
            encoder_heads: Some(2),
            ..LamConfig::default()
        },
    );
    assert!(
        e.contains("hyper_parameters.lam_num_heads is 4") && e.contains('2'),
        "{e}"
    );
    // The same counts given explicitly are fine.
    checkpoint::load_model(&data("lam-ckpt/lam_tiny.ckpt"), &fixture_config(), Device::Cpu).unwrap();
}

#[test]
fn stage_one_checkpoint_is_refused() {
    let src = read(&data("univla-tiny/lam/lam_model.safetensors"));
    let stage1: Vec<(String, Tensor)> = src
        .iter()
        .filter(|(k, _)| !k.contains("controllable"))
        .map(|(k, v)| (k.clone(), v.shallow_clone()))
        .collect();
    let vb = VarBuilder::from_tensors("stage1", stage1, Kind::Float, Device::Cpu);
    let err = checkpoint::locate(vb, Path::new("stage1")).err().unwrap();
    assert!(err.to_string().contains("stage-1"), "{err}");
}

#[test]
fn aa_bicubic_matches_torch_reference() {
    let reference = read(&data("lam-aa-bicubic/aa_bicubic.safetensors"));
    for case in ["grid37_to_16", "mixed_5x7_to_9x3"] {
        let input = &reference[&format!("{case}.input")];
        let want = &reference[&format!("{case}.output")];
        let size = want.size();
        let got = resize_bicubic_aa(input, size[2] as usize, size[3] as usize).unwrap();
        let d = assert_close(case, &got, want);
        assert!(d < 1e-5, "{case}: {d:e}");
        // Plain (non-antialiased) bicubic would be far off when downsampling.
        if case == "grid37_to_16" {
            let plain = input.upsample_bicubic2d([16, 16], false, None, None);
            assert!((plain - want).abs().max().double_value(&[]) > 1e-2);
        }
    }
}

/// Builds the fixture model's weights in the facebookresearch hub layout (`dino_encoder.*`,
/// `register_tokens`, CLS slot in `pos_embed`, `mask_token`) with `pos_grid` [1, M², D] as grid.
fn hub_layout(src: &HashMap<String, Tensor>, pos_grid: &Tensor) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for (k, v) in src {
        match k.strip_prefix("dino_encoder.vit.") {
            None => out.push((k.clone(), v.shallow_clone())),
            Some("reg_token") => out.push(("dino_encoder.register_tokens".into(), v.shallow_clone())),
            Some("pos_embed") => {
                let dim = v.size()[2];
                let with_cls = Tensor::cat(&[&Tensor::zeros([1, 1, dim], (Kind::Float, Device::Cpu)), pos_grid], 1);
                out.push(("dino_encoder.pos_embed".into(), with_cls));
            }
            Some(rest) => out.push((format!("dino_encoder.{rest}"), v.shallow_clone())),
        }
    }
    let dim = src["dino_encoder.vit.cls_token"].size()[2];
    out.push((
        "dino_encoder.mask_token".into(),
        Tensor::zeros([1, dim], (Kind::Float, Device::Cpu)),
    ));
    out
}

#[test]
fn hub_layout_at_native_grid_matches_golden() {
    let src = read(&data("univla-tiny/lam/lam_model.safetensors"));
    let golden = read(&data("univla-tiny/lam/lam_golden.safetensors"));
    let tensors = hub_layout(&src, &src["dino_encoder.vit.pos_embed"]);
    let vb = VarBuilder::from_tensors("hub", tensors, Kind::Float, Device::Cpu);
    let model = LatentActionModel::load(&vb, &fixture_config()).unwrap();
    assert_eq!(model.dino().layout(), univla_ros::lam::dino::DinoLayout::Hub);
    let out = model.vq_encode(&fixture_video()).unwrap();
    assert_close(
        "hub dino_patchtokens",
        &out.dino_patchtokens,
        &golden["dino_patchtokens"],
    );
    assert_eq!(indices(&out.indices), GOLDEN_INDICES);
}

#[test]
fn hub_layout_resamples_37_grid_like_torch() {
    // A 37×37 grid whose torch-resampled 16×16 version is known: channels are scaled copies of
    // the reference case's 4 channels (resampling is linear per channel).
    let reference = read(&data("lam-aa-bicubic/aa_bicubic.safetensors"));
    let (input, output) = (&reference["grid37_to_16.input"], &reference["grid37_to_16.output"]);
    let src = read(&data("univla-tiny/lam/lam_model.safetensors"));
    let dim = src["dino_encoder.vit.cls_token"].size()[2];
    let spread = |t: &Tensor| -> Tensor {
        let channels: Vec<Tensor> = (0..dim)
            .map(|c| t.select(1, c % 4) * (0.02 * (1 + c / 4) as f64))
            .collect();
        let grid = Tensor::stack(&channels, 1); // [1, D, H, W]
        let side = grid.size()[2];
        grid.permute([0, 2, 3, 1]).reshape([1, side * side, dim])
    };
    let (grid37, grid16) = (spread(input), spread(output));
    let hub = VarBuilder::from_tensors("hub", hub_layout(&src, &grid37), Kind::Float, Device::Cpu);
    let hub_model = LatentActionModel::load(&hub, &fixture_config()).unwrap();
    assert_close(
        "resampled pos grid",
        &hub_model.dino().patch_pos_embed().unwrap(),
        &grid16,
    );
    let mut timm: Vec<(String, Tensor)> = src.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
    timm.retain(|(k, _)| k != "dino_encoder.vit.pos_embed");
    timm.push(("dino_encoder.vit.pos_embed".into(), grid16));
    let timm = VarBuilder::from_tensors("timm", timm, Kind::Float, Device::Cpu);
    let timm_model = LatentActionModel::load(&timm, &fixture_config()).unwrap();
    let video = fixture_video();
    let (a, b) = (
        hub_model.vq_encode(&video).unwrap(),
        timm_model.vq_encode(&video).unwrap(),
    );
    assert_close("hub vs timm dino_patchtokens", &a.dino_patchtokens, &b.dino_patchtokens);
    assert_close("hub vs timm encoder_out", &a.encoder_out, &b.encoder_out);
}

#[cfg(feature = "opencv")] // writes its frames with OpenCV
fn synthetic_frame(width: i32, height: i32, seed: u8) -> opencv::core::Mat {
    use opencv::prelude::*;
    let mut bytes = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            for c in 0..3 {
                bytes.push(((x * 3 + y * 5 + c * 70) as u8).wrapping_mul(seed | 1));
            }
        }
    }
    let flat = opencv::core::Mat::from_bytes::<opencv::core::Vec3b>(&bytes).unwrap();
    flat.reshape(0, height).unwrap().try_clone().unwrap()
}

#[cfg(feature = "opencv")] // writes its frames with OpenCV
#[test]
fn label_command_on_generated_frames() {
    use opencv::core::Vector;
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    // Sequence: fixture frame0, a 200×150 generated frame (resized), fixture frame1, a JPEG.
    std::fs::copy(data("univla-tiny/lam/frame0.png"), frames.join("000.png")).unwrap();
    opencv::imgcodecs::imwrite(
        frames.join("001.png").to_str().unwrap(),
        &synthetic_frame(200, 150, 3),
        &Vector::new(),
    )
    .unwrap();
    std::fs::copy(data("univla-tiny/lam/frame1.png"), frames.join("002.png")).unwrap();
    opencv::imgcodecs::imwrite(
        frames.join("003.jpg").to_str().unwrap(),
        &synthetic_frame(224, 224, 7),
        &Vector::new(),
    )
    .unwrap();
    std::fs::write(frames.join("notes.txt"), "not a frame").unwrap();

    let json_out = dir.path().join("labels.json");
    let mut args = LabelArgs {
        checkpoint: data("univla-tiny/lam/lam_model.safetensors"),
        video_frames: Some(frames.clone()),
        interval: Some(2),
        dataset: None,
        window: None,
        out: Some(json_out.clone()),
        device: "cpu".into(),
        batch_size: 1,
        encoder_heads: Some(FIXTURE_ENCODER_HEADS),
        dino_heads: Some(FIXTURE_DINO_HEADS),
    };
    let report = run_label(&args).unwrap();
    assert_eq!(report.num_frames, 4);
    assert_eq!(report.steps.len(), 2);
    assert_eq!((report.steps[0].label.step, report.steps[0].label.target_step), (0, 2));
    assert_eq!(report.steps[0].label.action.codes, GOLDEN_INDICES);
    assert_eq!(report.steps[0].tokens, "<ACT_11><ACT_11><ACT_11><ACT_12>");
    assert_eq!(report.histogram.len(), 16);
    assert_eq!(report.histogram.iter().sum::<u64>(), 8);
    assert_eq!(report.histogram_uncontrol.iter().sum::<u64>(), 8);
    assert!(report.histogram[11] >= 3 && report.histogram[12] >= 1);

    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    assert_eq!(written["interval"], 2);
    assert_eq!(written["steps"][0]["codes"], serde_json::json!(GOLDEN_INDICES));
    assert_eq!(written["steps"][0]["tokens"], "<ACT_11><ACT_11><ACT_11><ACT_12>");
    assert_eq!(written["steps"][1]["step"], 1);

    // Batching does not change the labels; CSV output with its histogram file.
    let csv_out = dir.path().join("labels.csv");
    args.batch_size = 3;
    args.out = Some(csv_out.clone());
    let batched = run_label(&args).unwrap();
    let codes = |r: &univla_ros::lam::LabelReport| -> Vec<Vec<i64>> {
        r.steps.iter().map(|s| s.label.action.codes.clone()).collect()
    };
    assert_eq!(codes(&batched), codes(&report));
    let csv = std::fs::read_to_string(&csv_out).unwrap();
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("step,target_step,code_0,code_1,code_2,code_3,tokens"));
    assert!(lines
        .next()
        .unwrap()
        .starts_with("0,2,11,11,11,12,<ACT_11><ACT_11><ACT_11><ACT_12>,13,13,9,6,"));
    let hist = std::fs::read_to_string(histogram_path(&csv_out)).unwrap();
    assert_eq!(hist.lines().count(), 17);
    assert!(hist.lines().nth(12).unwrap().starts_with("11,<ACT_11>,"));

    // Too few frames for the interval is an error, not an empty report.
    args.interval = Some(4);
    args.out = None;
    assert!(run_label(&args).is_err());
}
