//! The randomized soak (`orchestrator_core::conformance::soak`) on smol's global
//! executor, with the heap checked back at its baseline afterwards.
//!
//! `SOAK_JOBS` sets the number of jobs (default 100,000: about 6 s in a debug build, 3 s in
//! release, on 2 cores; the jobs sleep for real) and `SOAK_SEED` the seed. A violation prints
//! the `SOAK_SEED=.. SOAK_JOBS=..` that replays the workload.

use std::sync::Arc;

use orchestrator_core::conformance::soak;
use orchestrator_smol::SmolRuntime;

#[path = "../../../tests/support/live_heap.rs"]
mod live_heap;

use live_heap::live_bytes;

#[test]
fn soak() {
    let jobs = soak::env_u64("SOAK_JOBS", 100_000);
    let seed = soak::env_u64("SOAK_SEED", soak::DEFAULT_SEED);
    let (report, heap) = soak::guarded(jobs, seed, || {
        smol::block_on(soak::run_measured(
            Arc::new(SmolRuntime::default()),
            jobs,
            seed,
            live_bytes,
        ))
    });
    eprintln!("{report}\n{heap}");
    report.assert_clean();
    heap.assert_back_to_baseline(&report);
}
