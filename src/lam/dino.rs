//! The LAM's frozen DINOv2 ViT-B/14 with registers, as far as `x_norm_patchtokens`: a thin
//! wrapper that configures the shared [`VisionTransformer`] from the weights it finds.
//!
//! Two checkpoint layouts are read:
//! * hub (released checkpoints): `cls_token`, `register_tokens`, `ls*.gamma`, `pos_embed`
//!   [1, 1+M², D] for an M×M grid (37 at 518 px) that is resampled with antialiased bicubic to the
//!   input grid, the CLS slot carrying its own position; `mask_token` is unused at inference.
//! * timm (the test fixture's stand-in, under `vit.`): `cls_token`, `reg_token`, `ls*.gamma`,
//!   `pos_embed` [1, G², D] for patches only.
//!
//! Width, depth, patch size, register count and LayerScale come from the weights, so the same
//! code loads ViT-B and the fixture's tiny stand-in.
use tch::Tensor;

use super::error::{LamError, Result};
use super::interp::resize_bicubic_aa;
use super::layers::{count_blocks, resolve_heads};
use crate::model::vision::{PosEmbedLayout, VisionTransformer, VitConfig, VitKeys, VitOptions, VitOutput, VitSize};
use crate::model::VarBuilder;

/// The hub model the released LAM freezes (`torch.hub.load(..., "dinov2_vitb14_reg")`).
const HUB_MODEL: &str = "dinov2_vitb14_reg";
/// Its timm counterpart, whose key layout the test fixture uses.
const TIMM_MODEL: &str = "vit_base_patch14_reg4_dinov2";

/// Which key layout the DINOv2 weights use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DinoLayout {
    /// facebookresearch/dinov2 hub module: keys directly under the encoder prefix.
    Hub,
    /// timm `vit_*_dinov2` model: keys under `vit.`.
    Timm,
}

impl DinoLayout {
    /// Detects the layout from the keys under `vb` (the `dino_encoder` prefix).
    pub fn detect(vb: &VarBuilder) -> Option<Self> {
        if vb.contains("vit.cls_token") {
            Some(Self::Timm)
        } else if vb.contains("cls_token") {
            Some(Self::Hub)
        } else {
            None
        }
    }
}

/// DINOv2 patch-token extractor for one input resolution.
#[derive(Debug)]
pub struct Dinov2 {
    layout: DinoLayout,
    vit: VisionTransformer,
}

/// Side of a square grid with `n` cells, if `n` is a perfect square.
fn square_side(n: i64) -> Option<i64> {
    let side = (n as f64).sqrt().round() as i64;
    (side.checked_mul(side) == Some(n)).then_some(side)
}

impl Dinov2 {
    /// Loads the encoder under `vb` (the `dino_encoder` prefix) for square `image_size` inputs;
    /// `heads` defaults to width/64 (12 for ViT-B).
    pub fn load(vb: &VarBuilder, heads: Option<i64>, image_size: i64) -> Result<Self> {
        let layout = DinoLayout::detect(vb).ok_or_else(|| {
            LamError::Config(format!(
                "no DINOv2 weights under `{}` (neither `cls_token` nor `vit.cls_token`)",
                vb.prefix()
            ))
        })?;
        let (vb, keys, family) = match layout {
            DinoLayout::Hub => (
                vb.clone(),
                VitKeys::dinov2_hub(),
                VitConfig::from_dinov2_hub(HUB_MODEL, image_size)?,
            ),
            DinoLayout::Timm => (
                vb.pp("vit"),
                VitKeys::timm(),
                VitConfig::from_timm_id(TIMM_MODEL, image_size)?,
            ),
        };
        let patch_shape = vb.require_shape("patch_embed.proj.weight")?;
        if patch_shape.len() != 4 || patch_shape[2] != patch_shape[3] {
            return Err(LamError::Config(format!(
                "unexpected patch embedding shape {patch_shape:?}"
            )));
        }
        let (dim, patch_size) = (patch_shape[0], patch_shape[2]);
        if patch_size <= 0 || dim <= 0 {
            return Err(LamError::Config(format!(
                "unexpected patch embedding shape {patch_shape:?}"
            )));
        }
        if image_size <= 0 || image_size % patch_size != 0 {
            return Err(LamError::Config(format!(
                "image size {image_size} is not a multiple of patch {patch_size}"
            )));
        }
        let depth = count_blocks(&vb.pp("blocks"), "norm1.weight");
        if depth == 0 {
            return Err(LamError::Config(format!(
                "no DINOv2 blocks under `{}`",
                vb.path("blocks")
            )));
        }
        let size = VitSize {
            embed_dim: dim,
            depth: depth as i64,
            num_heads: resolve_heads(dim, heads, "DINOv2")?,
        };
        let (pos_layout, pos_embed) = position_embedding(&vb, dim, image_size / patch_size)?;
        let cfg = VitConfig {
            patch_size,
            reg_tokens: vb
                .shape_of(&keys.reg_tokens)
                .map_or(0, |s| s.get(1).copied().unwrap_or(0)),
            layer_scale: vb.contains(&format!("blocks.0.ls1.{}", keys.layer_scale)),
            pos_embed: pos_layout,
            ..family.with_size(size)?
        };
        let opts = VitOptions {
            keys,
            output: VitOutput::FinalNormPatchTokens,
            pos_embed,
        };
        Ok(Self {
            layout,
            vit: VisionTransformer::new(vb, &cfg, opts)?,
        })
    }

    pub fn layout(&self) -> DinoLayout {
        self.layout
    }

    /// The configured shared ViT.
    pub fn vit(&self) -> &VisionTransformer {
        &self.vit
    }

    /// Feature width D.
    pub fn dim(&self) -> i64 {
        self.vit.embed_dim()
    }

    /// Patches per image (256 at 224 px).
    pub fn num_patches(&self) -> i64 {
        self.vit.config().num_patches()
    }

    /// The position embedding added to the patches, [1, G², D] (after any resampling).
    pub fn patch_pos_embed(&self) -> Result<Tensor> {
        let pos = self.vit.pos_embed();
        let patches = self.num_patches();
        Ok(pos.f_narrow(1, pos.size()[1] - patches, patches)?)
    }

    /// `x_norm_patchtokens` of ImageNet-normalised images [N, 3, S, S] → [N, G², D].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.vit.forward(x)?)
    }
}

/// How the stored `pos_embed` [1, rows, D] lines up (rows = M² or 1 + M²), and, when its M×M grid
/// is not the input's `grid`, the table with the grid resampled (CLS row kept as is).
fn position_embedding(vb: &VarBuilder, dim: i64, grid: i64) -> Result<(PosEmbedLayout, Option<Tensor>)> {
    let shape = vb.require_shape("pos_embed")?;
    if shape.len() != 3 || shape[0] != 1 || shape[2] != dim {
        return Err(LamError::Config(format!(
            "pos_embed {shape:?} is not [1, tokens, {dim}]"
        )));
    }
    let rows = shape[1];
    let (layout, side) = match (square_side(rows), square_side(rows - 1)) {
        (Some(side), _) => (PosEmbedLayout::PatchesOnly, side),
        (None, Some(side)) => (PosEmbedLayout::WithClassToken, side),
        _ => {
            return Err(LamError::Config(format!(
                "pos_embed {shape:?} is not a square grid (+ CLS)"
            )))
        }
    };
    if side == grid {
        return Ok((layout, None));
    }
    let pos = vb.get(&shape, "pos_embed")?;
    let cls_rows = rows - side * side;
    let resampled = resample_grid(&pos.f_narrow(1, cls_rows, side * side)?, side, grid)?;
    let table = Tensor::f_cat(&[pos.f_narrow(1, 0, cls_rows)?, resampled], 1)?;
    Ok((layout, Some(table)))
}

/// Brings a [1, M², D] position grid to [1, G², D] with antialiased bicubic.
fn resample_grid(pos: &Tensor, side: i64, grid: i64) -> Result<Tensor> {
    let dim = pos.size()[2];
    let image = pos.f_reshape([1, side, side, dim])?.f_permute([0, 3, 1, 2])?;
    let resized = resize_bicubic_aa(&image, grid as usize, grid as usize)?;
    Ok(resized.f_permute([0, 2, 3, 1])?.f_reshape([1, grid * grid, dim])?)
}
