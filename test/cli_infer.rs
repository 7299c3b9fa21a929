//! `univla infer --json` reproduces the fixture's deploy, LIBERO and R2R outputs from the
//! command line (greedy), and `univla make-checkpoint` + `univla bench --json` run end to end.
mod common;

use std::process::Command;

use common::{assert_close_slice, floats, ids, Golden};

fn univla() -> Command {
    Command::new(env!("CARGO_BIN_EXE_univla"))
}

fn infer(variant: &str, decoder: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let g = Golden::load();
    let mut cmd = univla();
    cmd.args(["infer", "--greedy", "--json", "--checkpoint"])
        .arg(common::checkpoint())
        .arg("--decoder")
        .arg(common::checkpoint().join(decoder))
        .args(["--instruction", g.json[variant]["instruction"].as_str().unwrap()])
        .args(extra);
    for t in 0..g.steps(variant).len() {
        cmd.arg("--image")
            .arg(common::fixture().join(format!("images/{variant}_step{t}.png")));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "univla infer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn infer_reproduces_libero_and_r2r_outputs() {
    let g = Golden::load();
    let steps = infer(
        "libero",
        "action_decoder_libero.pt",
        &["--unnorm-key", "libero_10_no_noops"],
    );
    for (t, (got, want)) in steps.iter().zip(g.steps("libero")).enumerate() {
        assert_eq!(got["prompt"], want["prompt"], "libero step {t}");
        assert_eq!(
            ids(&got["input_ids"]),
            ids(&want["input_ids_generate"]),
            "libero step {t}"
        );
        assert_eq!(
            ids(&got["latent_ids"]),
            ids(&want["generated_latent_ids"]),
            "libero step {t}"
        );
        assert_close_slice(
            &format!("libero step {t}"),
            &floats(&got["action"]),
            &floats(&want["action_final"]),
        );
    }
    let steps = infer("r2r", "action_decoder_r2r.pt", &[]);
    for (t, (got, want)) in steps.iter().zip(g.steps("r2r")).enumerate() {
        assert_eq!(
            ids(&got["latent_ids"]),
            ids(&want["generated_latent_ids"]),
            "r2r step {t}"
        );
        assert_eq!(got["action"], want["action_discrete"], "r2r step {t}");
        assert_close_slice(
            &format!("r2r step {t}"),
            &floats(&got["pre_action"]),
            &floats(&want["ensembled_probs"]),
        );
    }
}

#[test]
fn infer_reproduces_deploy_outputs_with_proprio() {
    let g = Golden::load();
    let dir = tempfile::tempdir().unwrap();
    let proprio: Vec<Vec<f64>> = (0..g.steps("deploy").len())
        .map(|t| {
            let p = g.tensor("deploy", t, "proprio").to_kind(tch::Kind::Double).view([-1]);
            Vec::<f64>::try_from(p).unwrap()
        })
        .collect();
    let path = dir.path().join("proprio.json");
    std::fs::write(&path, serde_json::to_string(&proprio).unwrap()).unwrap();
    let steps = infer("deploy", "action_decoder.pt", &["--proprio", path.to_str().unwrap()]);
    for (t, (got, want)) in steps.iter().zip(g.steps("deploy")).enumerate() {
        assert_eq!(
            ids(&got["latent_ids"]),
            ids(&want["generated_latent_ids"]),
            "deploy step {t}"
        );
        assert_eq!(got["chunk"].as_array().unwrap().len(), 12, "deploy chunk rows");
        assert_close_slice(
            &format!("deploy step {t}"),
            &floats(&got["action"]),
            &floats(&want["ensembled_action"]),
        );
    }
}

#[test]
fn infer_requires_a_decoding_choice_and_names_missing_files() {
    let out = univla()
        .args([
            "infer",
            "--checkpoint",
            "/nonexistent",
            "--decoder",
            "x.pt",
            "--instruction",
            "go",
            "--image",
            "a.png",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--greedy"));
    let out = univla()
        .args([
            "infer",
            "--greedy",
            "--checkpoint",
            "/nonexistent",
            "--decoder",
            "x.pt",
            "--instruction",
            "go",
        ])
        .arg("--image")
        .arg(common::fixture().join("images/r2r_step0.png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generated_checkpoint_runs_and_benchmarks() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let out = univla()
        .args(["make-checkpoint", "--seed", "3", "--out"])
        .arg(&ckpt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = univla()
        .args([
            "bench",
            "--greedy",
            "--json",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--unnorm-key",
            "libero_10_no_noops",
        ])
        .arg("--checkpoint")
        .arg(&ckpt)
        .arg("--decoder")
        .arg(ckpt.join("action_decoder_libero.safetensors"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let median = report["step_ms"]["median"].as_f64().unwrap();
    assert!(median > 0.0 && median.is_finite());
    for stage in [
        "preprocess",
        "vision",
        "projector",
        "prefill",
        "decode1",
        "decode2",
        "decode3",
        "head",
        "postprocess",
    ] {
        assert!(
            report["stages_ms"][stage]["median"].as_f64().is_some(),
            "stage {stage} missing: {report}"
        );
    }
    // Loading is reported: time, peak RSS, the weights in the target dtype and the CPU target.
    let load = &report["load"];
    assert!(load["seconds"].as_f64().unwrap() > 0.0, "{load}");
    let weights = load["weights_mib"].as_f64().unwrap();
    assert!(
        weights > 0.0 && load["peak_rss_mib"].as_f64().unwrap() > weights,
        "{load}"
    );
    assert_eq!(load["rss_target_mib"].as_f64().unwrap(), 1.1 * weights + 1024.0);
    assert!(load["within_target"].is_boolean(), "{load}");
    let out = univla()
        .args([
            "bench",
            "--greedy",
            "--json",
            "--load-only",
            "--dtype",
            "bf16",
            "--checkpoint",
        ])
        .arg(&ckpt)
        .arg("--decoder")
        .arg(ckpt.join("action_decoder_r2r.safetensors"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let only: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(only.get("step_ms").is_none(), "{only}");
    // bf16 weights take half the bytes of the f32 ones.
    assert_eq!(only["load"]["weights_mib"].as_f64().unwrap() * 2.0, weights);
    // The generated LM emits latent-action tokens, like the fixture.
    let out = univla()
        .args(["infer", "--greedy", "--json", "--instruction", "go", "--checkpoint"])
        .arg(&ckpt)
        .arg("--decoder")
        .arg(ckpt.join("action_decoder_r2r.safetensors"))
        .arg("--image")
        .arg(common::fixture().join("images/r2r_step0.png"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let steps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        ids(&steps[0]["latent_ids"])
            .iter()
            .all(|id| (32001..32017).contains(id)),
        "{}",
        steps[0]
    );
}

/// `univla compare` runs on CPU machines too (the CPU as the compared device): CPU f32 against
/// itself is exact, bf16 stays close; the reference's tokens are the golden ones.
#[test]
fn compare_runs_against_the_cpu_reference() {
    let g = Golden::load();
    let steps = 2;
    let mut cmd = univla();
    cmd.args([
        "compare",
        "--json",
        "--device",
        "cpu",
        "--dtypes",
        "f32,bf16",
        "--checkpoint",
    ])
    .arg(common::checkpoint())
    .arg("--decoder")
    .arg(common::checkpoint().join("action_decoder_r2r.pt"))
    .args(["--instruction", g.json["r2r"]["instruction"].as_str().unwrap()]);
    for t in 0..steps {
        cmd.arg("--image")
            .arg(common::fixture().join(format!("images/r2r_step{t}.png")));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "univla compare failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports.len(), 2);
    let exact = &reports[0];
    assert_eq!(exact["tokens_total"], 4 * steps);
    assert_eq!(exact["free_tokens_equal"], exact["tokens_total"]);
    assert_eq!(exact["forced_tokens_equal"], exact["tokens_total"]);
    for key in [
        "min_cos_visual_embed",
        "min_cos_latent_action",
        "min_cos_logits",
        "min_cos_chunk",
        "min_cos_action",
    ] {
        assert!(exact[key].as_f64().unwrap() > 1.0 - 1e-9, "{key}: {}", exact[key]);
    }
    for (t, step) in exact["steps"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            ids(&step["reference_ids"]),
            ids(&g.steps("r2r")[t]["generated_latent_ids"]),
            "step {t}"
        );
    }
    let bf16 = &reports[1];
    assert_eq!(bf16["dtype"], "BFloat16");
    assert!(bf16["min_cos_visual_embed"].as_f64().unwrap() > 0.99, "{bf16}");
}

/// `--llm-layers N` writes N LM layers at the preset's widths (config and weights agree) and the
/// checkpoint loads and runs; a preset name that does not exist is refused with the list.
#[test]
fn llm_layers_sets_the_lm_depth_of_a_preset() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let out = univla()
        .args([
            "make-checkpoint",
            "--preset",
            "tiny",
            "--llm-layers",
            "3",
            "--head",
            "r2r",
            "--out",
        ])
        .arg(&ckpt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["text_config"]["num_hidden_layers"], 3);
    assert_eq!(config["text_config"]["hidden_size"], 64);
    let weights = tch::Tensor::read_safetensors(ckpt.join("model.safetensors")).unwrap();
    let layers: std::collections::BTreeSet<&str> = weights
        .iter()
        .filter_map(|(k, _)| k.strip_prefix("language_model.model.layers.")?.split('.').next())
        .collect();
    assert_eq!(layers, ["0", "1", "2"].into_iter().collect());
    let out = univla()
        .args(["infer", "--greedy", "--json", "--instruction", "go", "--checkpoint"])
        .arg(&ckpt)
        .arg("--decoder")
        .arg(ckpt.join("action_decoder_r2r.safetensors"))
        .arg("--image")
        .arg(common::fixture().join("images/r2r_step0.png"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for bad in [["--preset", "huge"], ["--llm-layers", "0"]] {
        let out = univla()
            .arg("make-checkpoint")
            .args(bad)
            .arg("--out")
            .arg(dir.path().join("bad"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(err.contains("wide") || err.contains("layer"), "{bad:?}: {err}");
    }
}
