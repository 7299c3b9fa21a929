//! `builtin_interfaces`: wire time stamps and durations.
use serde::{Deserialize, Serialize};

use super::ros_message;

/// Nanoseconds per second.
const NANOS_PER_SEC: i64 = 1_000_000_000;

/// `builtin_interfaces/Time`: seconds and nanoseconds since the epoch (or sim start).
#[derive(Serialize, Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time {
    pub sec: i32,
    pub nanosec: u32,
}
ros_message!(Time, "builtin_interfaces", "Time");

impl Time {
    /// From nanoseconds; saturates at the i32 seconds range like rclcpp.
    pub fn from_nanos(nanos: i64) -> Self {
        let (sec, nanosec) = split_nanos(nanos);
        Self { sec, nanosec }
    }

    /// Total nanoseconds.
    pub fn to_nanos(&self) -> i64 {
        i64::from(self.sec) * NANOS_PER_SEC + i64::from(self.nanosec)
    }
}

/// `builtin_interfaces/Duration`: a signed span of time.
#[derive(Serialize, Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    pub sec: i32,
    pub nanosec: u32,
}
ros_message!(Duration, "builtin_interfaces", "Duration");

impl Duration {
    /// From nanoseconds; saturates at the i32 seconds range.
    pub fn from_nanos(nanos: i64) -> Self {
        let (sec, nanosec) = split_nanos(nanos);
        Self { sec, nanosec }
    }

    /// From a std duration (saturating).
    pub fn from_std(d: std::time::Duration) -> Self {
        Self::from_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// Total nanoseconds.
    pub fn to_nanos(&self) -> i64 {
        i64::from(self.sec) * NANOS_PER_SEC + i64::from(self.nanosec)
    }

    /// As a std duration; `None` if negative.
    pub fn to_std(&self) -> Option<std::time::Duration> {
        u64::try_from(self.to_nanos()).ok().map(std::time::Duration::from_nanos)
    }

    /// True for the zero duration (used as "no limit" in goals).
    pub fn is_zero(&self) -> bool {
        self.sec == 0 && self.nanosec == 0
    }
}

/// Splits nanoseconds into (seconds, non-negative nanoseconds), saturating the seconds to i32.
fn split_nanos(nanos: i64) -> (i32, u32) {
    let sec = nanos.div_euclid(NANOS_PER_SEC);
    let nsec = nanos.rem_euclid(NANOS_PER_SEC);
    match i32::try_from(sec) {
        Ok(s) => (s, nsec as u32),
        Err(_) if sec < 0 => (i32::MIN, 0),
        Err(_) => (i32::MAX, (NANOS_PER_SEC - 1) as u32),
    }
}
