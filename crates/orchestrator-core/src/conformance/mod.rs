//! The conformance suite every runtime adapter runs (feature `conformance`).
//!
//! It is written once, here, against the [`Runtime`] traits, and instantiated in each
//! adapter's `tests/` by [`conformance_suite!`](crate::conformance_suite). Every case is a
//! plain `async fn(Arc<dyn Runtime>)` in [`cases`] that panics when the behaviour it checks is broken.
//!
//! The cases never assert on wall-clock time: they synchronise with [`Gate`]s, and use real
//! timers only where a timer is the thing under test, with bounds that cannot be missed on a
//! loaded machine (a hanging executor against a 20 ms budget). Each case runs under a
//! 60-second watchdog so that a broken adapter fails instead of hanging CI.
//!
//! ```text
//! // crates/orchestrator-smol/tests/conformance.rs
//! orchestrator_core::conformance_suite!(|case| {
//!     smol::block_on(case(std::sync::Arc::new(orchestrator_smol::SmolRuntime::default())))
//! });
//! ```

pub mod cases;
pub mod soak;
mod support;

use core::future::Future;
use core::pin::{Pin, pin};
use core::task::Poll;
use core::time::Duration;

use crate::runtime::Runtime;
use crate::sync::Arc;

pub use support::{DropFlag, Gate};

std::thread_local! {
    /// `true` while a case of the local flavour is being polled on this thread.
    static LOCAL: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Returns `true` while a case of the local flavour is being polled on this thread.
fn is_local() -> bool {
    LOCAL.with(core::cell::Cell::get)
}

/// Runs `case` on `runtime` in the **local flavour**: every executor the case registers is
/// registered with [`Dispatcher::register_local`](crate::Dispatcher::register_local) as a
/// local executor that is neither `Send` nor `Sync` and whose futures are not `Send`, and
/// every orchestrator starts with
/// [`start_local`](crate::OrchestratorBuilder::start_local). Otherwise as [`run_case`].
///
/// # Panics
///
/// Panics if the case fails, times out, or if `runtime` cannot run tasks that are not `Send`
/// ([`Spawn::local`](crate::runtime::Spawn::local) is `None`).
pub async fn run_case_local<F, Fut>(runtime: Arc<dyn Runtime>, case: F)
where
    F: FnOnce(Arc<dyn Runtime>) -> Fut,
    Fut: Future<Output = ()>,
{
    assert!(
        runtime.local().is_some(),
        "the local flavour needs a runtime that runs tasks that are not `Send`"
    );
    let mut run = pin!(run_case(runtime, case));
    // The flavour is on only while the case itself runs (its registrations happen then).
    core::future::poll_fn(|cx| {
        struct Reset(bool);
        impl Drop for Reset {
            fn drop(&mut self) {
                LOCAL.with(|l| l.set(self.0));
            }
        }
        let _reset = Reset(LOCAL.with(|l| l.replace(true)));
        run.as_mut().poll(cx)
    })
    .await;
}

/// How long one case may run before the watchdog fails it.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `case` on `runtime`, failing it if it outlives [`WATCHDOG`].
///
/// # Panics
///
/// Panics if the case panics or times out (it is a test harness).
pub async fn run_case<F, Fut>(runtime: Arc<dyn Runtime>, case: F)
where
    F: FnOnce(Arc<dyn Runtime>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut watchdog = runtime.sleep(WATCHDOG);
    let mut case = pin!(case(runtime));
    core::future::poll_fn(|cx| {
        if case.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if Pin::new(&mut watchdog).poll(cx).is_ready() {
            panic!("conformance case did not finish within {WATCHDOG:?}");
        }
        Poll::Pending
    })
    .await;
}

/// Generates one `#[test]` per conformance case, in a module named `conformance`.
///
/// The argument is a closure-like block: `|case| { ... }`, where `case` is a function from
/// `Arc<dyn Runtime>` to the case's future; the block must run it to completion on the
/// runtime under test.
///
/// `conformance_suite!(local |case| { ... })` generates the same tests in a module named
/// `conformance_local`, each case run by [`run_case_local`] (the runtime must run tasks that
/// are not `Send`):
///
/// ```text
/// orchestrator_core::conformance_suite!(local |case| {
///     let rt = orchestrator_core::testing::VirtualRuntime::new();
///     rt.block_on(case(std::sync::Arc::new(rt.clone())));
/// });
/// ```
#[macro_export]
macro_rules! conformance_suite {
    (|$case:ident| $body:block) => {
        $crate::conformance_cases!($crate::__conformance_tests; conformance run_case |$case| $body;);
    };
    (local |$case:ident| $body:block) => {
        $crate::conformance_cases!($crate::__conformance_tests; conformance_local run_case_local |$case| $body;);
    };
}

/// Passes the names of the conformance cases (functions of [`cases`]) to a macro of yours,
/// for hosts whose tests cannot block on a case as [`conformance_suite!`](crate::conformance_suite)
/// does (a browser's test runner awaits async tests, for example).
///
/// `conformance_cases!(your_macro; tokens...)` expands to `your_macro! { tokens...
/// [unwind: ...] [all: ...] }`: first the cases that need a panic to unwind (an executor's
/// panic becoming a failed outcome; compile them under `#[cfg(panic = "unwind")]`), then every
/// other case.
///
/// It expands where items go (a module, a test file), not inside an expression:
///
/// ```
/// macro_rules! names {
///     ([unwind: $($u:ident),*] [all: $($name:ident),*]) => {
///         const UNWIND: &[&str] = &[$(stringify!($u)),*];
///         const ALL: &[&str] = &[$(stringify!($name)),*];
///     };
/// }
/// orchestrator_core::conformance_cases!(names;);
///
/// fn main() {
///     assert_eq!(UNWIND, ["panic_becomes_failure_and_dispatcher_keeps_working"]);
///     assert_eq!(ALL.len(), 39);
///     assert!(ALL.contains(&"scoped_bus_isolation"));
/// }
/// ```
#[macro_export]
macro_rules! conformance_cases {
    ($callback:path; $($prefix:tt)*) => {
        $callback! { $($prefix)*
            [unwind: panic_becomes_failure_and_dispatcher_keeps_working]
            [all:
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
                saga_over_dispatched_jobs_rolls_back_in_reverse
            ]
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($module:ident $run:ident |$case:ident| $body:block; [unwind: $($unwind:ident),*] [all: $($name:ident),* $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $( $crate::__conformance_tests!(@test #[cfg(panic = "unwind")] $unwind $run |$case| $body); )*
            $( $crate::__conformance_tests!(@test $name $run |$case| $body); )*
        }
    };
    (@test $(#[$attr:meta])* $name:ident $run:ident |$case:ident| $body:block) => {
        $(#[$attr])*
        #[test]
        fn $name() {
            let $case = |rt: ::std::sync::Arc<dyn $crate::runtime::Runtime>| {
                $crate::conformance::$run(rt, $crate::conformance::cases::$name)
            };
            $body
        }
    };
}
