//! The ROS 2 distribution of the peers, from `ROS_DISTRO` (default Jazzy). It selects the wire
//! layouts that changed between releases; today only one: the `Gid` in `ros_discovery_info`
//! (`rmw_dds_common/msg/Gid`), 24 bytes up to Humble and 16 bytes from Iron on. A peer that reads
//! the other layout cannot decode our node's entry (the node is then missing from
//! `ros2 node list`), and we cannot decode theirs.
use std::sync::Once;

/// Environment variable naming the distribution (set by every ROS 2 `setup.bash`).
pub const ROS_DISTRO_ENV: &str = "ROS_DISTRO";
/// Distribution assumed when `ROS_DISTRO` is unset or empty.
pub const DEFAULT_DISTRO: &str = "jazzy";

/// Distributions with Humble's 24-byte gids.
const GID24_DISTROS: [&str; 4] = ["dashing", "foxy", "galactic", "humble"];
/// Distributions with 16-byte gids.
const GID16_DISTROS: [&str; 5] = ["iron", "jazzy", "kilted", "lyrical", "rolling"];

/// The `ros_discovery_info` layout chosen for a `ROS_DISTRO` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryLayout {
    /// Distribution name as used (lower case; the default when unset).
    pub distro: String,
    /// Gid length on the wire.
    pub gid_length: usize,
    /// Whether the name was recognised (unknown names get the newest layout).
    pub known: bool,
}

impl DiscoveryLayout {
    /// The layout for a `ROS_DISTRO` value (`None` or empty: [`DEFAULT_DISTRO`]).
    pub fn for_distro(value: Option<&str>) -> Self {
        let distro = value
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_DISTRO.to_string());
        let old = GID24_DISTROS.contains(&distro.as_str());
        let known = old || GID16_DISTROS.contains(&distro.as_str());
        Self {
            gid_length: if old { 24 } else { 16 },
            distro,
            known,
        }
    }
}

/// Reads `ROS_DISTRO` once per process, logs the choice and sets ros2-client's Gid layout
/// (process-wide: one process talks to one distribution).
pub fn apply_from_env() {
    static APPLY: Once = Once::new();
    APPLY.call_once(|| {
        let raw = std::env::var(ROS_DISTRO_ENV).ok();
        let layout = DiscoveryLayout::for_distro(raw.as_deref());
        let set = ros2_client::gid::set_wire_length(layout.gid_length);
        debug_assert!(set, "16 and 24 are valid Gid lengths");
        match (raw.as_deref().map(str::trim).filter(|v| !v.is_empty()), layout.known) {
            (None, _) => tracing::info!(
                "{ROS_DISTRO_ENV} is not set: assuming {DEFAULT_DISTRO} ({}-byte gids in ros_discovery_info; set \
                 {ROS_DISTRO_ENV}=humble for Humble peers)",
                layout.gid_length
            ),
            (Some(_), true) => tracing::info!(
                "{ROS_DISTRO_ENV}={}: ros_discovery_info uses {}-byte gids",
                layout.distro,
                layout.gid_length
            ),
            (Some(_), false) => tracing::warn!(
                "{ROS_DISTRO_ENV}={} is not a distribution this node knows: using the newest ros_discovery_info \
                 layout ({}-byte gids)",
                layout.distro,
                layout.gid_length
            ),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_by_distribution() {
        assert_eq!(DiscoveryLayout::for_distro(None).gid_length, 16);
        assert_eq!(DiscoveryLayout::for_distro(None).distro, "jazzy");
        assert_eq!(DiscoveryLayout::for_distro(Some("")).distro, "jazzy");
        assert_eq!(DiscoveryLayout::for_distro(Some("humble")).gid_length, 24);
        assert_eq!(DiscoveryLayout::for_distro(Some(" Humble ")).gid_length, 24);
        assert_eq!(DiscoveryLayout::for_distro(Some("iron")).gid_length, 16);
        assert_eq!(DiscoveryLayout::for_distro(Some("jazzy")).gid_length, 16);
        let odd = DiscoveryLayout::for_distro(Some("zesty"));
        assert_eq!((odd.gid_length, odd.known), (16, false));
    }
}
