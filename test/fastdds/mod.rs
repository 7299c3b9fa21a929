//! The Fast DDS test peer (`test/fastdds_peer/`): a C++ program on Debian's `libfastrtps` that
//! behaves on the wire like rclcpp over `rmw_fastrtps_cpp`. Built on first use into cargo's
//! per-target test directory (needs `g++` and `libfastrtps-dev`, installed by scripts/setup.sh)
//! and run only inside the tests' private network namespace.
#![allow(dead_code)]
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// The peer's sources (the binary is rebuilt when any of them is newer).
const SOURCES: [&str; 2] = ["peer.cpp", "dds.hpp"];

fn newest_source(dir: &Path) -> SystemTime {
    SOURCES
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).and_then(|m| m.modified()).ok())
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Compiles the peer once per test process (if stale) and returns its path.
pub fn peer_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("test/fastdds_peer");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fastdds_peer");
        let fresh = std::fs::metadata(&out)
            .and_then(|m| m.modified())
            .map(|built| built >= newest_source(&src))
            .unwrap_or(false);
        if fresh {
            return out;
        }
        // Build next to the target and rename, so concurrent test binaries never run a half
        // written file.
        let tmp = out.with_extension(format!("build{}", std::process::id()));
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
        let result = Command::new(&cxx)
            .args(["-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror"])
            .arg(src.join("peer.cpp"))
            .arg("-o")
            .arg(&tmp)
            .args(["-lfastrtps", "-lfastcdr", "-lpthread"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cxx} to build the Fast DDS peer: {e} (run scripts/setup.sh)"));
        assert!(
            result.status.success(),
            "building the Fast DDS peer failed (needs g++ and libfastrtps-dev; run scripts/setup.sh):\n{}",
            String::from_utf8_lossy(&result.stderr)
        );
        std::fs::rename(&tmp, &out).expect("install the Fast DDS peer binary");
        out
    })
}

/// The peer's report: every `PASS`/`FAIL` line by check name.
#[derive(Debug)]
pub struct Report {
    pub exit_ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Report {
    /// The detail of a check that must have passed; panics naming it (with the whole report)
    /// if it failed or never ran.
    pub fn passed(&self, check: &str) -> &str {
        let prefix_pass = format!("PASS {check}: ");
        let prefix_fail = format!("FAIL {check}: ");
        for line in self.stdout.lines() {
            if let Some(d) = line.strip_prefix(&prefix_pass) {
                return d;
            }
            if let Some(d) = line.strip_prefix(&prefix_fail) {
                panic!("Fast DDS peer check '{check}' failed: {d}\n--- peer report ---\n{self}");
            }
        }
        panic!("Fast DDS peer never reported check '{check}'\n--- peer report ---\n{self}");
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}--- peer stderr ---\n{}", self.stdout, self.stderr)
    }
}

/// Runs the peer in `mode` with `key=value` arguments; kills it (by its own handle) after
/// `limit`.
pub fn run_peer(mode: &str, args: &[(&str, String)], limit: Duration) -> Report {
    let mut cmd = Command::new(peer_binary());
    cmd.arg(mode)
        .args(args.iter().map(|(k, v)| format!("{k}={v}")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child: Child = cmd.spawn().expect("start the Fast DDS peer");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("poll the Fast DDS peer") {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {limit:?})"));
    }
    Report {
        exit_ok: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
    }
}
