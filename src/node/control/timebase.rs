//! The control loop's time base: `Instant`s that follow the node clock, so periods, deadlines and
//! staleness run on simulated time under `use_sim_time` (and stop while `/clock` stops) and on the
//! monotonic clock otherwise.
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::ros::msgs::builtin_interfaces::Time;
use crate::ros::RosClock;

/// Longest single wait under simulated time: `/clock` can jump, so the loop looks again soon.
const SIM_POLL: Duration = Duration::from_millis(2);

#[derive(Debug)]
struct Anchor {
    /// `instant` corresponds to simulated time `nanos`.
    instant: Instant,
    nanos: i64,
    /// Latest instant handed out (time never runs backwards for the loop).
    last: Instant,
}

/// Node time as `Instant`s (cheap to clone; clones share the anchor).
#[derive(Clone, Debug)]
pub struct ControlClock {
    ros: RosClock,
    sim: Option<Arc<Mutex<Anchor>>>,
}

impl ControlClock {
    pub fn new(ros: RosClock) -> Self {
        let sim = ros.is_simulated().then(|| {
            let now = Instant::now();
            Arc::new(Mutex::new(Anchor {
                instant: now,
                nanos: ros.now_nanos(),
                last: now,
            }))
        });
        Self { ros, sim }
    }

    pub fn is_simulated(&self) -> bool {
        self.sim.is_some()
    }

    /// The current node time.
    pub fn now(&self) -> Instant {
        let Some(sim) = &self.sim else {
            return Instant::now();
        };
        let nanos = self.ros.now_nanos();
        let mut a = sim.lock().unwrap_or_else(PoisonError::into_inner);
        // The first `/clock` message, or simulated time going back (a bag replayed in a loop):
        // continue from the latest instant instead of jumping.
        if (a.nanos == 0 && nanos > 0) || nanos < a.nanos {
            a.instant = a.last;
            a.nanos = nanos;
        }
        let t = a.instant + Duration::from_nanos(u64::try_from(nanos - a.nanos).unwrap_or(0));
        a.last = a.last.max(t);
        a.last
    }

    /// The current node time as a message stamp.
    pub fn stamp(&self) -> Time {
        self.ros.now()
    }

    /// The stamp of node time `at` (in the future or past of now).
    pub fn stamp_at(&self, at: Instant) -> Time {
        let now = self.now();
        let nanos = self.ros.now_nanos();
        let shift = if at >= now {
            i64::try_from((at - now).as_nanos()).unwrap_or(i64::MAX)
        } else {
            -i64::try_from((now - at).as_nanos()).unwrap_or(i64::MAX)
        };
        Time::from_nanos(nanos.saturating_add(shift))
    }

    /// How long the loop may sleep (in wall time) to reach node time `until`, at most `cap`.
    pub fn wait_for(&self, until: Instant, cap: Duration) -> Duration {
        let left = until.saturating_duration_since(self.now()).min(cap);
        if self.is_simulated() {
            left.min(SIM_POLL)
        } else {
            left
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_time_drives_the_instants() {
        let ros = RosClock::simulated();
        let c = ControlClock::new(ros.clone());
        let t0 = c.now();
        // Until /clock runs, time stands still.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now(), t0);
        ros.set_sim_time(Time { sec: 100, nanosec: 0 });
        let t1 = c.now();
        assert_eq!(t1, t0, "the first /clock message anchors, it does not jump");
        ros.set_sim_time(Time {
            sec: 100,
            nanosec: 250_000_000,
        });
        assert_eq!(c.now() - t1, Duration::from_millis(250));
        assert_eq!(
            c.stamp_at(c.now() + Duration::from_millis(100)),
            Time {
                sec: 100,
                nanosec: 350_000_000
            }
        );
        // Time going back (a looped bag) continues from the latest instant.
        ros.set_sim_time(Time { sec: 5, nanosec: 0 });
        let t2 = c.now();
        assert_eq!(t2 - t1, Duration::from_millis(250));
        ros.set_sim_time(Time { sec: 6, nanosec: 0 });
        assert_eq!(c.now() - t2, Duration::from_secs(1));
        assert!(c.wait_for(c.now() + Duration::from_secs(1), Duration::from_secs(1)) <= SIM_POLL);
    }

    #[test]
    fn wall_time_follows_the_monotonic_clock() {
        let c = ControlClock::new(RosClock::system());
        let t0 = c.now();
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.now() - t0 >= Duration::from_millis(5));
        let wait = c.wait_for(c.now() + Duration::from_millis(40), Duration::from_secs(1));
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(40), "{wait:?}");
        let s = c.stamp_at(c.now() + Duration::from_secs(2)).to_nanos() - c.stamp().to_nanos();
        assert!((1_500_000_000..=2_000_000_000).contains(&s), "{s}");
    }
}
