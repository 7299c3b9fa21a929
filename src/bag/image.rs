//! Camera messages → tightly packed RGB8 (what [`super::replay::ReplayPolicy::step`] takes).
use opencv::core::{Mat, Vector};
use opencv::prelude::*;

use crate::ros::msgs::sensor_msgs::{CompressedImage, Image};

/// An RGB8 image, rows packed (`data.len() == width * height * 3`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rgb8 {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// Converts a raw `sensor_msgs/Image` (rgb8, bgr8, rgba8, bgra8, mono8) to packed RGB8.
pub fn image_to_rgb(img: &Image) -> Result<Rgb8, String> {
    let (channels, order): (usize, [usize; 3]) = match img.encoding.as_str() {
        "rgb8" => (3, [0, 1, 2]),
        "bgr8" => (3, [2, 1, 0]),
        "rgba8" => (4, [0, 1, 2]),
        "bgra8" => (4, [2, 1, 0]),
        "mono8" | "8UC1" => (1, [0, 0, 0]),
        other => {
            return Err(format!(
                "image encoding {other:?} not supported (rgb8, bgr8, rgba8, bgra8, mono8)"
            ))
        }
    };
    let (w, h) = (img.width as usize, img.height as usize);
    let row = w * channels;
    let step = img.step as usize;
    if step < row || img.data.len() < step * h.saturating_sub(1) + row {
        return Err(format!(
            "image {}x{} {} has {} bytes with step {}, too few",
            w,
            h,
            img.encoding,
            img.data.len(),
            img.step
        ));
    }
    if channels == 3 && order == [0, 1, 2] && step == row {
        return Ok(Rgb8 {
            width: img.width,
            height: img.height,
            data: img.data[..row * h].to_vec(),
        });
    }
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        let line = &img.data[y * step..y * step + row];
        for px in line.chunks_exact(channels) {
            data.extend_from_slice(&[px[order[0]], px[order[1]], px[order[2]]]);
        }
    }
    Ok(Rgb8 {
        width: img.width,
        height: img.height,
        data,
    })
}

/// Decodes a `sensor_msgs/CompressedImage` (JPEG or PNG) to packed RGB8.
pub fn compressed_to_rgb(img: &CompressedImage) -> Result<Rgb8, String> {
    let buf = Vector::<u8>::from_slice(&img.data);
    let bgr = opencv::imgcodecs::imdecode(&buf, opencv::imgcodecs::IMREAD_COLOR).map_err(|e| e.to_string())?;
    if bgr.empty() {
        return Err(format!("cannot decode compressed image (format {:?})", img.format));
    }
    let mut rgb = Mat::default();
    opencv::imgproc::cvt_color_def(&bgr, &mut rgb, opencv::imgproc::COLOR_BGR2RGB).map_err(|e| e.to_string())?;
    let data = rgb.data_bytes().map_err(|e| e.to_string())?.to_vec();
    Ok(Rgb8 {
        width: u32::try_from(rgb.cols()).unwrap_or(0),
        height: u32::try_from(rgb.rows()).unwrap_or(0),
        data,
    })
}
