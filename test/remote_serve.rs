//! The node's remote policy client (`policy_url`) against a real `univla serve` on the fixture:
//! the model view built from the server's metadata, then the same latent tokens, chunks and
//! actions as `univla infer --json --greedy` for 3 steps, and a reset that starts over.
//! Loopback TCP only (no DDS).
mod serve_common;

use std::time::Duration;

use serve_common::{checkpoint, floats, image_path, max_diff, ServerProc, INSTRUCTION};
use univla_ros::node::wiring::ros_io::remote_model_info;
use univla_ros::node::wiring::worker::PolicyBackend;
use univla_ros::remote::client::Endpoint;
use univla_ros::remote::policy::{connect_at_startup, RemoteModel};
use univla_ros::remote::{RemotePolicy, RemoteSettings};
use univla_ros::runtime::postprocess::{Action, Preset};
use univla_ros::runtime::preprocess::RgbImage;

/// An arm node's policy parameters pointing at `url`, with the checkpoint's LIBERO bounds.
fn node_policy(url: &str) -> univla_ros::node::config::PolicyConfig {
    let url = format!("policy_url:={url}");
    let stats = format!(
        "dataset_statistics:={}",
        checkpoint().join("dataset_statistics.json").display()
    );
    let argv = [
        "node",
        "--ros-args",
        "-p",
        url.as_str(),
        "-p",
        stats.as_str(),
        "-p",
        "unnorm_key:=libero_10_no_noops",
        "-p",
        "joint_names:=[a]",
    ];
    let (args, _) = univla_ros::ros::RosArgs::parse(argv).unwrap();
    let params = args.resolve_node("univla_arm", "/").unwrap().params;
    univla_ros::node::config::ArmConfig::from_params(&params)
        .unwrap()
        .common
        .policy
}

#[test]
fn remote_policy_on_univla_serve_matches_infer() {
    let reference = serve_common::infer_json(3);
    let server = ServerProc::start(&[]);
    let cfg = node_policy(&server.url());
    let settings = RemoteSettings {
        endpoint: Endpoint::parse(&server.url(), None).unwrap(),
        timeout: Duration::from_secs(60),
        startup_wait: Duration::ZERO,
    };
    let conn = connect_at_startup(&settings).unwrap();
    let meta = conn.metadata().clone();
    assert_eq!(meta.server.as_deref(), Some("univla_ros"));
    assert_eq!(meta.needs_proprio, Some(false));
    assert_eq!(meta.temporal_size, Some(12));
    let info = remote_model_info(&cfg, &meta).unwrap();
    assert_eq!((info.preset, info.action_dim, info.window), (Preset::Libero, 7, 12));
    assert_eq!((info.temporal_size, info.needs_proprio), (12, false));
    let mut policy = RemotePolicy::new(
        settings,
        conn,
        RemoteModel {
            preset: info.preset,
            post: info.post,
            action_dim: info.action_dim,
            window: info.window,
        },
    );
    policy.reset(INSTRUCTION);
    let mut first = None;
    for (t, want) in reference.iter().enumerate() {
        let image = RgbImage::load(image_path(t)).unwrap();
        let got = policy.infer(&image, None, false).unwrap();
        let want_ids: Vec<i64> = floats(&want["latent_ids"]).iter().map(|&x| x as i64).collect();
        assert_eq!(got.latent_ids, want_ids, "step {t}");
        let chunk: Vec<f64> = got.chunk.concat();
        // float32 on the wire: within its rounding of the f64 reference.
        let d = max_diff(&chunk, &floats(&want["chunk"]));
        assert!(d <= 1e-5, "step {t}: chunk differs by {d:e}");
        let Action::Arm(action) = &got.action else {
            panic!("step {t}: not an arm action: {:?}", got.action)
        };
        let d = max_diff(action, &floats(&want["action"]));
        assert!(d <= 1e-5, "step {t}: action differs by {d:e}");
        if t == 0 {
            first = Some((got.latent_ids.clone(), action.clone()));
        }
    }
    // A reset starts a new episode on the server: the first step's outputs again.
    policy.reset(INSTRUCTION);
    let image = RgbImage::load(image_path(0)).unwrap();
    let got = policy.infer(&image, None, false).unwrap();
    let (ids, action) = first.unwrap();
    assert_eq!(got.latent_ids, ids);
    let Action::Arm(again) = &got.action else {
        panic!("not an arm action")
    };
    assert!(max_diff(again, &action) <= 1e-6);
    assert_eq!(policy.reconnects(), 0);
}
