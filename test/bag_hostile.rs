//! Hostile bags end in a clear error instead of a hang or a huge allocation: storage files that
//! are not regular files (a FIFO named `x.db3` / `x.mcap`) are refused before they are opened,
//! MCAP records and sqlite3 payloads are capped, and sqlite3 schemas must be plain tables.
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

#[path = "bag_common.rs"]
mod bag_common;

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

/// A one-topic MCAP bag (zstd chunks, as `ros2 bag record` writes by default) in `dir/bag`;
/// returns the path of its storage file.
fn small_mcap_bag(dir: &Path) -> PathBuf {
    use univla_ros::bag::writer::{McapBagWriter, WriterOptions};
    use univla_ros::ros::msgs::std_msgs::StringMsg;
    let bag = dir.join("bag");
    let mut w = McapBagWriter::create(&bag, WriterOptions::default()).unwrap();
    for k in 0..5i64 {
        w.write(
            "/instruction",
            k * 1_000_000,
            &StringMsg {
                data: format!("step {k}"),
            },
        )
        .unwrap();
    }
    w.finish().unwrap();
    let file = std::fs::read_dir(&bag)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "mcap"))
        .unwrap();
    file
}

/// Little-endian u64 at `at`.
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Offsets of the summary section's records (opcode, body start, body length), from the footer.
fn summary_records(b: &[u8]) -> Vec<(u8, usize, usize)> {
    // Footer: opcode, length, summary_start, summary_offset_start, summary_crc; then the magic.
    let footer = b.len() - 8 - (1 + 8 + 20);
    assert_eq!(b[footer], 0x02, "MCAP footer opcode");
    let start = le64(b, footer + 9) as usize;
    let end = match le64(b, footer + 17) as usize {
        0 => footer,
        offsets => offsets,
    };
    let mut at = start;
    let mut out = Vec::new();
    while at < end {
        let len = le64(b, at + 1) as usize;
        out.push((b[at], at + 9, len));
        at += 9 + len;
    }
    out
}

/// Clears the footer's summary CRC (0: not computed), so a patched summary is read as written.
fn clear_summary_crc(b: &mut [u8]) {
    let crc = b.len() - 8 - 4;
    b[crc..crc + 4].fill(0);
}

/// Opens the bag and reads every message; the first error, within the budget.
fn read_all_err(path: PathBuf) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = BagReader::open(&path).and_then(|r| {
            let topics: Vec<String> = r.topics().iter().map(|t| t.name.clone()).collect();
            let names: Vec<&str> = topics.iter().map(|s| s.as_str()).collect();
            r.messages(&names)?.try_for_each(|m| m.map(drop))
        });
        let _ = tx.send(r.err().map(|e| e.to_string()));
    });
    match rx.recv_timeout(OPEN_BUDGET) {
        Ok(Some(err)) => err,
        Ok(None) => panic!("the hostile bag was read without an error"),
        Err(_) => panic!("reading did not finish within {OPEN_BUDGET:?}"),
    }
}

#[test]
fn mcap_chunk_declaring_a_terabyte_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let file = small_mcap_bag(dir.path());
    let mut b = std::fs::read(&file).unwrap();
    let (_, body, len) = summary_records(&b)
        .into_iter()
        .find(|(op, _, _)| *op == 0x08)
        .expect("a chunk index record");
    // The chunk index's last field is the chunk's uncompressed size.
    b[body + len - 8..body + len].copy_from_slice(&(1u64 << 40).to_le_bytes());
    clear_summary_crc(&mut b);
    std::fs::write(&file, &b).unwrap();
    let err = read_all_err(file);
    assert!(err.contains("too large") || err.contains("length"), "{err}");
}

#[test]
fn mcap_summary_record_declaring_a_terabyte_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let file = small_mcap_bag(dir.path());
    let mut b = std::fs::read(&file).unwrap();
    let (_, body, _) = summary_records(&b)[0];
    b[body - 8..body].copy_from_slice(&(1u64 << 40).to_le_bytes());
    clear_summary_crc(&mut b);
    std::fs::write(&file, &b).unwrap();
    let err = read_all_err(file);
    assert!(err.contains("MCAP"), "{err}");
}

/// The summary's channel record, as (body start, body length).
fn channel_record(b: &[u8]) -> (usize, usize) {
    let (_, body, len) = summary_records(b)
        .into_iter()
        .find(|(op, _, _)| *op == 0x04)
        .expect("a channel record");
    (body, len)
}

#[test]
fn mcap_summary_string_longer_than_its_record_is_refused_by_name() {
    // `mcap` reserves a string's declared length before reading it: a 4 GiB topic name in a
    // small record must be refused from the prefix, not allocated.
    let dir = tempfile::tempdir().unwrap();
    let file = small_mcap_bag(dir.path());
    let mut b = std::fs::read(&file).unwrap();
    let (body, _) = channel_record(&b);
    // Channel: id (u16), schema id (u16), then the topic's u32 length.
    b[body + 4..body + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    clear_summary_crc(&mut b);
    std::fs::write(&file, &b).unwrap();
    let err = read_all_err(file);
    assert!(err.contains("channel topic declares 4294967280 bytes"), "{err}");
}

#[test]
fn mcap_attachment_in_the_summary_is_refused_without_a_panic() {
    // An Attachment whose body ends before its CRC made `mcap` slice out of bounds.
    let dir = tempfile::tempdir().unwrap();
    let file = small_mcap_bag(dir.path());
    let mut b = std::fs::read(&file).unwrap();
    let (_, body, len) = summary_records(&b)
        .into_iter()
        .max_by_key(|r| r.2)
        .expect("summary records");
    assert!(len >= 32 + 9, "summary record too short to rewrite: {len}");
    // The largest record (the schema) becomes a 32-byte attachment (times, empty name and type, no data, no CRC)
    // followed by an extension record (opcode 0x80) that fills the rest.
    let at = body - 9;
    b[at] = 0x09;
    b[at + 1..at + 9].copy_from_slice(&32u64.to_le_bytes());
    b[body..body + 32].fill(0);
    let pad = body + 32;
    b[pad] = 0x80;
    b[pad + 1..pad + 9].copy_from_slice(&((len - 32 - 9) as u64).to_le_bytes());
    clear_summary_crc(&mut b);
    std::fs::write(&file, &b).unwrap();
    let err = read_all_err(file);
    assert!(err.contains("does not belong in the summary"), "{err}");
}

/// Copies the rosbags-written sqlite3 bag and applies `sql` to the copy with the PyPI-venv Python
/// (its `sqlite3` module is an independent writer); returns the `.db3` path.
fn patched_db3(dir: &Path, sql: &str) -> PathBuf {
    let src = bag_common::rosbags_dir().join("rosbags_sqlite3");
    let db3 = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "db3"))
        .unwrap();
    let out = dir.join("x.db3");
    std::fs::copy(&db3, &out).unwrap();
    let script = format!("import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nc.executescript({sql:?})\nc.commit()\n");
    let st = std::process::Command::new(bag_common::venv_python())
        .arg("-c")
        .arg(script)
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    out
}

#[test]
fn sqlite_messages_that_is_a_recursive_view_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // `messages` becomes a view over a recursive query that never ends.
    let db3 = patched_db3(
        dir.path(),
        "ALTER TABLE messages RENAME TO real_messages;\
         CREATE VIEW messages AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
         SELECT i AS id, 1 AS topic_id, i AS timestamp, x'00' AS data FROM n;",
    );
    let t0 = std::time::Instant::now();
    let err = read_all_err(db3);
    assert!(err.contains("`messages` is a view"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn sqlite_payload_over_the_record_cap_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // One payload of 129 MiB, 1 MiB over the cap.
    let db3 = patched_db3(
        dir.path(),
        "UPDATE messages SET data = zeroblob(135266304) WHERE id = (SELECT MIN(id) FROM messages);",
    );
    let err = read_all_err(db3);
    assert!(
        err.contains("too big") || err.contains("TOOBIG") || err.contains("too large"),
        "{err}"
    );
}
