//! A tower service as an executor: tower's middleware applies across dispatches, the service's
//! errors are the dispatcher's failures (and retried by its policy), and the dispatcher's
//! timeout covers a service that never becomes ready. On the virtual clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use orchestrator_core::runtime::Timer;
use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{Dispatch, Dispatcher, Job, JobError, RetryPolicy};
use orchestrator_tower::{ServiceExecutor, ServiceRequest};
use tower::{ServiceBuilder, service_fn};

#[derive(Clone)]
struct Render(u32);
impl Job for Render {
    type Output = u32;
}

#[derive(Debug)]
struct Busy;
impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("busy")
    }
}
impl std::error::Error for Busy {}

#[test]
fn a_tower_concurrency_limit_holds_across_dispatches() {
    let rt = VirtualRuntime::new();
    let (running, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (r, m) = (running.clone(), most.clone());
    let service = ServiceBuilder::new()
        .concurrency_limit(2)
        .service(service_fn(move |request: ServiceRequest<Render>| {
            let (r, m) = (r.clone(), m.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                request.cx.sleep(Duration::from_secs(1)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Busy>(request.job.0 * 10)
            }
        }));
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(ServiceExecutor::new(service));
    let start = rt.now();
    let handles: Vec<_> = (1..=5).map(|n| dispatcher.dispatch(Render(n))).collect();
    let values: Vec<u32> = handles
        .into_iter()
        .map(|h| rt.block_on(h).unwrap().value)
        .collect();
    assert_eq!(values, [10, 20, 30, 40, 50]);
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "never more than the limit at once"
    );
    assert_eq!(
        rt.now().saturating_duration_since(start),
        Duration::from_secs(3),
        "five one-second jobs, two at a time"
    );
}

#[test]
fn service_errors_are_failures_and_the_dispatcher_retries_them() {
    let rt = VirtualRuntime::new();
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let service = service_fn(move |request: ServiceRequest<Render>| {
        let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if call < 3 {
                Err(Busy)
            } else {
                Ok(request.job.0 + request.cx.attempt())
            }
        }
    });
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(ServiceExecutor::new(service));
    let retried = dispatcher
        .job(Render(100))
        .retry(RetryPolicy::fixed(5, Duration::from_millis(10)))
        .dispatch();
    assert_eq!(rt.block_on(retried).unwrap().value, 103, "third attempt");
    match rt.block_on(dispatcher.dispatch(Render(1))) {
        Ok(success) => assert_eq!(success.value, 2),
        Err(other) => panic!("the service recovered: {other:?}"),
    }
    calls.store(0, Ordering::SeqCst);
    match rt.block_on(dispatcher.dispatch(Render(1))) {
        Err(JobError::Failed(failure)) => {
            assert!(failure.downcast_ref::<Busy>().is_some());
            assert_eq!(failure.attempts(), 1);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Never ready.
#[derive(Clone)]
struct Closed;
impl tower::Service<ServiceRequest<Render>> for Closed {
    type Response = u32;
    type Error = Busy;
    type Future = std::future::Ready<Result<u32, Busy>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Busy>> {
        Poll::Pending
    }
    fn call(&mut self, _: ServiceRequest<Render>) -> Self::Future {
        unreachable!("never ready, never called")
    }
}

#[test]
fn the_dispatch_timeout_covers_a_service_that_is_never_ready() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(ServiceExecutor::new(Closed));
    let timed = dispatcher
        .job(Render(1))
        .timeout(Duration::from_secs(2))
        .dispatch();
    assert!(matches!(rt.block_on(timed), Err(JobError::TimedOut { .. })));
    assert_eq!(dispatcher.in_flight(), 0);
}
