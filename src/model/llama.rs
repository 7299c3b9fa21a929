//! LLaMA-2 decoder (transformers 4.40.1 `LlamaForCausalLM` semantics) with an explicit,
//! preallocated KV cache: one control step is one prefill plus three single-token decode steps.
//! A decode step also runs with its position held in a device tensor ([`Llama::forward_token_at`]):
//! the same kernels for every position, no host value, so CUDA graphs can replay it.
//! Module paths equal the checkpoint keys under `language_model.`.
use tch::{Device, Kind, Tensor};

use super::config::LlamaConfig;
use super::error::Result;
use super::weights::{Init, VarBuilder};

/// LLaMA RMSNorm: normalise in f32, cast back, then scale by the weight.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(vb: &VarBuilder, size: i64, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_init(&[size], "weight", Init::Ones)?,
            eps,
        })
    }

    /// `weight * (x_f32 * rsqrt(mean(x_f32²) + eps)).to(x.dtype)`, HF's order of operations; the
    /// f32 part is libtorch's `rms_norm` without weight (one fused kernel on CUDA).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let width = x.size().last().copied().unwrap_or(0);
        let normed = x
            .to_kind(Kind::Float)
            .rms_norm([width], None::<&Tensor>, self.eps)
            .to_kind(kind);
        &self.weight * normed
    }
}

/// A sequence capacity must be positive and within the positions the model was trained for.
fn check_capacity(cfg: &LlamaConfig, capacity: i64) -> Result<()> {
    if capacity <= 0 || capacity > cfg.max_position_embeddings {
        return Err(super::ModelError::Invalid(format!(
            "a sequence capacity of {capacity} positions is outside 1..={} (max_position_embeddings)",
            cfg.max_position_embeddings
        )));
    }
    Ok(())
}

/// Rotary position tables for every position up to the cache capacity, in the model dtype.
/// `sin` is stored with its first half negated, so that `rotate_half(x) * sin` is
/// `roll(x, half) * sin` (negation is exact: the same values as HF's formula, in fewer kernels).
#[derive(Debug)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Tables for positions `0..max_positions` (1 to `max_position_embeddings`) of a validated
    /// `cfg` (see [`LlamaConfig::validate`]).
    pub fn new(cfg: &LlamaConfig, max_positions: i64, kind: Kind, device: Device) -> Result<Self> {
        check_capacity(cfg, max_positions)?;
        let hd = cfg.head_dim();
        if hd <= 0 || hd % 2 != 0 {
            return Err(super::ModelError::Invalid(format!(
                "rotary tables need an even head dim, got {hd}"
            )));
        }
        let inv_freq = Tensor::f_arange_start_step(0, hd, 2, (Kind::Int64, device))?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(hd as f64)?
            .f_mul_scalar(cfg.rope_theta.ln())?
            .f_exp()?
            .f_reciprocal()?;
        let pos = Tensor::f_arange(max_positions, (Kind::Float, device))?;
        let freqs = pos.f_unsqueeze(1)?.f_mul(&inv_freq.f_unsqueeze(0)?)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        let sin = emb.f_sin()?.f_to_kind(kind)?;
        let half = hd / 2;
        Ok(Self {
            cos: emb.f_cos()?.f_to_kind(kind)?,
            sin: Tensor::f_cat(&[sin.f_narrow(1, 0, half)?.f_neg()?, sin.f_narrow(1, half, half)?], -1)?,
        })
    }

    /// Applies the rotation to `x` [B, H, T, hd] at positions `start..start+T`:
    /// `x * cos + rotate_half(x) * sin` with `rotate_half(x) = cat(-x₂, x₁)`.
    fn apply(&self, x: &Tensor, start: i64) -> Tensor {
        let t = x.size()[2];
        let cos = self.cos.narrow(0, start, t);
        let sin = self.sin.narrow(0, start, t);
        Self::rotate(x, &cos, &sin)
    }

    /// [`Rope::apply`] at positions read from the device: `pos` [T] int64 (rows gathered with
    /// `index_select`, the same values as a slice).
    fn apply_at(&self, x: &Tensor, pos: &Tensor) -> Tensor {
        Self::rotate(x, &self.cos.index_select(0, pos), &self.sin.index_select(0, pos))
    }

    /// One token per row: `x` [B, H, 1, hd], row `b` at position `pos[b]` (`pos` [B] int64).
    fn apply_rows(&self, x: &Tensor, pos: &Tensor) -> Tensor {
        let (b, hd) = (x.size()[0], x.size()[3]);
        let cos = self.cos.index_select(0, pos).view([b, 1, 1, hd]);
        let sin = self.sin.index_select(0, pos).view([b, 1, 1, hd]);
        Self::rotate(x, &cos, &sin)
    }

    fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let half = x.size()[3] / 2;
        x * cos + x.roll([half], [3]) * sin
    }
}

/// Where a forward pass's tokens sit in the sequence.
#[derive(Clone, Copy)]
enum Span<'a> {
    /// Positions `start..start+T`, known on the host; attention reads the cache up to the end.
    Host(i64),
    /// One token at the position held in `pos` [1] (int64, on the device); attention reads the
    /// whole cache under `mask` [1, 1, 1, capacity] (true up to and including `pos`).
    Device { pos: &'a Tensor, mask: &'a Tensor },
    /// A right-padded batch from position 0: every row at positions `0..T`; `mask` [B, 1, T, T]
    /// (bool) is causal and hides each row's padding keys.
    Padded { mask: &'a Tensor },
    /// One token per row, row `b` at position `pos[b]` (`pos` [B] int64); attention reads the
    /// first `len` cache positions under `mask` [B, 1, 1, len] (true up to the row's position).
    Rows {
        pos: &'a Tensor,
        mask: &'a Tensor,
        len: i64,
    },
}

/// Per-layer key/value tensors of capacity `capacity` positions, filled up to `len`.
/// Allocated once; `reset` only rewinds the length.
#[derive(Debug)]
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: i64,
    capacity: i64,
}

impl KvCache {
    /// A cache of `capacity` positions (1 to `max_position_embeddings`) for a validated `cfg`.
    pub fn new(cfg: &LlamaConfig, capacity: i64, kind: Kind, device: Device) -> Result<Self> {
        Self::with_rows(cfg, 1, capacity, kind, device)
    }

    /// A cache for batches of up to `rows` sequences (the batched forward passes use the first
    /// B rows).
    pub fn with_rows(cfg: &LlamaConfig, rows: i64, capacity: i64, kind: Kind, device: Device) -> Result<Self> {
        check_capacity(cfg, capacity)?;
        if rows < 1 {
            return Err(super::ModelError::Invalid(format!(
                "a KV cache needs at least one row, got {rows}"
            )));
        }
        let shape = [rows, cfg.kv_heads(), capacity, cfg.head_dim()];
        let make = || {
            (0..cfg.num_hidden_layers)
                .map(|_| Tensor::f_zeros(shape, (kind, device)))
                .collect::<std::result::Result<Vec<_>, _>>()
        };
        Ok(Self {
            keys: make()?,
            values: make()?,
            len: 0,
            capacity,
        })
    }

    pub fn reset(&mut self) {
        self.len = 0;
    }

    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    /// How many sequences the cache holds side by side.
    pub fn rows(&self) -> i64 {
        self.keys.first().map_or(0, |k| k.size()[0])
    }

    /// Counts `n` positions written by device-position steps, which leave the length alone.
    pub fn advance(&mut self, n: i64) {
        self.len = (self.len + n).min(self.capacity);
    }
}

/// Self-attention with the q/k/v projections fused into one matmul (`[q; k; v]` rows, the same
/// dot products as three matmuls, one launch instead of three).
#[derive(Debug)]
struct Attention {
    qkv_proj: Tensor,
    o_proj: Tensor,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn new(vb: &VarBuilder, cfg: &LlamaConfig) -> Result<Self> {
        let (h, hd, kvh) = (cfg.hidden_size, cfg.head_dim(), cfg.kv_heads());
        Ok(Self {
            qkv_proj: vb.get_rows(&[
                ("q_proj.weight", &[cfg.num_attention_heads * hd, h]),
                ("k_proj.weight", &[kvh * hd, h]),
                ("v_proj.weight", &[kvh * hd, h]),
            ])?,
            o_proj: vb.pp("o_proj").get(&[h, cfg.num_attention_heads * hd], "weight")?,
            heads: cfg.num_attention_heads,
            kv_heads: kvh,
            head_dim: hd,
        })
    }

    /// `x` [1, T, H] at the positions `span` names; writes K/V into `layer` of the cache.
    fn forward(&self, x: &Tensor, rope: &Rope, cache: &mut KvCache, layer: usize, span: Span) -> Tensor {
        let (b, t) = (x.size()[0], x.size()[1]);
        let (q_width, kv_width) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let qkv = x.linear::<&Tensor>(&self.qkv_proj, None);
        let heads_of = |from: i64, n: i64| {
            qkv.narrow(2, from, n * self.head_dim)
                .view([b, t, n, self.head_dim])
                .transpose(1, 2)
        };
        let rotate = |x: &Tensor| match span {
            Span::Host(start) => rope.apply(x, start),
            Span::Device { pos, .. } => rope.apply_at(x, pos),
            Span::Padded { .. } => rope.apply(x, 0),
            Span::Rows { pos, .. } => rope.apply_rows(x, pos),
        };
        let (q, k) = if self.kv_heads == self.heads {
            // One rotation over q and k together: [B, 2·heads, T, hd].
            let qk = rotate(&heads_of(0, 2 * self.heads));
            (qk.narrow(1, 0, self.heads), qk.narrow(1, self.heads, self.heads))
        } else {
            (
                rotate(&heads_of(0, self.heads)),
                rotate(&heads_of(q_width, self.kv_heads)),
            )
        };
        let v = heads_of(q_width + kv_width, self.kv_heads);
        let (mut keys, mut values, mask) = match span {
            Span::Host(start) => {
                cache.keys[layer].narrow(2, start, t).copy_(&k);
                cache.values[layer].narrow(2, start, t).copy_(&v);
                let end = start + t;
                (
                    cache.keys[layer].narrow(2, 0, end),
                    cache.values[layer].narrow(2, 0, end),
                    None,
                )
            }
            Span::Device { pos, mask } => {
                let _ = cache.keys[layer].index_copy_(2, pos, &k);
                let _ = cache.values[layer].index_copy_(2, pos, &v);
                (
                    cache.keys[layer].shallow_clone(),
                    cache.values[layer].shallow_clone(),
                    Some(mask),
                )
            }
            Span::Padded { mask } => {
                let (keys, values) = (cache.keys[layer].narrow(0, 0, b), cache.values[layer].narrow(0, 0, b));
                keys.narrow(2, 0, t).copy_(&k);
                values.narrow(2, 0, t).copy_(&v);
                (keys.narrow(2, 0, t), values.narrow(2, 0, t), Some(mask))
            }
            Span::Rows { pos, mask, len } => {
                let (mut keys, mut values) = (cache.keys[layer].narrow(0, 0, b), cache.values[layer].narrow(0, 0, b));
                let index = pos
                    .view([b, 1, 1, 1])
                    .expand([b, self.kv_heads, 1, self.head_dim], false);
                let _ = keys.scatter_(2, &index, &k);
                let _ = values.scatter_(2, &index, &v);
                (keys.narrow(2, 0, len), values.narrow(2, 0, len), Some(mask))
            }
        };
        if self.kv_heads != self.heads {
            let rep = self.heads / self.kv_heads;
            keys = keys.repeat_interleave_self_int(rep, 1, None);
            values = values.repeat_interleave_self_int(rep, 1, None);
        }
        // A prefill from position 0 is plain causal attention; a single new token sees all
        // (with a device position: all the mask lets through).
        let causal = t > 1 && mask.is_none();
        let y = Tensor::scaled_dot_product_attention(&q, &keys, &values, mask, 0.0, causal, None, false);
        y.transpose(1, 2)
            .contiguous()
            .view([b, t, self.heads * self.head_dim])
            .linear::<&Tensor>(&self.o_proj, None)
    }
}

/// SwiGLU MLP with gate and up projections fused into one matmul (`[gate; up]` rows).
#[derive(Debug)]
struct Mlp {
    gate_up_proj: Tensor,
    down_proj: Tensor,
    intermediate: i64,
}

impl Mlp {
    fn new(vb: &VarBuilder, cfg: &LlamaConfig) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_up_proj: vb.get_rows(&[("gate_proj.weight", &[i, h]), ("up_proj.weight", &[i, h])])?,
            down_proj: vb.pp("down_proj").get(&[h, i], "weight")?,
            intermediate: i,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let gate_up = x.linear::<&Tensor>(&self.gate_up_proj, None);
        let gate = gate_up.narrow(-1, 0, self.intermediate).silu();
        (gate * gate_up.narrow(-1, self.intermediate, self.intermediate)).linear::<&Tensor>(&self.down_proj, None)
    }
}

#[derive(Debug)]
struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    fn new(vb: &VarBuilder, cfg: &LlamaConfig) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::new(&vb.pp("self_attn"), cfg)?,
            mlp: Mlp::new(&vb.pp("mlp"), cfg)?,
            input_layernorm: RmsNorm::new(&vb.pp("input_layernorm"), cfg.hidden_size, cfg.rms_norm_eps)?,
            post_attention_layernorm: RmsNorm::new(
                &vb.pp("post_attention_layernorm"),
                cfg.hidden_size,
                cfg.rms_norm_eps,
            )?,
        })
    }

    fn forward(&self, x: &Tensor, rope: &Rope, cache: &mut KvCache, layer: usize, span: Span) -> Tensor {
        let h = x + self
            .self_attn
            .forward(&self.input_layernorm.forward(x), rope, cache, layer, span);
        &h + self.mlp.forward(&self.post_attention_layernorm.forward(&h))
    }
}

/// `LlamaForCausalLM`: `model.embed_tokens`, `model.layers.N`, `model.norm`, `lm_head`.
#[derive(Debug)]
pub struct Llama {
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Tensor,
    cfg: LlamaConfig,
}

impl Llama {
    /// `vb` points at `language_model`.
    pub fn new(vb: &VarBuilder, cfg: &LlamaConfig) -> Result<Self> {
        cfg.validate()?;
        let m = vb.pp("model");
        let embed_tokens = m.pp("embed_tokens").get(&[cfg.vocab_size, cfg.hidden_size], "weight")?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(&m.pp("layers").pp(i), cfg))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(&m.pp("norm"), cfg.hidden_size, cfg.rms_norm_eps)?;
        let lm_head = vb.pp("lm_head").get(&[cfg.vocab_size, cfg.hidden_size], "weight")?;
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Token embeddings for `ids` [B, T] (int64) → [B, T, H]; an id outside the vocabulary is
    /// an error (libtorch checks it).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(Tensor::f_embedding(&self.embed_tokens, ids, -1, false, false)?)
    }

    /// Runs the decoder over `embeds` [1, T, H] at positions `cache.len()..`, appends to the cache
    /// and returns the final-norm hidden states [1, T, H] (HF's `hidden_states[-1]`).
    /// With `collect`, also pushes the input embeddings and every layer's raw output (HF's
    /// `hidden_states[0..n]`); parity tests use this.
    pub fn forward_embeds(
        &self,
        embeds: &Tensor,
        rope: &Rope,
        cache: &mut KvCache,
        mut collect: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        let start = cache.len;
        let t = match embeds.size().as_slice() {
            [1, t, h] if *h == self.cfg.hidden_size => *t,
            other => {
                return Err(super::ModelError::Invalid(format!(
                    "embeddings must be [1, tokens, {}], got {other:?}",
                    self.cfg.hidden_size
                )))
            }
        };
        if start + t > cache.capacity {
            return Err(super::ModelError::Invalid(format!(
                "sequence of {} tokens exceeds the KV cache capacity {}",
                start + t,
                cache.capacity
            )));
        }
        let mut h = embeds.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(c) = collect.as_deref_mut() {
                c.push(h.shallow_clone());
            }
            h = layer.forward(&h, rope, cache, i, Span::Host(start));
        }
        cache.len = start + t;
        let out = self.norm.forward(&h);
        if let Some(c) = collect {
            // HF's last entry is the final-norm output, not the last layer's raw output.
            c.push(out.shallow_clone());
        }
        Ok(out)
    }

    /// One decode step with its position on the device: `embeds` [1, 1, H] at position `pos`
    /// [1] (int64), attending to cache positions where `mask` [1, 1, 1, capacity] (bool) is true
    /// (`arange(capacity) <= pos`). Writes K/V at `pos` and returns the final-norm hidden state
    /// [1, 1, H]. The same kernels and shapes at every position and no host read, so a CUDA graph
    /// captured once replays it; the host-side `cache.len()` is not touched.
    pub fn forward_token_at(
        &self,
        embeds: &Tensor,
        pos: &Tensor,
        mask: &Tensor,
        rope: &Rope,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let width = mask.size().last().copied().unwrap_or(0);
        if embeds.size().get(..2) != Some(&[1, 1]) || width != cache.capacity {
            return Err(super::ModelError::Invalid(format!(
                "a device-position step takes one token and a mask over the {} cache positions (got {:?} and {width})",
                cache.capacity,
                embeds.size()
            )));
        }
        let span = Span::Device { pos, mask };
        let mut h = embeds.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, rope, cache, i, span);
        }
        Ok(self.norm.forward(&h))
    }

    /// A right-padded batch's prefill: `embeds` [B, T, H], every row from position 0, `mask`
    /// [B, 1, T, T] (bool: causal, padding keys hidden). Fills the first B rows of the cache up to
    /// T and returns the final-norm hidden states [B, T, H] (rows past a row's length are unused).
    pub fn forward_padded(&self, embeds: &Tensor, mask: &Tensor, rope: &Rope, cache: &mut KvCache) -> Result<Tensor> {
        let (b, t) = (embeds.size()[0], embeds.size()[1]);
        if t > cache.capacity || b > cache.rows() {
            return Err(super::ModelError::Invalid(format!(
                "a batch of {b} sequences of {t} tokens exceeds the KV cache ({} rows of {} positions)",
                cache.rows(),
                cache.capacity
            )));
        }
        let span = Span::Padded { mask };
        let mut h = embeds.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, rope, cache, i, span);
        }
        Ok(self.norm.forward(&h))
    }

    /// One decode step for a batch: `embeds` [B, 1, H], row `b` at position `pos[b]` (`pos` [B]
    /// int64), attending to the first `len` cache positions where `mask` [B, 1, 1, len] is true.
    /// Returns the final-norm hidden states [B, 1, H].
    pub fn forward_rows(
        &self,
        embeds: &Tensor,
        pos: &Tensor,
        mask: &Tensor,
        len: i64,
        rope: &Rope,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let b = embeds.size()[0];
        if len > cache.capacity || b > cache.rows() {
            return Err(super::ModelError::Invalid(format!(
                "a batch of {b} rows reading {len} positions exceeds the KV cache ({} rows of {} positions)",
                cache.rows(),
                cache.capacity
            )));
        }
        let span = Span::Rows { pos, mask, len };
        let mut h = embeds.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, rope, cache, i, span);
        }
        Ok(self.norm.forward(&h))
    }

    /// LM-head logits (f32) for hidden states [.., H].
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden.linear::<&Tensor>(&self.lm_head, None).to_kind(Kind::Float)
    }
}
