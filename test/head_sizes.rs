//! Heads whose sizes differ from the reference's hard-coded ones: every post-processing size
//! (window, temporal ensemble, action width, attention heads, R2R visual-embed use) comes from
//! the head's weights or its `action_decoder_config.json`, end to end through `univla infer`.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::floats;
use tch::{Device, Kind, Tensor};
use univla_ros::model::heads::{ActionHead, HeadKind};
use univla_ros::runtime::session::{Policy, PolicyOptions};

/// Ensemble weight decay of the reference, `exp(−0.1·n)`.
const DECAY: f64 = 0.1;

fn univla() -> Command {
    Command::new(env!("CARGO_BIN_EXE_univla"))
}

/// `univla make-checkpoint --out DIR ARGS…` (tiny preset).
fn make_checkpoint(dir: &Path, args: &[&str]) -> PathBuf {
    let ckpt = dir.join("ckpt");
    let out = univla()
        .args(["make-checkpoint", "--out"])
        .arg(&ckpt)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ckpt
}

/// `univla infer --greedy --json` over the first `n` R2R fixture images.
fn infer(ckpt: &Path, decoder: &str, n: usize, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut cmd = univla();
    cmd.args([
        "infer",
        "--greedy",
        "--json",
        "--instruction",
        "go to the kitchen",
        "--checkpoint",
    ])
    .arg(ckpt)
    .arg("--decoder")
    .arg(ckpt.join(decoder))
    .args(extra);
    for t in 0..n {
        cmd.arg("--image")
            .arg(common::fixture().join(format!("images/r2r_step{t}.png")));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "univla infer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn chunk(step: &serde_json::Value) -> Vec<Vec<f64>> {
    step["chunk"].as_array().unwrap().iter().map(floats).collect()
}

/// The reference ensemble's output at step `t` (all chunks still in their horizon): chunk `t−n`
/// contributes its row `n` with weight `exp(−0.1·n)`.
fn expected_ensemble(chunks: &[Vec<Vec<f64>>], t: usize) -> Vec<f64> {
    let dim = chunks[t][0].len();
    let mut sum = vec![0.0; dim];
    let mut norm = 0.0;
    for n in 0..=t {
        let w = (-DECAY * n as f64).exp();
        for (s, v) in sum.iter_mut().zip(&chunks[t - n][n]) {
            *s += w * v;
        }
        norm += w;
    }
    sum.into_iter().map(|s| s / norm).collect()
}

fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-9, "{what}: {got:?} vs {want:?}");
    }
}

#[test]
fn r2r_head_with_a_window_of_five_ensembles_five_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = make_checkpoint(tmp.path(), &["--head", "r2r", "--window", "5", "--head-heads", "2"]);
    let policy = Policy::load(PolicyOptions::new(&ckpt, ckpt.join("action_decoder_r2r.safetensors"))).unwrap();
    assert_eq!(
        (policy.window(), policy.action_dim(), policy.temporal_size()),
        (5, 4, 5)
    );
    assert_eq!(policy.head().n_heads(), 2);
    // Six steps: the sixth is the first whose oldest chunk has run out of horizon.
    let steps = infer(&ckpt, "action_decoder_r2r.safetensors", 6, &[]);
    let chunks: Vec<Vec<Vec<f64>>> = steps.iter().map(chunk).collect();
    for (t, c) in chunks.iter().enumerate() {
        assert_eq!(c.len(), 5, "step {t}: chunk rows");
        assert!(c.iter().all(|row| row.len() == 4), "step {t}");
        for row in c {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5, "softmax rows: {row:?}");
        }
    }
    for (t, step) in steps.iter().enumerate().take(5) {
        let got = floats(&step["pre_action"]);
        assert_close(&format!("step {t}"), &got, &expected_ensemble(&chunks, t));
        // The action is the argmax of the ensembled probabilities.
        let best = (0..4).fold(0, |b, i| if got[i] > got[b] { i } else { b });
        assert_eq!(step["action"], best, "step {t}");
    }
    // Step 5: chunk 0 (5 rows) no longer reaches it; chunks 1..=5 do.
    let window: Vec<Vec<Vec<f64>>> = chunks[1..].to_vec();
    assert_close(
        "step 5",
        &floats(&steps[5]["pre_action"]),
        &expected_ensemble(&window, 4),
    );
}

#[test]
fn r2r_head_trained_without_the_visual_embedding_loads_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = make_checkpoint(tmp.path(), &["--head", "r2r", "--r2r-without-visual-embed"]);
    let file = ckpt.join("action_decoder_r2r.safetensors");
    let head = ActionHead::load(&file, Device::Cpu).unwrap();
    assert_eq!(head.kind(), HeadKind::R2r);
    assert!(!head.uses_visual_embed());
    assert_eq!((head.window(), head.action_dim()), (4, 4));
    // The output depends on the latent actions only.
    let latent = Tensor::randn([1, 4, head.vis_dim()], (Kind::Float, Device::Cpu));
    let a = head
        .forward(
            &Tensor::randn([1, 256, head.vis_dim()], (Kind::Float, Device::Cpu)),
            &latent,
            None,
        )
        .unwrap();
    let b = head
        .forward(
            &Tensor::randn([1, 256, head.vis_dim()], (Kind::Float, Device::Cpu)),
            &latent,
            None,
        )
        .unwrap();
    assert!(a.visual_pool_out.is_none());
    assert!(a.chunk.allclose(&b.chunk, 0.0, 0.0, false));
    let steps = infer(&ckpt, "action_decoder_r2r.safetensors", 2, &[]);
    assert_eq!(chunk(&steps[1]).len(), 4);
}

#[test]
fn arm_heads_with_another_window_and_action_width() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = make_checkpoint(
        tmp.path(),
        &[
            "--head",
            "libero",
            "--head",
            "realworld",
            "--window",
            "10",
            "--action-dim",
            "6",
            "--head-heads",
            "2",
        ],
    );
    // LIBERO-style head: 10 steps of 6 values, ensembled over the whole chunk, un-normalised with
    // 6-wide bounds, gripper convention on the last value.
    let mut opts = PolicyOptions::new(&ckpt, ckpt.join("action_decoder_libero.safetensors"));
    opts.unnorm_key = Some("libero_10_no_noops".into());
    let policy = Policy::load(opts).unwrap();
    assert_eq!(
        (policy.window(), policy.action_dim(), policy.temporal_size()),
        (10, 6, 10)
    );
    assert_eq!(policy.head().n_heads(), 2);
    let steps = infer(
        &ckpt,
        "action_decoder_libero.safetensors",
        3,
        &["--unnorm-key", "libero_10_no_noops"],
    );
    let chunks: Vec<Vec<Vec<f64>>> = steps.iter().map(chunk).collect();
    for (t, step) in steps.iter().enumerate() {
        assert_eq!(chunks[t].len(), 10, "step {t}");
        assert!(chunks[t].iter().all(|row| row.len() == 6), "step {t}");
        assert_close(
            &format!("step {t}"),
            &floats(&step["pre_action"]),
            &expected_ensemble(&chunks, t),
        );
        let action = floats(&step["action"]);
        assert_eq!(action.len(), 6);
        assert!([-1.0, 0.0, 1.0].contains(&action[5]), "gripper {}", action[5]);
    }
    // Real-world head: 6-wide proprio and statistics; the last 8 of its 10 rows are ensembled.
    let proprio = tmp.path().join("proprio.json");
    std::fs::write(&proprio, serde_json::to_string(&vec![vec![0.1; 6]; 2]).unwrap()).unwrap();
    let stats = ckpt.join("realworld_stats.json");
    let steps = infer(
        &ckpt,
        "action_decoder.safetensors",
        2,
        &[
            "--proprio",
            proprio.to_str().unwrap(),
            "--realworld-stats",
            stats.to_str().unwrap(),
        ],
    );
    for step in &steps {
        assert_eq!(chunk(step).len(), 10);
        assert_eq!(floats(&step["action"]).len(), 6);
    }
    let tail: Vec<Vec<Vec<f64>>> = steps.iter().map(|s| chunk(s)[2..].to_vec()).collect();
    assert_close(
        "real world",
        &floats(&steps[1]["pre_action"]),
        &expected_ensemble(&tail, 1),
    );
}

#[test]
fn head_count_comes_from_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = make_checkpoint(tmp.path(), &["--head", "libero", "--head-heads", "2"]);
    let file = ckpt.join("action_decoder_libero.safetensors");
    let configured = ActionHead::load(&file, Device::Cpu).unwrap();
    assert_eq!(configured.n_heads(), 2);
    let default = ActionHead::load_with_heads(&file, 8, Device::Cpu).unwrap();
    let visual = Tensor::randn([1, 256, configured.vis_dim()], (Kind::Float, Device::Cpu));
    let latent = Tensor::randn([1, 4, configured.vis_dim()], (Kind::Float, Device::Cpu));
    let a = configured.forward(&visual, &latent, None).unwrap();
    let b = default.forward(&visual, &latent, None).unwrap();
    assert!(
        !a.chunk.allclose(&b.chunk, 1e-6, 1e-6, false),
        "the head count must matter"
    );
    // A config whose window does not divide the weights is refused with the file named.
    let config = ckpt.join("action_decoder_config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"window_size\": 12", "\"window_size\": 11")).unwrap();
    let err = ActionHead::load(&file, Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("proj.0.weight") && err.contains("11"), "{err}");
}
