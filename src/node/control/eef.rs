//! End-effector delta integration (LIBERO/Bridge action spaces): xyz deltas add to the target
//! position in the base frame, rotation deltas compose on the left, with nalgebra.
use nalgebra::{Isometry3, Translation3, UnitQuaternion, Vector3};

use crate::runtime::postprocess::Action;

/// One step's end-effector command.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EefDelta {
    pub translation: [f64; 3],
    pub rotation: UnitQuaternion<f64>,
    /// Gripper command as post-processing gives it (LIBERO: +1 close, −1 open; Bridge: +1 open).
    pub gripper: f64,
}

impl EefDelta {
    /// From a post-processed action (7-D arm with roll/pitch/yaw deltas, or Bridge axis-angle);
    /// rotations are scaled by `rotation_scale`, translations by `translation_scale`.
    pub fn from_action(a: &Action, translation_scale: f64, rotation_scale: f64) -> Option<Self> {
        match a {
            Action::Arm(v) if v.len() >= 7 => Some(Self {
                translation: [v[0], v[1], v[2]].map(|x| x * translation_scale),
                rotation: UnitQuaternion::from_euler_angles(
                    v[3] * rotation_scale,
                    v[4] * rotation_scale,
                    v[5] * rotation_scale,
                ),
                gripper: v[6],
            }),
            Action::Bridge(b) => Some(Self {
                translation: b.world_vector.map(|x| x * translation_scale),
                rotation: UnitQuaternion::from_scaled_axis(Vector3::from(b.rot_axangle) * rotation_scale),
                gripper: b.gripper,
            }),
            _ => None,
        }
    }

    /// The pose after this delta.
    pub fn apply(&self, pose: &Isometry3<f64>) -> Isometry3<f64> {
        let t = pose.translation.vector + Vector3::from(self.translation);
        Isometry3::from_parts(Translation3::from(t), self.rotation * pose.rotation)
    }
}

/// A pose from `[x, y, z, roll, pitch, yaw]`.
pub fn pose_from_xyz_rpy(p: &[f64; 6]) -> Isometry3<f64> {
    Isometry3::from_parts(
        Translation3::new(p[0], p[1], p[2]),
        UnitQuaternion::from_euler_angles(p[3], p[4], p[5]),
    )
}

/// Position of a pose as an array.
pub fn position(p: &Isometry3<f64>) -> [f64; 3] {
    [p.translation.x, p.translation.y, p.translation.z]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_integrate_in_the_base_frame() {
        let start = pose_from_xyz_rpy(&[0.4, 0.0, 0.3, 0.0, 0.0, 0.0]);
        let a = Action::Arm(vec![0.01, -0.02, 0.03, 0.0, 0.0, std::f64::consts::FRAC_PI_2, 1.0]);
        let d = EefDelta::from_action(&a, 1.0, 1.0).unwrap();
        let p1 = d.apply(&start);
        let p2 = d.apply(&p1);
        let pos = position(&p2);
        assert!((pos[0] - 0.42).abs() < 1e-12 && (pos[1] + 0.04).abs() < 1e-12 && (pos[2] - 0.36).abs() < 1e-12);
        // Two quarter turns about z make a half turn.
        assert!((p2.rotation.angle() - std::f64::consts::PI).abs() < 1e-9);
        assert_eq!(d.gripper, 1.0);
        let half = EefDelta::from_action(&a, 0.5, 0.5).unwrap();
        assert!((half.translation[2] - 0.015).abs() < 1e-12);
        assert!(EefDelta::from_action(&Action::Arm(vec![0.0; 3]), 1.0, 1.0).is_none());
    }
}
