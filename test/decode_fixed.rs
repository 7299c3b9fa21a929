//! The device-position decode path (fixed buffers, position in a device tensor, attention over
//! the whole cache under a mask: what CUDA graphs record and replay) against today's
//! host-position path and the official code's fixture, on the CPU: the same latent ids, the
//! same hidden states and logits, the same draws when sampling, and stale cache entries from a
//! longer earlier prompt kept out by the mask. `graphs` mode, off CUDA or without the
//! `cuda-graphs` feature, must fall back to the same eager path.
mod common;

use common::{assert_close, ids as ids_of, max_abs_diff, Golden};
use std::sync::Arc;

use tch::Tensor;
use univla_ros::model::generate::Decoding;
use univla_ros::model::vla::{DecodeMode, DecodeState, LatentOutput, UniVla};
use univla_ros::runtime::preprocess::RgbImage;
use univla_ros::runtime::session::{Policy, PolicyOptions, Session};

const CAPACITY: i64 = 512;

/// The fixture's policy on the CPU in f32.
fn policy() -> Arc<Policy> {
    let ck = common::checkpoint();
    Policy::load(PolicyOptions::new(&ck, ck.join("action_decoder.pt"))).unwrap()
}

/// Every fixture step: (name, projected patches [1, P, H] of its image, prompt ids, the
/// reference's latent ids).
fn cases(g: &Golden, policy: &Policy) -> Vec<(String, Tensor, Vec<i64>, Vec<i64>)> {
    let mut out = Vec::new();
    for variant in ["deploy", "libero", "r2r"] {
        for (t, step) in g.steps(variant).iter().enumerate() {
            let image = RgbImage::load(common::fixture().join(format!("images/{variant}_step{t}.png"))).unwrap();
            let pixels = policy.processor().pixel_values(&image).unwrap();
            let proj = tch::no_grad(|| policy.vla().encode_image(&pixels, &mut ()).unwrap());
            out.push((
                format!("{variant} step {t}"),
                proj,
                ids_of(&step["input_ids_generate"]),
                ids_of(&step["generated_latent_ids"]),
            ));
        }
    }
    assert_eq!(out.len(), 18, "fixture steps");
    out
}

fn step(vla: &UniVla, state: &mut DecodeState, proj: &Tensor, ids: &[i64], decoding: Decoding) -> LatentOutput {
    tch::no_grad(|| vla.latent_step(proj, ids, decoding, state, true, &mut ()).unwrap())
}

/// Asserts two outputs agree: ids exactly, states and logits to float rounding.
fn assert_same(name: &str, got: &LatentOutput, want: &LatentOutput) -> f64 {
    assert_eq!(got.generated, want.generated, "{name}: ids");
    assert_eq!(got.prefix_len, want.prefix_len, "{name}: prefix");
    assert!(
        got.visual_embed.equal(&want.visual_embed),
        "{name}: visual_embed (same prefill)"
    );
    let d_states = max_abs_diff(&got.latent_action, &want.latent_action);
    let d_logits = max_abs_diff(got.logits.as_ref().unwrap(), want.logits.as_ref().unwrap());
    assert!(d_states <= 1e-5, "{name}: latent_action differs by {d_states}");
    assert!(d_logits <= 1e-4, "{name}: logits differ by {d_logits}");
    d_states.max(d_logits)
}

#[test]
fn fixed_decode_matches_dynamic_and_reference_greedy() {
    let g = Golden::load();
    let policy = policy();
    let vla = policy.vla();
    // One state per mode, reused across all steps and variants (prompts of different lengths):
    // the fixed buffers and the stale cache entries must not leak from one step into the next.
    let mut dynamic = vla.decode_state_with(CAPACITY, DecodeMode::Dynamic).unwrap();
    let mut fixed = vla.decode_state_with(CAPACITY, DecodeMode::Fixed).unwrap();
    let mut graphs = vla.decode_state_with(CAPACITY, DecodeMode::Graphs).unwrap();
    let mut outputs = Vec::new();
    let mut worst: f64 = 0.0;
    for (name, proj, ids, golden_ids) in cases(&g, &policy) {
        let d = step(vla, &mut dynamic, &proj, &ids, Decoding::Greedy);
        let f = step(vla, &mut fixed, &proj, &ids, Decoding::Greedy);
        let gr = step(vla, &mut graphs, &proj, &ids, Decoding::Greedy);
        assert_eq!(d.generated, golden_ids, "{name}: dynamic ids vs reference");
        worst = worst.max(assert_same(&format!("{name} fixed"), &f, &d));
        worst = worst.max(assert_same(&format!("{name} graphs mode"), &gr, &d));
        outputs.push((name, f, d));
    }
    assert_eq!(fixed.effective_mode(), "fixed");
    assert_eq!(
        graphs.effective_mode(),
        "fixed (graph capture failed)",
        "graphs mode on the CPU"
    );
    assert_eq!(dynamic.effective_mode(), "dynamic");
    // Outputs are copies: later steps did not overwrite earlier ones.
    for (name, f, d) in &outputs {
        assert!(
            f.latent_action.allclose(&d.latent_action, 1e-5, 1e-5, false),
            "{name}: overwritten"
        );
    }
    eprintln!("worst fixed-vs-dynamic difference: {worst:e}");
}

#[test]
fn fixed_decode_matches_reference_states() {
    let g = Golden::load();
    let policy = policy();
    let vla = policy.vla();
    let mut fixed = vla.decode_state_with(CAPACITY, DecodeMode::Fixed).unwrap();
    let cases = cases(&g, &policy);
    let mut checked = 0;
    for (i, variant) in ["deploy", "libero", "r2r"].into_iter().enumerate() {
        for t in 0..g.steps(variant).len() {
            let (name, proj, ids, golden_ids) = &cases[i * 6 + t];
            let out = step(vla, &mut fixed, proj, ids, Decoding::Greedy);
            assert_eq!(&out.generated, golden_ids, "{name}");
            let key = |n: &str| format!("{variant}/step{t}/{n}");
            if let Some(want) = g.tensors.get(&key("latent_action")) {
                assert_close(&key("latent_action"), &out.latent_action, want);
                checked += 1;
            }
            if let Some(want) = g.tensors.get(&key("logits_last_per_generate_call")) {
                assert_close(&key("logits"), out.logits.as_ref().unwrap(), want);
            }
        }
    }
    assert!(checked >= 6, "{checked} steps with reference latent_action");
}

#[test]
fn fixed_decode_samples_what_dynamic_samples() {
    let g = Golden::load();
    let policy = policy();
    let vla = policy.vla();
    let mut dynamic = vla.decode_state_with(CAPACITY, DecodeMode::Dynamic).unwrap();
    let mut fixed = vla.decode_state_with(CAPACITY, DecodeMode::Fixed).unwrap();
    // A high temperature and no top-k/top-p cut, so that draws really vary between seeds.
    let decoding = Decoding::Sample {
        temperature: 4.0,
        top_k: 0,
        top_p: 1.0,
    };
    let mut distinct = std::collections::BTreeSet::new();
    for (name, proj, ids, _) in cases(&g, &policy).into_iter().take(4) {
        for seed in 0..5 {
            tch::manual_seed(seed);
            let d = step(vla, &mut dynamic, &proj, &ids, decoding);
            tch::manual_seed(seed);
            let f = step(vla, &mut fixed, &proj, &ids, decoding);
            assert_same(&format!("{name} seed {seed}"), &f, &d);
            distinct.insert(d.generated.clone());
        }
    }
    assert!(
        distinct.len() > 5,
        "sampling drew only {} distinct id sets",
        distinct.len()
    );
}

#[test]
fn stale_cache_entries_of_a_longer_prompt_are_masked() {
    let g = Golden::load();
    let policy = policy();
    let vla = policy.vla();
    let mut cases = cases(&g, &policy);
    cases.sort_by_key(|c| std::cmp::Reverse(c.2.len()));
    let (long, short) = (&cases[0], &cases[cases.len() - 1]);
    assert!(
        long.2.len() > short.2.len() + 3,
        "fixture prompts of {} and {} ids",
        long.2.len(),
        short.2.len()
    );
    let mut fixed = vla.decode_state_with(CAPACITY, DecodeMode::Fixed).unwrap();
    step(vla, &mut fixed, &long.1, &long.2, Decoding::Greedy);
    let after_long = step(vla, &mut fixed, &short.1, &short.2, Decoding::Greedy);
    let mut fresh = vla.decode_state_with(CAPACITY, DecodeMode::Dynamic).unwrap();
    let want = step(vla, &mut fresh, &short.1, &short.2, Decoding::Greedy);
    assert_same("short prompt after a long one", &after_long, &want);
}

#[test]
fn decode_modes_parse() {
    assert_eq!("Graphs".parse::<DecodeMode>().unwrap(), DecodeMode::Graphs);
    assert_eq!("fixed".parse::<DecodeMode>().unwrap(), DecodeMode::Fixed);
    assert!("static"
        .parse::<DecodeMode>()
        .unwrap_err()
        .to_string()
        .contains("unknown decode mode"));
}

/// A whole session in `graphs` mode (vision towers, projector and decode steps as graphs; on the
/// CPU the eager fallback) against `dynamic` mode: the same ids and actions at every step.
#[test]
fn graphs_mode_session_matches_dynamic_mode() {
    let g = Golden::load();
    let ck = common::checkpoint();
    let run = |mode: DecodeMode| {
        let mut opts = PolicyOptions::new(&ck, ck.join("action_decoder.pt"));
        opts.decoding = Decoding::Greedy;
        opts.decode = mode;
        let mut session = Session::new(Policy::load(opts).unwrap()).unwrap();
        session.reset(g.json["deploy"]["instruction"].as_str().unwrap());
        let mut out = Vec::new();
        for t in 0..g.steps("deploy").len() {
            let image = RgbImage::load(common::fixture().join(format!("images/deploy_step{t}.png"))).unwrap();
            let proprio =
                Vec::<f64>::try_from(g.tensor("deploy", t, "proprio").to_kind(tch::Kind::Double).view([-1])).unwrap();
            let step = session.step(&image, Some(&proprio)).unwrap();
            out.push((step.inference.unwrap().latent_ids, step.pre_action));
        }
        (out, session.decode_mode())
    };
    let (dynamic, dynamic_mode) = run(DecodeMode::Dynamic);
    let (graphs, graphs_mode) = run(DecodeMode::Graphs);
    assert_eq!(dynamic_mode, "dynamic");
    assert_eq!(graphs_mode, "fixed (graph capture failed)");
    for (t, ((ids_d, act_d), (ids_g, act_g))) in dynamic.iter().zip(&graphs).enumerate() {
        assert_eq!(ids_g, ids_d, "step {t} ids");
        assert_eq!(
            ids_d,
            &ids_of(&g.step("deploy", t)["generated_latent_ids"]),
            "step {t} reference ids"
        );
        let worst = act_d.iter().zip(act_g).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "step {t}: actions differ by {worst}");
    }
}
