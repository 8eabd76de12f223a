//! The redb store: the conformance suite, and what it does with bad files.

use std::path::PathBuf;

use orchestrator_redb::{FORMAT_VERSION, RedbStore};
use orchestrator_store::{Op, Store, StoreError, Table, conformance};
use redb::{ReadableDatabase, ReadableTable};

/// A fresh directory for one test, removed when the test ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Scratch {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

fn dir(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("orchestrator-redb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

#[test]
fn the_redb_store_passes_the_conformance_suite() {
    let scratch = dir("conformance");
    let path = scratch.join("jobs.redb");
    let cases = conformance::run(|| RedbStore::open(&path));
    assert_eq!(cases, conformance::CASES);
}

#[test]
fn a_file_open_twice_is_refused_with_a_clear_error_and_nothing_changes() {
    let scratch = dir("twice");
    let path = scratch.join("jobs.redb");
    let first = RedbStore::open(&path).unwrap();
    first
        .commit(&[Op::put(Table::Jobs, b"k".to_vec(), b"v".to_vec())])
        .wait()
        .unwrap();
    let second = RedbStore::open(&path).unwrap_err();
    assert!(matches!(second, StoreError::Locked { .. }), "{second:?}");
    assert!(
        second.to_string().contains("open in another process"),
        "{second}"
    );
    // The first keeps working.
    assert_eq!(first.get(Table::Jobs, b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn a_file_of_a_newer_format_is_refused_and_left_as_it_was() {
    let scratch = dir("newer");
    let path = scratch.join("jobs.redb");
    {
        // Written by "a newer version": the same layout with a higher version number.
        let db = redb::Database::create(&path).unwrap();
        let write = db.begin_write().unwrap();
        {
            let mut meta = write
                .open_table(redb::TableDefinition::<&str, u32>::new("orchestrator.meta"))
                .unwrap();
            meta.insert("format", FORMAT_VERSION + 1).unwrap();
            let mut jobs = write
                .open_table(redb::TableDefinition::<&[u8], &[u8]>::new(
                    "orchestrator.jobs",
                ))
                .unwrap();
            jobs.insert(b"k".as_slice(), b"newer".as_slice()).unwrap();
        }
        write.commit().unwrap();
    }
    let error = RedbStore::open(&path).unwrap_err();
    assert_eq!(
        error,
        StoreError::NewerFormat {
            path: path.display().to_string(),
            found: FORMAT_VERSION + 1,
            supported: FORMAT_VERSION,
        }
    );
    assert!(error.to_string().contains("upgrade the program"), "{error}");
    // The newer version's data is as it was (redb itself may touch its own header).
    let db = redb::Database::create(&path).unwrap();
    let read = db.begin_read().unwrap();
    let meta = read
        .open_table(redb::TableDefinition::<&str, u32>::new("orchestrator.meta"))
        .unwrap();
    assert_eq!(
        meta.get("format").unwrap().unwrap().value(),
        FORMAT_VERSION + 1
    );
    let jobs = read
        .open_table(redb::TableDefinition::<&[u8], &[u8]>::new(
            "orchestrator.jobs",
        ))
        .unwrap();
    assert_eq!(
        jobs.get(b"k".as_slice()).unwrap().unwrap().value(),
        b"newer"
    );
}

#[test]
fn a_file_that_is_not_a_store_is_an_error_not_a_panic() {
    let dir = dir("garbage");
    for (name, bytes) in [
        (
            "text.redb",
            b"this is not a database at all, just some text".repeat(100),
        ),
        ("zeros.redb", vec![0u8; 8192]),
        ("short.redb", vec![1u8; 3]),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let error = RedbStore::open(&path).unwrap_err();
        assert!(
            matches!(error, StoreError::Corrupt { .. } | StoreError::Other(_)),
            "{name}: {error:?}"
        );
        assert!(error.to_string().contains(name), "{name}: {error}");
    }
}

#[test]
fn a_damaged_store_file_is_an_error_at_open() {
    let scratch = dir("damaged");
    let path = scratch.join("jobs.redb");
    {
        let store = RedbStore::open(&path).unwrap();
        for n in 0..100u32 {
            store
                .commit(&[Op::put(Table::Jobs, n.to_be_bytes().to_vec(), vec![7; 200])])
                .wait()
                .unwrap();
        }
    }
    // Overwrite the header's magic number.
    let mut bytes = std::fs::read(&path).unwrap();
    for b in bytes.iter_mut().take(64) {
        *b ^= 0xff;
    }
    std::fs::write(&path, &bytes).unwrap();
    let error = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(error, StoreError::Corrupt { .. } | StoreError::Other(_)),
        "{error:?}"
    );
}

/// The child side of `a_second_process_gets_a_clear_error`: opens the file named by
/// `REDB_HOLD_FILE`, says so, and holds it until its stdin closes.
#[test]
fn hold_child() {
    let Ok(path) = std::env::var("REDB_HOLD_FILE") else {
        return; // not a child: nothing to do
    };
    let _store = RedbStore::open(&path).expect("the child opens the file");
    println!("holding");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn a_second_process_gets_a_clear_error() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let scratch = dir("process");
    let path = scratch.join("jobs.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hold_child", "--nocapture", "--test-threads=1"])
        .env("REDB_HOLD_FILE", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let held = lines.any(|line| line.is_ok_and(|l| l.contains("holding")));
    assert!(held, "the child did not open the file");
    let error = RedbStore::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::Locked { .. }), "{error:?}");
    assert!(
        error.to_string().contains("open in another process"),
        "{error}"
    );
    // Once the other process has let go, the file opens here.
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    child.wait().unwrap();
    RedbStore::open(&path).expect("opens after the other process exited");
}
