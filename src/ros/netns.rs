//! Guard for programs and tests that open DDS sockets: they must run inside a private network
//! namespace so that discovery multicast never leaves the machine.

/// Where the per-namespace interface list lives (unlike `/sys/class/net`, it follows the netns).
const NET_DEV: &str = "/proc/net/dev";

/// Ok only if the loopback device is the only network interface of this process's namespace.
pub fn require_private_netns() -> Result<(), String> {
    let text = std::fs::read_to_string(NET_DEV).map_err(|e| format!("cannot read {NET_DEV}: {e}"))?;
    check_interfaces(&interfaces(&text))
}

/// Interface names listed in `/proc/net/dev` text (two header lines, then `name: counters`).
fn interfaces(net_dev: &str) -> Vec<String> {
    net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

fn check_interfaces(names: &[String]) -> Result<(), String> {
    if names.iter().all(|n| n == "lo") && !names.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "refusing to open DDS sockets: this process sees network interfaces {names:?}, but DDS tests must run in a \
             private network namespace with only 'lo'. Run them through scripts/test.sh (it runs cargo test inside \
             `unshare --net` with lo up and a multicast route)."
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Inter-|   Receive    |  Transmit\n face |bytes    packets errs|bytes\n";

    #[test]
    fn only_loopback_passes() {
        let text = format!("{HEADER}    lo:  100  2 0 0\n");
        assert_eq!(interfaces(&text), vec!["lo".to_string()]);
        assert!(check_interfaces(&interfaces(&text)).is_ok());
    }

    #[test]
    fn other_interfaces_fail_with_instructions() {
        let text = format!("{HEADER}    lo:  100  2 0 0\n  eth0: 5 1 0 0\n");
        let err = check_interfaces(&interfaces(&text)).unwrap_err();
        assert!(err.contains("\"eth0\"") && err.contains("scripts/test.sh"), "{err}");
        assert!(check_interfaces(&[]).is_err());
    }
}
