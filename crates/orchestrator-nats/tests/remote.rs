//! Remote execution against a real NATS server (feature `server-tests`; `.ci/run` starts
//! `nats-server` with JetStream on 127.0.0.1 and sets `NATS_URL`). A "shop" dispatcher sends
//! jobs; workers (each with its own connection, registry and node id) run them.

#![cfg(feature = "server-tests")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext, JobError, RetryPolicy};
use orchestrator_nats::{RemoteConfig, RemoteError, RemoteJobs, Worker};
use orchestrator_remote::{NodeId, Registry};
use orchestrator_tokio::TokioRuntime;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// A bound on every wait, so that a broken transport fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

fn url() -> String {
    std::env::var("NATS_URL")
        .expect("the server tests need a NATS server: set NATS_URL (`.ci/run` starts one)")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Square {
    n: u64,
    /// Fail the first `fail` attempts (retryable).
    fail: u32,
    /// Never finish (until cancelled).
    hang: bool,
}
impl Job for Square {
    type Output = u64;
}

#[derive(Debug)]
struct Flaky;
impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("flaky upstream")
    }
}
impl std::error::Error for Flaky {}

/// The worker's executor: counts its runs, reports progress, can fail or hang.
struct Squarer {
    runs: Arc<AtomicU32>,
    started: Arc<Notify>,
}
impl Executor<Square> for Squarer {
    type Error = Flaky;
    async fn execute(&self, job: &Square, cx: JobContext) -> Result<u64, Flaky> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.started.notify_one();
        cx.report_progress(0.5);
        cx.emit(Step { n: job.n }).unwrap();
        if job.hang {
            std::future::pending::<()>().await;
        }
        let remote_attempt: u32 = cx
            .metadata(orchestrator_nats::REMOTE_ATTEMPT)
            .and_then(|a| a.parse().ok())
            .expect("a worker's job carries the remote attempt");
        assert!(cx.metadata(orchestrator_nats::REMOTE_JOB).is_some());
        if remote_attempt <= job.fail {
            return Err(Flaky);
        }
        Ok(job.n * job.n)
    }
}

/// Emitted by the worker's executor while it runs a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Step {
    n: u64,
}

fn registry(node: u64) -> Arc<Registry> {
    let mut registry = Registry::new(NodeId::new(node));
    registry
        .register_job::<Square>("math.square")
        .unwrap()
        .register_event::<Step>("math.step")
        .unwrap();
    Arc::new(registry)
}

fn config(ack_wait: Duration, max_deliver: u32) -> RemoteConfig {
    RemoteConfig {
        prefix: format!("t{}", NodeId::random().as_u64()),
        ack_wait,
        max_deliver,
        ..RemoteConfig::default()
    }
}

struct Shop {
    dispatcher: Dispatcher<TokioRuntime>,
    remote: RemoteJobs,
}

async fn shop(config: &RemoteConfig) -> Shop {
    let nats = async_nats::connect(url()).await.expect("connects");
    let remote = RemoteJobs::start(nats, registry(1), config.clone())
        .await
        .unwrap();
    let dispatcher = Dispatcher::new(TokioRuntime::default());
    dispatcher.register(remote.executor::<Square>().unwrap());
    Shop { dispatcher, remote }
}

struct Plant {
    worker: Worker,
    runs: Arc<AtomicU32>,
    started: Arc<Notify>,
}

async fn worker(config: &RemoteConfig, node: u64) -> Plant {
    let nats = async_nats::connect(url()).await.expect("connects");
    let (runs, started) = (Arc::new(AtomicU32::new(0)), Arc::new(Notify::new()));
    let local = Dispatcher::new(TokioRuntime::default());
    local.register(Squarer {
        runs: runs.clone(),
        started: started.clone(),
    });
    let worker = Worker::builder(nats, registry(node), &local)
        .config(config.clone())
        .concurrency(8)
        .accept::<Square>()
        .unwrap()
        .start()
        .await
        .unwrap();
    Plant {
        worker,
        runs,
        started,
    }
}

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {PATIENCE:?}"))
}

fn square(n: u64) -> Square {
    Square {
        n,
        fail: 0,
        hang: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_on_two_workers_and_every_handle_gets_its_outcome_once() {
    let config = config(Duration::from_secs(30), 5);
    let shop = shop(&config).await;
    let (a, b) = (worker(&config, 2).await, worker(&config, 3).await);
    let handles: Vec<_> = (1..=200)
        .map(|n| shop.dispatcher.dispatch(square(n)))
        .collect();
    let mut sum = 0;
    for (n, handle) in (1..=200u64).zip(handles) {
        let value = within("an outcome", handle).await.unwrap().value;
        assert_eq!(value, n * n);
        sum += 1;
    }
    assert_eq!(sum, 200);
    let runs = a.runs.load(Ordering::SeqCst) + b.runs.load(Ordering::SeqCst);
    assert_eq!(runs, 200, "each job ran once");
    let stats = shop.remote.stats();
    assert_eq!((stats.sent, stats.outcomes), (200, 200), "{stats:?}");
    assert_eq!(
        (stats.duplicates_dropped, stats.undecodable),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(shop.remote.waiting(), 0);
    // A worker counts a job once the server has its outcome (and acknowledges it then).
    within("the workers' counts", async {
        while a.worker.stats().completed + b.worker.stats().completed < 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(a.worker.stats().completed + b.worker.stats().completed, 200);
    // A worker does not keep the tasks of the jobs it ran (8 slots each).
    let kept = (a.worker.tasks().await, b.worker.tasks().await);
    assert!(kept.0 <= 16 && kept.1 <= 16, "tasks kept: {kept:?}");
    a.worker.stop(Duration::from_secs(1)).await;
    b.worker.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_error_is_retried_by_the_dispatching_side() {
    let config = config(Duration::from_secs(30), 5);
    let shop = shop(&config).await;
    let plant = worker(&config, 2).await;
    let retried = shop
        .dispatcher
        .job(Square {
            n: 3,
            fail: 2,
            hang: false,
        })
        .retry(RetryPolicy::fixed(3, Duration::from_millis(10)))
        .dispatch();
    assert_eq!(within("the retried job", retried).await.unwrap().value, 9);
    assert_eq!(
        plant.runs.load(Ordering::SeqCst),
        3,
        "two failures, then success"
    );
    let failed = shop.dispatcher.dispatch(Square {
        n: 3,
        fail: 1,
        hang: false,
    });
    match within("the failed job", failed).await {
        Err(JobError::Failed(failure)) => {
            let remote = failure
                .downcast_ref::<RemoteError>()
                .expect("a remote error");
            assert!(remote.is_retryable());
            assert!(remote.to_string().contains("flaky upstream"), "{remote}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    plant.worker.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_crosses_the_wire_and_the_handle_resolves_at_once() {
    let config = config(Duration::from_secs(30), 5);
    let shop = shop(&config).await;
    let plant = worker(&config, 2).await;
    let handle = shop.dispatcher.dispatch(Square {
        n: 1,
        fail: 0,
        hang: true,
    });
    let mut progress = handle.progress();
    within("the worker starts the job", plant.started.notified()).await;
    let report = within("a progress report", progress.next()).await;
    assert_eq!(
        report.map(|p| p.value()),
        Some(0.5),
        "progress crossed back"
    );
    handle.cancel();
    assert!(matches!(
        within("the cancelled handle", handle).await,
        Err(JobError::Cancelled { .. })
    ));
    within("the worker's cancellation", async {
        while plant.worker.stats().cancelled == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(shop.remote.stats().cancels_sent, 1);
    // The cancelled attempt's outcome, if one comes, finds no one waiting.
    plant.worker.stop(Duration::from_secs(5)).await;
    assert_eq!(shop.remote.waiting(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_past_its_deadline_is_skipped_by_the_worker() {
    let config = config(Duration::from_secs(30), 5);
    let shop = shop(&config).await;
    // No worker yet: the job times out at the shop.
    let timed = shop
        .dispatcher
        .job(square(4))
        .timeout(Duration::from_millis(300))
        .dispatch();
    assert!(matches!(
        within("the timed-out handle", timed).await,
        Err(JobError::TimedOut { .. })
    ));
    let plant = worker(&config, 2).await;
    within("the stale request is skipped", async {
        while plant.worker.stats().stale == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(plant.runs.load(Ordering::SeqCst), 0, "never run");
    plant.worker.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_handed_back_too_often_becomes_a_poison_failure() {
    let config = config(Duration::from_secs(30), 2);
    let shop = shop(&config).await;
    let handle = shop.dispatcher.dispatch(Square {
        n: 5,
        fail: 0,
        hang: true,
    });
    // Two workers take the job in turn and stop without finishing it (handing it back).
    for node in [2, 3] {
        let plant = worker(&config, node).await;
        within("a worker takes the job", plant.started.notified()).await;
        plant.worker.stop(Duration::ZERO).await;
    }
    // The third delivery is one too many: answered as a poison failure, not run.
    let third = worker(&config, 4).await;
    match within("the poisoned handle", handle).await {
        Err(JobError::Failed(failure)) => {
            let remote = failure
                .downcast_ref::<RemoteError>()
                .expect("a remote error");
            assert!(!remote.is_retryable());
            assert!(remote.to_string().contains("poison"), "{remote}");
            // A report that walks the error's chain prints the worker's message once.
            let error = JobError::Failed(failure);
            let chain: Vec<String> =
                std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
                    .map(ToString::to_string)
                    .collect();
            assert_eq!(chain.join(": ").matches("poison").count(), 1, "{chain:?}");
        }
        other => panic!("expected a poison failure, got {other:?}"),
    }
    assert_eq!(third.runs.load(Ordering::SeqCst), 0);
    assert_eq!(third.worker.stats().poisoned, 1);
    third.worker.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_events_on_its_worker_are_its_own_events_here_before_its_outcome() {
    let config = config(Duration::from_secs(30), 5);
    let shop = shop(&config).await;
    let plant = worker(&config, 2).await;
    let mut steps = shop.dispatcher.bus().subscribe();
    let handle = shop.dispatcher.dispatch(square(6));
    let id = handle.id();
    assert_eq!(within("the job", handle).await.unwrap().value, 36);
    // Already on the bus when the handle resolved: the event came before the outcome.
    let event = steps.try_next().expect("the worker's event, here");
    assert_eq!(event.downcast_ref::<Step>(), Some(&Step { n: 6 }));
    assert_eq!(event.correlation_id(), Some(id), "the local job's event");
    assert!(event.is_from_job::<Square>());
    assert_eq!(event.remote_node(), None);
    let stats = shop.remote.stats();
    assert_eq!((stats.events, stats.events_dropped), (1, 0), "{stats:?}");
    plant.worker.stop(Duration::from_secs(1)).await;
}
