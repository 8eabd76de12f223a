//! The randomized soak (`orchestrator_core::conformance::soak`) on tokio, multi-thread (2
//! workers) and current-thread, with the heap checked back at its baseline afterwards.
//!
//! `SOAK_JOBS` sets the number of jobs per scheduler (default 100,000: about 7 s each in a
//! debug build, 3 s in release, on 2 cores; the jobs sleep for real) and `SOAK_SEED` the
//! seed. A violation prints the `SOAK_SEED=.. SOAK_JOBS=..` that replays the workload.

use std::sync::{Arc, Mutex, PoisonError};

use orchestrator_core::conformance::soak;
use orchestrator_tokio::TokioRuntime;

#[path = "../../../tests/support/live_heap.rs"]
mod live_heap;

use live_heap::live_bytes;

/// The heap is one counter for the process: the two schedulers' soaks take turns, each from
/// building its runtime on (a runtime built during the other's soak would count as growth).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn soak_on(build: fn() -> std::io::Result<tokio::runtime::Runtime>) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let runtime = build().expect("a tokio runtime");
    let jobs = soak::env_u64("SOAK_JOBS", 100_000);
    let seed = soak::env_u64("SOAK_SEED", soak::DEFAULT_SEED);
    let (report, heap) = soak::guarded(jobs, seed, || {
        runtime.block_on(soak::run_measured(
            Arc::new(TokioRuntime::default()),
            jobs,
            seed,
            live_bytes,
        ))
    });
    eprintln!("{report}\n{heap}");
    report.assert_clean();
    heap.assert_back_to_baseline(&report);
}

#[test]
fn soak_multi_thread() {
    soak_on(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    });
}

#[test]
fn soak_current_thread() {
    soak_on(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    });
}
