//! Orchestrator event handling throughput: an orchestrator whose `on_event` counts events into
//! its state, against a hand-rolled task that reads a raw `Subscription` of the same bus and
//! counts into an atomic, in the same run on tokio current-thread.
//!
//! `cargo bench --bench orchestrator` prints a Markdown table; `BENCH_QUICK=1` (or `--quick`, or
//! an unoptimized build) runs tiny counts. Nothing asserts on timings; the counts are checked.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use orchestrator_core::{
    Dispatcher, Event, Orchestrator, OrchestratorContext, OrchestratorHandle, Origin, SignalBus,
};
use orchestrator_tokio::TokioRuntime;

mod common;

use common::median;

/// Counts every event it handles.
struct Counter;

impl Orchestrator for Counter {
    type State = u64;

    fn on_event(&mut self, event: &Event, _origin: Origin, cx: &mut OrchestratorContext<'_, u64>) {
        if event.is::<u64>() {
            cx.update(|n| *n += 1);
        }
    }
}

const BURST: u64 = 1024;

/// Publishes `rounds` bursts and waits until the orchestrator counted them all.
async fn ours(bus: &SignalBus, handle: &OrchestratorHandle<u64>, rounds: u64) -> Duration {
    let start_count = handle.state();
    let target = start_count + rounds * BURST;
    let began = Instant::now();
    for round in 0..rounds {
        for i in 0..BURST {
            bus.publish(Event::new(round * BURST + i))
                .expect("the bus is open");
        }
        tokio::task::yield_now().await;
    }
    let n = handle
        .states()
        .wait_for(|n| *n >= target)
        .await
        .expect("the orchestrator runs");
    assert_eq!(n, target, "every event handled exactly once");
    began.elapsed()
}

/// The same with a raw subscription loop counting into an atomic.
async fn baseline(
    bus: &SignalBus,
    counted: &AtomicU64,
    notify: &tokio::sync::Notify,
    rounds: u64,
) -> Duration {
    let target = counted.load(Ordering::Acquire) + rounds * BURST;
    let began = Instant::now();
    for round in 0..rounds {
        for i in 0..BURST {
            bus.publish(Event::new(round * BURST + i))
                .expect("the bus is open");
        }
        tokio::task::yield_now().await;
    }
    loop {
        let waiting = notify.notified();
        let n = counted.load(Ordering::Acquire);
        if n >= target {
            assert_eq!(n, target, "every event counted exactly once");
            break;
        }
        waiting.await;
    }
    began.elapsed()
}

fn main() {
    let quick = common::quick_mode();
    let (rounds, samples): (u64, usize) = if quick { (2, 3) } else { (200, 5) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (ours_ns, base_ns) = runtime.block_on(async {
        let dispatcher = Dispatcher::new(TokioRuntime::default());
        // The default loop guard: it cuts by causal depth only, so a burst (every event here
        // is published from outside any handler, at depth 0) is delivered in full.
        let handle = Counter
            .builder(0, &dispatcher)
            .start()
            .expect("the orchestrator starts");
        let bus = dispatcher.bus().clone();

        let raw_bus = SignalBus::new();
        let counted = Arc::new(AtomicU64::new(0));
        let notify = Arc::new(tokio::sync::Notify::new());
        let mut subscription = raw_bus.subscribe();
        let (c, n) = (counted.clone(), notify.clone());
        tokio::spawn(async move {
            while let Some(event) = subscription.next().await {
                if event.is::<u64>() {
                    c.fetch_add(1, Ordering::Release);
                    n.notify_one();
                }
            }
        });

        // Warm up both.
        ours(&bus, &handle, rounds.div_ceil(4)).await;
        baseline(&raw_bus, &counted, &notify, rounds.div_ceil(4)).await;
        let per_event = |d: Duration| d.as_nanos() as f64 / (rounds * BURST) as f64;
        let (mut o, mut b) = (Vec::new(), Vec::new());
        for sample in 0..samples {
            if sample % 2 == 0 {
                o.push(per_event(ours(&bus, &handle, rounds).await));
                b.push(per_event(
                    baseline(&raw_bus, &counted, &notify, rounds).await,
                ));
            } else {
                b.push(per_event(
                    baseline(&raw_bus, &counted, &notify, rounds).await,
                ));
                o.push(per_event(ours(&bus, &handle, rounds).await));
            }
        }
        assert_eq!(handle.dropped_events(), 0, "the loop guard drops no burst");
        handle.dispose();
        (median(o), median(b))
    });
    let mode = if quick {
        "quick (numbers are meaningless)"
    } else {
        "full"
    };
    println!("# orchestrator benchmark: {mode}, {samples} samples, median, tokio current-thread\n");
    println!("| what | ns/event | events/s |");
    println!("|---|---:|---:|");
    println!(
        "| orchestrator on_event (state update per event) | {ours_ns:.1} | {:.0} |",
        1e9 / ours_ns
    );
    println!(
        "| raw subscription loop + atomic counter (baseline) | {base_ns:.1} | {:.0} |",
        1e9 / base_ns
    );
    println!("\nratio ours / baseline: {:.2}x", ours_ns / base_ns);
}
