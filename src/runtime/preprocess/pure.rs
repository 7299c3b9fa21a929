//! Image decoding and YUV conversion without OpenCV: what a build without the `opencv` feature
//! uses (machines that have no OpenCV shared libraries). Always compiled, so the default build
//! tests them against OpenCV.
//!
//! * PNG/JPEG through the `image` crate: 8-bit PNGs decode to exactly OpenCV's pixels (lossless);
//!   JPEG decoders may differ by a level or two (IDCT and chroma upsampling).
//! * YUV 4:2:2 → RGB with OpenCV's fixed-point BT.601 video-range coefficients
//!   (`cv::cvtColor(…, COLOR_YUV2RGB_UYVY/YUYV)`, what `cv_bridge` runs), bit-exact.
use super::error::{PreprocessError, Result};
use super::image::RgbImage;

/// OpenCV's `ITUR_BT_601_*` constants (fixed point, 20 fractional bits).
const BT601_CY: i32 = 1_220_542;
const BT601_CUB: i32 = 2_116_026;
const BT601_CUG: i32 = -409_993;
const BT601_CVG: i32 = -852_492;
const BT601_CVR: i32 = 1_673_527;
const BT601_SHIFT: u32 = 20;
/// Rounding term added before the shift.
const BT601_HALF: i32 = 1 << (BT601_SHIFT - 1);
/// Video-range luma offset and chroma centre.
const LUMA_OFFSET: i32 = 16;
const CHROMA_CENTRE: i32 = 128;

/// Byte order of a packed 4:2:2 pixel pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Yuv422Layout {
    /// `U Y0 V Y1` (ROS `yuv422`).
    Uyvy,
    /// `Y0 U Y1 V` (ROS `yuv422_yuy2`).
    Yuyv,
}

/// Decodes PNG/JPEG bytes to RGB8 (alpha dropped, grey replicated, 16-bit scaled to 8).
pub fn decode_rgb8(bytes: &[u8]) -> Result<RgbImage> {
    let decoded = ::image::load_from_memory(bytes)
        .map_err(|e| PreprocessError::Decode(format!("{} bytes are not a supported image ({e})", bytes.len())))?;
    let rgb = decoded.to_rgb8();
    let (width, height) = rgb.dimensions();
    RgbImage::new(width, height, rgb.into_raw())
}

/// Converts tightly packed 4:2:2 rows (`width` even, `width * 2` bytes per row) to RGB8 exactly
/// as OpenCV does.
pub fn yuv422_to_rgb(width: u32, height: u32, layout: Yuv422Layout, packed: &[u8]) -> Result<RgbImage> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::Empty { width, height });
    }
    if !width.is_multiple_of(2) {
        return Err(PreprocessError::OddWidth {
            encoding: match layout {
                Yuv422Layout::Uyvy => "yuv422".into(),
                Yuv422Layout::Yuyv => "yuv422_yuy2".into(),
            },
            width,
        });
    }
    let expected = width as usize * height as usize * 2;
    if packed.len() != expected {
        return Err(PreprocessError::Invalid(format!(
            "packed 4:2:2 buffer of {} bytes for {width}x{height}, expected {expected}",
            packed.len()
        )));
    }
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for quad in packed.chunks_exact(4) {
        let (u, y0, v, y1) = match layout {
            Yuv422Layout::Uyvy => (quad[0], quad[1], quad[2], quad[3]),
            Yuv422Layout::Yuyv => (quad[1], quad[0], quad[3], quad[2]),
        };
        let (uu, vv) = (i32::from(u) - CHROMA_CENTRE, i32::from(v) - CHROMA_CENTRE);
        let ruv = BT601_HALF + BT601_CVR * vv;
        let guv = BT601_HALF + BT601_CVG * vv + BT601_CUG * uu;
        let buv = BT601_HALF + BT601_CUB * uu;
        for y in [y0, y1] {
            let yy = (i32::from(y) - LUMA_OFFSET).max(0) * BT601_CY;
            out.extend([ruv, guv, buv].map(|c| ((yy + c) >> BT601_SHIFT).clamp(0, 255) as u8));
        }
    }
    RgbImage::new(width, height, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutral_chroma_is_grey_and_layouts_agree() {
        let uyvy = [128u8, 16, 128, 235];
        let a = yuv422_to_rgb(2, 1, Yuv422Layout::Uyvy, &uyvy).unwrap();
        assert_eq!(a.pixel(0, 0), Some([0, 0, 0]));
        assert_eq!(a.pixel(1, 0), Some([255, 255, 255]));
        let yuyv = [16u8, 128, 235, 128];
        assert_eq!(yuv422_to_rgb(2, 1, Yuv422Layout::Yuyv, &yuyv).unwrap(), a);
        assert!(matches!(
            yuv422_to_rgb(3, 1, Yuv422Layout::Uyvy, &[0; 6]),
            Err(PreprocessError::OddWidth { .. })
        ));
        assert!(yuv422_to_rgb(2, 1, Yuv422Layout::Uyvy, &[0; 3]).is_err());
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(matches!(decode_rgb8(b"not an image"), Err(PreprocessError::Decode(_))));
    }
}
