//! Shared access to the golden fixture (`test/data/univla-tiny`) for the parity tests.
#![allow(dead_code)]
use std::collections::HashMap;
use std::path::PathBuf;

use tch::{Kind, Tensor};

pub fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test/data/univla-tiny")
}

pub fn checkpoint() -> PathBuf {
    fixture().join("checkpoint")
}

/// golden.json and golden.safetensors.
pub struct Golden {
    pub json: serde_json::Value,
    pub tensors: HashMap<String, Tensor>,
}

impl Golden {
    pub fn load() -> Self {
        let dir = fixture();
        let json = serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
        let tensors = Tensor::read_safetensors(dir.join("golden.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
        Self { json, tensors }
    }

    pub fn steps(&self, variant: &str) -> &Vec<serde_json::Value> {
        self.json[variant]["steps"].as_array().unwrap()
    }

    pub fn tensor(&self, variant: &str, step: usize, name: &str) -> &Tensor {
        let key = format!("{variant}/step{step}/{name}");
        self.tensors
            .get(&key)
            .unwrap_or_else(|| panic!("golden tensor {key} missing"))
    }

    pub fn try_tensor(&self, variant: &str, step: usize, name: &str) -> Option<&Tensor> {
        self.tensors.get(&format!("{variant}/step{step}/{name}"))
    }
}

pub fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// `|got − want| ≤ 1e-4 · max(1, max|want|)` elementwise (relative to the tensor's scale, with
/// an absolute floor of 1e-4).
pub fn assert_close(name: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.size(), want.size(), "{name}: shape");
    let got = got.to_kind(Kind::Double);
    let want = want.to_kind(Kind::Double);
    let scale = want.abs().max().double_value(&[]).max(1.0);
    let err = (&got - &want).abs().max().double_value(&[]);
    assert!(err <= 1e-4 * scale, "{name}: max abs error {err} (scale {scale})");
}

pub fn assert_close_slice(name: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * scale, "{name}[{i}]: got {g}, want {w}");
    }
}
