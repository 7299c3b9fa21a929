use std::f64::consts::{FRAC_PI_2, FRAC_PI_4, PI};

use nalgebra::{Matrix3, Point3, Vector3};

use super::*;

const TOL: f64 = 1e-9;

/// A `<robot>` with the given links and joint elements.
fn robot(links: &[&str], joints: &str) -> String {
    let links: String = links.iter().map(|l| format!("<link name=\"{l}\"/>\n")).collect();
    format!("<?xml version=\"1.0\"?>\n<robot name=\"t\">\n{links}{joints}</robot>\n")
}

/// One `<joint>` element; `extra` holds `<origin>`/`<axis>` children.
fn joint(name: &str, kind: &str, parent: &str, child: &str, extra: &str) -> String {
    format!(
        "<joint name=\"{name}\" type=\"{kind}\"><parent link=\"{parent}\"/><child link=\"{child}\"/>{extra}</joint>\n"
    )
}

fn assert_vec(got: Vector3<f64>, want: [f64; 3]) {
    assert!((got - Vector3::from(want)).norm() < TOL, "got {got:?}, want {want:?}");
}

fn assert_mat(got: Matrix3<f64>, want: Matrix3<f64>) {
    assert!((got - want).norm() < TOL, "got {got}, want {want}");
}

fn rot_x(a: f64) -> Matrix3<f64> {
    let (s, c) = a.sin_cos();
    Matrix3::new(1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c)
}

fn rot_y(a: f64) -> Matrix3<f64> {
    let (s, c) = a.sin_cos();
    Matrix3::new(c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c)
}

fn rot_z(a: f64) -> Matrix3<f64> {
    let (s, c) = a.sin_cos();
    Matrix3::new(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
}

fn rotation(pose: &Isometry3<f64>) -> Matrix3<f64> {
    pose.rotation.to_rotation_matrix().into_inner()
}

const L1: f64 = 0.7;
const L2: f64 = 0.4;

/// A planar arm in the xy plane: two z-axis revolute joints, links L1 and L2, a fixed tip.
fn planar() -> UrdfChain {
    let joints = [
        joint("shoulder", "revolute", "base", "upper", "<axis xyz=\"0 0 1\"/>"),
        joint(
            "elbow",
            "continuous",
            "upper",
            "fore",
            &format!("<origin xyz=\"{L1} 0 0\"/><axis xyz=\"0 0 1\"/>"),
        ),
        joint(
            "tip_joint",
            "fixed",
            "fore",
            "tip",
            &format!("<origin xyz=\"{L2} 0 0\"/>"),
        ),
    ]
    .concat();
    UrdfChain::from_str(&robot(&["base", "upper", "fore", "tip"], &joints), "base", "tip").unwrap()
}

#[test]
fn planar_two_link_matches_closed_form() {
    let c = planar();
    assert_eq!(c.joint_names(), ["shoulder", "elbow"]);
    assert_eq!(c.dof(), 2);
    assert_eq!(c.joints().len(), 3);
    for (a, b) in [(0.0, 0.0), (FRAC_PI_2, 0.0), (0.3, -1.1), (-2.0, 2.5), (PI, FRAC_PI_4)] {
        let p = c.tip_pose(&[a, b]);
        let want = [
            L1 * a.cos() + L2 * (a + b).cos(),
            L1 * a.sin() + L2 * (a + b).sin(),
            0.0,
        ];
        assert_vec(p.translation.vector, want);
        assert_mat(rotation(&p), rot_z(a + b));
    }
    // Missing positions count as zero; extra ones are ignored.
    assert_vec(c.tip_pose(&[FRAC_PI_2]).translation.vector, [0.0, L1 + L2, 0.0]);
    assert_vec(c.tip_pose(&[0.0, 0.0, 9.0]).translation.vector, [L1 + L2, 0.0, 0.0]);
}

#[test]
fn prismatic_joint_translates_along_its_rotated_axis() {
    // The joint frame is yawed 90°, so its x axis is the base's y axis.
    let joints = [
        joint(
            "slide",
            "prismatic",
            "base",
            "carriage",
            "<origin xyz=\"0.1 0 0.2\" rpy=\"0 0 1.5707963267948966\"/><axis xyz=\"1 0 0\"/>",
        ),
        joint("lift", "prismatic", "carriage", "tip", "<axis xyz=\"0 0 1\"/>"),
    ]
    .concat();
    let c = UrdfChain::from_str(&robot(&["base", "carriage", "tip"], &joints), "base", "tip").unwrap();
    assert_eq!(c.joint_names(), ["slide", "lift"]);
    for (s, l) in [(0.0, 0.0), (0.25, 0.0), (-0.4, 0.3)] {
        let p = c.tip_pose(&[s, l]);
        assert_vec(p.translation.vector, [0.1, s, 0.2 + l]);
        assert_mat(rotation(&p), rot_z(FRAC_PI_2));
    }
}

#[test]
fn rpy_is_fixed_axis_roll_pitch_yaw() {
    let one = |rpy: &str| {
        let j = joint("j", "fixed", "a", "b", &format!("<origin rpy=\"{rpy}\"/>"));
        UrdfChain::from_str(&robot(&["a", "b"], &j), "a", "b")
            .unwrap()
            .tip_pose(&[])
    };
    // Yaw of 90° maps x to y, roll maps y to z, pitch maps z to x.
    let yaw = one("0 0 1.5707963267948966");
    assert_vec(yaw * Vector3::x(), [0.0, 1.0, 0.0]);
    let q = yaw.rotation.quaternion();
    let (w, z) = (FRAC_PI_4.cos(), FRAC_PI_4.sin());
    assert!(
        (q.w.abs() - w).abs() < TOL && q.i.abs() < TOL && q.j.abs() < TOL && (q.k.abs() - z).abs() < TOL,
        "{q:?}"
    );
    assert!(q.w * q.k > 0.0, "a positive yaw is a positive rotation about z: {q:?}");
    assert_vec(one("1.5707963267948966 0 0") * Vector3::y(), [0.0, 0.0, 1.0]);
    assert_vec(one("0 1.5707963267948966 0") * Vector3::z(), [1.0, 0.0, 0.0]);
    // All three: R = Rz(yaw)·Ry(pitch)·Rx(roll), written out by hand.
    let (r, p, y) = (0.3_f64, -0.7_f64, 1.2_f64);
    let (sr, cr) = r.sin_cos();
    let (sp, cp) = p.sin_cos();
    let (sy, cy) = y.sin_cos();
    let want = Matrix3::new(
        cy * cp,
        cy * sp * sr - sy * cr,
        cy * sp * cr + sy * sr,
        sy * cp,
        sy * sp * sr + cy * cr,
        sy * sp * cr - cy * sr,
        -sp,
        cp * sr,
        cp * cr,
    );
    assert_mat(rotation(&one(&format!("{r} {p} {y}"))), want);
    assert_mat(want, rot_z(y) * rot_y(p) * rot_x(r));
}

#[test]
fn fixed_joints_compose_origins() {
    // a→b: up 0.5 and yaw 90°; b→c: 1 along b's x (= base y), roll 90°; c→d: 0.2 along c's z.
    let joints = [
        joint(
            "ab",
            "fixed",
            "a",
            "b",
            "<origin xyz=\"0 0 0.5\" rpy=\"0 0 1.5707963267948966\"/>",
        ),
        joint(
            "bc",
            "fixed",
            "b",
            "c",
            "<origin xyz=\"1 0 0\" rpy=\"1.5707963267948966 0 0\"/>",
        ),
        joint("cd", "fixed", "c", "d", "<origin xyz=\"0 0 0.2\" rpy=\"0 0.4 0\"/>"),
    ]
    .concat();
    let c = UrdfChain::from_str(&robot(&["a", "b", "c", "d"], &joints), "a", "d").unwrap();
    assert!(c.joint_names().is_empty());
    let p = c.tip_pose(&[]);
    // c's z axis is Rz(90°)·Rx(90°)·z = Rz(90°)·(-y) = x, so d sits 0.2 along base x.
    assert_vec(p.translation.vector, [0.2, 1.0, 0.5]);
    // Rz(90°)·Rx(90°) = [[0,0,1],[1,0,0],[0,1,0]] by hand, then the pitch of d.
    let rz_rx = Matrix3::new(0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0);
    assert_mat(rotation(&p), rz_rx * rot_y(0.4));
    assert_vec(p * Vector3::z(), (rz_rx * rot_y(0.4) * Vector3::z()).into());
    // A sub-chain stops at its own base.
    let mid = UrdfChain::from_str(&robot(&["a", "b", "c", "d"], &joints), "b", "d").unwrap();
    assert_eq!(mid.base_link(), "b");
    assert_eq!(mid.tip_link(), "d");
    assert_vec(mid.tip_pose(&[]).translation.vector, [1.0, -0.2, 0.0]);
}

#[test]
fn axis_is_normalised_and_defaults_to_x() {
    let chain = |axis: &str| {
        let j = joint("j", "revolute", "a", "b", axis) + &joint("t", "fixed", "b", "c", "<origin xyz=\"0 1 0\"/>");
        UrdfChain::from_str(&robot(&["a", "b", "c"], &j), "a", "c").unwrap()
    };
    let unit = chain("<axis xyz=\"0 0 1\"/>");
    let long = chain("<axis xyz=\"0 0 5\"/>");
    assert!((long.joints()[0].axis.norm() - 1.0).abs() < TOL);
    for q in [0.4, -1.3] {
        assert!((unit.tip_pose(&[q]).to_homogeneous() - long.tip_pose(&[q]).to_homogeneous()).norm() < TOL);
    }
    assert_vec(long.tip_pose(&[FRAC_PI_2]).translation.vector, [-1.0, 0.0, 0.0]);
    // No <axis>: rotation about x moves the y offset to z.
    assert_vec(chain("").tip_pose(&[FRAC_PI_2]).translation.vector, [0.0, 0.0, 1.0]);
    // A prismatic axis (3, 4, 0) moves 5 units along (0.6, 0.8, 0).
    let j = joint("s", "prismatic", "a", "b", "<axis xyz=\"3 4 0\"/>");
    let s = UrdfChain::from_str(&robot(&["a", "b"], &j), "a", "b").unwrap();
    assert_vec(s.tip_pose(&[5.0]).translation.vector, [3.0, 4.0, 0.0]);
}

fn err(xml: &str, base: &str, tip: &str) -> String {
    UrdfChain::from_str(xml, base, tip).unwrap_err().to_string()
}

#[test]
fn file_and_xml_errors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.urdf");
    let e = UrdfChain::from_file(&missing, "a", "b").unwrap_err();
    assert!(matches!(e, UrdfError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("nope.urdf"), "{e}");
    let bad = dir.path().join("bad.urdf");
    std::fs::write(&bad, "<robot><link name=\"a\"></robot>").unwrap();
    let e = UrdfChain::from_file(&bad, "a", "a").unwrap_err();
    assert!(matches!(e, UrdfError::Xml { .. }), "{e:?}");
    assert!(
        e.to_string().contains("bad.urdf") && e.to_string().contains("XML"),
        "{e}"
    );
    let e = err("<sdf><link name=\"a\"/></sdf>", "a", "a");
    assert!(e.contains("<sdf>") && e.contains("<robot>"), "{e}");
    let e = err(&robot(&["a", "a"], ""), "a", "a");
    assert!(e.contains("link 'a' is defined twice"), "{e}");
    let e = err(
        &robot(&["a", "b"], &joint("j", "fixed", "a", "b", "").repeat(2)),
        "a",
        "b",
    );
    assert!(e.contains("joint 'j' is defined twice"), "{e}");
    let e = err(&robot(&["a"], "<joint type=\"fixed\"/>"), "a", "a");
    assert!(e.contains("<joint>") && e.contains("'name'"), "{e}");
    let e = err(
        &robot(
            &["a", "b"],
            "<joint name=\"j\" type=\"fixed\"><parent link=\"a\"/></joint>",
        ),
        "a",
        "b",
    );
    assert!(e.contains("joint 'j' <child>") && e.contains("'link'"), "{e}");
    // A chain loaded from a file names the file in later errors too.
    let ok = dir.path().join("ok.urdf");
    std::fs::write(&ok, robot(&["a", "b"], &joint("j", "hinge", "a", "b", ""))).unwrap();
    let e = UrdfChain::from_file(&ok, "a", "b").unwrap_err().to_string();
    assert!(
        e.contains("ok.urdf") && e.contains("'j'") && e.contains("'hinge'"),
        "{e}"
    );
}

#[test]
fn link_errors_name_the_link() {
    let two = robot(
        &["a", "b", "c"],
        &(joint("ab", "fixed", "a", "b", "") + &joint("bc", "fixed", "b", "c", "")),
    );
    let e = err(&two, "base_link", "c");
    assert!(
        e.contains("base link 'base_link' is not defined") && e.contains("a, b, c"),
        "{e}"
    );
    let e = err(&two, "a", "tool0");
    assert!(e.contains("tip link 'tool0' is not defined"), "{e}");
    let e = err(&robot(&["a"], &joint("j", "fixed", "a", "ghost", "")), "a", "a");
    assert!(e.contains("joint 'j' child link 'ghost'"), "{e}");
    // Walking parent→child from c never reaches a: the tip must lie below the base.
    let e = err(&two, "c", "a");
    assert!(
        e.contains("tip link 'a' is not reachable from base link 'c'") && e.contains("ancestors are: a"),
        "{e}"
    );
    // A sibling branch: b and d both hang off a.
    let branch = robot(
        &["a", "b", "d"],
        &(joint("ab", "fixed", "a", "b", "") + &joint("ad", "fixed", "a", "d", "")),
    );
    let e = err(&branch, "b", "d");
    assert!(e.contains("not reachable") && e.contains("d ← a"), "{e}");
    let e = err(
        &robot(
            &["a", "b", "c"],
            &(joint("ac", "fixed", "a", "c", "") + &joint("bc", "fixed", "b", "c", "")),
        ),
        "a",
        "c",
    );
    assert!(e.contains("link 'c' has two parents: joints 'ac' and 'bc'"), "{e}");
    let cycle = robot(
        &["a", "b", "c"],
        &(joint("ab", "fixed", "a", "b", "") + &joint("ba", "fixed", "b", "a", "")),
    );
    let e = err(&cycle, "c", "a");
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn joint_errors_name_the_joint() {
    let one = |kind: &str, extra: &str| err(&robot(&["a", "b"], &joint("j1", kind, "a", "b", extra)), "a", "b");
    for kind in ["floating", "planar"] {
        let e = one(kind, "");
        assert!(e.contains(&format!("joint 'j1' has type '{kind}'")), "{e}");
    }
    let e = one("revolute", "<origin xyz=\"0 0 abc\"/>");
    assert!(e.contains("joint 'j1': <origin xyz> has a bad number 'abc'"), "{e}");
    let e = one("revolute", "<origin rpy=\"0 nan 0\"/>");
    assert!(e.contains("<origin rpy> has a bad number 'nan'"), "{e}");
    let e = one("revolute", "<origin xyz=\"0 0\"/>");
    assert!(e.contains("joint 'j1': <origin xyz> needs 3 values, got 2"), "{e}");
    let e = one("prismatic", "<axis xyz=\"0 0 1 0\"/>");
    assert!(e.contains("<axis xyz> needs 3 values, got 4"), "{e}");
    let e = one("revolute", "<axis xyz=\"0 0 0\"/>");
    assert!(e.contains("joint 'j1' has a zero-length <axis xyz>"), "{e}");
    let e = err(
        &robot(
            &["a", "b"],
            "<joint name=\"j1\"><parent link=\"a\"/><child link=\"b\"/></joint>",
        ),
        "a",
        "b",
    );
    assert!(e.contains("joint 'j1'") && e.contains("'type'"), "{e}");
    // A fixed joint ignores its axis; an unsupported joint off the chain does not matter.
    UrdfChain::from_str(
        &robot(&["a", "b"], &joint("j1", "fixed", "a", "b", "<axis xyz=\"0 0 0\"/>")),
        "a",
        "b",
    )
    .unwrap();
    let off = robot(
        &["w", "a", "b"],
        &(joint("float", "floating", "w", "a", "") + &joint("j1", "revolute", "a", "b", "")),
    );
    assert_eq!(UrdfChain::from_str(&off, "a", "b").unwrap().joint_names(), ["j1"]);
    let e = err(&off, "w", "b");
    assert!(e.contains("joint 'float' has type 'floating'"), "{e}");
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn index_map_skips_extra_joints_and_lists_missing_ones() {
    let c = planar();
    let map = c.index_map(&names(&["gripper", "elbow", "shoulder"])).unwrap();
    assert_eq!(map, [2, 1]);
    let e = c.index_map(&names(&["gripper", "wrist"])).unwrap_err().to_string();
    assert!(
        e.contains("'shoulder', 'elbow'") && e.contains("[gripper, wrist]") && e.contains("base → tip"),
        "{e}"
    );
    let e = c.index_map(&names(&["shoulder", "gripper"])).unwrap_err().to_string();
    assert!(e.contains("'elbow'") && !e.contains("'shoulder'"), "{e}");

    // Rows in configured order; short rows and non-finite chain values are skipped.
    let rows = vec![
        vec![0.04, 0.0, 0.0],
        vec![0.01, 0.0, FRAC_PI_2],
        vec![0.0, 0.5],
        vec![f64::NAN, -0.5, 0.5],
        vec![0.0, f64::NAN, 0.5],
        vec![],
    ];
    let path = c.tip_path(&rows, &map);
    assert_eq!(path.len(), 3);
    assert_vec(path[0].translation.vector, [L1 + L2, 0.0, 0.0]);
    assert_vec(path[1].translation.vector, [0.0, L1 + L2, 0.0]);
    assert_vec(
        path[2].translation.vector,
        [L1 * 0.5f64.cos() + L2, L1 * 0.5f64.sin(), 0.0],
    );
    assert!(c.tip_path(&[], &map).is_empty());
}

fn arm6_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test/data/urdf/arm6.urdf")
}

#[test]
fn arm6_asset_chain_and_poses() {
    let c = UrdfChain::from_file(&arm6_path(), "base_link", "tool0").unwrap();
    assert_eq!(
        c.joint_names(),
        ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6"]
    );
    let fixed: Vec<&str> = c
        .joints()
        .iter()
        .filter(|j| j.kind == JointKind::Fixed)
        .map(|j| j.name.as_str())
        .collect();
    assert_eq!(fixed, ["flange_joint", "tool_joint"]);
    let configured = names(&[
        "joint1",
        "joint2",
        "joint3",
        "joint4",
        "joint5",
        "joint6",
        "gripper_joint",
    ]);
    let map = c.index_map(&configured).unwrap();
    assert_eq!(map, [0, 1, 2, 3, 4, 5]);

    // Straight up: 0.1 + 0.2 + 0.3 + 0.25 + 0.05 + 0.08 + 0.02 + 0.12 = 1.12 m, tool yawed 90°.
    let zero = c.tip_pose(&[0.0; 6]);
    assert_vec(zero.translation.vector, [0.0, 0.0, 1.12]);
    assert_mat(rotation(&zero), rot_z(FRAC_PI_2));

    // Base yaw 90°, shoulder 90° (upper arm along +y), elbow −90° (forearm up again), wrist pitch 90°
    // (the last 0.22 m along +y), wrist roll 90°. By hand: shoulder at z 0.3, elbow at (0, 0.3, 0.3),
    // wrist pitch at (0, 0.3, 0.6), tool at (0, 0.52, 0.6); R = Rz(90°)·Ry(90°)·Rz(90°)·Rz(90°).
    let q = [FRAC_PI_2, FRAC_PI_2, -FRAC_PI_2, 0.0, FRAC_PI_2, FRAC_PI_2];
    let p = c.tip_pose(&q);
    assert_vec(p.translation.vector, [0.0, 0.52, 0.6]);
    assert_mat(rotation(&p), Matrix3::new(0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0));
    // The tool's approach (z) axis points along +y.
    assert_vec(p * Vector3::z(), [0.0, 1.0, 0.0]);

    // The gripper value in the configured rows does not move the tool.
    let mut row: Vec<f64> = q.to_vec();
    row.push(0.03);
    let path = c.tip_path(&[row, vec![0.0; 7]], &map);
    assert_eq!(path.len(), 2);
    assert_vec(path[0].translation.vector, [0.0, 0.52, 0.6]);
    assert_vec(path[1].translation.vector, [0.0, 0.0, 1.12]);

    // From the world link the fixed mount adds its offset and yaw.
    let w = UrdfChain::from_file(&arm6_path(), "world", "tool0").unwrap();
    assert_eq!(w.dof(), 6);
    let tool_in_world = w.tip_pose(&[0.0; 6]) * Point3::origin();
    assert_vec(tool_in_world.coords, [0.2, -0.1, 0.75 + 1.12]);
    // The gripper finger is reachable through its own branch.
    let g = UrdfChain::from_file(&arm6_path(), "base_link", "finger_left").unwrap();
    assert_eq!(g.joint_names().last(), Some(&"gripper_joint"));
    assert!(UrdfChain::from_file(&arm6_path(), "tool0", "finger_left")
        .unwrap_err()
        .to_string()
        .contains("arm6.urdf"));
}

#[test]
fn entity_bombs_and_non_files_are_refused() {
    // Nested entities: 10^8 expansions if nothing stops them.
    let mut dtd = String::from("<!ENTITY a \"aaaaaaaaaa\">");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for w in names.windows(2) {
        dtd.push_str(&format!("<!ENTITY {} \"{}\">", w[1], format!("&{};", w[0]).repeat(10)));
    }
    let xml =
        format!("<?xml version=\"1.0\"?><!DOCTYPE r [{dtd}]><robot name=\"r\"><link name=\"a\">&h;</link></robot>");
    let t0 = std::time::Instant::now();
    let e = err(&xml, "a", "a");
    assert!(e.contains("XML"), "{e}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5), "{:?}", t0.elapsed());
    // A directory (or FIFO) given as the URDF path is refused before it is read.
    let dir = tempfile::tempdir().unwrap();
    let e = UrdfChain::from_file(dir.path(), "a", "a").unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
}
