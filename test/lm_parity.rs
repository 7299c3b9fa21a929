//! Language-model parity against the official code: from the golden projector output and the
//! golden prompt ids, the prefix hidden states, the logits of each decode step, the greedy latent
//! ids and the extracted `visual_embed` / `latent_action` states must match the fixture.
mod common;

use common::{assert_close, fixture, ids as ids_of, Golden};
use tch::{Device, Kind, Tensor};
use univla_ros::model::generate::Decoding;
use univla_ros::model::llama::{KvCache, Llama, Rope};
use univla_ros::model::prompt::{build_prompt, PromptStyle, PromptTokenizer};
use univla_ros::model::{VarBuilder, VlaConfig};

fn golden() -> Golden {
    Golden::load()
}

#[test]
fn prompts_and_token_ids_match_reference() {
    let g = golden();
    let tok = PromptTokenizer::from_file(&fixture().join("checkpoint/tokenizer.json")).unwrap();
    for (variant, style) in [
        ("deploy", PromptStyle::Standard),
        ("libero", PromptStyle::Standard),
        ("r2r", PromptStyle::R2rListRepr),
    ] {
        let instruction = g.json[variant]["instruction"].as_str().unwrap();
        let mut history = String::new();
        for (t, step) in g.json[variant]["steps"].as_array().unwrap().iter().enumerate() {
            let prompt = build_prompt(instruction, &history, style);
            assert_eq!(prompt, step["prompt"].as_str().unwrap(), "{variant} step {t} prompt");
            assert_eq!(
                tok.encode(&prompt).unwrap(),
                ids_of(&step["input_ids_generate"]),
                "{variant} step {t} ids"
            );
            history = step["hist_action_out"].as_str().unwrap().to_owned();
        }
    }
}

#[test]
fn language_model_matches_reference_greedy() {
    let g = golden();
    let cfg = VlaConfig::from_file(&fixture().join("checkpoint/config.json")).unwrap();
    let vb = VarBuilder::from_safetensors(
        &[fixture().join("checkpoint/model.safetensors")],
        Kind::Float,
        Device::Cpu,
    )
    .unwrap();
    let lm = Llama::new(&vb.pp("language_model"), &cfg.text_config).unwrap();
    let rope = Rope::new(&cfg.text_config, 512, Kind::Float, Device::Cpu).unwrap();
    let mut cache = KvCache::new(&cfg.text_config, 512, Kind::Float, Device::Cpu).unwrap();
    for variant in ["deploy", "libero", "r2r"] {
        for (t, step) in g.json[variant]["steps"].as_array().unwrap().iter().enumerate() {
            let key = |name: &str| format!("{variant}/step{t}/{name}");
            let Some(proj) = g.tensors.get(&key("projector_features")) else {
                continue;
            };
            let ids = ids_of(&step["input_ids_generate"]);
            let ids_t = Tensor::from_slice(&ids).view([1, -1]);
            let embeds = Tensor::cat(
                &[
                    lm.embed(&ids_t.narrow(1, 0, 1)).unwrap(),
                    proj.shallow_clone(),
                    lm.embed(&ids_t.narrow(1, 1, ids.len() as i64 - 1)).unwrap(),
                ],
                1,
            );
            cache.reset();
            let mut collected = Vec::new();
            let hidden = lm
                .forward_embeds(&embeds, &rope, &mut cache, Some(&mut collected))
                .unwrap();
            assert_close(
                &key("lm_prefix_hidden_states"),
                &Tensor::cat(&collected, 0),
                &g.tensors[&key("lm_prefix_hidden_states")],
            );
            let n = hidden.size()[1];
            let mut states = vec![hidden.narrow(1, n - 1, 1)];
            let mut logits = vec![lm.logits(&states[0]).squeeze_dim(1)];
            let mut tokens = vec![];
            for _ in 0..4 {
                let tok = Decoding::Greedy.next_token(logits.last().unwrap(), &[2]).unwrap();
                tokens.push(tok.int64_value(&[0, 0]));
                if tokens.len() == 4 {
                    break;
                }
                let h = lm
                    .forward_embeds(&lm.embed(&tok).unwrap(), &rope, &mut cache, None)
                    .unwrap();
                logits.push(lm.logits(&h).squeeze_dim(1));
                states.push(h);
            }
            assert_eq!(
                tokens,
                ids_of(&step["generated_latent_ids"]),
                "{variant} step {t} latent ids"
            );
            assert_close(
                &key("logits_last_per_generate_call"),
                &Tensor::cat(&logits, 0),
                &g.tensors[&key("logits_last_per_generate_call")],
            );
            assert_close(
                &key("visual_embed"),
                &hidden.narrow(1, 0, 256),
                &g.tensors[&key("visual_embed")],
            );
            assert_close(
                &key("latent_action"),
                &Tensor::cat(&states, 1),
                &g.tensors[&key("latent_action")],
            );
        }
    }
}
