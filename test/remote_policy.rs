//! `RemotePolicy` against a stub policy server on 127.0.0.1: the chunk comes back as served, a
//! server error surfaces as an error on a connection that stays usable, a dropped connection is
//! reopened (starting a new episode), a silent server times out, a vanished one is an error
//! (never a panic or an endless wait), and the api key travels as openpi's client sends it.
mod remote_common;

use std::time::Duration;

use remote_common::{Misbehave, StubServer, STUB_ERROR};
use univla_ros::node::wiring::worker::PolicyBackend;
use univla_ros::remote::client::Endpoint;
use univla_ros::remote::policy::{connect_at_startup, RemoteModel};
use univla_ros::remote::{RemotePolicy, RemoteSettings};
use univla_ros::runtime::postprocess::{Action, NavAction, PostProcessor, Preset};
use univla_ros::runtime::preprocess::RgbImage;

const TIMEOUT: Duration = Duration::from_millis(700);

fn chunk() -> Vec<Vec<f32>> {
    (0..4)
        .map(|t| (0..3).map(|d| 0.125 * (t * 3 + d) as f32).collect())
        .collect()
}

fn settings(url: &str, key: Option<&str>) -> RemoteSettings {
    RemoteSettings {
        endpoint: Endpoint::parse(url, key.map(str::to_string)).unwrap(),
        timeout: TIMEOUT,
        startup_wait: Duration::ZERO,
    }
}

fn policy(stub: &StubServer, preset: Preset, dim: usize, key: Option<&str>) -> RemotePolicy {
    let s = settings(&stub.url(), key);
    let conn = connect_at_startup(&s).unwrap();
    assert_eq!(conn.metadata().chunk, Some(4));
    let post = PostProcessor::new(preset, None, None)
        .unwrap()
        .with_action_dim(dim)
        .unwrap();
    RemotePolicy::new(
        s,
        conn,
        RemoteModel {
            preset,
            post,
            action_dim: dim,
            window: 4,
        },
    )
}

fn image() -> RgbImage {
    RgbImage::filled(8, 6, [10, 20, 30]).unwrap()
}

fn expected_chunk() -> Vec<Vec<f64>> {
    chunk()
        .iter()
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect()
}

#[test]
fn chunk_errors_reconnect_and_timeout() {
    let mut stub = StubServer::start(
        "real_world",
        chunk(),
        vec![0.5, -0.5, 1.0],
        vec![Misbehave::TextError(2), Misbehave::Drop(4)],
    );
    let mut p = policy(&stub, Preset::RealWorld, 3, Some("secret"));
    let img = image();
    p.reset("pick up the cup");

    // 1: the served chunk, the episode starts.
    let out = p.infer(&img, Some(&[0.25, 0.5, 0.75]), true).unwrap();
    assert_eq!(out.chunk, expected_chunk());
    assert_eq!(out.latent_ids, vec![32001, 32002, 32003, 32004]);
    assert_eq!(out.action, Action::Arm(vec![0.5, -0.5, 1.0]));
    assert!(out.preview.is_none());
    // 2: a text error is an error; the connection stays.
    let e = p.infer(&img, Some(&[0.0; 3]), false).unwrap_err();
    assert!(e.contains(STUB_ERROR), "{e}");
    // 3: the same connection answers again.
    p.infer(&img, Some(&[0.0; 3]), false).unwrap();
    assert_eq!(stub.connections(), 1);
    // 4: the server drops the connection.
    let e = p.infer(&img, None, false).unwrap_err();
    assert!(e.contains("connection to the policy server lost"), "{e}");
    assert!(!p.connected());
    // 5: reconnected; the server starts a new episode with the same prompt.
    p.infer(&img, None, false).unwrap();
    assert_eq!((stub.connections(), p.reconnects()), (2, 1));

    let seen = stub.seen();
    assert_eq!(seen.len(), 5);
    assert!(seen
        .iter()
        .all(|s| s.prompt == "pick up the cup" && s.image_shape == vec![6, 8, 3]));
    let resets: Vec<bool> = seen.iter().map(|s| s.reset).collect();
    // The failed second request leaves the episode started; the reconnect starts a new one.
    assert_eq!(resets, vec![true, false, false, false, true]);
    assert_eq!(seen[0].state, Some(vec![0.25, 0.5, 0.75]));
    assert_eq!(seen[3].state, None);
    assert_eq!(seen[4].connection, 2);
    assert_eq!(stub.auth(), vec![Some("Api-Key secret".to_string()); 2]);

    // A new instruction starts an episode.
    p.reset("open the drawer");
    p.infer(&img, None, false).unwrap();
    let last = stub.seen().pop().unwrap();
    assert_eq!((last.prompt.as_str(), last.reset), ("open the drawer", true));

    // A silent server: the wait ends at the timeout, the connection is given up.
    stub.silent.store(true, std::sync::atomic::Ordering::SeqCst);
    let e = p.infer(&img, None, false).unwrap_err();
    assert!(e.contains("did not answer within 0.7 s"), "{e}");
    assert!(!p.connected());
    stub.silent.store(false, std::sync::atomic::Ordering::SeqCst);
    p.infer(&img, None, false).unwrap();
    assert_eq!(stub.connections(), 3);

    // The server is gone: errors, bounded, and the next attempts keep failing cleanly.
    stub.shutdown();
    for _ in 0..3 {
        assert!(p.infer(&img, None, false).is_err());
    }
    assert!(!p.connected());
}

#[test]
fn navigation_decisions_come_from_the_server_action() {
    // The server's action as an id ...
    let stub = StubServer::start("r2r", vec![vec![0.1, 0.2, 0.3, 0.4]; 4], vec![2.0], vec![]);
    let mut p = policy(&stub, Preset::R2r, 4, None);
    p.reset("walk to the door");
    assert_eq!(
        p.infer(&image(), None, false).unwrap().action,
        Action::Nav(NavAction::TurnLeft)
    );
    assert_eq!(stub.auth(), vec![None]);
    // ... or as the ensembled probabilities (their argmax).
    let stub = StubServer::start(
        "r2r",
        vec![vec![0.1, 0.2, 0.3, 0.4]; 4],
        vec![0.1, 0.7, 0.1, 0.1],
        vec![],
    );
    let mut p = policy(&stub, Preset::R2r, 4, None);
    assert_eq!(
        p.infer(&image(), None, false).unwrap().action,
        Action::Nav(NavAction::Forward)
    );
    // Not an action id: an error.
    let stub = StubServer::start("r2r", vec![vec![0.1, 0.2, 0.3, 0.4]; 4], vec![1.5], vec![]);
    let mut p = policy(&stub, Preset::R2r, 4, None);
    let e = p.infer(&image(), None, false).unwrap_err();
    assert!(e.contains("not a navigation action id"), "{e}");
}

#[test]
fn answers_that_do_not_fit_the_announced_model_are_errors() {
    let stub = StubServer::start("real_world", chunk(), vec![0.0; 3], vec![]);
    // The node expects 5-wide rows; the server sends 3.
    let s = settings(&stub.url(), None);
    let conn = connect_at_startup(&s).unwrap();
    let post = PostProcessor::new(Preset::RealWorld, None, None)
        .unwrap()
        .with_action_dim(5)
        .unwrap();
    let mut p = RemotePolicy::new(
        s,
        conn,
        RemoteModel {
            preset: Preset::RealWorld,
            post,
            action_dim: 5,
            window: 4,
        },
    );
    let e = p.infer(&image(), None, false).unwrap_err();
    assert!(e.contains("4 × 3") && e.contains("4 steps × 5 values"), "{e}");
}

#[test]
fn startup_without_a_server_fails_with_the_url() {
    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}");
    let e = connect_at_startup(&settings(&url, None)).err().unwrap().to_string();
    assert!(e.contains(&url), "{e}");
    // With a start-up wait it retries, then gives up with the same error.
    let mut s = settings(&url, None);
    s.startup_wait = Duration::from_millis(500);
    assert!(connect_at_startup(&s).is_err());
}

fn remote_config(extra: &[&str]) -> univla_ros::node::config::PolicyConfig {
    let mut argv = vec![
        "node",
        "--ros-args",
        "-p",
        "policy_url:=ws://127.0.0.1:9",
        "-p",
        "joint_names:=[a]",
    ];
    argv.extend_from_slice(extra);
    let (args, _) = univla_ros::ros::RosArgs::parse(argv).unwrap();
    let params = args.resolve_node("univla_arm", "/").unwrap().params;
    univla_ros::node::config::ArmConfig::from_params(&params)
        .unwrap()
        .common
        .policy
}

#[test]
fn the_node_builds_its_model_view_from_the_server_metadata() {
    use univla_ros::node::wiring::ros_io::remote_model_info;
    use univla_ros::remote::codec::ServerMetadata;
    let meta = |embodiment: Option<&str>, dim: usize, chunk: usize| ServerMetadata {
        embodiment: embodiment.map(str::to_string),
        action_dim: Some(dim),
        chunk: Some(chunk),
        ..Default::default()
    };
    let info = remote_model_info(&remote_config(&[]), &meta(Some("real_world"), 7, 12)).unwrap();
    assert_eq!((info.preset, info.action_dim, info.window), (Preset::RealWorld, 7, 12));
    assert_eq!((info.temporal_size, info.needs_proprio), (8, true));
    let info = remote_model_info(&remote_config(&[]), &meta(Some("r2r"), 4, 4)).unwrap();
    assert_eq!(
        (info.preset, info.temporal_size, info.needs_proprio),
        (Preset::R2r, 4, false)
    );
    // The preset parameter fills in a missing embodiment, refines LIBERO into CALVIN, and must
    // not contradict the server.
    let e = remote_model_info(&remote_config(&[]), &meta(None, 7, 12)).unwrap_err();
    assert!(e.contains("'preset'"), "{e}");
    let calvin = remote_config(&["-p", "preset:=calvin"]);
    assert_eq!(
        remote_model_info(&calvin, &meta(Some("libero"), 7, 12)).unwrap().preset,
        Preset::Calvin
    );
    let e = remote_model_info(&remote_config(&["-p", "preset:=r2r"]), &meta(Some("real_world"), 7, 12)).unwrap_err();
    assert!(e.contains("RealWorld"), "{e}");
    let e = remote_model_info(&remote_config(&[]), &meta(Some("warehouse"), 7, 12)).unwrap_err();
    assert!(e.contains("warehouse"), "{e}");
    // LIBERO needs its bounds on this computer.
    let e = remote_model_info(&remote_config(&[]), &meta(Some("libero"), 7, 12)).unwrap_err();
    assert!(e.contains("'dataset_statistics'"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("dataset_statistics.json");
    std::fs::write(
        &stats,
        r#"{"libero_spatial": {"action": {"q01": [-1,-1,-1,-1,-1,-1,0], "q99": [1,1,1,1,1,1,1], "mask": [true,true,true,true,true,true,false]}}}"#,
    )
    .unwrap();
    let cfg = remote_config(&["-p", &format!("dataset_statistics:={}", stats.display())]);
    let info = remote_model_info(&cfg, &meta(Some("libero"), 7, 12)).unwrap();
    assert_eq!(
        info.post.apply(&[0.0; 7]).unwrap(),
        Action::Arm(vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    );
    // Missing sizes are errors.
    let e = remote_model_info(&remote_config(&[]), &ServerMetadata::default()).unwrap_err();
    assert!(!e.is_empty());
}
