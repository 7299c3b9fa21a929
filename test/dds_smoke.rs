//! DDS smoke tests: two in-process participants exchange strings, and the `univla_smoke` binary
//! talks to a test participant through remapped topics. They open DDS sockets, so they must run in
//! a private network namespace (scripts/test.sh) and fail outside one.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use univla_ros::ros::msgs::std_msgs::StringMsg;
use univla_ros::ros::smoke::ECHO_PREFIX;
use univla_ros::ros::{require_private_netns, Qos, RosArgs, RosContext, RosNode};

/// Upper bound for discovery plus delivery in one test.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for the child to end by itself after its run_secs (10 s).
const CHILD_EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between polls.
const POLL: Duration = Duration::from_millis(20);

fn guard() {
    if let Err(msg) = require_private_netns() {
        panic!("{msg}");
    }
}

fn node(ctx: &RosContext, name: &str, ns: &str) -> RosNode {
    let (args, _) = RosArgs::parse(["test"]).unwrap();
    RosNode::new(ctx, &args, name, ns).unwrap()
}

#[test]
fn two_participants_exchange_strings() {
    guard();
    let domain = 41;
    let ctx_a = RosContext::with_domain(domain).unwrap();
    let ctx_b = RosContext::with_domain(domain).unwrap();
    let mut a = node(&ctx_a, "talker", "/pair");
    let mut b = node(&ctx_b, "listener", "/pair");
    let publisher = a
        .create_publisher::<StringMsg>("chatter", Qos::default_profile())
        .unwrap();
    let subscription = b
        .create_subscription::<StringMsg>("/pair/chatter", Qos::default_profile())
        .unwrap();
    assert_eq!(publisher.topic(), "/pair/chatter");

    let start = Instant::now();
    let mut sent = 0u32;
    let mut got = Vec::new();
    while got.len() < 3 && start.elapsed() < EXCHANGE_TIMEOUT {
        publisher
            .publish(StringMsg {
                data: format!("msg {sent}"),
            })
            .unwrap();
        sent += 1;
        std::thread::sleep(POLL * 5);
        while let Some(m) = subscription.try_take().unwrap() {
            got.push(m.data);
        }
    }
    assert!(
        got.len() >= 3,
        "listener received {got:?} of {sent} sent within {EXCHANGE_TIMEOUT:?}"
    );
    for m in &got {
        let n: u32 = m
            .strip_prefix("msg ")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad data {m:?}"));
        assert!(n < sent);
    }
    assert!(publisher.subscription_count(&a) >= 1);
    assert!(subscription.publisher_count(&b) >= 1);
}

/// Kills the child on drop if it still runs (by its own handle), so a failing test leaves nothing.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn smoke_binary_talks_through_remapped_topics() {
    guard();
    let domain = 42;
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_univla_smoke"))
        .args([
            "--ros-args",
            "-r",
            "__node:=smoke",
            "-r",
            "__ns:=/t",
            "-r",
            "chatter_in:=/t/ping",
            "-p",
            "rate_hz:=20.0",
            "-p",
            "run_secs:=10",
        ])
        .env("ROS_DOMAIN_ID", domain.to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);

    let ctx = RosContext::with_domain(domain).unwrap();
    let mut tester = node(&ctx, "tester", "/");
    let ping = tester
        .create_publisher::<StringMsg>("/t/ping", Qos::default_profile())
        .unwrap();
    let chatter = tester
        .create_subscription::<StringMsg>("/t/chatter", Qos::default_profile())
        .unwrap();

    let start = Instant::now();
    let mut pings = 0u32;
    let (mut periodic, mut echoes) = (Vec::new(), Vec::new());
    while (periodic.is_empty() || echoes.is_empty()) && start.elapsed() < EXCHANGE_TIMEOUT {
        ping.publish(StringMsg {
            data: format!("ping {pings}"),
        })
        .unwrap();
        pings += 1;
        std::thread::sleep(POLL * 5);
        while let Some(m) = chatter.try_take().unwrap() {
            match m.data.strip_prefix(ECHO_PREFIX) {
                Some(echo) => echoes.push(echo.to_string()),
                None => periodic.push(m.data),
            }
        }
    }
    let stderr = || std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(
        !periodic.is_empty(),
        "no periodic chatter from the smoke node; its log:\n{}",
        stderr()
    );
    assert!(
        !echoes.is_empty(),
        "no echo of our pings on /t/chatter; its log:\n{}",
        stderr()
    );
    for m in &periodic {
        assert!(m.starts_with("hello "), "unexpected chatter {m:?}");
    }
    for e in &echoes {
        let n: u32 = e
            .strip_prefix("ping ")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad echo {e:?}"));
        assert!(n < pings);
    }

    // The node ends by itself after run_secs; it is killed by the guard only if it hangs.
    let wait_start = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break Some(status);
        }
        if wait_start.elapsed() > CHILD_EXIT_TIMEOUT {
            break None;
        }
        std::thread::sleep(POLL * 5);
    };
    let status = status.unwrap_or_else(|| panic!("smoke node did not exit after run_secs; log:\n{}", stderr()));
    assert!(status.success(), "smoke node failed ({status}); log:\n{}", stderr());
    let mut out = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    let received: u64 = out
        .trim()
        .rsplit("received=")
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected summary {out:?}"));
    assert!(received >= 1, "summary {out:?}");
    assert!(
        stderr().contains("received 'ping "),
        "log lacks received pings:\n{}",
        stderr()
    );
}
