//! Post-processing of ensembled (or queued) head outputs per deployment (spec §4.4): bounds
//! un-normalisation, gripper conventions, Bridge's rotation format, z-scores for the real robot and
//! the discrete R2R actions.
use crate::model::heads::{HeadKind, ARM_ACTION_DIM, NAV_ACTION_DIM};

use super::stats::{ActionBounds, ZScoreStats};

/// Translation of one R2R `MOVE_FORWARD` (Habitat VLN-CE).
pub const NAV_FORWARD_M: f64 = 0.25;
/// Rotation of one R2R turn, in degrees.
pub const NAV_TURN_DEG: f64 = 15.0;
/// Values of a Bridge action (xyz, roll/pitch/yaw, gripper): its output format needs all seven.
const BRIDGE_ACTION_DIM: usize = ARM_ACTION_DIM as usize;
/// Index of the gripper in Bridge actions.
const BRIDGE_GRIPPER: usize = BRIDGE_ACTION_DIM - 1;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PostProcessError {
    #[error("post-processing preset {0:?} needs {1}")]
    MissingStats(Preset, &'static str),
    #[error("action has {got} values, expected {expected}")]
    Dim { got: usize, expected: usize },
    #[error("post-processing preset {preset:?} needs {expected}-wide actions, the head gives {got}")]
    HeadDim {
        preset: Preset,
        got: usize,
        expected: usize,
    },
    #[error("action contains a non-finite value")]
    NonFinite,
}

/// Which deployment's conventions to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// q01/q99 un-normalisation; gripper `2g−1 → sign → negate` (+1 close, −1 open, 0 at 0.5).
    Libero,
    /// q01/q99 un-normalisation; gripper `2·(g>0.5)−1`; roll/pitch/yaw → axis-angle.
    Bridge,
    /// Tanh output used as is; gripper `g<0 → −1`, else `+1`.
    Calvin,
    /// z-score outputs, un-normalised with `action_std/mean` when statistics are given.
    RealWorld,
    /// Argmax of the ensembled probabilities → discrete navigation action.
    R2r,
}

impl Preset {
    /// The preset the reference uses with a head kind (Bridge and CALVIN share the LIBERO head,
    /// so choose them explicitly).
    pub fn for_head(kind: HeadKind) -> Self {
        match kind {
            HeadKind::RealWorld => Preset::RealWorld,
            HeadKind::Libero => Preset::Libero,
            HeadKind::R2r => Preset::R2r,
        }
    }

    /// Parses `libero`, `bridge`, `calvin`, `real_world`/`realworld`/`deploy`, `r2r`.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "libero" => Preset::Libero,
            "bridge" | "simpler" => Preset::Bridge,
            "calvin" => Preset::Calvin,
            "real_world" | "realworld" | "deploy" => Preset::RealWorld,
            "r2r" => Preset::R2r,
            _ => return None,
        })
    }
}

/// A discrete R2R (Habitat) action; the value is the Habitat action id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NavAction {
    Stop = 0,
    /// Move forward [`NAV_FORWARD_M`].
    Forward = 1,
    /// Turn left [`NAV_TURN_DEG`].
    TurnLeft = 2,
    /// Turn right [`NAV_TURN_DEG`].
    TurnRight = 3,
}

impl NavAction {
    pub fn from_id(id: usize) -> Option<Self> {
        [
            NavAction::Stop,
            NavAction::Forward,
            NavAction::TurnLeft,
            NavAction::TurnRight,
        ]
        .get(id)
        .copied()
    }

    pub fn id(self) -> usize {
        self as usize
    }
}

/// The SimplerEnv/Bridge action format.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BridgeAction {
    pub world_vector: [f64; 3],
    /// Rotation as axis·angle (from the predicted roll/pitch/yaw).
    pub rot_axangle: [f64; 3],
    /// +1 open, −1 close.
    pub gripper: f64,
    pub terminate: f64,
}

/// A post-processed action.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// A 7-d arm command (LIBERO, CALVIN, real world).
    Arm(Vec<f64>),
    Bridge(BridgeAction),
    Nav(NavAction),
}

/// Applies one deployment's conventions to ensembled head outputs.
#[derive(Clone, Debug)]
pub struct PostProcessor {
    preset: Preset,
    bounds: Option<ActionBounds>,
    zscore: Option<ZScoreStats>,
    action_scale: f64,
    /// Values per step the head produces (see [`Self::with_action_dim`]).
    action_dim: usize,
}

/// The reference's action width for a preset: 4 navigation probabilities, 7 arm values.
pub fn default_action_dim(preset: Preset) -> usize {
    match preset {
        Preset::R2r => NAV_ACTION_DIM as usize,
        _ => ARM_ACTION_DIM as usize,
    }
}

impl PostProcessor {
    /// LIBERO and Bridge need `bounds`; the real-world preset uses `zscore` if given.
    pub fn new(
        preset: Preset,
        bounds: Option<ActionBounds>,
        zscore: Option<ZScoreStats>,
    ) -> Result<Self, PostProcessError> {
        if matches!(preset, Preset::Libero | Preset::Bridge) && bounds.is_none() {
            return Err(PostProcessError::MissingStats(
                preset,
                "q01/q99 action bounds (dataset_statistics.json)",
            ));
        }
        Ok(Self {
            preset,
            bounds,
            zscore,
            action_scale: 1.0,
            action_dim: default_action_dim(preset),
        })
    }

    /// Sets the head's action width (read from its weights or config; default
    /// [`default_action_dim`]). LIBERO and CALVIN apply their gripper convention to the last
    /// value, as the reference does with its 7-wide actions; Bridge's output format needs exactly
    /// 7 values and R2R's exactly the 4 Habitat actions; LIBERO bounds and real-world statistics,
    /// when given, must have the head's width.
    pub fn with_action_dim(mut self, dim: usize) -> Result<Self, PostProcessError> {
        let fixed = match self.preset {
            Preset::Bridge => Some(BRIDGE_ACTION_DIM),
            Preset::R2r => Some(NAV_ACTION_DIM as usize),
            Preset::RealWorld => self.zscore.as_ref().map(|z| z.action_mean.len()),
            Preset::Libero => self.bounds.as_ref().map(ActionBounds::dim),
            Preset::Calvin => None,
        }
        .or((dim == 0).then(|| default_action_dim(self.preset)));
        if let Some(expected) = fixed.filter(|&e| e != dim) {
            return Err(PostProcessError::HeadDim {
                preset: self.preset,
                got: dim,
                expected,
            });
        }
        self.action_dim = dim;
        Ok(self)
    }

    /// Values per step this post-processor expects.
    pub fn action_dim(&self) -> usize {
        self.action_dim
    }

    /// Scales Bridge's `world_vector` (the reference's `action_scale`, 1.0 by default).
    pub fn with_action_scale(mut self, scale: f64) -> Self {
        self.action_scale = scale;
        self
    }

    pub fn preset(&self) -> Preset {
        self.preset
    }

    /// The bounds un-normalisation alone (identity for presets without bounds).
    pub fn unnormalized(&self, x: &[f64]) -> Vec<f64> {
        match (&self.bounds, self.preset) {
            (Some(b), Preset::Libero | Preset::Bridge) => b.unnormalize(x),
            _ => x.to_vec(),
        }
    }

    /// Turns one ensembled output ([`Self::action_dim`] values: 7 for the reference's arms, 4
    /// probabilities for R2R) into an action.
    pub fn apply(&self, x: &[f64]) -> Result<Action, PostProcessError> {
        if x.iter().any(|v| !v.is_finite()) {
            return Err(PostProcessError::NonFinite);
        }
        let expect = |n: usize| {
            if x.len() == n {
                Ok(())
            } else {
                Err(PostProcessError::Dim {
                    got: x.len(),
                    expected: n,
                })
            }
        };
        match self.preset {
            Preset::R2r => {
                expect(self.action_dim)?;
                Ok(Action::Nav(nav_action(x)?))
            }
            Preset::Libero => {
                expect(self.action_dim)?;
                let mut a = self.unnormalized(x);
                if let Some(g) = a.last_mut() {
                    *g = libero_gripper(*g);
                }
                Ok(Action::Arm(a))
            }
            Preset::Calvin => {
                expect(self.action_dim)?;
                let mut a = x.to_vec();
                if let Some(g) = a.last_mut() {
                    *g = calvin_gripper(*g);
                }
                Ok(Action::Arm(a))
            }
            Preset::RealWorld => match &self.zscore {
                Some(z) => z.unnormalize_action(x).map(Action::Arm).ok_or(PostProcessError::Dim {
                    got: x.len(),
                    expected: z.action_mean.len(),
                }),
                None => Ok(Action::Arm(x.to_vec())),
            },
            Preset::Bridge => {
                expect(BRIDGE_ACTION_DIM)?;
                let a = self.unnormalized(x);
                let (axis, angle) = euler_sxyz_to_axis_angle(a[3], a[4], a[5]);
                Ok(Action::Bridge(BridgeAction {
                    world_vector: [a[0], a[1], a[2]].map(|v| v * self.action_scale),
                    rot_axangle: axis.map(|v| v * angle),
                    gripper: bridge_gripper(a[BRIDGE_GRIPPER]),
                    terminate: 0.0,
                }))
            }
        }
    }
}

/// LIBERO: `g ← 2g−1`, binarise with `sign` (0 stays 0), then invert (+1 close, −1 open).
pub fn libero_gripper(g: f64) -> f64 {
    let s = 2.0 * g - 1.0;
    let sign = if s > 0.0 {
        1.0
    } else if s < 0.0 {
        -1.0
    } else {
        0.0
    };
    -sign
}

/// Bridge: `2·(g > 0.5) − 1` (+1 open).
pub fn bridge_gripper(g: f64) -> f64 {
    if g > 0.5 {
        1.0
    } else {
        -1.0
    }
}

/// CALVIN: `−1` if `g < 0`, else `+1`.
pub fn calvin_gripper(g: f64) -> f64 {
    if g < 0.0 {
        -1.0
    } else {
        1.0
    }
}

/// Static-frame `sxyz` Euler angles to (unit axis, angle), as transforms3d's `euler2axangle`.
pub fn euler_sxyz_to_axis_angle(roll: f64, pitch: f64, yaw: f64) -> ([f64; 3], f64) {
    let (si, ci) = (roll / 2.0).sin_cos();
    let (sj, cj) = (pitch / 2.0).sin_cos();
    let (sk, ck) = (yaw / 2.0).sin_cos();
    let (cc, cs, sc, ss) = (ci * ck, ci * sk, si * ck, si * sk);
    let mut q = [
        cj * cc + sj * ss,
        cj * sc - sj * cs,
        cj * ss + sj * cc,
        cj * cs - sj * sc,
    ];
    let identity = ([1.0, 0.0, 0.0], 0.0);
    let nq: f64 = q.iter().map(|v| v * v).sum();
    if !nq.is_finite() || nq < f64::EPSILON * f64::EPSILON {
        return identity;
    }
    if nq != 1.0 {
        let s = nq.sqrt();
        q.iter_mut().for_each(|v| *v /= s);
    }
    let [w, x, y, z] = q;
    let len2 = x * x + y * y + z * z;
    let thresh = 3.0 * f64::EPSILON;
    if len2 < thresh * thresh {
        return identity;
    }
    let len = len2.sqrt();
    ([x / len, y / len, z / len], 2.0 * w.clamp(-1.0, 1.0).acos())
}

/// R2R: the action with the highest ensembled probability (first on ties, as `np.argmax`).
pub fn nav_action(probs: &[f64]) -> Result<NavAction, PostProcessError> {
    let mut best = 0;
    for (i, &p) in probs.iter().enumerate() {
        if !p.is_finite() {
            return Err(PostProcessError::NonFinite);
        }
        if p > probs[best] {
            best = i;
        }
    }
    NavAction::from_id(best).ok_or(PostProcessError::Dim {
        got: probs.len(),
        expected: NAV_ACTION_DIM as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gripper_conventions() {
        assert_eq!(libero_gripper(0.9), -1.0);
        assert_eq!(libero_gripper(0.1), 1.0);
        assert_eq!(libero_gripper(0.5), 0.0);
        assert_eq!(bridge_gripper(0.5), -1.0);
        assert_eq!(bridge_gripper(0.51), 1.0);
        assert_eq!(calvin_gripper(0.0), 1.0);
        assert_eq!(calvin_gripper(-0.01), -1.0);
    }

    #[test]
    fn axis_angle_matches_known_rotations() {
        let (axis, angle) = euler_sxyz_to_axis_angle(0.3, 0.0, 0.0);
        assert!((axis[0] - 1.0).abs() < 1e-12 && (angle - 0.3).abs() < 1e-12);
        let (axis, angle) = euler_sxyz_to_axis_angle(0.0, 0.0, -0.7);
        assert!((axis[2] + 1.0).abs() < 1e-12 && (angle - 0.7).abs() < 1e-12);
        assert_eq!(euler_sxyz_to_axis_angle(0.0, 0.0, 0.0), ([1.0, 0.0, 0.0], 0.0));
        // Roll then pitch (static axes): q = q_y(p)·q_x(r); check against the composed quaternion.
        let (r, p) = (0.4f64, 0.2f64);
        let (axis, angle) = euler_sxyz_to_axis_angle(r, p, 0.0);
        let w = (r / 2.0).cos() * (p / 2.0).cos();
        assert!((angle - 2.0 * w.acos()).abs() < 1e-12);
        assert!(axis[0] > 0.0 && axis[1] > 0.0);
    }

    #[test]
    fn presets_map_actions() {
        let bounds = ActionBounds {
            q01: vec![-1.0; 7],
            q99: vec![3.0; 7],
            mask: vec![true, true, true, true, true, true, false],
            mean: None,
            std: None,
        };
        let libero = PostProcessor::new(Preset::Libero, Some(bounds.clone()), None).unwrap();
        let a = libero.apply(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.8]).unwrap();
        assert_eq!(a, Action::Arm(vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0]));
        assert!(PostProcessor::new(Preset::Bridge, None, None).is_err());
        let bridge = PostProcessor::new(Preset::Bridge, Some(bounds), None).unwrap();
        let Action::Bridge(b) = bridge.apply(&[0.0, -1.0, 1.0, -0.5, -0.5, -0.5, 0.8]).unwrap() else {
            panic!()
        };
        assert_eq!(b.world_vector, [1.0, -1.0, 3.0]);
        assert_eq!(b.rot_axangle, [0.0, 0.0, 0.0]);
        assert_eq!(b.gripper, 1.0);
        let r2r = PostProcessor::new(Preset::R2r, None, None).unwrap();
        assert_eq!(
            r2r.apply(&[0.1, 0.2, 0.6, 0.1]).unwrap(),
            Action::Nav(NavAction::TurnLeft)
        );
        assert_eq!(r2r.apply(&[0.3, 0.3, 0.2, 0.2]).unwrap(), Action::Nav(NavAction::Stop));
        assert!(r2r.apply(&[0.3, 0.3, 0.2]).is_err());
        assert!(libero.apply(&[f64::NAN; 7]).is_err());
        assert_eq!(Preset::from_name("Bridge"), Some(Preset::Bridge));
        assert_eq!(Preset::for_head(HeadKind::R2r), Preset::R2r);
    }

    #[test]
    fn arm_presets_follow_the_head_action_width() {
        let bounds = ActionBounds {
            q01: vec![-1.0; 5],
            q99: vec![3.0; 5],
            mask: vec![true, true, true, true, false],
            mean: None,
            std: None,
        };
        let libero = PostProcessor::new(Preset::Libero, Some(bounds.clone()), None)
            .unwrap()
            .with_action_dim(5)
            .unwrap();
        assert_eq!(libero.action_dim(), 5);
        // The gripper convention applies to the last value, whatever the width.
        assert_eq!(
            libero.apply(&[0.0, 0.0, 0.0, 0.0, 0.8]).unwrap(),
            Action::Arm(vec![1.0, 1.0, 1.0, 1.0, -1.0])
        );
        assert!(matches!(
            libero.apply(&[0.0; 7]),
            Err(PostProcessError::Dim { got: 7, expected: 5 })
        ));
        let calvin = PostProcessor::new(Preset::Calvin, None, None)
            .unwrap()
            .with_action_dim(3)
            .unwrap();
        assert_eq!(
            calvin.apply(&[0.5, -0.5, -0.2]).unwrap(),
            Action::Arm(vec![0.5, -0.5, -1.0])
        );
        // Bridge's format and R2R's actions have fixed widths; z-scores must match the head.
        let bridge = PostProcessor::new(Preset::Bridge, Some(bounds), None).unwrap();
        assert!(matches!(
            bridge.with_action_dim(5),
            Err(PostProcessError::HeadDim {
                expected: 7,
                got: 5,
                ..
            })
        ));
        let r2r = PostProcessor::new(Preset::R2r, None, None).unwrap();
        assert!(r2r.clone().with_action_dim(5).is_err());
        assert_eq!(r2r.with_action_dim(4).unwrap().action_dim(), 4);
        let z = ZScoreStats {
            action_mean: vec![0.0; 6],
            action_std: vec![1.0; 6],
            qpos_mean: vec![0.0; 6],
            qpos_std: vec![1.0; 6],
        };
        let real = PostProcessor::new(Preset::RealWorld, None, Some(z)).unwrap();
        assert!(real.clone().with_action_dim(7).is_err());
        assert_eq!(real.with_action_dim(6).unwrap().action_dim(), 6);
    }
}
