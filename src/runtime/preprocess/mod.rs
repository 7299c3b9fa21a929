//! Camera image → `pixel_values`, exactly as the official `PrismaticImageProcessor` computes them
//! ("resize-naive": PIL bicubic resize to 224×224, centre crop, `/255`, per-backbone normalise;
//! DINOv2 channels 0–2, SigLIP 3–5), plus a fast OpenCV resize and the LIBERO/Bridge TF centre crop.
mod error;
pub mod header;
mod image;
pub mod pil_resize;
pub mod pure;
pub mod tf_crop;

use std::path::Path;

#[cfg(feature = "opencv")]
use opencv::core::{Mat, Size};
#[cfg(feature = "opencv")]
use opencv::imgproc;
use serde::Deserialize;
use tch::{Kind, Tensor};

pub use error::{PreprocessError, Result};
pub use header::DEFAULT_MAX_PIXELS;
pub use image::{PixelEncoding, RgbImage};
pub use tf_crop::{center_crop_and_resize, CENTER_CROP_AREA, CENTER_CROP_SIZE};

/// PIL's code for bicubic resampling (`tvf_resize_params[i].interpolation`).
const PIL_BICUBIC: i64 = 3;
/// Channels per backbone branch.
const RGB: usize = 3;
/// Largest resize or crop side accepted from `preprocessor_config.json` (released: 224, 384).
pub const MAX_IMAGE_SIDE: u32 = 4096;
/// `image_resize_strategy` values of the official processor (letterbox is refused separately).
const RESIZE_STRATEGIES: [&str; 3] = ["resize-naive", "resize-crop", "letterbox"];

/// How the uint8 image is resized to the backbone resolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResizeMethod {
    /// Bit-exact port of PIL's antialiased bicubic (what the official processor runs).
    #[default]
    PilBicubic,
    /// OpenCV `INTER_CUBIC` (a = −0.75, no antialiasing): faster, not bit-exact.
    OpenCvCubic,
    /// OpenCV `INTER_AREA` (box filter when shrinking): faster, not bit-exact.
    OpenCvArea,
}

/// Resizes with the given method (same size: a copy). Without the `opencv` feature only
/// [`ResizeMethod::PilBicubic`] is available; the OpenCV methods are an error.
#[cfg(not(feature = "opencv"))]
pub fn resize(img: &RgbImage, width: u32, height: u32, method: ResizeMethod) -> Result<RgbImage> {
    if (img.width(), img.height()) == (width, height) {
        return Ok(img.clone());
    }
    match method {
        ResizeMethod::PilBicubic => Ok(pil_resize::resize_bicubic(img, width, height)),
        ResizeMethod::OpenCvCubic => Err(PreprocessError::NoOpenCv("resize opencv-cubic")),
        ResizeMethod::OpenCvArea => Err(PreprocessError::NoOpenCv("resize opencv-area")),
    }
}

/// Resizes with the given method (same size: a copy).
#[cfg(feature = "opencv")]
pub fn resize(img: &RgbImage, width: u32, height: u32, method: ResizeMethod) -> Result<RgbImage> {
    if (img.width(), img.height()) == (width, height) {
        return Ok(img.clone());
    }
    let interpolation = match method {
        ResizeMethod::PilBicubic => return Ok(pil_resize::resize_bicubic(img, width, height)),
        ResizeMethod::OpenCvCubic => imgproc::INTER_CUBIC,
        ResizeMethod::OpenCvArea => imgproc::INTER_AREA,
    };
    let src = img.as_mat()?;
    let mut dst = Mat::default();
    imgproc::resize(
        &src,
        &mut dst,
        Size::new(width as i32, height as i32),
        0.0,
        0.0,
        interpolation,
    )?;
    RgbImage::from_rgb_mat(&dst)
}

/// Per-channel `(x − mean) / std` of one backbone branch, in f32 like torchvision's `Normalize`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// DINOv2 normalisation of released UniVLA checkpoints: ImageNet mean/std rounded to bf16 by the
/// conversion script (`tvf_normalize_params[0]`); prefer reading `preprocessor_config.json`.
#[allow(clippy::excessive_precision)] // exact bf16 values, written out in full
pub const UNIVLA_DINO_NORMALIZE: Normalize = Normalize {
    mean: [0.484375, 0.455078125, 0.40625],
    std: [0.228515625, 0.2236328125, 0.224609375],
};
/// SigLIP normalisation (`tvf_normalize_params[1]`).
pub const UNIVLA_SIGLIP_NORMALIZE: Normalize = Normalize {
    mean: [0.5; 3],
    std: [0.5; 3],
};
/// Input resolution of both UniVLA backbones.
pub const UNIVLA_IMAGE_SIZE: u32 = 224;

/// The resize step of the processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeTarget {
    /// Resize to exactly `width`×`height` ("resize-naive").
    Exact { width: u32, height: u32 },
    /// Resize the shorter side to this length, keeping the aspect ratio (torchvision `Resize(int)`).
    ShorterSide(u32),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    One(u32),
    Pair([u32; 2]),
}

#[derive(Deserialize)]
struct RawResize {
    size: RawSize,
    #[serde(default)]
    interpolation: Option<i64>,
}

#[derive(Deserialize)]
struct RawCrop {
    output_size: RawSize,
}

#[derive(Deserialize)]
struct RawNormalize {
    mean: Vec<f64>,
    std: Vec<f64>,
}

#[derive(Deserialize)]
struct RawProcessorConfig {
    #[serde(default)]
    image_resize_strategy: Option<String>,
    #[serde(default)]
    tvf_do_letterbox: bool,
    tvf_resize_params: Vec<RawResize>,
    tvf_crop_params: Vec<RawCrop>,
    tvf_normalize_params: Vec<RawNormalize>,
}

/// The HF `PrismaticImageProcessor` as configured by `preprocessor_config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageProcessor {
    resize: ResizeTarget,
    /// Centre-crop output (height, width).
    crop: (u32, u32),
    normalize: Vec<Normalize>,
    method: ResizeMethod,
}

impl ImageProcessor {
    /// Builds a processor from its parts (one `Normalize` per backbone branch).
    pub fn new(resize: ResizeTarget, crop: (u32, u32), normalize: Vec<Normalize>) -> Result<Self> {
        if normalize.is_empty() || crop.0 == 0 || crop.1 == 0 {
            return Err(PreprocessError::Invalid(
                "processor needs a crop size and at least one branch".into(),
            ));
        }
        if normalize
            .iter()
            .any(|n| n.std.iter().any(|&s| !(s > 0.0 && s.is_finite())) || n.mean.iter().any(|m| !m.is_finite()))
        {
            return Err(PreprocessError::Invalid(
                "normalisation std must be positive and finite, mean finite".into(),
            ));
        }
        Ok(Self {
            resize,
            crop,
            normalize,
            method: ResizeMethod::default(),
        })
    }

    /// The processor of released UniVLA checkpoints (resize-naive 224, DINOv2 + SigLIP branches),
    /// for when no `preprocessor_config.json` is at hand.
    pub fn univla_default() -> Self {
        let size = UNIVLA_IMAGE_SIZE;
        Self {
            resize: ResizeTarget::Exact {
                width: size,
                height: size,
            },
            crop: (size, size),
            normalize: vec![UNIVLA_DINO_NORMALIZE, UNIVLA_SIGLIP_NORMALIZE],
            method: ResizeMethod::default(),
        }
    }

    /// Reads `preprocessor_config.json` (the `tvf_*` fields are what the official code applies).
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PreprocessError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_config_str(&text, path)
    }

    /// Parses the JSON text of `preprocessor_config.json`; `path` names it in errors. Every field
    /// read is checked here, once, and errors name it: sizes positive and at most
    /// [`MAX_IMAGE_SIDE`], the resize covering the crop, three finite means and three positive
    /// finite stds per branch.
    pub fn from_config_str(json: &str, path: &Path) -> Result<Self> {
        let bad = |reason: String| PreprocessError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let raw: RawProcessorConfig = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        if let Some(strategy) = raw.image_resize_strategy.as_deref() {
            if !RESIZE_STRATEGIES.contains(&strategy) {
                return Err(bad(format!(
                    "image_resize_strategy `{strategy}` is not one of {}",
                    RESIZE_STRATEGIES.join(", ")
                )));
            }
        }
        if raw.tvf_do_letterbox || raw.image_resize_strategy.as_deref() == Some("letterbox") {
            return Err(bad("letterbox padding (tvf_do_letterbox) is not supported".into()));
        }
        let n = raw.tvf_normalize_params.len();
        if n == 0 || raw.tvf_resize_params.len() != n || raw.tvf_crop_params.len() != n {
            return Err(bad(format!(
                "need one tvf_resize_params / tvf_crop_params / tvf_normalize_params entry per backbone (got {}/{}/{})",
                raw.tvf_resize_params.len(),
                raw.tvf_crop_params.len(),
                n
            )));
        }
        let side = |v: u32, field: String| -> Result<u32> {
            if v == 0 || v > MAX_IMAGE_SIDE {
                return Err(bad(format!("{field} {v} must be between 1 and {MAX_IMAGE_SIDE}")));
            }
            Ok(v)
        };
        let resize_of = |i: usize, r: &RawResize| -> Result<ResizeTarget> {
            let field = format!("tvf_resize_params[{i}].size");
            Ok(match r.size {
                RawSize::One(s) => ResizeTarget::ShorterSide(side(s, field)?),
                RawSize::Pair([h, w]) => ResizeTarget::Exact {
                    width: side(w, field.clone())?,
                    height: side(h, field)?,
                },
            })
        };
        let crop_of = |i: usize, c: &RawCrop| -> Result<(u32, u32)> {
            let field = format!("tvf_crop_params[{i}].output_size");
            Ok(match c.output_size {
                RawSize::One(s) => (side(s, field.clone())?, side(s, field)?),
                RawSize::Pair([h, w]) => (side(h, field.clone())?, side(w, field)?),
            })
        };
        let resize = resize_of(0, &raw.tvf_resize_params[0])?;
        let crop = crop_of(0, &raw.tvf_crop_params[0])?;
        for (i, (r, c)) in raw.tvf_resize_params.iter().zip(&raw.tvf_crop_params).enumerate() {
            if resize_of(i, r)? != resize || crop_of(i, c)? != crop {
                return Err(bad(format!(
                    "tvf_resize_params[{i}] / tvf_crop_params[{i}] differ from entry 0: backbones with different input sizes are not supported"
                )));
            }
            if let Some(v) = r.interpolation.filter(|&v| v != PIL_BICUBIC) {
                return Err(bad(format!(
                    "tvf_resize_params[{i}].interpolation: only bicubic resizing (3) is supported, got {v}"
                )));
            }
        }
        let covers = match resize {
            ResizeTarget::Exact { width, height } => width >= crop.1 && height >= crop.0,
            ResizeTarget::ShorterSide(s) => s >= crop.0.max(crop.1),
        };
        if !covers {
            return Err(bad(format!(
                "tvf_resize_params[0].size {resize:?} is smaller than tvf_crop_params[0].output_size {crop:?} (height, width)"
            )));
        }
        let mut normalize = Vec::with_capacity(n);
        for (i, p) in raw.tvf_normalize_params.iter().enumerate() {
            let values = |v: &[f64], what: &str, positive: bool| -> Result<[f32; 3]> {
                let field = format!("tvf_normalize_params[{i}].{what}");
                let arr: [f64; 3] = v
                    .try_into()
                    .map_err(|_| bad(format!("{field} must hold 3 values, found {}", v.len())))?;
                let arr = arr.map(|x| x as f32);
                if arr.iter().any(|x| !x.is_finite() || (positive && *x <= 0.0)) {
                    let need = if positive { "positive finite" } else { "finite" };
                    return Err(bad(format!("{field} must be {need} (as f32), found {v:?}")));
                }
                Ok(arr)
            };
            normalize.push(Normalize {
                mean: values(&p.mean, "mean", false)?,
                std: values(&p.std, "std", true)?,
            });
        }
        Self::new(resize, crop, normalize).map_err(|e| bad(e.to_string()))
    }

    /// Selects the resize implementation (default: the exact PIL port).
    pub fn with_resize_method(mut self, method: ResizeMethod) -> Self {
        self.method = method;
        self
    }

    pub fn resize_method(&self) -> ResizeMethod {
        self.method
    }

    /// Channels of `pixel_values` (3 per backbone branch).
    pub fn num_channels(&self) -> usize {
        RGB * self.normalize.len()
    }

    /// Output (height, width).
    pub fn output_size(&self) -> (u32, u32) {
        self.crop
    }

    pub fn normalize_params(&self) -> &[Normalize] {
        &self.normalize
    }

    /// The uint8 stage: resize, then centre crop (a no-op for "resize-naive").
    pub fn prepare(&self, img: &RgbImage) -> Result<RgbImage> {
        let (w, h) = match self.resize {
            ResizeTarget::Exact { width, height } => (width, height),
            ResizeTarget::ShorterSide(s) => shorter_side_size(img.width(), img.height(), s),
        };
        let resized = resize(img, w, h, self.method)?;
        center_crop(&resized, self.crop.1, self.crop.0)
    }

    /// `pixel_values` of one image: f32 [1, 3·branches, H, W] on the CPU.
    pub fn pixel_values(&self, img: &RgbImage) -> Result<Tensor> {
        self.pixel_values_batch(std::slice::from_ref(img))
    }

    /// `pixel_values` of several images: f32 [B, 3·branches, H, W] on the CPU.
    pub fn pixel_values_batch(&self, imgs: &[RgbImage]) -> Result<Tensor> {
        let (h, w) = self.crop;
        let plane = h as usize * w as usize;
        let mut values = Vec::with_capacity(imgs.len() * self.num_channels() * plane);
        for img in imgs {
            let prepared = self.prepare(img)?;
            let raw = prepared.as_raw();
            for n in &self.normalize {
                for c in 0..RGB {
                    // to_tensor divides by 255 in f32; Normalize subtracts then divides, in f32.
                    values.extend(
                        raw.iter()
                            .skip(c)
                            .step_by(RGB)
                            .map(|&p| (f32::from(p) / 255.0 - n.mean[c]) / n.std[c]),
                    );
                }
            }
        }
        let shape = [
            imgs.len() as i64,
            self.num_channels() as i64,
            i64::from(h),
            i64::from(w),
        ];
        Ok(Tensor::f_from_slice(&values)?.f_view(shape)?.f_to_kind(Kind::Float)?)
    }
}

/// torchvision's `Resize(int)` output size: the shorter side becomes `size`, the longer side is
/// scaled and truncated.
fn shorter_side_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (u64::from(size) * u64::from(long) / u64::from(short.max(1))) as u32;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// torchvision's `center_crop` for images at least as large as the crop (offsets rounded
/// half-to-even); larger crops are an error since the official sizes never need padding.
fn center_crop(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    if (img.width(), img.height()) == (width, height) {
        return Ok(img.clone());
    }
    if img.width() < width || img.height() < height {
        return Err(PreprocessError::Invalid(format!(
            "cannot centre-crop a {}x{} image to {width}x{height}",
            img.width(),
            img.height()
        )));
    }
    let top = (f64::from(img.height() - height) / 2.0).round_ties_even() as usize;
    let left = (f64::from(img.width() - width) / 2.0).round_ties_even() as usize;
    let stride = img.width() as usize * RGB;
    let src = img.as_raw();
    let data = (top..top + height as usize)
        .flat_map(|y| &src[y * stride + left * RGB..y * stride + (left + width as usize) * RGB])
        .copied()
        .collect();
    Ok(RgbImage::from_parts(width, height, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn univla_default_has_two_branches() {
        let p = ImageProcessor::univla_default();
        assert_eq!((p.num_channels(), p.output_size()), (6, (224, 224)));
        // bf16 rounding of 0.485 / 0.229.
        assert_eq!(p.normalize_params()[0].mean[0], 0.484375);
        assert_eq!(f64::from(p.normalize_params()[0].std[0]), 117.0 / 512.0);
    }

    #[test]
    fn shorter_side_resize_keeps_aspect() {
        assert_eq!(shorter_side_size(640, 480, 224), (298, 224));
        assert_eq!(shorter_side_size(200, 300, 224), (224, 336));
    }

    #[test]
    fn center_crop_takes_the_middle() {
        let data: Vec<u8> = (0..4 * 2).flat_map(|i| [i as u8; 3]).collect();
        let img = RgbImage::new(4, 2, data).unwrap();
        let out = center_crop(&img, 2, 2).unwrap();
        assert_eq!(out.as_raw(), &[1, 1, 1, 2, 2, 2, 5, 5, 5, 6, 6, 6]);
    }
}
