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

/// Runs [`Square`]s (on the worker's dispatcher); counts its runs and reports progress.
#[derive(Debug, Default, Clone)]
pub struct Squarer {
    /// How many attempts it started.
    pub runs: Arc<AtomicU32>,
}

impl Executor<Square> for Squarer {
    type Error = Flaky;

    async fn execute(&self, job: &Square, cx: JobContext) -> Result<u64, Flaky> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        cx.report_progress(0.5);
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

/// A registry for node `node` with [`Square`] registered.
///
/// # Panics
///
/// Never: the one registration cannot clash.
pub fn registry(node: u64) -> Arc<Registry> {
    let mut registry = Registry::new(NodeId::new(node));
    registry
        .register_job::<Square>(SQUARE)
        .expect("the demo registry has one job type");
    Arc::new(registry)
}
