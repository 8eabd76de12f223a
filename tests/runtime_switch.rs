//! The same application code on every runtime: only the constructor line differs.

use std::time::Duration;

use orchestrator_core::{
    CancellationToken, Dispatch, Dispatcher, Executor, Job, JobContext, RetryPolicy,
};

struct Square(u64);
impl Job for Square {
    type Output = u64;
}

#[derive(Debug)]
struct Flaky;
impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("flaky")
    }
}
impl std::error::Error for Flaky {}

struct Squarer;
impl Executor<Square> for Squarer {
    type Error = Flaky;
    async fn execute(&self, job: &Square, cx: JobContext) -> Result<u64, Flaky> {
        cx.sleep(Duration::from_millis(1)).await;
        if cx.attempt() < 2 {
            return Err(Flaky);
        }
        Ok(job.0 * job.0)
    }
}

/// Application code: never names a runtime.
async fn application<R: orchestrator_core::runtime::Runtime>(
    dispatcher: Dispatcher<R>,
) -> (u64, bool) {
    dispatcher.register(Squarer);
    let value = dispatcher
        .job(Square(12))
        .retry(RetryPolicy::fixed(2, Duration::from_millis(1)))
        .dispatch()
        .await
        .expect("second attempt succeeds")
        .value;
    let token = CancellationToken::new();
    token.cancel();
    let cancelled = dispatcher
        .job(Square(1))
        .cancellation(token)
        .dispatch()
        .await
        .is_err_and(|e| e.is_cancelled());
    (value, cancelled)
}

#[test]
fn tokio_multi_thread() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let out = rt.block_on(application(Dispatcher::new(
        orchestrator_tokio::TokioRuntime::default(),
    )));
    assert_eq!(out, (144, true));
}

#[test]
fn tokio_current_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(application(Dispatcher::new(
        orchestrator_tokio::TokioRuntime::default(),
    )));
    assert_eq!(out, (144, true));
}

#[test]
fn smol() {
    let out = smol::block_on(application(Dispatcher::new(
        orchestrator_smol::SmolRuntime::default(),
    )));
    assert_eq!(out, (144, true));
}

#[test]
fn async_std() {
    let out = futures::executor::block_on(application(Dispatcher::new(
        orchestrator_async_std::AsyncStdRuntime::default(),
    )));
    assert_eq!(out, (144, true));
}

#[test]
fn virtual_time() {
    let rt = orchestrator_core::testing::VirtualRuntime::new();
    let out = rt.block_on(application(Dispatcher::new(rt.clone())));
    assert_eq!(out, (144, true));
}

#[test]
fn tokio_runtime_outside_any_runtime_is_a_rejection_not_a_panic() {
    let dispatcher = Dispatcher::new(orchestrator_tokio::TokioRuntime::default());
    dispatcher.register(Squarer);
    let err = futures::executor::block_on(dispatcher.dispatch(Square(2))).unwrap_err();
    assert!(matches!(
        err.rejection(),
        Some(orchestrator_core::Rejection::Spawn(kind)) if kind.is_no_runtime()
    ));
}
