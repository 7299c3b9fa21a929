//! CDR layout and round-trip tests, and checks that `msg/` matches the Rust structs.
use super::builtin_interfaces::{Duration, Time};
use super::control_msgs::*;
use super::diagnostic_msgs::*;
use super::geometry_msgs::*;
use super::rosgraph_msgs::Clock;
use super::sensor_msgs::*;
use super::std_msgs::*;
use super::trajectory_msgs::*;
use super::univla_msgs::*;
use super::visualization_msgs::*;
use super::*;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(msg: &T) {
    let bytes = to_cdr(msg).unwrap();
    assert_eq!(&bytes[..4], &CDR_LE_HEADER_BYTES);
    let back: T = from_cdr(&bytes).unwrap();
    assert_eq!(&back, msg);
}

const CDR_LE_HEADER_BYTES: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

fn header(sec: i32, frame: &str) -> Header {
    Header {
        stamp: Time { sec, nanosec: 500 },
        frame_id: frame.into(),
    }
}

#[test]
fn string_layout_is_rosidl_cdr() {
    let bytes = to_cdr(&StringMsg { data: "hi".into() }).unwrap();
    // encapsulation | u32 length incl. NUL | 'h' 'i' NUL
    assert_eq!(bytes, vec![0, 1, 0, 0, 3, 0, 0, 0, b'h', b'i', 0]);
}

#[test]
fn image_layout_is_rosidl_cdr() {
    let img = Image {
        header: Header {
            stamp: Time { sec: 1, nanosec: 2 },
            frame_id: "cam".into(),
        },
        height: 2,
        width: 1,
        encoding: "mono8".into(),
        is_bigendian: 0,
        step: 1,
        data: vec![7, 8],
    };
    let mut want = vec![0u8, 1, 0, 0];
    want.extend([1, 0, 0, 0, 2, 0, 0, 0]); // stamp
    want.extend([4, 0, 0, 0, b'c', b'a', b'm', 0]); // frame_id
    want.extend([2, 0, 0, 0, 1, 0, 0, 0]); // height, width
    want.extend([6, 0, 0, 0, b'm', b'o', b'n', b'o', b'8', 0]); // encoding (ends at offset 34)
    want.extend([0, 0]); // is_bigendian, then 1 pad byte to align step at 36
    want.extend([1, 0, 0, 0]); // step
    want.extend([2, 0, 0, 0, 7, 8]); // data
    assert_eq!(to_cdr(&img).unwrap(), want);
    round_trip(&img);
}

#[test]
fn big_endian_payload_decodes() {
    let bytes = [0u8, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', 0];
    let s: StringMsg = from_cdr(&bytes).unwrap();
    assert_eq!(s.data, "hi");
}

#[test]
fn bad_payloads_are_errors() {
    assert!(matches!(from_cdr::<StringMsg>(&[0, 1]), Err(CdrError::TooShort(2))));
    assert!(matches!(
        from_cdr::<StringMsg>(&[0, 7, 0, 0, 1, 0, 0, 0, 0]),
        Err(CdrError::Encapsulation(0, 7))
    ));
    assert!(matches!(
        from_cdr::<StringMsg>(&[0, 1, 0, 0, 9, 0, 0, 0, b'h']),
        Err(CdrError::Codec(_))
    ));
}

#[test]
fn every_type_round_trips() {
    round_trip(&Duration { sec: -3, nanosec: 7 });
    round_trip(&Bool { data: true });
    round_trip(&super::rcl_interfaces::Log {
        stamp: Time { sec: 5, nanosec: 6 },
        level: super::rcl_interfaces::Log::WARN,
        name: "robot.arm".into(),
        msg: "rejected goal".into(),
        file: "src/node/driver.rs".into(),
        function: "univla_ros::node::wiring::driver".into(),
        line: 42,
    });
    round_trip(&ColorRGBA {
        r: 0.1,
        g: 0.2,
        b: 0.3,
        a: 1.0,
    });
    round_trip(&CompressedImage {
        header: header(3, "c"),
        format: "jpeg".into(),
        data: vec![0xff, 0xd8, 1],
    });
    round_trip(&JointState {
        header: header(4, "base"),
        name: vec!["j1".into(), "j2".into()],
        position: vec![0.5, -0.5],
        velocity: vec![],
        effort: vec![1.0],
    });
    let pose = Pose {
        position: Point { x: 1.0, y: 2.0, z: 3.0 },
        orientation: Quaternion::default(),
    };
    round_trip(&PoseStamped {
        header: header(5, "world"),
        pose,
    });
    let twist = Twist {
        linear: Vector3 {
            x: 0.1,
            y: 0.0,
            z: -0.1,
        },
        angular: Vector3 { x: 0.0, y: 0.2, z: 0.0 },
    };
    round_trip(&TwistStamped {
        header: header(6, "tool"),
        twist,
    });
    let point = JointTrajectoryPoint {
        positions: vec![0.1, 0.2],
        velocities: vec![0.0, 0.0],
        accelerations: vec![],
        effort: vec![],
        time_from_start: Duration {
            sec: 0,
            nanosec: 100_000_000,
        },
    };
    let traj = JointTrajectory {
        header: header(7, ""),
        joint_names: vec!["a".into(), "b".into()],
        points: vec![point.clone()],
    };
    round_trip(&traj);
    let mdof_point = MultiDOFJointTrajectoryPoint {
        transforms: vec![Transform::default()],
        velocities: vec![twist],
        accelerations: vec![],
        time_from_start: Duration { sec: 1, nanosec: 0 },
    };
    round_trip(&FollowJointTrajectoryGoal {
        trajectory: traj,
        multi_dof_trajectory: MultiDOFJointTrajectory {
            header: header(8, "x"),
            joint_names: vec!["base".into()],
            points: vec![mdof_point.clone()],
        },
        path_tolerance: vec![JointTolerance {
            name: "a".into(),
            position: 0.1,
            velocity: 0.0,
            acceleration: -1.0,
        }],
        component_path_tolerance: vec![JointComponentTolerance {
            joint_name: "base".into(),
            component: JointComponentTolerance::ROTATION,
            position: 0.2,
            velocity: 0.0,
            acceleration: 0.0,
        }],
        goal_tolerance: vec![],
        component_goal_tolerance: vec![],
        goal_time_tolerance: Duration { sec: 0, nanosec: 5 },
    });
    round_trip(&FollowJointTrajectoryResult {
        error_code: FollowJointTrajectoryResult::PATH_TOLERANCE_VIOLATED,
        error_string: "joint a".into(),
    });
    round_trip(&FollowJointTrajectoryFeedback {
        header: header(9, ""),
        joint_names: vec!["a".into()],
        desired: point.clone(),
        actual: point.clone(),
        error: JointTrajectoryPoint::default(),
        multi_dof_joint_names: vec![],
        multi_dof_desired: mdof_point,
        multi_dof_actual: MultiDOFJointTrajectoryPoint::default(),
        multi_dof_error: MultiDOFJointTrajectoryPoint::default(),
    });
    let marker = Marker {
        header: header(10, "map"),
        ns: "plan".into(),
        id: 3,
        type_: Marker::LINE_STRIP,
        action: Marker::ADD,
        pose,
        scale: Vector3 {
            x: 0.01,
            y: 0.0,
            z: 0.0,
        },
        color: ColorRGBA {
            r: 1.0,
            g: 0.0,
            b: 0.0,
            a: 1.0,
        },
        lifetime: Duration { sec: 1, nanosec: 0 },
        frame_locked: true,
        points: vec![Point::default(), Point { x: 1.0, y: 1.0, z: 1.0 }],
        colors: vec![],
        texture_resource: String::new(),
        texture: CompressedImage::default(),
        uv_coordinates: vec![UVCoordinate { u: 0.5, v: 0.25 }],
        text: "step 3".into(),
        mesh_resource: String::new(),
        mesh_file: MeshFile {
            filename: "m.stl".into(),
            data: vec![1, 2, 3],
        },
        mesh_use_embedded_materials: false,
    };
    round_trip(&MarkerArray {
        markers: vec![marker.clone(), marker],
    });
    round_trip(&DiagnosticArray {
        header: header(11, ""),
        status: vec![DiagnosticStatus {
            level: DiagnosticStatus::WARN,
            name: "univla: policy".into(),
            message: "slow".into(),
            hardware_id: "cpu".into(),
            values: vec![KeyValue {
                key: "latency_ms".into(),
                value: "120".into(),
            }],
        }],
    });
    round_trip(&Clock {
        clock: Time { sec: 12, nanosec: 34 },
    });
    round_trip(&LatentActions {
        header: header(13, ""),
        ids: vec![32001, 32005, 32010, 32016],
        tokens: "<ACT_1>".into(),
    });
    round_trip(&ExecuteGoal {
        instruction: "put the cup on the plate".into(),
        max_steps: 200,
        time_limit: Duration { sec: 60, nanosec: 0 },
        mode: "ensemble".into(),
    });
    round_trip(&ExecuteResult {
        outcome: ExecuteResult::CANCELED,
        steps: 17,
        reason: "canceled".into(),
    });
    round_trip(&ExecuteFeedback {
        step: 4,
        latent_tokens: vec![1, 2, 3, 4],
        inference_latency_ms: 87.5,
        commanded_action: vec![0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 1.0],
    });
}

#[test]
fn type_names_follow_rosidl() {
    assert_eq!(Image::ros_type(), "sensor_msgs/msg/Image");
    assert_eq!(StringMsg::dds_type(), "std_msgs::msg::dds_::String_");
    assert_eq!(Clock::dds_type(), "rosgraph_msgs::msg::dds_::Clock_");
    assert_eq!(<Execute as RosAction>::ros_type(), "univla_msgs/action/Execute");
    assert_eq!(
        <FollowJointTrajectory as RosAction>::ros_type(),
        "control_msgs/action/FollowJointTrajectory"
    );
}

/// Our DDS type names equal the ones ros2-client derives for the same package and name.
fn dds_name_consistent<T: RosMessage>() {
    assert_eq!(
        T::dds_type(),
        ros2_client::MessageTypeName::new(T::PACKAGE, T::NAME).dds_msg_type()
    );
}

#[test]
fn dds_type_names_match_ros2_client() {
    dds_name_consistent::<Image>();
    dds_name_consistent::<CompressedImage>();
    dds_name_consistent::<JointState>();
    dds_name_consistent::<StringMsg>();
    dds_name_consistent::<Clock>();
    dds_name_consistent::<JointTrajectory>();
    dds_name_consistent::<TwistStamped>();
    dds_name_consistent::<MarkerArray>();
    dds_name_consistent::<DiagnosticArray>();
    dds_name_consistent::<LatentActions>();
    assert_eq!(Clock::dds_type(), "rosgraph_msgs::msg::dds_::Clock_");
    assert_eq!(LatentActions::dds_type(), "univla_msgs::msg::dds_::LatentActions_");
}

#[test]
fn time_conversions() {
    assert_eq!(
        Time::from_nanos(1_500_000_000),
        Time {
            sec: 1,
            nanosec: 500_000_000
        }
    );
    assert_eq!(
        Duration::from_nanos(-1),
        Duration {
            sec: -1,
            nanosec: 999_999_999
        }
    );
    assert_eq!(Duration::from_nanos(-1).to_nanos(), -1);
    assert_eq!(Duration::from_nanos(-1).to_std(), None);
    assert_eq!(Time::from_nanos(i64::MAX).sec, i32::MAX);
    assert_eq!(Quaternion::default().w, 1.0);
}

/// Fields `(type, name)` of the parts of a `.msg`/`.action` file, without comments and constants.
fn parse_interface(path: &str) -> Vec<Vec<(String, String)>> {
    let full = format!("{}/msg/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).unwrap();
    let mut parts = vec![Vec::new()];
    for line in text.lines() {
        let line = line.split('#').next().unwrap().trim();
        if line == "---" {
            parts.push(Vec::new());
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(ty), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        if line.contains('=') {
            continue; // constant
        }
        parts.last_mut().unwrap().push((ty.to_string(), name.to_string()));
    }
    parts
}

/// Field names of a struct in declaration order (serde_yaml keeps insertion order).
fn rust_fields<T: Serialize + Default>() -> Vec<String> {
    let serde_yaml::Value::Mapping(map) = serde_yaml::to_value(T::default()).unwrap() else {
        panic!("not a struct")
    };
    map.keys().map(|k| k.as_str().unwrap().to_string()).collect()
}

fn check<T: Serialize + Default>(parsed: &[(String, String)], expected: &[(&str, &str)]) {
    let want: Vec<(String, String)> = expected.iter().map(|(t, n)| (t.to_string(), n.to_string())).collect();
    assert_eq!(parsed, want.as_slice(), "interface file differs from the expected list");
    let names: Vec<String> = expected.iter().map(|(_, n)| n.to_string()).collect();
    assert_eq!(rust_fields::<T>(), names, "Rust struct differs from the interface file");
}

#[test]
fn execute_action_file_matches_structs() {
    let parts = parse_interface("action/Execute.action");
    assert_eq!(parts.len(), 3);
    check::<ExecuteGoal>(
        &parts[0],
        &[
            ("string", "instruction"),
            ("uint32", "max_steps"),
            ("builtin_interfaces/Duration", "time_limit"),
            ("string", "mode"),
        ],
    );
    check::<ExecuteResult>(
        &parts[1],
        &[("uint8", "outcome"), ("uint32", "steps"), ("string", "reason")],
    );
    check::<ExecuteFeedback>(
        &parts[2],
        &[
            ("uint32", "step"),
            ("int32[]", "latent_tokens"),
            ("float32", "inference_latency_ms"),
            ("float64[]", "commanded_action"),
        ],
    );
}

#[test]
fn execute_outcome_constants_match_file() {
    let full = format!("{}/msg/action/Execute.action", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(full).unwrap();
    let consts: Vec<(String, u8)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("uint8 "))
        .filter_map(|l| l.split_once('='))
        .map(|(n, v)| (n.trim().to_string(), v.trim().parse().unwrap()))
        .collect();
    let want = [
        ("UNKNOWN", ExecuteResult::UNKNOWN),
        ("SUCCEEDED", ExecuteResult::SUCCEEDED),
        ("ABORTED", ExecuteResult::ABORTED),
        ("CANCELED", ExecuteResult::CANCELED),
        ("PREEMPTED", ExecuteResult::PREEMPTED),
        ("REJECTED", ExecuteResult::REJECTED),
        ("STEP_LIMIT", ExecuteResult::STEP_LIMIT),
        ("TIME_LIMIT", ExecuteResult::TIME_LIMIT),
    ];
    let want: Vec<(String, u8)> = want.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    assert_eq!(consts, want);
}

#[test]
fn latent_actions_file_matches_struct() {
    let parts = parse_interface("msg/LatentActions.msg");
    assert_eq!(parts.len(), 1);
    check::<LatentActions>(
        &parts[0],
        &[("std_msgs/Header", "header"), ("int32[]", "ids"), ("string", "tokens")],
    );
}
