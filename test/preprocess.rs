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
    center_crop_and_resize, pil_resize, ImageProcessor, PixelEncoding, PreprocessError, ResizeMethod, RgbImage,
    CENTER_CROP_AREA,
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

#[cfg(feature = "opencv")]
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

#[cfg(feature = "opencv")]
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

#[cfg(not(feature = "opencv"))]
#[test]
fn opencv_resize_methods_are_clear_errors_without_opencv() {
    let img = image("deploy", 0);
    let e = processor()
        .with_resize_method(ResizeMethod::OpenCvCubic)
        .pixel_values(&img)
        .unwrap_err();
    assert!(matches!(e, PreprocessError::NoOpenCv(_)), "{e}");
    assert!(e.to_string().contains("opencv"), "{e}");
}

/// A deterministic byte sequence covering every value (xorshift).
#[cfg(feature = "opencv")]
fn noise(len: usize, mut state: u32) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

/// The decoder and YUV conversion of builds without the `opencv` feature, against OpenCV.
/// Measured: PNG and YUV bit-exact; JPEG (OpenCV's libjpeg vs the `image` crate) within 1 level.
#[cfg(feature = "opencv")]
#[test]
fn opencv_free_paths_match_opencv() {
    use univla_ros::runtime::preprocess::pure::{decode_rgb8, yuv422_to_rgb, Yuv422Layout};
    let (w, h) = (64u32, 48u32);
    let packed = noise((w * h * 2) as usize, 0x1234_5678);
    for (encoding, layout) in [
        (PixelEncoding::Uyvy, Yuv422Layout::Uyvy),
        (PixelEncoding::Yuyv, Yuv422Layout::Yuyv),
    ] {
        let cv = RgbImage::from_raw(w, h, (w * 2) as usize, encoding, &packed).unwrap();
        assert_eq!(yuv422_to_rgb(w, h, layout, &packed).unwrap(), cv, "{encoding:?}");
    }
    for variant in VARIANTS {
        let path = fixture().join(format!("images/{variant}_step0.png"));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            decode_rgb8(&bytes).unwrap(),
            RgbImage::decode(&bytes).unwrap(),
            "{variant}"
        );
    }
    // JPEG written by OpenCV (4:2:0, quality 95) from a pattern with edges.
    let img = pattern(96, 64);
    let bgr: Vec<u8> = img.as_raw().chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
    let mat = opencv::core::Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(64, 96, &bgr).unwrap();
    let mut jpeg = opencv::core::Vector::<u8>::new();
    opencv::imgcodecs::imencode(".jpg", &mat, &mut jpeg, &opencv::core::Vector::new()).unwrap();
    let (a, b) = (
        decode_rgb8(jpeg.as_slice()).unwrap(),
        RgbImage::decode(jpeg.as_slice()).unwrap(),
    );
    assert_eq!((a.width(), a.height()), (96, 64));
    let worst = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| x.abs_diff(y))
        .max()
        .unwrap_or(0);
    println!("JPEG: max |image - OpenCV| = {worst} levels");
    assert!(worst <= JPEG_DECODER_TOLERANCE, "{worst}");
}

/// Largest per-channel difference allowed between two JPEG decoders on the same file.
#[cfg(feature = "opencv")]
const JPEG_DECODER_TOLERANCE: u8 = 8;

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

/// A deterministic test pattern with smooth ramps and sharp 9×7 checker edges.
fn pattern(w: u32, h: u32) -> RgbImage {
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..u64::from(h) {
        for x in 0..u64::from(w) {
            for c in 0..3u64 {
                let v = (x * x * 3 + y * y * 5 + x * y * 7 + c * 50) % 256;
                data.push((v ^ (((x / 9 + y / 7) % 2) * 255)) as u8);
            }
        }
    }
    RgbImage::new(w, h, data).unwrap()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn pil_port_matches_pillow_on_many_sizes() {
    // FNV-1a hashes of `Image.fromarray(pattern).resize(out, Image.BICUBIC)` computed with
    // Pillow 12.3.0: up- and downscaling, strong shrink factors, odd sizes, a >100× tall image.
    // Pillow 13.0.0 (the fixture's version) gives the same hashes except for 17×333 (it runs the
    // vertical pass first there: 0xc20b_bd0a_ca4e_dfdd).
    let cases = [
        ((200, 200), (224, 224), 0x6544_036d_ec78_b5dc_u64),
        ((640, 480), (224, 224), 0xad87_4918_b2aa_cd11),
        ((1280, 720), (224, 224), 0x6cc7_74d2_dd77_b4a0),
        ((100, 50), (224, 224), 0xbfea_1923_058f_8df4),
        ((224, 300), (224, 224), 0x6320_2d4e_0f8d_72a5),
        ((17, 333), (224, 224), 0x2839_489f_79fe_db91),
        ((5, 572), (14, 275), 0xf3d1_8c23_fe8e_d534),
        ((640, 480), (97, 61), 0x310d_0e2d_c68a_b5f1),
        ((256, 192), (224, 224), 0x6e02_3038_abb2_8569),
    ];
    for ((w, h), (ow, oh), expected) in cases {
        let out = pil_resize::resize_bicubic(&pattern(w, h), ow, oh);
        assert_eq!((out.width(), out.height()), (ow, oh));
        assert_eq!(fnv1a(out.as_raw()), expected, "{w}x{h} -> {ow}x{oh}");
    }
}
