//! QoS presets with rclcpp's values; ros2-client's own defaults differ (best-effort depth 1), so
//! every endpoint of this package names one of these explicitly.
use ros2_client::qos::{Durability, History, WhenFull};
use ros2_client::QosProfile;

/// How long a reliable `publish` waits for space in a full send window before failing.
const RELIABLE_MAX_BLOCK: std::time::Duration = std::time::Duration::from_millis(100);

/// A QoS choice for one endpoint: reliability, durability and keep-last depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qos {
    /// Reliable delivery (else best effort).
    pub reliable: bool,
    /// Transient-local durability: late joiners get the last `depth` samples (latched topics).
    pub transient_local: bool,
    /// Keep-last history depth.
    pub depth: usize,
}

impl Qos {
    /// `rclcpp::SensorDataQoS`: best effort, volatile, keep last 5. Cameras publish like this.
    pub const fn sensor_data() -> Self {
        Self {
            reliable: false,
            transient_local: false,
            depth: 5,
        }
    }

    /// rclcpp's default (`QoS(10)`): reliable, volatile, keep last 10.
    pub const fn default_profile() -> Self {
        Self {
            reliable: true,
            transient_local: false,
            depth: 10,
        }
    }

    /// Latched topics: reliable, transient local, keep last 1 (like `robot_description`).
    pub const fn transient_local() -> Self {
        Self {
            reliable: true,
            transient_local: true,
            depth: 1,
        }
    }

    /// `rclcpp::ClockQoS`: best effort, volatile, keep last 1.
    pub const fn clock() -> Self {
        Self {
            reliable: false,
            transient_local: false,
            depth: 1,
        }
    }

    /// The same preset with another history depth (at least 1).
    pub const fn with_depth(self, depth: usize) -> Self {
        Self {
            depth: if depth == 0 { 1 } else { depth },
            ..self
        }
    }

    /// The ros2-client profile.
    pub(crate) fn to_profile(self) -> QosProfile {
        let base = QosProfile::subscription_default();
        let base = if self.reliable {
            base.reliability_reliable(WhenFull::Wait(RELIABLE_MAX_BLOCK))
        } else {
            base.reliability_best_effort()
        };
        let durability = if self.transient_local {
            Durability::TransientLocal
        } else {
            Durability::Volatile
        };
        base.durability(durability)
            .history(History::KeepLast { depth: self.depth })
    }
}

impl Default for Qos {
    fn default() -> Self {
        Self::default_profile()
    }
}
