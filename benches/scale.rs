//! Scale: cost per job as the number of jobs in flight grows (1,000 to 1,000,000), heap bytes
//! per in-flight job, and bus delivery with 10,000 subscribers, on tokio current-thread.
//!
//! `cargo bench --bench scale` prints Markdown tables; `BENCH_QUICK=1` (or `--quick`, or an
//! unoptimized build) runs tiny counts. Nothing asserts on timings; outcomes are checked.

use std::time::Instant;

use orchestrator_core::{Dispatch, Dispatcher, Event, Executor, Job, JobContext, SignalBus};
use orchestrator_tokio::TokioRuntime;

mod common;

use common::{CountingAlloc, start_counting, stop_counting};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

struct Noop;
impl Job for Noop {
    type Output = ();
}
struct NoopExec;
impl Executor<Noop> for NoopExec {
    type Error = std::convert::Infallible;
    async fn execute(&self, _: &Noop, _: JobContext) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Dispatches `n` jobs before awaiting any; returns (ns per job, live heap bytes per
/// in-flight job right after dispatching).
async fn in_flight<R>(d: &Dispatcher<R>, n: usize) -> (f64, f64) {
    let began = Instant::now();
    let before = start_counting();
    let handles: Vec<_> = (0..n).map(|_| d.dispatch(Noop)).collect();
    let counted = stop_counting(before);
    for h in handles {
        h.await.expect("success");
    }
    let ns = began.elapsed().as_nanos() as f64 / n as f64;
    // The handles' Vec is the harness's; subtract it.
    let vec_bytes = (n * std::mem::size_of::<orchestrator_core::JobHandle<()>>()) as f64;
    let live = (counted.bytes - counted.freed) as f64 - vec_bytes;
    (ns, live / n as f64)
}

/// The hand-rolled baseline at the same count: `tokio::spawn` + oneshot per job.
async fn baseline_in_flight(n: usize) -> (f64, f64) {
    let began = Instant::now();
    let before = start_counting();
    let receivers: Vec<_> = (0..n)
        .map(|_| {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                let _ = tx.send(());
            });
            rx
        })
        .collect();
    let counted = stop_counting(before);
    for rx in receivers {
        rx.await.expect("sent");
    }
    let ns = began.elapsed().as_nanos() as f64 / n as f64;
    let vec_bytes = (n * std::mem::size_of::<tokio::sync::oneshot::Receiver<()>>()) as f64;
    let live = (counted.bytes - counted.freed) as f64 - vec_bytes;
    (ns, live / n as f64)
}

fn main() {
    let quick = common::quick_mode();
    let counts: &[usize] = if quick {
        &[100, 1_000]
    } else {
        &[1_000, 10_000, 100_000, 1_000_000]
    };
    let subscribers = if quick { 100 } else { 10_000 };
    let events: u64 = if quick { 10 } else { 200 };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let rows: Vec<(usize, f64, f64, f64, f64)> = runtime.block_on(async {
        let d = Dispatcher::new(TokioRuntime::default());
        d.register(NoopExec);
        in_flight(&d, 1_000).await; // warm up
        baseline_in_flight(1_000).await;
        let mut rows = Vec::new();
        for &n in counts {
            let (ns, bytes) = in_flight(&d, n).await;
            let (base_ns, base_bytes) = baseline_in_flight(n).await;
            rows.push((n, ns, bytes, base_ns, base_bytes));
        }
        rows
    });
    // Bus: one publisher, many subscriptions, each drained without waiting.
    let bus = SignalBus::new();
    let mut subs: Vec<_> = (0..subscribers).map(|_| bus.subscribe()).collect();
    let began = Instant::now();
    for i in 0..events {
        bus.publish(Event::new(i)).expect("open");
        for sub in &mut subs {
            let e = sub.try_next().expect("delivered");
            assert_eq!(e.downcast_ref::<u64>(), Some(&i));
        }
    }
    let per_delivery = began.elapsed().as_nanos() as f64 / (events as f64 * subscribers as f64);
    assert_eq!(bus.queued(), 0);

    let mode = if quick {
        "quick (numbers are meaningless)"
    } else {
        "full"
    };
    println!("# scale benchmark: {mode}, tokio current-thread\n");
    println!(
        "| jobs in flight | ours ns/job | baseline ns/job | ratio | ours heap B/job | baseline heap B/job |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (n, ns, bytes, base_ns, base_bytes) in rows {
        println!(
            "| {n} | {ns:.0} | {base_ns:.0} | {:.2}x | {bytes:.0} | {base_bytes:.0} |",
            ns / base_ns
        );
    }
    println!(
        "\nbus: {subscribers} subscribers, {events} events: {per_delivery:.1} ns per delivery"
    );
}
