//! Regression tests for defects found by a randomized soak and targeted probes: each failed
//! before its fix.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    CachePolicy, CancellationToken, DataSource, Dispatch, Dispatcher, Event, Executor, Job,
    JobContext, JobError, JobLifecycle, Observer, Orchestrator, OrchestratorContext, Origin,
    RetryPolicy, SignalBus,
};

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}
impl std::error::Error for Boom {}

/// Returns 7 after `delay`.
#[derive(Clone)]
struct Fetch {
    delay: Duration,
}
impl Job for Fetch {
    type Output = u32;
}
struct FetchExec {
    runs: Arc<AtomicUsize>,
}
impl Executor<Fetch> for FetchExec {
    type Error = Boom;
    async fn execute(&self, job: &Fetch, cx: JobContext) -> Result<u32, Boom> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        cx.sleep(job.delay).await;
        Ok(7)
    }
}

fn setup() -> (VirtualRuntime, Dispatcher<VirtualRuntime>, Arc<AtomicUsize>) {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    dispatcher.register(FetchExec { runs: runs.clone() });
    (rt, dispatcher, runs)
}

struct Quiet;
impl Orchestrator for Quiet {
    type State = ();
    fn on_event(&mut self, _: &Event, _: Origin, _: &mut OrchestratorContext<'_, ()>) {}
}

#[test]
fn a_dedup_join_through_an_orchestrator_is_never_tracked_forever() {
    let (rt, dispatcher, runs) = setup();
    let a = Quiet.builder((), &dispatcher).start().unwrap();
    let b = Quiet
        .builder((), &dispatcher)
        .bus(SignalBus::new())
        .start()
        .unwrap();
    let job = Fetch {
        delay: Duration::from_secs(1),
    };
    // Leader through the dispatcher, followers through two orchestrators (one on another bus).
    let leader = dispatcher.job(job.clone()).dedup("k").dispatch();
    let via_a = a.job(job.clone()).dedup("k").dispatch();
    let via_b = b.job(job).dedup("k").dispatch();
    assert_eq!(via_a.id(), leader.id());
    assert_eq!(a.running_jobs(), 0, "a join is not a job of its own");
    assert_eq!(b.running_jobs(), 0);
    for handle in [leader, via_a, via_b] {
        assert_eq!(rt.block_on(handle).unwrap().value, 7);
    }
    rt.run_until_stalled();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!((a.running_jobs(), b.running_jobs()), (0, 0));
    assert_eq!(dispatcher.in_flight(), 0);
}

#[test]
fn a_cache_hit_honours_a_cancelled_token_and_a_zero_budget() {
    let (rt, dispatcher, runs) = setup();
    let policy = CachePolicy::new("seven");
    let job = Fetch {
        delay: Duration::ZERO,
    };
    let warm = dispatcher.job(job.clone()).cache(policy.clone()).dispatch();
    assert_eq!(rt.block_on(warm).unwrap().data_source, DataSource::Fresh);
    let token = CancellationToken::new();
    token.cancel_with("too late");
    let cancelled = dispatcher
        .job(job.clone())
        .cache(policy.clone())
        .cancellation(token)
        .dispatch();
    match rt.block_on(cancelled) {
        Err(JobError::Cancelled { reason }) => assert_eq!(reason.as_deref(), Some("too late")),
        other => panic!("expected cancelled, got {other:?}"),
    }
    let zero = dispatcher
        .job(job.clone())
        .cache(policy.clone())
        .timeout(Duration::ZERO)
        .dispatch();
    assert!(rt.block_on(zero).unwrap_err().is_timed_out());
    // Revalidating dispatches too.
    let token = CancellationToken::new();
    token.cancel();
    let revalidate = dispatcher
        .job(job)
        .cache(policy.revalidate())
        .cancellation(token)
        .dispatch();
    assert!(rt.block_on(revalidate).unwrap_err().is_cancelled());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn a_dedup_follower_honours_its_own_token_and_timeout() {
    let (rt, dispatcher, runs) = setup();
    let job = Fetch {
        delay: Duration::from_secs(10),
    };
    let leader = dispatcher.job(job.clone()).dedup("k").dispatch();
    let token = CancellationToken::new();
    let by_token = dispatcher
        .job(job.clone())
        .dedup("k")
        .cancellation(token.clone())
        .dispatch();
    let by_timeout = dispatcher
        .job(job.clone())
        .dedup("k")
        .timeout(Duration::from_secs(2))
        .dispatch();
    let pre_cancelled = {
        let t = CancellationToken::new();
        t.cancel();
        dispatcher.job(job).dedup("k").cancellation(t).dispatch()
    };
    assert!(rt.block_on(pre_cancelled).unwrap_err().is_cancelled());
    rt.run_until_stalled();
    token.cancel();
    assert!(rt.block_on(by_token).unwrap_err().is_cancelled());
    match rt.block_on(by_timeout) {
        Err(JobError::TimedOut { budget }) => assert_eq!(budget, Duration::from_secs(2)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(!leader.is_finished(), "the leader goes on for the others");
    assert_eq!(rt.block_on(leader).unwrap().value, 7);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Fails at once, without awaiting anything.
struct FailFast;
impl Job for FailFast {
    type Output = ();
}
struct FailFastExec {
    attempts: Arc<AtomicU32>,
}
impl Executor<FailFast> for FailFastExec {
    type Error = Boom;
    async fn execute(&self, _: &FailFast, _: JobContext) -> Result<(), Boom> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst);
        // Without a yield between attempts, one poll would never return: fail loudly instead
        // of hanging the test.
        assert!(n < 100_000, "the retry loop never yielded");
        Err(Boom)
    }
}

#[test]
fn zero_delay_retries_yield_so_cancellation_and_the_budget_are_seen() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let attempts = Arc::new(AtomicU32::new(0));
    dispatcher.register(FailFastExec {
        attempts: attempts.clone(),
    });
    let policy = RetryPolicy::fixed(u32::MAX, Duration::ZERO);
    let token = CancellationToken::new();
    let mut handle = dispatcher
        .job(FailFast)
        .retry(policy.clone())
        .cancellation(token.clone())
        .dispatch();
    // Drive the pool by hand: each poll of the job's task runs one attempt, then yields.
    let mut run = rt.pool().run();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
    let made = attempts.load(Ordering::SeqCst);
    assert!(made > 1, "retries ran ({made})");
    token.cancel();
    assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
    match Pin::new(&mut handle).poll(&mut cx) {
        Poll::Ready(Err(e)) => assert!(e.is_cancelled()),
        other => panic!("expected cancelled, got {other:?}"),
    }
    // The handle's own cancel is seen the same way.
    let mut handle = dispatcher.job(FailFast).retry(policy).dispatch();
    assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
    handle.cancel();
    assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
    assert!(matches!(
        Pin::new(&mut handle).poll(&mut cx),
        Poll::Ready(Err(JobError::Cancelled { .. }))
    ));
}

/// Counts undelivered events.
#[derive(Default, Clone)]
struct Undelivered(Arc<Mutex<Vec<String>>>);
impl Observer for Undelivered {
    fn on_event_undelivered(&self, event: &Event) {
        let what = match event.downcast_ref::<JobLifecycle>() {
            Some(l) => format!("{l:?}"),
            None => event.payload_type_name().to_string(),
        };
        self.0.lock().unwrap().push(what);
    }
}

#[test]
fn lifecycle_events_of_a_job_on_a_closed_bus_are_reported() {
    let rt = VirtualRuntime::new();
    let observer = Undelivered::default();
    let bus = SignalBus::new();
    let dispatcher = Dispatcher::builder(rt.clone())
        .bus(bus.clone())
        .lifecycle_events(true)
        .observer(observer.clone())
        .build();
    dispatcher.register(FetchExec {
        runs: Arc::new(AtomicUsize::new(0)),
    });
    let handle = dispatcher.dispatch(Fetch {
        delay: Duration::from_secs(1),
    });
    rt.run_until_stalled();
    bus.close();
    assert_eq!(rt.block_on(handle).unwrap().value, 7);
    let lost = observer.0.lock().unwrap().clone();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].starts_with("Succeeded"), "{lost:?}");
    assert_eq!(dispatcher.undelivered_events(), 1);
}
