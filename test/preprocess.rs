//! Image preprocessing against the official `PrismaticImageProcessor` outputs of the fixture:
//! the PIL-bicubic port must reproduce `pixel_values` exactly (deploy images are 256×192, so the
//! resize really runs; LIBERO/R2R images are 224×224 and exercise the no-op path). The OpenCV
//! resize paths are measured against the same golden tensor.
//!
//! Measured on the fixture (deploy/step0, 256×192 → 224×224): PIL port max |Δ| = 0 (bit-exact);
//! OpenCV INTER_CUBIC max |Δ| = 0.331 (mean 0.0041) and INTER_AREA max |Δ| = 0.366 (mean 0.0047)
//! in normalised units (one uint8 level is ≈ 0.0171 after DINO normalisation, 0.0078 after
//! SigLIP's), i.e. up to ~19 grey levels at sharp edges, under one level on average.
use std::path::PathBuf;

use serde_json::Value;
use tch::{Device, Kind, Tensor};
use univla_ros::model::VarBuilder;
use univla_ros::runtime::preprocess::{
    center_crop_and_resize, ImageProcessor, PixelEncoding, PreprocessError, ResizeMethod, RgbImage, CENTER_CROP_AREA,
};

const VARIANTS: [&str; 3] = ["deploy", "libero", "r2r"];
const STEPS: usize = 6;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test/data/univla-tiny")
}

fn processor() -> ImageProcessor {
    ImageProcessor::from_config_file(fixture().join("checkpoint/preprocessor_config.json")).unwrap()
}

fn golden_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("golden.json")).unwrap()).unwrap()
}

fn golden_tensor(key: &str) -> Tensor {
    let vb = VarBuilder::from_safetensors(&[fixture().join("golden.safetensors")], Kind::Float, Device::Cpu).unwrap();
    vb.get_unchecked(key).unwrap()
}

fn image(variant: &str, step: usize) -> RgbImage {
    RgbImage::load(fixture().join(format!("images/{variant}_step{step}.png"))).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// Compares a tensor with a golden `{sum, mean, std, first8}` summary.
fn check_summary(t: &Tensor, summary: &Value, what: &str, first8_tol: f64, rel_tol: f64) {
    let t = t.to_kind(Kind::Double);
    let shape: Vec<i64> = summary["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(t.size(), shape, "{what}: shape");
    let flat = t.flatten(0, -1);
    for (i, g) in summary["first8"].as_array().unwrap().iter().enumerate() {
        let (ours, gold) = (flat.double_value(&[i as i64]), g.as_f64().unwrap());
        assert!(
            (ours - gold).abs() <= first8_tol,
            "{what}: first8[{i}] {ours} vs {gold}"
        );
    }
    let n = flat.size()[0] as f64;
    let scale = flat.abs().max().double_value(&[]);
    let sum = flat.sum(Kind::Double).double_value(&[]);
    let gold_sum = summary["sum"].as_f64().unwrap();
    assert!(
        (sum - gold_sum).abs() <= rel_tol * scale * n.sqrt() + 1e-6 * n,
        "{what}: sum {sum} vs {gold_sum}"
    );
    let mean = flat.mean(Kind::Double).double_value(&[]);
    assert!(
        (mean - summary["mean"].as_f64().unwrap()).abs() <= rel_tol * scale + 1e-9,
        "{what}: mean {mean}"
    );
    let std = flat.std(false).double_value(&[]);
    let gold_std = summary["std"].as_f64().unwrap();
    assert!(
        (std - gold_std).abs() <= rel_tol * scale + 1e-6 * gold_std,
        "{what}: std {std} vs {gold_std}"
    );
}

#[test]
fn pil_port_reproduces_golden_pixel_values_exactly() {
    let ours = processor().pixel_values(&image("deploy", 0)).unwrap();
    let gold = golden_tensor("deploy/step0/pixel_values");
    let diff = max_abs_diff(&ours, &gold);
    println!("deploy/step0 PIL-port pixel_values max |diff| = {diff:e}");
    assert!(diff <= 1e-6, "max |diff| {diff}");
}

#[test]
fn pil_port_matches_every_step_summary() {
    let golden = golden_json();
    let proc = processor();
    for variant in VARIANTS {
        for step in 0..STEPS {
            let img = image(variant, step);
            let pv = proc.pixel_values(&img).unwrap();
            let summary = &golden[variant]["steps"][step]["pixel_values_summary"];
            check_summary(&pv, summary, &format!("{variant}/step{step}"), 1e-6, 1e-7);
        }
    }
}

#[test]
fn opencv_paths_stay_close_to_golden() {
    let gold = golden_tensor("deploy/step0/pixel_values");
    let img = image("deploy", 0);
    for (method, bound) in [(ResizeMethod::OpenCvCubic, 0.6), (ResizeMethod::OpenCvArea, 0.6)] {
        let pv = processor().with_resize_method(method).pixel_values(&img).unwrap();
        let diff = max_abs_diff(&pv, &gold);
        let mean = (&pv - &gold).abs().mean(Kind::Double).double_value(&[]);
        println!("deploy/step0 {method:?}: max |diff| = {diff:.4}, mean |diff| = {mean:.5}");
        assert!(diff > 0.0 && diff < bound, "{method:?}: {diff}");
        assert!(mean < 0.02, "{method:?}: mean {mean}");
    }
    // 224×224 inputs are not resized by any method.
    let img = image("libero", 0);
    let exact = processor().pixel_values(&img).unwrap();
    let cv = processor()
        .with_resize_method(ResizeMethod::OpenCvCubic)
        .pixel_values(&img)
        .unwrap();
    assert_eq!(max_abs_diff(&exact, &cv), 0.0);
}

#[test]
fn batch_stacks_images() {
    let proc = processor();
    let (a, b) = (image("deploy", 0), image("r2r", 3));
    let batch = proc.pixel_values_batch(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(batch.size(), [2, 6, 224, 224]);
    assert_eq!(
        max_abs_diff(&batch.get(0).unsqueeze(0), &proc.pixel_values(&a).unwrap()),
        0.0
    );
    assert_eq!(
        max_abs_diff(&batch.get(1).unsqueeze(0), &proc.pixel_values(&b).unwrap()),
        0.0
    );
}

/// Packs an RGB image into a raw buffer of `encoding` with `pad` bytes after every row.
fn pack(img: &RgbImage, encoding: PixelEncoding, pad: usize) -> (usize, Vec<u8>) {
    let w = img.width() as usize;
    let mut out = Vec::new();
    for row in img.as_raw().chunks_exact(w * 3) {
        for p in row.chunks_exact(3) {
            match encoding {
                PixelEncoding::Rgb8 => out.extend_from_slice(p),
                PixelEncoding::Bgr8 => out.extend([p[2], p[1], p[0]]),
                PixelEncoding::Rgba8 => out.extend([p[0], p[1], p[2], 255]),
                PixelEncoding::Bgra8 => out.extend([p[2], p[1], p[0], 7]),
                PixelEncoding::Mono8 => out.push(p[0]),
                _ => unreachable!(),
            }
        }
        out.extend(std::iter::repeat_n(0xAB, pad));
    }
    (w * encoding.bytes_per_pixel() + pad, out)
}

#[test]
fn raw_buffers_with_row_padding_convert_to_rgb() {
    let img = image("r2r", 0);
    for encoding in [
        PixelEncoding::Rgb8,
        PixelEncoding::Bgr8,
        PixelEncoding::Rgba8,
        PixelEncoding::Bgra8,
    ] {
        for pad in [0, 5] {
            let (step, data) = pack(&img, encoding, pad);
            let back = RgbImage::from_raw(img.width(), img.height(), step, encoding, &data).unwrap();
            assert_eq!(back, img, "{encoding:?} pad {pad}");
            // The padding after the last row may be missing.
            let short = RgbImage::from_raw(img.width(), img.height(), step, encoding, &data[..data.len() - pad]);
            assert_eq!(short.unwrap(), img, "{encoding:?} pad {pad} (short)");
        }
    }
    let grey = RgbImage::new(
        3,
        2,
        vec![9, 9, 9, 50, 50, 50, 0, 0, 0, 255, 255, 255, 1, 1, 1, 2, 2, 2],
    )
    .unwrap();
    let (step, data) = pack(&grey, PixelEncoding::Mono8, 1);
    assert_eq!(
        RgbImage::from_raw(3, 2, step, PixelEncoding::Mono8, &data).unwrap(),
        grey
    );
    assert_eq!(PixelEncoding::from_ros("BGR8").unwrap(), PixelEncoding::Bgr8);
    assert_eq!("yuv422".parse::<PixelEncoding>().unwrap(), PixelEncoding::Uyvy);
    assert_eq!(PixelEncoding::from_ros("yuv422_yuy2").unwrap(), PixelEncoding::Yuyv);
}

#[test]
fn yuv422_converts_like_cv_bridge() {
    // Y=U=V=128 is mid grey; Y=235 with neutral chroma is near white; UYVY and YUYV agree.
    let uyvy = [128u8, 128, 128, 128, 128, 235, 128, 235, 0, 0];
    let img = RgbImage::from_raw(4, 1, 8, PixelEncoding::Uyvy, &uyvy[..8]).unwrap();
    // OpenCV uses BT.601 video range (Y 16..235), so Y=128 maps to ~130.
    let grey = img.pixel(0, 0).unwrap();
    assert!(
        grey[0] == grey[1] && grey[1] == grey[2] && (124..=134).contains(&grey[0]),
        "{grey:?}"
    );
    let white = img.pixel(2, 0).unwrap();
    assert!(white.iter().all(|&c| c >= 230), "{white:?}");
    let yuyv = [128u8, 128, 128, 128, 235, 128, 235, 128];
    assert_eq!(RgbImage::from_raw(4, 1, 8, PixelEncoding::Yuyv, &yuyv).unwrap(), img);
    // A red-ish chroma (V high) raises R over B.
    let red = RgbImage::from_raw(2, 1, 4, PixelEncoding::Uyvy, &[128, 100, 220, 100])
        .unwrap()
        .pixel(0, 0)
        .unwrap();
    assert!(red[0] > red[2] + 50, "{red:?}");
    let odd = RgbImage::from_raw(3, 1, 8, PixelEncoding::Uyvy, &uyvy[..8]);
    assert!(matches!(odd, Err(PreprocessError::OddWidth { .. })), "{odd:?}");
}

#[test]
fn wrong_buffer_sizes_are_clear_errors() {
    let e = RgbImage::from_raw(4, 4, 12, PixelEncoding::Rgb8, &[0; 47]).unwrap_err();
    assert!(
        matches!(
            e,
            PreprocessError::BufferSize {
                expected: 48,
                found: 47,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("rgb8") && e.to_string().contains("47"), "{e}");
    let e = RgbImage::from_raw(4, 4, 12, PixelEncoding::Rgb8, &[0; 49]).unwrap_err();
    assert!(matches!(e, PreprocessError::BufferSize { .. }), "{e}");
    let e = RgbImage::from_raw(4, 4, 10, PixelEncoding::Rgb8, &[0; 40]).unwrap_err();
    assert!(
        matches!(
            e,
            PreprocessError::Step {
                step: 10,
                row_bytes: 12,
                ..
            }
        ),
        "{e}"
    );
    let e = RgbImage::from_raw(0, 4, 0, PixelEncoding::Mono8, &[]).unwrap_err();
    assert!(matches!(e, PreprocessError::Empty { .. }), "{e}");
    let e = PixelEncoding::from_ros("16UC1").unwrap_err();
    assert!(e.to_string().contains("16UC1"), "{e}");
    assert!(matches!(
        RgbImage::new(2, 2, vec![0; 11]),
        Err(PreprocessError::BufferSize { .. })
    ));
    assert!(matches!(
        RgbImage::decode(b"not an image"),
        Err(PreprocessError::Decode(_))
    ));
}

#[test]
fn png_and_jpeg_decode_to_rgb() {
    // The fixture PNG decoded by OpenCV equals the golden pixels: the PIL port reproduces the
    // official pixel_values from it (see above), so channel order is right. JPEG: a round trip
    // through OpenCV's encoder keeps a flat red image red.
    let red = RgbImage::filled(32, 16, [200, 10, 10]).unwrap();
    let mut bgr = opencv::core::Vector::<u8>::new();
    let bgr_data: Vec<u8> = red.as_raw().chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
    let mat = opencv::core::Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(16, 32, &bgr_data).unwrap();
    opencv::imgcodecs::imencode(".jpg", &mat, &mut bgr, &opencv::core::Vector::new()).unwrap();
    let decoded = RgbImage::decode(bgr.as_slice()).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (32, 16));
    let p = decoded.pixel(5, 5).unwrap();
    assert!(p[0] > 180 && p[1] < 40 && p[2] < 40, "{p:?}");
}

#[test]
fn libero_center_crop_keeps_the_middle_and_size() {
    let img = image("libero", 0);
    let out = center_crop_and_resize(&img, CENTER_CROP_AREA, 224, 224).unwrap();
    assert_eq!((out.width(), out.height()), (224, 224));
    // The crop zooms in by 1/√0.9: the centre pixel stays (nearly) where it was and the output
    // differs from the input elsewhere.
    let (a, b) = (img.pixel(112, 112).unwrap(), out.pixel(112, 112).unwrap());
    assert!(
        a.iter().zip(b).all(|(x, y)| (i32::from(*x) - i32::from(y)).abs() <= 40),
        "{a:?} {b:?}"
    );
    assert_ne!(out, img);
    assert!(center_crop_and_resize(&img, 0.0, 224, 224).is_err());
}
