//! Orchestrator event handling throughput: an orchestrator whose `on_event` counts events into
//! its state, against a hand-rolled task that reads a raw `Subscription` of another bus and
//! counts into an atomic, in the same run on tokio current-thread.
//!
//! `cargo bench --bench orchestrator` prints a Markdown table; `BENCH_QUICK=1` (or `--quick`, or
//! an unoptimized build) runs tiny counts. Nothing asserts on timings; the counts are checked.

mod common;

use common::events::{Orchestrated, RawLoop};
use common::median;

fn main() {
    let quick = common::quick_mode();
    let (rounds, samples): (u64, usize) = if quick { (2, 3) } else { (200, 5) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (ours_ns, base_ns) = runtime.block_on(async {
        let ours = Orchestrated::start();
        let raw = RawLoop::start();

        // Warm up both.
        ours.run(rounds.div_ceil(4)).await;
        raw.run(rounds.div_ceil(4)).await;
        let per_event =
            |d: std::time::Duration| d.as_nanos() as f64 / (rounds * common::events::BURST) as f64;
        let (mut o, mut b) = (Vec::new(), Vec::new());
        for sample in 0..samples {
            if sample % 2 == 0 {
                o.push(per_event(ours.run(rounds).await));
                b.push(per_event(raw.run(rounds).await));
            } else {
                b.push(per_event(raw.run(rounds).await));
                o.push(per_event(ours.run(rounds).await));
            }
        }
        ours.finish();
        raw.finish();
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
