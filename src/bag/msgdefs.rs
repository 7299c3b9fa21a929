//! Message definition texts (`ros2msg` schema encoding) for MCAP schemas, so Foxglove Studio and
//! PlotJuggler can decode what we write without the ROS install.
//!
//! Each entry is the `.msg` text without comments, with every nested type fully qualified; the
//! schema of a type is its own text followed by each dependency under a `MSG: pkg/Name` separator,
//! exactly as rosbag2 writes them.
use std::collections::BTreeSet;

/// Separator line between a definition and each of its dependencies.
const SEPARATOR: &str = "================================================================================";

/// (`pkg/Name`, definition text, direct dependencies).
const DEFINITIONS: &[(&str, &str, &[&str])] = &[
    ("builtin_interfaces/Time", "int32 sec\nuint32 nanosec\n", &[]),
    ("builtin_interfaces/Duration", "int32 sec\nuint32 nanosec\n", &[]),
    (
        "std_msgs/Header",
        "builtin_interfaces/Time stamp\nstring frame_id\n",
        &["builtin_interfaces/Time"],
    ),
    ("std_msgs/String", "string data\n", &[]),
    ("std_msgs/Float64", "float64 data\n", &[]),
    ("std_msgs/ColorRGBA", "float32 r\nfloat32 g\nfloat32 b\nfloat32 a\n", &[]),
    ("std_msgs/MultiArrayDimension", "string label\nuint32 size\nuint32 stride\n", &[]),
    (
        "std_msgs/MultiArrayLayout",
        "std_msgs/MultiArrayDimension[] dim\nuint32 data_offset\n",
        &["std_msgs/MultiArrayDimension"],
    ),
    (
        "std_msgs/Float64MultiArray",
        "std_msgs/MultiArrayLayout layout\nfloat64[] data\n",
        &["std_msgs/MultiArrayLayout"],
    ),
    ("geometry_msgs/Vector3", "float64 x\nfloat64 y\nfloat64 z\n", &[]),
    ("geometry_msgs/Point", "float64 x\nfloat64 y\nfloat64 z\n", &[]),
    ("geometry_msgs/Quaternion", "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n", &[]),
    (
        "geometry_msgs/Pose",
        "geometry_msgs/Point position\ngeometry_msgs/Quaternion orientation\n",
        &["geometry_msgs/Point", "geometry_msgs/Quaternion"],
    ),
    (
        "geometry_msgs/PoseStamped",
        "std_msgs/Header header\ngeometry_msgs/Pose pose\n",
        &["std_msgs/Header", "geometry_msgs/Pose"],
    ),
    (
        "geometry_msgs/Twist",
        "geometry_msgs/Vector3 linear\ngeometry_msgs/Vector3 angular\n",
        &["geometry_msgs/Vector3"],
    ),
    (
        "geometry_msgs/TwistStamped",
        "std_msgs/Header header\ngeometry_msgs/Twist twist\n",
        &["std_msgs/Header", "geometry_msgs/Twist"],
    ),
    (
        "sensor_msgs/Image",
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\nuint8[] data\n",
        &["std_msgs/Header"],
    ),
    (
        "sensor_msgs/CompressedImage",
        "std_msgs/Header header\nstring format\nuint8[] data\n",
        &["std_msgs/Header"],
    ),
    (
        "sensor_msgs/JointState",
        "std_msgs/Header header\nstring[] name\nfloat64[] position\nfloat64[] velocity\nfloat64[] effort\n",
        &["std_msgs/Header"],
    ),
    (
        "trajectory_msgs/JointTrajectoryPoint",
        "float64[] positions\nfloat64[] velocities\nfloat64[] accelerations\nfloat64[] effort\nbuiltin_interfaces/Duration time_from_start\n",
        &["builtin_interfaces/Duration"],
    ),
    (
        "trajectory_msgs/JointTrajectory",
        "std_msgs/Header header\nstring[] joint_names\ntrajectory_msgs/JointTrajectoryPoint[] points\n",
        &["std_msgs/Header", "trajectory_msgs/JointTrajectoryPoint"],
    ),
    (
        "univla_msgs/LatentActions",
        "std_msgs/Header header\nint32[] ids\nstring tokens\n",
        &["std_msgs/Header"],
    ),
    ("visualization_msgs/UVCoordinate", "float32 u\nfloat32 v\n", &[]),
    ("visualization_msgs/MeshFile", "string filename\nuint8[] data\n", &[]),
    (
        "visualization_msgs/Marker",
        "int32 ARROW=0\nint32 CUBE=1\nint32 SPHERE=2\nint32 CYLINDER=3\nint32 LINE_STRIP=4\nint32 LINE_LIST=5\n\
int32 CUBE_LIST=6\nint32 SPHERE_LIST=7\nint32 POINTS=8\nint32 TEXT_VIEW_FACING=9\nint32 MESH_RESOURCE=10\n\
int32 TRIANGLE_LIST=11\nint32 ARROW_STRIP=12\nint32 ADD=0\nint32 MODIFY=0\nint32 DELETE=2\nint32 DELETEALL=3\n\
std_msgs/Header header\nstring ns\nint32 id\nint32 type\nint32 action\ngeometry_msgs/Pose pose\n\
geometry_msgs/Vector3 scale\nstd_msgs/ColorRGBA color\nbuiltin_interfaces/Duration lifetime\nbool frame_locked\n\
geometry_msgs/Point[] points\nstd_msgs/ColorRGBA[] colors\nstring texture_resource\n\
sensor_msgs/CompressedImage texture\nvisualization_msgs/UVCoordinate[] uv_coordinates\nstring text\n\
string mesh_resource\nvisualization_msgs/MeshFile mesh_file\nbool mesh_use_embedded_materials\n",
        &[
            "std_msgs/Header",
            "geometry_msgs/Pose",
            "geometry_msgs/Vector3",
            "std_msgs/ColorRGBA",
            "builtin_interfaces/Duration",
            "geometry_msgs/Point",
            "sensor_msgs/CompressedImage",
            "visualization_msgs/UVCoordinate",
            "visualization_msgs/MeshFile",
        ],
    ),
    (
        "visualization_msgs/MarkerArray",
        "visualization_msgs/Marker[] markers\n",
        &["visualization_msgs/Marker"],
    ),
];

/// `pkg/msg/Name` or `pkg/Name` → `pkg/Name`.
fn short_name(ros_type: &str) -> String {
    ros_type.replace("/msg/", "/")
}

fn lookup(short: &str) -> Option<(&'static str, &'static [&'static str])> {
    DEFINITIONS
        .iter()
        .find(|(n, _, _)| *n == short)
        .map(|(_, text, deps)| (*text, *deps))
}

/// The full `ros2msg` schema text of a ROS type (`pkg/msg/Name`), or `None` if unknown here.
pub fn schema_text(ros_type: &str) -> Option<String> {
    let root = short_name(ros_type);
    let (text, deps) = lookup(&root)?;
    let mut out = text.to_string();
    let mut seen = BTreeSet::new();
    seen.insert(root);
    let mut stack: Vec<&str> = deps.iter().rev().copied().collect();
    let mut order = Vec::new();
    // Depth-first, each dependency once, in first-use order.
    while let Some(dep) = stack.pop() {
        if !seen.insert(dep.to_string()) {
            continue;
        }
        let (_, sub) = lookup(dep)?;
        order.push(dep);
        stack.extend(sub.iter().rev().copied());
    }
    for dep in order {
        let (dep_text, _) = lookup(dep)?;
        out.push_str(SEPARATOR);
        out.push_str("\nMSG: ");
        out.push_str(dep);
        out.push('\n');
        out.push_str(dep_text);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dependency_is_defined() {
        for (name, _, deps) in DEFINITIONS {
            for d in *deps {
                assert!(lookup(d).is_some(), "{name} depends on undefined {d}");
            }
            let text = schema_text(name).unwrap();
            // Every nested type used in the text appears in the schema as a MSG section.
            for line in text.lines() {
                let ty = line.split_whitespace().next().unwrap_or("");
                let ty = ty.trim_end_matches("[]");
                if ty.contains('/') && !line.starts_with("MSG:") {
                    assert!(text.contains(&format!("MSG: {ty}\n")), "{name}: {ty} missing");
                }
            }
        }
    }

    #[test]
    fn joint_trajectory_schema_lists_nested_types_once() {
        let text = schema_text("trajectory_msgs/msg/JointTrajectory").unwrap();
        assert!(text.starts_with("std_msgs/Header header\n"));
        assert_eq!(text.matches("MSG: builtin_interfaces/Time\n").count(), 1);
        assert_eq!(text.matches(SEPARATOR).count(), 4);
    }
}
