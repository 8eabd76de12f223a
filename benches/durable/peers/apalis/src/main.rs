//! The durable benchmark's apalis-sqlite peer: one cell (see `common/cell.rs`), run by the
//! benchmark as `durable-bench-apalis --in-flight N --jobs N --secs S ... --dir PATH`.
//!
//! - **Stored**: a client pushes its job with apalis-sqlite's own insert
//!   (`apalis_sqlite::queries::push_tasks`, what `SqliteStorage::push` runs, in a transaction
//!   of its own), reading the row's id in the same transaction (`last_insert_rowid()`); stored
//!   when the commit returns.
//! - **Run**: one apalis worker on `SqliteStorage` (`SqliteStorage::setup`'s pragmas,
//!   `lock_tasks` and `persist_results` on, as by default), with `concurrency` = the jobs in
//!   flight, woken by every insert into `Jobs` (the same update hook as apalis-sqlite's
//!   `connect_with_callback`) instead of polling.
//! - **Outcome**: apalis acknowledges a job after its handler returns (the ack goes to a
//!   channel; the backend writes acks in batches), and offers no future of that write (its
//!   `wait_for` polls the table every 500 ms). So the pool's connections carry an update hook
//!   that notes the `Jobs` rows each transaction changes and a WAL hook, which SQLite calls once
//!   a commit is written (synced, as far as the connection's `synchronous` says), that counts
//!   them. A job's row changes three times (fetched, locked, acknowledged): its outcome is
//!   durable when the third change is committed. The WAL hook replaces SQLite's default one,
//!   so it also does the default's checkpoint every 1,000 pages.

#[path = "../../../common/cell.rs"]
mod cell;

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_sqlite::{Config, SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStorage};
use futures::channel::mpsc;
use sqlx::sqlite::SqliteOperation;
use tokio::sync::oneshot;

const QUEUE: &str = "bench.noop";
/// How many times a job's row changes before its outcome is stored: fetched (`Queued`),
/// locked (`Running`), acknowledged (`Done`).
const CHANGES_TO_DONE: u8 = 3;

/// Which rows' outcomes are committed, and who waits for them.
#[derive(Default)]
struct Tracker {
    state: Mutex<TrackerState>,
}

#[derive(Default)]
struct TrackerState {
    changes: HashMap<i64, u8>,
    waiters: HashMap<i64, oneshot::Sender<Instant>>,
    /// Rows that were done before their client waited.
    early: HashMap<i64, Instant>,
    overcounted: u64,
}

impl Tracker {
    fn committed(&self, rows: &[i64], at: Instant) {
        let mut state = self.state.lock().unwrap();
        for &row in rows {
            let n = state.changes.entry(row).or_insert(0);
            *n += 1;
            match (*n).cmp(&CHANGES_TO_DONE) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    state.changes.remove(&row);
                    match state.waiters.remove(&row) {
                        Some(tx) => {
                            let _ = tx.send(at);
                        }
                        None => {
                            state.early.insert(row, at);
                        }
                    }
                }
                std::cmp::Ordering::Greater => state.overcounted += 1,
            }
        }
    }

    fn wait(&self, row: i64) -> oneshot::Receiver<Instant> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.state.lock().unwrap();
        match state.early.remove(&row) {
            Some(at) => {
                let _ = tx.send(at);
            }
            None => {
                state.waiters.insert(row, tx);
            }
        }
        rx
    }
}

/// What one connection's WAL hook sees: the rows its open transaction changed.
struct Connection {
    touched: Arc<Mutex<Vec<i64>>>,
    tracker: Arc<Tracker>,
}

/// SQLite calls this after each commit in WAL mode, once the commit is in the WAL.
unsafe extern "C" fn wal_hook(
    ctx: *mut c_void,
    db: *mut libsqlite3_sys::sqlite3,
    name: *const c_char,
    pages: c_int,
) -> c_int {
    // SAFETY: `ctx` is the leaked `Connection` of this connection (see `after_connect`).
    let conn = unsafe { &*(ctx as *const Connection) };
    let rows = std::mem::take(&mut *conn.touched.lock().unwrap());
    if !rows.is_empty() {
        conn.tracker.committed(&rows, Instant::now());
    }
    // What SQLite's default WAL hook (its auto-checkpoint, every 1,000 pages) does.
    if pages >= 1000 {
        // SAFETY: the connection and database name SQLite handed to the hook.
        unsafe { libsqlite3_sys::sqlite3_wal_checkpoint(db, name) };
    }
    libsqlite3_sys::SQLITE_OK
}

async fn noop(seq: u64) -> Result<(), BoxDynError> {
    std::hint::black_box(seq);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let plan = cell::Plan::from_args(&args);
    std::fs::create_dir_all(&plan.dir).expect("the cell's directory");
    let path = plan.dir.join("apalis.db");
    // The fallback poll of the worker (apalis-sqlite's README: a stream of wake-ups and a
    // 500 ms interval).
    let poll_ms: u64 = std::env::var("APALIS_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let rt = cell::runtime();
    rt.block_on(async {
        let tracker = Arc::new(Tracker::default());
        let (wake_tx, wake_rx) = mpsc::unbounded::<()>();
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .expect("a SQLite path")
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .after_connect({
                let tracker = tracker.clone();
                move |conn, _| {
                    let tracker = tracker.clone();
                    Box::pin(async move {
                        let mut handle = conn.lock_handle().await?;
                        let touched = Arc::new(Mutex::new(Vec::new()));
                        handle.set_update_hook({
                            let touched = touched.clone();
                            move |ev| {
                                if ev.table != "Jobs" {
                                    return;
                                }
                                if let SqliteOperation::Update = ev.operation {
                                    touched.lock().unwrap().push(ev.rowid);
                                }
                            }
                        });
                        handle.set_rollback_hook({
                            let touched = touched.clone();
                            move || touched.lock().unwrap().clear()
                        });
                        let ctx = Box::into_raw(Box::new(Connection { touched, tracker }));
                        // SAFETY: a live connection; the context is leaked, so it outlives it.
                        unsafe {
                            libsqlite3_sys::sqlite3_wal_hook(
                                handle.as_raw_handle().as_ptr(),
                                Some(wal_hook),
                                ctx.cast(),
                            );
                        }
                        Ok(())
                    })
                }
            })
            .connect_with(options)
            .await
            .expect("a pool on the file");
        SqliteStorage::setup(&pool)
            .await
            .expect("apalis-sqlite sets up");
        let backend = SqliteStorage::<u64>::new(&pool)
            .with_config(Config::default().queue(QUEUE))
            .poll_with_strategy(
                Strategy::new()
                    .stream(wake_rx)
                    .interval(Duration::from_millis(poll_ms)),
            );
        let worker = WorkerBuilder::new("bench-worker")
            .backend(backend)
            .concurrency(plan.in_flight)
            .build(noop);
        tokio::spawn(async move {
            if let Err(e) = worker.run().await {
                eprintln!("the apalis worker stopped: {e}");
            }
        });
        let job = {
            let pool = pool.clone();
            let tracker = tracker.clone();
            move |seq: u64| {
                let pool = pool.clone();
                let tracker = tracker.clone();
                let wake = wake_tx.clone();
                async move {
                    let start = Instant::now();
                    let row = match push(&pool, seq).await {
                        Ok(row) => row,
                        Err(e) => {
                            eprintln!("job {seq} was not stored: {e}");
                            return None;
                        }
                    };
                    let stored = Instant::now();
                    // The job is committed: wake the worker (apalis-sqlite's own hook fires at
                    // the insert, before the commit, when a fetch may not see the row yet).
                    let _ = wake.unbounded_send(());
                    let ended = tracker.wait(row).await.expect("the job's outcome");
                    Some(cell::Sample::of(start, stored, ended))
                }
            }
        };
        cell::run_cell("apalis", &plan, job, |_| String::new()).await;
        println!("{}", report(&pool, &tracker).await);
    });
}

/// Stores job `seq` as `SqliteStorage::push` does (apalis-sqlite's insert, in a transaction of
/// its own), and returns its row.
async fn push(pool: &SqlitePool, seq: u64) -> Result<i64, sqlx::Error> {
    let task = TaskBuilder::new(serde_json::to_vec(&seq).expect("a payload")).build();
    let mut tx = pool.begin().await?;
    apalis_sqlite::queries::push_tasks(&mut *tx, QUEUE, &[task])
        .await
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    let row: i64 = sqlx::query_scalar("SELECT last_insert_rowid()")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row)
}

/// The jobs' states in the table, and what each pooled connection's `synchronous` is
/// (`SqliteStorage::setup` sets `OFF` on the one connection that runs it; the others keep
/// SQLite's default, `FULL`).
async fn report(pool: &SqlitePool, tracker: &Tracker) -> String {
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM Jobs GROUP BY status")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap_or_default();
    let mut held = Vec::new();
    let mut sync = Vec::new();
    for _ in 0..pool.size() {
        let Ok(mut conn) = pool.acquire().await else {
            break;
        };
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap_or(-1);
        sync.push(match level {
            0 => "OFF",
            1 => "NORMAL",
            2 => "FULL",
            3 => "EXTRA",
            _ => "?",
        });
        held.push(conn);
    }
    let states: Vec<String> = states.iter().map(|(s, n)| format!("{s}:{n}")).collect();
    format!(
        "APALIS journal_mode={journal} synchronous_per_connection={} rows={} overcounted={}",
        sync.join(","),
        states.join(","),
        tracker.state.lock().unwrap().overcounted
    )
}
