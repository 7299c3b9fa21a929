//! Monitoring messages for rviz/Foxglove: the predicted chunk as markers, the preprocessed model
//! input as an image, and the latent action tokens.
use nalgebra::Isometry3;

use crate::ros::msgs::geometry_msgs::{Point, Vector3};
use crate::ros::msgs::sensor_msgs::Image;
use crate::ros::msgs::std_msgs::{ColorRGBA, Header};
use crate::ros::msgs::univla_msgs::LatentActions;
use crate::ros::msgs::visualization_msgs::{Marker, MarkerArray};
use crate::runtime::preprocess::RgbImage;

/// Horizontal spacing of consecutive chunk steps in the joint-target plot (m).
const STEP_SPACING: f64 = 0.05;
/// Vertical offset between joints in the joint-target plot (m).
const JOINT_SPACING: f64 = 0.15;
/// Scale of joint values (rad → m) in the plot.
const VALUE_SCALE: f64 = 0.05;

fn color(i: usize) -> ColorRGBA {
    const PALETTE: [(f32, f32, f32); 4] = [(0.9, 0.2, 0.2), (0.2, 0.8, 0.2), (0.2, 0.4, 0.9), (0.9, 0.7, 0.1)];
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    ColorRGBA { r, g, b, a: 1.0 }
}

fn line(header: &Header, ns: &str, id: i32, points: Vec<Point>, c: ColorRGBA) -> Marker {
    Marker {
        header: header.clone(),
        ns: ns.into(),
        id,
        type_: Marker::LINE_STRIP,
        action: Marker::ADD,
        scale: Vector3 {
            x: 0.01,
            y: 0.0,
            z: 0.0,
        },
        color: c,
        points,
        ..Default::default()
    }
}

/// Per-joint targets of the planned chunk as line strips (x: time, z: value, one row per joint).
pub fn joint_chunk_markers(header: &Header, points: &[Vec<f64>]) -> MarkerArray {
    let joints = points.first().map_or(0, Vec::len);
    let markers = (0..joints)
        .map(|j| {
            let pts = points
                .iter()
                .enumerate()
                .map(|(k, p)| Point {
                    x: k as f64 * STEP_SPACING,
                    y: j as f64 * JOINT_SPACING,
                    z: p[j] * VALUE_SCALE,
                })
                .collect();
            line(header, "univla_joint_targets", j as i32, pts, color(j))
        })
        .collect();
    MarkerArray { markers }
}

/// The end-effector path of the planned chunk (line strip plus one sphere per step).
pub fn pose_chunk_markers(header: &Header, poses: &[Isometry3<f64>]) -> MarkerArray {
    let pts: Vec<Point> = poses
        .iter()
        .map(|p| Point {
            x: p.translation.x,
            y: p.translation.y,
            z: p.translation.z,
        })
        .collect();
    let spheres = Marker {
        header: header.clone(),
        ns: "univla_eef_path".into(),
        id: 1,
        type_: Marker::SPHERE_LIST,
        action: Marker::ADD,
        scale: Vector3 {
            x: 0.01,
            y: 0.01,
            z: 0.01,
        },
        color: color(2),
        points: pts.clone(),
        ..Default::default()
    };
    MarkerArray {
        markers: vec![line(header, "univla_eef_path", 0, pts, color(1)), spheres],
    }
}

/// The preprocessed model input as an rgb8 image.
pub fn preview_image(header: &Header, img: &RgbImage) -> Image {
    Image {
        header: header.clone(),
        height: img.height(),
        width: img.width(),
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: img.width() * 3,
        data: img.as_raw().to_vec(),
    }
}

/// The latent tokens message.
pub fn latent_msg(header: &Header, ids: &[i64]) -> LatentActions {
    LatentActions {
        header: header.clone(),
        ids: ids.iter().map(|&i| i32::try_from(i).unwrap_or(-1)).collect(),
        tokens: crate::node::wiring::ros_io::latent_text(ids),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_follow_the_plan() {
        let h = Header::default();
        let m = joint_chunk_markers(&h, &[vec![0.0, 1.0], vec![0.5, 1.0], vec![1.0, 1.0]]);
        assert_eq!(m.markers.len(), 2);
        assert_eq!(m.markers[0].points.len(), 3);
        assert!((m.markers[0].points[2].z - 0.05).abs() < 1e-12);
        let poses = [
            Isometry3::translation(0.1, 0.2, 0.3),
            Isometry3::translation(0.2, 0.2, 0.3),
        ];
        let m = pose_chunk_markers(&h, &poses);
        assert_eq!(m.markers[0].points[1].x, 0.2);
        let l = latent_msg(&h, &[32001, 32016]);
        assert_eq!(l.tokens, "<ACT_0><ACT_15>");
        assert_eq!(l.ids, vec![32001, 32016]);
    }
}
