//! The randomized soak (`orchestrator_core::conformance::soak`) on the virtual runtime, where
//! the seed fixes the interleaving too: a violation reproduces exactly.
//!
//! It mixes successes, errors, panics, total and per-attempt timeouts, cancellation before the
//! start, mid-run, during backoff and on shared tokens, retries with jitter, cache hits and
//! revalidation, dedup joins, and a share of the jobs through an orchestrator; it checks that
//! every handle resolves once, that every job publishes exactly one terminal lifecycle event
//! and nothing after it, that a dispatch whose token was cancelled beforehand never succeeds
//! (cache hit included), and that no job stays in flight or tracked after each batch. The
//! adapters run the same soak on their runtimes (`crates/orchestrator-*/tests/soak.rs`).
//!
//! `SOAK_JOBS` sets the number of jobs (default 20,000) and `SOAK_SEED` the seed; a violation
//! prints the seed that reproduces it.

use std::sync::Arc;

use orchestrator_core::conformance::soak;
use orchestrator_core::testing::VirtualRuntime;

#[test]
fn randomized_soak_every_job_ends_exactly_once() {
    let jobs = soak::env_u64("SOAK_JOBS", 20_000);
    let seed = soak::env_u64("SOAK_SEED", soak::DEFAULT_SEED);
    let report = soak::guarded(jobs, seed, || {
        let rt = VirtualRuntime::new();
        let report = rt.block_on(soak::run(Arc::new(rt.clone()), jobs, seed));
        // Every task the soak started ends (the orchestrator's loop, once disposed).
        rt.run_until_stalled();
        assert!(rt.pool().is_empty(), "tasks left on the virtual runtime");
        report
    });
    eprintln!("{report}");
    report.assert_clean();
}
