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

#[cfg(test)]
mod tests {
    use super::*;

    fn img(encoding: &str, channels: u32, step_pad: u32, data: Vec<u8>) -> Image {
        Image {
            height: 1,
            width: 2,
            encoding: encoding.into(),
            step: 2 * channels + step_pad,
            data,
            ..Default::default()
        }
    }

    #[test]
    fn encodings_convert_to_packed_rgb() {
        let rgb = vec![1, 2, 3, 4, 5, 6];
        assert_eq!(image_to_rgb(&img("rgb8", 3, 0, rgb.clone())).unwrap().data, rgb);
        assert_eq!(
            image_to_rgb(&img("bgr8", 3, 2, vec![3, 2, 1, 6, 5, 4, 0, 0]))
                .unwrap()
                .data,
            rgb
        );
        assert_eq!(
            image_to_rgb(&img("bgra8", 4, 0, vec![3, 2, 1, 9, 6, 5, 4, 9]))
                .unwrap()
                .data,
            rgb
        );
        assert_eq!(
            image_to_rgb(&img("mono8", 1, 0, vec![7, 8])).unwrap().data,
            [7, 7, 7, 8, 8, 8]
        );
        assert!(image_to_rgb(&img("16UC1", 2, 0, vec![0; 4]))
            .unwrap_err()
            .contains("16UC1"));
        assert!(image_to_rgb(&img("rgb8", 3, 0, vec![0; 5])).is_err());
    }

    #[test]
    fn png_compressed_image_decodes_losslessly() {
        let rgb: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
        let mat = Mat::from_slice(&rgb).unwrap();
        let mat = mat.reshape(3, 3).unwrap();
        let mut bgr = Mat::default();
        opencv::imgproc::cvt_color_def(&mat, &mut bgr, opencv::imgproc::COLOR_RGB2BGR).unwrap();
        let mut png = Vector::<u8>::new();
        opencv::imgcodecs::imencode_def(".png", &bgr, &mut png).unwrap();
        let msg = CompressedImage {
            format: "rgb8; png compressed bgr8".into(),
            data: png.to_vec(),
            ..Default::default()
        };
        let out = compressed_to_rgb(&msg).unwrap();
        assert_eq!((out.width, out.height), (4, 3));
        assert_eq!(out.data, rgb);
    }
}
