//! Vision backbone and projector against the official PyTorch outputs of the fixture (tiny
//! checkpoint, bf16 weights up-cast to f32, f32 CPU compute).
//!
//! Tolerance: `|ours − golden| ≤ 1e-4 · max|golden| + 1e-5` element-wise. Both sides run the
//! same f32 math through libtorch, so differences come only from kernel/threading order.
use std::path::PathBuf;

use serde_json::Value;
use tch::{Device, Kind, Tensor};
use univla_ros::model::projector::{Projector, ProjectorConfig};
use univla_ros::model::vision::VisionTransformer;
use univla_ros::model::vision::{FusedVisionBackbone, VisionConfig, VitConfig, VitKeys, VitOptions, VitOutput};
use univla_ros::model::VarBuilder;
use univla_ros::runtime::preprocess::{ImageProcessor, RgbImage};

const VARIANTS: [&str; 3] = ["deploy", "libero", "r2r"];
const STEPS: usize = 6;
const REL_TOL: f64 = 1e-4;
const ABS_TOL: f64 = 1e-5;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test/data/univla-tiny")
}

fn golden() -> VarBuilder {
    VarBuilder::from_safetensors(&[fixture().join("golden.safetensors")], Kind::Float, Device::Cpu).unwrap()
}

fn golden_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("golden.json")).unwrap()).unwrap()
}

struct Model {
    backbone: FusedVisionBackbone,
    projector: Projector,
}

fn load(kind: Kind) -> Model {
    let ckpt = fixture().join("checkpoint");
    let cfg = VisionConfig::from_config_file(ckpt.join("config.json")).unwrap();
    let config: Value = serde_json::from_str(&std::fs::read_to_string(ckpt.join("config.json")).unwrap()).unwrap();
    let llm_dim = config["text_config"]["hidden_size"].as_i64().unwrap();
    let vb = VarBuilder::from_safetensors(&[ckpt.join("model.safetensors")], kind, Device::Cpu).unwrap();
    let backbone = FusedVisionBackbone::new(vb.pp("vision_backbone"), &cfg).unwrap();
    let pcfg = ProjectorConfig {
        vision_dim: backbone.embed_dim(),
        llm_dim,
        fused: true,
    };
    let projector = Projector::new(vb.pp("projector"), &pcfg).unwrap();
    Model { backbone, projector }
}

/// Asserts the tolerance above and returns the max abs difference.
fn assert_close(ours: &Tensor, gold: &Tensor, what: &str) -> f64 {
    assert_eq!(ours.size(), gold.size(), "{what}: shape");
    let ours = ours.to_kind(Kind::Double);
    let gold = gold.to_kind(Kind::Double);
    let scale = gold.abs().max().double_value(&[]);
    let diff = (&ours - &gold).abs().max().double_value(&[]);
    assert!(
        diff <= REL_TOL * scale + ABS_TOL,
        "{what}: max |diff| {diff:e} (max |golden| {scale})"
    );
    diff
}

fn check_summary(t: &Tensor, summary: &Value, what: &str) {
    let t = t.to_kind(Kind::Double);
    let flat = t.flatten(0, -1);
    let scale = flat.abs().max().double_value(&[]);
    let tol = REL_TOL * scale + ABS_TOL;
    for (i, g) in summary["first8"].as_array().unwrap().iter().enumerate() {
        let (ours, gold) = (flat.double_value(&[i as i64]), g.as_f64().unwrap());
        assert!((ours - gold).abs() <= tol, "{what}: first8[{i}] {ours} vs {gold}");
    }
    let mean = flat.mean(Kind::Double).double_value(&[]);
    assert!(
        (mean - summary["mean"].as_f64().unwrap()).abs() <= tol,
        "{what}: mean {mean}"
    );
    let std = flat.std(false).double_value(&[]);
    assert!(
        (std - summary["std"].as_f64().unwrap()).abs() <= tol,
        "{what}: std {std}"
    );
}

#[test]
fn golden_pixel_values_give_golden_features() {
    let model = load(Kind::Float);
    let g = golden();
    let get = |name: &str| g.get_unchecked(&format!("deploy/step0/{name}")).unwrap();
    let pv = get("pixel_values");
    let (dino, siglip) = model.backbone.forward_parts(&pv).unwrap();
    let siglip = siglip.unwrap();
    let features = model.backbone.forward(&pv).unwrap();
    let projected = model.projector.forward(&features).unwrap();
    for (name, ours) in [
        ("dino_patches", &dino),
        ("siglip_patches", &siglip),
        ("vision_features", &features),
        ("projector_features", &projected),
    ] {
        let diff = assert_close(ours, &get(name), name);
        println!("deploy/step0 {name}: max |diff| = {diff:e}");
    }
    assert_eq!(features.size(), [1, 256, 80]);
    assert_eq!(model.projector.out_dim(), 64);
}

#[test]
fn every_fixture_image_matches_through_preprocessing() {
    let model = load(Kind::Float);
    let proc = ImageProcessor::from_config_file(fixture().join("checkpoint/preprocessor_config.json")).unwrap();
    let summaries = golden_json();
    for variant in VARIANTS {
        for step in 0..STEPS {
            let img = RgbImage::load(fixture().join(format!("images/{variant}_step{step}.png"))).unwrap();
            let pv = proc.pixel_values(&img).unwrap();
            let features = model.backbone.forward(&pv).unwrap();
            let projected = model.projector.forward(&features).unwrap();
            let s = &summaries[variant]["steps"][step];
            let what = format!("{variant}/step{step}");
            if variant == "deploy" && step == 0 {
                let g = golden();
                assert_close(
                    &projected,
                    &g.get_unchecked("deploy/step0/projector_features").unwrap(),
                    &what,
                );
            } else {
                check_summary(&features, &s["vision_features_summary"], &format!("{what} vision"));
                check_summary(
                    &projected,
                    &s["projector_features_summary"],
                    &format!("{what} projector"),
                );
            }
        }
    }
}

#[test]
fn bf16_weights_stay_close_to_f32() {
    let (f32_model, bf16_model) = (load(Kind::Float), load(Kind::BFloat16));
    let pv = golden().get_unchecked("deploy/step0/pixel_values").unwrap();
    let reference = f32_model
        .projector
        .forward(&f32_model.backbone.forward(&pv).unwrap())
        .unwrap();
    let features = bf16_model.backbone.forward(&pv).unwrap();
    assert_eq!(features.kind(), Kind::BFloat16);
    let out = bf16_model.projector.forward(&features).unwrap().to_kind(Kind::Float);
    assert!(
        out.isfinite().all().int64_value(&[]) == 1,
        "bf16 output has non-finite values"
    );
    let diff = (&out - &reference).abs().max().double_value(&[]);
    let scale = reference.abs().max().double_value(&[]);
    println!("bf16 vs f32 projector_features: max |diff| = {diff:.4} (max |f32| = {scale:.3})");
    // bf16 keeps ~3 significant digits; loose sanity bound only.
    assert!(diff < 0.25 * scale, "bf16 drifted: {diff} vs scale {scale}");
}

#[test]
fn loads_only_the_keys_it_needs() {
    // A random source records what the modules ask for: the checkpoint's vision/projector keys
    // minus the final norms, SigLIP's MAP head and each ViT's last block.
    let ckpt = fixture().join("checkpoint");
    let cfg = VisionConfig::from_config_file(ckpt.join("config.json")).unwrap();
    let stored = VarBuilder::from_safetensors(&[ckpt.join("model.safetensors")], Kind::Float, Device::Cpu).unwrap();
    let random = VarBuilder::random(0.02, Kind::Float, Device::Cpu);
    FusedVisionBackbone::new(random.pp("vision_backbone"), &cfg).unwrap();
    let mut requested: Vec<String> = random.created().into_iter().map(|(k, _)| k).collect();
    requested.sort();
    let expected: Vec<String> = stored
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("vision_backbone."))
        .filter(|k| !k.contains(".norm.") && !k.contains(".attn_pool.") && !k.contains(".blocks.2."))
        .collect();
    assert_eq!(requested, expected);
    for (key, t) in random.created() {
        assert_eq!(stored.shape_of(&key).unwrap(), t.size(), "{key}");
    }
}

#[test]
fn final_norm_mode_and_hub_keys() {
    // The LAM mode: all blocks + final norm, dinov2-hub key names and a caller-supplied pos-embed.
    let ckpt = fixture().join("checkpoint");
    let cfg = VisionConfig::from_config_file(ckpt.join("config.json")).unwrap();
    let arch: VitConfig = cfg.backbones().unwrap().remove(0);
    let stored = VarBuilder::from_safetensors(&[ckpt.join("model.safetensors")], Kind::Float, Device::Cpu).unwrap();
    let vb = stored.pp("vision_backbone").pp("featurizer");
    // Re-key the featurizer like a facebookresearch/dinov2 checkpoint.
    let renamed: Vec<(String, Tensor)> = vb
        .keys()
        .into_iter()
        .map(|k| {
            let t = vb.get_unchecked(&k).unwrap();
            let k = k
                .replace("scale_factor", "gamma")
                .replace("reg_token", "register_tokens");
            (k, t)
        })
        .collect();
    let hub = VarBuilder::from_tensors("hub", renamed, Kind::Float, Device::Cpu);
    let pos = vb.get_unchecked("pos_embed").unwrap();
    let opts = |output, pos_embed| VitOptions {
        keys: VitKeys::dinov2_hub(),
        output,
        pos_embed,
    };
    let pv = golden()
        .get_unchecked("deploy/step0/pixel_values")
        .unwrap()
        .narrow(1, 0, 3);
    let penultimate = VisionTransformer::new(hub.clone(), &arch, opts(VitOutput::SecondToLastBlock, None)).unwrap();
    let dino = golden().get_unchecked("deploy/step0/dino_patches").unwrap();
    assert_close(&penultimate.forward(&pv).unwrap(), &dino, "hub keys, second-to-last");
    let full = VisionTransformer::new(hub.clone(), &arch, opts(VitOutput::FinalNormPatchTokens, Some(pos))).unwrap();
    let out = full.forward(&pv).unwrap();
    assert_eq!(out.size(), [1, 256, 32]);
    // The output is the final LayerNorm's: undoing its affine part leaves zero-mean, unit-variance
    // tokens (and it differs from the intermediate features).
    let (w, b) = (
        vb.get_unchecked("norm.weight").unwrap(),
        vb.get_unchecked("norm.bias").unwrap(),
    );
    let normed = (&out - &b) / &w;
    let mean = normed.mean_dim(-1i64, false, Kind::Float).abs().max().double_value(&[]);
    let var = normed.var_dim(-1i64, false, false);
    let var_err = (var - 1.0).abs().max().double_value(&[]);
    assert!(mean < 1e-3 && var_err < 1e-2, "mean {mean}, var error {var_err}");
    assert!((&out - &dino).abs().max().double_value(&[]) > 1e-3);
    let bad_pos = Tensor::zeros([1, 10, 32], (Kind::Float, Device::Cpu));
    let err = VisionTransformer::new(hub, &arch, opts(VitOutput::FinalNormPatchTokens, Some(bad_pos))).unwrap_err();
    assert!(err.to_string().contains("pos_embed"), "{err}");
}
