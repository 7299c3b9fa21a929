//! Node time: the system clock, or the simulated time from `/clock` when `use_sim_time` is true.
//!
//! ros2-client's own `/clock` reader uses the wrong type (`builtin_interfaces/Time` instead of
//! `rosgraph_msgs/Clock`), so the transport subscribes itself and feeds a [`RosClock`].
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::msgs::builtin_interfaces::Time;

/// A cheap, cloneable clock shared by a node's tasks.
#[derive(Debug, Clone, Default)]
pub struct RosClock {
    /// Latest `/clock` time in nanoseconds when simulated; `None` = system time.
    sim: Option<Arc<AtomicI64>>,
}

impl RosClock {
    /// The system clock.
    pub fn system() -> Self {
        Self { sim: None }
    }

    /// A simulated clock at time zero (what rclcpp reports until the first `/clock` message).
    pub fn simulated() -> Self {
        Self {
            sim: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// True if this clock follows `/clock`.
    pub fn is_simulated(&self) -> bool {
        self.sim.is_some()
    }

    /// Sets the simulated time (ignored for the system clock).
    pub fn set_sim_time(&self, t: Time) {
        if let Some(sim) = &self.sim {
            sim.store(t.to_nanos(), Ordering::Release);
        }
    }

    /// Current time in nanoseconds since the epoch (or since the simulation start).
    pub fn now_nanos(&self) -> i64 {
        match &self.sim {
            Some(sim) => sim.load(Ordering::Acquire),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                .unwrap_or(0),
        }
    }

    /// Current time as a message stamp.
    pub fn now(&self) -> Time {
        Time::from_nanos(self.now_nanos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_clock_follows_ticks() {
        let clock = RosClock::simulated();
        assert_eq!(clock.now(), Time { sec: 0, nanosec: 0 });
        let shared = clock.clone();
        shared.set_sim_time(Time { sec: 12, nanosec: 5 });
        assert_eq!(clock.now(), Time { sec: 12, nanosec: 5 });
        assert!(clock.is_simulated());
    }

    #[test]
    fn system_clock_ignores_ticks() {
        let clock = RosClock::system();
        clock.set_sim_time(Time { sec: 1, nanosec: 0 });
        // Any date after 2020 proves it is the wall clock, not the tick.
        assert!(clock.now().sec > 1_577_836_800);
    }
}
