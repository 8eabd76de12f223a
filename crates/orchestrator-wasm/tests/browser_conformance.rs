//! The core's conformance suite in a browser (headless Chromium in CI), on [`WasmRuntime`].
//!
//! The suite's own macro (`conformance_suite!`) generates `#[test]` functions that block on
//! each case; a browser cannot block, so here each case is an async `#[wasm_bindgen_test]`
//! that the test runner awaits, run under the suite's watchdog by `run_case`. The list below
//! is the suite's, minus the cases that cannot run in a browser (`tests/case_list.rs` checks
//! on the host that the two lists stay in step):
//!
//! - `panic_becomes_failure_and_dispatcher_keeps_working`: `wasm32-unknown-unknown` builds
//!   with `panic = "abort"`, so an executor's panic cannot be caught and turned into a failed
//!   outcome; it aborts the whole wasm instance.

#![cfg(target_arch = "wasm32")]

use std::sync::Arc;

use orchestrator_core::conformance::{cases, run_case};
use orchestrator_wasm::WasmRuntime;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

macro_rules! browser_cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[wasm_bindgen_test]
            async fn $name() {
                run_case(Arc::new(WasmRuntime::new()), cases::$name).await;
            }
        )*
    };
}

browser_cases! {
    dispatch_resolves_with_output_and_fresh_source,
    job_ids_are_unique_and_match_the_context,
    missing_executor_is_rejected_with_the_type_name,
    registering_twice_replaces_the_executor,
    dispatch_returns_before_the_work_completes,
    dropping_the_handle_does_not_cancel,
    executor_error_fails_after_one_attempt,
    retry_until_success_counts_attempts,
    retry_exhaustion_yields_exactly_one_failure,
    should_retry_false_stops_retrying,
    cancel_before_start_never_runs_the_executor,
    cancel_mid_run_drops_the_work_of_an_ignoring_executor,
    token_cancel_mid_run_cancels_the_job,
    cancel_during_backoff_stops_at_once,
    total_timeout_drops_hanging_work,
    zero_timeout_times_out_without_running,
    timeout_during_retries_is_timed_out,
    attempt_timeout_is_retried,
    shared_token_cancels_every_job_it_is_shared_by,
    child_token_cancel_is_scoped,
    progress_stream_is_ordered_and_ends_with_the_last_value,
    late_progress_subscriber_gets_the_latest_then_the_end,
    progress_after_the_outcome_goes_nowhere,
    cancel_after_completion_is_ignored,
    many_concurrent_jobs_all_resolve_once,
    shutdown_rejects_new_dispatches_and_running_jobs_finish,
    context_sleep_and_clock_use_the_runtime,
    cancel_racing_completion_gives_one_outcome_each,
    bus_delivers_every_event_in_order_to_every_subscriber,
    event_job_and_lifecycle_events_arrive_in_order,
    two_orchestrators_see_one_job_as_active_and_passive,
    three_concurrent_jobs_are_all_active,
    scoped_bus_isolation,
    tracked_before_observed_every_first_event_is_active,
    dispose_while_a_job_runs,
    cache_hit_and_revalidation,
    dedup_joins_the_dispatch_in_flight,
    breaker_rejects_while_open_and_a_trial_closes_it,
    saga_over_dispatched_jobs_rolls_back_in_reverse,
}
