//! The conformance cases, one `async fn` per behaviour.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::Context;
use core::time::Duration;

use futures_core::{FusedFuture, Stream};

use super::support::{
    Add, AddExec, Added, Boom, BoomExec, Flaky, FlakyExec, Hang, HangExec, Probe, Report,
    ReportExec, Sightings, Tally, TestError, Value, ValueExec, Watcher,
};
use crate::runtime::Runtime;
use crate::sync::Arc;
use crate::{CancellationToken, DataSource, Dispatch, Dispatcher, JobError, RetryPolicy};

const HOUR: Duration = Duration::from_secs(3600);
const SHORT: Duration = Duration::from_millis(20);

fn dispatcher(rt: &Arc<dyn Runtime>) -> Dispatcher {
    Dispatcher::with_runtime(rt.clone())
}

/// Registers `executor` in the flavour under test: as it is, or (in the local flavour) as a
/// local executor that is neither `Send` nor `Sync` and whose futures are not `Send`.
fn register<J: crate::Job, E: crate::Executor<J>>(d: &Dispatcher, executor: E) {
    if super::is_local() {
        d.register_local(super::support::AsLocal::new(executor));
    } else {
        d.register(executor);
    }
}

/// Starts an orchestrator in the flavour under test.
fn start<O: crate::Orchestrator + Send>(
    builder: crate::OrchestratorBuilder<O>,
) -> Result<crate::OrchestratorHandle<O::State>, crate::OrchestratorError> {
    if super::is_local() {
        builder.start_local()
    } else {
        builder.start()
    }
}

fn next<S: Stream + Unpin>(stream: &mut S) -> impl Future<Output = Option<S::Item>> + '_ {
    core::future::poll_fn(move |cx| Pin::new(&mut *stream).poll_next(cx))
}

/// Polls `fut` once; `true` if it was still pending.
fn is_pending<F: Future + Unpin>(fut: &mut F) -> bool {
    let waker = core::task::Waker::noop();
    Pin::new(fut)
        .poll(&mut Context::from_waker(waker))
        .is_pending()
}

fn cancelled_reason(err: &JobError) -> Option<&str> {
    match err {
        JobError::Cancelled { reason } => reason.as_deref(),
        other => panic!("expected cancelled, got {other:?}"),
    }
}

/// A registered job resolves with its executor's output, as `Fresh` data.
pub async fn dispatch_resolves_with_output_and_fresh_source(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(
        &d,
        ValueExec {
            add: 1,
            probe: probe.clone(),
        },
    );
    let done = d.dispatch(Value(41)).await.expect("success");
    assert_eq!(done.value, 42);
    assert_eq!(done.data_source, DataSource::Fresh);
    assert_eq!(probe.calls(), 1);
}

/// Every dispatch gets a fresh id, and the executor sees the handle's id.
pub async fn job_ids_are_unique_and_match_the_context(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(
        &d,
        ValueExec {
            add: 0,
            probe: probe.clone(),
        },
    );
    let handles: Vec<_> = (0..100).map(|i| d.dispatch(Value(i))).collect();
    let mut ids: Vec<_> = handles.iter().map(|h| h.id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100, "ids are unique");
    for h in handles {
        h.await.expect("success");
    }
    let mut seen = probe.ids.with(core::mem::take);
    seen.sort();
    assert_eq!(seen, ids, "each executor call saw its own dispatch's id");
}

/// No executor is an error value naming the job type, through the handle.
pub async fn missing_executor_is_rejected_with_the_type_name(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let err = d.dispatch(Value(1)).await.expect_err("no executor");
    match err.rejection() {
        Some(crate::Rejection::NoExecutor { job_type }) => {
            assert!(job_type.ends_with("Value"), "{job_type}");
        }
        other => panic!("expected NoExecutor, got {other:?}"),
    }
    assert!(err.to_string().contains("Value"));
    assert!(!d.is_registered::<Value>());
}

/// Registering a second executor for a type replaces the first.
pub async fn registering_twice_replaces_the_executor(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let (p1, p2) = (Probe::new(), Probe::new());
    register(
        &d,
        ValueExec {
            add: 100,
            probe: p1.clone(),
        },
    );
    register(
        &d,
        ValueExec {
            add: 200,
            probe: p2.clone(),
        },
    );
    assert_eq!(d.dispatch(Value(1)).await.expect("success").value, 201);
    assert_eq!((p1.calls(), p2.calls()), (0, 1));
    assert!(d.unregister::<Value>());
    assert!(d.dispatch(Value(1)).await.expect_err("gone").is_rejected());
}

/// Dispatch returns before the work finishes.
pub async fn dispatch_returns_before_the_work_completes(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, ReportExec(probe.clone()));
    let mut handle = d.dispatch(Report(vec![]));
    probe.started.wait().await;
    assert!(is_pending(&mut handle), "the work waits for its gate");
    assert!(!handle.is_finished());
    probe.release.open();
    handle.await.expect("success");
    assert!(probe.finished.is_open());
}

/// Dropping the handle leaves the job running to completion.
pub async fn dropping_the_handle_does_not_cancel(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, ReportExec(probe.clone()));
    drop(d.dispatch(Report(vec![0.5])));
    probe.started.wait().await;
    probe.release.open();
    probe.finished.wait().await;
    assert_eq!(probe.calls(), 1);
}

/// An executor error without retry policy fails with one attempt and the error.
pub async fn executor_error_fails_after_one_attempt(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, FlakyExec(probe.clone()));
    let err = d
        .dispatch(Flaky {
            fail_first: 5,
            permanent: false,
        })
        .await
        .expect_err("fails");
    let failure = err.failure().expect("a failure");
    assert_eq!(failure.attempts(), 1);
    assert_eq!(
        failure.downcast_ref::<TestError>().map(|e| e.attempt),
        Some(1)
    );
    assert_eq!(probe.calls(), 1);
}

/// Retries continue until success and the attempt count is visible.
pub async fn retry_until_success_counts_attempts(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, FlakyExec(probe.clone()));
    let job = Flaky {
        fail_first: 2,
        permanent: false,
    };
    let done = d
        .job(job)
        .retry(RetryPolicy::fixed(5, Duration::from_millis(1)))
        .dispatch()
        .await
        .expect("third attempt succeeds");
    assert_eq!(done.value, 3);
    assert_eq!(probe.calls(), 3);
}

/// Items 4 and 7: `max_retries + 1` attempts, then exactly one failure.
pub async fn retry_exhaustion_yields_exactly_one_failure(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, FlakyExec(probe.clone()));
    let mut handle = d
        .job(Flaky {
            fail_first: u32::MAX,
            permanent: false,
        })
        .retry(RetryPolicy::exponential(3, Duration::from_millis(1)))
        .dispatch();
    let err = (&mut handle).await.expect_err("exhausted");
    let failure = err.failure().expect("a failure");
    assert_eq!(failure.attempts(), 4);
    assert_eq!(
        failure.downcast_ref::<TestError>().map(|e| e.attempt),
        Some(4)
    );
    assert_eq!(probe.calls(), 4);
    assert!(handle.is_terminated());
    assert!(is_pending(&mut handle), "a handle yields its outcome once");
}

/// The `retry_if` predicate sees the error and attempt number and can stop retries.
pub async fn should_retry_false_stops_retrying(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, FlakyExec(probe.clone()));
    let policy = RetryPolicy::fixed(10, Duration::ZERO).retry_if(|err, attempt| {
        let e = err
            .downcast_ref::<TestError>()
            .expect("the executor's error");
        assert_eq!(e.attempt, attempt);
        !e.permanent
    });
    let job = Flaky {
        fail_first: u32::MAX,
        permanent: true,
    };
    let err = d
        .job(job)
        .retry(policy)
        .dispatch()
        .await
        .expect_err("permanent");
    assert_eq!(err.failure().map(|f| f.attempts()), Some(1));
    assert_eq!(probe.calls(), 1);
}

/// A panic is a failed outcome with the message; nothing else is disturbed.
pub async fn panic_becomes_failure_and_dispatcher_keeps_working(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    register(&d, BoomExec);
    register(
        &d,
        ValueExec {
            add: 0,
            probe: Probe::new(),
        },
    );
    let err = d
        .job(Boom)
        .retry(RetryPolicy::fixed(3, Duration::ZERO))
        .dispatch()
        .await
        .expect_err("panicked");
    let failure = err.failure().expect("a failure");
    assert!(failure.is_panic());
    assert_eq!(failure.panic_message(), Some("boom"));
    assert_eq!(failure.attempts(), 1, "panics are not retried");
    let plain = d
        .dispatch(Boom)
        .await
        .expect_err("panicked without options too");
    assert_eq!(
        plain.failure().and_then(|f| f.panic_message()),
        Some("boom")
    );
    assert_eq!(d.dispatch(Value(7)).await.expect("still works").value, 7);
}

/// A token cancelled before dispatch cancels without running the executor.
pub async fn cancel_before_start_never_runs_the_executor(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, HangExec(probe.clone()));
    let token = CancellationToken::new();
    token.cancel_with("not needed");
    let err = d
        .job(Hang { hang_first: 1 })
        .cancellation(token)
        .dispatch()
        .await
        .expect_err("cancelled");
    assert_eq!(cancelled_reason(&err), Some("not needed"));
    assert_eq!(probe.calls(), 0);
}

/// Cancelling through the handle drops the work of an executor that never checks.
pub async fn cancel_mid_run_drops_the_work_of_an_ignoring_executor(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, HangExec(probe.clone()));
    let handle = d.dispatch(Hang { hang_first: 1 });
    probe.started.wait().await;
    handle.cancel_with("user");
    handle.cancel(); // idempotent: the first reason stays
    let err = handle.await.expect_err("cancelled");
    assert_eq!(cancelled_reason(&err), Some("user"));
    assert!(
        probe.dropped.is_open(),
        "the work was dropped before the outcome"
    );
}

/// Cancelling the job's token mid-run cancels it.
pub async fn token_cancel_mid_run_cancels_the_job(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, HangExec(probe.clone()));
    let token = CancellationToken::new();
    let handle = d
        .job(Hang { hang_first: 1 })
        .cancellation(token.clone())
        .dispatch();
    probe.started.wait().await;
    token.cancel();
    let err = handle.await.expect_err("cancelled");
    assert_eq!(cancelled_reason(&err), None);
    assert!(probe.dropped.is_open());
}

/// Cancelling during a (one-hour) backoff sleep ends the job at once.
pub async fn cancel_during_backoff_stops_at_once(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, FlakyExec(probe.clone()));
    let token = CancellationToken::new();
    let handle = d
        .job(Flaky {
            fail_first: u32::MAX,
            permanent: false,
        })
        .retry(RetryPolicy::fixed(3, HOUR))
        .cancellation(token.clone())
        .dispatch();
    probe.started.wait().await; // the first attempt failed; the pipeline backs off
    token.cancel_with("backoff");
    let err = handle.await.expect_err("cancelled");
    assert_eq!(cancelled_reason(&err), Some("backoff"));
    assert_eq!(probe.calls(), 1);
}

/// The total budget drops a hanging attempt and reports the budget.
pub async fn total_timeout_drops_hanging_work(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, HangExec(probe.clone()));
    let err = d
        .job(Hang { hang_first: 1 })
        .timeout(SHORT)
        .dispatch()
        .await
        .expect_err("timed out");
    assert!(
        matches!(err, JobError::TimedOut { budget } if budget == SHORT),
        "{err:?}"
    );
    assert!(
        probe.dropped.is_open(),
        "the work was dropped before the outcome"
    );
    assert_eq!(probe.calls(), 1);
}

/// A zero budget times out without calling the executor.
pub async fn zero_timeout_times_out_without_running(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(
        &d,
        ValueExec {
            add: 0,
            probe: probe.clone(),
        },
    );
    let err = d
        .job(Value(1))
        .timeout(Duration::ZERO)
        .dispatch()
        .await
        .expect_err("timed out");
    assert!(err.is_timed_out());
    assert_eq!(probe.calls(), 0);
}

/// The budget covers the retries and backoff; expiry is a timeout, not a
/// failure, and is not retried.
pub async fn timeout_during_retries_is_timed_out(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, FlakyExec(probe.clone()));
    let err = d
        .job(Flaky {
            fail_first: u32::MAX,
            permanent: false,
        })
        .retry(RetryPolicy::fixed(u32::MAX, Duration::from_millis(5)))
        .timeout(SHORT)
        .dispatch()
        .await
        .expect_err("timed out");
    assert!(err.is_timed_out(), "{err:?}");
    let calls = probe.calls();
    assert!(calls >= 1);
    // Nothing runs after the outcome: the count is final.
    crate::conformance::support::settle(&rt).await;
    assert_eq!(probe.calls(), calls);
}

/// An attempt that outlives the per-attempt limit is dropped and retried.
pub async fn attempt_timeout_is_retried(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, HangExec(probe.clone()));
    let done = d
        .job(Hang { hang_first: 1 })
        .attempt_timeout(SHORT)
        .retry(RetryPolicy::fixed(1, Duration::ZERO))
        .dispatch()
        .await
        .expect("second attempt succeeds");
    assert_eq!(done.value, 2);
    assert!(probe.dropped.is_open());

    let err = d
        .job(Hang { hang_first: 5 })
        .attempt_timeout(SHORT)
        .dispatch()
        .await
        .expect_err("no retry policy");
    let failure = err.failure().expect("an attempt timeout is a failure");
    assert_eq!(
        failure
            .downcast_ref::<crate::AttemptTimedOut>()
            .map(|e| e.limit),
        Some(SHORT)
    );
}

/// One token shared by several jobs cancels all of them; a job that finished first
/// does not detach the others.
pub async fn shared_token_cancels_every_job_it_is_shared_by(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, HangExec(probe.clone()));
    register(
        &d,
        ValueExec {
            add: 0,
            probe: Probe::new(),
        },
    );
    let token = CancellationToken::new();
    let hang = || Hang {
        hang_first: u32::MAX,
    };
    assert_eq!(
        d.job(Value(3))
            .cancellation(token.clone())
            .dispatch()
            .await
            .expect("done")
            .value,
        3
    );
    let a = d.job(hang()).cancellation(token.clone()).dispatch();
    let b = d.job(hang()).cancellation(token.clone()).dispatch();
    while probe.calls() < 2 {
        probe.started.wait().await;
        crate::conformance::support::settle(&rt).await;
    }
    token.cancel();
    assert!(a.await.expect_err("a").is_cancelled());
    assert!(b.await.expect_err("b").is_cancelled());
}

/// A child token is cancelled with its parent, and alone without touching it.
pub async fn child_token_cancel_is_scoped(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, HangExec(probe.clone()));
    let parent = CancellationToken::new();
    let (c1, c2) = (parent.child_token(), parent.child_token());
    let mut h1 = d
        .job(Hang {
            hang_first: u32::MAX,
        })
        .cancellation(c1.clone())
        .dispatch();
    let mut h2 = d
        .job(Hang {
            hang_first: u32::MAX,
        })
        .cancellation(c2)
        .dispatch();
    c1.cancel();
    assert!((&mut h1).await.expect_err("child").is_cancelled());
    assert!(!parent.is_cancelled());
    assert!(is_pending(&mut h2), "the sibling runs on");
    parent.cancel_with("parent");
    assert_eq!(
        cancelled_reason(&h2.await.expect_err("sibling")),
        Some("parent")
    );
    assert!(h1.is_terminated());
}

/// Reports are clamped, NaN is ignored, the stream is ordered and ends with the
/// last report.
pub async fn progress_stream_is_ordered_and_ends_with_the_last_value(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, ReportExec(probe.clone()));
    let handle = d.dispatch(Report(vec![0.25, 0.5, f64::NAN, 1.5]));
    let mut stream = handle.progress();
    probe.started.wait().await;
    let current = handle.current_progress().expect("reported");
    assert_eq!(current.value(), 1.0, "clamped");
    assert_eq!(current.message(), Some("working"));
    let first = next(&mut stream).await.expect("a value").value();
    probe.release.open();
    let mut seen = vec![first];
    while let Some(p) = next(&mut stream).await {
        seen.push(p.value());
    }
    assert!(
        seen.iter().all(|v| [0.25, 0.5, 1.0].contains(v)),
        "{seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    assert_eq!(seen.last(), Some(&1.0), "the last value is delivered");
    handle.await.expect("success");
}

/// A subscriber arriving after the job ended gets the latest report, then the end.
pub async fn late_progress_subscriber_gets_the_latest_then_the_end(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, ReportExec(probe.clone()));
    let mut handle = d.dispatch(Report(vec![0.1, 0.7]));
    probe.release.open();
    (&mut handle).await.expect("success");
    let mut late = handle.progress();
    assert_eq!(next(&mut late).await.map(|p| p.value()), Some(0.7));
    assert!(next(&mut late).await.is_none());
    assert!(next(&mut late).await.is_none(), "stays ended");
}

/// Reports made after the outcome go nowhere.
pub async fn progress_after_the_outcome_goes_nowhere(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, ReportExec(probe.clone()));
    let mut handle = d.dispatch(Report(vec![0.3]));
    probe.release.open();
    (&mut handle).await.expect("success");
    let cx = probe.contexts.with(|c| c[0].clone());
    assert!(!cx.report_progress(0.9), "ignored after the outcome");
    assert_eq!(handle.current_progress().map(|p| p.value()), Some(0.3));
}

/// A cancel after the outcome changes nothing.
pub async fn cancel_after_completion_is_ignored(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, ReportExec(probe.clone()));
    let handle = d.dispatch(Report(vec![]));
    probe.release.open();
    probe.finished.wait().await;
    while !handle.is_finished() {
        crate::conformance::support::settle(&rt).await;
    }
    handle.cancel();
    handle.await.expect("the success stands");
}

/// 10,000 concurrent jobs each resolve exactly once with their own value.
pub async fn many_concurrent_jobs_all_resolve_once(rt: Arc<dyn Runtime>) {
    const N: u64 = 10_000;
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(
        &d,
        ValueExec {
            add: 1,
            probe: probe.clone(),
        },
    );
    let handles: Vec<_> = (0..N).map(|i| d.dispatch(Value(i))).collect();
    for (i, mut h) in (0..N).zip(handles) {
        assert_eq!((&mut h).await.expect("success").value, i + 1);
        assert!(h.is_terminated());
    }
    assert_eq!(u64::from(probe.calls()), N, "each job ran exactly once");
}

/// Bad input: dispatch after shutdown is a clear rejection; running jobs go on.
pub async fn shutdown_rejects_new_dispatches_and_running_jobs_finish(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, ReportExec(probe.clone()));
    let running = d.dispatch(Report(vec![]));
    probe.started.wait().await;
    d.close();
    let err = d.dispatch(Report(vec![])).await.expect_err("rejected");
    assert_eq!(err.rejection(), Some(&crate::Rejection::Shutdown));
    probe.release.open();
    running.await.expect("the running job finishes");
    assert_eq!(probe.calls(), 1);
}

/// The context's sleep and clock are the runtime's.
pub async fn context_sleep_and_clock_use_the_runtime(rt: Arc<dyn Runtime>) {
    let before = rt.now();
    rt.sleep(Duration::from_millis(5)).await;
    let after = rt.now();
    assert!(
        after.saturating_duration_since(before) >= Duration::from_millis(5),
        "the clock is monotonic and sleep waits at least its duration"
    );
}

/// Cancels racing completions still give every job exactly one outcome.
pub async fn cancel_racing_completion_gives_one_outcome_each(rt: Arc<dyn Runtime>) {
    const N: u64 = 2_000;
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(
        &d,
        ValueExec {
            add: 0,
            probe: probe.clone(),
        },
    );
    let handles: Vec<_> = (0..N).map(|i| d.dispatch(Value(i))).collect();
    for h in handles.iter().step_by(2) {
        h.cancel();
    }
    let (mut succeeded, mut cancelled) = (0u64, 0u64);
    for (i, mut h) in (0..N).zip(handles) {
        match (&mut h).await {
            Ok(done) => {
                assert_eq!(done.value, i);
                succeeded += 1;
            }
            Err(e) => {
                assert!(e.is_cancelled() && i % 2 == 0, "job {i}: {e:?}");
                cancelled += 1;
            }
        }
        assert!(h.is_terminated());
    }
    assert_eq!(succeeded + cancelled, N);
    assert!(
        succeeded >= N / 2,
        "every job that was not cancelled succeeded"
    );
    let calls = u64::from(probe.calls());
    assert!(calls >= succeeded && calls <= N, "{calls} executor calls");
}

fn watcher(
    d: &Dispatcher,
    record_all: bool,
) -> (
    crate::OrchestratorHandle<Tally>,
    Arc<crate::sync::Mutex<Sightings>>,
) {
    let sightings = Arc::new(crate::sync::Mutex::new(Sightings::default()));
    let handle = crate::Orchestrator::builder(
        Watcher {
            sightings: sightings.clone(),
            record_all,
        },
        Tally::default(),
        d,
    )
    // These cases count every event; the guard has its own tests.
    .guard(crate::LoopGuard::unlimited());
    let handle = start(handle).expect("the orchestrator starts");
    (handle, sightings)
}

fn event_dispatcher(rt: &Arc<dyn Runtime>) -> Dispatcher {
    let d = dispatcher(rt);
    register(&d, AddExec);
    d
}

/// Every subscriber gets every event of a job, in order, on the real runtime.
pub async fn bus_delivers_every_event_in_order_to_every_subscriber(rt: Arc<dyn Runtime>) {
    let d = event_dispatcher(&rt);
    let mut subs: Vec<_> = (0..3).map(|_| d.bus().subscribe_to::<Added>()).collect();
    let handles: Vec<_> = (0..200)
        .map(|n| d.dispatch(Add { n, gate: None }))
        .collect();
    for h in handles {
        h.await.expect("success");
    }
    for sub in &mut subs {
        let mut got = Vec::new();
        while got.len() < 200 {
            got.push(next(sub).await.expect("an event").0);
        }
        got.sort_unstable();
        assert_eq!(got, (0..200).collect::<Vec<_>>(), "each event exactly once");
    }
}

/// Output event with its source, lifecycle order, one terminal event.
pub async fn event_job_and_lifecycle_events_arrive_in_order(rt: Arc<dyn Runtime>) {
    let d = event_dispatcher(&rt);
    let mut sub = d.bus().subscribe();
    let handle = d
        .job(Add { n: 7, gate: None })
        .lifecycle_events(true)
        .dispatch();
    let id = handle.id();
    handle.await.expect("success");
    let mut kinds = Vec::new();
    loop {
        let e = next(&mut sub).await.expect("an event");
        assert_eq!(e.correlation_id(), Some(id));
        if let Some(l) = e.downcast_ref::<crate::JobLifecycle>() {
            if l.is_terminal() {
                assert!(matches!(
                    l,
                    crate::JobLifecycle::Succeeded {
                        data_source: DataSource::Fresh
                    }
                ));
                kinds.push("terminal");
                break;
            }
            kinds.push("started");
        } else if e.is::<super::support::Note>() {
            kinds.push("note");
        } else {
            assert_eq!(e.downcast_ref::<Added>(), Some(&Added(7)));
            assert_eq!(e.data_source(), Some(DataSource::Fresh));
            kinds.push("added");
        }
    }
    assert_eq!(kinds, ["started", "note", "added", "terminal"]);
    assert!(sub.try_next().is_none(), "nothing after the terminal event");
}

/// Two orchestrators on one bus: active for the dispatcher, passive for the other.
pub async fn two_orchestrators_see_one_job_as_active_and_passive(rt: Arc<dyn Runtime>) {
    let d = event_dispatcher(&rt);
    let (a, seen_a) = watcher(&d, true);
    let (b, seen_b) = watcher(&d, true);
    let job = a.dispatch(Add { n: 5, gate: None });
    let id = job.id();
    job.await.expect("success");
    a.handled(id).await.expect("a handled its job");
    assert_eq!(a.state().terminals, 1);
    b.states()
        .wait_for(|t| t.terminals == 1)
        .await
        .expect("b sees the job end");
    let a_events = seen_a.with(|s| core::mem::take(&mut s.events));
    let b_events = seen_b.with(|s| core::mem::take(&mut s.events));
    assert_eq!(a_events.len(), 4, "{a_events:?}");
    assert!(
        a_events
            .iter()
            .all(|&(i, _, o)| i == id && o == crate::Origin::Active)
    );
    assert_eq!(b_events.len(), 4);
    assert!(
        b_events
            .iter()
            .all(|&(i, _, o)| i == id && o == crate::Origin::Passive)
    );
    assert!(!a.is_job_running(id));
    assert_eq!((a.state().sum, b.state().sum), (5, 5));
    a.dispose();
    b.dispose();
}

/// Three concurrent jobs are all active for the orchestrator that dispatched them.
pub async fn three_concurrent_jobs_are_all_active(rt: Arc<dyn Runtime>) {
    let d = event_dispatcher(&rt);
    let (a, seen) = watcher(&d, true);
    let gate = super::support::Gate::new();
    let jobs: Vec<_> = (1..=3)
        .map(|n| {
            a.dispatch(Add {
                n,
                gate: Some(gate.clone()),
            })
        })
        .collect();
    assert_eq!(a.running_jobs(), 3);
    gate.open();
    for j in jobs {
        let id = j.id();
        j.await.expect("success");
        a.handled(id).await.expect("handled");
    }
    let tally = a.state();
    assert_eq!(tally.terminals, 3);
    assert_eq!(tally.sum, 6);
    let events = seen.with(|s| core::mem::take(&mut s.events));
    assert_eq!(events.len(), 12);
    assert!(events.iter().all(|&(_, _, o)| o == crate::Origin::Active));
    assert_eq!(a.running_jobs(), 0);
    a.dispose();
}

/// A scoped orchestrator's job is seen on its scope only.
pub async fn scoped_bus_isolation(rt: Arc<dyn Runtime>) {
    let d = event_dispatcher(&rt);
    let (scope1, scope2) = (crate::SignalBus::new(), crate::SignalBus::new());
    let build = |bus: &crate::SignalBus| {
        let sightings = Arc::new(crate::sync::Mutex::new(Sightings::default()));
        let handle = crate::Orchestrator::builder(
            Watcher {
                sightings: sightings.clone(),
                record_all: true,
            },
            Tally::default(),
            &d,
        )
        .bus(bus.clone())
        .guard(crate::LoopGuard::unlimited());
        let handle = start(handle).expect("starts");
        (handle, sightings)
    };
    let (o1, seen1) = build(&scope1);
    let (o2, seen2) = build(&scope2);
    let mut on_dispatcher_bus = d.bus().subscribe();
    let mut on_global = crate::SignalBus::global().subscribe_to::<Added>();
    let job = o1.dispatch(Add { n: 1, gate: None });
    let id = job.id();
    job.await.expect("success");
    o1.handled(id).await.expect("handled");
    assert_eq!(o1.state().terminals, 1);
    super::support::settle(&rt).await;
    assert_eq!(seen1.with(|s| s.events.len()), 4);
    assert!(seen2.with(|s| s.events.is_empty()));
    assert_eq!(o2.state(), Tally::default());
    assert!(on_dispatcher_bus.try_next().is_none());
    core::future::poll_fn(|cx| {
        assert!(
            Pin::new(&mut on_global).poll_next(cx).is_pending(),
            "nothing reached the global bus"
        );
        core::task::Poll::Ready(())
    })
    .await;
    o1.dispose();
    o2.dispose();
}

/// Tracking starts before any event can be observed: of 10,000 jobs dispatched
/// through an orchestrator, every first event arrives as active.
pub async fn tracked_before_observed_every_first_event_is_active(rt: Arc<dyn Runtime>) {
    const N: u64 = 10_000;
    let d = event_dispatcher(&rt);
    let (a, seen) = watcher(&d, false);
    let handles: Vec<_> = (0..N).map(|n| a.dispatch(Add { n, gate: None })).collect();
    for h in handles {
        let id = h.id();
        h.await.expect("success");
        a.handled(id).await.expect("handled");
    }
    let tally = a.state();
    assert_eq!(tally.terminals, N);
    assert_eq!(tally.sum, N * (N - 1) / 2);
    let (count, passive) = seen.with(|s| {
        (
            s.first.len(),
            s.first
                .values()
                .filter(|o| **o == crate::Origin::Passive)
                .count(),
        )
    });
    assert_eq!(count as u64, N);
    assert_eq!(passive, 0, "every first event was active");
    assert_eq!(a.running_jobs(), 0);
    a.dispose();
}

/// Disposing while a job runs: the job finishes, the orchestrator handles nothing
/// more, its state streams end.
pub async fn dispose_while_a_job_runs(rt: Arc<dyn Runtime>) {
    let d = event_dispatcher(&rt);
    let (a, seen) = watcher(&d, true);
    let (b, _) = watcher(&d, false);
    let gate = super::support::Gate::new();
    let job = a.dispatch(Add {
        n: 9,
        gate: Some(gate.clone()),
    });
    let mut states = a.states();
    assert_eq!(next(&mut states).await, Some(Tally::default()));
    a.dispose();
    gate.open();
    assert_eq!(job.await.expect("the job runs on").value, 9);
    b.states()
        .wait_for(|t| t.terminals == 1)
        .await
        .expect("b sees the job end"); // the other orchestrator saw it all
    assert_eq!(next(&mut states).await, None, "no state after disposal");
    assert_eq!(a.state().sum, 0);
    assert!(seen.with(|s| s.events.iter().all(|&(_, kind, _)| kind == "lifecycle")));
    let refused = a
        .dispatch(Add { n: 1, gate: None })
        .await
        .expect_err("a disposed orchestrator dispatches nothing");
    assert!(
        matches!(refused.rejection(), Some(crate::Rejection::Disposed { .. })),
        "{refused:?}"
    );
    b.dispose();
}

/// A cache hit skips the executor; stale-while-revalidate resolves with the cached
/// value, then the fresh one is published and stored.
pub async fn cache_hit_and_revalidation(rt: Arc<dyn Runtime>) {
    let d = event_dispatcher(&rt);
    let probe_gate = super::support::Gate::new();
    let first = d
        .job(Add { n: 1, gate: None })
        .cache(crate::CachePolicy::new("sum"))
        .dispatch()
        .await
        .expect("success");
    assert_eq!((first.value, first.data_source), (1, DataSource::Fresh));
    let hit = d
        .job(Add { n: 2, gate: None })
        .cache(crate::CachePolicy::new("sum"))
        .dispatch()
        .await
        .expect("success");
    assert_eq!(
        (hit.value, hit.data_source),
        (1, DataSource::Cached),
        "executor skipped"
    );
    let mut added = d.bus().subscribe_to::<Added>();
    let handle = d
        .job(Add {
            n: 3,
            gate: Some(probe_gate.clone()),
        })
        .cache(crate::CachePolicy::new("sum").revalidate())
        .dispatch();
    let stale = handle.await.expect("the cached value at once");
    assert_eq!((stale.value, stale.data_source), (1, DataSource::Cached));
    probe_gate.open();
    let cached_event = next(&mut added).await.expect("the cached value's event");
    assert_eq!(
        (cached_event.0, cached_event.event().data_source()),
        (1, Some(DataSource::Cached))
    );
    let fresh = next(&mut added).await.expect("the fresh value's event");
    assert_eq!(
        (fresh.0, fresh.event().data_source()),
        (3, Some(DataSource::Fresh))
    );
    let after = d
        .job(Add { n: 4, gate: None })
        .cache(crate::CachePolicy::new("sum"))
        .dispatch()
        .await
        .expect("success");
    assert_eq!(
        (after.value, after.data_source),
        (3, DataSource::Cached),
        "the fresh value was stored"
    );
}

/// Dedup: dispatches with the same key join the one in flight.
pub async fn dedup_joins_the_dispatch_in_flight(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    let probe = Probe::new();
    register(&d, ReportExec(probe.clone()));
    let leader = d.job(Report(vec![0.5])).dedup("report").dispatch();
    probe.started.wait().await;
    let joined: Vec<_> = (0..10)
        .map(|_| d.job(Report(vec![])).dedup("report").dispatch())
        .collect();
    assert!(joined.iter().all(|h| h.id() == leader.id()));
    assert_eq!(
        joined[0].current_progress().map(|p| p.value()),
        Some(0.5),
        "the leader's progress"
    );
    probe.release.open();
    leader.await.expect("success");
    for h in joined {
        h.await.expect("the same outcome");
    }
    assert_eq!(probe.calls(), 1, "ran once");
}

/// Failure breaker: after the threshold, dispatches are rejected without running; after the
/// cooldown a trial closes it again.
pub async fn breaker_rejects_while_open_and_a_trial_closes_it(rt: Arc<dyn Runtime>) {
    use super::support::{Toggle, ToggleExec};
    let d = dispatcher(&rt);
    let probe = Probe::new();
    let failing = Arc::new(crate::sync::AtomicBool::new(true));
    register(
        &d,
        ToggleExec {
            failing: failing.clone(),
            probe: probe.clone(),
        },
    );
    let cooldown = Duration::from_millis(20);
    d.set_circuit_breaker::<Toggle>(
        crate::BreakerConfig::new(2, HOUR, cooldown).expect("a valid config"),
    );
    for _ in 0..2 {
        assert!(d.dispatch(Toggle).await.expect_err("fails").is_failed());
    }
    let err = d.dispatch(Toggle).await.expect_err("rejected");
    assert!(
        matches!(err.rejection(), Some(crate::Rejection::CircuitOpen { .. })),
        "{err:?}"
    );
    assert_eq!(probe.calls(), 2, "rejected without running");
    rt.sleep(cooldown + Duration::from_millis(5)).await;
    failing.store(false, crate::sync::Ordering::SeqCst);
    d.dispatch(Toggle).await.expect("the trial succeeds");
    d.dispatch(Toggle).await.expect("closed again");
    assert_eq!(probe.calls(), 4);
}

/// A saga over dispatched jobs rolls back last-in-first-out.
pub async fn saga_over_dispatched_jobs_rolls_back_in_reverse(rt: Arc<dyn Runtime>) {
    let d = dispatcher(&rt);
    register(
        &d,
        ValueExec {
            add: 0,
            probe: Probe::new(),
        },
    );
    let undone = Arc::new(crate::sync::Mutex::new(Vec::new()));
    let mut saga: crate::Saga<'_, JobError> = crate::Saga::new();
    for step in 1..=3u64 {
        let undo_log = undone.clone();
        let d2 = d.clone();
        let value = saga
            .step(
                "step",
                async { Ok(d.dispatch(Value(step)).await?.value) },
                move |v: &u64| {
                    let v = *v;
                    async move {
                        d2.dispatch(Value(v)).await?;
                        undo_log.with(|u| u.push(v));
                        Ok(())
                    }
                },
            )
            .await
            .expect("the step succeeds");
        assert_eq!(value, step);
    }
    let report = saga.rollback().await;
    assert!(report.is_clean());
    assert_eq!(undone.with(|u| u.clone()), [3, 2, 1]);
}
