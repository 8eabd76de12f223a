//! The core's test kit on tokio: fake executors, the event capture and the outcome checks
//! work the same as on the virtual runtime, with tokio's timer for the waits.

use std::time::Duration;

use orchestrator_core::testing::{EventCapture, FakeError, FakeExecutor, expect};
use orchestrator_core::{Dispatch, Dispatcher, Job, JobLifecycle, RetryPolicy};
use orchestrator_tokio::TokioRuntime;

#[derive(Debug, Clone, PartialEq)]
struct Charge(u32);
impl Job for Charge {
    type Output = u32;
    fn output_event(&self, amount: &u32) -> Option<impl Send + Sync + 'static> {
        Some(Charged(*amount))
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Charged(u32);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fakes_checks_and_waits_on_a_multi_threaded_runtime() {
    let dispatcher = Dispatcher::builder(TokioRuntime::default())
        .lifecycle_events(true)
        .build();
    let flaky = FakeExecutor::<Charge>::fail_times(2, FakeError::new("gateway busy"), 30);
    let recorder = flaky.recorder();
    dispatcher.register(flaky);
    let events = EventCapture::on(&dispatcher).show::<Charged>();

    let outcome = dispatcher
        .job(Charge(30))
        .retry(RetryPolicy::fixed(3, Duration::ZERO))
        .dispatch()
        .await;
    expect::succeeded_with(&outcome, &30).unwrap();
    assert_eq!(recorder.attempts(), 3);
    assert_eq!(recorder.jobs(), [Charge(30)]);

    let charged = events.wait_for::<Charged>().await.unwrap();
    assert_eq!(*charged, Charged(30));
    let done = events
        .wait_for_matching("the terminal event", |e| {
            e.downcast_ref::<JobLifecycle>()
                .is_some_and(JobLifecycle::is_terminal)
        })
        .await
        .unwrap();
    assert!(matches!(
        done.downcast_ref::<JobLifecycle>(),
        Some(JobLifecycle::Succeeded { .. })
    ));
}

/// Paused tokio time: the wait's limit passes as soon as everything is idle, so a wait that
/// never matches ends at once, with its message.
#[tokio::test(start_paused = true)]
async fn a_wait_that_never_matches_times_out_on_tokios_clock() {
    let dispatcher = Dispatcher::new(TokioRuntime::default());
    dispatcher.register(FakeExecutor::<Charge>::fail(FakeError::new(
        "card declined",
    )));
    let events = EventCapture::on(&dispatcher).with_limit(Duration::from_secs(10));

    let outcome = dispatcher.dispatch(Charge(5)).await;
    expect::failed_after(&outcome, 1, "card declined").unwrap();
    let never = events.wait_for::<Charged>().await.unwrap_err();
    assert!(never.is_timed_out());
    assert_eq!(
        never.to_string(),
        format!(
            "timed out after 10s waiting for an event of type `{}`; nothing was published",
            std::any::type_name::<Charged>()
        )
    );

    let hanging = dispatcher.register(FakeExecutor::<Charge>::never());
    let job = hanging
        .job(Charge(1))
        .timeout(Duration::from_secs(2))
        .dispatch();
    assert_eq!(expect::timed_out(&job.await), Ok(Duration::from_secs(2)));
}
