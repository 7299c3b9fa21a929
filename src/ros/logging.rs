//! `tracing` set-up for the nodes: `RUST_LOG` wins, else `--log-level`, else info. DDS internals
//! are kept at warn unless named explicitly. Records also go to `/rosout` (`rcl_interfaces/Log`,
//! as rclcpp nodes do) once [`attach_rosout`] has given them a node, unless
//! `--disable-rosout-logs`; a full queue drops records rather than slowing the caller.
use std::fmt::Write as _;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use super::args::RosArgs;
use super::error::RosError;
use super::msgs::rcl_interfaces::Log;
use super::qos::Qos;
use super::transport::RosNode;

/// Records waiting for `/rosout` (startup logs before the node exists fit in it).
const ROSOUT_QUEUE: usize = 256;
/// `/rosout` as rcl creates it: reliable, transient local, deep history.
const ROSOUT_QOS: Qos = Qos {
    reliable: true,
    transient_local: true,
    depth: 1000,
};

/// The receiving end of the `/rosout` queue, until a node takes it.
static ROSOUT: OnceLock<Mutex<Option<Receiver<Log>>>> = OnceLock::new();

/// A tracing layer that queues records for `/rosout`.
struct RosoutLayer {
    tx: SyncSender<Log>,
}

/// Collects an event's message and fields as one line.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{}{value:?}", if self.0.is_empty() { "" } else { " " });
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, "{}{value}", if self.0.is_empty() { "" } else { " " });
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

fn ros_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => Log::ERROR,
        Level::WARN => Log::WARN,
        Level::INFO => Log::INFO,
        _ => Log::DEBUG,
    }
}

impl<S: Subscriber> Layer<S> for RosoutLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Line::default();
        event.record(&mut line);
        let record = Log {
            level: ros_level(meta.level()),
            msg: line.0,
            file: meta.file().unwrap_or_default().to_string(),
            function: meta.target().to_string(),
            line: meta.line().unwrap_or(0),
            ..Default::default()
        };
        // Full (nobody publishing yet, or /rosout stalled): drop, never block the caller.
        let _ = self.tx.try_send(record);
    }
}

/// Noise filter for the middleware crates (their start-up warnings mean nothing to an operator),
/// appended to the level unless `RUST_LOG` names one of them itself.
const MIDDLEWARE_DIRECTIVES: &str = "rustdds=error,ros2_client=error";
/// Crates the middleware directives are about.
const MIDDLEWARE_CRATES: [&str; 2] = ["rustdds", "ros2_client"];

/// The filter directives a node uses (exposed for tests and `--help`).
pub fn filter_directives(args: &RosArgs, rust_log: Option<&str>) -> String {
    if let Some(env) = rust_log.filter(|s| !s.trim().is_empty()) {
        if MIDDLEWARE_CRATES.iter().any(|c| env.contains(c)) {
            return env.to_string();
        }
        return format!("{env},{MIDDLEWARE_DIRECTIVES}");
    }
    let level = args.log_level.map(|l| l.as_tracing_directive()).unwrap_or("info");
    let mut out = format!("{level},{MIDDLEWARE_DIRECTIVES}");
    for (logger, l) in &args.logger_levels {
        out.push_str(&format!(",{}={}", logger.replace('.', "::"), l.as_tracing_directive()));
    }
    out
}

/// Installs the global subscriber: stderr (errors only with `--disable-stdout-logs`) and the
/// `/rosout` queue (unless `--disable-rosout-logs`); a second call is a no-op.
pub fn init_tracing(args: &RosArgs) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let directives = filter_directives(args, rust_log.as_deref());
    let filter = || EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: journald, launch logs and files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(if args.stdout_logs {
            filter()
        } else {
            EnvFilter::new("error")
        });
    let rosout = args.rosout_logs.then(|| {
        let (tx, rx) = mpsc::sync_channel(ROSOUT_QUEUE);
        let slot = ROSOUT.get_or_init(|| Mutex::new(None));
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(rx);
        RosoutLayer { tx }.with_filter(filter())
    });
    // Already installed (tests, or a second node in-process): keep the first one.
    let _ = tracing_subscriber::registry().with(stderr).with(rosout).try_init();
}

/// Publishes the queued and all later log records on `/rosout` as `node`'s logger, from a thread
/// of its own. Does nothing when `/rosout` is disabled or another node took the queue.
pub fn attach_rosout(node: &mut RosNode) -> Result<(), RosError> {
    let Some(rx) = ROSOUT
        .get()
        .and_then(|m| m.lock().unwrap_or_else(PoisonError::into_inner).take())
    else {
        return Ok(());
    };
    let publisher = node.create_publisher::<Log>("/rosout", ROSOUT_QOS)?;
    let name = node.fqn().trim_start_matches('/').replace('/', ".");
    let clock = node.clock();
    std::thread::Builder::new()
        .name("univla-rosout".into())
        .spawn(move || {
            // Ends when the subscriber (and so the sender) is gone: at process exit.
            while let Ok(mut record) = rx.recv() {
                record.stamp = clock.now();
                record.name.clone_from(&name);
                // A failed publish cannot be logged without feeding this loop.
                let _ = publisher.publish(record);
            }
        })
        .map(|_| ())
        .map_err(|source| RosError::Thread {
            name: "univla-rosout",
            source,
        })
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
        // RUST_LOG wins, but the middleware stays quiet unless RUST_LOG names it.
        assert_eq!(
            filter_directives(&args, Some("trace")),
            "trace,rustdds=error,ros2_client=error"
        );
        assert_eq!(
            filter_directives(&args, Some("info,rustdds=debug")),
            "info,rustdds=debug"
        );
        assert_eq!(
            filter_directives(&args, None),
            "debug,rustdds=error,ros2_client=error,univla_ros=warn"
        );
        let (plain, _) = RosArgs::parse(["p"]).unwrap();
        assert_eq!(
            filter_directives(&plain, Some(" ")),
            "info,rustdds=error,ros2_client=error"
        );
    }
}
