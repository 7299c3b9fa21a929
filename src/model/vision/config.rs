//! Vision part of the HF `config.json` and the ViT architectures behind the timm model ids.
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::error::{ModelError, Result};

/// timm LayerNorm epsilon of every supported ViT.
pub const VIT_NORM_EPS: f64 = 1e-6;
/// Resolution Prismatic builds its backbones at when `image_sizes` is absent.
pub const DEFAULT_IMAGE_SIZE: i64 = 224;
/// Largest input side accepted from `config.json` (released: 224; larger sizes would only
/// allocate position tables no checkpoint has).
const MAX_IMAGE_SIZE: i64 = 4096;
/// SigLIP-So400m MLP ratio (timm: `mlp_ratio=3.7362`, hidden = int(1152·3.7362) = 4304).
const SO400M_MLP_RATIO: f64 = 3.7362;
const STANDARD_MLP_RATIO: f64 = 4.0;

/// Width, depth and heads of one ViT (`vision_backbone_sizes` entries of test checkpoints).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VitSize {
    pub embed_dim: i64,
    pub depth: i64,
    pub num_heads: i64,
}

/// The vision fields of an `OpenVLAConfig` `config.json`; every other field is ignored, so the
/// whole file parses (and the model config can `#[serde(flatten)]` this struct).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    #[serde(default)]
    pub vision_backbone_id: Option<String>,
    /// One timm id per backbone (DINOv2 first, SigLIP second for fused checkpoints).
    #[serde(default)]
    pub timm_model_ids: Vec<String>,
    /// Input resolution per backbone.
    #[serde(default)]
    pub image_sizes: Vec<i64>,
    /// Architecture overrides per backbone (present only in small test checkpoints).
    #[serde(default)]
    pub vision_backbone_sizes: Option<Vec<VitSize>>,
    #[serde(default)]
    pub use_fused_vision_backbone: Option<bool>,
}

/// How `pos_embed` lines up with the tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PosEmbedLayout {
    /// One row per patch, added before the prefix tokens are prepended (timm `no_embed_class`;
    /// DINOv2-reg4 and SigLIP).
    PatchesOnly,
    /// A first row for the class token, then one per patch; register tokens get none
    /// (facebookresearch/dinov2, timm DINOv2 without registers).
    WithClassToken,
}

/// Architecture of one timm-style ViT at a given input resolution.
#[derive(Clone, Debug, PartialEq)]
pub struct VitConfig {
    pub embed_dim: i64,
    pub depth: i64,
    pub num_heads: i64,
    /// MLP hidden = int(embed_dim · mlp_ratio) unless the weights say otherwise.
    pub mlp_ratio: f64,
    pub patch_size: i64,
    pub img_size: i64,
    pub class_token: bool,
    pub reg_tokens: i64,
    pub layer_scale: bool,
    pub pos_embed: PosEmbedLayout,
    pub norm_eps: f64,
}

/// Supported timm ids (pretrained tags such as `.lvd142m` are ignored).
pub const SUPPORTED_TIMM_IDS: &[&str] = &[
    "vit_small_patch14_dinov2",
    "vit_base_patch14_dinov2",
    "vit_large_patch14_dinov2",
    "vit_small_patch14_reg4_dinov2",
    "vit_base_patch14_reg4_dinov2",
    "vit_large_patch14_reg4_dinov2",
    "vit_so400m_patch14_siglip_224",
    "vit_so400m_patch14_siglip_384",
    "vit_base_patch16_siglip_224",
    "vit_base_patch16_siglip_256",
    "vit_base_patch16_siglip_384",
    "vit_base_patch16_siglip_512",
    "vit_large_patch16_siglip_256",
    "vit_large_patch16_siglip_384",
];

impl VitConfig {
    /// The architecture of a timm id, built at `img_size` (as Prismatic does).
    pub fn from_timm_id(id: &str, img_size: i64) -> Result<Self> {
        let base = id.split('.').next().unwrap_or(id);
        // timm gives register tokens no position rows.
        let dinov2 = |embed_dim, depth, num_heads, reg_tokens| {
            let layout = if reg_tokens > 0 {
                PosEmbedLayout::PatchesOnly
            } else {
                PosEmbedLayout::WithClassToken
            };
            Self::dinov2((embed_dim, depth, num_heads), reg_tokens, img_size, layout)
        };
        let siglip = |embed_dim, depth, num_heads, mlp_ratio, patch_size| Self {
            embed_dim,
            depth,
            num_heads,
            mlp_ratio,
            patch_size,
            img_size,
            class_token: false,
            reg_tokens: 0,
            layer_scale: false,
            pos_embed: PosEmbedLayout::PatchesOnly,
            norm_eps: VIT_NORM_EPS,
        };
        let cfg = match base {
            "vit_small_patch14_dinov2" => dinov2(384, 12, 6, 0),
            "vit_base_patch14_dinov2" => dinov2(768, 12, 12, 0),
            "vit_large_patch14_dinov2" => dinov2(1024, 24, 16, 0),
            "vit_small_patch14_reg4_dinov2" => dinov2(384, 12, 6, 4),
            "vit_base_patch14_reg4_dinov2" => dinov2(768, 12, 12, 4),
            "vit_large_patch14_reg4_dinov2" => dinov2(1024, 24, 16, 4),
            "vit_so400m_patch14_siglip_224" | "vit_so400m_patch14_siglip_384" => {
                siglip(1152, 27, 16, SO400M_MLP_RATIO, 14)
            }
            "vit_base_patch16_siglip_224"
            | "vit_base_patch16_siglip_256"
            | "vit_base_patch16_siglip_384"
            | "vit_base_patch16_siglip_512" => siglip(768, 12, 12, STANDARD_MLP_RATIO, 16),
            "vit_large_patch16_siglip_256" | "vit_large_patch16_siglip_384" => {
                siglip(1024, 24, 16, STANDARD_MLP_RATIO, 16)
            }
            _ => {
                return Err(ModelError::Config(format!(
                    "unknown timm vision backbone `{id}` (supported: {})",
                    SUPPORTED_TIMM_IDS.join(", ")
                )))
            }
        };
        cfg.validated()
    }

    /// A facebookresearch/dinov2 hub backbone (`dinov2_vit{s,b,l}14[_reg]`) at `img_size`: class
    /// token with its own position row, register tokens without one, LayerScale. The hub's
    /// 37×37 `pos_embed` must be resampled to the grid by the caller (see `VitOptions::pos_embed`).
    pub fn from_dinov2_hub(name: &str, img_size: i64) -> Result<Self> {
        let (base, reg_tokens) = match name.strip_suffix("_reg") {
            Some(base) => (base, 4),
            None => (name, 0),
        };
        let (embed_dim, depth, num_heads) = match base {
            "dinov2_vits14" => (384, 12, 6),
            "dinov2_vitb14" => (768, 12, 12),
            "dinov2_vitl14" => (1024, 24, 16),
            _ => {
                return Err(ModelError::Config(format!(
                    "unknown dinov2 hub model `{name}` (supported: dinov2_vit{{s,b,l}}14 and their _reg variants)"
                )))
            }
        };
        Self::dinov2(
            (embed_dim, depth, num_heads),
            reg_tokens,
            img_size,
            PosEmbedLayout::WithClassToken,
        )
        .validated()
    }

    /// A DINOv2 ViT-x/14 (class token, LayerScale) of `(width, depth, heads)`.
    fn dinov2(size: (i64, i64, i64), reg_tokens: i64, img_size: i64, pos_embed: PosEmbedLayout) -> Self {
        let (embed_dim, depth, num_heads) = size;
        Self {
            embed_dim,
            depth,
            num_heads,
            mlp_ratio: STANDARD_MLP_RATIO,
            patch_size: 14,
            img_size,
            class_token: true,
            reg_tokens,
            layer_scale: true,
            pos_embed,
            norm_eps: VIT_NORM_EPS,
        }
    }

    /// The same family with another width/depth/heads (test checkpoints).
    pub fn with_size(mut self, size: VitSize) -> Result<Self> {
        self.embed_dim = size.embed_dim;
        self.depth = size.depth;
        self.num_heads = size.num_heads;
        self.validated()
    }

    fn validated(self) -> Result<Self> {
        let bad = |what: String| Err(ModelError::Config(format!("vision transformer: {what}")));
        if self.embed_dim <= 0 || self.depth <= 0 || self.num_heads <= 0 || self.embed_dim % self.num_heads != 0 {
            return bad(format!(
                "embed_dim {} must be a positive multiple of num_heads {} (depth {})",
                self.embed_dim, self.num_heads, self.depth
            ));
        }
        if self.patch_size <= 0 || self.img_size < self.patch_size || self.img_size > MAX_IMAGE_SIZE {
            return bad(format!(
                "image size {} (image_sizes) must be between patch size {} and {MAX_IMAGE_SIZE}",
                self.img_size, self.patch_size
            ));
        }
        Ok(self)
    }

    /// Patches per side (the stride-p convolution drops a remainder, e.g. 384 px → 27 patches).
    pub fn grid(&self) -> i64 {
        self.img_size / self.patch_size
    }

    pub fn num_patches(&self) -> i64 {
        self.grid() * self.grid()
    }

    /// Class + register tokens in front of the patches.
    pub fn num_prefix_tokens(&self) -> i64 {
        i64::from(self.class_token) + self.reg_tokens
    }

    /// Rows of `pos_embed`.
    pub fn num_pos_embed(&self) -> i64 {
        match self.pos_embed {
            PosEmbedLayout::PatchesOnly => self.num_patches(),
            PosEmbedLayout::WithClassToken => self.num_patches() + 1,
        }
    }

    /// MLP hidden width from the ratio (timm `int(dim * mlp_ratio)`).
    pub fn mlp_hidden(&self) -> i64 {
        (self.embed_dim as f64 * self.mlp_ratio) as i64
    }
}

impl VisionConfig {
    /// Reads the vision fields of a `config.json`.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Whether two backbones' features are fused (explicit flag, else two timm ids).
    pub fn is_fused(&self) -> bool {
        self.use_fused_vision_backbone.unwrap_or(self.timm_model_ids.len() == 2)
    }

    /// The architecture of every backbone, in checkpoint order (featurizer, fused_featurizer).
    pub fn backbones(&self) -> Result<Vec<VitConfig>> {
        let expected = if self.is_fused() { 2 } else { 1 };
        if self.timm_model_ids.len() != expected {
            return Err(ModelError::Config(format!(
                "expected {expected} timm_model_ids (fused: {}), found {:?}",
                self.is_fused(),
                self.timm_model_ids
            )));
        }
        if let Some(sizes) = &self.vision_backbone_sizes {
            if sizes.len() != expected {
                return Err(ModelError::Config(format!(
                    "vision_backbone_sizes has {} entries for {expected} backbones",
                    sizes.len()
                )));
            }
        }
        self.timm_model_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let img_size = self.image_sizes.get(i).copied().unwrap_or(DEFAULT_IMAGE_SIZE);
                let cfg = VitConfig::from_timm_id(id, img_size)?;
                match self.vision_backbone_sizes.as_ref().and_then(|s| s.get(i)) {
                    Some(size) => cfg.with_size(*size),
                    None => Ok(cfg),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_backbones_match_the_spec() {
        let dino = VitConfig::from_timm_id("vit_large_patch14_reg4_dinov2.lvd142m", 224).unwrap();
        assert_eq!(
            (dino.embed_dim, dino.depth, dino.num_heads, dino.mlp_hidden()),
            (1024, 24, 16, 4096)
        );
        assert_eq!((dino.num_patches(), dino.num_prefix_tokens()), (256, 5));
        let siglip = VitConfig::from_timm_id("vit_so400m_patch14_siglip_224", 224).unwrap();
        assert_eq!(
            (siglip.embed_dim, siglip.depth, siglip.num_heads, siglip.mlp_hidden()),
            (1152, 27, 16, 4304)
        );
        assert_eq!((siglip.num_patches(), siglip.num_prefix_tokens()), (256, 0));
        let big = VitConfig::from_timm_id("vit_so400m_patch14_siglip_384", 384).unwrap();
        assert_eq!(big.num_patches(), 729);
    }

    #[test]
    fn dinov2_hub_models() {
        let b = VitConfig::from_dinov2_hub("dinov2_vitb14_reg", 224).unwrap();
        assert_eq!(
            (b.embed_dim, b.depth, b.num_heads, b.mlp_hidden(), b.reg_tokens),
            (768, 12, 12, 3072, 4)
        );
        assert_eq!(
            (b.pos_embed, b.num_pos_embed(), b.num_prefix_tokens()),
            (PosEmbedLayout::WithClassToken, 257, 5)
        );
        assert!(VitConfig::from_dinov2_hub("dinov2_vitg14", 224).is_err());
    }

    #[test]
    fn unknown_id_is_a_clear_error() {
        let err = VitConfig::from_timm_id("vit_huge_patch14_clip_224.laion2b", 224)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("vit_huge_patch14_clip_224.laion2b") && err.contains("supported"),
            "{err}"
        );
    }

    #[test]
    fn config_json_fields_parse_leniently() {
        let json = r#"{"timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
            "image_sizes": [224, 224], "use_fused_vision_backbone": true, "text_config": {"hidden_size": 64},
            "vision_backbone_sizes": [{"depth": 3, "embed_dim": 32, "num_heads": 2},
                                      {"depth": 3, "embed_dim": 48, "num_heads": 3}]}"#;
        let cfg: VisionConfig = serde_json::from_str(json).unwrap();
        let b = cfg.backbones().unwrap();
        assert_eq!((b[0].embed_dim, b[0].depth, b[0].reg_tokens), (32, 3, 4));
        assert_eq!((b[1].embed_dim, b[1].mlp_hidden()), (48, 179));
    }
}
