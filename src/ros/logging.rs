//! `tracing` set-up for the nodes: `RUST_LOG` wins, else `--log-level`, else info. DDS internals
//! are kept at warn unless named explicitly.
use tracing_subscriber::EnvFilter;

use super::args::RosArgs;

/// Noise filter for the middleware crates, appended to a level given by `--log-level`.
const MIDDLEWARE_DIRECTIVES: &str = "rustdds=warn,ros2_client=warn";

/// The filter directives a node uses (exposed for tests and `--help`).
pub fn filter_directives(args: &RosArgs, rust_log: Option<&str>) -> String {
    if let Some(env) = rust_log.filter(|s| !s.trim().is_empty()) {
        return env.to_string();
    }
    let level = args.log_level.map(|l| l.as_tracing_directive()).unwrap_or("info");
    let mut out = format!("{level},{MIDDLEWARE_DIRECTIVES}");
    for (logger, l) in &args.logger_levels {
        out.push_str(&format!(",{}={}", logger.replace('.', "::"), l.as_tracing_directive()));
    }
    out
}

/// Installs the global subscriber (stderr unless `--disable-stdout-logs`); a second call is a no-op.
pub fn init_tracing(args: &RosArgs) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter =
        EnvFilter::try_new(filter_directives(args, rust_log.as_deref())).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if args.stdout_logs {
        builder.try_init()
    } else {
        builder.with_max_level(tracing::Level::ERROR).try_init()
    };
    // Already installed (tests, or a second node in-process): keep the first one.
    let _ = result;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_then_ros_log_level() {
        let (args, _) = RosArgs::parse([
            "p",
            "--ros-args",
            "--log-level",
            "debug",
            "--log-level",
            "univla_ros:=warn",
        ])
        .unwrap();
        assert_eq!(filter_directives(&args, Some("trace")), "trace");
        assert_eq!(
            filter_directives(&args, None),
            "debug,rustdds=warn,ros2_client=warn,univla_ros=warn"
        );
        let (plain, _) = RosArgs::parse(["p"]).unwrap();
        assert_eq!(
            filter_directives(&plain, Some(" ")),
            "info,rustdds=warn,ros2_client=warn"
        );
    }
}
