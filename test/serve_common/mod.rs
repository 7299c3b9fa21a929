//! Starts `univla serve` on the fixture (LIBERO head, greedy, a free loopback port) and runs
//! `univla infer --json` for reference outputs.
#![allow(dead_code)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use rmpv::Value;
use univla_ros::runtime::preprocess::RgbImage;
use univla_ros::serve::wire::{self, str_map, Dtype};

pub fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test/data/univla-tiny")
}

pub fn checkpoint() -> PathBuf {
    fixture().join("checkpoint")
}

pub const INSTRUCTION: &str = "put both the alphabet soup and the tomato sauce in the basket";

pub fn image_path(t: usize) -> PathBuf {
    fixture().join(format!("images/libero_step{t}.png"))
}

/// The policy arguments both `serve` and `infer` get.
pub fn policy_args() -> Vec<String> {
    vec![
        "--checkpoint".into(),
        checkpoint().display().to_string(),
        "--decoder".into(),
        checkpoint().join("action_decoder_libero.pt").display().to_string(),
        "--unnorm-key".into(),
        "libero_10_no_noops".into(),
        "--greedy".into(),
    ]
}

/// A running server process, stopped when dropped.
pub struct ServerProc {
    child: Child,
    pub addr: String,
}

impl ServerProc {
    pub fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_univla"))
            .arg("serve")
            .args(policy_args())
            .args(["--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn univla serve");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("univla serve: listening on ws://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, addr }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// `GET path` over plain HTTP: (status line, body).
    pub fn http_get(&self, path: &str) -> (String, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.lines().next().unwrap_or("").to_owned(), body.to_owned())
    }

    /// Active sessions, from `GET /status`.
    pub fn sessions(&self) -> u64 {
        let (_, body) = self.http_get("/status");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["sessions"].as_u64().unwrap()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `univla infer --json --greedy` on the first `n` fixture images.
pub fn infer_json(n: usize) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_univla"));
    cmd.arg("infer")
        .args(policy_args())
        .args(["--json", "--instruction", INSTRUCTION]);
    for t in 0..n {
        cmd.arg("--image").arg(image_path(t));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "infer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A LIBERO-style request for fixture image `t`.
pub fn request(t: usize, prompt: &str, extra: Vec<(&str, Value)>) -> Vec<u8> {
    let img = RgbImage::load(image_path(t)).unwrap();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut entries = vec![
        (
            "observation/image",
            wire::ndarray_value(Dtype::U8, &[h, w, 3], img.into_raw()),
        ),
        ("observation/state", wire::f32_array([0.0; 8], &[8])),
        ("prompt", Value::from(prompt)),
    ];
    entries.extend(extra);
    wire::encode(&str_map(entries))
}

/// A response field by key.
pub fn field<'a>(resp: &'a Value, key: &str) -> &'a Value {
    resp.as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("response has no `{key}`"))
}

pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x.as_array() {
            Some(row) => row.iter().map(|y| y.as_f64().unwrap()).collect(),
            None => vec![x.as_f64().unwrap()],
        })
        .collect()
}

pub fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}
