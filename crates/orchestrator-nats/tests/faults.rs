//! Faults against real processes (feature `server-tests`): a worker process killed with
//! SIGKILL mid-run, and the NATS server itself killed and restarted mid-run. Each test starts
//! its own `nats-server` (JetStream, a temporary store, 127.0.0.1 on a free port). The figures
//! are printed (`--nocapture`) for the record.

#![cfg(feature = "server-tests")]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
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
    fn spawn(url: &str, prefix: &str, node: u64) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator-nats-demo-worker"))
            .env("NATS_URL", url)
            .env("DEMO_PREFIX", prefix)
            .env("DEMO_NODE", node.to_string())
            .env("DEMO_ACK_WAIT_MS", ACK_WAIT.as_millis().to_string())
            .env("DEMO_CONCURRENCY", "8")
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

fn config(prefix: &str) -> RemoteConfig {
    RemoteConfig {
        prefix: prefix.to_owned(),
        ack_wait: ACK_WAIT,
        ..RemoteConfig::default()
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

/// How many times the server delivered the demo jobs to workers (its consumer's delivery
/// sequence).
async fn deliveries(server: &Server, prefix: &str) -> u64 {
    let client = async_nats::connect(server.url()).await.expect("connects");
    let js = async_nats::jetstream::new(client);
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(format!("{prefix}_jobs"))
        .await
        .expect("the jobs stream")
        .get_consumer("workers-demo_square")
        .await
        .expect("the workers' consumer");
    consumer
        .info()
        .await
        .expect("its info")
        .delivered
        .consumer_sequence
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
    let first = WorkerProcess::spawn(&server.url(), &prefix, 2);
    let client = async_nats::connect(server.url()).await.expect("connects");
    let remote = RemoteJobs::start(client, registry(1), config(&prefix))
        .await
        .unwrap();
    let shop = Dispatcher::new(TokioRuntime::default());
    shop.register(remote.executor::<Square>().unwrap());
    let handles: Vec<_> = (1..=JOBS)
        .map(|n| (n, shop.dispatch(Square::new(n, 100))))
        .collect();
    wait_until("ten outcomes", || remote.stats().outcomes >= 10).await;
    first.kill(); // mid-run: up to 8 jobs are in its hands
    let at_kill = remote.stats().outcomes;
    let second = WorkerProcess::spawn(&server.url(), &prefix, 3);
    all_resolve(handles).await;
    let stats = remote.stats();
    assert_eq!((stats.sent, stats.outcomes), (JOBS, JOBS), "{stats:?}");
    assert_eq!(remote.waiting(), 0);
    let deliveries = deliveries(&server, &prefix).await;
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
    let worker_client = async_nats::connect(server.url()).await.expect("connects");
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
    let client = async_nats::connect(server.url()).await.expect("connects");
    let remote = RemoteJobs::start(client, registry(1), config)
        .await
        .unwrap();
    let shop = Dispatcher::new(TokioRuntime::default());
    shop.register(remote.executor::<Square>().unwrap());
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
