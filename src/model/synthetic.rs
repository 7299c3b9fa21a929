//! Small random checkpoints in the official on-disk format, so demos, node tests and benchmarks
//! never need downloads. The directory looks like a released UniVLA checkpoint: `config.json`
//! (plus `vision_backbone_sizes`, which real checkpoints lack), bf16 `model.safetensors` with the
//! official keys, `preprocessor_config.json`, the tokenizer files (LLaMA-2 id layout with
//! `<PAD>` = 32000 and `<ACT_i>` = 32001 + i), `dataset_statistics.json`, and action decoder heads.
//!
//! Weights are N(0, 0.02²) with unit norms; like the golden fixture, the LM head rows of the 16
//! latent-action tokens are N(0, 2²) so a random model emits latent actions.
use std::path::Path;

use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::error::{ModelError, Result};
use super::heads::{ARM_ACTION_DIM, NAV_ACTION_DIM};
use super::prompt::{ACT_TOKEN_BASE, NUM_LATENT_CODES};

/// The timm ids real checkpoints name; small checkpoints carry explicit sizes beside them.
pub const DINO_TIMM_ID: &str = "vit_large_patch14_reg4_dinov2.lvd142m";
pub const SIGLIP_TIMM_ID: &str = "vit_so400m_patch14_siglip_224";
/// LLaMA-2 vocabulary (32000) + `<PAD>` + padding to a multiple of 64.
pub const PADDED_VOCAB: i64 = 32064;
const PATCH: i64 = 14;
const GRID: i64 = 16;
const REGISTERS: i64 = 4;
/// SigLIP-So400m's MLP ratio (4304 / 1152).
const SIGLIP_MLP_RATIO: f64 = 3.7362;
const WEIGHT_STD: f64 = 0.02;
/// LM layers of the `wide` preset unless `--llm-layers` says otherwise.
pub const WIDE_LLM_LAYERS: i64 = 2;
const ACT_ROW_STD: f64 = 2.0;

/// A ViT's size.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct VitSpec {
    pub embed_dim: i64,
    pub depth: i64,
    pub num_heads: i64,
}

/// Which action decoder head to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadVariant {
    /// Real-world arm head with proprio branch (`action_decoder.safetensors`).
    RealWorld,
    /// LIBERO / Bridge / CALVIN-style head with tanh (`action_decoder_libero.safetensors`).
    Libero,
    /// R2R navigation head (`action_decoder_r2r.safetensors`).
    R2r,
}

impl HeadVariant {
    pub fn file_name(self) -> &'static str {
        match self {
            HeadVariant::RealWorld => "action_decoder.safetensors",
            HeadVariant::Libero => "action_decoder_libero.safetensors",
            HeadVariant::R2r => "action_decoder_r2r.safetensors",
        }
    }

    fn name(self) -> &'static str {
        match self {
            HeadVariant::RealWorld => "deploy",
            HeadVariant::Libero => "libero",
            HeadVariant::R2r => "r2r",
        }
    }

    /// The reference's chunk length.
    pub fn default_window(self) -> i64 {
        match self {
            HeadVariant::RealWorld | HeadVariant::Libero => 12,
            HeadVariant::R2r => 4,
        }
    }
}

/// Sizes of a synthetic checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticSpec {
    pub dino: VitSpec,
    pub siglip: VitSpec,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub head_embed_dim: i64,
    pub head_num_heads: i64,
    /// Chunk length of every head written; `None`: each variant's reference window.
    pub head_window: Option<i64>,
    /// Action width of the arm heads (and of the real-world head's proprio and the statistics).
    pub arm_action_dim: i64,
    /// Whether the R2R head pools the visual embedding (the reference's `add_visual_embed`).
    pub r2r_visual_embed: bool,
}

impl SyntheticSpec {
    /// The golden fixture's sizes (≈ 4.5 M parameters).
    pub fn tiny() -> Self {
        Self {
            dino: VitSpec {
                embed_dim: 32,
                depth: 3,
                num_heads: 2,
            },
            siglip: VitSpec {
                embed_dim: 48,
                depth: 3,
                num_heads: 3,
            },
            hidden_size: 64,
            intermediate_size: 172,
            num_layers: 2,
            num_heads: 4,
            head_embed_dim: 64,
            head_num_heads: 4,
            head_window: None,
            arm_action_dim: ARM_ACTION_DIM,
            r2r_visual_embed: true,
        }
    }

    /// The benchmark reference size (≈ 66–75 M parameters): both ViTs 192 wide, depth 6, 3
    /// heads; LM 512 wide, FFN 1376, 8 layers, 8 heads; head 512 wide, 8 heads.
    pub fn small() -> Self {
        Self {
            dino: VitSpec {
                embed_dim: 192,
                depth: 6,
                num_heads: 3,
            },
            siglip: VitSpec {
                embed_dim: 192,
                depth: 6,
                num_heads: 3,
            },
            hidden_size: 512,
            intermediate_size: 1376,
            num_layers: 8,
            num_heads: 8,
            head_embed_dim: 512,
            head_num_heads: 8,
            head_window: None,
            arm_action_dim: ARM_ACTION_DIM,
            r2r_visual_embed: true,
        }
    }

    /// UniVLA-7B's sizes (≈ 7.5 B parameters, 15 GB in bf16): DINOv2 ViT-L/14 (1024 wide, 24
    /// blocks, 16 heads), SigLIP So400m/14 (1152 wide, 27 blocks, 16 heads), LLaMA-2 7B (4096
    /// wide, FFN 11008, 32 layers, 32 heads) and the released head (512 wide, 8 heads).
    pub fn univla_7b() -> Self {
        Self {
            dino: VitSpec {
                embed_dim: 1024,
                depth: 24,
                num_heads: 16,
            },
            siglip: VitSpec {
                embed_dim: 1152,
                depth: 27,
                num_heads: 16,
            },
            hidden_size: 4096,
            intermediate_size: 11008,
            num_layers: 32,
            num_heads: 32,
            head_embed_dim: 512,
            head_num_heads: 8,
            head_window: None,
            arm_action_dim: ARM_ACTION_DIM,
            r2r_visual_embed: true,
        }
    }

    /// Every tensor of UniVLA-7B at its released width (both vision towers whole, the projector
    /// 2176→8704→4096→4096, LLaMA-2-7B layers 4096 / 11008 / 32 heads, heads 4096 → 512 with 8
    /// heads) but only [`WIDE_LLM_LAYERS`] LM layers (≈ 1.47 B parameters, 2.9 GB in bf16): real
    /// widths on a CPU, for parity with the official code and load-memory measurements.
    pub fn wide() -> Self {
        Self {
            num_layers: WIDE_LLM_LAYERS,
            ..Self::univla_7b()
        }
    }

    /// `tiny`, `small`, `wide` or `7b`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self::tiny()),
            "small" => Some(Self::small()),
            "wide" => Some(Self::wide()),
            "7b" => Some(Self::univla_7b()),
            _ => None,
        }
    }

    /// The preset names [`Self::preset`] knows.
    pub const PRESETS: [&'static str; 4] = ["tiny", "small", "wide", "7b"];

    /// Every VLM tensor this spec writes, in file order, with its shape (nothing is drawn).
    pub fn vlm_shapes(&self) -> Vec<(String, Vec<i64>)> {
        vlm_layout(self)
            .entries
            .into_iter()
            .map(|(key, shape, _)| (key, shape))
            .collect()
    }

    /// Parameters of the VLM this spec writes.
    pub fn vlm_parameters(&self) -> i64 {
        vlm_layout(self)
            .entries
            .iter()
            .map(|(_, shape, _)| shape.iter().product::<i64>())
            .sum()
    }

    fn validate(&self) -> Result<()> {
        for (name, v) in [("dino", self.dino), ("siglip", self.siglip)] {
            if v.embed_dim <= 0 || v.depth < 2 || v.num_heads <= 0 || v.embed_dim % v.num_heads != 0 {
                return Err(ModelError::Config(format!(
                    "{name}: embed_dim must be a positive multiple of num_heads and depth ≥ 2"
                )));
            }
        }
        if self.num_layers < 1 || self.hidden_size < 1 || self.intermediate_size < 1 || self.num_heads < 1 {
            return Err(ModelError::Config(
                "the LM needs at least one layer, one head and positive widths".into(),
            ));
        }
        if self.hidden_size % self.num_heads != 0 || (self.hidden_size / self.num_heads) % 2 != 0 {
            return Err(ModelError::Config(
                "LM hidden size must split into even-sized heads".into(),
            ));
        }
        if self.head_num_heads <= 0 || self.head_embed_dim % self.head_num_heads != 0 {
            return Err(ModelError::Config(
                "head embed dim must be a positive multiple of its heads".into(),
            ));
        }
        // The arm gripper conventions need at least one value besides the gripper.
        if self.head_window.is_some_and(|w| w <= 0) || self.arm_action_dim < 2 {
            return Err(ModelError::Config(
                "head window must be positive and the arm action width at least 2".into(),
            ));
        }
        Ok(())
    }
}

/// How a tensor is filled.
#[derive(Clone, Copy)]
enum Fill {
    Normal(f64),
    Ones,
    Zeros,
    Const(f64),
}

struct Layout {
    entries: Vec<(String, Vec<i64>, Fill)>,
}

impl Layout {
    fn new() -> Self {
        Self { entries: Vec::new() }
    }

    fn add(&mut self, key: impl Into<String>, shape: &[i64], fill: Fill) {
        self.entries.push((key.into(), shape.to_vec(), fill));
    }

    fn linear(&mut self, prefix: &str, out: i64, inp: i64, bias: bool) {
        self.add(format!("{prefix}.weight"), &[out, inp], Fill::Normal(WEIGHT_STD));
        if bias {
            self.add(format!("{prefix}.bias"), &[out], Fill::Zeros);
        }
    }

    fn layer_norm(&mut self, prefix: &str, dim: i64) {
        self.add(format!("{prefix}.weight"), &[dim], Fill::Ones);
        self.add(format!("{prefix}.bias"), &[dim], Fill::Zeros);
    }

    fn vit(&mut self, prefix: &str, v: VitSpec, mlp: i64, dino: bool) {
        let d = v.embed_dim;
        if dino {
            self.add(format!("{prefix}.cls_token"), &[1, 1, d], Fill::Normal(WEIGHT_STD));
            self.add(
                format!("{prefix}.reg_token"),
                &[1, REGISTERS, d],
                Fill::Normal(WEIGHT_STD),
            );
        }
        self.add(
            format!("{prefix}.pos_embed"),
            &[1, GRID * GRID, d],
            Fill::Normal(WEIGHT_STD),
        );
        self.add(
            format!("{prefix}.patch_embed.proj.weight"),
            &[d, 3, PATCH, PATCH],
            Fill::Normal(WEIGHT_STD),
        );
        self.add(format!("{prefix}.patch_embed.proj.bias"), &[d], Fill::Zeros);
        for i in 0..v.depth {
            let b = format!("{prefix}.blocks.{i}");
            self.layer_norm(&format!("{b}.norm1"), d);
            self.linear(&format!("{b}.attn.qkv"), 3 * d, d, true);
            self.linear(&format!("{b}.attn.proj"), d, d, true);
            self.layer_norm(&format!("{b}.norm2"), d);
            self.linear(&format!("{b}.mlp.fc1"), mlp, d, true);
            self.linear(&format!("{b}.mlp.fc2"), d, mlp, true);
            if dino {
                self.add(format!("{b}.ls1.scale_factor"), &[d], Fill::Const(0.1));
                self.add(format!("{b}.ls2.scale_factor"), &[d], Fill::Const(0.1));
            }
        }
        self.layer_norm(&format!("{prefix}.norm"), d);
        if !dino {
            // SigLIP's unused MAP pooling head is part of released checkpoints.
            let p = format!("{prefix}.attn_pool");
            self.add(format!("{p}.latent"), &[1, 1, d], Fill::Normal(WEIGHT_STD));
            self.linear(&format!("{p}.q"), d, d, true);
            self.linear(&format!("{p}.kv"), 2 * d, d, true);
            self.linear(&format!("{p}.proj"), d, d, true);
            self.layer_norm(&format!("{p}.norm"), d);
            self.linear(&format!("{p}.mlp.fc1"), mlp, d, true);
            self.linear(&format!("{p}.mlp.fc2"), d, mlp, true);
        }
    }

    fn map_block(&mut self, prefix: &str, vis: i64, e: i64) {
        self.linear(&format!("{prefix}.projection"), e, vis, true);
        self.add(format!("{prefix}.latents"), &[1, e], Fill::Normal(1.0));
        self.add(format!("{prefix}.attn_norm.g"), &[e], Fill::Ones);
        self.linear(&format!("{prefix}.attn.q"), e, e, false);
        self.linear(&format!("{prefix}.attn.kv"), 2 * e, e, false);
        self.linear(&format!("{prefix}.attn.proj"), e, e, true);
        self.add(format!("{prefix}.mlp_norm.g"), &[e], Fill::Ones);
        self.linear(&format!("{prefix}.mlp.0.project"), 8 * e, e, true);
        self.linear(&format!("{prefix}.mlp.1"), e, 4 * e, true);
    }

    fn materialize(&self, kind: Kind) -> Vec<(String, Tensor)> {
        self.entries
            .iter()
            .map(|(k, shape, fill)| (k.clone(), make_tensor(shape, *fill, Device::Cpu).to_kind(kind)))
            .collect()
    }
}

/// One f32 tensor filled as asked, drawn from `device`'s generator.
fn make_tensor(shape: &[i64], fill: Fill, device: Device) -> Tensor {
    let opts = (Kind::Float, device);
    match fill {
        Fill::Normal(std) => {
            // In place: the same values as `randn * std` without a second copy of the tensor.
            let mut t = Tensor::randn(shape, opts);
            let _ = t.g_mul_scalar_(std);
            t
        }
        Fill::Ones => Tensor::ones(shape, opts),
        Fill::Zeros => Tensor::zeros(shape, opts),
        Fill::Const(c) => Tensor::full(shape, c, opts),
    }
}

fn siglip_mlp(d: i64) -> i64 {
    (d as f64 * SIGLIP_MLP_RATIO) as i64
}

/// Key of the LM head, whose latent-action rows are drawn wider.
const LM_HEAD_KEY: &str = "language_model.lm_head.weight";

/// The VLM's tensors in the official key layout.
fn vlm_layout(spec: &SyntheticSpec) -> Layout {
    let mut l = Layout::new();
    l.vit("vision_backbone.featurizer", spec.dino, 4 * spec.dino.embed_dim, true);
    l.vit(
        "vision_backbone.fused_featurizer",
        spec.siglip,
        siglip_mlp(spec.siglip.embed_dim),
        false,
    );
    let vision_dim = spec.dino.embed_dim + spec.siglip.embed_dim;
    let h = spec.hidden_size;
    l.linear("projector.fc1", 4 * vision_dim, vision_dim, true);
    l.linear("projector.fc2", h, 4 * vision_dim, true);
    l.linear("projector.fc3", h, h, true);
    l.add(
        "language_model.model.embed_tokens.weight",
        &[PADDED_VOCAB, h],
        Fill::Normal(WEIGHT_STD),
    );
    for i in 0..spec.num_layers {
        let p = format!("language_model.model.layers.{i}");
        for proj in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            l.linear(&format!("{p}.self_attn.{proj}"), h, h, false);
        }
        l.linear(&format!("{p}.mlp.gate_proj"), spec.intermediate_size, h, false);
        l.linear(&format!("{p}.mlp.up_proj"), spec.intermediate_size, h, false);
        l.linear(&format!("{p}.mlp.down_proj"), h, spec.intermediate_size, false);
        l.add(format!("{p}.input_layernorm.weight"), &[h], Fill::Ones);
        l.add(format!("{p}.post_attention_layernorm.weight"), &[h], Fill::Ones);
    }
    l.add("language_model.model.norm.weight", &[h], Fill::Ones);
    l.add(LM_HEAD_KEY, &[PADDED_VOCAB, h], Fill::Normal(WEIGHT_STD));
    l
}

/// Writes the VLM as bf16 safetensors, one tensor at a time: each is drawn on `device` (a GPU
/// draws a 7B checkpoint in seconds), cast to bf16 and appended, so memory stays at one tensor.
/// The generator is drawn in the same order as when every tensor was drawn first (the LM head,
/// whose latent-action rows are redrawn N(0, 2²), is the last entry).
fn write_vlm(path: &Path, spec: &SyntheticSpec, device: Device) -> Result<()> {
    use std::io::Write;
    let io = |source| ModelError::Io {
        path: path.into(),
        source,
    };
    let layout = vlm_layout(spec);
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0usize;
    for (key, shape, _) in &layout.entries {
        let bytes = shape.iter().product::<i64>() as usize * Kind::BFloat16.elt_size_in_bytes();
        header.insert(
            key.clone(),
            json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_string(&header).map_err(|e| ModelError::Invalid(e.to_string()))?;
    // safetensors pads the header with spaces to a multiple of 8 bytes.
    text.extend(std::iter::repeat_n(' ', (8 - text.len() % 8) % 8));
    let file = std::fs::File::create(path).map_err(io)?;
    let mut out = std::io::BufWriter::with_capacity(SAFETENSORS_WRITE_BUFFER, file);
    out.write_all(&(text.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(text.as_bytes()).map_err(io)?;
    for (key, shape, fill) in &layout.entries {
        let t = make_tensor(shape, *fill, device);
        if key == LM_HEAD_KEY {
            let rows = Tensor::randn([NUM_LATENT_CODES, spec.hidden_size], (Kind::Float, device)) * ACT_ROW_STD;
            t.narrow(0, ACT_TOKEN_BASE, NUM_LATENT_CODES).copy_(&rows);
        }
        let t = t.to_kind(Kind::BFloat16).to_device(Device::Cpu).contiguous();
        let len = t.numel() * Kind::BFloat16.elt_size_in_bytes();
        if len > 0 {
            // SAFETY: `t` is a contiguous CPU tensor of `len` bytes that lives past the write.
            let bytes = unsafe { std::slice::from_raw_parts(t.data_ptr() as *const u8, len) };
            out.write_all(bytes).map_err(io)?;
        }
    }
    out.flush().map_err(io)
}

/// Write buffer of the streamed safetensors file.
const SAFETENSORS_WRITE_BUFFER: usize = 1 << 24;

/// An action decoder head's tensors (f32) for hidden size `vis`, with the reference's action
/// widths and an R2R head that pools the visual embedding.
pub fn head_tensors(variant: HeadVariant, vis: i64, embed: i64, window: i64) -> Vec<(String, Tensor)> {
    head_tensors_shaped(variant, vis, embed, window, ARM_ACTION_DIM, true)
}

/// An action decoder head's tensors (f32): `window` steps of `arm_dim` values for the arm heads
/// (the real-world proprio is `arm_dim` wide too), 4 logits per step for R2R, whose visual pool
/// is left out unless `r2r_visual_embed` (the reference's `add_visual_embed=False`).
pub fn head_tensors_shaped(
    variant: HeadVariant,
    vis: i64,
    embed: i64,
    window: i64,
    arm_dim: i64,
    r2r_visual_embed: bool,
) -> Vec<(String, Tensor)> {
    head_layout(variant, vis, embed, window, arm_dim, r2r_visual_embed).materialize(Kind::Float)
}

fn head_layout(
    variant: HeadVariant,
    vis: i64,
    embed: i64,
    window: i64,
    arm_dim: i64,
    r2r_visual_embed: bool,
) -> Layout {
    let mut l = Layout::new();
    if variant != HeadVariant::R2r || r2r_visual_embed {
        l.map_block("visual_pool", vis, embed);
    }
    match variant {
        HeadVariant::RealWorld => {
            l.map_block("attn_pool", vis, embed);
            l.linear("proprio_proj.0", embed, arm_dim, true);
            l.linear("proprio_proj.2", embed, embed, true);
            l.linear("proj.0", arm_dim * window, 2 * embed, true);
        }
        HeadVariant::Libero => {
            l.map_block("latent_action_pool", vis, embed);
            l.linear("proj.0", arm_dim * window, embed, true);
        }
        HeadVariant::R2r => {
            l.map_block("attn_pool", vis, embed);
            let proj_in = if r2r_visual_embed { 2 * embed } else { embed };
            l.linear("proj", NAV_ACTION_DIM * window, proj_in, true);
        }
    }
    l
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ModelError::Invalid(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|source| ModelError::Io {
        path: path.into(),
        source,
    })
}

/// Writes tensors as safetensors with the `{"format": "pt"}` header metadata that
/// `save_pretrained` writes (transformers refuses files without it).
fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let err = |reason: String| ModelError::Format {
        path: path.into(),
        reason,
    };
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.contiguous();
        let dtype = match t.kind() {
            Kind::Float => safetensors::Dtype::F32,
            Kind::BFloat16 => safetensors::Dtype::BF16,
            Kind::Half => safetensors::Dtype::F16,
            other => return Err(err(format!("tensor `{name}` has unsupported kind {other:?}"))),
        };
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.copy_data_u8(&mut bytes, numel);
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        buffers.push((name.clone(), dtype, shape, bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| err(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = std::collections::HashMap::from([("format".to_owned(), "pt".to_owned())]);
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| err(e.to_string()))
}

/// The synthetic tokenizer files (LLaMA-2 id layout) shipped with the project.
const TOKENIZER_FILES: [(&str, &str); 5] = [
    (
        "tokenizer.json",
        include_str!("../../test/data/univla-tiny/checkpoint/tokenizer.json"),
    ),
    (
        "tokenizer_config.json",
        include_str!("../../test/data/univla-tiny/checkpoint/tokenizer_config.json"),
    ),
    (
        "special_tokens_map.json",
        include_str!("../../test/data/univla-tiny/checkpoint/special_tokens_map.json"),
    ),
    (
        "added_tokens.json",
        include_str!("../../test/data/univla-tiny/checkpoint/added_tokens.json"),
    ),
    (
        "generation_config.json",
        include_str!("../../test/data/univla-tiny/checkpoint/generation_config.json"),
    ),
];

fn config_json(spec: &SyntheticSpec, seed: i64) -> serde_json::Value {
    json!({
        "architectures": ["OpenVLAForActionPrediction"],
        "model_type": "openvla",
        "arch_specifier": "no-align+fused-gelu-mlp",
        "vision_backbone_id": "dinosiglip-vit-so-224px",
        "llm_backbone_id": "llama2-7b-pure",
        "hf_llm_id": "meta-llama/Llama-2-7b-hf",
        "image_resize_strategy": "resize-naive",
        "image_sizes": [224, 224],
        "timm_model_ids": [DINO_TIMM_ID, SIGLIP_TIMM_ID],
        "timm_override_act_layers": [null, null],
        "use_fused_vision_backbone": true,
        "vision_backbone_sizes": [spec.dino, spec.siglip],
        "llm_max_length": 2048,
        "pad_token_id": 32000,
        "pad_to_multiple_of": 64,
        "n_action_bins": 256,
        "output_projector_states": false,
        "torch_dtype": "bfloat16",
        "synthetic_seed": seed,
        "text_config": {
            "model_type": "llama",
            "hidden_size": spec.hidden_size,
            "intermediate_size": spec.intermediate_size,
            "num_hidden_layers": spec.num_layers,
            "num_attention_heads": spec.num_heads,
            "num_key_value_heads": spec.num_heads,
            "rms_norm_eps": 1e-6,
            "pad_token_id": 32000,
            "torch_dtype": "bfloat16",
            "vocab_size": PADDED_VOCAB,
        },
    })
}

fn preprocessor_json() -> serde_json::Value {
    // DINO mean/std as the released files store them (bf16-rounded ImageNet values).
    let dino = json!({"inplace": false, "mean": [0.484375, 0.455078125, 0.40625], "std": [0.228515625, 0.2236328125, 0.224609375]});
    let siglip = json!({"inplace": false, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]});
    let resize = json!({"antialias": true, "interpolation": 3, "max_size": null, "size": [224, 224]});
    json!({
        "image_processor_type": "PrismaticImageProcessor",
        "processor_class": "PrismaticProcessor",
        "image_resize_strategy": "resize-naive",
        "input_sizes": [[3, 224, 224], [3, 224, 224]],
        "interpolations": ["bicubic", "bicubic"],
        "means": [[0.485, 0.456, 0.406], [0.5, 0.5, 0.5]],
        "stds": [[0.229, 0.224, 0.225], [0.5, 0.5, 0.5]],
        "tvf_crop_params": [{"output_size": [224, 224]}, {"output_size": [224, 224]}],
        "tvf_do_letterbox": false,
        "tvf_letterbox_fill": null,
        "tvf_normalize_params": [dino, siglip],
        "tvf_resize_params": [resize.clone(), resize],
        "use_fused_vision_backbone": true,
    })
}

/// Plausible statistics for the dataset keys the presets use, for `dim`-wide arm actions whose
/// last value is the gripper (not normalised, as in the released files).
fn dataset_statistics_json(dim: usize) -> serde_json::Value {
    let arm = |scale: f64| {
        // Translation-like values first (up to three), rotation-like after, then the gripper.
        let per_dim = |trans: f64, rot: f64, grip: f64| -> Vec<f64> {
            (0..dim)
                .map(|i| match i {
                    _ if i + 1 == dim => grip,
                    0..=2 => trans,
                    _ => rot,
                })
                .collect()
        };
        let mask: Vec<bool> = (0..dim).map(|i| i + 1 != dim).collect();
        json!({
            "action": {
                "mean": per_dim(0.0, 0.0, 0.5),
                "std": per_dim(0.3 * scale, 0.1, 0.5),
                "min": per_dim(-scale, -0.375, 0.0),
                "max": per_dim(scale, 0.375, 1.0),
                "q01": per_dim(-0.9 * scale, -0.3, 0.0),
                "q99": per_dim(0.9 * scale, 0.3, 1.0),
                "mask": mask,
            },
            "proprio": {
                "mean": vec![0.0; dim], "std": vec![1.0; dim], "min": vec![-1.0; dim], "max": vec![1.0; dim], "q01": vec![-1.0; dim], "q99": vec![1.0; dim],
            },
            "num_transitions": 1000,
            "num_trajectories": 10,
        })
    };
    json!({"libero_10_no_noops": arm(0.9375), "bridge_oxe": arm(0.03), "real_world": arm(1.0)})
}

/// Real-world z-score statistics (the documented YAML/JSON equivalent of `dataset_stats.pkl`)
/// for `dim`-wide actions and proprio.
fn realworld_stats_json(dim: usize) -> serde_json::Value {
    let action_mean: Vec<f64> = (0..dim).map(|i| if i + 1 == dim { 0.5 } else { 0.0 }).collect();
    let action_std: Vec<f64> = (0..dim)
        .map(|i| match i {
            _ if i + 1 == dim => 0.5,
            0..=2 => 0.05,
            _ => 0.1,
        })
        .collect();
    json!({
        "action_mean": action_mean,
        "action_std": action_std,
        "qpos_mean": vec![0.0; dim],
        "qpos_std": vec![1.0; dim],
    })
}

/// Writes a synthetic checkpoint to `dir` (created if needed) with the given heads; returns the
/// head files written. Seeds libtorch's generator with `seed`.
pub fn write_checkpoint(
    dir: &Path,
    spec: &SyntheticSpec,
    heads: &[HeadVariant],
    seed: i64,
) -> Result<Vec<std::path::PathBuf>> {
    write_checkpoint_on(dir, spec, heads, seed, Device::Cpu)
}

/// As [`write_checkpoint`], drawing the VLM weights on `device` (CUDA: fast for the 7B preset;
/// other values than the CPU's for the same seed). Heads are always drawn on the CPU.
pub fn write_checkpoint_on(
    dir: &Path,
    spec: &SyntheticSpec,
    heads: &[HeadVariant],
    seed: i64,
    device: Device,
) -> Result<Vec<std::path::PathBuf>> {
    spec.validate()?;
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.into(),
        source,
    })?;
    tch::manual_seed(seed);
    tch::no_grad(|| write_vlm(&dir.join("model.safetensors"), spec, device))?;
    write_json(&dir.join("config.json"), &config_json(spec, seed))?;
    write_json(&dir.join("preprocessor_config.json"), &preprocessor_json())?;
    let arm_dim = spec.arm_action_dim as usize;
    write_json(&dir.join("dataset_statistics.json"), &dataset_statistics_json(arm_dim))?;
    write_json(&dir.join("realworld_stats.json"), &realworld_stats_json(arm_dim))?;
    for (name, text) in TOKENIZER_FILES {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| ModelError::Io { path, source })?;
    }
    let mut decoders = serde_json::Map::new();
    let mut written = Vec::new();
    for &variant in heads {
        let window = spec.head_window.unwrap_or_else(|| variant.default_window());
        let visual_embed = variant != HeadVariant::R2r || spec.r2r_visual_embed;
        let tensors = head_tensors_shaped(
            variant,
            spec.hidden_size,
            spec.head_embed_dim,
            window,
            spec.arm_action_dim,
            visual_embed,
        );
        let action_dim = match variant {
            HeadVariant::R2r => NAV_ACTION_DIM,
            HeadVariant::RealWorld | HeadVariant::Libero => spec.arm_action_dim,
        };
        let path = dir.join(variant.file_name());
        write_tensors(&path, &tensors)?;
        decoders.insert(
            variant.name().into(),
            json!({
                "safetensors_file": variant.file_name(),
                "window_size": window,
                "action_dim": action_dim,
                "add_visual_embed": visual_embed,
                "vis_dim": spec.hidden_size,
                "embed_dim": spec.head_embed_dim,
                "n_heads": spec.head_num_heads,
            }),
        );
        written.push(path);
    }
    write_json(
        &dir.join("action_decoder_config.json"),
        &json!({"note": "sizes of the synthetic heads; the official code hard-codes n_heads = 8", "decoders": decoders}),
    )?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_vlm_has_every_tensor_with_its_fill() {
        // Values are not compared with a second draw: other tests share libtorch's generator.
        let spec = SyntheticSpec::tiny();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        write_vlm(&path, &spec, Device::Cpu).unwrap();
        let back: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(&path).unwrap().into_iter().collect();
        let layout = vlm_layout(&spec);
        assert_eq!(back.len(), layout.entries.len());
        for (key, shape, fill) in &layout.entries {
            let t = &back[key];
            assert_eq!((t.size(), t.kind()), (shape.clone(), Kind::BFloat16), "{key}");
            let t = t.to_kind(Kind::Float);
            match *fill {
                Fill::Ones => assert!(t.eq(1.0).all().int64_value(&[]) == 1, "{key}"),
                Fill::Zeros => assert!(t.eq(0.0).all().int64_value(&[]) == 1, "{key}"),
                Fill::Const(c) => assert!((t.mean(Kind::Double).double_value(&[]) - c).abs() < 1e-3, "{key}"),
                Fill::Normal(_) => assert!(t.std(true).double_value(&[]) > 0.0, "{key}"),
            }
        }
        let head = back[LM_HEAD_KEY].to_kind(Kind::Float);
        let act = head
            .narrow(0, ACT_TOKEN_BASE, NUM_LATENT_CODES)
            .std(true)
            .double_value(&[]);
        let other = head.narrow(0, 0, ACT_TOKEN_BASE).std(true).double_value(&[]);
        assert!(act > 1.0 && other < 0.05, "ACT rows std {act}, others {other}");
        assert_hf_metadata(&path);
    }

    /// The safetensors header carries `format: pt`, as transformers requires.
    fn assert_hf_metadata(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            meta.metadata()
                .as_ref()
                .and_then(|m| m.get("format"))
                .map(String::as_str),
            Some("pt")
        );
    }

    #[test]
    fn the_7b_preset_has_univla_7b_sizes() {
        let spec = SyntheticSpec::preset("7b").unwrap();
        spec.validate().unwrap();
        let params: i64 = vlm_layout(&spec)
            .entries
            .iter()
            .map(|(_, shape, _)| shape.iter().product::<i64>())
            .sum();
        // LLaMA-2 7B (6.74 B with a 32064 vocabulary) + DINOv2-L + SigLIP-So400m + projector.
        assert!((7_400_000_000..7_700_000_000).contains(&params), "{params}");
    }

    #[test]
    fn the_wide_preset_has_released_widths_and_two_llm_layers() {
        let spec = SyntheticSpec::preset("wide").unwrap();
        spec.validate().unwrap();
        let shapes: std::collections::HashMap<String, Vec<i64>> = spec.vlm_shapes().into_iter().collect();
        let shape = |k: &str| shapes.get(k).cloned().unwrap_or_else(|| panic!("no `{k}`"));
        let count = |prefix: &str| {
            shapes
                .keys()
                .filter_map(|k| k.strip_prefix(prefix)?.split('.').next()?.parse::<i64>().ok())
                .max()
                .map_or(0, |m| m + 1)
        };
        // DINOv2 ViT-L/14 with 4 registers: 1024 wide, 24 blocks, MLP 4096.
        let dino = "vision_backbone.featurizer";
        assert_eq!(count(&format!("{dino}.blocks.")), 24);
        assert_eq!(shape(&format!("{dino}.reg_token")), [1, 4, 1024]);
        assert_eq!(shape(&format!("{dino}.patch_embed.proj.weight")), [1024, 3, 14, 14]);
        assert_eq!(shape(&format!("{dino}.blocks.23.attn.qkv.weight")), [3072, 1024]);
        assert_eq!(shape(&format!("{dino}.blocks.23.mlp.fc1.weight")), [4096, 1024]);
        // SigLIP So400m/14: 1152 wide, 27 blocks, MLP 4304.
        let siglip = "vision_backbone.fused_featurizer";
        assert_eq!(count(&format!("{siglip}.blocks.")), 27);
        assert_eq!(shape(&format!("{siglip}.pos_embed")), [1, 256, 1152]);
        assert_eq!(shape(&format!("{siglip}.blocks.26.mlp.fc1.weight")), [4304, 1152]);
        // Projector 2176 → 8704 → 4096 → 4096.
        assert_eq!(shape("projector.fc1.weight"), [8704, 2176]);
        assert_eq!(shape("projector.fc2.weight"), [4096, 8704]);
        assert_eq!(shape("projector.fc3.weight"), [4096, 4096]);
        // LLaMA-2-7B widths, two layers.
        assert_eq!(count("language_model.model.layers."), WIDE_LLM_LAYERS);
        let layer = "language_model.model.layers.1";
        assert_eq!(shape(&format!("{layer}.self_attn.q_proj.weight")), [4096, 4096]);
        assert_eq!(shape(&format!("{layer}.mlp.gate_proj.weight")), [11008, 4096]);
        assert_eq!(shape(&format!("{layer}.mlp.down_proj.weight")), [4096, 11008]);
        assert_eq!(shape("language_model.model.embed_tokens.weight"), [PADDED_VOCAB, 4096]);
        assert_eq!(shape(LM_HEAD_KEY), [PADDED_VOCAB, 4096]);
        assert_eq!(spec.num_heads, 32);
        let config = config_json(&spec, 0);
        assert_eq!(config["text_config"]["num_hidden_layers"], 2);
        assert_eq!(config["text_config"]["num_attention_heads"], 32);
        // 7B minus 30 LLaMA layers of 202 M parameters.
        let params = spec.vlm_parameters();
        assert_eq!(SyntheticSpec::univla_7b().vlm_parameters() - params, 30 * 202_383_360);
        assert!((1_400_000_000..1_550_000_000).contains(&params), "{params}");
        // The released heads read 4096-wide states into 512-wide MAP blocks with 8 heads.
        assert_eq!(
            (spec.hidden_size, spec.head_embed_dim, spec.head_num_heads),
            (4096, 512, 8)
        );
        let head: std::collections::HashMap<String, Vec<i64>> = head_layout(
            HeadVariant::RealWorld,
            spec.hidden_size,
            spec.head_embed_dim,
            12,
            ARM_ACTION_DIM,
            true,
        )
        .entries
        .into_iter()
        .map(|(k, s, _)| (k, s))
        .collect();
        assert_eq!(head["attn_pool.projection.weight"], [512, 4096]);
        assert_eq!(head["visual_pool.mlp.0.project.weight"], [4096, 512]);
        assert_eq!(head["proj.0.weight"], [84, 1024]);
    }

    #[test]
    fn written_files_carry_hf_metadata_and_reload_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let a = Tensor::arange(6, (Kind::Float, Device::Cpu))
            .view([2, 3])
            .to_kind(Kind::BFloat16);
        write_tensors(&path, &[("a.weight".into(), a.shallow_clone())]).unwrap();
        assert_hf_metadata(&path);
        let back = Tensor::read_safetensors(&path).unwrap();
        assert_eq!(back[0].0, "a.weight");
        assert!(back[0].1.equal(&a));
    }
}
