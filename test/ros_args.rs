//! `--ros-args` parsing, parameter files and name resolution, with the argument vectors that
//! launch_ros and `ros2 run` produce.
use std::io::Write;

use univla_ros::ros::{LogLevel, ParamValue, RosArgs, RosArgsError};

fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A temporary parameter file like the one launch_ros writes for `parameters=[{...}]`.
fn params_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().prefix("launch_params_").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn launch_ros_node_vector() {
    let file = params_file(
        "/**:\n  ros__parameters:\n    control_rate_hz: 10.0\n    joint_names:\n    - j1\n    - j2\n    use_sim_time: false\n    gains:\n      kp: 1.5\n",
    );
    let path = file.path().to_str().unwrap();
    let args = argv(&[
        "/install/lib/univla_ros/univla",
        "--model",
        "m.pt",
        "--ros-args",
        "-r",
        "__node:=arm",
        "-r",
        "__ns:=/robot1",
        "--params-file",
        path,
        "-r",
        "image:=/cam/color/image_raw",
    ]);
    let (ros, rest) = RosArgs::parse(args).unwrap();
    assert_eq!(rest, argv(&["/install/lib/univla_ros/univla", "--model", "m.pt"]));
    let node = ros.resolve_node("univla_policy", "").unwrap();
    assert_eq!(node.name, "arm");
    assert_eq!(node.namespace, "/robot1");
    assert_eq!(node.fqn, "/robot1/arm");
    assert_eq!(node.params.f64("control_rate_hz").unwrap(), Some(10.0));
    assert_eq!(
        node.params.string_array("joint_names").unwrap(),
        Some(argv(&["j1", "j2"]))
    );
    assert_eq!(node.params.bool("use_sim_time").unwrap(), Some(false));
    assert_eq!(node.params.f64("gains.kp").unwrap(), Some(1.5));
    assert_eq!(node.resolve_topic("image").unwrap(), "/cam/color/image_raw");
    assert_eq!(node.resolve_topic("joint_states").unwrap(), "/robot1/joint_states");
    assert_eq!(node.resolve_topic("~/status").unwrap(), "/robot1/arm/status");
    assert_eq!(node.resolve_topic("/clock").unwrap(), "/clock");
    assert!(ros.rosout_logs && ros.stdout_logs && !ros.external_lib_logs);
}

#[test]
fn ros2_run_vector_with_params_and_flags() {
    let args = argv(&[
        "univla_smoke",
        "--ros-args",
        "-p",
        "rate_hz:=20.0",
        "--param",
        "count:=5",
        "-p",
        "name:=hello world",
        "--log-level",
        "debug",
        "--log-level",
        "rcl:=warn",
        "-e",
        "/enclave",
        "--disable-rosout-logs",
        "--disable-stdout-logs",
        "--enable-external-lib-logs",
    ]);
    let (ros, rest) = RosArgs::parse(args).unwrap();
    assert_eq!(rest, argv(&["univla_smoke"]));
    assert_eq!(ros.log_level, Some(LogLevel::Debug));
    assert_eq!(ros.logger_levels, vec![("rcl".to_string(), LogLevel::Warn)]);
    assert_eq!(ros.enclave.as_deref(), Some("/enclave"));
    assert!(!ros.rosout_logs && !ros.stdout_logs && ros.external_lib_logs);
    let node = ros.resolve_node("smoke", "/").unwrap();
    assert_eq!(node.fqn, "/smoke");
    assert_eq!(node.params.f64("rate_hz").unwrap(), Some(20.0));
    assert_eq!(node.params.i64("count").unwrap(), Some(5));
    assert_eq!(node.params.string("name").unwrap().as_deref(), Some("hello world"));
}

#[test]
fn multiple_blocks_and_double_dash() {
    let args = argv(&[
        "prog",
        "--foo",
        "--ros-args",
        "-r",
        "a:=b",
        "--",
        "--bar",
        "x",
        "--ros-args",
        "-p",
        "k:=1",
        "--",
        "--baz",
    ]);
    let (ros, rest) = RosArgs::parse(args).unwrap();
    assert_eq!(rest, argv(&["prog", "--foo", "--bar", "x", "--baz"]));
    assert_eq!(ros.remaps.len(), 1);
    let node = ros.resolve_node("n", "/ns").unwrap();
    assert_eq!(node.resolve_topic("a").unwrap(), "/ns/b");
    assert_eq!(node.params.i64("k").unwrap(), Some(1));
}

#[test]
fn param_values_are_typed_like_rcl() {
    let (ros, _) = RosArgs::parse(argv(&[
        "p",
        "--ros-args",
        "-p",
        "i:=42",
        "-p",
        "neg:=-7",
        "-p",
        "f:=2.5",
        "-p",
        "e:=1e-3",
        "-p",
        "b:=true",
        "-p",
        "s:=abc",
        "-p",
        "q:='1'",
        "-p",
        "empty:=",
        "-p",
        "ints:=[1, 2, 3]",
        "-p",
        "floats:=[0.5, 1.5]",
        "-p",
        "bools:=[true, false]",
        "-p",
        "strs:=[a, b]",
        "-p",
        "none:=[]",
    ]))
    .unwrap();
    let p = ros.resolve_node("n", "/").unwrap().params;
    assert_eq!(p.get("i"), Some(&ParamValue::Integer(42)));
    assert_eq!(p.get("neg"), Some(&ParamValue::Integer(-7)));
    assert_eq!(p.get("f"), Some(&ParamValue::Double(2.5)));
    assert_eq!(p.get("e"), Some(&ParamValue::Double(1e-3)));
    assert_eq!(p.get("b"), Some(&ParamValue::Bool(true)));
    assert_eq!(p.get("s"), Some(&ParamValue::String("abc".into())));
    assert_eq!(p.get("q"), Some(&ParamValue::String("1".into())));
    assert_eq!(p.get("empty"), Some(&ParamValue::String(String::new())));
    assert_eq!(p.get("ints"), Some(&ParamValue::IntegerArray(vec![1, 2, 3])));
    assert_eq!(p.get("floats"), Some(&ParamValue::DoubleArray(vec![0.5, 1.5])));
    assert_eq!(p.get("bools"), Some(&ParamValue::BoolArray(vec![true, false])));
    assert_eq!(
        p.get("strs"),
        Some(&ParamValue::StringArray(vec!["a".into(), "b".into()]))
    );
    // Integers are accepted where floats are expected, an empty list as any array.
    assert_eq!(p.f64("i").unwrap(), Some(42.0));
    assert_eq!(p.f64_array("ints").unwrap(), Some(vec![1.0, 2.0, 3.0]));
    assert_eq!(p.f64_array("none").unwrap(), Some(vec![]));
    assert_eq!(
        p.u64("neg").unwrap_err().to_string(),
        "param 'neg' must be >= 0, got -7"
    );
}

#[test]
fn typed_getters_explain_mismatches() {
    let (ros, _) = RosArgs::parse(argv(&["p", "--ros-args", "-p", "control_rate_hz:=x", "-p", "n:=2.5"])).unwrap();
    let p = ros.resolve_node("n", "/").unwrap().params;
    assert_eq!(
        p.f64("control_rate_hz").unwrap_err().to_string(),
        "param 'control_rate_hz' must be a float, got string \"x\""
    );
    assert_eq!(
        p.i64("n").unwrap_err().to_string(),
        "param 'n' must be an integer, got double 2.5"
    );
    assert_eq!(p.f64_or("missing", 3.0).unwrap(), 3.0);
    assert!(p.positive_f64_or("missing", 0.0).is_err());
}

#[test]
fn mixed_list_is_rejected() {
    let err = RosArgs::parse(argv(&["p", "--ros-args", "-p", "l:=[1, a]"])).unwrap_err();
    assert!(
        matches!(err, RosArgsError::ParamValue { ref name, .. } if name == "l"),
        "{err}"
    );
}

#[test]
fn params_file_node_keys_and_precedence() {
    let first = params_file(
        r#"
/**:
  ros__parameters:
    a: 1
    b: 1
    c: 1
/**/arm:
  ros__parameters:
    b: 2
/robot1/arm:
  ros__parameters:
    c: 3
    nested:
      deep:
        x: "v"
/other/arm:
  ros__parameters:
    a: 99
robot1:
  arm:
    ros__parameters:
      d: 4
/robot1/*:
  ros__parameters:
    e: 5
arm:
  ros__parameters:
    f: 6
"#,
    );
    let second = params_file("/**:\n  ros__parameters:\n    a: 10\n    g: 7\n");
    let args = argv(&[
        "p",
        "--ros-args",
        "-p",
        "g:=8",
        "--params-file",
        first.path().to_str().unwrap(),
        "--params-file",
        second.path().to_str().unwrap(),
        "-r",
        "__ns:=/robot1",
    ]);
    let (ros, _) = RosArgs::parse(args).unwrap();
    let p = ros.resolve_node("arm", "/").unwrap().params;
    assert_eq!(
        p.i64("a").unwrap(),
        Some(10),
        "a later file overrides an earlier one; /other/arm does not match"
    );
    assert_eq!(p.i64("b").unwrap(), Some(2), "/**/arm matches /robot1/arm");
    assert_eq!(p.i64("c").unwrap(), Some(3));
    assert_eq!(p.string("nested.deep.x").unwrap().as_deref(), Some("v"));
    assert_eq!(
        p.i64("d").unwrap(),
        Some(4),
        "nested namespace keys join to /robot1/arm"
    );
    assert_eq!(p.i64("e").unwrap(), Some(5), "/robot1/* matches one token");
    assert!(p.get("f").is_none(), "'arm' means /arm, which is not /robot1/arm");
    assert_eq!(p.i64("g").unwrap(), Some(8), "-p overrides files even when given first");

    // The same files for a node in the root namespace.
    let (ros, _) = RosArgs::parse(argv(&[
        "p",
        "--ros-args",
        "--params-file",
        first.path().to_str().unwrap(),
    ]))
    .unwrap();
    let p = ros.resolve_node("arm", "/").unwrap().params;
    assert_eq!(p.i64("f").unwrap(), Some(6));
    assert!(p.get("d").is_none() && p.get("e").is_none());
}

#[test]
fn node_prefixed_rules_apply_only_to_that_node() {
    let args = argv(&[
        "p",
        "--ros-args",
        "-r",
        "other:__node:=renamed",
        "-r",
        "talker:__ns:=/t",
        "-r",
        "other:chatter:=/x",
        "-p",
        "other:k:=1",
        "-p",
        "talker:k:=2",
    ]);
    let (ros, _) = RosArgs::parse(args).unwrap();
    let node = ros.resolve_node("talker", "/").unwrap();
    assert_eq!(node.fqn, "/t/talker");
    assert_eq!(node.resolve_topic("chatter").unwrap(), "/t/chatter");
    assert_eq!(node.params.i64("k").unwrap(), Some(2));
}

#[test]
fn remaps_match_the_resolved_name() {
    let args = argv(&[
        "p",
        "--ros-args",
        "-r",
        "__ns:=/r",
        "-r",
        "/r/image:=camera/raw",
        "-r",
        "~/out:=/global_out",
        "-r",
        "cmd:=cmd_new",
        "-r",
        "cmd:=ignored",
    ]);
    let (ros, _) = RosArgs::parse(args).unwrap();
    let node = ros.resolve_node("n", "/").unwrap();
    assert_eq!(node.resolve_topic("image").unwrap(), "/r/camera/raw");
    assert_eq!(node.resolve_topic("/r/image").unwrap(), "/r/camera/raw");
    assert_eq!(node.resolve_topic("~/out").unwrap(), "/global_out");
    assert_eq!(
        node.resolve_topic("cmd").unwrap(),
        "/r/cmd_new",
        "first matching rule wins"
    );
    assert_eq!(node.resolve_topic("{node}/state").unwrap(), "/r/n/state");
}

#[test]
fn malformed_input_is_a_clear_error() {
    let err = |v: &[&str]| RosArgs::parse(argv(v)).unwrap_err().to_string();
    assert_eq!(err(&["p", "--ros-args", "-r"]), "ROS argument '-r' needs a value");
    assert!(err(&["p", "--ros-args", "--bogus"]).starts_with("unknown ROS argument '--bogus'"));
    assert!(err(&["p", "--ros-args", "-r", "a=b"]).starts_with("malformed remap rule 'a=b'"));
    assert!(err(&["p", "--ros-args", "-p", "k=1"]).starts_with("malformed parameter rule 'k=1'"));
    assert!(err(&["p", "--ros-args", "-r", "__ns:=robot"]).contains("must be fully qualified"));
    assert!(err(&["p", "--ros-args", "-r", "__node:=9lives"]).starts_with("invalid node name '9lives'"));
    assert!(err(&["p", "--ros-args", "-r", "__foo:=x"]).starts_with("malformed remap rule"));
    assert!(err(&["p", "--ros-args", "--log-level", "loud"]).starts_with("invalid log level 'loud'"));
    assert!(err(&["p", "--ros-args", "--params-file", "/nonexistent/p.yaml"])
        .starts_with("cannot read parameter file /nonexistent/p.yaml"));
    let bad = params_file("/**:\n  a: 1\n");
    let msg = err(&["p", "--ros-args", "--params-file", bad.path().to_str().unwrap()]);
    assert!(msg.contains("must be a map with 'ros__parameters'"), "{msg}");
    let bad = params_file("ros__parameters:\n  a: 1\n");
    let msg = err(&["p", "--ros-args", "--params-file", bad.path().to_str().unwrap()]);
    assert!(msg.contains("must be under a node name"), "{msg}");
    let (ros, _) = RosArgs::parse(argv(&["p"])).unwrap();
    let node = ros.resolve_node("n", "/").unwrap();
    assert!(node.resolve_topic("a//b").is_err());
    assert!(node.resolve_topic("1abc").is_err());
    assert!(node.resolve_topic("").is_err());
    assert!(node.resolve_topic("~x").is_err());
}
