//! End-to-end parity: from the fixture's PNG images, through preprocessing, the VLM, the action
//! heads (loaded from the `torch.save` files) and post-processing, every step of every variant
//! reproduces the official code's prompt, token ids, raw chunk and final action.
mod common;

use common::{assert_close, assert_close_slice, floats, ids, Golden};
use tch::Tensor;
use univla_ros::model::generate::Decoding;
use univla_ros::runtime::postprocess::Action;
use univla_ros::runtime::preprocess::RgbImage;
use univla_ros::runtime::session::{Policy, PolicyOptions, Session};

fn run_variant(variant: &str, decoder: &str, unnorm_key: Option<&str>) {
    let g = Golden::load();
    let mut opts = PolicyOptions::new(common::checkpoint(), common::checkpoint().join(decoder));
    opts.decoding = Decoding::Greedy;
    opts.unnorm_key = unnorm_key.map(str::to_owned);
    let policy = Policy::load(opts).unwrap();
    let mut session = Session::new(policy).unwrap();
    session.reset(g.json[variant]["instruction"].as_str().unwrap());
    for (t, step) in g.steps(variant).iter().enumerate() {
        let image = RgbImage::load(common::fixture().join(format!("images/{variant}_step{t}.png"))).unwrap();
        let proprio: Option<Vec<f64>> = g
            .try_tensor(variant, t, "proprio")
            .map(|p| Vec::<f64>::try_from(p.to_kind(tch::Kind::Double).view([-1])).unwrap());
        let out = session.step(&image, proprio.as_deref()).unwrap();
        let inf = out.inference.as_ref().unwrap();
        assert_eq!(
            inf.prompt,
            step["prompt"].as_str().unwrap(),
            "{variant} step {t} prompt"
        );
        assert_eq!(
            inf.input_ids,
            ids(&step["input_ids_generate"]),
            "{variant} step {t} ids"
        );
        assert_eq!(
            inf.latent_ids,
            ids(&step["generated_latent_ids"]),
            "{variant} step {t} latent ids"
        );
        let chunk: Vec<f64> = inf.chunk.concat();
        let rows = inf.chunk.len() as i64;
        let chunk_t = Tensor::from_slice(&chunk).view([1, rows, -1]);
        let golden_chunk = match variant {
            "r2r" => g.tensor(variant, t, "decoder_softmax_chunk").shallow_clone(),
            _ => g.tensor(variant, t, "decoder_raw_output").view([1, rows, -1]),
        };
        assert_close(&format!("{variant} step {t} chunk"), &chunk_t, &golden_chunk);
        match (variant, &out.action) {
            ("deploy", Action::Arm(a)) => assert_close_slice(
                &format!("deploy step {t} action"),
                a,
                &floats(&step["ensembled_action"]),
            ),
            ("libero", Action::Arm(a)) => {
                let post = session.policy().post_processor();
                assert_close_slice(
                    &format!("libero step {t} unnormalized"),
                    &post.unnormalized(&out.pre_action),
                    &floats(&step["action_unnormalized"]),
                );
                assert_close_slice(&format!("libero step {t} final"), a, &floats(&step["action_final"]));
            }
            ("r2r", Action::Nav(a)) => {
                assert_close_slice(
                    &format!("r2r step {t} probs"),
                    &out.pre_action,
                    &floats(&step["ensembled_probs"]),
                );
                assert_eq!(
                    a.id() as i64,
                    step["action_discrete"].as_i64().unwrap(),
                    "r2r step {t} action"
                );
            }
            (v, a) => panic!("{v}: unexpected action {a:?}"),
        }
    }
}

#[test]
fn deploy_real_world_head_matches_reference() {
    run_variant("deploy", "action_decoder.pt", None);
}

#[test]
fn libero_head_matches_reference() {
    run_variant("libero", "action_decoder_libero.pt", Some("libero_10_no_noops"));
}

#[test]
fn r2r_head_matches_reference() {
    run_variant("r2r", "action_decoder_r2r.pt", None);
}
