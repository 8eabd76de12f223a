//! Cache hits and dedup joins against a plain dispatch of the same no-op job, in the same run,
//! on tokio current-thread.
//!
//! `cargo bench --bench cache` prints a Markdown table; `BENCH_QUICK=1` (or `--quick`, or an
//! unoptimized build) runs tiny counts. Nothing asserts on timings; outcomes are checked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator_core::{CachePolicy, DataSource, Dispatch, Dispatcher, Executor, Job, JobContext};
use orchestrator_tokio::TokioRuntime;

mod common;

use common::median;

struct Noop;
impl Job for Noop {
    type Output = u64;
}

/// Returns 7 at once, or after `gate` is notified when one is set.
struct NoopExec(Arc<tokio::sync::Semaphore>);
impl Executor<Noop> for NoopExec {
    type Error = std::convert::Infallible;
    async fn execute(&self, _: &Noop, _: JobContext) -> Result<u64, Self::Error> {
        let _permit = self.0.acquire().await;
        Ok(7)
    }
}

async fn plain<R>(d: &Dispatcher<R>, n: u64) -> Duration {
    let began = Instant::now();
    for _ in 0..n {
        let done = d.dispatch(Noop).await.expect("success");
        assert_eq!(done.data_source, DataSource::Fresh);
    }
    began.elapsed()
}

async fn cache_hit<R>(d: &Dispatcher<R>, n: u64) -> Duration {
    let began = Instant::now();
    for _ in 0..n {
        let done = d
            .job(Noop)
            .cache(CachePolicy::new("noop"))
            .dispatch()
            .await
            .expect("success");
        assert_eq!(done.data_source, DataSource::Cached);
    }
    began.elapsed()
}

/// Dispatches one leader held by the gate, `n` joining dispatches, then releases and awaits
/// all; returns the time spent on the joins only (dispatch + await of each).
async fn dedup_join<R>(d: &Dispatcher<R>, gate: &tokio::sync::Semaphore, n: u64) -> Duration {
    let leader = d.job(Noop).dedup("noop").dispatch();
    let began = Instant::now();
    let joined: Vec<_> = (0..n)
        .map(|_| d.job(Noop).dedup("noop").dispatch())
        .collect();
    let dispatching = began.elapsed();
    gate.add_permits(1);
    leader.await.expect("success");
    let began = Instant::now();
    for h in joined {
        assert_eq!(h.await.expect("the leader's outcome").value, 7);
    }
    gate.forget_permits(1);
    dispatching + began.elapsed()
}

fn main() {
    let quick = common::quick_mode();
    let (n, samples): (u64, usize) = if quick { (100, 3) } else { (200_000, 5) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let [plain_ns, hit_ns, join_ns] = runtime.block_on(async {
        let d = Dispatcher::new(TokioRuntime::default());
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        d.register(NoopExec(gate.clone()));
        let free = Dispatcher::new(TokioRuntime::default());
        free.register(NoopExec(Arc::new(tokio::sync::Semaphore::new(
            tokio::sync::Semaphore::MAX_PERMITS,
        ))));
        // Fill the cache and warm up.
        free.job(Noop)
            .cache(CachePolicy::new("noop"))
            .dispatch()
            .await
            .expect("success");
        plain(&free, n / 10 + 1).await;
        cache_hit(&free, n / 10 + 1).await;
        dedup_join(&d, &gate, n / 10 + 1).await;
        let per = |t: Duration| t.as_nanos() as f64 / n as f64;
        let mut cells = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..samples {
            cells[0].push(per(plain(&free, n).await));
            cells[1].push(per(cache_hit(&free, n).await));
            cells[2].push(per(dedup_join(&d, &gate, n).await));
        }
        cells.map(median)
    });
    let mode = if quick {
        "quick (numbers are meaningless)"
    } else {
        "full"
    };
    println!("# cache benchmark: {mode}, {samples} samples, median, tokio current-thread\n");
    println!("| what | ns/op | ratio to a plain dispatch |");
    println!("|---|---:|---:|");
    println!("| plain dispatch + await (baseline) | {plain_ns:.1} | 1.00x |");
    println!(
        "| cache hit: dispatch + await | {hit_ns:.1} | {:.2}x |",
        hit_ns / plain_ns
    );
    println!(
        "| dedup join: dispatch + await | {join_ns:.1} | {:.2}x |",
        join_ns / plain_ns
    );
}
