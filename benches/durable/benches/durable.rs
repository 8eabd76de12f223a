//! Durable jobs: orchestrator-durable on redb (ours) against a hand-written redb loop doing the
//! same writes with the same batching (the floor), effectum and apalis-sqlite, in one run, on
//! one machine. Every cell runs in a fresh process of its own, on a fresh file.
//!
//! - **Ours**: a [`Dispatcher`] on the tokio multi-thread runtime, the no-op job type made
//!   durable by [`Durable`] on a [`RedbStore`] (retention one hour: nothing expires during a
//!   run). A client dispatches, awaits [`JobHandle::stored`](orchestrator_core::JobHandle),
//!   then the handle.
//! - **The floor**: the same writes, hand-written on the same redb: one writer thread takes
//!   everything queued (up to the same 16,384 writes) and commits it in one write transaction
//!   (immediate durability, as ours), then tells each waiter (a tokio oneshot). Per job, in
//!   the client's task: put the job's JSON record in the jobs table (a 24-byte key), wait for
//!   the commit ("stored"); put a 12-byte attempt counter, wait; run the no-op; delete the job
//!   and its counter, put the outcome's JSON record and a 32-byte expiry key, wait ("outcome").
//!   The records mimic ours' fields and sizes (printed). Nothing else: no dispatcher, task,
//!   retries, deadlines, cancellation, events, recovery or compaction.
//! - **floor+task** (a diagnostic, not the floor): the floor with each job's attempt and outcome
//!   in a tokio task of its own that answers the client through a oneshot, as a dispatcher runs
//!   a job: what a task per job costs.
//! - **effectum** and **apalis-sqlite**: their own runners (`peers/*`, separate cargo projects:
//!   their two SQLite bindings cannot be linked into one binary); see their sources for what
//!   "stored" and "outcome" mean there.
//!
//! Each cell is a closed loop (`common/cell.rs`): 1 or 1,000 clients, each submitting a job and
//! waiting for its outcome before the next, for a number of jobs or seconds, after a warm-up.
//! Measured: throughput (jobs per second, end to end: the outcome durable), the latency from
//! submission to "stored" and to the outcome (p50/p99), CPU time per job. Samples of all cells
//! are interleaved; the tables show medians (throughput: median and range).
//!
//! Then: fsyncs per job of each system (`strace -f -c -e trace=fsync,fdatasync` over a run of
//! N jobs, less a run of none); ours' memory and file size over 1,000,000 jobs
//! (`/proc/self/status` and the file's size, sampled every second) three ways: as fast as it
//! goes with a one-second retention, paced below the compaction's cap with the same retention,
//! and as fast as it goes keeping no outcomes; and, with `DURABLE_BENCH_CALLGRIND=1`,
//! instructions per job under callgrind. The figures of a full run and what they mean:
//! `docs/durability-benchmark.md`.
//!
//! Run with `cargo bench --manifest-path benches/durable/Cargo.toml` (it builds the peers with
//! cargo first). `BENCH_QUICK=1`, `--quick` or a debug build runs tiny counts: a smoke test
//! whose figures mean nothing (the peers' runners are then built unoptimised).
//! `DURABLE_BENCH_PEERS=0` leaves the peers out.

#[path = "../common/cell.rs"]
mod cell;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext};
use orchestrator_durable::{Commit, Durable, MemoryStore, Op, Store, StoreError, Table};
use orchestrator_redb::RedbStore;
use orchestrator_remote::{NodeId, Registry};
use orchestrator_tokio::TokioRuntime;
use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

// ---- the job --------------------------------------------------------------------------------

/// The no-op job (its number, so that its payload is not empty, as the peers').
#[derive(Serialize, Deserialize)]
struct Noop {
    n: u64,
}

impl Job for Noop {
    type Output = ();
}

struct NoopExecutor;

impl Executor<Noop> for NoopExecutor {
    type Error = std::convert::Infallible;
    async fn execute(&self, job: &Noop, _: JobContext) -> Result<(), Self::Error> {
        std::hint::black_box(job.n);
        Ok(())
    }
}

fn registry() -> Arc<Registry> {
    let mut registry = Registry::new(NodeId::new(1));
    registry
        .register_job::<Noop>("bench.noop")
        .expect("a wire name");
    Arc::new(registry)
}

// ---- ours -----------------------------------------------------------------------------------

fn run_ours(plan: &cell::Plan) {
    let rt = cell::runtime();
    rt.block_on(async {
        let dispatcher = Dispatcher::new(TokioRuntime::default());
        let store = RedbStore::open(plan.dir.join("ours.redb")).expect("the store");
        let (durable, recovery) = Durable::builder(store, registry())
            .register::<Noop, _>(NoopExecutor)
            .retention(Duration::from_secs(3600))
            .open(&dispatcher)
            .expect("durable jobs");
        drop(recovery.resume());
        let job = {
            let dispatcher = dispatcher.clone();
            move |n: u64| {
                let dispatcher = dispatcher.clone();
                async move {
                    let start = Instant::now();
                    let handle = dispatcher.dispatch(Noop { n });
                    handle.stored().await.expect("stored");
                    let stored = Instant::now();
                    handle.await.expect("the no-op succeeds");
                    Some(cell::Sample::of(start, stored, Instant::now()))
                }
            }
        };
        let stats_of = durable.clone();
        cell::run_cell("ours", plan, job, move |_| {
            let s = stats_of.stats();
            format!(
                "commits_per_job={:.3} writes_per_job={:.2}",
                s.commits as f64 / s.accepted.max(1) as f64,
                s.writes as f64 / s.accepted.max(1) as f64
            )
        })
        .await;
        durable.close();
    });
}

// ---- the floor ------------------------------------------------------------------------------

type Bytes = TableDefinition<'static, &'static [u8], &'static [u8]>;
const F_JOBS: Bytes = TableDefinition::new("floor.jobs");
const F_ATTEMPTS: Bytes = TableDefinition::new("floor.attempts");
const F_OUTCOMES: Bytes = TableDefinition::new("floor.outcomes");
const F_EXPIRY: Bytes = TableDefinition::new("floor.expiry");
const F_TABLES: [Bytes; 4] = [F_JOBS, F_ATTEMPTS, F_OUTCOMES, F_EXPIRY];
/// At most this many writes in one commit (as ours).
const F_MAX_BATCH_OPS: usize = 16_384;

enum FOp {
    Put(usize, Vec<u8>, Vec<u8>),
    Delete(usize, Vec<u8>),
}

struct FRequest {
    ops: Vec<FOp>,
    done: oneshot::Sender<()>,
}

/// The floor's writer thread: everything queued goes in one commit.
struct FloorWriter {
    tx: Mutex<Option<std_mpsc::Sender<FRequest>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    commits: Arc<AtomicU64>,
}

impl FloorWriter {
    fn start(path: &Path) -> Self {
        let db = redb::Database::create(path).expect("the floor's file");
        let (tx, rx) = std_mpsc::channel::<FRequest>();
        let commits = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let commits = commits.clone();
            move || {
                while let Ok(first) = rx.recv() {
                    let mut ops = first.ops;
                    let mut waiters = vec![first.done];
                    while ops.len() < F_MAX_BATCH_OPS {
                        match rx.try_recv() {
                            Ok(request) => {
                                ops.extend(request.ops);
                                waiters.push(request.done);
                            }
                            Err(_) => break,
                        }
                    }
                    let write = db.begin_write().expect("a write transaction");
                    {
                        let mut tables: Vec<_> = F_TABLES
                            .iter()
                            .map(|t| write.open_table(*t).expect("a table"))
                            .collect();
                        for op in &ops {
                            match op {
                                FOp::Put(t, k, v) => {
                                    tables[*t]
                                        .insert(k.as_slice(), v.as_slice())
                                        .expect("a put");
                                }
                                FOp::Delete(t, k) => {
                                    tables[*t].remove(k.as_slice()).expect("a delete");
                                }
                            }
                        }
                    }
                    write.commit().expect("a commit");
                    commits.fetch_add(1, Ordering::Relaxed);
                    for waiter in waiters {
                        let _ = waiter.send(());
                    }
                }
            }
        });
        Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            commits,
        }
    }

    async fn commit(&self, ops: Vec<FOp>) {
        let (done, rx) = oneshot::channel();
        let sent = self
            .tx
            .lock()
            .unwrap()
            .as_ref()
            .expect("the writer is open")
            .send(FRequest { ops, done });
        sent.expect("the writer thread is alive");
        rx.await.expect("the commit succeeded");
    }

    fn close(&self) {
        drop(self.tx.lock().unwrap().take());
        if let Some(thread) = self.thread.lock().unwrap().take() {
            thread.join().expect("the writer thread");
        }
    }
}

/// The floor's records: the fields of ours' (a job's wire request and schedule; an outcome),
/// so that the values are of the same size.
#[derive(Serialize)]
struct FId {
    node: u64,
    incarnation: u64,
    job: u64,
}

#[derive(Serialize)]
struct FRequestRecord<'a> {
    id: FId,
    job_type: &'a str,
    attempt: u32,
    deadline_unix_ms: Option<u64>,
    payload: &'a Noop,
    handed_back: u32,
}

#[derive(Serialize)]
struct FJobRecord<'a> {
    version: u32,
    request: FRequestRecord<'a>,
    accepted_unix_ms: u64,
    due_unix_ms: u64,
    timeout_ms: Option<u64>,
    attempt_timeout_ms: Option<u64>,
    retry: Option<()>,
    placeholder: Option<()>,
    metadata: Vec<(String, String)>,
}

#[derive(Serialize)]
enum FEnd {
    Succeeded { output: (), source: &'static str },
}

#[derive(Serialize)]
struct FOutcome<'a> {
    id: FId,
    job_type: &'a str,
    finished_unix_ms: u64,
    end: FEnd,
}

const F_INCARNATION: u64 = 0x5eed_cafe_f00d_0001;

fn f_id(n: u64) -> FId {
    FId {
        node: 1,
        incarnation: F_INCARNATION,
        job: n,
    }
}

fn f_key(n: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(&1u64.to_be_bytes());
    k.extend_from_slice(&F_INCARNATION.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn f_job_record(job: &Noop) -> Vec<u8> {
    let now = cell::unix_ms();
    serde_json::to_vec(&FJobRecord {
        version: 1,
        request: FRequestRecord {
            id: f_id(job.n),
            job_type: "bench.noop",
            attempt: 1,
            deadline_unix_ms: None,
            payload: job,
            handed_back: 0,
        },
        accepted_unix_ms: now,
        due_unix_ms: now,
        timeout_ms: None,
        attempt_timeout_ms: None,
        retry: None,
        placeholder: None,
        metadata: Vec::new(),
    })
    .expect("a record")
}

fn f_outcome(n: u64, finished: u64) -> Vec<u8> {
    serde_json::to_vec(&FOutcome {
        id: f_id(n),
        job_type: "bench.noop",
        finished_unix_ms: finished,
        end: FEnd::Succeeded {
            output: (),
            source: "Computed",
        },
    })
    .expect("an outcome")
}

/// Starts 1, failures 0, hand-backs 0 (as ours' counters).
fn f_counters() -> Vec<u8> {
    let mut b = Vec::with_capacity(12);
    for n in [1u32, 0, 0] {
        b.extend_from_slice(&n.to_be_bytes());
    }
    b
}

async fn floor_job(writer: &FloorWriter, n: u64) -> cell::Sample {
    let start = Instant::now();
    let job = Noop { n };
    let key = f_key(n);
    writer
        .commit(vec![FOp::Put(0, key.clone(), f_job_record(&job))])
        .await;
    let stored = Instant::now();
    writer
        .commit(vec![FOp::Put(1, key.clone(), f_counters())])
        .await;
    std::hint::black_box(job.n);
    let finished = cell::unix_ms();
    let mut expiry = finished.to_be_bytes().to_vec();
    expiry.extend_from_slice(&key);
    writer
        .commit(vec![
            FOp::Delete(0, key.clone()),
            FOp::Delete(1, key.clone()),
            FOp::Put(2, key, f_outcome(n, finished)),
            FOp::Put(3, expiry, Vec::new()),
        ])
        .await;
    cell::Sample::of(start, stored, Instant::now())
}

/// The floor with the job's attempt in a task of its own, as a dispatcher runs it: the client
/// stores the job, spawns its task and waits for the task's answer (a tokio oneshot). Not the
/// floor: a diagnostic of what a task per job costs.
async fn floor_task_job(writer: Arc<FloorWriter>, n: u64) -> cell::Sample {
    let start = Instant::now();
    let job = Noop { n };
    let key = f_key(n);
    writer
        .commit(vec![FOp::Put(0, key.clone(), f_job_record(&job))])
        .await;
    let stored = Instant::now();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        writer
            .commit(vec![FOp::Put(1, key.clone(), f_counters())])
            .await;
        std::hint::black_box(job.n);
        let finished = cell::unix_ms();
        let mut expiry = finished.to_be_bytes().to_vec();
        expiry.extend_from_slice(&key);
        writer
            .commit(vec![
                FOp::Delete(0, key.clone()),
                FOp::Delete(1, key.clone()),
                FOp::Put(2, key, f_outcome(n, finished)),
                FOp::Put(3, expiry, Vec::new()),
            ])
            .await;
        let _ = tx.send(());
    });
    rx.await.expect("the job's task answers");
    cell::Sample::of(start, stored, Instant::now())
}

fn run_floor(plan: &cell::Plan, task_per_job: bool) {
    let rt = cell::runtime();
    rt.block_on(async {
        let writer = Arc::new(FloorWriter::start(&plan.dir.join("floor.redb")));
        let job = {
            let writer = writer.clone();
            move |n: u64| {
                let writer = writer.clone();
                async move {
                    Some(if task_per_job {
                        floor_task_job(writer, n).await
                    } else {
                        floor_job(&writer, n).await
                    })
                }
            }
        };
        let counted = writer.clone();
        let name = if task_per_job { "floor+task" } else { "floor" };
        cell::run_cell(name, plan, job, move |_| {
            format!(
                "commits={}",
                counted.commits.load(Ordering::Relaxed)
            )
        })
        .await;
        writer.close();
    });
}

// ---- value sizes ----------------------------------------------------------------------------

/// A store that notes the size of every value written to each table.
#[derive(Clone, Default)]
struct Sizing {
    inner: MemoryStore,
    sizes: Arc<Mutex<BTreeMap<&'static str, (usize, usize)>>>,
}

impl Store for Sizing {
    fn commit(&self, ops: &[Op]) -> Commit {
        let mut sizes = self.sizes.lock().unwrap();
        for op in ops {
            if let Op::Put { table, key, value } = op {
                sizes.insert(table.name(), (key.len(), value.len()));
            }
        }
        drop(sizes);
        self.inner.commit(ops)
    }
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn scan(&self, table: Table) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner.scan(table)
    }
    fn scan_below(
        &self,
        table: Table,
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner.scan_below(table, end, limit)
    }
}

/// The key and value sizes ours writes to each table, and the floor's.
fn sizes() -> String {
    let sizing = Sizing::default();
    let rt = cell::runtime();
    rt.block_on(async {
        let dispatcher = Dispatcher::new(TokioRuntime::default());
        let (durable, recovery) = Durable::builder(sizing.clone(), registry())
            .register::<Noop, _>(NoopExecutor)
            .open(&dispatcher)
            .expect("durable jobs");
        drop(recovery.resume());
        let handle = dispatcher.dispatch(Noop { n: 123_456 });
        handle.await.expect("the no-op succeeds");
        durable.close();
    });
    let ours = sizing.sizes.lock().unwrap().clone();
    let show = |t: &str| {
        ours.get(t)
            .map_or("-".to_owned(), |(k, v)| format!("{k} B key, {v} B value"))
    };
    let n = 123_456;
    format!(
        "| table | ours | the floor |\n| --- | --- | --- |\n\
         | jobs | {} | 24 B key, {} B value |\n\
         | attempts | {} | 24 B key, 12 B value |\n\
         | outcomes | {} | 24 B key, {} B value |\n\
         | expiry | {} | 32 B key, 0 B value |\n",
        show("jobs"),
        f_job_record(&Noop { n }).len(),
        show("attempts"),
        show("outcomes"),
        f_outcome(n, cell::unix_ms()).len(),
        show("expiry"),
    )
}

// ---- the soak: memory and file size over many jobs ------------------------------------------

fn run_soak(plan: &cell::Plan, retention: Duration, rate: Option<f64>) {
    let rt = cell::runtime();
    rt.block_on(async {
        let dispatcher = Dispatcher::new(TokioRuntime::default());
        let path = plan.dir.join("soak.redb");
        let store = RedbStore::open(&path).expect("the store");
        let (durable, recovery) = Durable::builder(store, registry())
            .register::<Noop, _>(NoopExecutor)
            .retention(retention)
            .open(&dispatcher)
            .expect("durable jobs");
        drop(recovery.resume());
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let report = {
            let durable = durable.clone();
            let done = done.clone();
            let path = path.clone();
            move || {
                let s = durable.stats();
                let file = std::fs::metadata(&path).map_or(0, |m| m.len());
                println!(
                    "SOAK t_s={:.1} jobs={} rss_kib={} file_bytes={} commits={} compacted={} kept_outcomes={}",
                    start.elapsed().as_secs_f64(),
                    done.load(Ordering::Relaxed),
                    cell::rss_kib(),
                    file,
                    s.commits,
                    s.compacted,
                    if retention.is_zero() {
                        0
                    } else {
                        s.accepted.saturating_sub(s.compacted).saturating_sub(s.in_flight as u64)
                    },
                );
            }
        };
        report();
        let monitor = tokio::spawn({
            let report = report.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    report();
                }
            }
        });
        let paced_from = tokio::time::Instant::now();
        let job = {
            let dispatcher = dispatcher.clone();
            let done = done.clone();
            move |n: u64| {
                let dispatcher = dispatcher.clone();
                let done = done.clone();
                async move {
                    if let Some(rate) = rate {
                        // Job n starts no earlier than n / rate seconds in.
                        tokio::time::sleep_until(paced_from + Duration::from_secs_f64(n as f64 / rate))
                            .await;
                    }
                    let start = Instant::now();
                    let handle = dispatcher.dispatch(Noop { n });
                    handle.stored().await.expect("stored");
                    let stored = Instant::now();
                    handle.await.expect("the no-op succeeds");
                    done.fetch_add(1, Ordering::Relaxed);
                    Some(cell::Sample::of(start, stored, Instant::now()))
                }
            }
        };
        let measured =
            cell::closed_loop_keeping(plan.in_flight, 0, plan.jobs, plan.secs, false, job).await;
        println!(
            "SOAKDONE jobs={} secs={:.1}",
            done.load(Ordering::Relaxed),
            measured.elapsed.as_secs_f64()
        );
        // Idle for a while: what is left to compact, with no new jobs.
        tokio::time::sleep(retention * 3 + Duration::from_secs(2)).await;
        monitor.abort();
        report();
        durable.close();
    });
}

// ---- the driver -----------------------------------------------------------------------------

fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
        || std::env::args().any(|a| a == "--quick")
        || cfg!(debug_assertions)
}

fn peers_wanted() -> bool {
    std::env::var("DURABLE_BENCH_PEERS").map_or(true, |v| v != "0")
}

struct Settings {
    quick: bool,
    samples: usize,
    /// Jobs and seconds of a measured loop, and of its warm-up, by jobs in flight.
    cell: fn(usize) -> (u64, f64, u64, f64),
    /// Jobs of each strace run.
    fsync_jobs: u64,
    soak_jobs: u64,
    callgrind_jobs: u64,
}

impl Settings {
    fn new() -> Self {
        if quick() {
            Self {
                quick: true,
                samples: 1,
                cell: |in_flight| {
                    if in_flight == 1 {
                        (50, 0.5, 10, 0.2)
                    } else {
                        (2_000, 0.5, 1_000, 0.3)
                    }
                },
                fsync_jobs: 100,
                soak_jobs: 5_000,
                callgrind_jobs: 20,
            }
        } else {
            Self {
                quick: false,
                samples: 3,
                cell: |in_flight| {
                    if in_flight == 1 {
                        (5_000, 5.0, 200, 1.0)
                    } else {
                        (200_000, 8.0, 5_000, 2.0)
                    }
                },
                fsync_jobs: 2_000,
                soak_jobs: 1_000_000,
                callgrind_jobs: 200,
            }
        }
    }
}

const IN_FLIGHT: [usize; 2] = [1, 1000];

/// Where the benchmark project is (its peers, its target dir).
fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn peer_binary(system: &str) -> PathBuf {
    project()
        .join(peer_profile().1)
        .join(format!("durable-bench-{system}"))
}

/// How the peers' runners are built: optimised for measuring; unoptimised in quick mode, whose
/// figures mean nothing and whose point is that everything builds and runs (a third of the
/// build time: the peers' SQLite is C).
fn peer_profile() -> (&'static [&'static str], &'static str) {
    if quick() {
        (&[], "target/peers/debug")
    } else {
        (&["--release"], "target/peers/release")
    }
}

/// Builds the peers' runners (each its own cargo project); returns the systems that built.
fn build_peers() -> Vec<&'static str> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut built = Vec::new();
    for peer in ["effectum", "apalis"] {
        let start = Instant::now();
        let status = Command::new(&cargo)
            .arg("build")
            .args(peer_profile().0)
            .args(["--quiet", "--manifest-path"])
            .arg(project().join(format!("peers/{peer}/Cargo.toml")))
            .arg("--target-dir")
            .arg(project().join("target/peers"))
            .status();
        match status {
            Ok(s) if s.success() => {
                println!(
                    "built the {peer} runner in {:.0} s",
                    start.elapsed().as_secs_f64()
                );
                built.push(peer);
            }
            Ok(s) => println!("the {peer} runner did not build ({s}): left out"),
            Err(e) => println!("cargo could not run ({e}): the {peer} runner is left out"),
        }
    }
    built
}

/// The command that runs one cell of `system`.
fn cell_command(system: &str, args: &[String]) -> Command {
    let mut cmd = match system {
        "ours" | "floor" | "floor+task" => {
            let mut c = Command::new(std::env::current_exe().expect("this binary"));
            c.args(["--run", system]);
            c
        }
        peer => Command::new(peer_binary(peer)),
    };
    cmd.args(args);
    cmd
}

fn cell_args(in_flight: usize, jobs: u64, secs: f64, warm: u64, warm_secs: f64, dir: &Path) -> Vec<String> {
    vec![
        "--in-flight".into(),
        in_flight.to_string(),
        "--jobs".into(),
        jobs.to_string(),
        "--secs".into(),
        secs.to_string(),
        "--warm-jobs".into(),
        warm.to_string(),
        "--warm-secs".into(),
        warm_secs.to_string(),
        "--dir".into(),
        dir.display().to_string(),
    ]
}

/// The `key=value` pairs of the line starting with `tag`.
fn fields(output: &str, tag: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter(|l| l.starts_with(tag))
        .flat_map(|l| l.split_whitespace().skip(1))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Runs `cmd` and returns its standard output; panics with its error output if it fails.
fn output_of(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn fmt_num(v: f64) -> String {
    let s = format!("{:.0}", v.round());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_ms(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.0}", us / 1000.0)
    } else if us >= 1_000.0 {
        format!("{:.1}", us / 1000.0)
    } else {
        format!("{:.2}", us / 1000.0)
    }
}

/// fsync and fdatasync calls in an `strace -c` summary.
fn syncs_in(summary: &str) -> u64 {
    summary
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            match cols.last() {
                Some(&"fsync") | Some(&"fdatasync") => cols.get(3)?.parse::<u64>().ok(),
                _ => None,
            }
        })
        .sum()
}

/// The 1-minute load average (`/proc/loadavg`).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn scratch() -> PathBuf {
    let dir = project()
        .join("target")
        .join(format!("scratch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

fn bench() {
    let settings = Settings::new();
    let root = scratch();
    println!("# Durable jobs: ours, the floor, effectum, apalis-sqlite\n");
    if settings.quick {
        println!(
            "QUICK MODE (BENCH_QUICK, --quick or a debug build): tiny counts, one sample. A smoke \
             test: these figures mean nothing.\n"
        );
    }
    // floor+task: the floor with each job's attempt in a task of its own, a diagnostic (not in
    // the fsync and instruction counts, which equal the floor's).
    let mut systems: Vec<&str> = vec!["ours", "floor", "floor+task"];
    if peers_wanted() {
        systems.extend(build_peers());
    } else {
        println!("DURABLE_BENCH_PEERS=0: the peers are left out");
    }
    println!("\n## Value sizes (ours measured on a store that notes them)\n");
    println!("{}", sizes());

    // The cells, samples interleaved.
    let mut results: BTreeMap<(String, usize), Vec<BTreeMap<String, String>>> = BTreeMap::new();
    let mut notes: BTreeMap<String, String> = BTreeMap::new();
    let mut log = Vec::new();
    for sample in 0..settings.samples {
        for &in_flight in &IN_FLIGHT {
            for &system in &systems {
                let (jobs, secs, warm, warm_secs) = (settings.cell)(in_flight);
                let dir = root.join(format!("{system}-{in_flight}-{sample}"));
                let args = cell_args(in_flight, jobs, secs, warm, warm_secs, &dir);
                let load = load_average();
                let out = output_of(
                    cell_command(system, &args),
                    &format!("{system}, {in_flight} in flight"),
                );
                let r = fields(&out, "RESULT");
                let line = format!(
                    "sample {sample}: {system:>8}, {in_flight:>4} in flight: {:>10} jobs/s, {} failed (load average before: {load})",
                    r.get("throughput").map_or("?", String::as_str),
                    r.get("failed").map_or("?", String::as_str),
                );
                eprintln!("{line}");
                log.push(line);
                if let Some(line) = out.lines().find(|l| l.starts_with("APALIS")) {
                    notes.insert(format!("apalis-{in_flight}"), line.to_owned());
                }
                let _ = std::fs::remove_dir_all(&dir);
                results
                    .entry((system.to_owned(), in_flight))
                    .or_default()
                    .push(r);
            }
        }
    }
    let get = |r: &BTreeMap<String, String>, k: &str| -> f64 {
        r.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
    };
    let med = |system: &str, in_flight: usize, k: &str| -> f64 {
        let v: Vec<f64> = results
            .get(&(system.to_owned(), in_flight))
            .map(|rs| rs.iter().map(|r| get(r, k)).collect())
            .unwrap_or_default();
        median(&v)
    };
    println!("\n## Throughput and latency (closed loop; medians of {} samples)\n", settings.samples);
    println!(
        "| system | in flight | jobs/s (range) | stored p50 / p99 (ms) | outcome p50 / p99 (ms) | CPU µs per job | jobs per sample | failed |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for &in_flight in &IN_FLIGHT {
        for &system in &systems {
            let rs = &results[&(system.to_owned(), in_flight)];
            let tps: Vec<f64> = rs.iter().map(|r| get(r, "throughput")).collect();
            let lo = tps.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = tps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            println!(
                "| {system} | {} | {} ({}–{}) | {} / {} | {} / {} | {:.0} | {} | {} |",
                fmt_num(in_flight as f64),
                fmt_num(median(&tps)),
                fmt_num(lo),
                fmt_num(hi),
                fmt_ms(med(system, in_flight, "stored_p50_us")),
                fmt_ms(med(system, in_flight, "stored_p99_us")),
                fmt_ms(med(system, in_flight, "outcome_p50_us")),
                fmt_ms(med(system, in_flight, "outcome_p99_us")),
                med(system, in_flight, "cpu_us_per_job"),
                fmt_num(med(system, in_flight, "jobs")),
                rs.iter().map(|r| get(r, "failed")).sum::<f64>(),
            );
        }
    }
    println!("\n## Ratios (throughput: ours over the other; latency: the other over ours)\n");
    println!("| against | in flight | throughput | outcome p50 | outcome p99 | target |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for &in_flight in &IN_FLIGHT {
        for &other in systems.iter().filter(|s| **s != "ours") {
            let ratio = med("ours", in_flight, "throughput") / med(other, in_flight, "throughput");
            let verdict = match other {
                "floor+task" => "(a diagnostic)".to_owned(),
                "floor" => format!("≥ 0.8x: {}", if ratio >= 0.8 { "met" } else { "MISSED" }),
                _ => format!("≥ 3x: {}", if ratio >= 3.0 { "met" } else { "MISSED" }),
            };
            println!(
                "| {other} | {} | {ratio:.2}x | {:.2}x | {:.2}x | {verdict} |",
                fmt_num(in_flight as f64),
                med(other, in_flight, "outcome_p50_us") / med("ours", in_flight, "outcome_p50_us"),
                med(other, in_flight, "outcome_p99_us") / med("ours", in_flight, "outcome_p99_us"),
            );
        }
    }
    println!(
        "\nours: {} commits and {} writes per job at 1 in flight, {} and {} at 1,000; the floor: {} commits in its last 1-in-flight sample",
        med("ours", 1, "commits_per_job"),
        med("ours", 1, "writes_per_job"),
        med("ours", 1000, "commits_per_job"),
        med("ours", 1000, "writes_per_job"),
        results[&("floor".to_owned(), 1)].last().and_then(|r| r.get("commits")).map_or("?", String::as_str),
    );
    for system in ["effectum"] {
        if let Some(r) = results.get(&(system.to_owned(), 1)).and_then(|r| r.last()) {
            println!(
                "{system}: journal_mode={} (effectum asks for `PRAGMA journal = wal`, not `journal_mode`), synchronous={}",
                r.get("journal_mode").map_or("?", String::as_str),
                r.get("synchronous_set_by_effectum").map_or("?", String::as_str)
            );
        }
    }
    for (k, line) in &notes {
        println!("{k}: {line}");
    }
    println!("\nEach sample (this machine is shared: the load average says how busy it was):\n");
    for line in &log {
        println!("    {line}");
    }

    let counted: Vec<&str> = systems.iter().copied().filter(|s| *s != "floor+task").collect();
    fsyncs(&settings, &counted, &root);
    soak(&settings, &root);
    if std::env::var("DURABLE_BENCH_CALLGRIND").is_ok_and(|v| v != "0") {
        callgrind(&settings, &counted, &root);
    }
    let _ = std::fs::remove_dir_all(&root);
}

fn fsyncs(settings: &Settings, systems: &[&str], root: &Path) {
    println!("\n## fsyncs per job (strace -f -c -e trace=fsync,fdatasync)\n");
    if !have("strace") {
        println!("strace is not installed (apt-get install strace): not counted");
        return;
    }
    println!(
        "Calls over a run of {} jobs less those of a run of none (opening, setting up, closing), divided by {}.\n",
        settings.fsync_jobs, settings.fsync_jobs
    );
    println!("| system | in flight | fsync + fdatasync per job | calls (N jobs / none) |");
    println!("| --- | ---: | ---: | ---: |");
    for &in_flight in &IN_FLIGHT {
        for &system in systems {
            let mut calls = Vec::new();
            for jobs in [settings.fsync_jobs, 0] {
                let dir = root.join(format!("strace-{system}-{in_flight}-{jobs}"));
                let log = root.join(format!("strace-{system}-{in_flight}-{jobs}.txt"));
                let inner = cell_command(system, &cell_args(in_flight, jobs, 600.0, 0, 0.0, &dir));
                let mut cmd = Command::new("strace");
                cmd.args(["-f", "-c", "-e", "trace=fsync,fdatasync", "-o"])
                    .arg(&log)
                    .arg(inner.get_program())
                    .args(inner.get_args());
                output_of(cmd, &format!("strace of {system}"));
                calls.push(syncs_in(&std::fs::read_to_string(&log).unwrap_or_default()));
                let _ = std::fs::remove_dir_all(&dir);
            }
            println!(
                "| {system} | {} | {:.2} | {} / {} |",
                fmt_num(in_flight as f64),
                calls[0].saturating_sub(calls[1]) as f64 / settings.fsync_jobs as f64,
                calls[0],
                calls[1]
            );
        }
    }
}

fn soak(settings: &Settings, root: &Path) {
    let jobs = settings.soak_jobs;
    let runs: [(&str, u64, Option<f64>); 3] = [
        ("as fast as it goes, retention 1 s", 1000, None),
        (
            "paced at 8,000 jobs/s (below the compaction's cap of 1,024 outcomes per 100 ms), retention 1 s",
            1000,
            Some(8000.0),
        ),
        ("as fast as it goes, retention 0 (no outcomes kept)", 0, None),
    ];
    for (label, retention_ms, rate) in runs {
        println!(
            "\n## Ours over {} jobs, 1,000 in flight, {label}\n",
            fmt_num(jobs as f64)
        );
        let dir = root.join("soak");
        let mut cmd = Command::new(std::env::current_exe().expect("this binary"));
        cmd.args(["--soak"])
            .args(cell_args(1000, jobs, 3600.0, 0, 0.0, &dir))
            .args(["--retention-ms", &retention_ms.to_string()]);
        if let Some(rate) = rate {
            cmd.args(["--rate", &rate.to_string()]);
        }
        let out = output_of(cmd, "the soak");
        let rows: Vec<BTreeMap<&str, f64>> = out
            .lines()
            .filter(|l| l.starts_with("SOAK "))
            .map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|kv| kv.split_once('='))
                    .filter_map(|(k, v)| Some((k, v.parse::<f64>().ok()?)))
                    .collect()
            })
            .collect();
        // About 12 rows: every `step`-th sample, and the last.
        let step = (rows.len() / 12).max(1);
        println!(
            "| time (s) | jobs done | RSS (MiB) | file (MiB) | commits | outcomes compacted | outcomes kept |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (i, f) in rows.iter().enumerate() {
            if i % step != 0 && i + 1 != rows.len() {
                continue;
            }
            let n = |k: &str| f.get(k).copied().unwrap_or(f64::NAN);
            println!(
                "| {:.0} | {} | {:.1} | {:.1} | {} | {} | {} |",
                n("t_s"),
                fmt_num(n("jobs")),
                n("rss_kib") / 1024.0,
                n("file_bytes") / 1048576.0,
                fmt_num(n("commits")),
                fmt_num(n("compacted")),
                fmt_num(n("kept_outcomes")),
            );
        }
        if let Some(done) = out.lines().find(|l| l.starts_with("SOAKDONE")) {
            let f = fields(done, "SOAKDONE");
            println!(
                "\n{} jobs in {} s; the last row is after {} s with no jobs.",
                fields(done, "SOAKDONE").get("jobs").map_or("?", String::as_str),
                f.get("secs").map_or("?", String::as_str),
                (retention_ms * 3 + 2000) / 1000
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn callgrind(settings: &Settings, systems: &[&str], root: &Path) {
    println!("\n## Instructions per job (callgrind: all threads, user space)\n");
    if !have("valgrind") {
        println!("valgrind is not installed: not counted");
        return;
    }
    println!("| system | in flight | instructions per job |");
    println!("| --- | ---: | ---: |");
    let jobs = settings.callgrind_jobs;
    for &in_flight in &IN_FLIGHT {
        for &system in systems {
            let mut irs = Vec::new();
            let measured = if in_flight == 1 {
                jobs
            } else {
                (jobs * 10).max(2 * in_flight as u64)
            };
            for n in [measured, 0] {
                let dir = root.join(format!("cg-{system}-{in_flight}-{n}"));
                let inner = cell_command(system, &cell_args(in_flight, n, 3600.0, 0, 0.0, &dir));
                let mut cmd = Command::new("valgrind");
                cmd.args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
                    .arg(inner.get_program())
                    .args(inner.get_args());
                let out = cmd.output().expect("valgrind runs");
                let err = String::from_utf8_lossy(&out.stderr);
                let ir = err
                    .lines()
                    .find_map(|l| l.split("Collected :").nth(1))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                irs.push((n, ir));
                let _ = std::fs::remove_dir_all(&dir);
            }
            let (n, ir_n) = irs[0];
            let ir_0 = irs[1].1;
            println!(
                "| {system} | {} | {} |",
                fmt_num(in_flight as f64),
                fmt_num(ir_n.saturating_sub(ir_0) as f64 / n as f64)
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--run") {
        let plan = cell::Plan::from_args(&args);
        std::fs::create_dir_all(&plan.dir).expect("the cell's directory");
        match args.get(at + 1).map(String::as_str) {
            Some("ours") => run_ours(&plan),
            Some("floor") => run_floor(&plan, false),
            Some("floor+task") => run_floor(&plan, true),
            other => panic!("--run ours|floor, not {other:?}"),
        }
        return;
    }
    if args.iter().any(|a| a == "--soak") {
        let plan = cell::Plan::from_args(&args);
        std::fs::create_dir_all(&plan.dir).expect("the soak's directory");
        let ms = args
            .iter()
            .position(|a| a == "--retention-ms")
            .and_then(|at| args.get(at + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        let rate = args
            .iter()
            .position(|a| a == "--rate")
            .and_then(|at| args.get(at + 1))
            .and_then(|v| v.parse().ok());
        run_soak(&plan, Duration::from_millis(ms), rate);
        return;
    }
    if args.iter().any(|a| a == "--sizes") {
        println!("{}", sizes());
        return;
    }
    bench();
}
