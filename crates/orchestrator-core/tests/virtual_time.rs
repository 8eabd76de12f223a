//! Exact timing behaviour on the virtual clock: backoff schedules, budgets, jitter.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::runtime::{Instant, Timer};
use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    CancellationToken, Dispatch, Dispatcher, Executor, Job, JobContext, JobError, RetryPolicy,
};

#[derive(Debug)]
struct Nope;
impl std::fmt::Display for Nope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("nope")
    }
}
impl std::error::Error for Nope {}

/// Always fails, recording the virtual time of each attempt.
struct AlwaysFails;
impl Job for AlwaysFails {
    type Output = ();
}
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Duration>>>);
impl Recorder {
    fn times(&self) -> Vec<Duration> {
        self.0.lock().unwrap().clone()
    }
}
impl Executor<AlwaysFails> for Recorder {
    type Error = Nope;
    async fn execute(&self, _: &AlwaysFails, cx: JobContext) -> Result<(), Nope> {
        self.0.lock().unwrap().push(cx.now().elapsed_since_epoch());
        Err(Nope)
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn setup() -> (VirtualRuntime, Dispatcher<VirtualRuntime>, Recorder) {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    let rec = Recorder::default();
    d.register::<AlwaysFails, _>(rec.clone());
    (rt, d, rec)
}

#[test]
fn exponential_backoff_runs_on_the_exact_schedule() {
    let (rt, d, rec) = setup();
    let handle = d
        .job(AlwaysFails)
        .retry(RetryPolicy::exponential(3, ms(100)))
        .dispatch();
    let err = rt.block_on(handle).unwrap_err();
    assert_eq!(err.failure().unwrap().attempts(), 4);
    assert_eq!(rec.times(), vec![ms(0), ms(100), ms(300), ms(700)]);
    assert_eq!(rt.now(), Instant::from_elapsed(ms(700)));
}

#[test]
fn capped_backoff_stops_growing_at_max_delay() {
    let (rt, d, rec) = setup();
    let policy = RetryPolicy::builder()
        .max_retries(5)
        .base_delay(ms(100))
        .multiplier(3.0)
        .max_delay(ms(500))
        .build()
        .unwrap();
    rt.block_on(d.job(AlwaysFails).retry(policy).dispatch())
        .unwrap_err();
    // Waits: 100, 300, 500 (capped from 900), 500, 500.
    assert_eq!(
        rec.times(),
        vec![ms(0), ms(100), ms(400), ms(900), ms(1400), ms(1900)]
    );
}

#[test]
fn budget_expires_mid_backoff_at_exactly_the_budget() {
    let (rt, d, rec) = setup();
    let handle = d
        .job(AlwaysFails)
        .retry(RetryPolicy::fixed(u32::MAX, ms(30)))
        .timeout(ms(100))
        .dispatch();
    let err = rt.block_on(handle).unwrap_err();
    assert!(matches!(err, JobError::TimedOut { budget } if budget == ms(100)));
    assert_eq!(rec.times(), vec![ms(0), ms(30), ms(60), ms(90)]);
    assert_eq!(rt.now(), Instant::from_elapsed(ms(100)));
    // Nothing is left scheduled: the backoff sleep was dropped with the work.
    rt.run_until_stalled();
    assert_eq!(rt.next_deadline(), None);
    assert!(rt.pool().is_empty());
}

#[test]
fn cancel_during_backoff_stops_without_waiting_for_the_sleep() {
    let (rt, d, rec) = setup();
    let token = CancellationToken::new();
    let handle = d
        .job(AlwaysFails)
        .retry(RetryPolicy::fixed(3, Duration::from_secs(3600)))
        .cancellation(token.clone())
        .dispatch();
    rt.advance(ms(10));
    assert_eq!(rec.times(), vec![ms(0)]);
    token.cancel();
    let err = rt.block_on(handle).unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(rt.now(), Instant::from_elapsed(ms(10)), "no time passed");
}

#[test]
fn jittered_schedule_is_within_bounds_and_reproducible() {
    let policy = RetryPolicy::builder()
        .max_retries(4)
        .base_delay(ms(100))
        .multiplier(2.0)
        .jitter(0.5)
        .build()
        .unwrap();
    let (rt, d, rec) = setup();
    let handle = d.job(AlwaysFails).retry(policy.clone()).dispatch();
    let seed = handle.id().as_u64();
    rt.block_on(handle).unwrap_err();
    let times = rec.times();
    let mut expected = Duration::ZERO;
    for (retry, pair) in times.windows(2).enumerate() {
        let wait = pair[1] - pair[0];
        let full = policy.delay(retry as u32);
        assert!(
            wait <= full && wait >= full / 2,
            "retry {retry}: {wait:?} vs {full:?}"
        );
        expected += policy.jittered_delay(retry as u32, seed);
        assert_eq!(
            pair[1], expected,
            "the schedule follows jittered_delay(job id)"
        );
    }
}

struct SlowThenFast;
impl Job for SlowThenFast {
    type Output = u32;
}
struct SlowThenFastExec;
impl Executor<SlowThenFast> for SlowThenFastExec {
    type Error = Nope;
    async fn execute(&self, _: &SlowThenFast, cx: JobContext) -> Result<u32, Nope> {
        if cx.attempt() == 1 {
            cx.sleep(Duration::from_secs(60)).await;
        }
        Ok(cx.attempt())
    }
}

#[test]
fn attempt_timeout_cuts_the_slow_attempt_then_retries() {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    d.register(SlowThenFastExec);
    let handle = d
        .job(SlowThenFast)
        .attempt_timeout(ms(50))
        .retry(RetryPolicy::fixed(2, ms(10)))
        .dispatch();
    let done = rt.block_on(handle).unwrap();
    assert_eq!(done.value, 2);
    assert_eq!(rt.now(), Instant::from_elapsed(ms(60)));
}

#[test]
fn virtual_clock_only_moves_when_driven() {
    let rt = VirtualRuntime::new();
    assert_eq!(rt.now(), Instant::ZERO);
    rt.advance(ms(250));
    assert_eq!(rt.now(), Instant::from_elapsed(ms(250)));
    let sleep = rt.sleep(ms(100));
    assert_eq!(
        rt.next_deadline(),
        None,
        "a sleep registers when first polled"
    );
    rt.block_on(sleep);
    assert_eq!(rt.now(), Instant::from_elapsed(ms(350)));
    let stalled = rt.try_block_on(std::future::pending::<()>());
    assert!(stalled.is_err(), "nothing can wake a pending future");
}

#[test]
fn the_retry_shortcuts_saturate_instead_of_failing() {
    use orchestrator_core::{
        Dispatch, Dispatcher, Executor, Job, JobContext, JobError, RetryPolicy,
    };
    struct Flaky;
    impl Job for Flaky {
        type Output = ();
    }
    struct Fails(std::sync::Arc<std::sync::atomic::AtomicU32>);
    impl Executor<Flaky> for Fails {
        type Error = std::io::Error;
        async fn execute(&self, _: &Flaky, _: JobContext) -> Result<(), std::io::Error> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(std::io::Error::other("down"))
        }
    }
    let rt = orchestrator_core::testing::VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let runs = std::sync::Arc::default();
    dispatcher.register(Fails(std::sync::Arc::clone(&runs)));
    for policy in [
        RetryPolicy::fixed(3, Duration::MAX),
        RetryPolicy::exponential(u32::MAX, Duration::MAX),
    ] {
        runs.store(0, std::sync::atomic::Ordering::SeqCst);
        let handle = dispatcher
            .job(Flaky)
            .retry(policy)
            .timeout(Duration::from_secs(10))
            .dispatch();
        // The wait before the second attempt outlasts the budget: timed out, one run.
        assert!(matches!(
            rt.block_on(handle),
            Err(JobError::TimedOut { .. })
        ));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
