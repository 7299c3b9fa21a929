//! The LAM's frozen DINOv2 ViT-B/14 with registers, as far as `x_norm_patchtokens`.
//!
//! Two checkpoint layouts are read:
//! * hub (released checkpoints): `cls_token`, `register_tokens`, `pos_embed` [1, 1+M², D] for an
//!   M×M grid (37 at 518 px) that is resampled with antialiased bicubic to the input grid, the CLS
//!   slot carrying its own position; `mask_token` is unused at inference.
//! * timm (the test fixture's stand-in, under `vit.`): `cls_token`, `reg_token`, `pos_embed`
//!   [1, G², D] for patches only.
//!
//! Tokens are [cls, registers, patches + pos]; blocks are pre-LN with LayerScale; the final norm's
//! output without the prefix tokens is returned.
use tch::Tensor;

use super::error::{LamError, Result};
use super::interp::resize_bicubic_aa;
use super::layers::{attention, count_blocks, resolve_heads, LayerNorm, Linear};
use crate::model::VarBuilder;

/// LayerNorm epsilon of DINOv2 (hub and timm builds).
const LN_EPS: f64 = 1e-6;

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

struct DinoBlock {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ls1: Option<Tensor>,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    ls2: Option<Tensor>,
    heads: i64,
}

fn layer_scale(vb: &VarBuilder, dim: i64) -> Result<Option<Tensor>> {
    if vb.contains("gamma") {
        Ok(Some(vb.get(&[dim], "gamma")?))
    } else {
        Ok(None)
    }
}

impl DinoBlock {
    fn load(vb: &VarBuilder, dim: i64, heads: i64) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::load(&vb.pp("norm1"), LN_EPS)?,
            qkv: Linear::load(&vb.pp("attn").pp("qkv"), true)?,
            proj: Linear::load(&vb.pp("attn").pp("proj"), true)?,
            ls1: layer_scale(&vb.pp("ls1"), dim)?,
            norm2: LayerNorm::load(&vb.pp("norm2"), LN_EPS)?,
            fc1: Linear::load(&vb.pp("mlp").pp("fc1"), true)?,
            fc2: Linear::load(&vb.pp("mlp").pp("fc2"), true)?,
            ls2: layer_scale(&vb.pp("ls2"), dim)?,
            heads,
        })
    }

    fn scaled(x: Tensor, gamma: &Option<Tensor>) -> Result<Tensor> {
        Ok(match gamma {
            Some(g) => x.f_mul(g)?,
            None => x,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let qkv = self.qkv.forward(&self.norm1.forward(x)?)?;
        let parts = qkv.f_chunk(3, -1)?;
        let attn = self
            .proj
            .forward(&attention(&parts[0], &parts[1], &parts[2], self.heads, false)?)?;
        let x = x.f_add(&Self::scaled(attn, &self.ls1)?)?;
        let mlp = self
            .fc2
            .forward(&self.fc1.forward(&self.norm2.forward(&x)?)?.f_gelu("none")?)?;
        Ok(x.f_add(&Self::scaled(mlp, &self.ls2)?)?)
    }
}

/// DINOv2 patch-token extractor for one input resolution.
pub struct Dinov2 {
    layout: DinoLayout,
    patch_weight: Tensor,
    patch_bias: Tensor,
    cls_token: Tensor,
    cls_pos: Option<Tensor>,
    registers: Option<Tensor>,
    patch_pos: Tensor,
    blocks: Vec<DinoBlock>,
    norm: LayerNorm,
    patch_size: i64,
    image_size: i64,
}

/// Side of a square grid with `n` cells, if `n` is a perfect square.
fn square_side(n: i64) -> Option<i64> {
    let side = (n as f64).sqrt().round() as i64;
    (side * side == n).then_some(side)
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
        let (vb, registers_key) = match layout {
            DinoLayout::Hub => (vb.clone(), "register_tokens"),
            DinoLayout::Timm => (vb.pp("vit"), "reg_token"),
        };
        let patch_shape = vb.require_shape("patch_embed.proj.weight")?;
        if patch_shape.len() != 4 || patch_shape[2] != patch_shape[3] {
            return Err(LamError::Config(format!(
                "unexpected patch embedding shape {patch_shape:?}"
            )));
        }
        let (dim, patch_size) = (patch_shape[0], patch_shape[2]);
        if image_size % patch_size != 0 {
            return Err(LamError::Config(format!(
                "image size {image_size} is not a multiple of patch {patch_size}"
            )));
        }
        let grid = image_size / patch_size;
        let heads = resolve_heads(dim, heads, "DINOv2")?;
        let patch_weight = vb.get(&patch_shape, "patch_embed.proj.weight")?;
        let patch_bias = vb.get(&[dim], "patch_embed.proj.bias")?;
        let cls_token = vb.get(&[1, 1, dim], "cls_token")?;
        let registers = match vb.shape_of(registers_key) {
            Some(shape) => Some(vb.get(&shape, registers_key)?),
            None => None,
        };
        let pos_shape = vb.require_shape("pos_embed")?;
        if pos_shape.len() != 3 || pos_shape[0] != 1 || pos_shape[2] != dim {
            return Err(LamError::Config(format!(
                "pos_embed {pos_shape:?} is not [1, tokens, {dim}]"
            )));
        }
        let rows = pos_shape[1];
        let pos = vb.get(&pos_shape, "pos_embed")?;
        let (cls_pos, grid_pos) = match (square_side(rows), square_side(rows - 1)) {
            (Some(_), _) => (None, pos),
            (None, Some(_)) => (Some(pos.f_narrow(1, 0, 1)?), pos.f_narrow(1, 1, rows - 1)?),
            _ => {
                return Err(LamError::Config(format!(
                    "pos_embed {pos_shape:?} is not a square grid (+ CLS)"
                )))
            }
        };
        let patch_pos = resample_grid(&grid_pos, grid)?;
        let depth = count_blocks(&vb.pp("blocks"), "norm1.weight");
        if depth == 0 {
            return Err(LamError::Config(format!(
                "no DINOv2 blocks under `{}`",
                vb.path("blocks")
            )));
        }
        let blocks = (0..depth)
            .map(|i| DinoBlock::load(&vb.pp("blocks").pp(i), dim, heads))
            .collect::<Result<_>>()?;
        let norm = LayerNorm::load(&vb.pp("norm"), LN_EPS)?;
        Ok(Self {
            layout,
            patch_weight,
            patch_bias,
            cls_token,
            cls_pos,
            registers,
            patch_pos,
            blocks,
            norm,
            patch_size,
            image_size,
        })
    }

    pub fn layout(&self) -> DinoLayout {
        self.layout
    }

    /// Feature width D.
    pub fn dim(&self) -> i64 {
        self.cls_token.size()[2]
    }

    /// Patches per image (256 at 224 px).
    pub fn num_patches(&self) -> i64 {
        self.patch_pos.size()[1]
    }

    /// The position embedding added to the patches, [1, G², D] (after any resampling).
    pub fn patch_pos_embed(&self) -> &Tensor {
        &self.patch_pos
    }

    /// `x_norm_patchtokens` of ImageNet-normalised images [N, 3, S, S] → [N, G², D].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        if size.len() != 4 || size[2] != self.image_size || size[3] != self.image_size {
            return Err(LamError::Input(format!(
                "DINOv2 input must be [N, 3, {s}, {s}], got {size:?}",
                s = self.image_size
            )));
        }
        let n = size[0];
        let stride = [self.patch_size, self.patch_size];
        let patches = x.f_conv2d(&self.patch_weight, Some(&self.patch_bias), stride, [0, 0], [1, 1], 1)?;
        let patches = patches.f_flatten(2, 3)?.f_transpose(1, 2)?.f_add(&self.patch_pos)?;
        let mut cls = self.cls_token.f_expand([n, 1, self.dim()], false)?;
        if let Some(p) = &self.cls_pos {
            cls = cls.f_add(p)?;
        }
        let mut tokens = vec![cls];
        if let Some(r) = &self.registers {
            tokens.push(r.f_expand([n, r.size()[1], self.dim()], false)?);
        }
        let prefix = 1 + self.registers.as_ref().map_or(0, |r| r.size()[1]);
        tokens.push(patches);
        let mut h = Tensor::f_cat(&tokens, 1)?;
        for block in &self.blocks {
            h = block.forward(&h)?;
        }
        let h = self.norm.forward(&h)?;
        Ok(h.f_narrow(1, prefix, self.num_patches())?)
    }
}

/// Brings a [1, M², D] position grid to [1, G², D] with antialiased bicubic (identity if M = G).
fn resample_grid(pos: &Tensor, grid: i64) -> Result<Tensor> {
    let size = pos.size();
    let side = square_side(size[1]).ok_or_else(|| LamError::Config(format!("pos grid {size:?} is not square")))?;
    if side == grid {
        return Ok(pos.shallow_clone());
    }
    let dim = size[2];
    let image = pos.f_reshape([1, side, side, dim])?.f_permute([0, 3, 1, 2])?;
    let resized = resize_bicubic_aa(&image, grid as usize, grid as usize)?;
    Ok(resized.f_permute([0, 2, 3, 1])?.f_reshape([1, grid * grid, dim])?)
}
