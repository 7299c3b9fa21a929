//! Frames for the LAM: [`RgbImage`]s, resized to 224×224 when needed, as f32 in [0, 1] (the
//! ImageNet normalisation happens inside the model, as in the reference).
//!
//! Resizing uses OpenCV's INTER_AREA ([`LAM_RESIZE`]). The reference feeds LIBERO/RLDS frames that
//! are already 224 px, and resizes CALVIN, R2R and real-world frames with torchvision `Resize`
//! (bilinear, antialiased) on PIL images; INTER_AREA is a close, not bit-exact, stand-in for those.
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use super::error::{LamError, Result};
use super::model::LAM_IMAGE_SIZE;
use crate::runtime::preprocess::{resize, ResizeMethod, RgbImage};

/// File extensions `--video-frames` reads (case-insensitive).
pub const FRAME_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];
/// How frames of another size are brought to 224×224.
pub const LAM_RESIZE: ResizeMethod = ResizeMethod::OpenCvArea;

/// Frames → [N, 3, 224, 224] f32 in [0, 1] on `device` (resizing with [`LAM_RESIZE`] where needed).
pub fn frames_to_tensor(frames: &[&RgbImage], device: Device) -> Result<Tensor> {
    if frames.is_empty() {
        return Err(LamError::Input("no frames".into()));
    }
    let side = LAM_IMAGE_SIZE as u32;
    let mut bytes = Vec::with_capacity(frames.len() * (side * side * 3) as usize);
    for frame in frames {
        if (frame.width(), frame.height()) == (side, side) {
            bytes.extend_from_slice(frame.as_raw());
        } else {
            bytes.extend_from_slice(resize(frame, side, side, LAM_RESIZE)?.as_raw());
        }
    }
    let n = frames.len() as i64;
    let s = LAM_IMAGE_SIZE;
    let hwc = Tensor::f_from_slice(&bytes)?.f_view([n, s, s, 3])?;
    Ok(hwc
        .f_permute([0, 3, 1, 2])?
        .f_to_kind(Kind::Float)?
        .f_div_scalar(255.0)?
        .f_to_device(device)?)
}

/// Image files in `dir` with a frame extension, sorted by file name.
pub fn list_frame_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let io_err = |source| LamError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        let is_frame = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| FRAME_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)));
        if is_frame && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}
