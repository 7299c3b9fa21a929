//! Frames for the LAM: RGB uint8 images, resized to 224×224 when needed, as f32 in [0, 1]
//! (the ImageNet normalisation happens inside the model, as in the reference).
//!
//! Resizing uses OpenCV's INTER_AREA. The reference feeds LIBERO/RLDS frames that are already
//! 224 px, and resizes CALVIN, R2R and real-world frames with torchvision `Resize` (bilinear,
//! antialiased) on PIL images; INTER_AREA is a close, not bit-exact, stand-in for those.
use std::path::{Path, PathBuf};

use opencv::core::{Mat, Size, Vec3b};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use tch::{Device, Kind, Tensor};

use super::error::{LamError, Result};
use super::model::LAM_IMAGE_SIZE;

/// File extensions `--video-frames` reads (case-insensitive).
pub const FRAME_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// An RGB image, 8 bits per channel, rows top to bottom, HWC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbFrame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbFrame {
    /// Wraps `data` (width·height·3 bytes, RGB).
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        if width == 0 || height == 0 || data.len() != width * height * 3 {
            return Err(LamError::Input(format!(
                "RGB frame {width}x{height} needs {} bytes, got {}",
                width * height * 3,
                data.len()
            )));
        }
        Ok(Self { width, height, data })
    }

    /// Reads a PNG or JPEG file (alpha dropped, 16-bit scaled to 8).
    pub fn load(path: &Path) -> Result<Self> {
        let image_err = |reason: String| LamError::Image {
            path: path.to_path_buf(),
            reason,
        };
        let name = path
            .to_str()
            .ok_or_else(|| image_err("path is not valid UTF-8".into()))?;
        let bgr = imgcodecs::imread(name, imgcodecs::IMREAD_COLOR)?;
        if bgr.empty() {
            return Err(image_err("cannot decode (missing, unreadable or not an image)".into()));
        }
        let mut rgb = Mat::default();
        imgproc::cvt_color_def(&bgr, &mut rgb, imgproc::COLOR_BGR2RGB)?;
        Self::from_mat(&rgb)
    }

    fn from_mat(mat: &Mat) -> Result<Self> {
        let (width, height) = (mat.cols() as usize, mat.rows() as usize);
        let data = if mat.is_continuous() {
            mat.data_bytes()?.to_vec()
        } else {
            mat.try_clone()?.data_bytes()?.to_vec()
        };
        Self::new(width, height, data)
    }

    /// This frame at `size`×`size` (INTER_AREA), or unchanged if it already is.
    pub fn resized(&self, size: usize) -> Result<Self> {
        if self.width == size && self.height == size {
            return Ok(self.clone());
        }
        let flat = Mat::from_bytes::<Vec3b>(&self.data)?;
        let src = flat.reshape(0, self.height as i32)?;
        let mut dst = Mat::default();
        let dsize = Size::new(size as i32, size as i32);
        imgproc::resize(&src, &mut dst, dsize, 0.0, 0.0, imgproc::INTER_AREA)?;
        Self::from_mat(&dst)
    }
}

/// Frames → [N, 3, 224, 224] f32 in [0, 1] on `device` (resizing where needed).
pub fn frames_to_tensor(frames: &[&RgbFrame], device: Device) -> Result<Tensor> {
    if frames.is_empty() {
        return Err(LamError::Input("no frames".into()));
    }
    let side = LAM_IMAGE_SIZE as usize;
    let mut bytes = Vec::with_capacity(frames.len() * side * side * 3);
    for frame in frames {
        if frame.width == side && frame.height == side {
            bytes.extend_from_slice(&frame.data);
        } else {
            bytes.extend_from_slice(&frame.resized(side)?.data);
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
