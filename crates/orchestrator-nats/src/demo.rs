//! A demo job type and executor (feature `demo`): what the example, the fault tests and the
//! demo worker process run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use orchestrator_core::{Executor, Job, JobContext};
use orchestrator_remote::{NodeId, Registry};
use serde::{Deserialize, Serialize};

use crate::REMOTE_ATTEMPT;

/// Squares `n` after `delay_ms`; fails the first `fail` remote attempts (a retryable error);
/// never finishes if `hang`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Square {
    /// The number.
    pub n: u64,
    /// How long the work takes.
    pub delay_ms: u64,
    /// How many remote attempts fail first.
    pub fail: u32,
    /// Never finish (until cancelled).
    pub hang: bool,
}

impl Square {
    /// Squares `n` after `delay_ms`, without failing.
    pub fn new(n: u64, delay_ms: u64) -> Self {
        Self {
            n,
            delay_ms,
            fail: 0,
            hang: false,
        }
    }
}

impl Job for Square {
    type Output = u64;

    fn output_event(&self, square: &u64) -> Option<impl Send + Sync + 'static> {
        Some(Squared {
            n: self.n,
            square: *square,
        })
    }
}

/// Published when a [`Square`] succeeds (its output event), wherever it ran: on the bus of the
/// dispatcher that dispatched it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Squared {
    /// The number.
    pub n: u64,
    /// Its square.
    pub square: u64,
}

/// The retryable error of a [`Square`] told to fail.
#[derive(Debug)]
pub struct Flaky;

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("flaky upstream")
    }
}

impl std::error::Error for Flaky {}

/// Runs [`Square`]s (on the worker's dispatcher); counts its runs and, for a job with work
/// to do, reports progress.
#[derive(Debug, Default, Clone)]
pub struct Squarer {
    /// How many attempts it started.
    pub runs: Arc<AtomicU32>,
}

impl Executor<Square> for Squarer {
    type Error = Flaky;

    async fn execute(&self, job: &Square, cx: JobContext) -> Result<u64, Flaky> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if job.hang || job.delay_ms > 0 {
            // Halfway through work that takes time (a job with none has nothing to report).
            cx.report_progress(0.5);
        }
        if job.hang {
            std::future::pending::<()>().await;
        }
        if job.delay_ms > 0 {
            cx.sleep(Duration::from_millis(job.delay_ms)).await;
        }
        let attempt: u32 = cx
            .metadata(REMOTE_ATTEMPT)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| cx.attempt());
        if attempt <= job.fail {
            return Err(Flaky);
        }
        Ok(job.n * job.n)
    }
}

/// The demo's wire name for [`Square`].
pub const SQUARE: &str = "demo.square";

/// The demo's wire name for [`Squared`].
pub const SQUARED: &str = "demo.squared";

/// A registry for node `node` with [`Square`] and [`Squared`] registered.
///
/// # Panics
///
/// Never: the one registration cannot clash.
pub fn registry(node: u64) -> Arc<Registry> {
    let mut registry = Registry::new(NodeId::new(node));
    registry
        .register_job::<Square>(SQUARE)
        .and_then(|r| r.register_event::<Squared>(SQUARED))
        .expect("the demo registry has one job type and one event");
    Arc::new(registry)
}

/// Runs a demo worker configured by environment variables until its standard input closes
/// (the `orchestrator-nats-demo-worker` binary, and the example's worker processes):
/// `NATS_URL` (default `nats://127.0.0.1:4222`), `DEMO_PREFIX` (default `demo`), `DEMO_NODE`,
/// `DEMO_ACK_WAIT_MS`, `DEMO_MAX_DELIVER`, `DEMO_CONCURRENCY`. Prints `ready` once it takes
/// jobs.
///
/// # Errors
///
/// If the runtime, the connection or the worker cannot start.
pub fn run_worker_from_env() -> Result<(), Box<dyn std::error::Error>> {
    use std::io::BufRead;

    use orchestrator_core::Dispatcher;
    use orchestrator_tokio::TokioRuntime;

    use crate::{RemoteConfig, Worker};

    fn var(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
    fn number(name: &str, default: u64) -> u64 {
        var(name).and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let url = var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        let config = RemoteConfig {
            prefix: var("DEMO_PREFIX").unwrap_or_else(|| "demo".into()),
            ack_wait: Duration::from_millis(number("DEMO_ACK_WAIT_MS", 30_000)),
            max_deliver: u32::try_from(number("DEMO_MAX_DELIVER", 5)).unwrap_or(5),
            ..RemoteConfig::default()
        };
        let client = async_nats::connect(url).await?;
        let local = Dispatcher::new(TokioRuntime::default());
        local.register(Squarer::default());
        let worker = Worker::builder(client, registry(number("DEMO_NODE", 2)), &local)
            .config(config)
            .concurrency(usize::try_from(number("DEMO_CONCURRENCY", 8)).unwrap_or(8))
            .accept::<Square>()?
            .start()
            .await?;
        println!("ready");
        // Until standard input closes.
        tokio::task::spawn_blocking(|| for _ in std::io::stdin().lock().lines() {}).await?;
        let stats = worker.stats();
        worker.stop(Duration::from_secs(5)).await;
        eprintln!("worker stopped: {} jobs completed", stats.completed);
        Ok(())
    })
}

/// Runs a demo producer configured by environment variables (the
/// `orchestrator-nats-demo-producer` binary, which the restart tests kill and start again
/// with the same node id): `NATS_URL`, `DEMO_PREFIX`, `DEMO_NODE`, `DEMO_ACK_WAIT_MS`,
/// `DEMO_FIRST` and `DEMO_JOBS` (it squares `DEMO_FIRST..DEMO_FIRST + DEMO_JOBS`),
/// `DEMO_DELAY_MS` (each job's work) and `DEMO_TIMEOUT_MS` (each job's budget, default 60 s).
///
/// It prints `ready <incarnation in hex>` once it can dispatch, waits for a line on standard
/// input, dispatches every job at once, and prints a line per outcome as it comes (`ok <n>
/// <value>` or `err <n> <error and its sources>`), then `stats <sent> <outcomes>
/// <earlier_runs> <duplicates_dropped> <duplicate_ids>`.
///
/// # Errors
///
/// If the runtime or the connection cannot start.
pub fn run_producer_from_env() -> Result<(), Box<dyn std::error::Error>> {
    use std::io::{BufRead, Write};

    use futures_util::StreamExt;
    use orchestrator_core::{Dispatch, Dispatcher};
    use orchestrator_tokio::TokioRuntime;

    use crate::{RemoteConfig, RemoteJobs};

    fn number(name: &str, default: u64) -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let config = RemoteConfig {
            prefix: std::env::var("DEMO_PREFIX").unwrap_or_else(|_| "demo".into()),
            ack_wait: Duration::from_millis(number("DEMO_ACK_WAIT_MS", 30_000)),
            ..RemoteConfig::default()
        };
        let client = async_nats::connect(url).await?;
        let registry = registry(number("DEMO_NODE", 1));
        let incarnation = registry.incarnation();
        let remote = RemoteJobs::start(client, registry, config).await?;
        let shop = Dispatcher::new(TokioRuntime::default());
        shop.register(remote.executor::<Square>()?);
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {incarnation:x}")?;
        out.flush()?;
        let mut go = String::new();
        std::io::stdin().lock().read_line(&mut go)?;
        let first = number("DEMO_FIRST", 1);
        let (jobs, delay) = (number("DEMO_JOBS", 100), number("DEMO_DELAY_MS", 0));
        let budget = Duration::from_millis(number("DEMO_TIMEOUT_MS", 60_000));
        let mut outcomes: futures_util::stream::FuturesUnordered<_> = (first..first + jobs)
            .map(|n| {
                let handle = shop.job(Square::new(n, delay)).timeout(budget).dispatch();
                async move { (n, handle.await) }
            })
            .collect();
        while let Some((n, outcome)) = outcomes.next().await {
            match outcome {
                Ok(success) => writeln!(out, "ok {n} {}", success.value)?,
                Err(error) => {
                    let chain: Vec<String> =
                        std::iter::successors(Some(&error as &dyn std::error::Error), |e| {
                            e.source()
                        })
                        .map(ToString::to_string)
                        .collect();
                    writeln!(out, "err {n} {}", chain.join(": "))?;
                }
            }
            out.flush()?;
        }
        let stats = remote.stats();
        writeln!(
            out,
            "stats {} {} {} {} {}",
            stats.sent,
            stats.outcomes,
            stats.earlier_runs,
            stats.duplicates_dropped,
            stats.duplicate_ids
        )?;
        out.flush()?;
        Ok(())
    })
}
