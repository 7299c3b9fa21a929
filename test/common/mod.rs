//! Shared access to the golden fixture (`test/data/univla-tiny`) for the parity tests:
//! `golden.json`, the tensors of `golden.safetensors` it refers to, and tolerance checks.
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

    /// A tensor of `golden.safetensors` by its full key.
    pub fn tensor_by_key(&self, key: &str) -> Tensor {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("golden tensor `{key}` missing"))
            .shallow_clone()
    }

    /// The JSON record of step `t` of `variant`.
    pub fn step(&self, variant: &str, t: usize) -> &serde_json::Value {
        &self.json[variant]["steps"][t]
    }

    /// The tensor a step refers to by field name (`{"tensor": key, ...}` in golden.json).
    pub fn step_tensor(&self, variant: &str, t: usize, field: &str) -> Tensor {
        let key = self.step(variant, t)[field]["tensor"]
            .as_str()
            .unwrap_or_else(|| panic!("{variant} step {t}: no tensor field `{field}`"));
        self.tensor_by_key(key)
    }

    /// Whether step `t` of `variant` has a tensor field `field`.
    pub fn step_has_tensor(&self, variant: &str, t: usize, field: &str) -> bool {
        self.step(variant, t)[field]["tensor"].as_str().is_some()
    }

    /// A numeric list of a step (e.g. `ensembled_action`).
    pub fn step_f64s(&self, variant: &str, t: usize, field: &str) -> Vec<f64> {
        json_f64s(&self.step(variant, t)[field])
            .unwrap_or_else(|| panic!("{variant} step {t}: `{field}` is not a list"))
    }
}

pub fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// A JSON list of numbers, if it is one.
pub fn json_f64s(v: &serde_json::Value) -> Option<Vec<f64>> {
    v.as_array()?.iter().map(serde_json::Value::as_f64).collect()
}

/// A tensor's values as f64, flattened.
pub fn to_f64s(t: &Tensor) -> Vec<f64> {
    let flat = t.to_kind(Kind::Double).contiguous().view([-1]);
    Vec::<f64>::try_from(&flat).expect("tensor to Vec<f64>")
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

/// Asserts `|a − e| ≤ atol + rtol·|e|` for every element (per-element tolerance), naming the worst.
pub fn assert_close_f64(what: &str, actual: &[f64], expected: &[f64], rtol: f64, atol: f64) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: {} values, expected {}",
        actual.len(),
        expected.len()
    );
    let mut worst: Option<(usize, f64)> = None;
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let excess = match (a.is_nan(), e.is_nan()) {
            (true, true) => continue,
            (false, false) => (a - e).abs() - (atol + rtol * e.abs()),
            _ => f64::INFINITY,
        };
        if worst.is_none_or(|(_, w)| excess > w) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, excess)) = worst {
        assert!(
            excess <= 0.0,
            "{what}[{i}]: {} vs expected {} (|diff| {:e}, rtol {rtol:e}, atol {atol:e})",
            actual[i],
            expected[i],
            (actual[i] - expected[i]).abs()
        );
    }
}

/// As [`assert_close_f64`] for tensors, which must also have the same shape.
pub fn assert_close_tol(what: &str, actual: &Tensor, expected: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(actual.size(), expected.size(), "{what}: shape");
    assert_close_f64(what, &to_f64s(actual), &to_f64s(expected), rtol, atol);
}

/// The largest absolute elementwise difference of two same-shaped tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    to_f64s(a)
        .iter()
        .zip(to_f64s(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}
