//! `JobResultExt` on every handle outcome, and the `AsyncState` transition table.

use std::time::Duration;

use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    AsyncState, DataSource, Dispatch, Dispatcher, Executor, Job, JobContext, JobError, JobResult,
    JobResultExt, Rejection, Success,
};

// ---------------------------------------------------------------------------------------------
// JobResult

#[derive(Debug, PartialEq)]
struct Boom(u32);
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "boom {}", self.0)
    }
}
impl std::error::Error for Boom {}

/// Sleeps `sleep`, then returns `value` or fails with `Boom(value)`.
struct Work {
    value: u32,
    fail: bool,
    sleep: Duration,
}
impl Job for Work {
    type Output = u32;
}
struct Worker;
impl Executor<Work> for Worker {
    type Error = Boom;
    async fn execute(&self, job: &Work, cx: JobContext) -> Result<u32, Boom> {
        cx.sleep(job.sleep).await;
        if job.fail {
            Err(Boom(job.value))
        } else {
            Ok(job.value)
        }
    }
}

struct Unregistered;
impl Job for Unregistered {
    type Output = u32;
}

fn setup() -> (VirtualRuntime, Dispatcher<VirtualRuntime>) {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(Worker);
    (rt, dispatcher)
}

fn work(value: u32, fail: bool, sleep: Duration) -> Work {
    Work { value, fail, sleep }
}

/// The executor failed, or the job was rejected before it ran (what the old
/// `JobResult::is_failure` meant).
fn is_failure<T>(result: &JobResult<T>) -> bool {
    result
        .error()
        .is_some_and(|e| e.is_failed() || e.is_rejected())
}

/// Maps the value of a success, keeping its source.
fn map<T, U>(result: JobResult<T>, f: impl FnOnce(T) -> U) -> JobResult<U> {
    result.map(|s| Success {
        value: f(s.value),
        data_source: s.data_source,
    })
}

#[test]
fn job_result_from_a_successful_handle_keeps_value_and_source() {
    let (rt, d) = setup();
    let result: JobResult<u32> = rt.block_on(d.dispatch(work(7, false, Duration::ZERO)));
    assert!(result.is_success());
    assert!(!is_failure(&result) && !result.is_cancelled() && !result.is_timed_out());
    assert_eq!(result.data(), Some(&7));
    assert_eq!(result.data_source(), Some(DataSource::Fresh));
    assert!(result.error().is_none());
    assert_eq!(result.into_data(), Some(7));
}

#[test]
fn job_result_keeps_a_cached_or_optimistic_source() {
    for source in [DataSource::Cached, DataSource::Optimistic] {
        let result: JobResult<u8> = Ok(Success {
            value: 1u8,
            data_source: source,
        });
        assert_eq!(result.data_source(), Some(source));
        let mapped = map(result, |v| u32::from(v) + 1);
        assert_eq!(mapped.data_source(), Some(source));
        assert_eq!(mapped.data(), Some(&2));
    }
}

#[test]
fn job_result_from_a_failed_handle_is_a_failure_with_the_executor_error() {
    let (rt, d) = setup();
    let result = rt.block_on(d.dispatch(work(3, true, Duration::ZERO)));
    assert!(is_failure(&result));
    assert!(!result.is_success() && !result.is_cancelled() && !result.is_timed_out());
    assert!(result.data().is_none());
    assert!(result.data_source().is_none());
    let error = result.error().expect("a failure carries its error");
    let failure = error.failure().expect("the executor failed");
    assert_eq!(failure.downcast_ref::<Boom>(), Some(&Boom(3)));
    assert_eq!(failure.attempts(), 1);
    // Mapping the value leaves a failure untouched.
    let mapped = map(result, |v| v * 2);
    assert!(mapped.error().is_some_and(JobError::is_failed));
}

#[test]
fn job_result_from_a_cancelled_handle_keeps_the_reason() {
    let (rt, d) = setup();
    let handle = d.dispatch(work(1, false, Duration::from_secs(3600)));
    handle.cancel_with("user left");
    let result = rt.block_on(handle);
    assert!(result.is_cancelled());
    assert!(!result.is_success() && !is_failure(&result) && !result.is_timed_out());
    assert!(result.data().is_none());
    match result.error() {
        Some(JobError::Cancelled { reason }) => assert_eq!(reason.as_deref(), Some("user left")),
        other => panic!("expected cancelled, got {other:?}"),
    }
}

#[test]
fn job_result_from_a_cancelled_handle_without_reason() {
    let (rt, d) = setup();
    let handle = d.dispatch(work(1, false, Duration::from_secs(3600)));
    handle.cancel();
    let result: JobResult<u32> = rt.block_on(handle);
    assert!(result.is_cancelled());
    assert!(matches!(result, Err(JobError::Cancelled { reason: None })));
}

#[test]
fn job_result_from_a_timed_out_handle_keeps_the_budget() {
    let (rt, d) = setup();
    let budget = Duration::from_millis(250);
    let handle = d
        .job(work(1, false, Duration::from_secs(10)))
        .timeout(budget)
        .dispatch();
    let result = rt.block_on(handle);
    assert!(result.is_timed_out());
    assert!(!result.is_success() && !is_failure(&result) && !result.is_cancelled());
    assert!(result.data().is_none());
    assert!(matches!(
        result.error(),
        Some(JobError::TimedOut { budget: b }) if *b == budget
    ));
}

#[test]
fn job_result_from_a_rejected_handle_is_a_failure_keeping_the_rejection() {
    let (rt, d) = setup();
    let result = rt.block_on(d.dispatch(Unregistered));
    assert!(is_failure(&result));
    assert!(!result.is_success() && !result.is_cancelled() && !result.is_timed_out());
    let rejection = result
        .error()
        .and_then(JobError::rejection)
        .expect("a rejection is kept");
    assert!(
        matches!(rejection, Rejection::NoExecutor { job_type } if job_type.contains("Unregistered"))
    );
    assert!(result.is_err_and(|e| e.is_rejected()));
}

#[test]
fn job_result_from_a_shut_down_dispatcher_is_a_failure() {
    let (rt, d) = setup();
    d.close();
    let result = rt.block_on(d.dispatch(work(1, false, Duration::ZERO)));
    assert!(is_failure(&result));
    assert!(result.error().is_some_and(JobError::is_rejected));
}

#[test]
fn job_result_round_trips_a_success() {
    let result: JobResult<&str> = Ok(Success {
        value: "x",
        data_source: DataSource::Cached,
    });
    assert_eq!(result.data(), Some(&"x"));
    assert_eq!(result.data_source(), Some(DataSource::Cached));
    // A `JobResult` is the handle's outcome itself: nothing to convert back.
    match result {
        Ok(success) => assert_eq!(
            success,
            Success {
                value: "x",
                data_source: DataSource::Cached
            }
        ),
        Err(e) => panic!("expected a success, got {e:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// AsyncState

type S = AsyncState<&'static str, &'static str>;

#[derive(Debug, Clone, Copy)]
enum Call {
    Loading,
    Success,
    Failure,
    Refreshing,
}

fn apply(mut state: S, call: Call) -> S {
    match call {
        Call::Loading => state.set_loading(),
        Call::Success => state.set_success("new"),
        Call::Failure => state.set_failure("err"),
        Call::Refreshing => state.set_refreshing(),
    }
    state
}

/// Every state a screen can be in, with and without earlier data.
fn all_states() -> Vec<S> {
    vec![
        S::Initial,
        S::Loading { data: None },
        S::Loading { data: Some("old") },
        S::Success { data: "old" },
        S::Failure {
            error: "prev",
            data: None,
        },
        S::Failure {
            error: "prev",
            data: Some("old"),
        },
        S::Refreshing { data: "old" },
    ]
}

/// The table in the `state` module docs, written out independently of the implementation.
fn expected(from: &S, call: Call) -> S {
    let data = match from {
        S::Initial | S::Loading { data: None } | S::Failure { data: None, .. } => None,
        _ => Some("old"),
    };
    match call {
        Call::Loading => S::Loading { data },
        Call::Success => S::Success { data: "new" },
        Call::Failure => S::Failure { error: "err", data },
        Call::Refreshing => match data {
            Some(data) => S::Refreshing { data },
            None => S::Loading { data: None },
        },
    }
}

#[test]
fn async_state_transition_table() {
    let mut checked = 0;
    for from in all_states() {
        for call in [
            Call::Loading,
            Call::Success,
            Call::Failure,
            Call::Refreshing,
        ] {
            let to = apply(from.clone(), call);
            assert_eq!(to, expected(&from, call), "{from:?} --{call:?}-->");
            checked += 1;
        }
    }
    assert_eq!(checked, 28);
}

#[test]
fn async_state_failure_keeps_data() {
    let mut state = S::Success { data: "users" };
    state.set_failure("offline");
    assert_eq!(state.data(), Some(&"users"));
    assert_eq!(state.error(), Some(&"offline"));
    assert!(state.is_failure() && state.has_data());

    // A second failure replaces the error and still keeps the data.
    state.set_failure("still offline");
    assert_eq!(
        state,
        S::Failure {
            error: "still offline",
            data: Some("users")
        }
    );

    let mut refreshing = S::Refreshing { data: "users" };
    refreshing.set_failure("offline");
    assert_eq!(refreshing.data(), Some(&"users"));
}

#[test]
fn async_state_loading_and_success_clear_the_error() {
    let failed = S::Failure {
        error: "offline",
        data: Some("users"),
    };

    let mut loading = failed.clone();
    loading.set_loading();
    assert!(loading.error().is_none());
    assert!(loading.is_loading() && !loading.is_refreshing());
    assert_eq!(loading.data(), Some(&"users"));

    let mut succeeded = failed.clone();
    succeeded.set_success("fresh users");
    assert!(succeeded.error().is_none());
    assert_eq!(
        succeeded,
        S::Success {
            data: "fresh users"
        }
    );

    let mut refreshing = failed;
    refreshing.set_refreshing();
    assert!(refreshing.error().is_none());
    assert_eq!(refreshing, S::Refreshing { data: "users" });
}

#[test]
fn async_state_refreshing_keeps_data_and_needs_it() {
    let mut state = S::Success { data: "users" };
    state.set_refreshing();
    assert!(state.is_loading() && state.is_refreshing());
    assert_eq!(state.data(), Some(&"users"));
    state.set_success("fresh");
    assert_eq!(state, S::Success { data: "fresh" });

    let mut empty = S::Failure {
        error: "offline",
        data: None,
    };
    empty.set_refreshing();
    assert_eq!(empty, S::Loading { data: None });
    assert!(!empty.is_refreshing() && !empty.has_data());
}

#[test]
fn async_state_predicates() {
    let cases: [(S, [bool; 6]); 5] = [
        // initial, loading, refreshing, success, failure, has_data
        (S::Initial, [true, false, false, false, false, false]),
        (
            S::Loading { data: Some("d") },
            [false, true, false, false, false, true],
        ),
        (
            S::Success { data: "d" },
            [false, false, false, true, false, true],
        ),
        (
            S::Failure {
                error: "e",
                data: None,
            },
            [false, false, false, false, true, false],
        ),
        (
            S::Refreshing { data: "d" },
            [false, true, true, false, false, true],
        ),
    ];
    for (state, want) in cases {
        let got = [
            state.is_initial(),
            state.is_loading(),
            state.is_refreshing(),
            state.is_success(),
            state.is_failure(),
            state.has_data(),
        ];
        assert_eq!(got, want, "{state:?}");
    }
    assert_eq!(S::default(), S::Initial);
}

#[test]
fn async_state_settle_and_maps() {
    let mut state = S::Loading { data: Some("old") };
    state.settle(Err("offline"));
    assert_eq!(
        state,
        S::Failure {
            error: "offline",
            data: Some("old")
        }
    );
    let mapped = state
        .clone()
        .map_data(str::len)
        .map_error(|e| e.len() as u8);
    assert_eq!(
        mapped,
        AsyncState::Failure {
            error: 7,
            data: Some(3)
        }
    );
    state.settle(Ok("new"));
    assert_eq!(state, S::Success { data: "new" });
    assert_eq!(state.into_data(), Some("new"));
}

#[test]
fn async_state_settles_from_a_job_handle() {
    let (rt, d) = setup();
    let mut state: AsyncState<u32, JobError> = AsyncState::Success { data: 1 };
    state.set_refreshing();
    state.settle(
        rt.block_on(d.dispatch(work(2, false, Duration::ZERO)))
            .map(Success::into_value),
    );
    assert_eq!(state.data(), Some(&2));

    state.set_refreshing();
    state.settle(
        rt.block_on(d.dispatch(work(3, true, Duration::ZERO)))
            .map(Success::into_value),
    );
    assert!(state.is_failure());
    assert_eq!(
        state.data(),
        Some(&2),
        "the failed refresh keeps the shown data"
    );
    assert!(state.error().is_some_and(JobError::is_failed));
}

/// With `serde`, `AsyncState` is serializable whenever its data and error are (no format
/// crate is a dependency, so this checks the derive and its bounds rather than a round trip).
#[cfg(feature = "serde")]
#[test]
fn async_state_is_serde_with_the_feature() {
    fn serde<T: serde::Serialize + serde::de::DeserializeOwned>() {}
    serde::<AsyncState<Vec<String>, String>>();
    serde::<AsyncState<u32, ()>>();
}
