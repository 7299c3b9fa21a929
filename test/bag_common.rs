//! Shared helpers of the bag tests: the deterministic fake policy and the `rosbags` test bags.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use univla_ros::bag::replay::{PolicyStep, ReplayPolicy};
use univla_ros::runtime::preprocess::RgbImage;

/// Recorded command of frame k (mirrors `action` in test/bags/make_bags.py).
pub fn action(k: usize) -> Vec<f64> {
    let g = if (k / 5).is_multiple_of(2) { 1.0 } else { -1.0 };
    let x = k as f64;
    vec![0.25 * x, -0.5 * x, 0.125 * (k % 4) as f64, g]
}

/// A policy that reads the frame index k from the first pixel byte and answers `action(k) + offset`;
/// its chunk row j is `action(k + j) + offset`, so open-loop execution is exact too.
pub struct FakePolicy {
    pub offset: Vec<f64>,
    pub horizon: usize,
    pub calls: usize,
    pub resets: Vec<String>,
    pub proprio: Vec<Option<Vec<f32>>>,
}

impl FakePolicy {
    pub fn new(offset: Vec<f64>) -> Self {
        Self {
            offset,
            horizon: 8,
            calls: 0,
            resets: Vec::new(),
            proprio: Vec::new(),
        }
    }

    fn shifted(&self, k: usize) -> Vec<f64> {
        action(k).iter().zip(&self.offset).map(|(a, o)| a + o).collect()
    }
}

impl ReplayPolicy for FakePolicy {
    fn reset(&mut self, instruction: &str) {
        self.resets.push(instruction.to_string());
    }

    fn step(&mut self, image: &RgbImage, proprio: Option<&[f32]>) -> Result<PolicyStep, String> {
        let rgb = image.as_raw();
        assert_eq!(rgb.len(), (image.width() * image.height() * 3) as usize);
        self.calls += 1;
        self.proprio.push(proprio.map(|p| p.to_vec()));
        let k = rgb[0] as usize;
        Ok(PolicyStep {
            latent_ids: vec![32001 + (k % 16) as i64, 32001, 32002, 32003],
            action: self.shifted(k),
            chunk: (0..self.horizon).map(|j| self.shifted(k + j)).collect(),
            inference_ms: 10.0 + k as f64,
        })
    }
}

/// The project's virtual-environment Python, with `rosbags` importable.
pub fn venv_python() -> PathBuf {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup.sh (the bag tests need the PyPI package rosbags==0.11.9 in .venv)",
        py.display()
    );
    let ok = Command::new(&py)
        .args(["-c", "import rosbags"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "PyPI package rosbags is not installed in .venv: run `.venv/bin/pip install rosbags==0.11.9` (scripts/setup.sh)"
    );
    py
}

/// Directory with `rosbags_mcap/`, `rosbags_sqlite3/` and `expected.json`, generated once per test binary.
pub fn rosbags_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap().keep();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("test/bags/make_bags.py");
        let out = Command::new(venv_python()).arg(&script).arg(&tmp).output().unwrap();
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        tmp
    })
}

/// Decodes a hex string.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
