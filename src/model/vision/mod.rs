//! The Prismatic vision backbone: DINOv2 (`featurizer`) and, when fused, SigLIP
//! (`fused_featurizer`) ViTs whose second-to-last-block patch features are concatenated.
pub mod config;
pub mod layers;
pub mod vit;

use tch::Tensor;

pub use config::{PosEmbedLayout, VisionConfig, VitConfig, VitSize};
pub use vit::{VisionTransformer, VitKeys, VitOptions, VitOutput};

use crate::model::error::{ModelError, Result};
use crate::model::weights::VarBuilder;

/// Input channels each backbone reads from `pixel_values`.
const CHANNELS_PER_BACKBONE: i64 = 3;

/// `PrismaticVisionBackbone`: `pixel_values [B, 3·n, S, S]` → patch features
/// `[B, num_patches, D_featurizer (+ D_fused_featurizer)]`.
#[derive(Debug)]
pub struct FusedVisionBackbone {
    featurizer: VisionTransformer,
    fused_featurizer: Option<VisionTransformer>,
}

impl FusedVisionBackbone {
    /// Loads `featurizer.*` (and `fused_featurizer.*`) under `vb` (the `vision_backbone` prefix).
    pub fn new(vb: VarBuilder, cfg: &VisionConfig) -> Result<Self> {
        let archs = cfg.backbones()?;
        let load = |name: &str, arch: &VitConfig| VisionTransformer::new(vb.pp(name), arch, VitOptions::default());
        let featurizer = load("featurizer", &archs[0])?;
        let fused_featurizer = archs.get(1).map(|arch| load("fused_featurizer", arch)).transpose()?;
        if let Some(f) = &fused_featurizer {
            if f.config().num_patches() != featurizer.config().num_patches() {
                return Err(ModelError::Config(format!(
                    "fused backbones disagree on the patch count ({} vs {})",
                    featurizer.config().num_patches(),
                    f.config().num_patches()
                )));
            }
        }
        Ok(Self {
            featurizer,
            fused_featurizer,
        })
    }

    /// Concatenated patch features `[B, num_patches, embed_dim()]`.
    pub fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let (first, second) = self.forward_parts(pixel_values)?;
        match second {
            Some(second) => Ok(Tensor::f_cat(&[first, second], 2)?),
            None => Ok(first),
        }
    }

    /// The features of each backbone separately (DINOv2, SigLIP).
    pub fn forward_parts(&self, pixel_values: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let channels = pixel_values.size().get(1).copied().unwrap_or(0);
        if channels != self.num_channels() {
            return Err(ModelError::Invalid(format!(
                "pixel_values must have {} channels, shape is {:?}",
                self.num_channels(),
                pixel_values.size()
            )));
        }
        let first = self
            .featurizer
            .forward(&pixel_values.f_narrow(1, 0, CHANNELS_PER_BACKBONE)?)?;
        let second = match &self.fused_featurizer {
            Some(f) => Some(f.forward(&pixel_values.f_narrow(1, CHANNELS_PER_BACKBONE, CHANNELS_PER_BACKBONE)?)?),
            None => None,
        };
        Ok((first, second))
    }

    /// Channels of `pixel_values` (3 per backbone).
    pub fn num_channels(&self) -> i64 {
        CHANNELS_PER_BACKBONE * (1 + i64::from(self.fused_featurizer.is_some()))
    }

    /// Feature width of the concatenated output.
    pub fn embed_dim(&self) -> i64 {
        self.featurizer.embed_dim() + self.fused_featurizer.as_ref().map_or(0, |f| f.embed_dim())
    }

    /// Patch tokens per image.
    pub fn num_patches(&self) -> i64 {
        self.featurizer.config().num_patches()
    }

    pub fn featurizer(&self) -> &VisionTransformer {
        &self.featurizer
    }

    pub fn fused_featurizer(&self) -> Option<&VisionTransformer> {
        self.fused_featurizer.as_ref()
    }
}
