//! Owned RGB8 images: decoding of PNG/JPEG files and conversion from raw camera buffers with a row
//! stride, named by their ROS `sensor_msgs/Image` encodings.
use std::path::Path;
use std::str::FromStr;

#[cfg(feature = "opencv")]
use opencv::core::{Mat, Vector, CV_8UC3};
#[cfg(feature = "opencv")]
use opencv::prelude::*;
#[cfg(feature = "opencv")]
use opencv::{imgcodecs, imgproc};

use super::error::{PreprocessError, Result};
use super::header::{self, DEFAULT_MAX_PIXELS};
#[cfg(not(feature = "opencv"))]
use super::pure;

/// Bytes per RGB pixel.
const RGB_CHANNELS: usize = 3;

/// A tightly packed, row-major RGB8 image (the `PIL.Image` of mode `RGB` the processor receives).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

/// Pixel layouts of raw camera buffers, by ROS `sensor_msgs/Image` encoding name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelEncoding {
    Rgb8,
    Bgr8,
    Rgba8,
    Bgra8,
    Mono8,
    /// 4:2:2 packed `U Y0 V Y1` (ROS `yuv422`, alias `uyvy`).
    Uyvy,
    /// 4:2:2 packed `Y0 U Y1 V` (ROS `yuv422_yuy2`, alias `yuyv`).
    Yuyv,
}

impl PixelEncoding {
    /// Parses a ROS encoding name (case-insensitive).
    pub fn from_ros(name: &str) -> Result<Self> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "rgb8" => Self::Rgb8,
            "bgr8" => Self::Bgr8,
            "rgba8" => Self::Rgba8,
            "bgra8" => Self::Bgra8,
            "mono8" | "8uc1" => Self::Mono8,
            "yuv422" | "uyvy" => Self::Uyvy,
            "yuv422_yuy2" | "yuyv" | "yuy2" => Self::Yuyv,
            _ => return Err(PreprocessError::UnsupportedEncoding(name.to_owned())),
        })
    }

    /// The canonical ROS name.
    pub fn ros_name(self) -> &'static str {
        match self {
            Self::Rgb8 => "rgb8",
            Self::Bgr8 => "bgr8",
            Self::Rgba8 => "rgba8",
            Self::Bgra8 => "bgra8",
            Self::Mono8 => "mono8",
            Self::Uyvy => "yuv422",
            Self::Yuyv => "yuv422_yuy2",
        }
    }

    /// Bytes one pixel occupies on average (4:2:2 formats pack two pixels in four bytes).
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Rgb8 | Self::Bgr8 => 3,
            Self::Rgba8 | Self::Bgra8 => 4,
            Self::Mono8 => 1,
            Self::Uyvy | Self::Yuyv => 2,
        }
    }
}

impl FromStr for PixelEncoding {
    type Err = PreprocessError;

    fn from_str(s: &str) -> Result<Self> {
        Self::from_ros(s)
    }
}

impl RgbImage {
    /// Wraps tightly packed RGB8 bytes; `data.len()` must be `width * height * 3`.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(PreprocessError::Empty { width, height });
        }
        let expected = width as usize * height as usize * RGB_CHANNELS;
        if data.len() != expected {
            return Err(PreprocessError::BufferSize {
                encoding: "rgb8".into(),
                width,
                height,
                step: width as usize * RGB_CHANNELS,
                expected,
                found: data.len(),
            });
        }
        Ok(Self { width, height, data })
    }

    /// Internal constructor for buffers whose length is correct by construction.
    pub(crate) fn from_parts(width: u32, height: u32, data: Vec<u8>) -> Self {
        debug_assert_eq!(data.len(), width as usize * height as usize * RGB_CHANNELS);
        Self { width, height, data }
    }

    /// An image filled with one colour.
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> Result<Self> {
        let data = rgb
            .iter()
            .copied()
            .cycle()
            .take(width as usize * height as usize * RGB_CHANNELS)
            .collect();
        Self::new(width, height, data)
    }

    /// Converts a raw camera buffer (ROS `sensor_msgs/Image`: `encoding`, `step` bytes per row,
    /// possibly padded) to RGB8. The buffer must hold `step * height` bytes (the padding after
    /// the last row may be missing). YUV 4:2:2 is converted with OpenCV, like `cv_bridge` (without
    /// the `opencv` feature: a bit-exact port of its conversion).
    pub fn from_raw(width: u32, height: u32, step: usize, encoding: PixelEncoding, data: &[u8]) -> Result<Self> {
        let name = || encoding.ros_name().to_owned();
        if width == 0 || height == 0 {
            return Err(PreprocessError::Empty { width, height });
        }
        let row_bytes = width as usize * encoding.bytes_per_pixel();
        if step < row_bytes {
            return Err(PreprocessError::Step {
                encoding: name(),
                width,
                height,
                step,
                row_bytes,
            });
        }
        let full = step * height as usize;
        let min = step * (height as usize - 1) + row_bytes;
        if data.len() < min || data.len() > full {
            return Err(PreprocessError::BufferSize {
                encoding: name(),
                width,
                height,
                step,
                expected: full,
                found: data.len(),
            });
        }
        let rows = (0..height as usize).map(|y| &data[y * step..y * step + row_bytes]);
        let mut out = Vec::with_capacity(width as usize * height as usize * RGB_CHANNELS);
        match encoding {
            PixelEncoding::Rgb8 => rows.for_each(|r| out.extend_from_slice(r)),
            PixelEncoding::Bgr8 => rows.for_each(|r| r.chunks_exact(3).for_each(|p| out.extend([p[2], p[1], p[0]]))),
            PixelEncoding::Rgba8 => rows.for_each(|r| r.chunks_exact(4).for_each(|p| out.extend([p[0], p[1], p[2]]))),
            PixelEncoding::Bgra8 => rows.for_each(|r| r.chunks_exact(4).for_each(|p| out.extend([p[2], p[1], p[0]]))),
            PixelEncoding::Mono8 => rows.for_each(|r| r.iter().for_each(|&g| out.extend([g, g, g]))),
            PixelEncoding::Uyvy | PixelEncoding::Yuyv => {
                if !width.is_multiple_of(2) {
                    return Err(PreprocessError::OddWidth {
                        encoding: name(),
                        width,
                    });
                }
                let packed: Vec<u8> = rows.flatten().copied().collect();
                return Self::from_yuv422(width, height, encoding == PixelEncoding::Uyvy, &packed);
            }
        }
        Self::new(width, height, out)
    }

    /// Tightly packed 4:2:2 (`uyvy`: `U Y0 V Y1`, else `Y0 U Y1 V`; `width` even) to RGB8 with
    /// OpenCV's `cvtColor`.
    #[cfg(feature = "opencv")]
    fn from_yuv422(width: u32, height: u32, uyvy: bool, packed: &[u8]) -> Result<Self> {
        let src = Mat::new_rows_cols_with_bytes::<opencv::core::Vec2b>(height as i32, width as i32, packed)?;
        let code = if uyvy {
            imgproc::COLOR_YUV2RGB_UYVY
        } else {
            imgproc::COLOR_YUV2RGB_YUYV
        };
        let mut rgb = Mat::default();
        imgproc::cvt_color(&src, &mut rgb, code, 0)?;
        Self::from_rgb_mat(&rgb)
    }

    /// Tightly packed 4:2:2 to RGB8 with the bit-exact port of OpenCV's conversion.
    #[cfg(not(feature = "opencv"))]
    fn from_yuv422(width: u32, height: u32, uyvy: bool, packed: &[u8]) -> Result<Self> {
        let layout = if uyvy {
            pure::Yuv422Layout::Uyvy
        } else {
            pure::Yuv422Layout::Yuyv
        };
        pure::yuv422_to_rgb(width, height, layout, packed)
    }

    /// Decodes PNG/JPEG bytes to RGB8, refusing images over [`DEFAULT_MAX_PIXELS`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        Self::decode_limited(bytes, DEFAULT_MAX_PIXELS)
    }

    /// Decodes PNG/JPEG bytes to RGB8 after checking the size their header declares against
    /// `max_pixels` (nothing is inflated for an image that is too large).
    pub fn decode_limited(bytes: &[u8], max_pixels: u64) -> Result<Self> {
        header::check_encoded(bytes, max_pixels)?;
        let img = Self::decode_checked(bytes)?;
        // A decoder that disagrees with the header must not slip past the limit.
        header::check_pixels(img.width, img.height, max_pixels)?;
        Ok(img)
    }

    /// Without the `opencv` feature: PNG and JPEG through the `image` crate.
    #[cfg(not(feature = "opencv"))]
    fn decode_checked(bytes: &[u8]) -> Result<Self> {
        pure::decode_rgb8(bytes)
    }

    /// With OpenCV's imgcodecs (as `cv_bridge` decodes compressed images).
    #[cfg(feature = "opencv")]
    fn decode_checked(bytes: &[u8]) -> Result<Self> {
        let buf = Vector::<u8>::from_slice(bytes);
        let bgr = imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR)?;
        if bgr.empty() {
            return Err(PreprocessError::Decode(format!(
                "{} bytes are not a supported image",
                bytes.len()
            )));
        }
        let mut rgb = Mat::default();
        imgproc::cvt_color(&bgr, &mut rgb, imgproc::COLOR_BGR2RGB, 0)?;
        Self::from_rgb_mat(&rgb)
    }

    /// Reads and decodes an image file (at most [`DEFAULT_MAX_PIXELS`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_limited(path, DEFAULT_MAX_PIXELS)
    }

    /// Reads and decodes an image file of at most `max_pixels` pixels.
    pub fn load_limited(path: impl AsRef<Path>, max_pixels: u64) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| PreprocessError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::decode_limited(&bytes, max_pixels).map_err(|e| match e {
            PreprocessError::Decode(reason) => PreprocessError::Decode(format!("{}: {reason}", path.display())),
            other => other,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The packed RGB bytes, row-major.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }

    pub fn into_raw(self) -> Vec<u8> {
        self.data
    }

    /// The pixel at column `x`, row `y` (None outside the image).
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * RGB_CHANNELS;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }

    /// The image turned by 180° (LIBERO renders upside down: `img[::-1, ::-1]`).
    pub fn rotate_180(&self) -> Self {
        let data = self.data.chunks_exact(RGB_CHANNELS).rev().flatten().copied().collect();
        Self {
            width: self.width,
            height: self.height,
            data,
        }
    }

    /// A borrowed OpenCV view (CV_8UC3, channel order unchanged).
    #[cfg(feature = "opencv")]
    pub(crate) fn as_mat(&self) -> Result<opencv::boxed_ref::BoxedRef<'_, Mat>> {
        Ok(Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(
            self.height as i32,
            self.width as i32,
            &self.data,
        )?)
    }

    /// Copies a CV_8UC3 matrix whose channels are already in RGB order.
    #[cfg(feature = "opencv")]
    pub(crate) fn from_rgb_mat(mat: &Mat) -> Result<Self> {
        if mat.typ() != CV_8UC3 {
            return Err(PreprocessError::Invalid(format!(
                "expected an 8-bit 3-channel matrix, got type {}",
                mat.typ()
            )));
        }
        let (width, height) = (mat.cols() as u32, mat.rows() as u32);
        let data = if mat.is_continuous() {
            mat.data_bytes()?.to_vec()
        } else {
            mat.try_clone()?.data_bytes()?.to_vec()
        };
        Self::new(width, height, data)
    }
}
