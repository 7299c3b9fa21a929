//! Errors of image decoding, conversion and preprocessing.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid preprocessor config: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("cannot decode image: {0}")]
    Decode(String),
    #[error(
        "unsupported pixel encoding `{0}` (supported: rgb8, bgr8, rgba8, bgra8, mono8, yuv422/uyvy, yuv422_yuy2/yuyv)"
    )]
    UnsupportedEncoding(String),
    #[error("empty image ({width}x{height})")]
    Empty { width: u32, height: u32 },
    #[error("{encoding} image {width}x{height}: row step {step} is smaller than a row ({row_bytes} bytes)")]
    Step {
        encoding: String,
        width: u32,
        height: u32,
        step: usize,
        row_bytes: usize,
    },
    #[error(
        "{encoding} image {width}x{height} (step {step}): buffer holds {found} bytes, expected at least {expected}"
    )]
    BufferSize {
        encoding: String,
        width: u32,
        height: u32,
        step: usize,
        expected: usize,
        found: usize,
    },
    #[error("image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels (max_image_pixels)")]
    TooLarge { width: u32, height: u32, max_pixels: u64 },
    #[error("{encoding} image: width {width} must be even")]
    OddWidth { encoding: String, width: u32 },
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[cfg(feature = "opencv")]
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
    #[error("{0} needs OpenCV, and this build was made without the `opencv` feature")]
    NoOpenCv(&'static str),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T> = std::result::Result<T, PreprocessError>;
