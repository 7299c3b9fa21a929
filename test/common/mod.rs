//! Shared helpers for the golden parity tests: the fixture's paths, `golden.json` and the tensors
//! of `golden.safetensors` it refers to, and tolerance checks that report the worst element.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use tch::{Kind, Tensor};

/// The golden fixture directory (`test/data/univla-tiny`).
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test/data/univla-tiny")
}

/// The fixture's checkpoint directory.
pub fn checkpoint_dir() -> PathBuf {
    fixture_dir().join("checkpoint")
}

/// `golden.json` plus every tensor of `golden.safetensors`.
pub struct Golden {
    pub json: serde_json::Value,
    tensors: HashMap<String, Tensor>,
}

impl Golden {
    pub fn load() -> Self {
        let dir = fixture_dir();
        let text = std::fs::read_to_string(dir.join("golden.json")).expect("read golden.json");
        let json = serde_json::from_str(&text).expect("parse golden.json");
        let tensors = Tensor::read_safetensors(dir.join("golden.safetensors")).expect("read golden.safetensors");
        Self {
            json,
            tensors: tensors.into_iter().collect(),
        }
    }

    /// A tensor of `golden.safetensors` by key (`<variant>/step<t>/<name>`).
    pub fn tensor(&self, key: &str) -> Tensor {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("golden tensor `{key}` missing"))
            .shallow_clone()
    }

    /// Whether `golden.safetensors` holds `key`.
    pub fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// The number of recorded steps of a variant (`deploy`, `libero`, `r2r`).
    pub fn steps(&self, variant: &str) -> usize {
        self.json[variant]["steps"].as_array().map_or(0, Vec::len)
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
        self.tensor(key)
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

/// A JSON list of numbers.
pub fn json_f64s(v: &serde_json::Value) -> Option<Vec<f64>> {
    v.as_array()?.iter().map(serde_json::Value::as_f64).collect()
}

/// A tensor's values as f64, flattened.
pub fn to_f64s(t: &Tensor) -> Vec<f64> {
    let flat = t.to_kind(Kind::Double).contiguous().view([-1]);
    Vec::<f64>::try_from(&flat).expect("tensor to Vec<f64>")
}

/// Asserts `|a − e| ≤ atol + rtol·|e|` elementwise (same number of elements), naming the worst.
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
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, rtol: f64, atol: f64) {
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
