//! Corrupted or hostile `config.json` / `action_decoder_config.json` values end `univla infer`
//! with a non-zero exit and a one-line error naming the file and the field, never a panic.
mod common;

use std::path::Path;
use std::process::Command;

/// Copies the tiny fixture checkpoint into `to`, so each case can corrupt its own copy.
fn copy_checkpoint(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(common::checkpoint()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Runs `univla infer` on `dir` and returns its stderr; the run must fail cleanly.
fn infer_fails(dir: &Path, what: &str) -> String {
    // As a user runs it: without backtraces, which would add lines after the error.
    let out = Command::new(env!("CARGO_BIN_EXE_univla"))
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .args([
            "infer",
            "--greedy",
            "--json",
            "--unnorm-key",
            "libero_10_no_noops",
            "--checkpoint",
        ])
        .arg(dir)
        .arg("--decoder")
        .arg(dir.join("action_decoder_libero.pt"))
        .args(["--instruction", "pick up the bowl", "--image"])
        .arg(common::fixture().join("images/libero_step0.png"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: infer succeeded\n{stderr}");
    assert_ne!(out.status.code(), Some(101), "{what}: exit 101 (panic)\n{stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: expected a one-line error, got:\n{stderr}");
    stderr
}

/// Each `text_config` corruption, as (field its error must name, value written).
fn text_config_cases() -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    vec![
        ("num_key_value_heads", json!(0)),
        ("num_key_value_heads", json!(-2)),
        ("num_attention_heads", json!(0)),
        ("num_attention_heads", json!(-4)),
        ("max_position_embeddings", json!(-1)),
        ("max_position_embeddings", json!(0)),
        ("rope_theta", json!(0.0)),
        ("rope_theta", json!(-10000.0)),
        ("rms_norm_eps", json!(-1e-6)),
        ("eos_token_id", json!(1_000_000)),
        ("eos_token_id", json!(-1)),
        ("bos_token_id", json!(40_000)),
        ("vocab_size", json!(0)),
        ("intermediate_size", json!(-172)),
        ("hidden_size", json!(-64)),
        ("num_hidden_layers", json!(0)),
    ]
}

#[test]
fn corrupted_text_config_fields_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    copy_checkpoint(tmp.path());
    let cfg_path = tmp.path().join("config.json");
    let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    for (field, value) in text_config_cases() {
        let mut cfg = original.clone();
        cfg["text_config"][field] = value.clone();
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        let what = format!("text_config.{field} = {value}");
        let err = infer_fails(tmp.path(), &what);
        assert!(
            err.contains("config.json") && err.contains(field),
            "{what}: error must name the file and field: {err}"
        );
    }
    // Sizes that do not divide.
    let mut cfg = original.clone();
    cfg["text_config"]["num_key_value_heads"] = serde_json::json!(3);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = infer_fails(tmp.path(), "num_key_value_heads = 3");
    assert!(
        err.contains("config.json") && err.contains("num_key_value_heads"),
        "{err}"
    );
}

#[test]
fn corrupted_top_level_config_fields_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    copy_checkpoint(tmp.path());
    let cfg_path = tmp.path().join("config.json");
    let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    for field in ["pad_to_multiple_of", "llm_max_length"] {
        let mut cfg = original.clone();
        cfg[field] = serde_json::json!(0);
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        let err = infer_fails(tmp.path(), field);
        assert!(err.contains("config.json") && err.contains(field), "{field}: {err}");
    }
}

#[test]
fn corrupted_action_decoder_config_fields_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    copy_checkpoint(tmp.path());
    let path = tmp.path().join("action_decoder_config.json");
    let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let decoders = original["decoders"].as_object().unwrap();
    let key = decoders
        .iter()
        .find(|(_, e)| e["pt_file"] == "action_decoder_libero.pt")
        .map(|(k, _)| k.clone())
        .unwrap();
    for (field, value) in [("window_size", 0), ("n_heads", -1), ("action_dim", 0)] {
        let mut cfg = original.clone();
        cfg["decoders"][&key][field] = serde_json::json!(value);
        std::fs::write(&path, cfg.to_string()).unwrap();
        let what = format!("{field} = {value}");
        let err = infer_fails(tmp.path(), &what);
        assert!(
            err.contains("action_decoder_config.json") && err.contains(field),
            "{what}: {err}"
        );
    }
}

/// Writes `original` with `edit` applied to `path`, runs `univla infer` on `dir` and checks that
/// it fails with an error naming `file` and `field`.
fn edited_fails(
    dir: &Path,
    path: &Path,
    original: &serde_json::Value,
    file: &str,
    field: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let mut cfg = original.clone();
    edit(&mut cfg);
    std::fs::write(path, cfg.to_string()).unwrap();
    let what = format!("{file}: {field} in {cfg}");
    let err = infer_fails(dir, &what);
    assert!(err.contains(file) && err.contains(field), "{what}: {err}");
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn corrupted_generation_config_fields_are_named() {
    use serde_json::json;
    let tmp = tempfile::tempdir().unwrap();
    copy_checkpoint(tmp.path());
    let path = tmp.path().join("generation_config.json");
    let original = read_json(&path);
    for (field, value) in [
        ("eos_token_id", json!(99_999)),
        ("eos_token_id", json!(-1)),
        ("eos_token_id", json!([2, 40_000])),
        ("pad_token_id", json!(1_000_000)),
        ("bos_token_id", json!(-3)),
        ("top_k", json!(3)),
        ("num_beams", json!(4)),
    ] {
        edited_fails(tmp.path(), &path, &original, "generation_config.json", field, |c| {
            c[field] = value
        });
    }
}

/// One corruption of a JSON file.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

#[test]
fn corrupted_preprocessor_config_fields_are_named() {
    use serde_json::json;
    let tmp = tempfile::tempdir().unwrap();
    copy_checkpoint(tmp.path());
    let path = tmp.path().join("preprocessor_config.json");
    let original = read_json(&path);
    let file = "preprocessor_config.json";
    let both = |c: &mut serde_json::Value, list: &str, key: &str, v: serde_json::Value| {
        for i in 0..2 {
            c[list][i][key] = v.clone();
        }
    };
    let cases: Vec<(&str, Edit)> = vec![
        (
            "tvf_normalize_params[0].std",
            Box::new(|c| c["tvf_normalize_params"][0]["std"][1] = json!(-0.5)),
        ),
        (
            "tvf_normalize_params[1].std",
            Box::new(|c| c["tvf_normalize_params"][1]["std"][0] = json!(0.0)),
        ),
        (
            "tvf_normalize_params[0].mean",
            Box::new(|c| c["tvf_normalize_params"][0]["mean"][2] = json!(1e39)),
        ),
        (
            "tvf_normalize_params[1].mean",
            Box::new(|c| c["tvf_normalize_params"][1]["mean"] = json!([0.5, 0.5])),
        ),
        (
            "tvf_resize_params[0].size",
            Box::new(move |c| both(c, "tvf_resize_params", "size", json!([0, 0]))),
        ),
        (
            "tvf_resize_params[0].size",
            Box::new(move |c| both(c, "tvf_resize_params", "size", json!([100_000, 100_000]))),
        ),
        (
            "tvf_resize_params[0].size",
            Box::new(move |c| both(c, "tvf_resize_params", "size", json!([112, 112]))),
        ),
        (
            "tvf_crop_params[0].output_size",
            Box::new(move |c| both(c, "tvf_crop_params", "output_size", json!([0, 224]))),
        ),
        (
            "tvf_crop_params",
            Box::new(move |c| {
                both(c, "tvf_resize_params", "size", json!([448, 448]));
                both(c, "tvf_crop_params", "output_size", json!([448, 448]));
            }),
        ),
        (
            "image_resize_strategy",
            Box::new(|c| c["image_resize_strategy"] = json!("stretch")),
        ),
    ];
    for (field, edit) in cases {
        edited_fails(tmp.path(), &path, &original, file, field, edit);
    }
}

#[test]
fn action_decoder_config_that_does_not_fit_the_weights_is_named() {
    use serde_json::json;
    let tmp = tempfile::tempdir().unwrap();
    copy_checkpoint(tmp.path());
    let path = tmp.path().join("action_decoder_config.json");
    let original = read_json(&path);
    let key = original["decoders"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, e)| e["pt_file"] == "action_decoder_libero.pt")
        .map(|(k, _)| k.clone())
        .unwrap();
    let file = "action_decoder_config.json";
    // The libero head has 84 output rows (12 × 7).
    let cases: Vec<(&str, Vec<(&str, serde_json::Value)>)> = vec![
        ("action_dim", vec![("action_dim", json!(5))]),
        ("window_size", vec![("window_size", json!(5))]),
        (
            "action_dim",
            vec![("window_size", json!(1i64 << 62)), ("action_dim", json!(4))],
        ),
        ("temporal_size", vec![("temporal_size", json!(20))]),
        ("n_heads", vec![("n_heads", json!(5))]),
    ];
    for (field, values) in cases {
        edited_fails(tmp.path(), &path, &original, file, field, |c| {
            for (k, v) in values {
                c["decoders"][&key][k] = v;
            }
        });
    }
}
