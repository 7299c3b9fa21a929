//! The smoke node: publishes `std_msgs/String` on `chatter` at `rate_hz`, echoes what arrives on
//! `chatter_in` back on `chatter` as `heard: <text>`, and exits after `run_secs`. It proves the
//! whole boundary (args, names, remaps, params, QoS, discovery) with the smallest possible node.
use std::time::{Duration, Instant};

use super::error::RosError;
use super::msgs::std_msgs::StringMsg;
use super::params::Params;
use super::qos::Qos;
use super::transport::RosNode;

/// Default node name.
pub const NODE_NAME: &str = "univla_smoke";
/// Upper bound of `run_secs`, so a mistyped value cannot keep a test or robot busy for days.
pub const MAX_RUN_SECS: f64 = 3600.0;
/// Highest accepted publishing rate.
const MAX_RATE_HZ: f64 = 1000.0;
/// Lowest accepted publishing rate (one message per 100 s); below it the period would not fit
/// a `Duration` (`rate_hz:=1e-300`).
const MIN_RATE_HZ: f64 = 0.01;
/// Longest sleep between polls of the input topic.
const POLL_PERIOD: Duration = Duration::from_millis(5);
/// Prefix of echoed messages.
pub const ECHO_PREFIX: &str = "heard: ";

/// Smoke node settings, from its ROS parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SmokeConfig {
    /// Publishing rate of `chatter` (`rate_hz`, default 2.0).
    pub rate_hz: f64,
    /// Messages to publish, 0 = until `run_secs` ends (`count`, default 0).
    pub count: u64,
    /// Lifetime in seconds, 0 < run_secs <= 3600 (`run_secs`, default 5.0).
    pub run_secs: f64,
    /// Text of the periodic messages, followed by a counter (`text`, default `hello`).
    pub text: String,
}

impl SmokeConfig {
    /// Reads and checks the node parameters (before any socket is opened).
    pub fn from_params(p: &Params) -> Result<Self, RosError> {
        let rate_hz = p.positive_f64_or("rate_hz", 2.0)?;
        let run_secs = p.positive_f64_or("run_secs", 5.0)?;
        let range = |name: &str, why: String| super::RosArgsError::ParamRange { name: name.into(), why };
        if !(MIN_RATE_HZ..=MAX_RATE_HZ).contains(&rate_hz) {
            return Err(range(
                "rate_hz",
                format!("must be within [{MIN_RATE_HZ}, {MAX_RATE_HZ}], got {rate_hz}"),
            )
            .into());
        }
        if run_secs > MAX_RUN_SECS {
            return Err(range("run_secs", format!("must be at most {MAX_RUN_SECS}, got {run_secs}")).into());
        }
        Ok(Self {
            rate_hz,
            count: p.u64_or("count", 0)?,
            run_secs,
            text: p.string_or("text", "hello")?,
        })
    }
}

/// What the smoke node did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmokeSummary {
    pub published: u64,
    pub received: u64,
}

/// Runs the smoke node until `run_secs` have passed.
pub fn run_smoke(node: &mut RosNode, cfg: &SmokeConfig) -> Result<SmokeSummary, RosError> {
    let chatter = node.create_publisher::<StringMsg>("chatter", Qos::default_profile())?;
    let input = node.create_subscription::<StringMsg>("chatter_in", Qos::default_profile())?;
    tracing::info!(
        "{}: publishing on {} at {} Hz, echoing {} for {} s",
        node.fqn(),
        chatter.topic(),
        cfg.rate_hz,
        input.topic(),
        cfg.run_secs
    );
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(cfg.run_secs);
    let period = Duration::from_secs_f64(1.0 / cfg.rate_hz);
    let mut next_pub = start;
    let mut summary = SmokeSummary::default();
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= next_pub && (cfg.count == 0 || summary.published < cfg.count) {
            let text = format!("{} {}", cfg.text, summary.published);
            tracing::debug!("publish '{text}'");
            chatter.publish(StringMsg { data: text })?;
            summary.published += 1;
            next_pub += period;
        }
        // Drain what arrived, bounded per round so publishing keeps its rate.
        for _ in 0..64 {
            match input.try_take() {
                Ok(Some(msg)) => {
                    summary.received += 1;
                    tracing::info!("received '{}' on {}", msg.data, input.topic());
                    chatter.publish(StringMsg {
                        data: format!("{ECHO_PREFIX}{}", msg.data),
                    })?;
                }
                Ok(None) => break,
                Err(e) => tracing::warn!("{e}"),
            }
        }
        let publishing = cfg.count == 0 || summary.published < cfg.count;
        let wake = if publishing { next_pub.min(end) } else { end };
        std::thread::sleep(wake.saturating_duration_since(Instant::now()).min(POLL_PERIOD));
    }
    tracing::info!(
        "{}: done, published {}, received {}",
        node.fqn(),
        summary.published,
        summary.received
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ros::RosArgs;

    fn cfg(args: &[&str]) -> Result<SmokeConfig, RosError> {
        let mut v = vec!["p", "--ros-args"];
        v.extend_from_slice(args);
        let (a, _) = RosArgs::parse(v).unwrap();
        SmokeConfig::from_params(&a.resolve_node(NODE_NAME, "/").unwrap().params)
    }

    #[test]
    fn config_defaults_and_checks() {
        let d = cfg(&[]).unwrap();
        assert_eq!(
            d,
            SmokeConfig {
                rate_hz: 2.0,
                count: 0,
                run_secs: 5.0,
                text: "hello".into()
            }
        );
        let c = cfg(&[
            "-p",
            "rate_hz:=20",
            "-p",
            "run_secs:=10",
            "-p",
            "count:=3",
            "-p",
            "text:=hi",
        ])
        .unwrap();
        assert_eq!(
            c,
            SmokeConfig {
                rate_hz: 20.0,
                count: 3,
                run_secs: 10.0,
                text: "hi".into()
            }
        );
        assert!(cfg(&["-p", "run_secs:=0"]).is_err());
        assert!(cfg(&["-p", "run_secs:=100000"])
            .unwrap_err()
            .to_string()
            .contains("at most 3600"));
        assert!(cfg(&["-p", "rate_hz:=abc"])
            .unwrap_err()
            .to_string()
            .contains("must be a float"));
        assert!(cfg(&["-p", "count:=-1"]).is_err());
        // Tiny rates would overflow the period's Duration: a clean error naming the parameter.
        for rate in ["rate_hz:=1e-300", "rate_hz:=1e300"] {
            let e = cfg(&["-p", rate]).unwrap_err().to_string();
            assert!(e.contains("rate_hz"), "{rate}: {e}");
        }
    }
}
