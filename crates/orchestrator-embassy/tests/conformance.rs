//! The conformance suite on embassy's std executor. Every case runs as an embassy task (so
//! its timers are polled where embassy-time's integrated queue expects them), in a small pool
//! of its own; the jobs go into a pool sized for the largest cases: two cases of 10,000
//! concurrent jobs may run at once on the test threads, and a full pool would reject jobs the
//! cases expect to run.

mod support;

use std::sync::Arc;

use orchestrator_embassy::{EmbassyRuntime, job_pool};

job_pool!(static CASES: 64;);
job_pool!(static CONFORMANCE_JOBS: 32_768;);

orchestrator_core::conformance_suite!(|case| {
    let cases = EmbassyRuntime::with_pool(support::spawner(), CASES);
    let jobs = EmbassyRuntime::with_pool(support::spawner(), CONFORMANCE_JOBS);
    support::run_on_executor(&cases, case(Arc::new(jobs)));
});
