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
}

impl SafetyError {
    /// Whether the goal must be aborted (else the robot only holds).
    pub fn aborts_goal(&self) -> bool {
        !matches!(self, SafetyError::Refused(_))
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
                if *v < lo || *v > hi {
                    if self.mode == Violation::Refuse {
                        return Err(SafetyError::Refused(format!("{} = {v} outside [{lo}, {hi}]", what())));
                    }
                    *v = v.clamp(lo, hi);
                    clamps += 1;
                }
                if let Some(prev) = prev {
                    let mut allowed = self.max_velocity[i] * dt;
                    if k == 0 {
                        allowed = allowed.min(self.max_step[i]);
                    }
                    let delta = *v - prev[i];
                    if delta.abs() > allowed {
                        if self.mode == Violation::Refuse {
                            return Err(SafetyError::Refused(format!(
                                "{} moves {delta:.4} from {:.4}, at most {allowed:.4} allowed",
                                what(),
                                prev[i]
                            )));
                        }
                        *v = prev[i] + delta.clamp(-allowed, allowed);
                        clamps += 1;
                    }
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
    pub mode: Violation,
}

impl Workspace {
    pub fn new(min: [f64; 3], max: [f64; 3], max_step: f64, mode: Violation) -> Result<Self, String> {
        if (0..3).any(|i| min[i].partial_cmp(&max[i]) != Some(std::cmp::Ordering::Less)) {
            return Err("'workspace_min' must be below 'workspace_max' on every axis".into());
        }
        Ok(Self {
            min,
            max,
            max_step,
            mode,
        })
    }

    pub fn contains(&self, p: &[f64; 3]) -> bool {
        (0..3).all(|i| p[i] >= self.min[i] && p[i] <= self.max[i])
    }

    /// Checks one target position reached from `prev`; returns it (maybe clamped) and the clamps.
    pub fn check(&self, target: [f64; 3], prev: [f64; 3]) -> Result<([f64; 3], u32), SafetyError> {
        if target.iter().any(|v| !v.is_finite()) {
            return Err(SafetyError::NonFinite {
                what: "end-effector target".into(),
            });
        }
        let mut clamps = 0;
        let mut t = target;
        let d: Vec<f64> = (0..3).map(|i| t[i] - prev[i]).collect();
        let norm = d.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > self.max_step {
            if self.mode == Violation::Refuse {
                return Err(SafetyError::Refused(format!(
                    "end-effector step {norm:.4} m exceeds {} m",
                    self.max_step
                )));
            }
            let s = self.max_step / norm;
            (0..3).for_each(|i| t[i] = prev[i] + d[i] * s);
            clamps += 1;
        }
        if !self.contains(&t) {
            if self.mode == Violation::Refuse {
                return Err(SafetyError::Refused(format!(
                    "end-effector target {t:?} outside the workspace"
                )));
            }
            (0..3).for_each(|i| t[i] = t[i].clamp(self.min[i], self.max[i]));
            clamps += 1;
        }
        Ok((t, clamps))
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
        let w = Workspace::new([0.0; 3], [1.0; 3], 0.1, Violation::Clamp).unwrap();
        let (t, c) = w.check([0.5, 0.5, 0.9], [0.5, 0.5, 0.5]).unwrap();
        assert!((t[2] - 0.6).abs() < 1e-12 && c == 1);
        let (t, c) = w.check([0.5, 0.5, 1.05], [0.5, 0.5, 0.99]).unwrap();
        assert_eq!((t[2], c), (1.0, 1));
        assert!(w.check([f64::NAN, 0.0, 0.0], [0.5; 3]).unwrap_err().aborts_goal());
        let r = Workspace::new([0.0; 3], [1.0; 3], 0.1, Violation::Refuse).unwrap();
        assert!(!r.check([0.5, 0.5, 0.9], [0.5; 3]).unwrap_err().aborts_goal());
    }
}
