//! Remote execution over NATS JetStream (ours) against a hand-written JetStream work queue with
//! the same guarantees (the floor) and a bare JetStream publish (raw publish), in one run, on
//! one `nats-server` that the benchmark starts for itself.
//!
//! - **Ours**: [`RemoteJobs`] and its executor for the demo [`Square`] (which does no work) on a
//!   [`Dispatcher`] here; the workers are `orchestrator-nats-demo-worker` processes taking 64
//!   jobs at a time each.
//! - **The floor**: the same work queue written directly on async-nats, with the same request
//!   bytes. Each request is published to a work-queue stream with a `Nats-Msg-Id` (this
//!   process's random incarnation, the job and the attempt), awaiting the server's ack. Worker
//!   processes (this binary, run with `--floor-worker`) share one durable pull consumer with
//!   explicit acks; each asks for a batch the size of its free slots once half of them are free
//!   (so it never holds more jobs than free slots), and stores the outcome (with a message id,
//!   awaiting the ack) before it acknowledges the job. Here, a durable pull consumer on the
//!   outcome stream, filtered to this node, acknowledges each outcome and gives it to its waiting
//!   request once (a map of oneshot senders; a duplicate or unknown outcome is dropped and
//!   counted). Nothing else: no dispatcher, retries, deadlines, cancellation, progress, events,
//!   poison jobs or hand-back on stop.
//! - **Raw publish**: one JetStream publish of the request bytes, awaiting the ack; no worker
//!   and no outcome: the cost of storing one message.
//!
//! Measured, as medians of the samples:
//!
//! - **round trip**: one job at a time, sent and its outcome awaited; microseconds per job;
//! - **throughput**: a run of jobs with 1,000 in flight (a new one as each ends; 100 in quick
//!   mode), with 1 worker process, then with 3 (ours and the floor each have their own); jobs
//!   per second;
//! - **CPU per job**: user and system time (`/proc/<pid>/stat`) of the server, this process (the
//!   producer) and each worker process, over all the samples of a throughput cell, divided by
//!   their jobs. The clock ticks are coarse (usually 10 ms), hence the long runs.
//!
//! The ratio column is ours over the floor for round trips and CPU, and the floor over ours for
//! throughput: above 1, ours is slower or costs more.
//!
//! Run with `cargo bench -p orchestrator-nats --features demo --bench remote`. It needs
//! `nats-server` on `PATH` or at `/usr/sbin/nats-server` (Debian's); without one, it uses the
//! server at `NATS_URL` and does not measure the server's CPU. `BENCH_QUICK` (anything but `0`
//! or empty), `--quick` or a debug build runs tiny counts: a smoke test, nothing asserts on
//! timings. Every wait is bounded, and the server and the workers are killed on every way out.

use std::collections::HashMap;
use std::future::Future;
use std::io::BufRead;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{self, RetentionPolicy};
use async_nats::jetstream::{self, AckKind, Context};
use async_nats::{HeaderMap, StatusCode, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use orchestrator_core::{Dispatch, Dispatcher, JobId};
use orchestrator_nats::demo::{Square, registry};
use orchestrator_nats::{RemoteConfig, RemoteJobs};
use orchestrator_remote::{JobOutcome, JobRequest, NodeId, Registry, WireJobId};
use orchestrator_tokio::TokioRuntime;
use tokio::sync::oneshot;

/// A bound on every wait: a broken transport fails the benchmark instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(60);
/// How many jobs each worker process runs at a time, ours and the floor's.
const CONCURRENCY: usize = 64;
/// How long a worker may hold a job before the server hands it to another (ours' default).
const ACK_WAIT: Duration = Duration::from_secs(30);
/// How long a floor worker's pull request waits on the server for jobs.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
const MSG_ID: &str = "Nats-Msg-Id";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--floor-worker") {
        let (Some(url), Some(prefix), Some(concurrency)) = (
            args.get(at + 1),
            args.get(at + 2),
            args.get(at + 3).and_then(|c| c.parse().ok()),
        ) else {
            eprintln!("usage: --floor-worker <url> <prefix> <concurrency>");
            std::process::exit(2);
        };
        if let Err(e) = floor_worker(url, prefix, concurrency) {
            eprintln!("floor worker: {e}");
            std::process::exit(1);
        }
        return;
    }
    bench();
}

// ---- the plan and the measurements ----------------------------------------------------------

fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
        || std::env::args().any(|a| a == "--quick")
        || cfg!(debug_assertions)
}

/// How much each cell runs.
struct Plan {
    quick: bool,
    samples: usize,
    /// Jobs per round-trip sample.
    round_trips: u64,
    /// Jobs per throughput sample.
    jobs: u64,
    in_flight: usize,
    /// Jobs of each side before the first sample (connections, consumers, caches).
    warm_up: u64,
}

impl Plan {
    fn new() -> Self {
        if quick() {
            Self {
                quick: true,
                samples: 3,
                round_trips: 20,
                jobs: 200,
                in_flight: 100,
                warm_up: 50,
            }
        } else {
            Self {
                quick: false,
                samples: 5,
                round_trips: 2_000,
                jobs: 20_000,
                in_flight: 1_000,
                warm_up: 1_000,
            }
        }
    }
}

fn median(samples: &[f64]) -> f64 {
    let mut samples = samples.to_vec();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// User and system CPU time of process `pid` (`self` for this one), in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // The command name is in parentheses and may hold spaces: the fields follow the last `)`,
    // from the third (the state); utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat[stat.rfind(')').map_or(0, |at| at + 1)..]
        .split_whitespace()
        .collect();
    let field = |n: usize| -> u64 {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("/proc/{pid}/stat has no field {n}"))
    };
    field(14) + field(15)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if it cannot say).
fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The processes whose CPU a cell counts: the server (if it is ours), this one, its workers.
struct Probe {
    server: Option<u32>,
    workers: Vec<u32>,
}

impl Probe {
    fn read(&self) -> Vec<u64> {
        let server = self.server.map_or(0, |pid| cpu_ticks(&pid.to_string()));
        let mut ticks = vec![server, cpu_ticks("self")];
        ticks.extend(self.workers.iter().map(|pid| cpu_ticks(&pid.to_string())));
        ticks
    }
}

/// What a cell measured: one figure per sample, and the CPU ticks of its processes (server,
/// producer, each worker) over all its samples.
#[derive(Default)]
struct Cell {
    samples: Vec<f64>,
    jobs: u64,
    ticks: Vec<u64>,
}

impl Cell {
    fn median(&self) -> f64 {
        median(&self.samples)
    }

    /// CPU microseconds per job of the processes `which` (indices into `ticks`).
    fn cpu(&self, which: impl IntoIterator<Item = usize>, tick: f64) -> f64 {
        let ticks: u64 = which.into_iter().map(|i| self.ticks[i]).sum();
        ticks as f64 * 1e6 / tick / self.jobs as f64
    }

    fn server(&self, tick: f64) -> f64 {
        self.cpu([0], tick)
    }

    fn producer(&self, tick: f64) -> f64 {
        self.cpu([1], tick)
    }

    fn workers(&self, tick: f64) -> f64 {
        self.cpu(2..self.ticks.len(), tick)
    }

    fn total(&self, tick: f64) -> f64 {
        self.cpu(0..self.ticks.len(), tick)
    }

    /// One throughput sample of side `side`: `jobs` jobs, `in_flight` at a time; adds its jobs
    /// per second and the CPU of `probe`'s processes.
    async fn throughput<F, Fut>(&mut self, side: &str, probe: &Probe, plan: &Plan, job: F)
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = ()>,
    {
        let before = probe.read();
        let rate = window(side, plan.jobs, plan.in_flight, job).await;
        let after = probe.read();
        self.ticks.resize(before.len(), 0);
        for (sum, (b, a)) in self.ticks.iter_mut().zip(before.iter().zip(&after)) {
            *sum += a.saturating_sub(*b);
        }
        self.jobs += plan.jobs;
        self.samples.push(rate);
    }

    /// One round-trip sample of side `side`: `jobs` jobs one after another; adds microseconds
    /// per job.
    async fn round_trip<F, Fut>(&mut self, side: &str, jobs: u64, job: F)
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = ()>,
    {
        let start = Instant::now();
        for n in 0..jobs {
            tokio::time::timeout(PATIENCE, job(n))
                .await
                .unwrap_or_else(|_| panic!("{side}: a round trip took more than {PATIENCE:?}"));
        }
        self.samples
            .push(start.elapsed().as_secs_f64() * 1e6 / jobs as f64);
    }
}

/// Runs `jobs` jobs of side `side` with `in_flight` of them in flight (a new one as each ends);
/// returns jobs per second. A job starts when `job` is called; its future ends once it is done.
async fn window<F, Fut>(side: &str, jobs: u64, in_flight: usize, job: F) -> f64
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    async fn one_ends<Fut: Future<Output = ()>>(side: &str, running: &mut FuturesUnordered<Fut>) {
        tokio::time::timeout(PATIENCE, running.next())
            .await
            .unwrap_or_else(|_| panic!("{side}: no job ended within {PATIENCE:?}"));
    }
    let start = Instant::now();
    let mut running = FuturesUnordered::new();
    for n in 0..jobs {
        if running.len() >= in_flight {
            one_ends(side, &mut running).await;
        }
        running.push(job(n));
    }
    while !running.is_empty() {
        one_ends(side, &mut running).await;
    }
    jobs as f64 / start.elapsed().as_secs_f64()
}

// ---- processes: the server and the workers --------------------------------------------------

/// The benchmark's own `nats-server` (JetStream, a temporary store, 127.0.0.1 on a free port),
/// killed and its store removed when dropped.
struct Server {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl Server {
    /// Starts it, or returns `None` if there is no `nats-server` to start.
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let store =
            std::env::temp_dir().join(format!("orchestrator-nats-bench-{}", NodeId::random()));
        let child = ["nats-server", "/usr/sbin/nats-server"]
            .into_iter()
            .find_map(|program| {
                Command::new(program)
                    .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
                    .arg(&store)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .ok()
            })?;
        let server = Self { child, port, store };
        let since = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                since.elapsed() < PATIENCE,
                "nats-server did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A worker process: it prints `ready` once it takes jobs and stops when its standard input
/// closes. Killed if dropped before it stopped.
struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    name: String,
}

impl Process {
    /// Starts `command` and waits for its `ready`.
    fn start(mut command: Command, name: String) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take();
        let process = Self { child, stdin, name };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            for _ in lines {} // whatever else it prints, until it exits
        });
        match rx.recv_timeout(PATIENCE) {
            Ok(Some(line)) if line.trim() == "ready" => process,
            other => panic!("{} did not get ready: {other:?}", process.name),
        }
    }

    /// One of ours: the demo worker.
    fn ours(url: &str, prefix: &str, node: u64) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator-nats-demo-worker"));
        command
            .env("NATS_URL", url)
            .env("DEMO_PREFIX", prefix)
            .env("DEMO_NODE", node.to_string())
            .env("DEMO_ACK_WAIT_MS", ACK_WAIT.as_millis().to_string())
            .env("DEMO_CONCURRENCY", CONCURRENCY.to_string());
        Self::start(command, format!("ours' worker (node {node})"))
    }

    /// One of the floor's: this binary again, with `--floor-worker`.
    fn floor(url: &str, prefix: &str, number: usize) -> Self {
        let mut command = Command::new(std::env::current_exe().expect("the benchmark's path"));
        command
            .args(["--floor-worker", url, prefix])
            .arg(CONCURRENCY.to_string());
        Self::start(command, format!("the floor's worker {number}"))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes its standard input and waits for it to stop (at most [`PATIENCE`]).
    fn stop(mut self) {
        drop(self.stdin.take());
        let since = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return,
                Ok(Some(status)) => return eprintln!("{} ended with {status}", self.name),
                Ok(None) if since.elapsed() < PATIENCE => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return eprintln!("{} did not stop within {PATIENCE:?}", self.name),
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---- the floor: a JetStream work queue on async-nats alone ----------------------------------

fn floor_jobs_subject(prefix: &str) -> String {
    format!("{prefix}.jobs")
}

fn floor_outcome_subject(prefix: &str, node: u64) -> String {
    format!("{prefix}.outcomes.{node:016x}")
}

/// Creates the floor's two work-queue streams if they do not exist; returns the jobs stream.
async fn floor_streams(js: &Context, prefix: &str) -> Result<stream::Stream, String> {
    let mut jobs = None;
    for (what, subject) in [
        ("jobs", floor_jobs_subject(prefix)),
        ("outcomes", format!("{prefix}.outcomes.>")),
    ] {
        let made = js
            .get_or_create_stream(stream::Config {
                name: format!("{prefix}_{what}"),
                subjects: vec![subject],
                retention: RetentionPolicy::WorkQueue,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("the floor's {what} stream: {e}"))?;
        jobs.get_or_insert(made);
    }
    jobs.ok_or_else(|| "no jobs stream".into())
}

/// The floor's producing side: sends requests, and gives each outcome to its waiting request.
struct Floor {
    js: Context,
    registry: Arc<Registry>,
    subject: String,
    /// This process's random incarnation, in each request's message id.
    incarnation: u64,
    waiting: Mutex<HashMap<(WireJobId, u32), oneshot::Sender<JobOutcome>>>,
    given: AtomicU64,
    dropped: AtomicU64,
    undecodable: AtomicU64,
}

impl Floor {
    /// Creates the streams and the outcome consumer, and starts receiving outcomes (the task
    /// returned).
    async fn start(
        client: async_nats::Client,
        prefix: &str,
    ) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let js = jetstream::new(client);
        floor_streams(&js, prefix)
            .await
            .expect("the floor's streams");
        let registry = registry(1);
        let node = registry.node().as_u64();
        let durable = format!("outcomes-{node:016x}");
        let outcomes: PullConsumer = js
            .get_stream(format!("{prefix}_outcomes"))
            .await
            .expect("the floor's outcome stream")
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: floor_outcome_subject(prefix, node),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .expect("the floor's outcome consumer");
        let floor = Arc::new(Self {
            js,
            registry,
            subject: floor_jobs_subject(prefix),
            incarnation: NodeId::random().as_u64(),
            waiting: Mutex::new(HashMap::new()),
            given: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
        });
        let receiver = floor.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok(mut messages) = outcomes.messages().await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                while let Some(Ok(message)) = messages.next().await {
                    receiver.deliver(&message.payload);
                    // After it was given: a lost ack redelivers it, and the duplicate is dropped.
                    let _ = message.ack().await;
                }
            }
        });
        (floor, task)
    }

    /// Sends job `n` and returns its outcome's value.
    async fn run(self: Arc<Self>, n: u64) -> u64 {
        let request = self
            .registry
            .encode_job(JobId::next(), &Square::new(n, 0), 1, None)
            .expect("a request");
        let body = request.to_bytes().expect("a request's bytes");
        let key = (request.id, request.attempt);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, tx);
        let mut headers = HeaderMap::new();
        let id = format!("{:016x}/{}/{}", self.incarnation, key.0.job, key.1);
        headers.insert(MSG_ID, id.as_str());
        self.js
            .publish_with_headers(self.subject.clone(), headers, Bytes::from(body))
            .await
            .expect("the floor: published")
            .await
            .expect("the floor: stored");
        let outcome = rx.await.expect("the floor: an outcome");
        let value = outcome.result.expect("the floor: the job succeeded");
        value.as_u64().expect("the floor: a number")
    }

    /// Gives an outcome to its waiting request, or counts it as dropped.
    fn deliver(&self, payload: &[u8]) {
        let Ok(outcome) = JobOutcome::from_bytes(payload) else {
            self.undecodable.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let waiter = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(outcome.id, outcome.attempt));
        let counter = match waiter.map(|tx| tx.send(outcome)) {
            Some(Ok(())) => &self.given,
            _ => &self.dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A floor worker's slots: the jobs it runs, and those it asked the server for and has not
/// received. It never asks for more than the slots left, so it never holds a job it cannot run.
struct Slots {
    size: usize,
    running: usize,
    requested: usize,
}

impl Slots {
    /// Asks for as many jobs as there are slots left, once at least half of them are.
    async fn pull(&mut self, consumer: &PullConsumer, inbox: &Subject) -> Result<(), String> {
        let left = self.size - self.running - self.requested;
        if left >= self.size.div_ceil(2) {
            let batch = pull::BatchConfig {
                batch: left,
                expires: Some(PULL_EXPIRES),
                ..Default::default()
            };
            consumer
                .request_batch(batch, inbox.clone())
                .await
                .map_err(|e| format!("a pull request: {e}"))?;
            self.requested += left;
        }
        Ok(())
    }

    /// Accounts for a message on the inbox; `true` if it is a job (now running).
    fn received(&mut self, message: &async_nats::Message) -> Result<bool, String> {
        match message.status {
            None | Some(StatusCode::OK) => {
                self.requested = self
                    .requested
                    .checked_sub(1)
                    .ok_or("a job that was not asked for")?;
                self.running += 1;
                Ok(true)
            }
            // A pull request ended (it expired, or the server ended it): how many it did not
            // deliver.
            Some(StatusCode::TIMEOUT | StatusCode::REQUEST_TERMINATED) => {
                let left: usize = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Pending-Messages"))
                    .and_then(|v| v.as_str().parse().ok())
                    .ok_or_else(|| {
                        format!(
                            "a pull request ended without its count: {:?} {:?}",
                            message.status, message.description
                        )
                    })?;
                self.requested = self
                    .requested
                    .checked_sub(left)
                    .ok_or("a pull request ended with more jobs than were asked for")?;
                Ok(false)
            }
            Some(StatusCode::IDLE_HEARTBEAT) => Ok(false),
            Some(status) => Err(format!(
                "the server answered a pull request with {status} {:?}",
                message.description
            )),
        }
    }
}

/// A floor worker process: takes jobs until its standard input closes, then stops taking them,
/// gives back those it received but did not start, and waits for the running ones.
fn floor_worker(url: &str, prefix: &str, concurrency: usize) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client = async_nats::connect(url)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let js = jetstream::new(client.clone());
        let consumer: PullConsumer = floor_streams(&js, prefix)
            .await?
            .get_or_create_consumer(
                "workers",
                pull::Config {
                    durable_name: Some("workers".into()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("the workers' consumer: {e}"))?;
        let inbox = Subject::from(client.new_inbox());
        let mut inbound = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        let (done, mut ended) = tokio::sync::mpsc::unbounded_channel::<()>();
        // A thread of its own (not the runtime's blocking pool, which the runtime would wait
        // for on an early return).
        let (closed, mut stdin_closed) = oneshot::channel::<()>();
        std::thread::spawn(move || {
            for _ in std::io::stdin().lock().lines() {}
            let _ = closed.send(());
        });
        let prefix: Arc<str> = prefix.into();
        let mut slots = Slots {
            size: concurrency.max(1),
            running: 0,
            requested: 0,
        };
        slots.pull(&consumer, &inbox).await?;
        client.flush().await.map_err(|e| format!("flush: {e}"))?;
        println!("ready");
        loop {
            tokio::select! {
                message = inbound.next() => {
                    let message = message.ok_or("the inbox subscription ended")?;
                    if slots.received(&message)? {
                        let message = jetstream::Message { message, context: js.clone() };
                        let (js, prefix, done) = (js.clone(), prefix.clone(), done.clone());
                        tokio::spawn(async move {
                            work(&js, &prefix, message).await;
                            let _ = done.send(());
                        });
                    }
                }
                Some(()) = ended.recv() => slots.running -= 1,
                _ = &mut stdin_closed => break,
            }
            slots.pull(&consumer, &inbox).await?;
        }
        inbound.drain().await.map_err(|e| format!("drain: {e}"))?;
        while let Some(message) = tokio::time::timeout(PATIENCE, inbound.next())
            .await
            .map_err(|_| "the inbox did not drain")?
        {
            if message.status.is_none() {
                let message = jetstream::Message {
                    message,
                    context: js.clone(),
                };
                let _ = message.ack_with(AckKind::Nak(None)).await;
            }
        }
        while slots.running > 0 {
            tokio::time::timeout(PATIENCE, ended.recv())
                .await
                .map_err(|_| "running jobs did not end")?;
            slots.running -= 1;
        }
        client.flush().await.map_err(|e| format!("flush: {e}"))
    })
}

/// Runs one job on a floor worker: its outcome stored, then the job acknowledged.
async fn work(js: &Context, prefix: &str, message: jetstream::Message) {
    let Some((subject, id, body)) = answer(prefix, &message) else {
        eprintln!("floor worker: an undecodable job, terminated");
        let _ = message.ack_with(AckKind::Term).await;
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, id.as_str());
    let stored = match js.publish_with_headers(subject, headers, body).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    if stored {
        let _ = message.ack().await;
    } else {
        // Not stored: the server delivers the job again.
        let _ = message.ack_with(AckKind::Nak(None)).await;
    }
}

/// The outcome of a job request: its subject, its message id (the request's, `/outcome`
/// after) and its bytes.
fn answer(prefix: &str, message: &jetstream::Message) -> Option<(String, String, Bytes)> {
    let request = JobRequest::from_bytes(&message.payload).ok()?;
    let job: Square = serde_json::from_value(request.payload).ok()?;
    let id = message.headers.as_ref()?.get(MSG_ID)?.as_str();
    let outcome = JobOutcome {
        id: request.id,
        attempt: request.attempt,
        result: Ok(serde_json::Value::from(job.n * job.n)),
    };
    Some((
        floor_outcome_subject(prefix, request.id.node.as_u64()),
        format!("{id}/outcome"),
        Bytes::from(outcome.to_bytes().ok()?),
    ))
}

// ---- the run --------------------------------------------------------------------------------

fn bench() {
    let plan = Plan::new();
    let began = Instant::now();
    let server = Server::start();
    let url = match &server {
        Some(server) => server.url(),
        None => match std::env::var("NATS_URL") {
            Ok(url) => {
                eprintln!("no nats-server to start: using {url}, without the server's CPU");
                url
            }
            Err(_) => {
                eprintln!("benches/remote.rs needs nats-server on PATH, or NATS_URL");
                std::process::exit(2);
            }
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(&plan, &url, server.as_ref().map(Server::pid)));
    drop(runtime);
    drop(server);
    println!(
        "\n{} mode, {:.1} s in all",
        if plan.quick { "quick" } else { "full" },
        began.elapsed().as_secs_f64()
    );
}

async fn run(plan: &Plan, url: &str, server: Option<u32>) {
    let tick = ticks_per_second();
    let connect = || async {
        async_nats::connect(url)
            .await
            .expect("connects to the server")
    };
    let tag = NodeId::random().as_u64();
    let (ours_prefix, floor_prefix, raw_prefix) = (
        format!("ours{tag}"),
        format!("floor{tag}"),
        format!("raw{tag}"),
    );

    // Ours.
    let config = RemoteConfig {
        prefix: ours_prefix.clone(),
        ack_wait: ACK_WAIT,
        ..RemoteConfig::default()
    };
    let remote = RemoteJobs::start(connect().await, registry(1), config)
        .await
        .expect("ours starts");
    let shop = Dispatcher::new(TokioRuntime::default());
    shop.register(remote.executor::<Square>().expect("registered"));
    let ours = |n: u64| {
        let handle = shop.dispatch(Square::new(n, 0));
        async move {
            let success = handle
                .await
                .unwrap_or_else(|e| panic!("ours: job {n} failed: {e}"));
            assert_eq!(success.value, n * n);
        }
    };

    // The floor.
    let (floor, floor_receiver) = Floor::start(connect().await, &floor_prefix).await;
    let floor_direct = |n: u64| {
        let floor = floor.clone();
        async move { assert_eq!(floor.run(n).await, n * n) }
    };
    let floor_spawned = |n: u64| {
        let task = tokio::spawn(floor.clone().run(n));
        async move { assert_eq!(task.await.expect("the floor's job"), n * n) }
    };

    // Raw publish, on a stream of its own.
    let js = jetstream::new(connect().await);
    let raw_subject = format!("{raw_prefix}.jobs");
    let raw_stream = js
        .get_or_create_stream(stream::Config {
            name: raw_prefix.clone(),
            subjects: vec![raw_subject.clone()],
            retention: RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .expect("the raw stream");
    let payload = Bytes::from(
        registry(1)
            .encode_job(JobId::next(), &Square::new(7, 0), 1, None)
            .and_then(|r| r.to_bytes())
            .expect("a request"),
    );
    let raw_direct = |_: u64| {
        let (js, subject, payload) = (js.clone(), raw_subject.clone(), payload.clone());
        async move {
            js.publish(subject, payload)
                .await
                .expect("raw: published")
                .await
                .expect("raw: stored");
        }
    };
    let raw_spawned = |n: u64| {
        let task = tokio::spawn(raw_direct(n));
        async move { task.await.expect("the raw publish") }
    };

    let mut ours_workers = vec![Process::ours(url, &ours_prefix, 2)];
    let mut floor_workers = vec![Process::floor(url, &floor_prefix, 1)];
    window("ours", plan.warm_up, plan.in_flight, ours).await;
    window("the floor", plan.warm_up, plan.in_flight, floor_spawned).await;
    window("raw publish", plan.warm_up, plan.in_flight, raw_spawned).await;

    let pids = |workers: &[Process]| Probe {
        server,
        workers: workers.iter().map(Process::pid).collect(),
    };
    let (mut ours_rt, mut floor_rt, mut raw_rt) =
        (Cell::default(), Cell::default(), Cell::default());
    let (mut ours_1, mut floor_1, mut raw_1) = (Cell::default(), Cell::default(), Cell::default());
    for _ in 0..plan.samples {
        ours_rt.round_trip("ours", plan.round_trips, ours).await;
        floor_rt
            .round_trip("the floor", plan.round_trips, floor_direct)
            .await;
        raw_rt
            .round_trip("raw publish", plan.round_trips, raw_direct)
            .await;
        ours_1
            .throughput("ours", &pids(&ours_workers), plan, ours)
            .await;
        floor_1
            .throughput("the floor", &pids(&floor_workers), plan, floor_spawned)
            .await;
        raw_1
            .throughput("raw publish", &pids(&[]), plan, raw_spawned)
            .await;
        raw_stream.purge().await.expect("the raw stream purged");
    }

    ours_workers.extend((3..=4).map(|node| Process::ours(url, &ours_prefix, node)));
    floor_workers.extend((2..=3).map(|number| Process::floor(url, &floor_prefix, number)));
    let (mut ours_3, mut floor_3) = (Cell::default(), Cell::default());
    for _ in 0..plan.samples {
        ours_3
            .throughput("ours", &pids(&ours_workers), plan, ours)
            .await;
        floor_3
            .throughput("the floor", &pids(&floor_workers), plan, floor_spawned)
            .await;
    }

    let stats = remote.stats();
    for worker in ours_workers.into_iter().chain(floor_workers) {
        worker.stop();
    }
    floor_receiver.abort();
    drop(remote);

    // The table.
    // No ratio of a figure to zero (a cell too short for a clock tick, in quick mode).
    let ratio = |a: f64, b: f64| {
        if a > 0.0 && b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "–".into()
        }
    };
    let plural = |workers: usize| if workers == 1 { "" } else { "s" };
    println!(
        "| {} samples, medians; CPU over all samples of a cell | ours | floor | raw publish | \
         ours vs floor (>1: ours slower or costlier) |",
        plan.samples
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!(
        "| round trip, 1 in flight (µs/job; ours/floor) | {:.0} | {:.0} | {:.0} | {} |",
        ours_rt.median(),
        floor_rt.median(),
        raw_rt.median(),
        ratio(ours_rt.median(), floor_rt.median())
    );
    let cells = [
        (1, &ours_1, &floor_1, Some(&raw_1)),
        (3, &ours_3, &floor_3, None),
    ];
    for (workers, ours, floor, raw) in cells {
        println!(
            "| throughput, {} in flight, {workers} worker{} (jobs/s; floor/ours) | {:.0} | {:.0} \
             | {} | {} |",
            plan.in_flight,
            plural(workers),
            ours.median(),
            floor.median(),
            raw.map_or("–".into(), |raw| format!(
                "{:.0} (no worker)",
                raw.median()
            )),
            ratio(floor.median(), ours.median())
        );
    }
    type Figure = fn(&Cell, f64) -> f64;
    for (workers, ours, floor, raw) in cells {
        let rows: [(&str, Figure); 4] = [
            ("server", Cell::server),
            ("producer", Cell::producer),
            (
                if workers == 1 {
                    "worker"
                } else {
                    "workers, summed"
                },
                Cell::workers,
            ),
            (
                if server.is_some() {
                    "total"
                } else {
                    "total but the server"
                },
                Cell::total,
            ),
        ];
        for (what, figure) in rows {
            let label = format!(
                "CPU, {workers} worker{}: {what} (µs/job; ours/floor)",
                plural(workers)
            );
            if what == "server" && server.is_none() {
                println!("| {label} | n/a | n/a | n/a | |");
                continue;
            }
            let raw = match raw {
                Some(raw) if !what.starts_with("worker") => format!("{:.1}", figure(raw, tick)),
                _ => "–".into(),
            };
            let (ours, floor) = (figure(ours, tick), figure(floor, tick));
            println!(
                "| {label} | {ours:.1} | {floor:.1} | {raw} | {} |",
                ratio(ours, floor)
            );
        }
    }
    let each = |cell: &Cell| {
        (2..cell.ticks.len())
            .map(|i| format!("{:.1}", cell.cpu([i], tick)))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "\nCPU of each worker process with 3 (µs/job): ours {}; floor {}",
        each(&ours_3),
        each(&floor_3)
    );
    println!(
        "{} jobs per throughput cell ({} samples of {}), {} per round-trip cell; \
         clock tick {:.0} ms",
        plan.jobs * plan.samples as u64,
        plan.samples,
        plan.jobs,
        plan.round_trips * plan.samples as u64,
        1e3 / tick
    );
    if plan.quick {
        println!(
            "quick mode: a smoke test; its counts are too small for these figures (CPU least of \
             all, at a few clock ticks a cell) to mean anything"
        );
    }
    println!("ours: {stats:?}");
    println!(
        "floor: {} outcomes given, {} dropped (duplicate or unknown), {} undecodable",
        floor.given.load(Ordering::Relaxed),
        floor.dropped.load(Ordering::Relaxed),
        floor.undecodable.load(Ordering::Relaxed)
    );
}
