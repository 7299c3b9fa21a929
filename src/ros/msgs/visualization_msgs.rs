//! `visualization_msgs` (Jazzy): RViz markers.
use serde::{Deserialize, Serialize};

use super::builtin_interfaces::Duration;
use super::geometry_msgs::{Point, Pose, Vector3};
use super::ros_message;
use super::sensor_msgs::CompressedImage;
use super::std_msgs::{ColorRGBA, Header};

/// `visualization_msgs/UVCoordinate`: texture coordinate of a mesh vertex.
#[derive(Serialize, Deserialize, Default, Clone, Copy, Debug, PartialEq)]
pub struct UVCoordinate {
    pub u: f32,
    pub v: f32,
}
ros_message!(UVCoordinate, "visualization_msgs", "UVCoordinate");

/// `visualization_msgs/MeshFile`: an embedded mesh resource.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct MeshFile {
    pub filename: String,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}
ros_message!(MeshFile, "visualization_msgs", "MeshFile");

/// `visualization_msgs/Marker`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Marker {
    pub header: Header,
    pub ns: String,
    pub id: i32,
    #[serde(rename = "type")]
    pub type_: i32,
    pub action: i32,
    pub pose: Pose,
    pub scale: Vector3,
    pub color: ColorRGBA,
    pub lifetime: Duration,
    pub frame_locked: bool,
    pub points: Vec<Point>,
    pub colors: Vec<ColorRGBA>,
    pub texture_resource: String,
    pub texture: CompressedImage,
    pub uv_coordinates: Vec<UVCoordinate>,
    pub text: String,
    pub mesh_resource: String,
    pub mesh_file: MeshFile,
    pub mesh_use_embedded_materials: bool,
}
ros_message!(Marker, "visualization_msgs", "Marker");

impl Marker {
    pub const ARROW: i32 = 0;
    pub const CUBE: i32 = 1;
    pub const SPHERE: i32 = 2;
    pub const CYLINDER: i32 = 3;
    pub const LINE_STRIP: i32 = 4;
    pub const LINE_LIST: i32 = 5;
    pub const CUBE_LIST: i32 = 6;
    pub const SPHERE_LIST: i32 = 7;
    pub const POINTS: i32 = 8;
    pub const TEXT_VIEW_FACING: i32 = 9;
    pub const MESH_RESOURCE: i32 = 10;
    pub const TRIANGLE_LIST: i32 = 11;
    pub const ARROW_STRIP: i32 = 12;
    pub const ADD: i32 = 0;
    pub const MODIFY: i32 = 0;
    pub const DELETE: i32 = 2;
    pub const DELETEALL: i32 = 3;
}

/// `visualization_msgs/MarkerArray`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct MarkerArray {
    pub markers: Vec<Marker>,
}
ros_message!(MarkerArray, "visualization_msgs", "MarkerArray");
