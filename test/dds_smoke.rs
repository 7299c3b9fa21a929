//! DDS smoke tests: two in-process participants exchange strings, and the `univla_smoke` binary
//! talks to a test participant through remapped topics. They open DDS sockets, so they must run in
//! a private network namespace (scripts/test.sh) and fail outside one.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use univla_ros::ros::msgs::builtin_interfaces::Time;
use univla_ros::ros::msgs::rosgraph_msgs::Clock;
use univla_ros::ros::msgs::sensor_msgs::Image;
use univla_ros::ros::msgs::std_msgs::{Header, StringMsg};
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
    // The graph-event drain saw the other participant's endpoints.
    assert!(a.graph_event_count() > 0 && b.graph_event_count() > 0);
}

#[test]
fn camera_image_over_sensor_data_qos() {
    guard();
    let domain = 45;
    let ctx_a = RosContext::with_domain(domain).unwrap();
    let ctx_b = RosContext::with_domain(domain).unwrap();
    let mut camera = node(&ctx_a, "camera", "/cam");
    let mut policy = node(&ctx_b, "policy", "/");
    let publisher = camera
        .create_publisher::<Image>("image_raw", Qos::sensor_data())
        .unwrap();
    let subscription = policy
        .create_subscription::<Image>("/cam/image_raw", Qos::sensor_data())
        .unwrap();
    let (width, height) = (640u32, 480u32);
    // A 640x480 rgb8 frame (921 600 bytes, fragmented on the wire) with a position-dependent pattern.
    let data: Vec<u8> = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
    let frame = |seq: i32| Image {
        header: Header {
            stamp: Time { sec: seq, nanosec: 0 },
            frame_id: "cam".into(),
        },
        height,
        width,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: width * 3,
        data: data.clone(),
    };
    let start = Instant::now();
    let mut seq = 0;
    let mut got = None;
    while got.is_none() && start.elapsed() < EXCHANGE_TIMEOUT {
        publisher.publish(frame(seq)).unwrap();
        seq += 1;
        std::thread::sleep(POLL * 5);
        got = subscription.try_take().unwrap();
    }
    let img = got.unwrap_or_else(|| panic!("no image received of {seq} sent"));
    assert_eq!(img, frame(img.header.stamp.sec));
    assert!(img.header.stamp.sec < seq);
}

#[test]
fn sim_time_follows_rosgraph_clock() {
    guard();
    let domain = 44;
    let ctx_a = RosContext::with_domain(domain).unwrap();
    let (args, _) = RosArgs::parse(["test", "--ros-args", "-p", "use_sim_time:=true"]).unwrap();
    let sim = RosNode::new(&ctx_a, &args, "sim", "/").unwrap();
    let clock = sim.clock();
    assert!(clock.is_simulated());
    assert_eq!(
        clock.now(),
        Time::default(),
        "sim time is zero before the first /clock message"
    );

    let ctx_b = RosContext::with_domain(domain).unwrap();
    let mut player = node(&ctx_b, "player", "/");
    // Reliable, like `ros2 bag play --clock` and simulators; compatible with the best-effort reader.
    let publisher = player
        .create_publisher::<Clock>("/clock", Qos::default_profile())
        .unwrap();
    let tick = Time { sec: 1234, nanosec: 5 };
    let start = Instant::now();
    while clock.now() != tick && start.elapsed() < EXCHANGE_TIMEOUT {
        publisher.publish(Clock { clock: tick }).unwrap();
        std::thread::sleep(POLL * 5);
    }
    assert_eq!(clock.now(), tick);
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

mod action {
    use super::*;
    use futures::StreamExt;
    use univla_ros::ros::action::{GoalOutcome, GoalStatus, RosActionClient, RosActionServer, ServerEvent};
    use univla_ros::ros::msgs::univla_msgs::{Execute, ExecuteFeedback, ExecuteGoal, ExecuteResult};

    /// Bound of each awaited action step.
    const STEP_TIMEOUT: Duration = Duration::from_secs(20);
    /// Pause between executed steps of the test server.
    const STEP_PERIOD: Duration = Duration::from_millis(50);
    /// Goals the test server handles before it exits.
    const GOALS: usize = 3;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(STEP_TIMEOUT, fut)
            .await
            .unwrap_or_else(|_| panic!("timed out: {what}"))
    }

    /// A minimal policy-like server: rejects max_steps == 0, runs max_steps steps with feedback,
    /// honours cancel requests. Returns the outcomes it produced.
    async fn serve(server: RosActionServer<Execute>) -> Vec<GoalOutcome> {
        let mut outcomes = Vec::new();
        let mut handled = 0;
        while handled < GOALS {
            let req = match bounded("server event", server.next_event()).await.unwrap() {
                ServerEvent::Goal(req) => req,
                ServerEvent::Cancel(c) => {
                    server.answer_cancel(&c, &[]).await.unwrap();
                    continue;
                }
            };
            handled += 1;
            if req.goal.max_steps == 0 {
                server.reject(req).await.unwrap();
                continue;
            }
            let max_steps = req.goal.max_steps;
            let goal = server.accept(req).await.unwrap();
            let mut outcome = GoalOutcome::Succeeded;
            let mut steps = 0;
            while steps < max_steps {
                steps += 1;
                let fb = ExecuteFeedback {
                    step: steps,
                    latent_tokens: vec![1, 2, 3, 4],
                    inference_latency_ms: 1.5,
                    commanded_action: vec![0.0; 7],
                };
                server.publish_feedback(&goal, fb).await.unwrap();
                if let Ok(event) = tokio::time::timeout(STEP_PERIOD, server.next_event()).await {
                    match event.unwrap() {
                        ServerEvent::Cancel(c) if c.goals.contains(&goal.id) => {
                            server.answer_cancel(&c, &[goal.id]).await.unwrap();
                            outcome = GoalOutcome::Canceled;
                            break;
                        }
                        ServerEvent::Cancel(c) => server.answer_cancel(&c, &[]).await.unwrap(),
                        ServerEvent::Goal(other) => {
                            handled += 1;
                            server.reject(other).await.unwrap();
                        }
                    }
                }
            }
            let code = if outcome == GoalOutcome::Canceled {
                ExecuteResult::CANCELED
            } else {
                ExecuteResult::SUCCEEDED
            };
            let result = ExecuteResult {
                outcome: code,
                steps,
                reason: format!("{outcome:?} at step {steps}"),
            };
            bounded("result request", server.finish(goal, outcome, result))
                .await
                .unwrap();
            outcomes.push(outcome);
        }
        outcomes
    }

    #[test]
    fn execute_action_feedback_cancel_reject() {
        guard();
        let domain = 43;
        let server_ctx = RosContext::with_domain(domain).unwrap();
        let mut server_node = node(&server_ctx, "policy", "/robot");
        let server = RosActionServer::<Execute>::new(&mut server_node, "execute").unwrap();
        assert_eq!(server.name(), "/robot/execute");
        let server_thread = std::thread::spawn(move || {
            let outcomes = runtime().block_on(serve(server));
            drop(server_node);
            outcomes
        });

        let client_ctx = RosContext::with_domain(domain).unwrap();
        let mut client_node = node(&client_ctx, "driver", "/");
        let client = RosActionClient::<Execute>::new(&mut client_node, "/robot/execute").unwrap();
        let rt = runtime();
        rt.block_on(async {
            bounded("server discovery", client.wait_for_server(&client_node)).await;
            let goal = |max_steps| ExecuteGoal {
                instruction: "pick up the cup".into(),
                max_steps,
                time_limit: Default::default(),
                mode: String::new(),
            };

            // A long goal, canceled after three feedback messages.
            let a = bounded("send A", client.send_goal(goal(1000)))
                .await
                .unwrap()
                .expect("goal A accepted");
            let feedback = client.feedback(a);
            futures::pin_mut!(feedback);
            let mut seen = Vec::new();
            while seen.len() < 3 {
                seen.push(bounded("feedback A", feedback.next()).await.unwrap().unwrap().step);
            }
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "feedback steps {seen:?}");
            assert!(
                bounded("cancel A", client.cancel(a)).await.unwrap(),
                "cancel of A was not accepted"
            );
            let (status, result) = bounded("result A", client.result(a)).await.unwrap();
            assert_eq!(status, GoalStatus::Canceled);
            assert_eq!(result.outcome, ExecuteResult::CANCELED);
            assert!(result.steps >= 3 && result.steps < 1000, "{result:?}");

            // A short goal that runs to completion with five feedback messages.
            let b = bounded("send B", client.send_goal(goal(5)))
                .await
                .unwrap()
                .expect("goal B accepted");
            let feedback = client.feedback(b);
            futures::pin_mut!(feedback);
            let mut steps = Vec::new();
            while steps.last() != Some(&5) {
                steps.push(bounded("feedback B", feedback.next()).await.unwrap().unwrap().step);
            }
            assert_eq!(steps, vec![1, 2, 3, 4, 5]);
            let (status, result) = bounded("result B", client.result(b)).await.unwrap();
            assert_eq!(status, GoalStatus::Succeeded);
            assert_eq!(
                result,
                ExecuteResult {
                    outcome: ExecuteResult::SUCCEEDED,
                    steps: 5,
                    reason: "Succeeded at step 5".into()
                }
            );

            // max_steps == 0 is rejected by this server.
            assert_eq!(bounded("send C", client.send_goal(goal(0))).await.unwrap(), None);
        });
        let outcomes = server_thread.join().unwrap();
        assert_eq!(outcomes, vec![GoalOutcome::Canceled, GoalOutcome::Succeeded]);
    }
}
