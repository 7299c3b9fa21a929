//! Small building blocks shared by the ViT and the projector.
use tch::Tensor;

use crate::model::error::Result;
use crate::model::weights::{Init, VarBuilder};

/// `nn.Linear`; weight `[out, in]`, bias `[out]` unless built with [`Linear::new_no_bias`].
#[derive(Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(vb: &VarBuilder, in_dim: i64, out_dim: i64) -> Result<Self> {
        let weight = vb.get(&[out_dim, in_dim], "weight")?;
        let bias = Some(vb.get_with_init(&[out_dim], "bias", Init::Zeros)?);
        Ok(Self { weight, bias })
    }

    /// `nn.Linear(bias=False)`: only `weight` is read.
    pub fn new_no_bias(vb: &VarBuilder, in_dim: i64, out_dim: i64) -> Result<Self> {
        let weight = vb.get(&[out_dim, in_dim], "weight")?;
        Ok(Self { weight, bias: None })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }

    /// The weights' dtype (inputs are converted to it).
    pub fn kind(&self) -> tch::Kind {
        self.weight.kind()
    }

    /// Output features.
    pub fn out_dim(&self) -> i64 {
        self.weight.size()[0]
    }

    /// Input features.
    pub fn in_dim(&self) -> i64 {
        self.weight.size()[1]
    }
}

/// `nn.LayerNorm` over the last dimension.
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(vb: &VarBuilder, dim: i64, eps: f64) -> Result<Self> {
        let weight = vb.get_with_init(&[dim], "weight", Init::Ones)?;
        let bias = vb.get_with_init(&[dim], "bias", Init::Zeros)?;
        Ok(Self { weight, bias, eps })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dim = self.weight.size();
        Ok(x.f_layer_norm(dim.as_slice(), Some(&self.weight), Some(&self.bias), self.eps, true)?)
    }
}

/// Exact (erf) GELU, as `nn.GELU()`.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_gelu("none")?)
}
