//! The LIBERO/Bridge "center crop" of the official evaluation scripts: TensorFlow's
//! `crop_and_resize` over a centred box covering `area_scale` of the image (side √area_scale),
//! bilinear sampling in float32 on values scaled to [0, 1], then `convert_image_dtype` back to
//! uint8 (`× 255.5`, saturating truncation). Arithmetic follows TF's CPU kernel in f32.
use super::error::{PreprocessError, Result};
use super::image::RgbImage;

/// Area fraction the official LIBERO/Bridge evaluation keeps (`crop_scale = 0.9`).
pub const CENTER_CROP_AREA: f32 = 0.9;
/// Output side of the official crop (`crop_and_resize(..., (224, 224))`).
pub const CENTER_CROP_SIZE: u32 = 224;
/// `convert_image_dtype(float → uint8)` multiplies by `dtype.max + 0.5`.
const TO_U8_SCALE: f32 = 255.5;
const CHANNELS: usize = 3;

/// Samples positions of one axis: `(low index, high index, lerp)` per output pixel, or None
/// where TF would write the extrapolation value (0).
fn axis_samples(lo: f32, hi: f32, in_size: usize, out_size: usize) -> Vec<Option<(usize, usize, f32)>> {
    let last = (in_size - 1) as f32;
    let scale = if out_size > 1 {
        (hi - lo) * last / (out_size - 1) as f32
    } else {
        0.0
    };
    (0..out_size)
        .map(|i| {
            let pos = if out_size > 1 {
                lo * last + i as f32 * scale
            } else {
                0.5 * (lo + hi) * last
            };
            if !(0.0..=last).contains(&pos) {
                return None;
            }
            let low = pos.floor();
            Some((low as usize, pos.ceil() as usize, pos - low))
        })
        .collect()
}

/// Crops the centred box of `area_scale` of the image area and resizes it to `width`×`height`
/// exactly like the official `crop_and_resize` helper followed by the uint8 round trip.
pub fn center_crop_and_resize(img: &RgbImage, area_scale: f32, width: u32, height: u32) -> Result<RgbImage> {
    if !(area_scale > 0.0 && area_scale.is_finite()) || width == 0 || height == 0 {
        return Err(PreprocessError::Invalid(format!(
            "center crop needs a positive area scale and output size (got {area_scale}, {width}x{height})"
        )));
    }
    let side = area_scale.sqrt().clamp(0.0, 1.0);
    let offset = (1.0 - side) / 2.0;
    let (lo, hi) = (offset, offset + side);
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let ys = axis_samples(lo, hi, in_h, height as usize);
    let xs = axis_samples(lo, hi, in_w, width as usize);
    let to_unit = (1.0f64 / 255.0) as f32;
    let src = img.as_raw();
    let value = |y: usize, x: usize, c: usize| f32::from(src[(y * in_w + x) * CHANNELS + c]) * to_unit;
    let mut out = Vec::with_capacity(width as usize * height as usize * CHANNELS);
    for y in &ys {
        for x in &xs {
            for c in 0..CHANNELS {
                let v = match (y, x) {
                    (Some((top, bottom, y_lerp)), Some((left, right, x_lerp))) => {
                        let (tl, tr) = (value(*top, *left, c), value(*top, *right, c));
                        let (bl, br) = (value(*bottom, *left, c), value(*bottom, *right, c));
                        let t = tl + (tr - tl) * x_lerp;
                        let b = bl + (br - bl) * x_lerp;
                        t + (b - t) * y_lerp
                    }
                    _ => 0.0,
                };
                // clip_by_value(0, 1), then saturate_cast(v * 255.5) truncates.
                out.push((v.clamp(0.0, 1.0) * TO_U8_SCALE).clamp(0.0, 255.0) as u8);
            }
        }
    }
    Ok(RgbImage::from_parts(width, height, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_image_round_trips() {
        // 1/255 * 255.5 truncates back to the same value for every uint8.
        for v in [0u8, 1, 77, 128, 254, 255] {
            let img = RgbImage::filled(256, 256, [v, v, 255 - v]).unwrap();
            let out = center_crop_and_resize(&img, CENTER_CROP_AREA, 224, 224).unwrap();
            assert!(out.as_raw().chunks_exact(3).all(|p| p == [v, v, 255 - v]), "value {v}");
        }
    }

    #[test]
    fn box_matches_official_offsets() {
        // (1 - √0.9)/2 = 0.0256584: first sample lands at 0.0256584·223 ≈ 5.72 of a 224 image.
        let s = axis_samples(0.025_658_4, 0.974_341_6, 224, 224);
        let (lo, hi, lerp) = s[0].unwrap();
        assert_eq!((lo, hi), (5, 6));
        assert!((lerp - 0.721_82).abs() < 1e-3);
        let (lo, _, _) = s[223].unwrap();
        assert_eq!(lo, 217);
    }

    #[test]
    fn horizontal_ramp_is_resampled_linearly() {
        let w = 256u32;
        let data: Vec<u8> = (0..w * 8).flat_map(|i| [(i % w) as u8; 3]).collect();
        let img = RgbImage::new(w, 8, data).unwrap();
        let out = center_crop_and_resize(&img, 1.0, 256, 8).unwrap();
        // Area 1 is the identity box: every value survives the float round trip.
        assert_eq!(out, img);
    }
}
