//! `univla serve` over its WebSocket protocol, with the crate's Rust client: metadata; the same
//! latent tokens, chunks and actions as `univla infer --json --greedy` for 3 steps, and a reset;
//! bad requests answered with a text frame on a connection that stays usable; refusal beyond
//! `--max-sessions` and sessions freed on disconnect; a stalled client delays nobody; the API
//! key; `GET /healthz`. Loopback only.
mod serve_common;

use rmpv::Value;
use serve_common::{field, floats, max_diff, request, ServerProc, INSTRUCTION};
use tokio_tungstenite::tungstenite::Message;
use univla_ros::serve::client::Client;
use univla_ros::serve::wire::{self, read_f64_array, str_map, Dtype};
use univla_ros::serve::ServeError;

fn array(resp: &Value, key: &str) -> (Vec<usize>, Vec<f64>) {
    read_f64_array(field(resp, key)).unwrap_or_else(|| panic!("`{key}` is not a numpy array"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_outputs_as_infer_and_reset() {
    let reference = serve_common::infer_json(3);
    let server = ServerProc::start(&[]);
    assert_eq!(server.http_get("/healthz"), ("HTTP/1.1 200 OK".into(), "ok".into()));
    let mut c = Client::connect(&server.url(), None).await.unwrap();
    let meta = c.metadata().clone();
    assert_eq!(field(&meta, "server").as_str(), Some("univla_ros"));
    assert_eq!(field(&meta, "action_dim").as_u64(), Some(7));
    assert_eq!(field(&meta, "chunk").as_u64(), Some(12));
    assert_eq!(field(&meta, "latent_tokens").as_u64(), Some(4));
    assert_eq!(field(&meta, "embodiment").as_str(), Some("libero"));
    let mut first = None;
    for (t, want) in reference.iter().enumerate() {
        let resp = c.call(request(t, INSTRUCTION, vec![])).await.unwrap().unwrap();
        assert_eq!(field(&resp, "episode_step").as_u64(), Some(t as u64));
        let (_, tokens) = array(&resp, "latent_tokens");
        let want_tokens: Vec<f64> = floats(&want["latent_ids"]);
        assert_eq!(tokens, want_tokens, "step {t}");
        let (shape, actions) = array(&resp, "actions");
        assert_eq!(shape, vec![12, 7]);
        // float32 on the wire: within its rounding of the f64 reference.
        let d = max_diff(&actions, &floats(&want["chunk"]));
        assert!(d <= 1e-5, "step {t}: actions differ by {d:e}");
        let (_, action) = array(&resp, "action");
        let d = max_diff(&action, &floats(&want["action"]));
        assert!(d <= 1e-5, "step {t}: action differs by {d:e}");
        let timing = field(&resp, "server_timing");
        assert_eq!(field(timing, "batch_size").as_u64(), Some(1));
        assert!(field(timing, "infer_ms").as_f64().is_some());
        if t == 0 {
            first = Some((tokens, action));
        }
    }
    // `reset: true` starts over: step 0 again, the first step's outputs.
    let resp = c
        .call(request(0, INSTRUCTION, vec![("reset", Value::Boolean(true))]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(field(&resp, "episode_step").as_u64(), Some(0));
    let (tokens, action) = first.unwrap();
    assert_eq!(array(&resp, "latent_tokens").1, tokens);
    assert!(max_diff(&array(&resp, "action").1, &action) <= 1e-6);
    // A new prompt starts a new episode too.
    let resp = c.call(request(1, "open the drawer", vec![])).await.unwrap().unwrap();
    assert_eq!(field(&resp, "episode_step").as_u64(), Some(0));
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_text_and_the_connection_stays_usable() {
    let server = ServerProc::start(&[]);
    let mut c = Client::connect(&server.url(), None).await.unwrap();
    let err = |r: Result<Value, String>| r.expect_err("expected an error frame");
    let e = err(c.call(b"\xc1\x00garbage".to_vec()).await.unwrap());
    assert!(e.contains("malformed msgpack"), "{e}");
    let wrong_dtype = wire::encode(&str_map(vec![
        (
            "observation/image",
            wire::ndarray_value(Dtype::I64, &[2, 2, 3], vec![0; 96]),
        ),
        ("prompt", Value::from("go")),
    ]));
    let e = err(c.call(wrong_dtype).await.unwrap());
    assert!(e.contains("observation/image") && e.contains("uint8"), "{e}");
    let short = wire::encode(&str_map(vec![
        (
            "observation/image",
            wire::ndarray_value(Dtype::U8, &[480, 640, 3], vec![0; 10]),
        ),
        ("prompt", Value::from("go")),
    ]));
    let e = err(c.call(short).await.unwrap());
    assert!(e.contains("needs 921600 bytes"), "{e}");
    let no_prompt = wire::encode(&str_map(vec![(
        "observation/image",
        wire::ndarray_value(Dtype::U8, &[2, 2, 3], vec![0; 12]),
    )]));
    assert_eq!(err(c.call(no_prompt).await.unwrap()), "missing key `prompt`");
    let e = err(c.send_raw(Message::text("hello")).await.unwrap());
    assert!(e.contains("binary"), "{e}");
    // The connection still serves.
    let resp = c.call(request(0, INSTRUCTION, vec![])).await.unwrap().unwrap();
    assert_eq!(field(&resp, "episode_step").as_u64(), Some(0));
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_limited_and_freed_on_disconnect() {
    let server = ServerProc::start(&["--max-sessions", "1"]);
    let a = Client::connect(&server.url(), None).await.unwrap();
    assert_eq!(field(a.metadata(), "sessions").as_u64(), Some(1));
    assert_eq!(server.sessions(), 1);
    match Client::connect(&server.url(), None).await {
        Err(ServeError::Remote(text)) => assert!(text.contains("too many sessions"), "{text}"),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("a second session was admitted beyond --max-sessions 1"),
    }
    a.close().await;
    // The server notices the close on its own task: poll (bounded) until the slot is free.
    let mut freed = false;
    for _ in 0..200 {
        if server.sessions() == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(freed, "the closed session was never freed");
    let mut b = Client::connect(&server.url(), None).await.unwrap();
    assert!(b.call(request(0, INSTRUCTION, vec![])).await.unwrap().is_ok());
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_blocks_nobody() {
    let server = ServerProc::start(&[]);
    // One session that never sends, one connection stuck in its HTTP head, one half a frame in.
    let _silent = Client::connect(&server.url(), None).await.unwrap();
    let mut stuck_head = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stuck_head, b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut active = Client::connect(&server.url(), None).await.unwrap();
    for t in 0..3 {
        let resp = active.call(request(t, INSTRUCTION, vec![])).await.unwrap().unwrap();
        assert_eq!(field(&resp, "episode_step").as_u64(), Some(t as u64));
    }
    assert_eq!(server.http_get("/healthz").1, "ok");
    active.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_required_when_set() {
    let server = ServerProc::start(&["--api-key", "s3cret"]);
    for key in [None, Some("wrong")] {
        match Client::connect(&server.url(), key).await {
            Err(ServeError::Remote(text)) => assert!(text.contains("unauthorized"), "{text}"),
            Err(e) => panic!("expected a refusal, got {e}"),
            Ok(_) => panic!("admitted with key {key:?}"),
        }
    }
    let mut c = Client::connect(&server.url(), Some("s3cret")).await.unwrap();
    assert!(c.call(request(0, INSTRUCTION, vec![])).await.unwrap().is_ok());
    c.close().await;
}
