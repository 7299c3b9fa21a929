//! Hostile bags end in a clear error instead of a hang: storage files that are not regular files
//! (a FIFO named `x.db3` / `x.mcap`) are refused before they are opened.
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use univla_ros::bag::reader::BagReader;

/// How long opening a hostile bag may take before the test calls it a hang.
const OPEN_BUDGET: Duration = Duration::from_secs(10);

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
}

/// Opens `path` on a helper thread; the error text, or a failure if it hangs or succeeds.
fn open_err_within_budget(path: PathBuf) -> String {
    let (tx, rx) = mpsc::channel();
    let shown = path.display().to_string();
    std::thread::spawn(move || {
        let _ = tx.send(BagReader::open(&path).err().map(|e| e.to_string()));
    });
    match rx.recv_timeout(OPEN_BUDGET) {
        Ok(Some(err)) => err,
        Ok(None) => panic!("{shown}: opened a FIFO as a bag"),
        Err(_) => panic!("{shown}: opening did not finish within {OPEN_BUDGET:?}"),
    }
}

#[test]
fn fifo_storage_files_are_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["x.db3", "x.mcap"] {
        // Given directly, and inside a bag directory without metadata.yaml.
        let sub = dir.path().join(name.replace('.', "_"));
        std::fs::create_dir(&sub).unwrap();
        let fifo = sub.join(name);
        mkfifo(&fifo);
        for target in [fifo.clone(), sub.clone()] {
            let err = open_err_within_budget(target);
            assert!(err.contains(name) && err.contains("not a regular file"), "{err}");
        }
    }
}

#[test]
fn fifo_listed_in_metadata_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("bag");
    std::fs::create_dir(&bag).unwrap();
    mkfifo(&bag.join("bag_0.mcap"));
    std::fs::write(
        bag.join("metadata.yaml"),
        "rosbag2_bagfile_information:\n  version: 5\n  storage_identifier: mcap\n  relative_file_paths:\n    - bag_0.mcap\n  duration:\n    nanoseconds: 0\n  starting_time:\n    nanoseconds_since_epoch: 0\n  message_count: 0\n  topics_with_message_count: []\n  compression_format: \"\"\n  compression_mode: \"\"\n",
    )
    .unwrap();
    let err = open_err_within_budget(bag.clone());
    assert!(
        err.contains("bag_0.mcap") && err.contains("not a regular file"),
        "{err}"
    );
    // A metadata.yaml that is itself a FIFO.
    std::fs::remove_file(bag.join("metadata.yaml")).unwrap();
    mkfifo(&bag.join("metadata.yaml"));
    let err = open_err_within_budget(bag);
    assert!(
        err.contains("metadata.yaml") && err.contains("not a regular file"),
        "{err}"
    );
}
