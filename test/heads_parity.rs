//! Parity of the action decoder heads, the temporal ensemble and the post-processing with the
//! official PyTorch code, on the golden fixture: every variant (real-world deploy, LIBERO, R2R),
//! every recorded step, heads loaded from both the `torch.save` file and the safetensors file.
mod common;

use std::path::Path;

use common::{assert_close_f64, assert_close_tol as assert_close, checkpoint, to_f64s, Golden};
use tch::{Device, Tensor};
use univla_ros::model::heads::{ActionHead, HeadKind, HeadOutput};
use univla_ros::runtime::ensemble::TemporalEnsembler;
use univla_ros::runtime::postprocess::{Action, NavAction, PostProcessor, Preset};
use univla_ros::runtime::stats::DatasetStatistics;

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

struct Variant {
    name: &'static str,
    file: &'static str,
    kind: HeadKind,
    window: i64,
    action_dim: i64,
    /// Golden field of the latent-action pool output.
    pool_field: &'static str,
}

const VARIANTS: [Variant; 3] = [
    Variant {
        name: "deploy",
        file: "action_decoder",
        kind: HeadKind::RealWorld,
        window: 12,
        action_dim: 7,
        pool_field: "decoder_attn_pool_out",
    },
    Variant {
        name: "libero",
        file: "action_decoder_libero",
        kind: HeadKind::Libero,
        window: 12,
        action_dim: 7,
        pool_field: "decoder_latent_action_pool_out",
    },
    Variant {
        name: "r2r",
        file: "action_decoder_r2r",
        kind: HeadKind::R2r,
        window: 4,
        action_dim: 4,
        pool_field: "decoder_attn_pool_out",
    },
];

fn ensembler(golden: &Golden, v: &Variant) -> TemporalEnsembler {
    let e = TemporalEnsembler::for_head(v.kind, v.window as usize, v.action_dim as usize).unwrap();
    let n = golden.json[v.name]["temporal_size"].as_u64().expect("temporal_size") as usize;
    assert_eq!(e.temporal_size(), n, "{}: reference temporal size", v.name);
    let weights = common::json_f64s(&golden.json[v.name]["temporal_weights"]);
    if let Some(w) = weights {
        assert_close_f64(&format!("{}: temporal weights", v.name), e.weights(), &w, 1e-15, 0.0);
    }
    e
}

fn post_processor(v: &Variant) -> PostProcessor {
    let preset = Preset::for_head(v.kind);
    let bounds = (preset == Preset::Libero).then(|| {
        let stats = DatasetStatistics::from_file(&checkpoint().join("dataset_statistics.json")).unwrap();
        // `libero_10` resolves to `libero_10_no_noops`, as in the reference evaluation.
        stats.action_bounds(Some("libero_10")).unwrap()
    });
    PostProcessor::new(preset, bounds, None).unwrap()
}

/// Compares the ensemble state after a step with the reference's buffers.
fn check_ensemble(golden: &Golden, v: &Variant, t: usize, e: &TemporalEnsembler, exact: bool) {
    let what = format!("{} step {t}", v.name);
    let buffer = golden.step_tensor(v.name, t, "action_buffer_after");
    let expected = to_f64s(&buffer);
    if exact {
        assert_eq!(
            e.buffer(),
            expected.as_slice(),
            "{what}: action buffer (reference chunks)"
        );
    } else {
        assert_close_f64(&format!("{what}: action buffer"), e.buffer(), &expected, RTOL, ATOL);
    }
    let mask: Vec<bool> = to_f64s(&golden.step_tensor(v.name, t, "action_buffer_mask_after"))
        .iter()
        .map(|&m| m != 0.0)
        .collect();
    assert_eq!(e.mask(), mask.as_slice(), "{what}: action buffer mask");
}

/// Compares the final action(s) of a step.
fn check_final(golden: &Golden, v: &Variant, t: usize, ensembled: &[f64], post: &PostProcessor) {
    let what = format!("{} step {t}", v.name);
    match v.kind {
        HeadKind::RealWorld => {
            let expected = golden.step_f64s(v.name, t, "ensembled_action");
            assert_close_f64(&format!("{what}: ensembled_action"), ensembled, &expected, RTOL, ATOL);
        }
        HeadKind::Libero => {
            let expected = golden.step_f64s(v.name, t, "action_unnormalized");
            assert_close_f64(
                &format!("{what}: action_unnormalized"),
                &post.unnormalized(ensembled),
                &expected,
                RTOL,
                ATOL,
            );
            let Action::Arm(a) = post.apply(ensembled).unwrap() else {
                panic!("{what}: not an arm action")
            };
            let expected = golden.step_f64s(v.name, t, "action_final");
            assert_close_f64(&format!("{what}: action_final"), &a, &expected, RTOL, ATOL);
            assert_eq!(a[6], expected[6], "{what}: gripper");
        }
        HeadKind::R2r => {
            let expected = golden.step_f64s(v.name, t, "ensembled_probs");
            assert_close_f64(&format!("{what}: ensembled_probs"), ensembled, &expected, RTOL, ATOL);
            let id = golden.step(v.name, t)["action_discrete"].as_u64().unwrap() as usize;
            assert_eq!(
                post.apply(ensembled).unwrap(),
                Action::Nav(NavAction::from_id(id).unwrap()),
                "{what}"
            );
        }
    }
}

fn check_head_outputs(golden: &Golden, v: &Variant, t: usize, out: &HeadOutput, label: &str) {
    let what = |f: &str| format!("{} step {t} ({label}): {f}", v.name);
    let g = |f: &str| golden.step_tensor(v.name, t, f);
    assert_close(
        &what("visual_pool"),
        out.visual_pool_out
            .as_ref()
            .expect("every fixture head pools the visual embedding"),
        &g("decoder_visual_pool_out"),
        RTOL,
        ATOL,
    );
    assert_close(&what(v.pool_field), &out.action_pool_out, &g(v.pool_field), RTOL, ATOL);
    match (&out.proprio_out, v.kind) {
        (Some(p), HeadKind::RealWorld) => {
            assert_close(&what("proprio_proj"), p, &g("decoder_proprio_proj_out"), RTOL, ATOL)
        }
        (None, HeadKind::RealWorld) => panic!("{}", what("no proprio output")),
        (p, _) => assert!(p.is_none()),
    }
    assert_close(&what("raw output"), &out.raw, &g("decoder_raw_output"), RTOL, ATOL);
    match v.kind {
        HeadKind::RealWorld => {
            let used = out.chunk.narrow(1, v.window - 8, 8);
            assert_close(&what("chunk used"), &used, &g("decoder_chunk_used"), RTOL, ATOL);
        }
        HeadKind::R2r => assert_close(
            &what("softmax chunk"),
            &out.chunk,
            &g("decoder_softmax_chunk"),
            RTOL,
            ATOL,
        ),
        HeadKind::Libero => {}
    }
}

/// The chunk the reference fed to its ensemble, from the golden tensors.
fn reference_chunk(golden: &Golden, v: &Variant, t: usize) -> Vec<f64> {
    match v.kind {
        HeadKind::RealWorld => to_f64s(&golden.step_tensor(v.name, t, "decoder_chunk_used")),
        HeadKind::R2r => to_f64s(&golden.step_tensor(v.name, t, "decoder_softmax_chunk")),
        HeadKind::Libero => to_f64s(&golden.step_tensor(v.name, t, "decoder_raw_output")),
    }
}

fn run_variant(golden: &Golden, v: &Variant, path: &Path) {
    let head = ActionHead::load(path, Device::Cpu).unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
    assert_eq!(head.kind(), v.kind, "{}", path.display());
    assert_eq!(head.window(), v.window);
    assert_eq!(head.action_dim(), v.action_dim);
    assert_eq!(head.n_heads(), 4, "n_heads from action_decoder_config.json");
    assert_eq!(head.needs_proprio(), v.kind == HeadKind::RealWorld);
    let label = path.file_name().unwrap().to_string_lossy().into_owned();
    let steps = golden.steps(v.name).len();
    assert_eq!(steps, 6, "{}: golden steps", v.name);
    let post = post_processor(v);
    let mut ours = ensembler(golden, v);
    let mut reference = ensembler(golden, v);
    let (mut worst_raw, mut worst_final) = (0.0f64, 0.0f64);
    for t in 0..steps {
        let visual = golden.step_tensor(v.name, t, "visual_embed");
        let latent = golden.step_tensor(v.name, t, "latent_action");
        let proprio: Option<Tensor> = golden
            .step_has_tensor(v.name, t, "proprio")
            .then(|| golden.step_tensor(v.name, t, "proprio"));
        let out = head.forward(&visual, &latent, proprio.as_ref()).unwrap();
        check_head_outputs(golden, v, t, &out, &label);
        worst_raw = worst_raw.max(common::max_abs_diff(
            &out.raw,
            &golden.step_tensor(v.name, t, "decoder_raw_output"),
        ));

        // Our chunks through our ensemble: close to the reference at every step.
        let ensembled = ours.push(&out.chunk_f64().unwrap()).unwrap();
        check_ensemble(golden, v, t, &ours, false);
        check_final(golden, v, t, &ensembled, &post);
        let (field, ours_final) = match v.kind {
            HeadKind::RealWorld => ("ensembled_action", ensembled.clone()),
            HeadKind::Libero => ("action_unnormalized", post.unnormalized(&ensembled)),
            HeadKind::R2r => ("ensembled_probs", ensembled.clone()),
        };
        let expected = golden.step_f64s(v.name, t, field);
        let d = ours_final
            .iter()
            .zip(&expected)
            .map(|(a, e)| (a - e).abs())
            .fold(0.0, f64::max);
        worst_final = worst_final.max(d);

        // The reference's own chunks through our ensemble: the buffers match bit for bit.
        let ensembled = reference.push(&reference_chunk(golden, v, t)).unwrap();
        check_ensemble(golden, v, t, &reference, true);
        check_final(golden, v, t, &ensembled, &post);
    }
    eprintln!("{label}: max |raw − golden| {worst_raw:e}, max |final action − golden| {worst_final:e}");
}

#[test]
fn heads_match_reference_from_torch_save_files() {
    let golden = Golden::load();
    for v in &VARIANTS {
        run_variant(&golden, v, &checkpoint().join(format!("{}.pt", v.file)));
    }
}

#[test]
fn heads_match_reference_from_safetensors_files() {
    let golden = Golden::load();
    for v in &VARIANTS {
        run_variant(&golden, v, &checkpoint().join(format!("{}.safetensors", v.file)));
    }
}

#[test]
fn real_world_head_requires_proprio_and_checks_shapes() {
    let golden = Golden::load();
    let head = ActionHead::load(&checkpoint().join("action_decoder.safetensors"), Device::Cpu).unwrap();
    let visual = golden.step_tensor("deploy", 0, "visual_embed");
    let latent = golden.step_tensor("deploy", 0, "latent_action");
    assert!(head.forward(&visual, &latent, None).is_err());
    let wrong = Tensor::zeros([1, 6], (tch::Kind::Float, Device::Cpu));
    assert!(head.forward(&visual, &latent, Some(&wrong)).is_err());
    let narrow = visual.narrow(2, 0, 32);
    let proprio = golden.step_tensor("deploy", 0, "proprio");
    assert!(head.forward(&narrow, &latent, Some(&proprio)).is_err());
}

#[test]
fn head_count_defaults_to_eight_without_a_config_entry() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("head.safetensors");
    std::fs::copy(checkpoint().join("action_decoder_libero.safetensors"), &copy).unwrap();
    let head = ActionHead::load(&copy, Device::Cpu).unwrap();
    assert_eq!(head.n_heads(), 8);
    // With the wrong head count the outputs differ from the reference (the count matters).
    let golden = Golden::load();
    let out = head
        .forward(
            &golden.step_tensor("libero", 0, "visual_embed"),
            &golden.step_tensor("libero", 0, "latent_action"),
            None,
        )
        .unwrap();
    assert!(common::max_abs_diff(&out.raw, &golden.step_tensor("libero", 0, "decoder_raw_output")) > 1e-3);
}
