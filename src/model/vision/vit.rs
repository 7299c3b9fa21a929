//! A timm-style Vision Transformer (pre-norm blocks, optional LayerScale, class and register
//! tokens) returning patch tokens, either from the second-to-last block without the final norm
//! (Prismatic `get_intermediate_layers(n={depth-2})`) or after all blocks and the final norm
//! (DINOv2 `x_norm_patchtokens`, used by the latent action model).
use tch::{Device, Kind, Tensor};

use super::config::{PosEmbedLayout, VitConfig};
use super::layers::{gelu, LayerNorm, Linear};
use crate::model::error::{ModelError, Result};
use crate::model::weights::{Init, VarBuilder};

/// Checkpoint key names that differ between checkpoint flavours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VitKeys {
    /// Parameter of `ls1`/`ls2` (`scale_factor` in HF Prismatic, `gamma` in timm/dinov2).
    pub layer_scale: String,
    /// Register tokens (`reg_token` in timm, `register_tokens` in facebookresearch/dinov2).
    pub reg_tokens: String,
}

impl VitKeys {
    /// HF Prismatic/UniVLA checkpoints (`ls1.scale_factor`, `reg_token`).
    pub fn prismatic() -> Self {
        Self {
            layer_scale: "scale_factor".into(),
            reg_tokens: "reg_token".into(),
        }
    }

    /// timm checkpoints (`ls1.gamma`, `reg_token`).
    pub fn timm() -> Self {
        Self {
            layer_scale: "gamma".into(),
            reg_tokens: "reg_token".into(),
        }
    }

    /// facebookresearch/dinov2 hub checkpoints (`ls1.gamma`, `register_tokens`).
    pub fn dinov2_hub() -> Self {
        Self {
            layer_scale: "gamma".into(),
            reg_tokens: "register_tokens".into(),
        }
    }
}

impl Default for VitKeys {
    fn default() -> Self {
        Self::prismatic()
    }
}

/// Which tokens `forward` returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VitOutput {
    /// Output of block `depth − 2`, no final norm, prefix tokens dropped (Prismatic features;
    /// the last block is not run).
    #[default]
    SecondToLastBlock,
    /// All blocks, then the final `norm`, prefix tokens dropped (`x_norm_patchtokens`).
    FinalNormPatchTokens,
}

/// Construction options besides the architecture.
#[derive(Debug, Default)]
pub struct VitOptions {
    pub keys: VitKeys,
    pub output: VitOutput,
    /// A ready position embedding `[1, cfg.num_pos_embed(), D]` used instead of the checkpoint's
    /// `pos_embed` (e.g. DINOv2's 37×37 table resampled to the 16×16 grid by the caller).
    pub pos_embed: Option<Tensor>,
}

#[derive(Debug)]
struct Attention {
    qkv: Linear,
    proj: Linear,
    num_heads: i64,
}

impl Attention {
    fn new(vb: &VarBuilder, dim: i64, num_heads: i64) -> Result<Self> {
        Ok(Self {
            qkv: Linear::new(&vb.pp("qkv"), dim, 3 * dim)?,
            proj: Linear::new(&vb.pp("proj"), dim, dim)?,
            num_heads,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.size3()?;
        let qkv = self
            .qkv
            .forward(x)?
            .f_reshape([b, n, 3, self.num_heads, d / self.num_heads])?
            .f_permute([2, 0, 3, 1, 4])?;
        let (q, k, v) = (qkv.f_select(0, 0)?, qkv.f_select(0, 1)?, qkv.f_select(0, 2)?);
        let out = Tensor::f_scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false)?;
        self.proj.forward(&out.f_transpose(1, 2)?.f_reshape([b, n, d])?)
    }
}

#[derive(Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn new(vb: &VarBuilder, dim: i64, hidden: i64) -> Result<Self> {
        Ok(Self {
            fc1: Linear::new(&vb.pp("fc1"), dim, hidden)?,
            fc2: Linear::new(&vb.pp("fc2"), hidden, dim)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&gelu(&self.fc1.forward(x)?)?)
    }
}

#[derive(Debug)]
struct Block {
    norm1: LayerNorm,
    attn: Attention,
    ls1: Option<Tensor>,
    norm2: LayerNorm,
    mlp: Mlp,
    ls2: Option<Tensor>,
}

impl Block {
    fn new(vb: &VarBuilder, cfg: &VitConfig, mlp_hidden: i64, keys: &VitKeys) -> Result<Self> {
        let d = cfg.embed_dim;
        let layer_scale = |name: &str| -> Result<Option<Tensor>> {
            if cfg.layer_scale {
                Ok(Some(vb.pp(name).get_with_init(&[d], &keys.layer_scale, Init::Ones)?))
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            norm1: LayerNorm::new(&vb.pp("norm1"), d, cfg.norm_eps)?,
            attn: Attention::new(&vb.pp("attn"), d, cfg.num_heads)?,
            ls1: layer_scale("ls1")?,
            norm2: LayerNorm::new(&vb.pp("norm2"), d, cfg.norm_eps)?,
            mlp: Mlp::new(&vb.pp("mlp"), d, mlp_hidden)?,
            ls2: layer_scale("ls2")?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let scaled = |y: Tensor, ls: &Option<Tensor>| -> Result<Tensor> {
            Ok(match ls {
                Some(g) => y.f_mul(g)?,
                None => y,
            })
        };
        let x = x.f_add(&scaled(self.attn.forward(&self.norm1.forward(x)?)?, &self.ls1)?)?;
        Ok(x.f_add(&scaled(self.mlp.forward(&self.norm2.forward(&x)?)?, &self.ls2)?)?)
    }
}

/// A ViT that maps images `[B, 3, S, S]` to patch tokens `[B, (S/p)², D]`.
#[derive(Debug)]
pub struct VisionTransformer {
    cfg: VitConfig,
    output: VitOutput,
    patch_weight: Tensor,
    patch_bias: Tensor,
    cls_token: Option<Tensor>,
    reg_tokens: Option<Tensor>,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: Option<LayerNorm>,
    kind: Kind,
    device: Device,
}

impl VisionTransformer {
    /// Loads the ViT whose keys lie under `vb` (`patch_embed.proj.*`, `pos_embed`, `cls_token`,
    /// register tokens, `blocks.<i>.*`, and `norm.*` for the final-norm output). The MLP width is
    /// read from `blocks.0.mlp.fc1.weight` when stored, else from the config's ratio. Blocks not
    /// needed for the chosen output are not loaded.
    pub fn new(vb: VarBuilder, cfg: &VitConfig, opts: VitOptions) -> Result<Self> {
        let d = cfg.embed_dim;
        let p = cfg.patch_size;
        let n_blocks = match opts.output {
            VitOutput::SecondToLastBlock if cfg.depth < 2 => {
                return Err(ModelError::Config(format!(
                    "{}: second-to-last block output needs depth >= 2, got {}",
                    vb.prefix(),
                    cfg.depth
                )))
            }
            VitOutput::SecondToLastBlock => cfg.depth - 1,
            VitOutput::FinalNormPatchTokens => cfg.depth,
        };
        let mlp_hidden = match vb.shape_of("blocks.0.mlp.fc1.weight") {
            Some(shape) if shape.len() == 2 => shape[0],
            _ => cfg.mlp_hidden(),
        };
        let patch = vb.pp("patch_embed").pp("proj");
        let patch_weight = patch.get(&[d, 3, p, p], "weight")?;
        let patch_bias = patch.get_with_init(&[d], "bias", Init::Zeros)?;
        let cls_token = if cfg.class_token {
            Some(vb.get(&[1, 1, d], "cls_token")?)
        } else {
            None
        };
        let reg_tokens = if cfg.reg_tokens > 0 {
            Some(vb.get(&[1, cfg.reg_tokens, d], &opts.keys.reg_tokens)?)
        } else {
            None
        };
        let pos_shape = [1, cfg.num_pos_embed(), d];
        let pos_embed = match opts.pos_embed {
            Some(t) if t.size() == pos_shape => t.f_to_kind(vb.kind())?.f_to_device(vb.device())?,
            Some(t) => {
                return Err(ModelError::Shape {
                    file: "<caller-supplied pos_embed>".into(),
                    key: vb.path("pos_embed"),
                    expected: pos_shape.to_vec(),
                    found: t.size(),
                })
            }
            None => vb.get(&pos_shape, "pos_embed")?,
        };
        let blocks = (0..n_blocks)
            .map(|i| Block::new(&vb.pp("blocks").pp(i), cfg, mlp_hidden, &opts.keys))
            .collect::<Result<Vec<_>>>()?;
        let norm = match opts.output {
            VitOutput::FinalNormPatchTokens => Some(LayerNorm::new(&vb.pp("norm"), d, cfg.norm_eps)?),
            VitOutput::SecondToLastBlock => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            output: opts.output,
            patch_weight,
            patch_bias,
            cls_token,
            reg_tokens,
            pos_embed,
            blocks,
            norm,
            kind: vb.kind(),
            device: vb.device(),
        })
    }

    pub fn config(&self) -> &VitConfig {
        &self.cfg
    }

    pub fn embed_dim(&self) -> i64 {
        self.cfg.embed_dim
    }

    /// Patch tokens `[B, num_patches, D]` of images `[B, 3, S, S]` (converted to the weights'
    /// dtype and device first).
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = images.size4()?;
        let s = self.cfg.img_size;
        if c != 3 || h != s || w != s {
            return Err(ModelError::Invalid(format!(
                "ViT expects images [B, 3, {s}, {s}], got [{b}, {c}, {h}, {w}]"
            )));
        }
        let x = images.f_to_device(self.device)?.f_to_kind(self.kind)?;
        let p = self.cfg.patch_size;
        let x = x.f_conv2d(&self.patch_weight, Some(&self.patch_bias), [p, p], [0, 0], [1, 1], 1)?;
        let patches = x.f_flatten(2, -1)?.f_transpose(1, 2)?;
        let mut x = self.embed_tokens(&patches, b)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        if let Some(norm) = &self.norm {
            x = norm.forward(&x)?;
        }
        Ok(x.f_narrow(1, self.cfg.num_prefix_tokens(), self.cfg.num_patches())?)
    }

    /// Adds position embeddings and prepends class/register tokens: `[cls, reg…, patches]`.
    fn embed_tokens(&self, patches: &Tensor, batch: i64) -> Result<Tensor> {
        let d = self.cfg.embed_dim;
        let expand = |t: &Tensor| t.f_expand([batch, -1, d], false);
        let cls = self.cls_token.as_ref().map(expand).transpose()?;
        let reg = self.reg_tokens.as_ref().map(expand).transpose()?;
        let mut parts = Vec::with_capacity(3);
        match self.cfg.pos_embed {
            PosEmbedLayout::PatchesOnly => {
                parts.extend(cls);
                parts.extend(reg);
                parts.push(patches.f_add(&self.pos_embed)?);
            }
            PosEmbedLayout::WithClassToken => {
                let cls = cls
                    .ok_or_else(|| ModelError::Config("a class-token position embedding needs a class token".into()))?;
                let cls_pe = self.pos_embed.f_narrow(1, 0, 1)?;
                let patch_pe = self.pos_embed.f_narrow(1, 1, self.cfg.num_patches())?;
                parts.push(cls.f_add(&cls_pe)?);
                parts.extend(reg);
                parts.push(patches.f_add(&patch_pe)?);
            }
        }
        Ok(Tensor::f_cat(&parts, 1)?)
    }

    /// The position embedding in use, `[1, cfg.num_pos_embed(), D]`.
    pub fn pos_embed(&self) -> &Tensor {
        &self.pos_embed
    }

    /// Which output this instance computes.
    pub fn output(&self) -> VitOutput {
        self.output
    }
}
