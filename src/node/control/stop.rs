//! What a stop sends, decided in one place for every output kind.
//!
//! A stop (e-stop, dead-man timeout, stale camera or joints, cancel, preemption, a fault, the end
//! of a goal, shutdown) must be something the controller *executes*; an empty trajectory is not
//! (current `joint_trajectory_controller` releases reject it and keep moving). So:
//!
//! | output | the stop |
//! |---|---|
//! | `JointTrajectory` topic | one point at the hold position ([`hold_position`]), `time_from_start` = [`hold_settle`], stamped now, no velocities |
//! | `FollowJointTrajectory` | cancel the controller's running goal, then the same one-point trajectory as a goal |
//! | end-effector pose | the last pose target and gripper command sent, again (nothing if none was sent) |
//! | base (`Twist`) | zero linear and angular velocity |
//!
//! Every stop is sent at once and then repeated on the next [`STOP_REPEATS`] control steps
//! ([`Repeater`]), so one lost message does not leave the robot moving.
use std::time::{Duration, Instant};

/// Control steps on which a stop is sent again after the first.
pub const STOP_REPEATS: u32 = 3;
/// Shortest and longest time the controller gets to settle on a hold point.
const HOLD_SETTLE_MIN: Duration = Duration::from_millis(50);
const HOLD_SETTLE_MAX: Duration = Duration::from_millis(200);

/// Where a joint hold comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldSource {
    /// The joint state measured within the joint timeout.
    Measured,
    /// The target of the last trajectory sent (the joint state is stale or missing).
    Commanded,
}

/// The position a joint-space stop holds: the fresh measured position when there is one, else the
/// last commanded point; `None` when neither is known (the node then does not start goals).
pub fn hold_position(measured: Option<Vec<f64>>, commanded: Option<&[f64]>) -> Option<(Vec<f64>, HoldSource)> {
    match measured {
        Some(m) => Some((m, HoldSource::Measured)),
        None => commanded.map(|c| (c.to_vec(), HoldSource::Commanded)),
    }
}

/// `time_from_start` of a hold point for a control period: one period, within 50–200 ms (long
/// enough that a hold stamped now does not end in the past when it arrives, short enough that the
/// arm is still within one period).
pub fn hold_settle(period: Duration) -> Duration {
    period.clamp(HOLD_SETTLE_MIN, HOLD_SETTLE_MAX)
}

/// Repeats the last stop [`STOP_REPEATS`] times on later control steps, at least `spacing` apart
/// (and `spacing` after the first look), until motion resumes. A joint hold is repeated only once
/// the previous one has had time to complete: a hold that arrives while the controller is still
/// approaching the point would restart the approach.
#[derive(Clone, Debug)]
pub struct Repeater<C> {
    stop: Option<C>,
    left: u32,
    spacing: Duration,
    due: Option<Instant>,
}

impl<C> Default for Repeater<C> {
    /// Repeats on every step.
    fn default() -> Self {
        Self::new(Duration::ZERO)
    }
}

impl<C> Repeater<C> {
    pub fn new(spacing: Duration) -> Self {
        Self {
            stop: None,
            left: 0,
            spacing,
            due: None,
        }
    }
}

impl<C: Clone> Repeater<C> {
    /// A stop was just sent: repeat it on the coming steps.
    pub fn arm(&mut self, stop: C) {
        self.stop = Some(stop);
        self.left = STOP_REPEATS;
        self.due = None;
    }

    /// Motion resumed: stop repeating.
    pub fn clear(&mut self) {
        self.stop = None;
        self.left = 0;
    }

    /// The stop to send again on the control step at `now`, if a repeat is due.
    pub fn next(&mut self, now: Instant) -> Option<C> {
        if self.left == 0 {
            self.stop = None;
            return None;
        }
        let due = *self.due.get_or_insert(now + self.spacing);
        if now < due {
            return None;
        }
        self.left -= 1;
        self.due = Some(now + self.spacing);
        self.stop.clone()
    }

    /// True while repeats are pending.
    pub fn pending(&self) -> bool {
        self.left > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_prefers_the_measured_position() {
        let m = hold_position(Some(vec![0.1]), Some(&[0.2]));
        assert_eq!(m, Some((vec![0.1], HoldSource::Measured)));
        let c = hold_position(None, Some(&[0.2]));
        assert_eq!(c, Some((vec![0.2], HoldSource::Commanded)));
        assert_eq!(hold_position(None, None), None);
    }

    #[test]
    fn settle_is_one_period_within_bounds() {
        assert_eq!(hold_settle(Duration::from_millis(100)), Duration::from_millis(100));
        assert_eq!(hold_settle(Duration::from_millis(10)), HOLD_SETTLE_MIN);
        assert_eq!(hold_settle(Duration::from_secs(1)), HOLD_SETTLE_MAX);
    }

    #[test]
    fn repeats_a_stop_a_few_steps_then_stops_repeating() {
        let t = Instant::now();
        let mut r = Repeater::default();
        assert_eq!(r.next(t), None::<u8>);
        r.arm(7u8);
        let sent: Vec<_> = (0..STOP_REPEATS + 2).map(|_| r.next(t)).collect();
        assert_eq!(sent.iter().filter(|s| **s == Some(7)).count(), STOP_REPEATS as usize);
        assert_eq!(sent.last(), Some(&None));
        r.arm(8);
        r.clear();
        assert_eq!(r.next(t), None);
    }

    #[test]
    fn spaced_repeats_wait_for_the_previous_stop_to_complete() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Repeater::new(ms(200));
        r.arm(1u8);
        // Steps every 100 ms: the first look starts the spacing, repeats come every 200 ms.
        let sent: Vec<bool> = (0..10).map(|k| r.next(t + ms(100) * k).is_some()).collect();
        assert_eq!(
            sent,
            [false, false, true, false, true, false, true, false, false, false],
            "{sent:?}"
        );
    }
}
