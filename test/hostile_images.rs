//! Images that declare more pixels than the limit end `univla infer` with a one-line error before
//! anything is decoded (a 1 MB PNG of 32768×32768 would inflate to gigabytes).
#[path = "bag_common.rs"]
mod bag_common;
mod common;

use std::path::Path;
use std::process::{Command, Output};

/// `univla infer` on the fixture checkpoint with `image`, plus `extra` arguments.
fn infer(image: &Path, extra: &[&str]) -> Output {
    let ckpt = common::checkpoint();
    Command::new(env!("CARGO_BIN_EXE_univla"))
        .env("RUST_BACKTRACE", "0")
        .args([
            "infer",
            "--greedy",
            "--unnorm-key",
            "libero_10_no_noops",
            "--instruction",
            "pick up the bowl",
        ])
        .arg("--checkpoint")
        .arg(&ckpt)
        .arg("--decoder")
        .arg(ckpt.join("action_decoder_libero.pt"))
        .arg("--image")
        .arg(image)
        .args(extra)
        .output()
        .unwrap()
}

/// The run failed cleanly with one line on stderr; returns it.
fn one_line_error(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: infer succeeded\n{stderr}");
    assert_ne!(out.status.code(), Some(101), "{what}: panic\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: expected a one-line error, got:\n{stderr}");
    stderr
}

/// Writes a valid PNG of `side`×`side` 8-bit gray zeros (compressed to about 1 MB for 32768).
fn gray_png(path: &Path, side: u32) {
    let script = r#"
import struct, sys, zlib
side = int(sys.argv[2])
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
comp = zlib.compressobj(9)
row = b"\0" * (side + 1)
idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
open(sys.argv[1], "wb").write(png + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
"#;
    let st = Command::new(bag_common::venv_python())
        .args(["-c", script])
        .arg(path)
        .arg(side.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn a_png_declaring_a_gigapixel_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.png");
    gray_png(&bomb, 32768);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 4 << 20);
    let err = one_line_error(&infer(&bomb, &[]), "32768x32768 PNG");
    assert!(err.contains("32768x32768") && err.contains("exceeds"), "{err}");
}

#[test]
fn a_jpeg_header_declaring_65535_squared_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = dir.path().join("huge.jpg");
    // SOI, a baseline frame header (SOF0) of 65535x65535, one component, EOI.
    let mut b = vec![0xff, 0xd8, 0xff, 0xc0, 0, 11, 8, 0xff, 0xff, 0xff, 0xff, 1, 1, 0x11, 0];
    b.extend([0xff, 0xd9]);
    std::fs::write(&jpeg, b).unwrap();
    let err = one_line_error(&infer(&jpeg, &[]), "65535x65535 JPEG");
    assert!(err.contains("65535x65535"), "{err}");
}

#[test]
fn the_pixel_limit_is_configurable() {
    let image = common::fixture().join("images/libero_step0.png");
    assert!(infer(&image, &[]).status.success());
    let err = one_line_error(&infer(&image, &["--max-image-pixels", "1000"]), "limit 1000");
    assert!(err.contains("limit of 1000 pixels"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.png");
    gray_png(&small, 64);
    assert!(infer(&small, &["--max-image-pixels", "4096"]).status.success());
}

#[test]
fn formats_other_than_png_and_jpeg_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let gif = dir.path().join("x.png");
    std::fs::write(&gif, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    let err = one_line_error(&infer(&gif, &[]), "GIF");
    assert!(err.contains("neither PNG nor JPEG"), "{err}");
}

#[test]
fn a_cut_or_damaged_png_is_one_error_line_not_a_decoder_complaint() {
    // libpng prints its own line to stderr before OpenCV gives up; the chunk walk refuses the
    // file first, so the user sees one error naming the problem.
    let image = std::fs::read(common::fixture().join("images/libero_step0.png")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &image[..image.len() / 2]).unwrap();
    let err = one_line_error(&infer(&cut, &[]), "truncated PNG");
    assert!(err.contains("truncated"), "{err}");
    let mut damaged = image.clone();
    let at = image.len() / 2;
    damaged[at] ^= 0xff;
    let bad = dir.path().join("damaged.png");
    std::fs::write(&bad, &damaged).unwrap();
    let err = one_line_error(&infer(&bad, &[]), "damaged PNG");
    assert!(err.contains("CRC"), "{err}");
}
