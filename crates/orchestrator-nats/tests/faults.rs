//! Faults against real processes (feature `server-tests`): a worker process killed with
//! SIGKILL mid-run, the NATS server itself killed and restarted mid-run, a producer process
//! killed and started again with the same node id, a worker whose slots are all taken by long
//! jobs, and a publish acknowledgement that comes too late. Each test starts its own
//! `nats-server` (JetStream, a temporary store, 127.0.0.1 on a free port). The figures are
//! printed (`--nocapture`) for the record.

#![cfg(feature = "server-tests")]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use orchestrator_core::{Dispatch, Dispatcher, JobHandle, RetryPolicy};
use orchestrator_nats::demo::{Square, Squarer, registry};
use orchestrator_nats::{RemoteConfig, RemoteJobs, Worker};
use orchestrator_remote::NodeId;
use orchestrator_tokio::TokioRuntime;

/// A bound on every wait, so that a broken transport fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(90);
const ACK_WAIT: Duration = Duration::from_secs(2);

/// A `nats-server` of this test's own.
struct Server {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
}

impl Server {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let store = std::env::temp_dir().join(format!("orchestrator-nats-{}", NodeId::random()));
        let mut server = Self {
            child: None,
            port,
            store,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on PATH (`.ci/run` installs Debian's)");
        self.child = Some(child);
        let since = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(since.elapsed() < PATIENCE, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A demo worker process.
struct WorkerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl WorkerProcess {
    fn spawn(url: &str, prefix: &str, node: u64, concurrency: usize) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator-nats-demo-worker"))
            .env("NATS_URL", url)
            .env("DEMO_PREFIX", prefix)
            .env("DEMO_NODE", node.to_string())
            .env("DEMO_ACK_WAIT_MS", ACK_WAIT.as_millis().to_string())
            .env("DEMO_CONCURRENCY", concurrency.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the demo worker starts");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut ready)
            .expect("the worker writes");
        assert_eq!(ready.trim(), "ready", "the worker started");
        let stdin = child.stdin.take();
        Self { child, stdin }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    fn stop(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        } // closed: the worker stops gracefully
        let _ = self.child.wait();
    }
}

/// A demo producer process (`orchestrator-nats-demo-producer`): it dispatches its jobs when
/// told to and prints a line per outcome.
struct ProducerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    incarnation: u64,
}

impl ProducerProcess {
    fn spawn(url: &str, prefix: &str, node: u64, first: u64, jobs: u64, delay_ms: u64) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator-nats-demo-producer"))
            .env("NATS_URL", url)
            .env("DEMO_PREFIX", prefix)
            .env("DEMO_NODE", node.to_string())
            .env("DEMO_ACK_WAIT_MS", ACK_WAIT.as_millis().to_string())
            .env("DEMO_FIRST", first.to_string())
            .env("DEMO_JOBS", jobs.to_string())
            .env("DEMO_DELAY_MS", delay_ms.to_string())
            .env("DEMO_TIMEOUT_MS", "20000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the demo producer starts");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = lines.recv_timeout(PATIENCE).expect("the producer starts");
        let incarnation = ready
            .strip_prefix("ready ")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .unwrap_or_else(|| panic!("not a ready line: {ready}"));
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            lines,
            incarnation,
        }
    }

    /// Tells it to dispatch its jobs.
    fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("piped");
        writeln!(stdin, "go")
            .and_then(|()| stdin.flush())
            .expect("the producer reads");
    }

    async fn next_line(&self) -> String {
        let since = Instant::now();
        loop {
            match self.lines.try_recv() {
                Ok(line) => return line,
                Err(mpsc::TryRecvError::Empty) => {
                    assert!(since.elapsed() < PATIENCE, "the producer went quiet");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(mpsc::TryRecvError::Disconnected) => panic!("the producer exited early"),
            }
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for ProducerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a producer printed after its `go`, up to its stats line.
#[derive(Debug, Default)]
struct Report {
    ok: Vec<(u64, u64)>,
    errors: Vec<String>,
    /// sent, outcomes, earlier runs, duplicates dropped, duplicate ids
    stats: [u64; 5],
}

async fn report(producer: &ProducerProcess) -> Report {
    let mut report = Report::default();
    loop {
        let line = producer.next_line().await;
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["ok", n, value] => report.ok.push((
                n.parse().expect("a number"),
                value.parse().expect("a value"),
            )),
            ["stats", numbers @ ..] => {
                for (slot, word) in report.stats.iter_mut().zip(numbers) {
                    *slot = word.parse().expect("a count");
                }
                return report;
            }
            _ => report.errors.push(line),
        }
    }
}

fn config(prefix: &str) -> RemoteConfig {
    RemoteConfig {
        prefix: prefix.to_owned(),
        ack_wait: ACK_WAIT,
        ..RemoteConfig::default()
    }
}

/// Connects to `url`, trying again while the server (just started, on a loaded machine) does
/// not answer in time.
async fn connect(url: &str) -> async_nats::Client {
    let since = Instant::now();
    loop {
        match async_nats::connect(url).await {
            Ok(client) => return client,
            Err(e) => assert!(since.elapsed() < PATIENCE, "{url}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let since = Instant::now();
    while !done() {
        assert!(
            since.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn all_resolve(handles: Vec<(u64, JobHandle<u64>)>) {
    for (n, handle) in handles {
        let value = tokio::time::timeout(PATIENCE, handle)
            .await
            .unwrap_or_else(|_| panic!("job {n} did not resolve"))
            .unwrap_or_else(|e| panic!("job {n} failed: {e}"))
            .value;
        assert_eq!(value, n * n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_loses_no_job() {
    const JOBS: u64 = 60;
    let server = Server::start();
    let prefix = format!("kill{}", NodeId::random().as_u64());
    let first = WorkerProcess::spawn(&server.url(), &prefix, 2, 8);
    let (shop, remote) = shop(&server.url(), &config(&prefix)).await;
    let handles: Vec<_> = (1..=JOBS)
        .map(|n| (n, shop.dispatch(Square::new(n, 100))))
        .collect();
    wait_until("ten outcomes", || remote.stats().outcomes >= 10).await;
    // Mid-run, while it holds jobs (a worker holds only the jobs it runs, so between two
    // batches it may hold none).
    let since = Instant::now();
    while consumer_info(&server, &prefix).await.num_ack_pending == 0 {
        assert!(since.elapsed() < PATIENCE, "the worker never held a job");
    }
    first.kill();
    let at_kill = remote.stats().outcomes;
    let second = WorkerProcess::spawn(&server.url(), &prefix, 3, 8);
    all_resolve(handles).await;
    let stats = remote.stats();
    assert_eq!((stats.sent, stats.outcomes), (JOBS, JOBS), "{stats:?}");
    assert_eq!(remote.waiting(), 0);
    // How many times the server delivered the jobs to workers (its consumer's delivery
    // sequence).
    let deliveries = consumer_info(&server, &prefix)
        .await
        .delivered
        .consumer_sequence;
    assert!(
        deliveries > JOBS,
        "the killed worker's jobs were delivered again"
    );
    eprintln!(
        "fault: worker SIGKILL: {JOBS} jobs, {at_kill} done before the kill, {} redeliveries, \
         {} outcomes (one per handle), {} duplicates dropped, 0 lost",
        deliveries - JOBS,
        stats.outcomes,
        stats.duplicates_dropped
    );
    second.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_restarted_mid_run_loses_no_outcome_and_duplicates_none() {
    const JOBS: u64 = 100;
    let mut server = Server::start();
    let prefix = format!("restart{}", NodeId::random().as_u64());
    let config = config(&prefix);
    let worker_client = connect(&server.url()).await;
    let local = Dispatcher::new(TokioRuntime::default());
    let squarer = Squarer::default();
    local.register(squarer.clone());
    let worker = Worker::builder(worker_client, registry(2), &local)
        .config(config.clone())
        .concurrency(8)
        .accept::<Square>()
        .unwrap()
        .start()
        .await
        .unwrap();
    let (shop, remote) = shop(&server.url(), &config).await;
    // A request the server could not take while it was down is retried.
    let retry = RetryPolicy::fixed(20, Duration::from_millis(250)).retry_if(|e, _| {
        e.downcast_ref::<orchestrator_nats::RemoteError>()
            .is_some_and(orchestrator_nats::RemoteError::is_retryable)
    });
    let handles: Vec<_> = (1..=JOBS)
        .map(|n| {
            let handle = shop.job(Square::new(n, 30)).retry(retry.clone()).dispatch();
            (n, handle)
        })
        .collect();
    wait_until("twenty outcomes", || remote.stats().outcomes >= 20).await;
    server.kill();
    let at_kill = remote.stats().outcomes;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.spawn(); // same port, same store
    all_resolve(handles).await;
    let stats = remote.stats();
    assert_eq!(stats.outcomes, JOBS, "one outcome per handle: {stats:?}");
    assert_eq!(remote.waiting(), 0);
    // The server's own delivery count is not used here: a server killed with SIGKILL comes
    // back with its consumer's last synced state. The executor's count says what ran.
    let runs = u64::from(squarer.runs.load(std::sync::atomic::Ordering::SeqCst));
    eprintln!(
        "fault: server restart: {JOBS} jobs, {at_kill} done before the kill, {} attempts sent, \
         {runs} runs ({} ran again), {} outcomes (one per handle), {} duplicates dropped, 0 lost",
        stats.sent,
        runs.saturating_sub(JOBS),
        stats.outcomes,
        stats.duplicates_dropped
    );
    worker.stop(Duration::from_secs(2)).await;
}

/// A worker that runs the demo squarer in this process.
async fn in_process_worker(
    server: &Server,
    config: &RemoteConfig,
    concurrency: usize,
) -> (Worker, Squarer) {
    let client = connect(&server.url()).await;
    let local = Dispatcher::new(TokioRuntime::default());
    let squarer = Squarer::default();
    local.register(squarer.clone());
    let worker = Worker::builder(client, registry(2), &local)
        .config(config.clone())
        .concurrency(concurrency)
        .accept::<Square>()
        .unwrap()
        .start()
        .await
        .unwrap();
    (worker, squarer)
}

/// A dispatcher whose `Square` jobs run remotely (node 1), connected to `url`.
async fn shop(url: &str, config: &RemoteConfig) -> (Dispatcher<TokioRuntime>, RemoteJobs) {
    let remote = RemoteJobs::start(connect(url).await, registry(1), config.clone())
        .await
        .unwrap();
    let shop = Dispatcher::new(TokioRuntime::default());
    shop.register(remote.executor::<Square>().unwrap());
    (shop, remote)
}

/// The workers' consumer as the server sees it.
async fn consumer_info(server: &Server, prefix: &str) -> async_nats::jetstream::consumer::Info {
    let client = connect(&server.url()).await;
    let js = async_nats::jetstream::new(client);
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(format!("{prefix}_jobs"))
        .await
        .expect("the jobs stream")
        .get_consumer("workers-demo_square")
        .await
        .expect("the workers' consumer");
    consumer.info().await.expect("its info").clone()
}

/// Jobs longer than the ack wait on a worker whose slots are all taken: the worker holds only
/// the jobs it runs (the rest wait on the server, where no ack wait runs), so none is
/// delivered twice and none is timed out by the worker's own queueing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_jobs_on_a_full_worker_run_once_and_are_never_redelivered() {
    const JOBS: u64 = 4;
    let server = Server::start();
    let prefix = format!("full{}", NodeId::random().as_u64());
    let config = config(&prefix); // ack wait 2 s
    let (worker, squarer) = in_process_worker(&server, &config, 2).await;
    let (shop, remote) = shop(&server.url(), &config).await;
    // Each job takes 3 s: longer than the ack wait.
    let handles: Vec<_> = (1..=JOBS)
        .map(|n| (n, shop.dispatch(Square::new(n, 3_000))))
        .collect();
    wait_until("two jobs running", || {
        squarer.runs.load(std::sync::atomic::Ordering::SeqCst) == 2
    })
    .await;
    let info = consumer_info(&server, &prefix).await;
    assert_eq!(
        (info.num_ack_pending, info.num_pending),
        (2, 2),
        "the worker holds the two jobs it runs; the other two wait on the server"
    );
    all_resolve(handles).await;
    let runs = u64::from(squarer.runs.load(std::sync::atomic::Ordering::SeqCst));
    let info = consumer_info(&server, &prefix).await;
    let stats = worker.stats();
    assert_eq!(runs, JOBS, "each job ran once: {stats:?}");
    assert_eq!(
        info.delivered.consumer_sequence, JOBS,
        "no job delivered twice"
    );
    assert_eq!(
        (stats.completed, stats.stale, stats.cancelled),
        (JOBS, 0, 0)
    );
    eprintln!(
        "fault: full worker: {JOBS} jobs of 3 s on 2 slots, ack wait 2 s: {runs} runs, {} \
         deliveries, {} outcomes",
        info.delivered.consumer_sequence,
        remote.stats().outcomes
    );
    worker.stop(Duration::from_secs(2)).await;
}

/// A producer killed mid-run and started again with the same node id: its job ids start
/// again at 1, but its requests are not taken for its previous run's duplicates, and its
/// previous run's outcomes (which keep coming) never resolve its new handles: they are
/// counted apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_restarted_with_its_node_id_gets_only_its_own_outcomes() {
    const JOBS: u64 = 400;
    let server = Server::start();
    let prefix = format!("again{}", NodeId::random().as_u64());
    let (worker, squarer) = in_process_worker(&server, &config(&prefix), 8).await;
    let mut first = ProducerProcess::spawn(&server.url(), &prefix, 7, 1, JOBS, 20);
    first.go();
    let mut before_kill = 0;
    while before_kill < 20 {
        let line = first.next_line().await;
        assert!(line.starts_with("ok "), "the first run: {line}");
        before_kill += 1;
    }
    let first_incarnation = first.incarnation;
    first.kill(); // SIGKILL: most of its jobs are still queued, and will run
    let mut second = ProducerProcess::spawn(&server.url(), &prefix, 7, 1_001, JOBS, 20);
    assert_ne!(second.incarnation, first_incarnation);
    second.go();
    let report = report(&second).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let mut seen: Vec<u64> = report.ok.iter().map(|&(n, _)| n).collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1_001..1_001 + JOBS).collect::<Vec<_>>(),
        "each job once"
    );
    for (n, value) in &report.ok {
        assert_eq!(*value, n * n, "job {n} resolved with its own value");
    }
    let [sent, outcomes, earlier_runs, duplicates, duplicate_ids] = report.stats;
    assert_eq!((sent, outcomes, duplicate_ids), (JOBS, JOBS, 0));
    assert!(
        earlier_runs > 0,
        "the first run's outcomes came, counted apart"
    );
    let runs = squarer.runs.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "fault: producer restart (node 7 twice): first run {JOBS} jobs, killed after \
         {before_kill} outcomes; second run {JOBS} jobs: {} right, 0 wrong, 0 timed out; \
         {earlier_runs} outcomes of the first run received and counted apart, {duplicates} \
         duplicates dropped; {runs} runs on the worker",
        report.ok.len()
    );
    worker.stop(Duration::from_secs(2)).await;
}

/// A publish the server answers as a duplicate of a message it already holds is not taken
/// for an acceptance: the attempt fails with a clear error instead of waiting for an
/// outcome that would never come (or taking another message's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_acknowledged_as_a_duplicate_fails_its_attempt_loudly() {
    let server = Server::start();
    let prefix = format!("dup{}", NodeId::random().as_u64());
    let (worker, _squarer) = in_process_worker(&server, &config(&prefix), 8).await;
    let mut producer = ProducerProcess::spawn(&server.url(), &prefix, 7, 1, 3, 0);
    // Something else already sent a message under the id the producer's first job will use
    // (job 1 of this process, attempt 1).
    let client = connect(&server.url()).await;
    let js = async_nats::jetstream::new(client);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        format!("7/{:x}/1/1", producer.incarnation).as_str(),
    );
    js.publish_with_headers(format!("{prefix}.jobs.demo.square"), headers, "{}".into())
        .await
        .expect("published")
        .await
        .expect("stored");
    producer.go();
    let mut report = report(&producer).await;
    report.ok.sort_unstable();
    assert_eq!(report.ok, [(2, 4), (3, 9)], "{report:?}");
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(
        report.errors[0].starts_with("err 1 ") && report.errors[0].contains("already holds"),
        "{report:?}"
    );
    assert_eq!(report.stats[4], 1, "one duplicate id: {report:?}");
    worker.stop(Duration::from_secs(2)).await;
}

/// A TCP relay between a client and the server whose server-to-client direction can be held:
/// what the server sends meanwhile arrives, in order, once it is let go.
struct Relay {
    port: u16,
    hold: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(server_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        let (hold, held) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", server_port)).await
                else {
                    continue;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                });
                let mut held = held.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buffer = vec![0; 64 * 1024];
                    while let Ok(n) = from_server.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        if held.wait_for(|held| !*held).await.is_err() {
                            break;
                        }
                        if to_client.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { port, hold }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// The server stores a request and the worker answers it, but the request's acknowledgement
/// does not reach the dispatching side in time: the attempt does not fail, it resolves with
/// the outcome that comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_that_comes_after_its_requests_ack_timed_out_resolves_the_handle() {
    let server = Server::start();
    let prefix = format!("late{}", NodeId::random().as_u64());
    let config = RemoteConfig {
        ack_timeout: Duration::from_millis(300),
        ..config(&prefix)
    };
    let (worker, squarer) = in_process_worker(&server, &config, 8).await;
    let relay = Relay::start(server.port).await;
    let (shop, remote) = shop(&relay.url(), &config).await;
    // Nothing the server sends reaches the shop for now: the request's acknowledgement, the
    // outcome.
    relay.hold.send_replace(true);
    let handle = shop.dispatch(Square::new(12, 0));
    wait_until("the worker stored the outcome", || {
        worker.stats().completed == 1
    })
    .await;
    wait_until("the acknowledgement timed out", || {
        remote.stats().republished >= 1
    })
    .await;
    relay.hold.send_replace(false);
    let value = tokio::time::timeout(PATIENCE, handle)
        .await
        .expect("resolves")
        .expect("the job's outcome, not an error")
        .value;
    assert_eq!(value, 144);
    let stats = remote.stats();
    assert_eq!((stats.outcomes, stats.sent), (1, 1), "{stats:?}");
    assert_eq!(
        squarer.runs.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "ran once"
    );
    eprintln!(
        "fault: late acknowledgement: the request sent {} more time(s) under its id, ran once, \
         its outcome resolved the handle; {} duplicates dropped",
        stats.republished, stats.duplicates_dropped
    );
    worker.stop(Duration::from_secs(2)).await;
}

/// A small seeded generator (xorshift), so that a chaos run can be repeated.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// Chaos: three worker processes, one of them killed (SIGKILL) and replaced every 1 to 2
/// seconds, and the server killed and restarted twice, while jobs run. Every handle gets its
/// own value, once. `CHAOS_JOBS` (default 600) and `CHAOS_SEED` make the long version: run it
/// with `CHAOS_JOBS=5000 cargo test -p orchestrator-nats --features server-tests --test faults
/// chaos -- --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_killed_workers_and_a_restarted_server_lose_nothing() {
    let jobs: u64 = std::env::var("CHAOS_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let mut random = Seeded(seed | 1);
    let mut server = Server::start();
    let prefix = format!("chaos{}", NodeId::random().as_u64());
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|i| WorkerProcess::spawn(&server.url(), &prefix, 10 + i, 8))
        .collect();
    let (shop, remote) = shop(&server.url(), &config(&prefix)).await;
    let handles: Vec<_> = (1..=jobs)
        .map(|n| (n, shop.dispatch(Square::new(n, 200))))
        .collect();
    let all = tokio::spawn(async move {
        let mut wrong = Vec::new();
        for (n, handle) in handles {
            match tokio::time::timeout(PATIENCE * 4, handle).await {
                Ok(Ok(success)) if success.value == n * n => {}
                other => wrong.push(format!("job {n}: {other:?}")),
            }
        }
        wrong
    });
    let (mut worker_kills, mut server_restarts, mut next_node) = (0, 0, 20);
    while !all.is_finished() {
        let pause = 1_000 + random.next(1_000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if all.is_finished() {
            break;
        }
        let victim = random.next(workers.len() as u64) as usize;
        workers.remove(victim).kill();
        worker_kills += 1;
        let done = remote.stats().outcomes;
        if server_restarts < 2 && done * 3 >= jobs * (server_restarts + 1) {
            server.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            server.spawn(); // same port, same store
            server_restarts += 1;
        }
        workers.push(WorkerProcess::spawn(&server.url(), &prefix, next_node, 8));
        next_node += 1;
    }
    let wrong = all.await.unwrap();
    assert_eq!(server_restarts, 2, "the server was restarted twice mid-run");
    assert!(
        worker_kills >= 2,
        "workers were killed mid-run: {worker_kills}"
    );
    assert!(
        wrong.is_empty(),
        "{} wrong or lost: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    let stats = remote.stats();
    assert_eq!(stats.outcomes, jobs, "one outcome per handle: {stats:?}");
    assert_eq!(remote.waiting(), 0);
    eprintln!(
        "chaos (seed {seed:#x}): {jobs} jobs of 200 ms on 3 workers (8 slots each), {worker_kills} \
         worker SIGKILLs, {server_restarts} server SIGKILLs and restarts: {jobs} right, 0 wrong, \
         0 lost; {} outcomes, {} duplicates dropped, {} requests sent again after a lost \
         acknowledgement",
        stats.outcomes, stats.duplicates_dropped, stats.republished
    );
    for worker in workers {
        worker.stop();
    }
}

/// A worker whose pull requests the server refuses (here: the consumer lets one request wait
/// at a time, and another worker's is waiting) waits before asking again instead of asking in
/// a loop, and the jobs still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_pulls_are_refused_asks_again_later_not_in_a_loop() {
    let server = Server::start();
    let prefix = format!("refused{}", NodeId::random().as_u64());
    let config = config(&prefix);
    // The workers' consumer, made first, with room for one waiting pull request.
    let js = async_nats::jetstream::new(connect(&server.url()).await);
    let stream = js
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: format!("{prefix}_jobs"),
            subjects: vec![format!("{prefix}.jobs.>")],
            retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            duplicate_window: config.duplicate_window,
            ..Default::default()
        })
        .await
        .expect("the jobs stream");
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("workers-demo_square".into()),
            filter_subject: format!("{prefix}.jobs.demo.square"),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_deliver: i64::from(config.max_deliver) + 1,
            max_waiting: 1,
            ..Default::default()
        })
        .await
        .expect("the consumer");
    let (first, _) = in_process_worker(&server, &config, 4).await;
    let (second, _) = in_process_worker(&server, &config, 4).await;
    wait_until("a refused pull request", || {
        first.stats().pulls_refused + second.stats().pulls_refused > 0
    })
    .await;
    // Let them run on for a second: refused requests are sent again after a pause.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (a, b) = (first.stats(), second.stats());
    let sent = a.pull_requests + b.pull_requests;
    assert!(sent < 40, "pull requests sent in a loop: {a:?} {b:?}");
    // Jobs still run, on whichever worker's request is waiting.
    let (shop, _remote) = shop(&server.url(), &config).await;
    let handles: Vec<_> = (1..=20)
        .map(|n| (n, shop.dispatch(Square::new(n, 0))))
        .collect();
    all_resolve(handles).await;
    eprintln!(
        "fault: refused pulls: {} refused, {sent} pull requests in all, 20 jobs ran",
        a.pulls_refused + b.pulls_refused
    );
    first.stop(Duration::from_secs(1)).await;
    second.stop(Duration::from_secs(1)).await;
}
