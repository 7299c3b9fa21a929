//! Interoperability with ROS 2's default middleware: a Fast DDS peer that behaves on the wire as
//! rclcpp over `rmw_fastrtps_cpp` (test/fastdds_peer/) drives the real `univla_arm` binary:
//! camera and joint-state topics in, trajectories out, the whole `Execute` action protocol
//! (early, late, repeated, second-client and unknown-goal `get_result`, preemption, cancel), the
//! parameter services and the node's `ros_discovery_info` entry; the same for `univla_nav` (camera
//! in, `Twist` out); and `univla_arm`'s FollowJointTrajectory client against a Fast DDS
//! controller. DDS tests: run them in a private network namespace (scripts/test.sh); they fail
//! outside one.
mod fastdds;
mod node_common;

use std::time::Duration;

use fastdds::run_peer;
use node_common::*;

const ARM: &str = env!("CARGO_BIN_EXE_univla_arm");
/// Longest the whole peer scenario may run (each of its waits is bounded much lower).
const PEER_LIMIT: Duration = Duration::from_secs(400);

/// The arm node as in test/node_arm.rs: tiny checkpoint, 7 joints, 10 Hz control; `extra`
/// are more parameter lines for its params file.
fn start_arm(dir: &std::path::Path, domain: u16, extra_env: &[(&str, &str)], extra: &str) -> ChildGuard {
    let ckpt = checkpoint(dir);
    let names: Vec<String> = (1..=7).map(|i| format!("joint{i}")).collect();
    let params = dir.join("arm.yaml");
    let limits = |v: f64| vec![format!("{v:?}"); 7].join(", ");
    std::fs::write(
        &params,
        format!(
            "/robot/arm_policy:\n  ros__parameters:\n    checkpoint: {ckpt}\n    decoder: action_decoder.safetensors\n    \
             realworld_stats: {ckpt}/realworld_stats.json\n    joint_names: [{names}]\n    position_min: [{min}]\n    \
             position_max: [{max}]\n    max_velocity: [{big}]\n    max_step: [{big}]\n    greedy: true\n    \
             control_rate_hz: 10.0\n    image_timeout_s: 2.0\n    joint_state_timeout_s: 2.0\n{extra}",
            ckpt = ckpt.display(),
            names = names.join(", "),
            min = limits(-50.0),
            max = limits(50.0),
            big = limits(100.0),
        ),
    )
    .unwrap();
    let args: Vec<String> = [
        "-r",
        "__node:=arm_policy",
        "-r",
        "__ns:=/robot",
        "--params-file",
        &params.display().to_string(),
        "-r",
        "image_raw:=/cam/image",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    spawn_with_env(ARM, domain, &args, extra_env)
}

/// The checks every run of the arm scenario must pass, whatever the distribution.
const ARM_CHECKS: [&str; 21] = [
    "action_discovery",
    "send_goal",
    "feedback",
    "joint_trajectory",
    "preempt_send_goal",
    "result_requested_early",
    "status_topic",
    "result_late",
    "result_repeated",
    "result_second_client",
    "result_unknown_goal",
    "result_two_clients",
    "cancel",
    "cancel_result",
    "cancel_terminated_goal",
    "cancel_unknown_goal",
    "get_parameters",
    "list_parameters",
    "set_parameters",
    "rosout_one_writer",
    "clock_reader_type",
];

fn arm_scenario(domain: u16, distro: &str) {
    guard();
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_arm(dir.path(), domain, &[("ROS_DISTRO", distro)], "");
    let report = run_peer(
        "arm",
        &[
            ("domain", domain.to_string()),
            ("action", "/robot/arm_policy/execute".into()),
            ("node", "/robot/arm_policy".into()),
            ("image", "/cam/image".into()),
            ("joint_states", "/robot/joint_states".into()),
            ("trajectory", "/robot/joint_trajectory".into()),
            ("distro", distro.into()),
        ],
        PEER_LIMIT,
    );
    for check in ARM_CHECKS {
        report.passed(check);
    }
    report.passed(&format!("discovery_info_{distro}"));
    assert!(report.exit_ok, "the Fast DDS peer reported failures:\n{report}");
    let status = node.interrupt_and_wait(WAIT);
    assert!(status.success(), "univla_arm exit status {status:?}");
}

/// A Jazzy rclcpp client (16-byte gids in `ros_discovery_info`).
#[test]
fn fastdds_rclcpp_client_drives_arm_node_jazzy() {
    arm_scenario(71, "jazzy");
}

/// A Humble rclcpp client (24-byte gids in `ros_discovery_info`).
#[test]
fn fastdds_rclcpp_client_drives_arm_node_humble() {
    arm_scenario(72, "humble");
}

/// `result_timeout`: an ended goal's result is answered (repeatedly) until the timeout, then
/// the goal is unknown, as with rcl_action. Our own server and client in one process (the
/// late/unknown answers to a Fast DDS client are covered above).
#[test]
fn action_server_keeps_results_for_result_timeout() {
    use univla_ros::ros::action::{GoalOutcome, GoalStatus, RosActionClient, RosActionServer, ServerEvent};
    use univla_ros::ros::msgs::builtin_interfaces::Duration as RosDuration;
    use univla_ros::ros::msgs::univla_msgs::{Execute, ExecuteGoal, ExecuteResult};
    use univla_ros::ros::RosContext;

    guard();
    let timeout = Duration::from_secs(3);
    // Two participants: RustDDS does not match endpoints within one participant.
    let ctx = RosContext::with_domain(73).unwrap();
    let client_ctx = RosContext::with_domain(73).unwrap();
    let mut server_node = peer(&ctx, "result_server");
    let server =
        RosActionServer::<Execute>::with_result_timeout(&mut server_node, "/results/execute", timeout).unwrap();
    assert_eq!(server.result_timeout(), timeout);
    let mut client_node = peer(&client_ctx, "result_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, "/results/execute").unwrap();
    let rt = runtime();
    rt.block_on(async {
        wait_for_action_server(&client, &client_node).await;
        let goal = ExecuteGoal {
            instruction: "wave".into(),
            max_steps: 1,
            time_limit: RosDuration::default(),
            mode: String::new(),
        };
        let (sent, event) = futures::join!(client.send_goal(goal), async {
            match bounded("goal at the server", server.next_event()).await.unwrap() {
                ServerEvent::Goal(req) => server.accept(req).await.unwrap(),
                ServerEvent::Cancel(_) => panic!("expected a goal"),
            }
        });
        let id = sent.unwrap().expect("goal accepted");
        assert_eq!(event.id, id);
        let result = ExecuteResult {
            outcome: ExecuteResult::STEP_LIMIT,
            steps: 1,
            reason: "done".into(),
        };
        // Finishing does not wait for a client.
        bounded("finish", server.finish(event, GoalOutcome::Succeeded, result.clone()))
            .await
            .unwrap();
        let ended = std::time::Instant::now();
        for what in ["late result", "repeated result"] {
            let (status, got) = bounded(what, client.result(id)).await.unwrap();
            assert_eq!((status, &got), (GoalStatus::Succeeded, &result), "{what}");
        }
        assert!(ended.elapsed() < timeout, "the results above came after the timeout");
        tokio::time::sleep(timeout + Duration::from_millis(500)).await;
        let (status, got) = bounded("expired result", client.result(id)).await.unwrap();
        assert_eq!(status, GoalStatus::Unknown, "{got:?}");
        assert_eq!(got, ExecuteResult::default());
    });
}

/// Our FollowJointTrajectory client (in `univla_arm`) against a Fast DDS action server written
/// as ros2_control's controllers are served by rmw_fastrtps, which answers `get_result` only a
/// second after each goal ended. The controller is started with the node, so the first goals
/// race its discovery: goals are refused until it is discovered, then every planned trajectory
/// and the final hold arrive as well-formed goals, every result request is answered, and the
/// `Execute` goal runs to its step limit.
#[test]
fn fastdds_follow_joint_trajectory_server_answering_late() {
    use univla_ros::ros::action::{GoalStatus, RosActionClient};
    use univla_ros::ros::msgs::builtin_interfaces::Duration as RosDuration;
    use univla_ros::ros::msgs::univla_msgs::{Execute, ExecuteGoal, ExecuteResult};
    use univla_ros::ros::RosContext;

    guard();
    let domain = 74;
    let controller = std::thread::spawn(move || {
        run_peer(
            "fjt-server",
            &[
                ("domain", domain.to_string()),
                ("action", "/arm_controller/follow_joint_trajectory".into()),
                ("run", "40".into()),
                ("late", "1.0".into()),
                // One trajectory per control step of the 8-step goal, less the steps a loaded
                // machine may turn into holds (stale inputs); none is lost to discovery, since
                // the goal starts only once the controller is discovered.
                ("min_motion", "4".into()),
            ],
            PEER_LIMIT,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_arm(
        dir.path(),
        domain,
        &[],
        "    use_follow_joint_trajectory: true\n    follow_joint_trajectory_action: /arm_controller/follow_joint_trajectory\n",
    );
    let names: Vec<String> = (1..=7).map(|i| format!("joint{i}")).collect();
    let robot = SyntheticRobot::start(domain, "/cam/image", Some(("/robot/joint_states", names, 0.125)), 15.0);
    let ctx = RosContext::with_domain(domain).unwrap();
    let mut client_node = peer(&ctx, "goal_client");
    let client = RosActionClient::<Execute>::new(&mut client_node, "/robot/arm_policy/execute").unwrap();
    let rt = runtime();
    rt.block_on(async {
        wait_for_action_server(&client, &client_node).await;
        let goal = ExecuteGoal {
            instruction: "stack the blocks".into(),
            max_steps: 8,
            time_limit: RosDuration::default(),
            mode: String::new(),
        };
        let start = std::time::Instant::now();
        let id = loop {
            if let Some(id) = bounded("Execute goal", client.send_goal(goal.clone())).await.unwrap() {
                break id;
            }
            assert!(start.elapsed() < WAIT, "the Execute goal was never accepted");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let (status, result) = bounded("Execute result", client.result(id)).await.unwrap();
        assert_eq!(status, GoalStatus::Succeeded, "{result:?}");
        assert_eq!((result.outcome, result.steps), (ExecuteResult::STEP_LIMIT, 8));
    });
    drop(robot);
    let report = controller.join().expect("the controller thread panicked");
    eprintln!("{report}");
    report.passed("fjt_goals");
    report.passed("fjt_last_goal_is_hold");
    report.passed("fjt_results_answered_late");
    assert!(report.exit_ok, "{report}");
    let status = node.interrupt_and_wait(WAIT);
    assert!(status.success(), "univla_arm exit status {status:?}");
}

const NAV: &str = env!("CARGO_BIN_EXE_univla_nav");

/// The navigation node with the tiny checkpoint's R2R head, 10 Hz decisions.
fn start_nav(dir: &std::path::Path, domain: u16, distro: &str) -> ChildGuard {
    let ckpt = checkpoint(dir);
    let params = dir.join("nav.yaml");
    std::fs::write(
        &params,
        format!(
            "/base/nav_policy:\n  ros__parameters:\n    checkpoint: {}\n    decoder: action_decoder_r2r.safetensors\n    \
             greedy: true\n    control_rate_hz: 10.0\n    linear_speed: 0.25\n    angular_speed_deg: 15.0\n    \
             settle_s: 0.05\n    image_timeout_s: 2.0\n",
            ckpt.display()
        ),
    )
    .unwrap();
    let args: Vec<String> = [
        "-r",
        "__node:=nav_policy",
        "-r",
        "__ns:=/base",
        "--params-file",
        &params.display().to_string(),
        "-r",
        "image_raw:=/cam/image",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    spawn_with_env(NAV, domain, &args, &[("ROS_DISTRO", distro)])
}

/// An rclcpp client on Fast DDS drives `univla_nav`: camera in, `Twist` commands out (every one a
/// configured profile, a zero twist after cancel), the `Execute` action with early, late and
/// unknown-goal `get_result`, the parameter services and `ros_discovery_info`.
fn nav_scenario(domain: u16, distro: &str) {
    guard();
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_nav(dir.path(), domain, distro);
    let report = run_peer(
        "nav",
        &[
            ("domain", domain.to_string()),
            ("action", "/base/nav_policy/execute".into()),
            ("node", "/base/nav_policy".into()),
            ("image", "/cam/image".into()),
            ("cmd_vel", "/base/cmd_vel".into()),
            ("distro", distro.into()),
            ("rate", "10".into()),
            ("linear", "0.25".into()),
            ("angular_deg", "15".into()),
        ],
        PEER_LIMIT,
    );
    for check in [
        "action_discovery",
        "send_goal",
        "result_requested_early",
        "result_late",
        "result_unknown_goal",
        "cancel_zero_twist",
        "cmd_vel",
        "get_parameters",
        "list_parameters",
        "set_parameters",
    ] {
        report.passed(check);
    }
    report.passed(&format!("discovery_info_{distro}"));
    assert!(report.exit_ok, "the Fast DDS peer reported failures:\n{report}");
    let status = node.interrupt_and_wait(WAIT);
    assert!(status.success(), "univla_nav exit status {status:?}");
}

#[test]
fn fastdds_rclcpp_client_drives_nav_node_jazzy() {
    nav_scenario(75, "jazzy");
}

#[test]
fn fastdds_rclcpp_client_drives_nav_node_humble() {
    nav_scenario(76, "humble");
}
