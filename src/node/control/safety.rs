//! The safety gate between the policy and the actuators: per-joint position and velocity limits, a
//! maximum step from the current joint state (clamped or refused), and hard failures for NaN/Inf or
//! grossly out-of-range output (the goal is aborted and the robot holds).

/// Default largest change of a joint between the current state and the first command (rad).
pub const DEFAULT_MAX_STEP: f64 = 0.25;
/// Default joint speed limit (rad/s).
pub const DEFAULT_MAX_VELOCITY: f64 = 1.0;

/// What to do with a command beyond a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Move it to the limit and count the event.
    Clamp,
    /// Do not send it: hold instead and count the event.
    Refuse,
}

/// A command the gate will not pass.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SafetyError {
    /// Hard failure: abort the goal.
    #[error("model output for {what} is not finite")]
    NonFinite { what: String },
    /// Hard failure: the output is far outside the allowed range (more than one range width away).
    #[error("model output {value} for {what} is far outside [{min}, {max}]")]
    OutOfRange {
        what: String,
        value: f64,
        min: f64,
        max: f64,
    },
    /// `refuse` mode: the command breaks a limit; hold.
    #[error("refused: {0}")]
    Refused(String),
    /// No target satisfies both the limits and the step bound from where the robot is (it reads
    /// outside its limits by more than one step); hold.
    #[error("no safe target: {0}")]
    Unreachable(String),
}

impl SafetyError {
    /// Whether the goal must be aborted (else the robot only holds).
    pub fn aborts_goal(&self) -> bool {
        !matches!(self, SafetyError::Refused(_) | SafetyError::Unreachable(_))
    }
}

/// A command that passed the gate.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    pub points: Vec<Vec<f64>>,
    /// Values moved to a limit.
    pub clamps: u32,
}

/// Per-joint limits.
#[derive(Clone, Debug, PartialEq)]
pub struct JointLimits {
    pub min: Vec<f64>,
    pub max: Vec<f64>,
    pub max_velocity: Vec<f64>,
    pub max_step: Vec<f64>,
    pub mode: Violation,
}

fn per_joint(name: &str, v: Option<Vec<f64>>, n: usize, default: f64) -> Result<Vec<f64>, String> {
    match v {
        None => Ok(vec![default; n]),
        Some(v) if v.len() == n => Ok(v),
        Some(v) => Err(format!("'{name}' has {} values but 'joint_names' has {n}", v.len())),
    }
}

impl JointLimits {
    /// Limits for `n` joints; absent position limits are unbounded, absent velocity and step
    /// limits get the defaults (safety stays on).
    pub fn new(
        min: Option<Vec<f64>>,
        max: Option<Vec<f64>>,
        max_velocity: Option<Vec<f64>>,
        max_step: Option<Vec<f64>>,
        n: usize,
        mode: Violation,
    ) -> Result<Self, String> {
        let l = Self {
            min: per_joint("position_min", min, n, f64::NEG_INFINITY)?,
            max: per_joint("position_max", max, n, f64::INFINITY)?,
            max_velocity: per_joint("max_velocity", max_velocity, n, DEFAULT_MAX_VELOCITY)?,
            max_step: per_joint("max_step", max_step, n, DEFAULT_MAX_STEP)?,
            mode,
        };
        for i in 0..n {
            if l.min[i].is_nan() || l.max[i].is_nan() || l.min[i] >= l.max[i] {
                return Err(format!("joint {i}: position_min must be below position_max"));
            }
            if !(l.max_velocity[i] > 0.0 && l.max_step[i] > 0.0) {
                return Err(format!("joint {i}: max_velocity and max_step must be positive"));
            }
        }
        Ok(l)
    }

    pub fn len(&self) -> usize {
        self.min.len()
    }

    pub fn is_empty(&self) -> bool {
        self.min.is_empty()
    }

    /// Where a hold keeps the arm when it is at `at`: each joint clamped into its limits when that
    /// is within one step (`max_velocity·dt`, at most `max_step`) — limits hold last — else left
    /// where it is (a stop never jumps; such a joint is reported when a goal tries to move it).
    pub fn hold_target(&self, at: &[f64], dt: f64) -> Vec<f64> {
        at.iter()
            .enumerate()
            .map(|(i, &p)| {
                let (lo, hi) = (self.min.get(i).copied(), self.max.get(i).copied());
                let (Some(lo), Some(hi)) = (lo, hi) else { return p };
                let allowed = (self.max_velocity[i] * dt).min(self.max_step[i]);
                let q = p.clamp(lo, hi);
                if (q - p).abs() <= allowed {
                    q
                } else {
                    p
                }
            })
            .collect()
    }

    /// Checks a planned trajectory (`points[k]` at `(k+1)·dt` from now) against the limits, starting
    /// from the measured joint positions `current` when known.
    pub fn check(&self, points: &[Vec<f64>], current: Option<&[f64]>, dt: f64) -> Result<Checked, SafetyError> {
        let mut out: Vec<Vec<f64>> = Vec::with_capacity(points.len());
        let mut clamps = 0;
        for (k, p) in points.iter().enumerate() {
            if p.len() != self.len() {
                return Err(SafetyError::OutOfRange {
                    what: format!("point {k} width {}", p.len()),
                    value: p.len() as f64,
                    min: self.len() as f64,
                    max: self.len() as f64,
                });
            }
            let prev = if k == 0 { current } else { out.last().map(Vec::as_slice) };
            let mut q = p.clone();
            for (i, v) in q.iter_mut().enumerate() {
                let what = || format!("joint {i} at step {k}");
                if !v.is_finite() {
                    return Err(SafetyError::NonFinite { what: what() });
                }
                let (lo, hi) = (self.min[i], self.max[i]);
                let span = hi - lo;
                if span.is_finite() && (*v < lo - span || *v > hi + span) {
                    return Err(SafetyError::OutOfRange {
                        what: what(),
                        value: *v,
                        min: lo,
                        max: hi,
                    });
                }
                // The target must lie in the limit range AND within one step of the previous
                // point: clamping into one and then the other could leave the first.
                let (mut wlo, mut whi) = (lo, hi);
                let mut allowed = f64::INFINITY;
                if let Some(prev) = prev {
                    allowed = self.max_velocity[i] * dt;
                    if k == 0 {
                        allowed = allowed.min(self.max_step[i]);
                    }
                    wlo = wlo.max(prev[i] - allowed);
                    whi = whi.min(prev[i] + allowed);
                    if wlo > whi {
                        return Err(SafetyError::Unreachable(format!(
                            "{} reads {:.4}, more than the allowed step {allowed:.4} outside [{lo}, {hi}]",
                            what(),
                            prev[i]
                        )));
                    }
                }
                if *v < wlo || *v > whi {
                    if self.mode == Violation::Refuse {
                        let why = if *v < lo || *v > hi {
                            format!("{} = {v} outside [{lo}, {hi}]", what())
                        } else {
                            let from = prev.map_or(f64::NAN, |p| p[i]);
                            format!(
                                "{} moves {:.4} from {from:.4}, at most {allowed:.4} allowed",
                                what(),
                                *v - from
                            )
                        };
                        return Err(SafetyError::Refused(why));
                    }
                    *v = v.clamp(wlo, whi);
                    clamps += 1;
                }
            }
            out.push(q);
        }
        Ok(Checked { points: out, clamps })
    }
}

/// Cartesian bounds of end-effector targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Workspace {
    pub min: [f64; 3],
    pub max: [f64; 3],
    /// Largest translation between consecutive targets (m).
    pub max_step: f64,
    /// Largest rotation between consecutive targets (rad).
    pub max_rotation_step: f64,
    pub mode: Violation,
}

fn dist(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    (0..3).map(|i| (a[i] - b[i]).powi(2)).sum::<f64>().sqrt()
}

impl Workspace {
    pub fn new(
        min: [f64; 3],
        max: [f64; 3],
        max_step: f64,
        max_rotation_step: f64,
        mode: Violation,
    ) -> Result<Self, String> {
        if (0..3).any(|i| min[i].partial_cmp(&max[i]) != Some(std::cmp::Ordering::Less)) {
            return Err("'workspace_min' must be below 'workspace_max' on every axis".into());
        }
        if !(max_step.is_finite() && max_step > 0.0) {
            return Err(format!(
                "'max_translation_step' must be a positive number, got {max_step}"
            ));
        }
        if !(max_rotation_step.is_finite() && max_rotation_step > 0.0 && max_rotation_step <= std::f64::consts::PI) {
            return Err(format!(
                "'max_rotation_step' must be within (0, pi] rad, got {max_rotation_step}"
            ));
        }
        Ok(Self {
            min,
            max,
            max_step,
            max_rotation_step,
            mode,
        })
    }

    pub fn contains(&self, p: &[f64; 3]) -> bool {
        (0..3).all(|i| p[i] >= self.min[i] && p[i] <= self.max[i])
    }

    fn project(&self, p: &[f64; 3]) -> [f64; 3] {
        std::array::from_fn(|i| p[i].clamp(self.min[i], self.max[i]))
    }

    /// Checks one target position reached from `prev`; returns it (maybe clamped into the
    /// intersection of the workspace and the step ball around `prev`) and the clamps.
    pub fn check(&self, target: [f64; 3], prev: [f64; 3]) -> Result<([f64; 3], u32), SafetyError> {
        if target.iter().chain(&prev).any(|v| !v.is_finite()) {
            return Err(SafetyError::NonFinite {
                what: "end-effector target".into(),
            });
        }
        let step = dist(&target, &prev);
        if self.contains(&target) && step <= self.max_step {
            return Ok((target, 0));
        }
        if self.mode == Violation::Refuse {
            return Err(SafetyError::Refused(if step > self.max_step {
                format!("end-effector step {step:.4} m exceeds {} m", self.max_step)
            } else {
                format!("end-effector target {target:?} outside the workspace")
            }));
        }
        // The box is convex: the projection of the target onto it, pulled toward the box point
        // nearest `prev` until it is within one step, is in both sets when they meet.
        let p = self.project(&target);
        let q = self.project(&prev);
        if dist(&q, &prev) > self.max_step {
            return Err(SafetyError::Unreachable(format!(
                "the end effector target is {:.4} m outside the workspace, more than one step ({} m)",
                dist(&q, &prev),
                self.max_step
            )));
        }
        let t = if dist(&p, &prev) <= self.max_step {
            p
        } else {
            // Largest s in [0, 1] with |q + s (p - q) - prev| <= max_step (a quadratic in s).
            let d: [f64; 3] = std::array::from_fn(|i| p[i] - q[i]);
            let w: [f64; 3] = std::array::from_fn(|i| q[i] - prev[i]);
            let a: f64 = d.iter().map(|x| x * x).sum();
            let b: f64 = 2.0 * (0..3).map(|i| d[i] * w[i]).sum::<f64>();
            let c: f64 = w.iter().map(|x| x * x).sum::<f64>() - self.max_step * self.max_step;
            let s = ((-b + (b * b - 4.0 * a * c).max(0.0).sqrt()) / (2.0 * a)).clamp(0.0, 1.0);
            std::array::from_fn(|i| q[i] + s * d[i])
        };
        Ok((t, 1))
    }

    /// Checks one target orientation reached from `prev`: a rotation larger than
    /// `max_rotation_step` is shortened along the same axis (or refused).
    pub fn check_rotation(
        &self,
        target: nalgebra::UnitQuaternion<f64>,
        prev: nalgebra::UnitQuaternion<f64>,
    ) -> Result<(nalgebra::UnitQuaternion<f64>, u32), SafetyError> {
        if !target.coords.iter().all(|v| v.is_finite()) {
            return Err(SafetyError::NonFinite {
                what: "end-effector orientation".into(),
            });
        }
        let angle = prev.angle_to(&target);
        if angle <= self.max_rotation_step {
            return Ok((target, 0));
        }
        if self.mode == Violation::Refuse {
            return Err(SafetyError::Refused(format!(
                "end-effector rotation {angle:.4} rad exceeds {} rad",
                self.max_rotation_step
            )));
        }
        let t = self.max_rotation_step / angle;
        let r = prev.try_slerp(&target, t, 1e-9).unwrap_or(prev);
        Ok((r, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(mode: Violation) -> JointLimits {
        JointLimits::new(
            Some(vec![-1.0, 0.0]),
            Some(vec![1.0, 0.1]),
            Some(vec![1.0, 1.0]),
            Some(vec![0.05, 0.05]),
            2,
            mode,
        )
        .unwrap()
    }

    #[test]
    fn clamps_position_and_step_and_counts() {
        let l = limits(Violation::Clamp);
        // dt 0.1 s: velocity allows 0.1 per step; the first step at most 0.05 from the state.
        let c = l
            .check(&[vec![0.5, 0.08], vec![0.5, 0.2]], Some(&[0.0, 0.05]), 0.1)
            .unwrap();
        assert_eq!(c.points[0], vec![0.05, 0.08]);
        assert!((c.points[1][0] - 0.15).abs() < 1e-12);
        assert_eq!(c.points[1][1], 0.1);
        assert_eq!(c.clamps, 3);
        let ok = l.check(&[vec![0.01, 0.06]], Some(&[0.0, 0.05]), 0.1).unwrap();
        assert_eq!(ok.clamps, 0);
    }

    #[test]
    fn refuse_mode_refuses_instead_of_clamping() {
        let l = limits(Violation::Refuse);
        let e = l.check(&[vec![0.5, 0.05]], Some(&[0.0, 0.05]), 0.1).unwrap_err();
        assert!(matches!(e, SafetyError::Refused(_)) && !e.aborts_goal(), "{e}");
        let e = l.check(&[vec![0.0, 0.2]], None, 0.1).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
    }

    #[test]
    fn nan_and_gross_range_abort() {
        let l = limits(Violation::Clamp);
        let e = l.check(&[vec![f64::NAN, 0.0]], None, 0.1).unwrap_err();
        assert!(e.aborts_goal() && e.to_string().contains("not finite"));
        let e = l.check(&[vec![f64::INFINITY, 0.0]], None, 0.1).unwrap_err();
        assert!(e.aborts_goal());
        let e = l.check(&[vec![0.0, 5.0]], None, 0.1).unwrap_err();
        assert!(matches!(e, SafetyError::OutOfRange { .. }), "{e}");
    }

    #[test]
    fn bad_limit_configs() {
        assert!(JointLimits::new(Some(vec![1.0]), Some(vec![0.0]), None, None, 1, Violation::Clamp).is_err());
        assert!(JointLimits::new(None, None, Some(vec![0.0]), None, 1, Violation::Clamp).is_err());
        let d = JointLimits::new(None, None, None, None, 2, Violation::Clamp).unwrap();
        assert_eq!(d.max_step, vec![DEFAULT_MAX_STEP; 2]);
    }

    #[test]
    fn workspace_clamps_steps_and_bounds() {
        let w = Workspace::new([0.0; 3], [1.0; 3], 0.1, 0.2, Violation::Clamp).unwrap();
        let (t, c) = w.check([0.5, 0.5, 0.9], [0.5, 0.5, 0.5]).unwrap();
        assert!((t[2] - 0.6).abs() < 1e-12 && c == 1);
        let (t, c) = w.check([0.5, 0.5, 1.05], [0.5, 0.5, 0.99]).unwrap();
        assert_eq!((t[2], c), (1.0, 1));
        assert!(w.check([f64::NAN, 0.0, 0.0], [0.5; 3]).unwrap_err().aborts_goal());
        let r = Workspace::new([0.0; 3], [1.0; 3], 0.1, 0.2, Violation::Refuse).unwrap();
        assert!(!r.check([0.5, 0.5, 0.9], [0.5; 3]).unwrap_err().aborts_goal());
    }

    #[test]
    fn a_hold_is_clamped_into_the_limits_only_within_one_step() {
        let l = JointLimits::new(
            Some(vec![0.0, -1.0]),
            Some(vec![0.08, 1.0]),
            Some(vec![0.5, 0.5]),
            Some(vec![0.1, 0.1]),
            2,
            Violation::Clamp,
        )
        .unwrap();
        // One step is 0.05 at dt 0.1: -0.03 comes back to 0; 0.5 inside stays.
        assert_eq!(l.hold_target(&[-0.03, 0.5], 0.1), vec![0.0, 0.5]);
        // More than a step outside: the hold stays where the joint is (no jump).
        assert_eq!(l.hold_target(&[-0.2, 1.5], 0.1), vec![-0.2, 1.5]);
    }

    #[test]
    fn limits_hold_last_when_the_joint_reads_outside_them() {
        // A gripper reading -0.03 below its [0, 0.08] range: the step window around the reading
        // is [-0.08, 0.02]; the target must be in [0, 0.02], never below 0.
        let l = JointLimits::new(
            Some(vec![0.0]),
            Some(vec![0.08]),
            Some(vec![1.0]),
            Some(vec![0.05]),
            1,
            Violation::Clamp,
        )
        .unwrap();
        for want in [-0.05, -0.01, 0.0, 0.01, 0.08] {
            let c = l.check(&[vec![want], vec![want]], Some(&[-0.03]), 0.1).unwrap();
            for p in &c.points {
                assert!((0.0..=0.08).contains(&p[0]), "target {want} -> {:?}", c.points);
            }
            assert!(c.points[0][0] <= 0.02 + 1e-12, "{:?}", c.points);
        }
        // Further out than one step: nothing satisfies both; hold, do not abort.
        let e = l.check(&[vec![0.04]], Some(&[-0.2]), 0.1).unwrap_err();
        assert!(matches!(e, SafetyError::Unreachable(_)) && !e.aborts_goal(), "{e}");
    }

    #[test]
    fn workspace_target_stays_inside_when_the_start_is_outside() {
        let w = Workspace::new([0.0; 3], [1.0; 3], 0.1, 0.2, Violation::Clamp).unwrap();
        // From 0.05 below the box, toward a point far outside on the other side.
        let prev = [0.5, 0.5, -0.05];
        let (t, c) = w.check([0.5, 2.0, -0.5], prev).unwrap();
        assert!(w.contains(&t) && c == 1, "{t:?}");
        assert!(dist(&t, &prev) <= 0.1 + 1e-9, "{t:?}");
        let e = w.check([0.5, 0.5, 0.5], [0.5, 0.5, -0.5]).unwrap_err();
        assert!(matches!(e, SafetyError::Unreachable(_)) && !e.aborts_goal(), "{e}");
    }

    #[test]
    fn rotation_steps_are_limited() {
        use nalgebra::{UnitQuaternion, Vector3};
        let w = Workspace::new([0.0; 3], [1.0; 3], 0.1, 0.2, Violation::Clamp).unwrap();
        let prev = UnitQuaternion::identity();
        let small = UnitQuaternion::from_axis_angle(&Vector3::z_axis(), 0.1);
        assert_eq!(w.check_rotation(small, prev).unwrap().1, 0);
        let big = UnitQuaternion::from_axis_angle(&Vector3::z_axis(), 1.0);
        let (r, c) = w.check_rotation(big, prev).unwrap();
        assert_eq!(c, 1);
        assert!((prev.angle_to(&r) - 0.2).abs() < 1e-9);
        assert!((r.angle_to(&big) - 0.8).abs() < 1e-9, "same axis");
        let refuse = Workspace::new([0.0; 3], [1.0; 3], 0.1, 0.2, Violation::Refuse).unwrap();
        assert!(!refuse.check_rotation(big, prev).unwrap_err().aborts_goal());
    }
}
