//! `TokioRuntime`'s timer outside a tokio runtime: no panics, and sleeps that still complete.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use orchestrator_core::runtime::Timer;
use orchestrator_tokio::TokioRuntime;

const HOUR: Duration = Duration::from_secs(3600);

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

#[test]
fn sleep_and_now_outside_any_runtime_do_not_panic() {
    let rt = TokioRuntime::default();
    let before = rt.now();
    let mut sleep = pin!(rt.sleep(HOUR));
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending);
    assert!(rt.now() >= before);
    // A due sleep completes at its first poll, runtime or not.
    assert_eq!(
        pin!(rt.sleep(Duration::ZERO)).poll(&mut cx),
        Poll::Ready(())
    );
}

#[test]
fn sleep_polled_outside_any_runtime_completes() {
    // Waits on the real clock for a millisecond; nothing about the timing is asserted.
    futures::executor::block_on(TokioRuntime::default().sleep(Duration::from_millis(1)));
}

#[test]
fn sleep_made_outside_a_runtime_runs_on_the_clock_of_the_runtime_that_polls_it() {
    let adapter = TokioRuntime::default();
    let sleep = adapter.sleep(HOUR);
    let runtime = paused_runtime();
    let slept = runtime.block_on(async {
        let start = tokio::time::Instant::now();
        sleep.await;
        start.elapsed()
    });
    assert!(slept >= HOUR, "slept {slept:?}");
}

#[tokio::test(start_paused = true)]
async fn sleep_made_on_a_plain_thread_is_awaited_inside_the_runtime() {
    let adapter = TokioRuntime::default();
    let sleep = std::thread::spawn(move || adapter.sleep(HOUR))
        .join()
        .unwrap();
    let start = tokio::time::Instant::now();
    sleep.await;
    assert!(start.elapsed() >= HOUR);
}

#[test]
fn a_pinned_runtime_sleeps_and_reads_its_clock_from_any_thread() {
    let runtime = paused_runtime();
    let adapter = TokioRuntime::with_handle(runtime.handle().clone());
    let before = adapter.now();
    let sleep = adapter.sleep(HOUR);
    runtime.block_on(sleep);
    // Read outside `block_on`: still the pinned runtime's (paused, advanced) clock.
    assert!(adapter.now().saturating_duration_since(before) >= HOUR);
}
