//! The test kit itself: each fake does what it says and records it, each check passes when it
//! should and fails with a message naming what was expected and what happened, waits end
//! with the events seen, and scenarios print expected and actual side by side.

use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::noop_waker_ref;
use orchestrator_core::runtime::Timer;
use orchestrator_core::testing::{
    EventCapture, FakeError, FakeExecutor, Scenario, VirtualRuntime, expect,
};
use orchestrator_core::{
    DataSource, Dispatch, Dispatcher, Event, Job, JobError, JobLifecycle, Orchestrator,
    OrchestratorContext, Origin, Rejection, RetryPolicy, SignalBus, Success,
};

#[derive(Debug, Clone, PartialEq)]
struct Fetch(u32);
impl Job for Fetch {
    type Output = u32;
    fn output_event(&self, n: &u32) -> Option<impl Send + Sync + 'static> {
        Some(Fetched(*n))
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Fetched(u32);

fn setup() -> (VirtualRuntime, Dispatcher<VirtualRuntime>) {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    (rt, d)
}

fn retry(n: u32) -> RetryPolicy {
    RetryPolicy::fixed(n, Duration::from_secs(1))
}

// ---------------------------------------------------------------------------------------------
// Fakes

#[test]
fn succeed_answers_every_job_and_records_each_once() {
    let (rt, d) = setup();
    let fake = FakeExecutor::<Fetch>::succeed(7);
    let recorder = fake.recorder();
    d.register(fake);
    let first = d.dispatch(Fetch(1));
    let second = d.dispatch(Fetch(2));
    let ids = [first.id(), second.id()];
    assert_eq!(rt.block_on(first).unwrap().value, 7);
    assert_eq!(rt.block_on(second).unwrap().value, 7);
    assert_eq!(recorder.jobs(), [Fetch(1), Fetch(2)]);
    assert_eq!(recorder.ids(), ids);
    assert_eq!(recorder.last_job(), Some(Fetch(2)));
    assert_eq!(
        (recorder.attempts(), recorder.succeeded(), recorder.failed()),
        (2, 2, 0)
    );
    assert_eq!(recorder.unfinished(), 0);
}

#[test]
fn fail_fails_every_attempt_and_the_recorder_counts_them() {
    let (rt, d) = setup();
    let fake = FakeExecutor::<Fetch>::fail(FakeError::new("down"));
    let recorder = fake.recorder();
    d.register(fake);
    let outcome = rt.block_on(d.job(Fetch(1)).retry(retry(2)).dispatch());
    expect::failed_after(&outcome, 3, "down").unwrap();
    assert_eq!(recorder.jobs(), [Fetch(1)], "one job");
    let attempts: Vec<u32> = recorder.calls().iter().map(|c| c.attempt).collect();
    assert_eq!(attempts, [1, 2, 3], "three attempts of it");
    assert_eq!((recorder.succeeded(), recorder.failed()), (0, 3));
}

#[test]
fn fail_times_fails_that_many_attempts_then_succeeds() {
    let (rt, d) = setup();
    let fake = FakeExecutor::<Fetch>::fail_times(2, FakeError::new("busy"), 9);
    let recorder = fake.recorder();
    d.register(fake.clone());
    // With retries: one job, three attempts.
    let outcome = rt.block_on(d.job(Fetch(1)).retry(retry(5)).dispatch());
    expect::succeeded_with(&outcome, &9).unwrap();
    assert_eq!(recorder.attempts(), 3);

    // Without retries: the first two jobs fail, the third succeeds (a fresh fake).
    let fake = FakeExecutor::<Fetch>::fail_times(2, FakeError::new("busy"), 9);
    let recorder = fake.recorder();
    d.register(fake);
    let outcomes: Vec<_> = (0..3).map(|n| rt.block_on(d.dispatch(Fetch(n)))).collect();
    expect::failed_after(&outcomes[0], 1, "busy").unwrap();
    expect::failed_after(&outcomes[1], 1, "busy").unwrap();
    expect::succeeded_with(&outcomes[2], &9).unwrap();
    assert_eq!(recorder.jobs(), [Fetch(0), Fetch(1), Fetch(2)]);
}

#[test]
fn never_finishes_until_cancelled_or_timed_out_and_counts_as_unfinished() {
    let (rt, d) = setup();
    let fake = FakeExecutor::<Fetch>::never();
    let recorder = fake.recorder();
    d.register(fake);
    let hanging = d.dispatch(Fetch(1));
    rt.advance(Duration::from_secs(3600));
    assert!(!hanging.is_finished(), "an hour later it still runs");
    assert_eq!(recorder.unfinished(), 1);
    hanging.cancel_with("test over");
    let outcome = rt.block_on(hanging);
    assert_eq!(expect::cancelled(&outcome), Ok(Some("test over")));

    let limited = d.job(Fetch(2)).timeout(Duration::from_secs(5)).dispatch();
    let outcome = rt.block_on(limited);
    assert_eq!(expect::timed_out(&outcome), Ok(Duration::from_secs(5)));
    assert_eq!((recorder.attempts(), recorder.unfinished()), (2, 2));
}

#[test]
fn progress_reports_each_step_on_the_runtime_clock() {
    let (rt, d) = setup();
    d.register(FakeExecutor::<Fetch>::progress(
        4,
        Duration::from_secs(10),
        1,
    ));
    let job = d.dispatch(Fetch(1));
    rt.run_until_stalled();
    assert_eq!(
        job.current_progress(),
        None,
        "nothing before the first step"
    );
    for step in 1..=3 {
        rt.advance(Duration::from_secs(10));
        let progress = job.current_progress().unwrap();
        assert_eq!(progress.step(), Some((step, 4)));
        assert_eq!(progress.value(), f64::from(step) / 4.0);
    }
    assert!(!job.is_finished());
    rt.advance(Duration::from_secs(10));
    assert!(job.is_finished());
    expect::succeeded_with(&rt.block_on(job), &1).unwrap();
}

#[test]
fn from_fn_runs_the_closure_with_the_job_and_its_context() {
    let (rt, d) = setup();
    let fake = FakeExecutor::<Fetch>::from_fn(|job, cx| async move {
        cx.sleep(Duration::from_secs(1)).await;
        if job.0 == 0 {
            Err(FakeError::new("zero"))
        } else {
            Ok(job.0 * 10 + cx.attempt())
        }
    });
    let recorder = fake.recorder();
    d.register(fake);
    expect::succeeded_with(&rt.block_on(d.dispatch(Fetch(4))), &41).unwrap();
    expect::failed_after(&rt.block_on(d.dispatch(Fetch(0))), 1, "zero").unwrap();
    assert_eq!((recorder.succeeded(), recorder.failed()), (1, 1));
    assert_eq!(
        format!("{:?}", FakeExecutor::<Fetch>::succeed(1)),
        "FakeExecutor { behaviour: \"succeeds\", recorder: Recorder { attempts: 0, succeeded: 0, failed: 0 } }"
    );
}

#[test]
fn a_fake_with_the_users_error_type_fails_with_it() {
    #[derive(Debug, Clone, PartialEq)]
    enum PayError {
        Declined { code: u16 },
    }
    impl std::fmt::Display for PayError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let PayError::Declined { code } = self;
            write!(f, "declined ({code})")
        }
    }
    impl std::error::Error for PayError {}

    let (rt, d) = setup();
    d.register(FakeExecutor::<Fetch, PayError>::fail(PayError::Declined {
        code: 51,
    }));
    let outcome = rt.block_on(d.dispatch(Fetch(1)));
    let error = expect::failed_with(&outcome, 1, |e: &PayError| {
        matches!(e, PayError::Declined { code: 51 })
    })
    .unwrap();
    assert_eq!(*error, PayError::Declined { code: 51 });
    let wrong_code = expect::failed_with(&outcome, 1, |e: &PayError| {
        matches!(e, PayError::Declined { code: 5 })
    });
    assert_eq!(
        wrong_code.unwrap_err().to_string(),
        format!(
            "expected the job to fail after 1 attempt with a matching `{}`, \
             but the job failed after 1 attempt: declined (51)",
            std::any::type_name::<PayError>()
        )
    );
    let wrong_type = expect::failed_with(&outcome, 1, |_: &FakeError| true);
    assert!(wrong_type.unwrap_err().to_string().contains("FakeError"));
}

// ---------------------------------------------------------------------------------------------
// Outcome checks

fn ok(value: u32, data_source: DataSource) -> Result<Success<u32>, JobError> {
    Ok(Success { value, data_source })
}

#[test]
fn every_check_passes_on_its_outcome() {
    let (rt, d) = setup();
    d.register(FakeExecutor::<Fetch>::succeed(3));
    let fresh = rt.block_on(d.dispatch(Fetch(1)));
    assert_eq!(expect::succeeded(&fresh).unwrap().value, 3);
    expect::succeeded_with(&fresh, &3).unwrap();
    expect::data_source(&fresh, DataSource::Fresh).unwrap();
    expect::data_source(&ok(3, DataSource::Cached), DataSource::Cached).unwrap();
    assert_eq!(
        expect::failed(&rt.block_on(d.dispatch(NoExecutor))).unwrap_err(),
        expect::Mismatch::new(
            "the job to fail",
            format!(
                "the job was rejected: no executor registered for job type `{}`",
                std::any::type_name::<NoExecutor>()
            )
        )
    );
    let rejected = rt.block_on(d.dispatch(NoExecutor));
    assert!(matches!(
        expect::rejected(&rejected),
        Ok(Rejection::NoExecutor { .. })
    ));
}

struct NoExecutor;
impl Job for NoExecutor {
    type Output = ();
}

#[test]
fn every_check_says_what_it_expected_and_what_happened_instead() {
    let fresh = ok(4, DataSource::Fresh);
    let failed = {
        let (rt, d) = setup();
        d.register(FakeExecutor::<Fetch>::fail(FakeError::new(
            "connection reset",
        )));
        rt.block_on(d.job(Fetch(1)).retry(retry(1)).dispatch())
    };
    let cancelled: Result<Success<u32>, JobError> = Err(JobError::Cancelled {
        reason: Some("user left".into()),
    });
    let timed_out: Result<Success<u32>, JobError> = Err(JobError::TimedOut {
        budget: Duration::from_secs(5),
    });
    let cases = [
        (
            expect::succeeded_with(&fresh, &5).unwrap_err(),
            "expected the job to succeed with 5, but the job succeeded with 4 (fresh)",
        ),
        (
            expect::succeeded(&failed).unwrap_err(),
            "expected the job to succeed, but the job failed after 2 attempts: connection reset",
        ),
        (
            expect::failed_after(&failed, 3, "connection reset").unwrap_err(),
            "expected the job to fail after 3 attempts: connection reset, \
             but the job failed after 2 attempts: connection reset",
        ),
        (
            expect::failed_after(&failed, 2, "timeout").unwrap_err(),
            "expected the job to fail after 2 attempts: timeout, \
             but the job failed after 2 attempts: connection reset",
        ),
        (
            expect::failed_after(&fresh, 1, "x").unwrap_err(),
            "expected the job to fail after 1 attempt: x, but the job succeeded with 4 (fresh)",
        ),
        (
            expect::cancelled(&timed_out).unwrap_err(),
            "expected the job to be cancelled, but the job timed out after 5s",
        ),
        (
            expect::timed_out(&cancelled).unwrap_err(),
            "expected the job to time out, but the job was cancelled: user left",
        ),
        (
            expect::rejected(&fresh).unwrap_err(),
            "expected the job to be rejected, but the job succeeded with 4 (fresh)",
        ),
        (
            expect::data_source(&fresh, DataSource::Cached).unwrap_err(),
            "expected the job to succeed with a cached value, but the job succeeded with 4 (fresh)",
        ),
        (
            expect::data_source(&cancelled, DataSource::Optimistic).unwrap_err(),
            "expected the job to succeed with an optimistic value, \
             but the job was cancelled: user left",
        ),
    ];
    for (mismatch, message) in cases {
        assert_eq!(mismatch.to_string(), message);
        assert_eq!(format!("{mismatch:?}"), message, "Debug is the message");
    }
    let m = expect::timed_out(&fresh).unwrap_err();
    assert_eq!(
        (m.expected(), m.actual()),
        ("the job to time out", "the job succeeded with 4 (fresh)")
    );
}

#[test]
fn a_test_can_return_the_mismatch_with_the_question_mark() -> Result<(), expect::Mismatch> {
    let fresh = ok(4, DataSource::Fresh);
    expect::succeeded_with(&fresh, &4)?;
    expect::data_source(&fresh, DataSource::Fresh)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Event capture

#[test]
fn a_capture_records_everything_by_type_from_its_creation_on() {
    let bus = SignalBus::new();
    bus.emit(Fetched(0)).unwrap();
    let rt = VirtualRuntime::new();
    let capture = EventCapture::new(&bus, rt.clone());
    assert!(capture.is_empty(), "what came before is not captured");
    bus.emit(Fetched(1)).unwrap();
    bus.emit("note").unwrap();
    bus.emit(Fetched(2)).unwrap();
    assert_eq!(capture.len(), 3);
    assert_eq!(capture.payloads::<Fetched>(), [Fetched(1), Fetched(2)]);
    assert_eq!(capture.count::<&str>(), 1);
    assert_eq!(capture.of::<Fetched>()[1].0, 2);
    assert!(capture.all()[1].is::<&str>());
    assert_eq!(
        capture.seen(),
        [
            std::any::type_name::<Fetched>().to_string(),
            "\"note\"".to_string(),
            std::any::type_name::<Fetched>().to_string(),
        ]
    );
    let shown = capture.clone().show::<Fetched>();
    assert_eq!(shown.seen(), ["Fetched(1)", "\"note\"", "Fetched(2)"]);
    capture.clear();
    assert!(shown.is_empty(), "clones share the record");
}

#[test]
fn a_wait_finds_what_was_captured_then_waits_for_what_comes() {
    let (rt, d) = setup();
    d.register(FakeExecutor::<Fetch>::from_fn(|job, cx| async move {
        cx.sleep(Duration::from_secs(2)).await;
        Ok(job.0)
    }));
    let capture = EventCapture::on(&d);
    d.bus().emit(Fetched(1)).unwrap();
    // Already captured: at once.
    assert_eq!(rt.block_on(capture.wait_for::<Fetched>()).unwrap().0, 1);
    // Not there yet: pending until the job publishes it.
    let job = d.dispatch(Fetch(8));
    let mut wait = pin!(capture.wait_for_matching("Fetched(8)", |e| {
        e.downcast_ref::<Fetched>() == Some(&Fetched(8))
    }));
    let mut cx = Context::from_waker(noop_waker_ref());
    assert!(wait.as_mut().poll(&mut cx).is_pending());
    rt.advance(Duration::from_secs(1));
    assert!(wait.as_mut().poll(&mut cx).is_pending());
    rt.advance(Duration::from_secs(1));
    let Poll::Ready(Ok(event)) = wait.as_mut().poll(&mut cx) else {
        panic!("the event was published")
    };
    assert_eq!(event.correlation_id(), Some(job.id()));
}

#[test]
fn a_wait_that_never_matches_times_out_on_virtual_time_listing_what_was_seen() {
    let (rt, d) = setup();
    d.register(FakeExecutor::<Fetch>::succeed(5));
    let capture = EventCapture::on(&d)
        .with_limit(Duration::from_secs(30))
        .show::<Fetched>();
    let id = rt.block_on(async {
        let job = d.job(Fetch(5)).lifecycle_events(true).dispatch();
        let id = job.id();
        job.await.unwrap();
        id
    });
    let start = rt.now();
    let error = rt.block_on(capture.wait_for::<String>()).unwrap_err();
    assert_eq!(
        rt.now().saturating_duration_since(start),
        Duration::from_secs(30),
        "the limit passed on the virtual clock"
    );
    assert!(error.is_timed_out() && !error.is_closed());
    assert_eq!(error.expected(), "an event of type `alloc::string::String`");
    assert_eq!(
        error.to_string(),
        format!(
            "timed out after 30s waiting for an event of type `alloc::string::String`; \
             seen instead (3 events):\n  \
             1. JobLifecycle::Started from {id}\n  \
             2. Fetched(5) from {id}\n  \
             3. JobLifecycle::Succeeded {{ data_source: Fresh }} from {id}"
        )
    );
    assert_eq!(format!("{error:?}"), error.to_string());
    assert_eq!(error.seen().len(), 3);
}

#[test]
fn a_wait_on_a_quiet_or_closed_bus_says_so() {
    let rt = VirtualRuntime::new();
    let bus = SignalBus::new();
    let capture = EventCapture::new(&bus, rt.clone()).with_limit(Duration::from_millis(250));
    let quiet = rt.block_on(capture.wait_for_matching("a greeting", |_| false));
    assert_eq!(
        quiet.unwrap_err().to_string(),
        "timed out after 250ms waiting for a greeting; nothing was published"
    );
    bus.emit(1u8).unwrap();
    drop(bus);
    let closed = rt.block_on(capture.wait_for::<u16>()).unwrap_err();
    assert!(closed.is_closed());
    assert_eq!(
        closed.to_string(),
        "the bus closed waiting for an event of type `u16`; seen instead (1 event):\n  1. u8"
    );
    assert_eq!(capture.payloads::<u8>(), [1], "the record is kept");
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// Loads a value: `Loading` on its job's start, `Loaded(n)` or `Failed` at its end.
#[derive(Debug, Clone, PartialEq)]
enum Screen {
    Idle,
    Loading,
    Loaded(u32),
    Failed,
}

struct Loader;
impl Orchestrator for Loader {
    type State = Screen;
    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, Screen>,
    ) {
        if event.is::<&str>() {
            drop(cx.dispatch(Fetch(1)));
        } else if let Some(Fetched(n)) = event.downcast_ref() {
            cx.set_state(Screen::Loaded(*n));
        } else if origin.is_active() {
            match event.downcast_ref::<JobLifecycle>() {
                Some(JobLifecycle::Started) => cx.set_state(Screen::Loading),
                Some(JobLifecycle::Failed(_) | JobLifecycle::TimedOut { .. }) => {
                    cx.set_state(Screen::Failed);
                }
                _ => {}
            }
        }
    }
}

#[test]
fn a_scenario_passes_and_reports_what_it_recorded() {
    let fake = FakeExecutor::<Fetch>::succeed(6);
    let recorder = fake.recorder();
    let report = Scenario::new(Loader, Screen::Idle)
        .given(move |d| {
            d.register(fake);
        })
        .when(|act| {
            act.publish("load");
        })
        .then_states([Screen::Loading, Screen::Loaded(6)])
        .then_events([Fetched(6)])
        .then_jobs(&recorder, [Fetch(1)])
        .run()
        .unwrap();
    assert_eq!(report.state(), Screen::Loaded(6));
    assert_eq!(report.states().len(), 2);
    assert_eq!(report.events().count::<&str>(), 1);
    assert_eq!(report.orchestrator().running_jobs(), 0);
    assert!(report.dispatcher().is_registered::<Fetch>());
    assert_eq!(report.runtime().pool().len(), 1, "the orchestrator's loop");
}

#[test]
fn a_scenario_moves_virtual_time_in_its_acts_and_after() {
    let report = Scenario::new(Loader, Screen::Idle)
        .given(|d| {
            d.register(FakeExecutor::<Fetch>::never());
        })
        .when(|act| {
            let job = act
                .orchestrator()
                .job(Fetch(1))
                .timeout(Duration::from_secs(10));
            drop(job.dispatch());
            act.advance(Duration::from_secs(9));
            assert_eq!(act.state(), Screen::Loading, "not yet timed out");
        })
        .wait(Duration::from_secs(1))
        .then_states([Screen::Loading, Screen::Failed])
        .run()
        .unwrap();
    assert_eq!(
        report.runtime().now().elapsed_since_epoch(),
        Duration::from_secs(10)
    );
}

#[test]
fn a_failed_scenario_prints_every_expectation_side_by_side() {
    let fake = FakeExecutor::<Fetch>::fail(FakeError::new("offline"));
    let recorder = fake.recorder();
    let error = Scenario::new(Loader, Screen::Idle)
        .given(move |d| {
            d.register(fake);
        })
        .when(|act| {
            act.dispatch(Fetch(2));
        })
        .then_states([Screen::Loading, Screen::Loaded(2)])
        .then_events([Fetched(2)])
        .then_jobs(&recorder, [Fetch(2), Fetch(3)])
        .run()
        .unwrap_err();
    assert_eq!(error.failures().len(), 3);
    let expected = format!(
        "the states differ:\n\
        \x20     # | expected  | actual\n\
        \x20    1 | Loading   | Loading\n\
        \x20 >  2 | Loaded(2) | Failed\n\
        \n\
        the events of type `{fetched}` differ:\n\
        \x20     # | expected   | actual\n\
        \x20 >  1 | Fetched(2) | \n\
        \n\
        the jobs of type `{fetch}` differ:\n\
        \x20     # | expected | actual\n\
        \x20    1 | Fetch(2) | Fetch(2)\n\
        \x20 >  2 | Fetch(3) | ",
        fetched = std::any::type_name::<Fetched>(),
        fetch = std::any::type_name::<Fetch>(),
    );
    assert_eq!(error.to_string(), expected);
    assert_eq!(format!("{error:?}"), expected);
}

#[test]
fn a_scenario_with_more_states_than_expected_marks_the_extra_ones() {
    let error = Scenario::new(Loader, Screen::Idle)
        .given(|d| {
            d.register(FakeExecutor::<Fetch>::succeed(1));
        })
        .when(|act| {
            act.dispatch(Fetch(1));
        })
        .then_states([Screen::Loading])
        .run()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the states differ:\n      # | expected | actual\n     1 | Loading  | Loading\n  >  2 |          | Loaded(1)"
    );
}

#[test]
fn a_scenario_reports_an_event_its_acts_could_not_publish() {
    let error = Scenario::new(Loader, Screen::Idle)
        .when(|act| {
            act.orchestrator().bus().close();
            act.publish("load");
        })
        .run()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "an act could not publish a `&str`: the bus is closed"
    );
}
