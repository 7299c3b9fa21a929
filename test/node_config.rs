//! The shipped configs, launch-style invocations and the rviz file parse into valid node settings
//! (no DDS, no model).
use std::path::PathBuf;

use univla_ros::node::config::{ArmConfig, ArmOutput, NavConfig};
use univla_ros::node::control::scheduler::ChunkMode;
use univla_ros::ros::RosArgs;

fn path(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

/// Arguments as launch_ros builds them for `Node(name=…, namespace=…, parameters=[file, {…}])`:
/// the user file, then a generated file with the dict overrides.
fn launch_args(config: &str, overrides: &std::path::Path, name: &str) -> RosArgs {
    let config = path(config);
    let overrides = overrides.display().to_string();
    let argv = [
        "/install/lib/univla_ros/node",
        "--ros-args",
        "-r",
        &format!("__node:={name}"),
        "-r",
        "__ns:=/robot",
        "--params-file",
        &config,
        "--params-file",
        &overrides,
        "-r",
        "image_raw:=/camera/color/image_raw",
    ];
    RosArgs::parse(argv).unwrap().0
}

fn overrides(dir: &std::path::Path, name: &str) -> PathBuf {
    let p = dir.join("launch_params.yaml");
    std::fs::write(
        &p,
        format!("/robot/{name}:\n  ros__parameters:\n    use_sim_time: false\n    dry_run: true\n    checkpoint: /ckpt\n    device: cpu\n"),
    )
    .unwrap();
    p
}

#[test]
fn piper_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let args = launch_args("config/piper_realworld.yaml", &overrides(dir.path(), "arm"), "arm");
    let id = args.resolve_node(ArmConfig::NODE_NAME, "/").unwrap();
    assert_eq!(id.fqn, "/robot/arm");
    assert_eq!(id.resolve_topic("image_raw").unwrap(), "/camera/color/image_raw");
    let cfg = ArmConfig::from_params(&id.params).unwrap();
    assert!(cfg.common.dry_run, "the launch override wins");
    assert_eq!(cfg.common.policy.options.checkpoint, PathBuf::from("/ckpt"));
    assert_eq!(cfg.joint_names().len(), 7);
    match &cfg.output {
        ArmOutput::Joints { limits, .. } => {
            assert_eq!(limits.max_step.len(), 7);
            assert!(limits.min.iter().zip(&limits.max).all(|(a, b)| a < b));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cfg.common.chunk_mode, ChunkMode::Ensemble { size: 0 });
}

#[test]
fn libero_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let args = launch_args("config/libero_eef.yaml", &overrides(dir.path(), "eef"), "eef");
    let cfg = ArmConfig::from_params(&args.resolve_node(ArmConfig::NODE_NAME, "/").unwrap().params).unwrap();
    assert!(matches!(cfg.output, ArmOutput::EefDelta { .. }));
    assert_eq!(
        cfg.common.policy.options.unnorm_key.as_deref(),
        Some("libero_10_no_noops")
    );
}

#[test]
fn r2r_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let args = launch_args("config/r2r_base.yaml", &overrides(dir.path(), "nav"), "nav");
    let cfg = NavConfig::from_params(&args.resolve_node(NavConfig::NODE_NAME, "/").unwrap().params).unwrap();
    assert_eq!(cfg.profile.forward_m, 0.25);
    assert_eq!(cfg.profile.turn_deg, 15.0);
    assert_eq!(cfg.common.instruction_topic.as_deref(), Some("instruction"));
}

#[test]
fn rviz_file_names_the_node_topics() {
    let rviz = std::fs::read_to_string(path("config/univla.rviz")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&rviz).unwrap();
    assert!(doc.get("Visualization Manager").is_some());
    assert!(rviz.contains("/univla_arm/chunk_markers") && rviz.contains("/univla_arm/input_image"));
}

const ARM6_JOINTS: &str = "joint_names:=[joint1, joint2, joint3, joint4, joint5, joint6, gripper_joint]";

/// `univla_arm` settings from `-p` arguments on top of a checkpoint and decoder.
fn arm_params(extra: &[&str]) -> Result<ArmConfig, String> {
    let mut argv = vec![
        "univla_arm",
        "--ros-args",
        "-p",
        "checkpoint:=/ckpt",
        "-p",
        "decoder:=/ckpt/head.safetensors",
    ];
    for e in extra {
        argv.extend_from_slice(&["-p", e]);
    }
    let params = RosArgs::parse(argv)
        .unwrap()
        .0
        .resolve_node(ArmConfig::NODE_NAME, "/")
        .unwrap()
        .params;
    ArmConfig::from_params(&params).map_err(|e| e.to_string())
}

#[test]
fn urdf_chain_is_loaded_and_checked_at_startup() {
    let urdf = format!("urdf_path:={}", path("test/data/urdf/arm6.urdf"));
    let base = "urdf_base_link:=base_link";
    let tip = "urdf_tip_link:=tool0";
    let cfg = arm_params(&[ARM6_JOINTS, &urdf, base, tip]).unwrap();
    let ArmOutput::Joints { fk: Some(fk), .. } = &cfg.output else {
        panic!("no FK path: {:?}", cfg.output);
    };
    assert_eq!(
        fk.chain.joint_names(),
        ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6"]
    );
    assert_eq!(fk.map, [0, 1, 2, 3, 4, 5]);
    // A straight arm: the tool 1.12 m above the base whatever the gripper does.
    let path = fk.tip_path(&[vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.04]]);
    assert_eq!(path.len(), 1);
    assert!((path[0].translation.vector - nalgebra::Vector3::new(0.0, 0.0, 1.12)).norm() < 1e-9);
    // Joint order in joint_names need not follow the chain.
    let shuffled = "joint_names:=[gripper_joint, joint6, joint5, joint4, joint3, joint2, joint1]";
    let cfg = arm_params(&[shuffled, &urdf, base, tip]).unwrap();
    let ArmOutput::Joints { fk: Some(fk), .. } = &cfg.output else {
        panic!("no FK path");
    };
    assert_eq!(fk.map, [6, 5, 4, 3, 2, 1]);
    // Without the parameters there is no FK path.
    let cfg = arm_params(&[ARM6_JOINTS]).unwrap();
    assert!(matches!(cfg.output, ArmOutput::Joints { fk: None, .. }));

    // All three or none.
    let e = arm_params(&[ARM6_JOINTS, &urdf]).unwrap_err();
    assert!(
        e.contains("go together") && e.contains("'urdf_base_link', 'urdf_tip_link' missing"),
        "{e}"
    );
    let e = arm_params(&[ARM6_JOINTS, tip]).unwrap_err();
    assert!(e.contains("'urdf_tip_link' given") && e.contains("'urdf_path'"), "{e}");
    // An unknown tip link is named.
    let e = arm_params(&[ARM6_JOINTS, &urdf, base, "urdf_tip_link:=tool9"]).unwrap_err();
    assert!(
        e.contains("'urdf_path'") && e.contains("tip link 'tool9' is not defined") && e.contains("arm6.urdf"),
        "{e}"
    );
    // A chain joint missing from joint_names is named; the extra gripper is fine.
    let e = arm_params(&[
        "joint_names:=[joint1, joint2, joint3, joint4, joint6, gripper_joint]",
        &urdf,
        base,
        tip,
    ])
    .unwrap_err();
    assert!(e.contains("'joint5'") && e.contains("not in 'joint_names'"), "{e}");
    assert!(!e.contains("'joint4'"), "{e}");
    // An unreadable file fails at startup too.
    let e = arm_params(&[ARM6_JOINTS, "urdf_path:=/nonexistent/robot.urdf", base, tip]).unwrap_err();
    assert!(e.contains("cannot read URDF file /nonexistent/robot.urdf"), "{e}");
    // The parameters are known (no unknown-parameter error) in eef_delta mode as well.
    let cfg = arm_params(&["action_space:=eef_delta", &urdf, base, tip]).unwrap();
    assert!(matches!(cfg.output, ArmOutput::EefDelta { .. }));
}

/// The project's Python (the venv scripts/setup.sh makes), else the system's.
fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Runs `launch/<file>` through stand-ins of the launch API (no ROS here) and returns the Node it
/// starts, as JSON.
fn evaluate_launch(file: &str, args: &[&str]) -> serde_json::Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(python())
        .arg(path("test/launch/evaluate_launch.py"))
        .arg(root)
        .arg(path(&format!("launch/{file}")))
        .args(args)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(1), "{v}");
    v["nodes"][0].clone()
}

/// The command line launch_ros gives the Node: name, namespace, the params file, the dict
/// overrides as a generated `/**` file, and the remaps.
fn launch_ros_command_line(node: &serde_json::Value, dir: &std::path::Path) -> RosArgs {
    let params = node["parameters"].as_array().unwrap();
    let overrides = dir.join("launch_overrides.yaml");
    let mut yaml = String::from("/**:\n  ros__parameters:\n");
    for (k, v) in params[1].as_object().unwrap() {
        yaml += &format!("    {k}: {v}\n");
    }
    std::fs::write(&overrides, yaml).unwrap();
    let mut argv = vec![
        "node".to_string(),
        "--ros-args".into(),
        "-r".into(),
        format!("__node:={}", node["name"].as_str().unwrap()),
    ];
    // launch_ros passes a namespace only when one is set.
    let ns = node["namespace"].as_str().unwrap();
    if !ns.is_empty() {
        argv.extend(["-r".into(), format!("__ns:={ns}")]);
    }
    argv.extend([
        "--params-file".into(),
        params[0].as_str().unwrap().into(),
        "--params-file".into(),
        overrides.display().to_string(),
    ]);
    for r in node["remappings"].as_array().unwrap() {
        argv.push("-r".into());
        argv.push(format!("{}:={}", r[0].as_str().unwrap(), r[1].as_str().unwrap()));
    }
    // The shipped configs say cuda; this machine may have no GPU.
    argv.extend(["-p".into(), "device:=cpu".into()]);
    RosArgs::parse(argv).unwrap().0
}

#[test]
fn launch_files_start_the_nodes_with_their_configs_names_and_remaps() {
    let dir = tempfile::tempdir().unwrap();
    let arm = evaluate_launch(
        "arm.launch.py",
        &[
            "namespace:=/robot",
            "checkpoint:=/ckpt",
            "dry_run:=true",
            "node_name:=policy",
        ],
    );
    assert_eq!(arm["executable"], "univla_arm");
    let id = launch_ros_command_line(&arm, dir.path())
        .resolve_node(ArmConfig::NODE_NAME, "/")
        .unwrap();
    assert_eq!(id.fqn, "/robot/policy");
    assert_eq!(id.resolve_topic("image_raw").unwrap(), "/camera/color/image_raw");
    assert_eq!(
        id.resolve_topic("joint_trajectory").unwrap(),
        "/arm_controller/joint_trajectory"
    );
    let cfg = ArmConfig::from_params(&id.params).unwrap();
    assert!(cfg.common.dry_run);
    assert_eq!(cfg.common.policy.options.checkpoint, PathBuf::from("/ckpt"));

    let nav = evaluate_launch("nav.launch.py", &["cmd_vel_topic:=/base/cmd_vel", "use_sim_time:=true"]);
    assert_eq!(nav["executable"], "univla_nav");
    let id = launch_ros_command_line(&nav, dir.path())
        .resolve_node(NavConfig::NODE_NAME, "/")
        .unwrap();
    assert_eq!(id.fqn, "/univla_nav");
    assert_eq!(id.resolve_topic("cmd_vel").unwrap(), "/base/cmd_vel");
    assert!(NavConfig::from_params(&id.params).is_ok());
    // An argument the launch file does not declare is refused, as ros2 launch does.
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(python())
        .args([
            path("test/launch/evaluate_launch.py"),
            root.into(),
            path("launch/nav.launch.py"),
        ])
        .arg("trajectory_topic:=/x")
        .output()
        .unwrap();
    assert!(!out.status.success());
}
