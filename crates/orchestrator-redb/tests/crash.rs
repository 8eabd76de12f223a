//! Durable jobs on a redb file, in a child process killed with SIGKILL at random (seeded)
//! moments and started again on the same file, many times; then a clean run lets every job
//! finish and the parent checks what the file and a run log say.
//!
//! The child is this test binary itself (`crash_child`, which does nothing unless
//! `CRASH_CHILD_DIR` is set). Each child opens the store, resumes what the previous one left,
//! dispatches its share of new jobs and runs them. The workload is a function of the seed, so
//! the parent knows every job that may exist:
//!
//! - quick jobs (0-5 ms of work), a third of them with a generous total timeout;
//! - flaky jobs that fail their first 1-3 attempts under a fixed `RetryPolicy` with enough
//!   retries: attempts continue across restarts and never exceed `max_retries + 1`;
//! - delayed jobs (100-600 ms) that must never start before their due time (wall clock);
//! - a few poison jobs that abort the process every time they run: they must end on the
//!   dead-letter list after exactly `POISON_AFTER` runs, and no other job may.
//!
//! What the parent checks at the end: no accepted job lost (each has its outcome, or is a
//! dead letter if it is poison), every output right, every run accounted for (a job runs
//! again only if a process died while it was unfinished), attempts and due times kept, the
//! store holding nothing else, and the file opening after every kill.
//!
//! Sizes: `CRASH_KILLS` (12), `CRASH_JOBS` (600) and `CRASH_SEED`; the figures are printed
//! (`crash: kills=...`). CI: `cargo test -p orchestrator-redb --test crash -- --nocapture`.
//! The long run: `CRASH_KILLS=200 CRASH_JOBS=10000 cargo test -p orchestrator-redb --test
//! crash -- --nocapture`.

#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext, JobHandle, RetryPolicy};
use orchestrator_durable::{Durable, End, Store, Table};
use orchestrator_redb::RedbStore;
use orchestrator_remote::{NodeId, Registry, WireJobId};
use orchestrator_tokio::TokioRuntime;
use serde::{Deserialize, Serialize};

/// The name of the child test (`--exact`).
const CHILD_TEST: &str = "crash_child";
/// Set (to the test's directory) only in a child.
const ENV_DIR: &str = "CRASH_CHILD_DIR";
const DB_FILE: &str = "jobs.redb";
const RUN_LOG: &str = "runs.log";
/// How a child's lines on stdout start (libtest writes lines of its own there).
const MARK: &str = "@crash ";
const JOB_TYPE: &str = "crash.job";
const NODE: u64 = 1;
const POISON_AFTER: u32 = 3;
const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// A hang guard only: a child that shows no progress this long fails the test.
const PATIENCE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// The seeded workload, computed alike by the parent and every child.

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64, one stream per (seed, purpose, index).
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64, index: u64) -> Self {
        Rng(splitmix(seed ^ splitmix(stream ^ splitmix(index))))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

const STREAM_POISON: u64 = 1;
const STREAM_JOB: u64 = 2;
const STREAM_BATCH: u64 = 3;
const STREAM_KILL: u64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    Quick,
    Flaky,
    Delayed,
    Poison,
}

/// What job `n` is.
#[derive(Debug, Clone, Copy)]
struct Spec {
    kind: Kind,
    work_ms: u64,
    /// It fails its attempts `1..=fail_times` (flaky jobs).
    fail_times: u32,
    max_retries: u32,
    backoff_ms: u64,
    delay_ms: u64,
    timeout: bool,
}

struct Plan {
    seed: u64,
    jobs: u64,
    poison: BTreeSet<u64>,
}

impl Plan {
    fn new(seed: u64, jobs: u64) -> Self {
        let count = (jobs / 250).max(2).min(jobs);
        let mut rng = Rng::new(seed, STREAM_POISON, 0);
        let mut poison = BTreeSet::new();
        while (poison.len() as u64) < count {
            poison.insert(rng.below(jobs));
        }
        Self { seed, jobs, poison }
    }

    fn is_poison(&self, n: u64) -> bool {
        self.poison.contains(&n)
    }

    fn spec(&self, n: u64) -> Spec {
        let mut rng = Rng::new(self.seed, STREAM_JOB, n);
        let mut spec = Spec {
            kind: Kind::Quick,
            work_ms: rng.below(6),
            fail_times: 0,
            max_retries: 0,
            backoff_ms: 0,
            delay_ms: 0,
            timeout: false,
        };
        if self.is_poison(n) {
            spec.kind = Kind::Poison;
            return spec;
        }
        match rng.below(100) {
            0..15 => {
                spec.kind = Kind::Flaky;
                spec.fail_times = rng.range(1, 3) as u32;
                spec.max_retries = spec.fail_times + rng.below(2) as u32;
                spec.backoff_ms = rng.range(10, 60);
            }
            15..30 => {
                spec.kind = Kind::Delayed;
                spec.delay_ms = rng.range(100, 600);
            }
            _ => spec.timeout = rng.below(3) == 0,
        }
        spec
    }
}

/// The output job `n` must end with.
fn expected(n: u64) -> u64 {
    splitmix(n ^ 0x00c0_ffee) >> 20
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn fmt_id(id: WireJobId) -> String {
    format!("{}:{:x}:{}", id.node.as_u64(), id.incarnation, id.job)
}

fn parse_id(text: &str) -> Option<WireJobId> {
    let mut parts = text.split(':');
    let node = parts.next()?.parse().ok()?;
    let incarnation = u64::from_str_radix(parts.next()?, 16).ok()?;
    let job = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(WireJobId {
        node: NodeId::new(node),
        incarnation,
        job,
    })
}

/// The id of a store key (node, incarnation, job; big-endian), as the engine writes them.
fn id_of_key(key: &[u8]) -> Option<WireJobId> {
    let part = |i: usize| {
        Some(u64::from_be_bytes(
            key.get(i * 8..i * 8 + 8)?.try_into().ok()?,
        ))
    };
    (key.len() == 24).then_some(())?;
    Some(WireJobId {
        node: NodeId::new(part(0)?),
        incarnation: part(1)?,
        job: part(2)?,
    })
}

#[derive(Serialize, Deserialize)]
struct CrashJob {
    n: u64,
    kind: Kind,
    work_ms: u64,
    fail_times: u32,
    /// When it may start, by the wall clock (0: at once). Set by the dispatching child before
    /// the dispatch, so it is never later than the engine's own due time.
    due_unix_ms: u64,
}

impl Job for CrashJob {
    type Output = u64;
}

// ---------------------------------------------------------------------------------------------
// The child.

/// An attempt of a flaky job that fails on purpose.
#[derive(Debug)]
struct Flaked(u32);

impl fmt::Display for Flaked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt {} fails on purpose", self.0)
    }
}

impl std::error::Error for Flaked {}

struct ChildState {
    /// The parent's number of this child.
    inc: u64,
    /// The run log, opened with O_APPEND (see [`ChildState::line`]).
    log: File,
    durable: OnceLock<Durable>,
    /// Set by a poison job: no new dispatches, so that the process can drain before it dies.
    hold: AtomicBool,
    /// Jobs (not poison) that started in this process and whose outcome is not yet durable.
    unfinished: Mutex<HashSet<WireJobId>>,
    poisons_running: AtomicUsize,
}

impl ChildState {
    /// Appends one line to the run log with a single `write` on an O_APPEND file, unbuffered.
    ///
    /// No fsync: the test kills processes, not the machine. Once `write` has returned, the
    /// line is in the kernel's page cache and survives the SIGKILL of this process; the
    /// parent reads it through the same page cache. The only line a kill can lose is one
    /// whose `write` had not happened yet, and each line is written before what it reports
    /// goes on (a start before the work, a completion after the outcome is durable), so a
    /// lost start line can only be a run that had not done anything.
    fn line(&self, text: &str) {
        (&self.log)
            .write_all(text.as_bytes())
            .expect("the run log takes a line");
    }

    fn unfinished(&self) -> std::sync::MutexGuard<'_, HashSet<WireJobId>> {
        self.unfinished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes one marked line on stdout, flushed at once (the parent reads it through a pipe; a
/// line written before a SIGKILL is in the pipe and is read).
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(format!("\n{MARK}{text}\n").as_bytes())
        .and_then(|()| stdout.flush())
        .expect("stdout");
}

struct Exec(Arc<ChildState>);

impl Executor<CrashJob> for Exec {
    type Error = Flaked;

    async fn execute(&self, job: &CrashJob, cx: JobContext) -> Result<u64, Flaked> {
        let st = &self.0;
        let durable = st.durable.get().expect("set before any job runs").clone();
        let id = durable.job_id(&cx);
        let attempt = cx.attempt();
        if job.kind != Kind::Poison {
            st.unfinished().insert(id);
        }
        st.line(&format!(
            "S {} {} {} {} {} {}\n",
            st.inc,
            job.n,
            attempt,
            fmt_id(id),
            now_ms(),
            job.due_unix_ms
        ));
        if job.kind == Kind::Poison {
            // Dies with every job of this process settled: no new dispatches, no other job
            // started and unfinished, no other job in flight. The engine cannot tell which
            // job killed a process (it counts a death against every job running then), so a
            // poison job that died beside others would count against them too; the test
            // wants those counts to be its own.
            st.poisons_running.fetch_add(1, Ordering::SeqCst);
            st.hold.store(true, Ordering::SeqCst);
            loop {
                let settled = st.unfinished().is_empty()
                    && durable.stats().in_flight <= st.poisons_running.load(Ordering::SeqCst);
                if settled {
                    std::process::abort();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        if job.work_ms > 0 {
            tokio::time::sleep(Duration::from_millis(job.work_ms)).await;
        }
        if attempt <= job.fail_times {
            st.line(&format!("F {} {} {}\n", st.inc, job.n, attempt));
            return Err(Flaked(attempt));
        }
        st.line(&format!("E {} {} {}\n", st.inc, job.n, attempt));
        Ok(expected(job.n))
    }
}

/// Waits for a job's outcome (durable once the handle resolves) and logs it.
async fn await_outcome(st: Arc<ChildState>, id: WireJobId, handle: JobHandle<u64>) {
    match handle.await {
        Ok(success) => st.line(&format!("D {} {} {}\n", st.inc, fmt_id(id), success.value)),
        Err(error) => st.line(&format!(
            "X {} {} {}\n",
            st.inc,
            fmt_id(id),
            error.to_string().replace('\n', " ")
        )),
    }
    st.unfinished().remove(&id);
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

/// The child: does nothing unless the parent started this binary with `CRASH_CHILD_DIR`.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let need = |name: &str| env_u64(name).unwrap_or_else(|| panic!("{name} is set by the parent"));
    let inc = need("CRASH_CHILD_INC");
    let from = need("CRASH_CHILD_FROM");
    let until = need("CRASH_CHILD_UNTIL");
    let final_run = need("CRASH_CHILD_FINAL") == 1;
    let plan = Plan::new(need("CRASH_SEED"), need("CRASH_JOBS"));
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(RUN_LOG))
        .expect("the run log opens");
    let st = Arc::new(ChildState {
        inc,
        log,
        durable: OnceLock::new(),
        hold: AtomicBool::new(false),
        unfinished: Mutex::new(HashSet::new()),
        poisons_running: AtomicUsize::new(0),
    });
    // The newline ends a line the previous child may have left half-written (it cannot:
    // small writes to a file are whole; but the parser would say so).
    st.line(&format!("\nI {inc}\n"));
    out("start");
    let store = match RedbStore::open(dir.join(DB_FILE)) {
        Ok(store) => store,
        Err(error) => {
            out(&format!("open-failed {error}"));
            std::process::exit(3);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(child_run(st, store, plan, from..until, final_run));
}

/// Opens the engine, resumes what the previous child left, dispatches jobs `share` and runs
/// them (until killed, or until every job is done in the final run).
async fn child_run(
    st: Arc<ChildState>,
    store: RedbStore,
    plan: Plan,
    share: std::ops::Range<u64>,
    final_run: bool,
) {
    let dispatcher = Dispatcher::new(TokioRuntime::default());
    let mut registry = Registry::new(NodeId::new(NODE));
    registry
        .register_job::<CrashJob>(JOB_TYPE)
        .expect("the job type registers");
    let opened = Durable::builder(store, Arc::new(registry))
        .register::<CrashJob, _>(Exec(st.clone()))
        .poison_after(POISON_AFTER)
        .retention(RETENTION)
        .open(&dispatcher);
    let (durable, recovery) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            out(&format!("open-failed {error}"));
            std::process::exit(3);
        }
    };
    if st.durable.set(durable.clone()).is_err() {
        unreachable!("set once");
    }
    for id in recovery.dead_lettered() {
        out(&format!("dead-at-open {}", fmt_id(*id)));
    }
    let ids = recovery.ids();
    for &id in &ids {
        out(&format!("pending {}", fmt_id(id)));
    }
    let unknown = recovery.resume();
    if !unknown.is_empty() {
        out(&format!("unknown {unknown:?}"));
        std::process::exit(5);
    }
    // On a current-thread runtime no job has run yet: every recovered handle is here.
    let mut waits = tokio::task::JoinSet::new();
    for &id in &ids {
        match durable.take_handle::<u64>(id) {
            Some(handle) => {
                waits.spawn(await_outcome(st.clone(), id, handle));
            }
            None => out(&format!("no-handle {}", fmt_id(id))),
        }
    }
    out(&format!("ready {}", ids.len()));

    let mut n = share.start;
    let mut batch = 0;
    while n < share.end {
        while st.hold.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut rng = Rng::new(plan.seed, STREAM_BATCH, (st.inc << 32) | batch);
        let size = rng.range(1, 16).min(share.end - n);
        // Said before the dispatches: a job the parent has not heard of cannot exist.
        out(&format!("dispatch {}", n + size - 1));
        let mut handles = Vec::new();
        for m in n..n + size {
            let spec = plan.spec(m);
            let due_unix_ms = if spec.delay_ms > 0 {
                now_ms() + spec.delay_ms
            } else {
                0
            };
            let mut builder = dispatcher.job(CrashJob {
                n: m,
                kind: spec.kind,
                work_ms: spec.work_ms,
                fail_times: spec.fail_times,
                due_unix_ms,
            });
            if spec.delay_ms > 0 {
                builder = builder.delay(Duration::from_millis(spec.delay_ms));
            }
            if spec.fail_times > 0 {
                builder = builder.retry(RetryPolicy::fixed(
                    spec.max_retries,
                    Duration::from_millis(spec.backoff_ms),
                ));
            }
            if spec.timeout {
                builder = builder.timeout(Duration::from_secs(3600));
            }
            let handle = builder.dispatch();
            handles.push((m, durable.wire_id(handle.id()), handle));
        }
        for (m, id, handle) in handles {
            if let Err(error) = handle.stored().await {
                out(&format!("not-stored {m} {error}"));
                std::process::exit(4);
            }
            out(&format!("accepted {m} {}", fmt_id(id)));
            waits.spawn(await_outcome(st.clone(), id, handle));
        }
        n += size;
        batch += 1;
        let pause = rng.below(6);
        if pause > 0 {
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
    out("all-dispatched");
    if !final_run {
        // Runs what it has until it is killed.
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    while let Some(joined) = waits.join_next().await {
        joined.expect("a waiting task ends");
    }
    let stats = durable.stats();
    durable.close();
    out(&format!(
        "finished in_flight={} commits={} writes={} recovered={} dead_lettered={}",
        stats.in_flight, stats.commits, stats.writes, stats.recovered, stats.dead_lettered
    ));
}

// ---------------------------------------------------------------------------------------------
// The parent: the children, the run log, the checks.

/// A child process; killed (if still running) when dropped, so a failing test leaves none.
struct ChildProc {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: Option<ThreadHandle<()>>,
}

impl ChildProc {
    fn spawn(
        dir: &Path,
        seed: u64,
        jobs: u64,
        inc: u64,
        share: std::ops::Range<u64>,
        final_run: bool,
    ) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(ENV_DIR, dir)
            .env("CRASH_SEED", seed.to_string())
            .env("CRASH_JOBS", jobs.to_string())
            .env("CRASH_CHILD_INC", inc.to_string())
            .env("CRASH_CHILD_FROM", share.start.to_string())
            .env("CRASH_CHILD_UNTIL", share.end.to_string())
            .env("CRASH_CHILD_FINAL", if final_run { "1" } else { "0" })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the child starts");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(at) = line.find(MARK)
                    && tx.send(line[at + MARK.len()..].to_owned()).is_err()
                {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// Waits for the process to end and returns its status and the lines not yet taken.
    fn wait(&mut self) -> (ExitStatus, Vec<String>) {
        let status = self.child.wait().expect("wait for the child");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the reader thread");
        }
        (status, self.lines.try_iter().collect())
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Killed,
    Aborted,
    Clean,
}

/// A line of the run log.
#[derive(Debug, Clone)]
enum Ev {
    Start {
        inc: u64,
        n: u64,
        attempt: u32,
        id: WireJobId,
        at_ms: u64,
        due_ms: u64,
    },
    Failed {
        inc: u64,
        n: u64,
        attempt: u32,
    },
    Returned {
        inc: u64,
        n: u64,
        attempt: u32,
    },
    Done {
        inc: u64,
        id: WireJobId,
        value: u64,
    },
    Error {
        inc: u64,
        id: WireJobId,
        error: String,
    },
    Incarnation(u64),
}

impl Ev {
    fn parse(line: &str) -> Option<Ev> {
        let f: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| f.get(i)?.parse::<u64>().ok();
        let id = |i: usize| parse_id(f.get(i)?);
        Some(match *f.first()? {
            "S" if f.len() == 7 => Ev::Start {
                inc: num(1)?,
                n: num(2)?,
                attempt: num(3)? as u32,
                id: id(4)?,
                at_ms: num(5)?,
                due_ms: num(6)?,
            },
            "F" if f.len() == 4 => Ev::Failed {
                inc: num(1)?,
                n: num(2)?,
                attempt: num(3)? as u32,
            },
            "E" if f.len() == 4 => Ev::Returned {
                inc: num(1)?,
                n: num(2)?,
                attempt: num(3)? as u32,
            },
            "D" if f.len() == 4 => Ev::Done {
                inc: num(1)?,
                id: id(2)?,
                value: num(3)?,
            },
            "X" if f.len() >= 3 => Ev::Error {
                inc: num(1)?,
                id: id(2)?,
                error: f[3..].join(" "),
            },
            "I" if f.len() == 2 => Ev::Incarnation(num(1)?),
            _ => return None,
        })
    }

    fn inc(&self) -> u64 {
        match *self {
            Ev::Start { inc, .. }
            | Ev::Failed { inc, .. }
            | Ev::Returned { inc, .. }
            | Ev::Done { inc, .. }
            | Ev::Error { inc, .. }
            | Ev::Incarnation(inc) => inc,
        }
    }
}

/// The run log as read so far, and what the kill decisions need: which jobs were live in
/// each child that died.
struct RunLog {
    file: File,
    offset: u64,
    partial: Vec<u8>,
    events: Vec<Ev>,
    /// Job numbers by durable id (from start lines and acceptances).
    id_to_n: HashMap<WireJobId, u64>,
    /// Jobs live in the running child: accepted, recovered or started there.
    live_here: HashSet<WireJobId>,
    started_here: HashSet<WireJobId>,
    /// Jobs whose outcome was durable in the running child.
    done_here: HashSet<WireJobId>,
    /// Per job: how many children died while it was live and unfinished in them. The engine
    /// counts a death against a job whose attempt's start it had written, which may be
    /// before the executor logged anything; this count is never below the engine's.
    cuts: HashMap<WireJobId, u32>,
    /// Per job: how many of those deaths came with no start line of it in that child.
    silent: HashMap<WireJobId, u32>,
    done: HashSet<WireJobId>,
}

impl RunLog {
    fn new(path: &Path) -> Self {
        Self {
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(path)
                .expect("the run log"),
            offset: 0,
            partial: Vec::new(),
            events: Vec::new(),
            id_to_n: HashMap::new(),
            live_here: HashSet::new(),
            started_here: HashSet::new(),
            done_here: HashSet::new(),
            cuts: HashMap::new(),
            silent: HashMap::new(),
            done: HashSet::new(),
        }
    }

    fn name(&mut self, id: WireJobId, n: u64) {
        if let Some(old) = self.id_to_n.insert(id, n) {
            assert_eq!(old, n, "durable id {} names jobs {old} and {n}", fmt_id(id));
        }
    }

    /// Reads the lines written since the last call (of child `inc`); returns whether any.
    fn tail(&mut self, inc: u64) -> bool {
        self.file.seek(SeekFrom::Start(self.offset)).expect("seek");
        let mut bytes = Vec::new();
        self.file.read_to_end(&mut bytes).expect("read the run log");
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return !bytes.is_empty();
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        for line in String::from_utf8(complete).expect("utf-8").lines() {
            if line.is_empty() {
                continue;
            }
            let ev = Ev::parse(line).unwrap_or_else(|| panic!("a torn run-log line: {line:?}"));
            assert_eq!(
                ev.inc(),
                inc,
                "a line of another child than the running one: {line}"
            );
            match ev {
                Ev::Start { n, id, .. } => {
                    self.name(id, n);
                    self.started_here.insert(id);
                    self.live_here.insert(id);
                }
                Ev::Done { id, .. } => {
                    assert!(
                        self.started_here.contains(&id),
                        "job {} finished here, never started here",
                        fmt_id(id)
                    );
                    self.done_here.insert(id);
                    self.done.insert(id);
                }
                _ => {}
            }
            self.events.push(ev);
        }
        !bytes.is_empty()
    }

    /// The child died: the jobs live in it and unfinished were cut.
    fn child_died(&mut self) {
        for &id in self.live_here.difference(&self.done_here) {
            *self.cuts.entry(id).or_default() += 1;
            if !self.started_here.contains(&id) {
                *self.silent.entry(id).or_default() += 1;
            }
        }
        self.child_ended_cleanly();
    }

    fn child_ended_cleanly(&mut self) {
        self.live_here.clear();
        self.started_here.clear();
        self.done_here.clear();
    }

    /// A job (not poison) that one more death could make the engine dead-letter: cut
    /// `POISON_AFTER - 1` times, and unfinished (`pending`: the jobs the running child
    /// recovered, once it has said them all; a cut job it did not recover had its outcome
    /// stored before the death).
    fn at_risk(&self, plan: &Plan, pending: Option<&HashSet<WireJobId>>) -> Option<WireJobId> {
        self.cuts
            .iter()
            .find(|&(id, &cuts)| {
                cuts + 1 >= POISON_AFTER
                    && !self.done.contains(id)
                    && !self.id_to_n.get(id).is_some_and(|&n| plan.is_poison(n))
                    && pending.is_none_or(|pending| pending.contains(id))
            })
            .map(|(&id, _)| id)
    }
}

/// When to kill a child.
#[derive(Debug, Clone, Copy)]
enum KillPlan {
    /// After `accepts` acceptances (or, if it runs out of jobs first, `idle_ms` after that),
    /// then `extra_ms`.
    Accepts {
        accepts: u64,
        extra_ms: u64,
        idle_ms: u64,
    },
    /// `after_ms` after the start (maybe while it opens the file or recovers).
    Time { after_ms: u64 },
}

struct Parent {
    dir: PathBuf,
    seed: u64,
    plan: Plan,
    log: RunLog,
    inc: u64,
    /// Job numbers below this were dispatched or may have been.
    next_from: u64,
    accepted: BTreeMap<u64, WireJobId>,
    accepted_in: HashMap<u64, u64>,
    ended: Vec<Ended>,
    kills: u64,
    aborts: u64,
    /// Kills put off because a job was at risk (see [`RunLog::at_risk`]).
    postponed: u64,
    finished_line: Option<String>,
    dead_at_open: u64,
    /// The first child that dead-lettered each poison job when it opened the file.
    dead_at_open_in: HashMap<WireJobId, u64>,
    /// The jobs the running child recovered, once it has said them all (`ready`).
    pending: HashSet<WireJobId>,
    ready: bool,
    /// How many jobs the last child recovered.
    recovered_last: u64,
}

impl Parent {
    /// Takes one line of the running child.
    fn take(&mut self, line: &str, accepts: &mut u64, all_dispatched: &mut Option<Instant>) {
        let mut words = line.split(' ');
        match words.next() {
            Some("dispatch") => {
                let last: u64 = words.next().and_then(|w| w.parse().ok()).expect("a number");
                self.next_from = self.next_from.max(last + 1);
            }
            Some("accepted") => {
                let n: u64 = words.next().and_then(|w| w.parse().ok()).expect("a number");
                let id = words.next().and_then(parse_id).expect("an id");
                assert!(
                    n < self.next_from,
                    "job {n} accepted before it was announced"
                );
                assert!(
                    self.accepted.insert(n, id).is_none(),
                    "job {n} accepted twice"
                );
                self.log.name(id, n);
                self.log.live_here.insert(id);
                self.accepted_in.insert(n, self.inc);
                *accepts += 1;
            }
            Some("all-dispatched") => {
                all_dispatched.get_or_insert_with(Instant::now);
            }
            Some("finished") => self.finished_line = Some(line.to_owned()),
            Some("pending") => {
                let id = words.next().and_then(parse_id).expect("an id");
                self.pending.insert(id);
                self.log.live_here.insert(id);
            }
            Some("ready") => {
                self.ready = true;
                self.recovered_last = words.next().and_then(|w| w.parse().ok()).expect("a count");
            }
            Some("dead-at-open") => {
                let id = words.next().and_then(parse_id).expect("an id");
                match self.log.id_to_n.get(&id) {
                    Some(&n) if self.plan.is_poison(n) => {
                        self.dead_at_open += 1;
                        self.dead_at_open_in.entry(id).or_insert(self.inc);
                    }
                    n => panic!(
                        "child {} dead-lettered job {n:?} ({}) at open, not a poison job \
                         (cut {:?} times by the test's kills)",
                        self.inc,
                        fmt_id(id),
                        self.log.cuts.get(&id)
                    ),
                }
            }
            Some("start") => {}
            _ => panic!("child {} says: {line}", self.inc),
        }
    }

    /// Runs one child that dispatches the jobs from `next_from` to `until`, until it is
    /// killed (`kill` given) or ends; returns how it ended.
    fn run_child(&mut self, until: u64, kill: Option<KillPlan>) -> Ended {
        let inc = self.inc;
        let final_run = kill.is_none();
        let mut child = ChildProc::spawn(
            &self.dir,
            self.seed,
            self.plan.jobs,
            inc,
            self.next_from..until.max(self.next_from),
            final_run,
        );
        let spawned = Instant::now();
        let mut progress = Instant::now();
        let mut accepts = 0;
        let mut all_dispatched = None;
        let mut kill_at: Option<Instant> = None;
        let mut killed = false;
        let mut postponed = false;
        self.pending.clear();
        self.ready = false;
        loop {
            let first = child.lines.recv_timeout(Duration::from_millis(2)).ok();
            let lines: Vec<String> = first.into_iter().chain(child.lines.try_iter()).collect();
            for line in lines {
                progress = Instant::now();
                self.take(&line, &mut accepts, &mut all_dispatched);
            }
            if self.log.tail(inc) {
                progress = Instant::now();
            }
            if child
                .child
                .try_wait()
                .expect("the child's status")
                .is_some()
            {
                break;
            }
            assert!(
                progress.elapsed() < PATIENCE,
                "child {inc} showed no progress for {PATIENCE:?} (a hang?)"
            );
            let Some(plan) = kill else { continue };
            if kill_at.is_none() {
                kill_at = match plan {
                    KillPlan::Accepts {
                        accepts: target,
                        extra_ms,
                        idle_ms,
                    } => {
                        if accepts >= target {
                            Some(Instant::now() + Duration::from_millis(extra_ms))
                        } else {
                            all_dispatched.map(|at: Instant| at + Duration::from_millis(idle_ms))
                        }
                    }
                    KillPlan::Time { after_ms } => Some(spawned + Duration::from_millis(after_ms)),
                };
            }
            if kill_at.is_some_and(|at| Instant::now() >= at) {
                // The engine dead-letters a job once processes died in POISON_AFTER of its
                // runs, whichever job killed them: it cannot tell an innocent job killed
                // that often from a poison one. So the test does not kill a child while a job
                // that one more death would dead-letter is unfinished; it waits for it.
                let pending = self.ready.then_some(&self.pending);
                if let Some(id) = self.log.at_risk(&self.plan, pending) {
                    assert!(
                        progress.elapsed() < PATIENCE / 2,
                        "job {} ({:?}) was cut {:?} times and does not finish",
                        fmt_id(id),
                        self.log.id_to_n.get(&id),
                        self.log.cuts.get(&id)
                    );
                    postponed = true;
                    continue;
                }
                self.postponed += u64::from(postponed);
                child.child.kill().expect("SIGKILL");
                killed = true;
                break;
            }
        }
        let (status, rest) = child.wait();
        for line in rest {
            self.take(&line, &mut accepts, &mut all_dispatched);
        }
        self.log.tail(inc);
        let ended = match status.signal() {
            Some(9) if killed => Ended::Killed,
            Some(6) => Ended::Aborted,
            None if status.success() && final_run => Ended::Clean,
            _ => panic!("child {inc} ended unexpectedly: {status} (killed by the test: {killed})"),
        };
        match ended {
            Ended::Clean => self.log.child_ended_cleanly(),
            Ended::Killed => {
                self.kills += 1;
                self.log.child_died();
            }
            Ended::Aborted => {
                // Only a poison job aborts, and only after it logged its start here.
                let poison_here = self.log.events.iter().rev().any(|ev| {
                    matches!(ev, Ev::Start { inc: i, n, .. } if *i == inc && self.plan.is_poison(*n))
                });
                assert!(
                    poison_here,
                    "child {inc} aborted without a poison job running"
                );
                self.aborts += 1;
                self.log.child_died();
            }
        }
        self.ended.push(ended);
        self.inc += 1;
        ended
    }
}

/// Figures of the final checks.
#[derive(Default, Debug)]
struct Figures {
    accepted: u64,
    maybe: u64,
    maybe_existed: u64,
    lost: u64,
    ran_twice: u64,
    extra_runs: u64,
    cut: u64,
    cut_after_outcome: u64,
    cut_in_backoff: u64,
    failure_forgotten: u64,
    poisoned: u64,
    poison_silent_runs: u64,
    delayed: u64,
    delayed_across_restart: u64,
    retried: u64,
    retry_resumed: u64,
    runs: u64,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    inc: u64,
    attempt: u32,
    at_ms: u64,
    due_ms: u64,
    failed: bool,
    returned: bool,
}

#[derive(Debug, Default)]
struct JobLog {
    id: Option<WireJobId>,
    runs: Vec<Run>,
    done: Vec<(u64, u64)>,
    errors: Vec<String>,
}

#[test]
fn jobs_survive_sigkill_at_random_moments() {
    if std::env::var_os(ENV_DIR).is_some() {
        return; // a child runs `crash_child` only
    }
    let seed = env_u64("CRASH_SEED").unwrap_or(0x5eed_c4a5);
    let kills = env_u64("CRASH_KILLS").unwrap_or(12);
    let jobs = env_u64("CRASH_JOBS").unwrap_or(600).max(1);
    let dir = std::env::temp_dir().join(format!("orchestrator-redb-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the test's directory");
    let started = Instant::now();
    let plan = Plan::new(seed, jobs);
    let max_aborts = plan.poison.len() as u64 * u64::from(POISON_AFTER);
    let mut parent = Parent {
        log: RunLog::new(&dir.join(RUN_LOG)),
        dir: dir.clone(),
        seed,
        plan,
        inc: 0,
        next_from: 0,
        accepted: BTreeMap::new(),
        accepted_in: HashMap::new(),
        ended: Vec::new(),
        kills: 0,
        aborts: 0,
        postponed: 0,
        finished_line: None,
        dead_at_open: 0,
        dead_at_open_in: HashMap::new(),
        pending: HashSet::new(),
        ready: false,
        recovered_last: 0,
    };
    let share = (jobs / kills.max(1)).max(1);
    let mut k = 0;
    while parent.kills < kills {
        let mut rng = Rng::new(seed, STREAM_KILL, k);
        k += 1;
        let plan = if rng.below(5) == 0 {
            KillPlan::Time {
                after_ms: rng.below(300),
            }
        } else {
            KillPlan::Accepts {
                accepts: rng.range(1, 2 * share),
                extra_ms: rng.below(25),
                idle_ms: rng.below(400),
            }
        };
        // The jobs spread over the kills; the clean run dispatches the last share.
        let until = jobs * (parent.kills + 1) / (kills + 1);
        parent.run_child(until, Some(plan));
        assert!(
            parent.aborts <= max_aborts,
            "{} aborts: more than {} poison jobs can cause",
            parent.aborts,
            parent.plan.poison.len()
        );
    }
    // The clean run: every remaining job is dispatched and finishes (a poison job that has
    // runs left still aborts it: start it again).
    while parent.run_child(jobs, None) != Ended::Clean {
        assert!(parent.aborts <= max_aborts, "too many aborts");
    }
    let finished = parent
        .finished_line
        .clone()
        .expect("the clean run says it finished");
    let figures = check(&parent, &dir);
    let elapsed = started.elapsed();
    println!(
        "crash: kills={} jobs={} lost={} ran_twice={} poisoned={} delayed={} retried={} \
         (aborts={} children={} maybe={} existed={} cut={} cut_after_outcome={} \
         cut_in_backoff={} failure_forgotten={} extra_runs={} runs={} \
         delayed_across_restart={} retry_resumed={} postponed_kills={} dead_at_open={} \
         poison_silent_runs={}; seed={seed:#x}, {:.1} s)",
        parent.kills,
        figures.accepted,
        figures.lost,
        figures.ran_twice,
        figures.poisoned,
        figures.delayed,
        figures.retried,
        parent.aborts,
        parent.inc,
        figures.maybe,
        figures.maybe_existed,
        figures.cut,
        figures.cut_after_outcome,
        figures.cut_in_backoff,
        figures.failure_forgotten,
        figures.extra_runs,
        figures.runs,
        figures.delayed_across_restart,
        figures.retry_resumed,
        parent.postponed,
        parent.dead_at_open,
        figures.poison_silent_runs,
        elapsed.as_secs_f64(),
    );
    println!(
        "crash: the clean run recovered {} jobs, {finished}",
        parent.recovered_last
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An executor for the checking process: no job may run there.
struct NeverRuns;

impl Executor<CrashJob> for NeverRuns {
    type Error = Flaked;

    async fn execute(&self, job: &CrashJob, _: JobContext) -> Result<u64, Flaked> {
        panic!("job {} ran in the checking process", job.n)
    }
}

/// Checks the file against the run log and the acceptances; panics with every failure.
fn check(parent: &Parent, dir: &Path) -> Figures {
    let plan = &parent.plan;
    let mut failures: Vec<String> = Vec::new();
    let mut fail = |text: String| failures.push(text);
    let mut fig = Figures::default();

    // The run log, per job.
    let mut logs: BTreeMap<u64, JobLog> = BTreeMap::new();
    for ev in &parent.log.events {
        match ev {
            Ev::Start {
                inc,
                n,
                attempt,
                id,
                at_ms,
                due_ms,
            } => {
                let log = logs.entry(*n).or_default();
                if log.id.is_some_and(|old| old != *id) {
                    fail(format!("job {n} ran under two durable ids"));
                }
                log.id = Some(*id);
                log.runs.push(Run {
                    inc: *inc,
                    attempt: *attempt,
                    at_ms: *at_ms,
                    due_ms: *due_ms,
                    failed: false,
                    returned: false,
                });
            }
            Ev::Failed { inc, n, attempt } | Ev::Returned { inc, n, attempt } => {
                let run = logs
                    .get_mut(n)
                    .and_then(|log| log.runs.last_mut())
                    .filter(|run| run.inc == *inc && run.attempt == *attempt);
                match run {
                    Some(run) => {
                        run.failed = matches!(ev, Ev::Failed { .. });
                        run.returned = matches!(ev, Ev::Returned { .. });
                    }
                    None => fail(format!(
                        "job {n}: an end of attempt {attempt} it did not start"
                    )),
                }
            }
            Ev::Done { inc, id, value } => {
                let n = parent.log.id_to_n[id];
                logs.entry(n).or_default().done.push((*inc, *value));
            }
            Ev::Error { id, error, .. } => {
                let n = parent.log.id_to_n[id];
                logs.entry(n).or_default().errors.push(error.clone());
            }
            Ev::Incarnation(_) => {}
        }
    }

    // What the file holds, read raw.
    let path = dir.join(DB_FILE);
    let keys = |store: &RedbStore, table: Table| -> BTreeSet<WireJobId> {
        store
            .scan(table)
            .expect("scan")
            .into_iter()
            .map(|(k, _)| id_of_key(&k).expect("a job key"))
            .collect()
    };
    let (jobs_table, attempts_table, dead_table, outcomes_table, expiry_count) = {
        let store = RedbStore::open(&path).expect("the file opens after the last run");
        (
            keys(&store, Table::Jobs),
            keys(&store, Table::Attempts),
            keys(&store, Table::Dead),
            keys(&store, Table::Outcomes),
            store.scan(Table::Expiry).expect("scan").len(),
        )
    };

    // What the engine says.
    let dispatcher = Dispatcher::new(TokioRuntime::default());
    let mut registry = Registry::new(NodeId::new(NODE));
    registry
        .register_job::<CrashJob>(JOB_TYPE)
        .expect("registers");
    let (durable, recovery) = Durable::builder(
        RedbStore::open(&path).expect("the file opens"),
        Arc::new(registry),
    )
    .register::<CrashJob, _>(NeverRuns)
    .poison_after(POISON_AFTER)
    .retention(RETENTION)
    .open(&dispatcher)
    .expect("the engine opens the file");
    if !recovery.is_empty() || !recovery.dead_lettered().is_empty() {
        let text = format!("jobs left after the clean run: {recovery:?}");
        std::mem::forget(recovery); // dropping it would run them
        panic!("{text}");
    }
    drop(recovery);
    let letters: BTreeMap<WireJobId, _> = durable
        .dead_letters()
        .expect("the dead letters")
        .into_iter()
        .map(|l| (l.id, l))
        .collect();

    let mut poison_ids = BTreeSet::new();
    let mut finished_ids = BTreeSet::new();
    for n in 0..parent.next_from {
        let spec = plan.spec(n);
        let accepted = parent.accepted.get(&n).copied();
        let empty = JobLog::default();
        let log = logs.get(&n).unwrap_or(&empty);
        if accepted.is_some() {
            fig.accepted += 1;
        } else {
            fig.maybe += 1;
        }
        let Some(id) = log.id.or(accepted) else {
            continue; // announced, never accepted, never ran: it does not exist
        };
        if accepted.is_none() {
            fig.maybe_existed += 1;
        }
        if accepted.is_some_and(|a| a != id) {
            fail(format!(
                "job {n} ran under another durable id than it was accepted with"
            ));
        }
        fig.runs += log.runs.len() as u64;
        if log.runs.is_empty() {
            fail(format!("job {n} was accepted and never ran"));
            fig.lost += 1;
            continue;
        }
        if log.runs[0].attempt != 1 {
            fail(format!(
                "job {n}: its first run was attempt {}",
                log.runs[0].attempt
            ));
        }
        for run in &log.runs {
            if run.at_ms < run.due_ms {
                fail(format!(
                    "job {n} started {} ms before it was due (child {})",
                    run.due_ms - run.at_ms,
                    run.inc
                ));
            }
        }
        if !log.errors.is_empty() {
            fail(format!("job {n} ended in error: {:?}", log.errors));
        }
        let outcome = durable.outcome(id).expect("read an outcome");
        let letter = letters.get(&id);

        if spec.kind == Kind::Poison {
            poison_ids.insert(id);
            // The engine counts a run from the write of its start, which comes before the
            // executor's start line: a child can die in between (a silent run).
            let runs = log.runs.len() as u32;
            let silent = parent.log.silent.get(&id).copied().unwrap_or(0);
            let incs: BTreeSet<u64> = log.runs.iter().map(|r| r.inc).collect();
            if runs > POISON_AFTER || runs + silent < POISON_AFTER || incs.len() != log.runs.len() {
                fail(format!(
                    "poison job {n} ran {runs} times ({silent} deaths in children where it \
                     logged no start): {:?}",
                    log.runs
                ));
            }
            fig.poison_silent_runs += u64::from(POISON_AFTER - runs.min(POISON_AFTER));
            if let Some(&dead) = parent.dead_at_open_in.get(&id)
                && log.runs.iter().any(|r| r.inc >= dead)
            {
                fail(format!(
                    "poison job {n} ran after child {dead} dead-lettered it"
                ));
            }
            if log.runs.iter().any(|r| r.failed || r.returned) || !log.done.is_empty() {
                fail(format!("poison job {n} ended a run"));
            }
            match letter {
                Some(letter) => {
                    fig.poisoned += 1;
                    if letter.starts != POISON_AFTER || !letter.reason.contains("died") {
                        fail(format!(
                            "poison job {n}: its dead letter says {} starts: {}",
                            letter.starts, letter.reason
                        ));
                    }
                }
                None => {
                    fail(format!("poison job {n} is not a dead letter"));
                    fig.lost += 1;
                }
            }
            if outcome.is_some() {
                fail(format!("poison job {n} has an outcome"));
            }
            continue;
        }

        finished_ids.insert(id);
        if letter.is_some() {
            fail(format!(
                "job {n} ({:?}) was dead-lettered: runs {:?}, cut {:?} times",
                spec.kind,
                log.runs,
                parent.log.cuts.get(&id)
            ));
        }
        match outcome
            .as_ref()
            .map(|o| (&o.end, o.output::<u64>(), &o.job_type))
        {
            Some((End::Succeeded { .. }, Some(Ok(value)), job_type)) => {
                if value != expected(n) || job_type != JOB_TYPE {
                    fail(format!(
                        "job {n}: output {value} of {job_type}, not {}",
                        expected(n)
                    ));
                }
            }
            Some((end, ..)) => fail(format!("job {n} ended {end:?}")),
            None => {
                fail(format!(
                    "job {n} was lost: no outcome (runs {:?})",
                    log.runs
                ));
                fig.lost += 1;
            }
        }

        // Every run accounted for.
        match spec.kind {
            Kind::Flaky => fig.retried += 1,
            Kind::Delayed => {
                fig.delayed += 1;
                if parent
                    .accepted_in
                    .get(&n)
                    .is_some_and(|&i| log.runs[0].inc > i)
                {
                    fig.delayed_across_restart += 1;
                }
            }
            _ => {}
        }
        let last_attempt = spec.fail_times + 1;
        let mut repeats = 0u64;
        let mut was_cut = false;
        let mut resumed = false;
        for pair in log.runs.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.inc == b.inc {
                // Within one child: the next attempt after a failure, nothing else.
                if !a.failed || b.attempt != a.attempt + 1 {
                    fail(format!(
                        "job {n} ran again in child {} without a retry: {a:?} {b:?}",
                        a.inc
                    ));
                }
                continue;
            }
            // Across children: `a` was the last run in its child, which died before the
            // job's outcome was durable.
            was_cut = true;
            if log.done.iter().any(|&(inc, _)| inc == a.inc) {
                fail(format!(
                    "job {n} ran again after its outcome was durable (child {})",
                    a.inc
                ));
            }
            if parent.ended[a.inc as usize] == Ended::Clean {
                fail(format!(
                    "job {n} ran again after child {} ended cleanly",
                    a.inc
                ));
            }
            if a.failed {
                fig.cut_in_backoff += 1;
                if b.attempt == a.attempt {
                    // The failure was not durable yet when the child died.
                    fig.failure_forgotten += 1;
                    repeats += 1;
                } else if b.attempt != a.attempt + 1 {
                    fail(format!(
                        "job {n}: attempt {} after a failed {}",
                        b.attempt, a.attempt
                    ));
                }
            } else if b.attempt == a.attempt {
                repeats += 1; // the run that was cut runs again, as the same attempt
            } else {
                fail(format!(
                    "job {n}: attempt {} after an unfinished {}",
                    b.attempt, a.attempt
                ));
            }
            if b.attempt > 1 {
                resumed = true;
            }
        }
        for run in &log.runs {
            if run.attempt > spec.max_retries.max(spec.fail_times) + 1 {
                fail(format!("job {n}: attempt {} past its policy", run.attempt));
            }
        }
        let last = log.runs[log.runs.len() - 1];
        if !last.returned || last.attempt != last_attempt {
            fail(format!(
                "job {n}: its last run {last:?} was not attempt {last_attempt} returning"
            ));
        }
        match log.done.as_slice() {
            [(inc, value)] => {
                if *inc != last.inc || *value != expected(n) {
                    fail(format!("job {n} finished in child {inc} with {value}"));
                }
            }
            [] => {
                // The child died after the outcome was durable and before it said so.
                was_cut = true;
                fig.cut_after_outcome += 1;
                if parent.ended[last.inc as usize] == Ended::Clean {
                    fail(format!("job {n} did not finish in the clean run"));
                }
            }
            more => fail(format!("job {n} finished {} times", more.len())),
        }
        let runs = log.runs.len() as u64;
        let extra = runs.saturating_sub(u64::from(last_attempt));
        if extra != repeats {
            fail(format!(
                "job {n}: {runs} runs, {extra} more than {last_attempt}, {repeats} explained by deaths"
            ));
        }
        if extra > 0 {
            fig.ran_twice += 1;
            fig.extra_runs += extra;
        }
        if resumed {
            fig.retry_resumed += 1;
        }
        if was_cut {
            fig.cut += 1;
        }
    }

    // Nothing else in the file.
    if dead_table != poison_ids || jobs_table != poison_ids || attempts_table != poison_ids {
        fail(format!(
            "the file holds other jobs than the poison ones: jobs {}, attempts {}, dead {}, \
             poison {}",
            jobs_table.len(),
            attempts_table.len(),
            dead_table.len(),
            poison_ids.len()
        ));
    }
    if outcomes_table != finished_ids || expiry_count != outcomes_table.len() {
        fail(format!(
            "{} outcomes ({} expiry keys) for {} finished jobs",
            outcomes_table.len(),
            expiry_count,
            finished_ids.len()
        ));
    }
    if letters.keys().copied().collect::<BTreeSet<_>>() != poison_ids {
        fail(format!(
            "{} dead letters for {} poison jobs",
            letters.len(),
            poison_ids.len()
        ));
    }
    durable.close();
    assert!(
        failures.is_empty(),
        "{} failures ({fig:?}):\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    fig
}

/// `Durable::close` lets go of the store, so the file can be opened again in this process,
/// and dropping the `Durable` and the dispatcher frees everything. (A defect found by this
/// test: the engine's shared state held the dispatcher, whose registered journals held the
/// shared state, a cycle that kept the open file forever.)
#[test]
fn close_releases_the_file() {
    let dir = std::env::temp_dir().join(format!("orchestrator-redb-close-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a directory");
    let path = dir.join(DB_FILE);
    let dispatcher = Dispatcher::new(TokioRuntime::default());
    let mut registry = Registry::new(NodeId::new(NODE));
    registry
        .register_job::<CrashJob>(JOB_TYPE)
        .expect("registers");
    let (durable, recovery) = Durable::builder(
        RedbStore::open(&path).expect("a new file"),
        Arc::new(registry),
    )
    .register::<CrashJob, _>(NeverRuns)
    .open(&dispatcher)
    .expect("opens");
    drop(recovery);
    durable.close();
    let after_close = RedbStore::open(&path).map(drop);
    drop(durable);
    drop(dispatcher);
    let after_drops = RedbStore::open(&path).map(drop);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        (after_close, after_drops),
        (Ok(()), Ok(())),
        "the file is still locked after close (and after dropping the Durable and the \
         dispatcher)"
    );
}
