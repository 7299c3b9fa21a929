//! The stage-2 ("task-centric") latent action model, encoding side only (reference
//! `ControllableDINOLatentActionModel.vq_encode`): frames o_t, o_{t+k} → DINOv2 patch tokens →
//! per frame [4 task-centric queries, 4 task-irrelevant queries, patches] → causal
//! spatio-temporal encoder → frame-1 queries → codebook space → nearest code.
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::dino::Dinov2;
use super::encoder::SpatioTemporalEncoder;
use super::error::{LamError, Result};
use super::layers::linear;
use super::vq::Codebook;
use crate::model::vision::layers::Linear;
use crate::model::VarBuilder;

/// Side of the square frames the LAM takes.
pub const LAM_IMAGE_SIZE: i64 = 224;
/// ImageNet normalisation of the DINOv2 input (reference `dino_transform`).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];
/// Vocabulary id of `<ACT_0>` in the UniVLA tokenizer; `<ACT_i>` is this plus i.
pub const ACT_TOKEN_OFFSET: i64 = 32001;
/// Frames per clip: the reference hard-codes T = 2 (o_t, o_{t+k}).
const FRAMES: i64 = 2;

/// What the weights do not say.
#[derive(Clone, Debug)]
pub struct LamConfig {
    /// Attention heads of the spatio-temporal encoder (default: width/64, i.e. 12 at 768).
    pub encoder_heads: Option<i64>,
    /// Attention heads of DINOv2 (default: width/64, i.e. 12 for ViT-B).
    pub dino_heads: Option<i64>,
    /// Input side in pixels.
    pub image_size: i64,
}

impl Default for LamConfig {
    fn default() -> Self {
        Self {
            encoder_heads: None,
            dino_heads: None,
            image_size: LAM_IMAGE_SIZE,
        }
    }
}

/// Every intermediate of one `vq_encode` call (names follow the golden fixture).
pub struct LamOutput {
    /// [B, 2, P, D_dino]
    pub dino_patchtokens: Tensor,
    /// [B, 2, 2Q + P, model_dim]
    pub encoder_out: Tensor,
    /// [B, Q, latent_dim]
    pub z_action_pre_vq: Tensor,
    /// [B, Q, latent_dim]
    pub z_action_quantized: Tensor,
    /// [B, Q, latent_dim]
    pub z_uncontrol_pre_vq: Tensor,
    /// [B, Q, K]
    pub distances_action: Tensor,
    /// [B, Q, K_uncontrol]
    pub distances_uncontrol: Tensor,
    /// [B, Q] int64: the task-centric codes (the VLA's `<ACT_i>` targets).
    pub indices: Tensor,
    /// [B, Q] int64: the task-irrelevant codes (reported, not used by the VLA).
    pub indices_uncontrol: Tensor,
}

/// The latent action of one frame pair.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatentAction {
    /// Task-centric codes in query order.
    pub codes: Vec<i64>,
    /// Task-irrelevant codes in query order.
    pub uncontrol_codes: Vec<i64>,
    /// Smallest gap between the nearest and second-nearest task-centric code distance over the
    /// queries: how far the labels are from flipping.
    pub margin: f32,
}

impl LatentAction {
    /// `<ACT_i>` strings, concatenated in query order (the VLA's target text).
    pub fn tokens(&self) -> String {
        self.codes.iter().map(|c| format!("<ACT_{c}>")).collect()
    }

    /// Vocabulary ids of the `<ACT_i>` tokens.
    pub fn token_ids(&self) -> Vec<i64> {
        self.codes.iter().map(|c| ACT_TOKEN_OFFSET + c).collect()
    }
}

/// Stage-2 latent action model (encoder side; the reconstruction decoder is not loaded).
pub struct LatentActionModel {
    dino: Dinov2,
    latent_task: Tensor,
    latent_free: Tensor,
    encoder: SpatioTemporalEncoder,
    to_codebook: Linear,
    to_codebook_uncontrol: Linear,
    vq_action: Codebook,
    vq: Codebook,
    mean: Tensor,
    std: Tensor,
    device: Device,
}

impl LatentActionModel {
    /// Loads from `vb` positioned at the LAM's keys (`lam.` already stripped).
    pub fn load(vb: &VarBuilder, cfg: &LamConfig) -> Result<Self> {
        if !vb.contains("action_latent_controllable") {
            return Err(LamError::Config(format!(
                "no `{}`: not a stage-2 (task-centric) LAM checkpoint",
                vb.path("action_latent_controllable")
            )));
        }
        let dino = Dinov2::load(&vb.pp("dino_encoder"), cfg.dino_heads, cfg.image_size)?;
        let encoder = SpatioTemporalEncoder::load(&vb.pp("encoder"), cfg.encoder_heads)?;
        let query_shape = vb.require_shape("action_latent_controllable")?;
        if query_shape.len() != 4 || query_shape[3] != dino.dim() || query_shape[3] != encoder.in_dim() {
            return Err(LamError::Config(format!(
                "action_latent_controllable {query_shape:?} does not fit DINO width {} / encoder input {}",
                dino.dim(),
                encoder.in_dim()
            )));
        }
        let latent_task = vb.get(&query_shape, "action_latent_controllable")?;
        let latent_free = vb.get(&query_shape, "action_latent")?;
        let to_codebook = linear(&vb.pp("to_codebook"), true)?;
        let to_codebook_uncontrol = linear(&vb.pp("to_codebook_uncontrol"), true)?;
        let vq_action = Codebook::load(&vb.pp("vq_action"))?;
        let vq = Codebook::load(&vb.pp("vq"))?;
        if to_codebook.out_dim() != vq_action.dim() || to_codebook_uncontrol.out_dim() != vq.dim() {
            return Err(LamError::Config(
                "codebook widths do not match the to_codebook projections".into(),
            ));
        }
        let device = vb.device();
        let channel = |v: [f64; 3]| -> Result<Tensor> {
            Ok(Tensor::f_from_slice(&v.map(|x| x as f32))?
                .f_view([1, 3, 1, 1])?
                .f_to_device(device)?)
        };
        Ok(Self {
            mean: channel(IMAGENET_MEAN)?,
            std: channel(IMAGENET_STD)?,
            dino,
            latent_task,
            latent_free,
            encoder,
            to_codebook,
            to_codebook_uncontrol,
            vq_action,
            vq,
            device,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn dino(&self) -> &Dinov2 {
        &self.dino
    }

    /// Width of the spatio-temporal encoder (`lam_model_dim`).
    pub fn model_dim(&self) -> i64 {
        self.encoder.model_dim()
    }

    /// Blocks of the spatio-temporal encoder (`lam_enc_blocks`).
    pub fn encoder_depth(&self) -> usize {
        self.encoder.depth()
    }

    /// Width of the task-centric codebook vectors (`lam_latent_dim`).
    pub fn latent_dim(&self) -> i64 {
        self.vq_action.dim()
    }

    /// Latent queries per frame pair (4).
    pub fn num_codes(&self) -> usize {
        self.latent_task.size()[2] as usize
    }

    /// Size of the task-centric codebook (16).
    pub fn codebook_size(&self) -> usize {
        self.vq_action.num_codes() as usize
    }

    /// Size of the task-irrelevant codebook (16).
    pub fn uncontrol_codebook_size(&self) -> usize {
        self.vq.num_codes() as usize
    }

    /// DINOv2 patch tokens of frames [N, 3, S, S] (f32 RGB in [0, 1]) → [N, P, D].
    pub fn dino_features(&self, frames: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let x = frames.f_to_device(self.device)?.f_to_kind(Kind::Float)?;
        let x = x.f_sub(&self.mean)?.f_div(&self.std)?;
        self.dino.forward(&x)
    }

    /// The reference `vq_encode` on a clip [B, 2, 3, S, S] (f32 RGB in [0, 1]).
    pub fn vq_encode(&self, video: &Tensor) -> Result<LamOutput> {
        let size = video.size();
        if size.len() != 5 || size[1] != FRAMES {
            return Err(LamError::Input(format!(
                "LAM clip must be [B, 2, 3, H, W], got {size:?}"
            )));
        }
        let feats = self.dino_features(&video.f_flatten(0, 1)?)?;
        let feats = feats.f_view([size[0], FRAMES, self.dino.num_patches(), self.dino.dim()])?;
        self.encode_features(&feats.f_select(1, 0)?, &feats.f_select(1, 1)?)
    }

    /// The encoder and quantizers on DINO features of o_t and o_{t+k}, each [B, P, D]; lets a
    /// sequence labeler run DINO once per frame.
    pub fn encode_features(&self, feats_t: &Tensor, feats_tk: &Tensor) -> Result<LamOutput> {
        let _guard = tch::no_grad_guard();
        let dino_patchtokens = Tensor::f_stack(&[feats_t, feats_tk], 1)?.f_to_device(self.device)?;
        let b = dino_patchtokens.size()[0];
        let q = self.num_codes() as i64;
        let d = self.dino.dim();
        let task = self.latent_task.f_expand([b, FRAMES, q, d], false)?;
        let free = self.latent_free.f_expand([b, FRAMES, q, d], false)?;
        let tokens = Tensor::f_cat(&[task, free, dino_patchtokens.shallow_clone()], 2)?;
        let encoder_out = self.encoder.forward(&tokens)?;
        let last = encoder_out.f_select(1, FRAMES - 1)?;
        let z_action_pre_vq = self.to_codebook.forward(&last.f_narrow(1, 0, q)?)?;
        let z_uncontrol_pre_vq = self.to_codebook_uncontrol.forward(&last.f_narrow(1, q, q)?)?;
        let action = self.vq_action.quantize(&z_action_pre_vq)?;
        let uncontrol = self.vq.quantize(&z_uncontrol_pre_vq)?;
        Ok(LamOutput {
            dino_patchtokens,
            encoder_out,
            z_action_pre_vq,
            z_action_quantized: action.quantized,
            z_uncontrol_pre_vq,
            distances_action: action.distances,
            distances_uncontrol: uncontrol.distances,
            indices: action.indices,
            indices_uncontrol: uncontrol.indices,
        })
    }

    /// Latent actions of B frame pairs: `frames_t`, `frames_tk` are [B, 3, S, S] f32 in [0, 1].
    pub fn label(&self, frames_t: &Tensor, frames_tk: &Tensor) -> Result<Vec<LatentAction>> {
        let video = Tensor::f_stack(&[frames_t, frames_tk], 1)?;
        latent_actions(&self.vq_encode(&video)?)
    }
}

/// Per-pair labels out of a batch's [`LamOutput`].
pub fn latent_actions(out: &LamOutput) -> Result<Vec<LatentAction>> {
    let rows = |t: &Tensor| -> Result<Vec<Vec<i64>>> {
        let t = t.f_to_device(Device::Cpu)?;
        let (b, q) = (t.size()[0], t.size()[1]);
        let flat = Vec::<i64>::try_from(t.f_reshape([-1])?)?;
        Ok((0..b as usize)
            .map(|i| flat[i * q as usize..(i + 1) * q as usize].to_vec())
            .collect())
    };
    let codes = rows(&out.indices)?;
    let uncontrol = rows(&out.indices_uncontrol)?;
    // Two smallest distances per query → gap → minimum over queries.
    let (sorted, _) = out.distances_action.f_to_device(Device::Cpu)?.f_sort(-1, false)?;
    let gaps = sorted.f_narrow(-1, 1, 1)?.f_sub(&sorted.f_narrow(-1, 0, 1)?)?;
    let margins = Vec::<f32>::try_from(gaps.f_flatten(1, -1)?.f_amin([1], false)?.f_to_kind(Kind::Float)?)?;
    Ok(codes
        .into_iter()
        .zip(uncontrol)
        .zip(margins)
        .map(|((codes, uncontrol_codes), margin)| LatentAction {
            codes,
            uncontrol_codes,
            margin,
        })
        .collect())
}
