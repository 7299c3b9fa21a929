//! Batched serving steps equal steps run alone: for batch sizes 1 to 4 with prompts of different
//! lengths (so rows are padded differently), every row gets the latent tokens a lone
//! `Session` gets and raw chunks and actions within 1e-5 (f32, CPU, the fixture's LIBERO head),
//! over 3 steps with history carried over; a bad row fails alone; sampling rows draw from their
//! own seeded generators whatever else is in the batch.
mod common;

use std::sync::Arc;

use univla_ros::model::generate::Decoding;
use univla_ros::runtime::batch::{BatchRow, BatchRunner};
use univla_ros::runtime::preprocess::RgbImage;
use univla_ros::runtime::session::{Episode, EpisodeRng, Policy, PolicyOptions, Session, StepOutput};

const STEPS: usize = 3;

fn policy(decoding: Decoding) -> Arc<Policy> {
    let ckpt = common::checkpoint();
    let mut o = PolicyOptions::new(&ckpt, ckpt.join("action_decoder_libero.pt"));
    o.unnorm_key = Some("libero_10_no_noops".into());
    o.decoding = decoding;
    Policy::load(o).unwrap()
}

fn images() -> Vec<RgbImage> {
    (0..6)
        .map(|t| RgbImage::load(common::fixture().join(format!("images/libero_step{t}.png"))).unwrap())
        .collect()
}

const INSTRUCTIONS: [&str; 4] = [
    "put both the alphabet soup and the tomato sauce in the basket",
    "go",
    "open the top drawer of the cabinet and put the black bowl inside it, then close the drawer",
    "pick up the cup",
];

fn image_for(row: usize, t: usize) -> usize {
    (row * 2 + t) % 6
}

fn alone(p: &Arc<Policy>, row: usize, imgs: &[RgbImage]) -> Vec<StepOutput> {
    let mut s = Session::new(Arc::clone(p)).unwrap();
    s.reset(INSTRUCTIONS[row]);
    (0..STEPS)
        .map(|t| s.step(&imgs[image_for(row, t)], None).unwrap())
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn action_values(s: &StepOutput) -> Vec<f64> {
    match &s.action {
        univla_ros::runtime::postprocess::Action::Arm(v) => v.clone(),
        other => panic!("LIBERO head gave {other:?}"),
    }
}

#[test]
fn batched_rows_equal_rows_alone() {
    let p = policy(Decoding::Greedy);
    let imgs = images();
    let reference: Vec<Vec<StepOutput>> = (0..4).map(|r| alone(&p, r, &imgs)).collect();
    let mut runner = BatchRunner::new(Arc::clone(&p), 4).unwrap();
    let mut worst = 0.0f64;
    for b in 1..=4 {
        let mut episodes: Vec<Episode> = (0..b)
            .map(|r| {
                let mut e = Episode::new(&p).unwrap();
                e.reset(INSTRUCTIONS[r]);
                e
            })
            .collect();
        for t in 0..STEPS {
            let mut rows: Vec<BatchRow<'_>> = episodes
                .iter_mut()
                .enumerate()
                .map(|(r, episode)| BatchRow {
                    episode,
                    image: &imgs[image_for(r, t)],
                    proprio: None,
                })
                .collect();
            let outs = runner.step(&mut rows);
            assert_eq!(outs.len(), b);
            for (r, out) in outs.into_iter().enumerate() {
                let got = out.unwrap();
                let want = &reference[r][t];
                let (gi, wi) = (got.inference.as_ref().unwrap(), want.inference.as_ref().unwrap());
                let ctx = format!("batch {b}, row {r}, step {t}");
                assert_eq!(gi.prompt, wi.prompt, "{ctx}");
                assert_eq!(gi.latent_ids, wi.latent_ids, "{ctx}");
                let d = max_diff(&gi.chunk.concat(), &wi.chunk.concat())
                    .max(max_diff(&got.pre_action, &want.pre_action))
                    .max(max_diff(&action_values(&got), &action_values(want)));
                assert!(d <= 1e-5, "{ctx}: chunk/action differ by {d:e}");
                worst = worst.max(d);
            }
        }
    }
    eprintln!("largest difference batched vs alone: {worst:e}");
}

#[test]
fn a_bad_row_fails_alone() {
    let p = policy(Decoding::Greedy);
    let imgs = images();
    let reference = alone(&p, 3, &imgs);
    let mut runner = BatchRunner::new(Arc::clone(&p), 4).unwrap();
    let mut good = Episode::new(&p).unwrap();
    good.reset(INSTRUCTIONS[3]);
    let mut bad = Episode::new(&p).unwrap();
    bad.reset(&"stack the blocks ".repeat(200));
    let mut rows = vec![
        BatchRow {
            episode: &mut bad,
            image: &imgs[0],
            proprio: None,
        },
        BatchRow {
            episode: &mut good,
            image: &imgs[image_for(3, 0)],
            proprio: None,
        },
    ];
    let outs = runner.step(&mut rows);
    let err = outs[0].as_ref().unwrap_err().to_string();
    assert!(err.contains("too long"), "{err}");
    let got = outs[1].as_ref().unwrap();
    assert_eq!(
        got.inference.as_ref().unwrap().latent_ids,
        reference[0].inference.as_ref().unwrap().latent_ids
    );
    assert!(max_diff(&got.pre_action, &reference[0].pre_action) <= 1e-5);
}

#[test]
fn sampling_rows_draw_from_their_own_generators() {
    let p = policy(Decoding::reference_sampling());
    let imgs = images();
    let mut runner = BatchRunner::new(Arc::clone(&p), 3).unwrap();
    let episode = |r: usize, seed: u64| {
        let mut e = Episode::new(&p).unwrap().with_rng(EpisodeRng::new(seed));
        e.reset(INSTRUCTIONS[r]);
        e
    };
    // Row 0 with seed 5, alone and then beside two other rows.
    let run = |runner: &mut BatchRunner, with_others: bool| -> Vec<Vec<i64>> {
        let mut episodes = vec![episode(0, 5)];
        if with_others {
            episodes.push(episode(1, 6));
            episodes.push(episode(2, 7));
        }
        (0..STEPS)
            .map(|t| {
                let mut rows: Vec<BatchRow<'_>> = episodes
                    .iter_mut()
                    .enumerate()
                    .map(|(r, episode)| BatchRow {
                        episode,
                        image: &imgs[image_for(r, t)],
                        proprio: None,
                    })
                    .collect();
                let outs = runner.step(&mut rows);
                outs.into_iter().next().unwrap().unwrap().inference.unwrap().latent_ids
            })
            .collect()
    };
    let lone = run(&mut runner, false);
    let beside = run(&mut runner, true);
    assert_eq!(lone, beside);
    // And another seed draws differently somewhere in 3 steps × 4 tokens (the fixture's
    // distributions are wide).
    let mut other = episode(0, 1234);
    let ids: Vec<Vec<i64>> = (0..STEPS)
        .map(|t| {
            let mut rows = vec![BatchRow {
                episode: &mut other,
                image: &imgs[image_for(0, t)],
                proprio: None,
            }];
            runner.step(&mut rows).remove(0).unwrap().inference.unwrap().latent_ids
        })
        .collect();
    assert_ne!(ids, lone, "seeds 5 and 1234 drew the same 12 tokens");
}
