//! The runtime abstraction from the core's side: refused spawns, dropped tasks, the task pool
//! as a single driver future, and outcome races decided on one poll.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use orchestrator_core::runtime::{
    Instant, PoolRuntime, Sleep, Spawn, SpawnError, SpawnErrorKind, Task, Timer,
};
use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext, JobError, Rejection};

struct Ping(u32);
impl Job for Ping {
    type Output = u32;
}
struct PingExec;
impl Executor<Ping> for PingExec {
    type Error = std::convert::Infallible;
    async fn execute(&self, job: &Ping, _cx: JobContext) -> Result<u32, Self::Error> {
        Ok(job.0)
    }
}

/// A runtime that refuses or silently drops every task.
#[derive(Clone)]
struct Broken {
    refuse: bool,
    clock: VirtualRuntime,
}
impl Spawn for Broken {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        if self.refuse {
            Err(SpawnError::new(SpawnErrorKind::Full, task))
        } else {
            drop(task); // as tokio does with tasks spawned on a runtime that shut down
            Ok(())
        }
    }
}
impl Timer for Broken {
    fn sleep(&self, d: Duration) -> Sleep {
        self.clock.sleep(d)
    }
    fn now(&self) -> Instant {
        self.clock.now()
    }
}

fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn refused_spawn_is_a_rejection_with_the_runtime_reason() {
    let d = Dispatcher::new(Broken {
        refuse: true,
        clock: VirtualRuntime::new(),
    });
    d.register(PingExec);
    let mut handle = d.dispatch(Ping(1));
    match poll_once(&mut handle) {
        Poll::Ready(Err(JobError::Rejected(Rejection::Spawn(kind)))) => assert!(kind.is_full()),
        other => panic!("expected a spawn rejection, got {other:?}"),
    }
}

#[test]
fn task_dropped_unpolled_resolves_as_cancelled() {
    let d = Dispatcher::new(Broken {
        refuse: false,
        clock: VirtualRuntime::new(),
    });
    d.register(PingExec);
    let mut handle = d.dispatch(Ping(1));
    match poll_once(&mut handle) {
        Poll::Ready(Err(JobError::Cancelled { reason })) => {
            assert_eq!(
                reason.as_deref(),
                Some("the runtime dropped the job's task")
            );
        }
        other => panic!("expected cancelled, got {other:?}"),
    }
}

struct Forever;
impl Job for Forever {
    type Output = ();
}
struct ForeverExec;
impl Executor<Forever> for ForeverExec {
    type Error = std::convert::Infallible;
    async fn execute(&self, _: &Forever, _cx: JobContext) -> Result<(), Self::Error> {
        std::future::pending().await
    }
}

#[test]
fn task_dropped_mid_run_resolves_as_cancelled() {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    d.register(ForeverExec);
    let mut handle = d.dispatch(Forever);
    rt.run_until_stalled();
    assert!(poll_once(&mut handle).is_pending());
    rt.shutdown(); // drops the running task, as a runtime shutting down does
    assert!(matches!(
        poll_once(&mut handle),
        Poll::Ready(Err(JobError::Cancelled { .. }))
    ));
    assert!(rt.pool().is_empty());
    let err = rt.block_on(d.dispatch(Forever)).unwrap_err();
    assert!(matches!(
        err,
        JobError::Rejected(Rejection::Spawn(SpawnErrorKind::Shutdown))
    ));
}

/// Succeeds when polled with its gate set; setting the gate wakes nobody.
struct Gated;
impl Job for Gated {
    type Output = &'static str;
}
struct GatedExec(Arc<AtomicBool>);
impl Executor<Gated> for GatedExec {
    type Error = std::convert::Infallible;
    async fn execute(&self, _: &Gated, _cx: JobContext) -> Result<&'static str, Self::Error> {
        let gate = self.0.clone();
        std::future::poll_fn(move |cx| {
            let _ = cx;
            if gate.load(Ordering::SeqCst) {
                Poll::Ready(Ok("done"))
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

#[test]
fn cancel_and_completion_on_the_same_poll_give_one_outcome_cancel_first() {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    let gate = Arc::new(AtomicBool::new(false));
    d.register(GatedExec(gate.clone()));
    let handle = d.dispatch(Gated);
    rt.run_until_stalled();
    gate.store(true, Ordering::SeqCst); // the work would complete on its next poll...
    handle.cancel(); // ...but the cancel request wakes the task and is checked first
    let mut handle = handle;
    let out = rt.block_on(&mut handle);
    assert!(out.unwrap_err().is_cancelled());
    assert!(poll_once(&mut handle).is_pending(), "no second outcome");
}

#[test]
fn completion_before_cancel_stands() {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    let gate = Arc::new(AtomicBool::new(true));
    d.register(GatedExec(gate));
    let mut handle = d.dispatch(Gated);
    rt.run_until_stalled();
    handle.cancel();
    assert_eq!(rt.block_on(&mut handle).unwrap().value, "done");
}

/// A timer for the pool runtime: the virtual clock, driven by hand.
#[test]
fn pool_runtime_is_driven_by_one_future_without_any_spawner() {
    let clock = VirtualRuntime::new();
    let rt = PoolRuntime::new(clock.clone());
    let d = Dispatcher::new(rt.clone());
    d.register(PingExec);
    let handles: Vec<_> = (0..10).map(|i| d.dispatch(Ping(i))).collect();
    assert_eq!(rt.pool().len(), 10, "queued, not run");
    let mut driver = pin!(rt.run());
    let cx = &mut Context::from_waker(Waker::noop());
    assert!(
        driver.as_mut().poll(cx).is_pending(),
        "the driver never completes"
    );
    assert!(rt.pool().is_empty());
    for (i, mut h) in (0..).zip(handles) {
        assert!(matches!(poll_once(&mut h), Poll::Ready(Ok(s)) if s.value == i));
    }
}

#[test]
fn pool_wakes_its_driver_when_a_task_is_spawned_from_another_thread() {
    let rt = PoolRuntime::new(VirtualRuntime::new());
    let woken = Arc::new(AtomicUsize::new(0));
    struct Count(Arc<AtomicUsize>);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let waker = Waker::from(Arc::new(Count(woken.clone())));
    let mut driver = pin!(rt.run());
    assert!(
        driver
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    let ran = Arc::new(Mutex::new(false));
    let (rt2, ran2) = (rt.clone(), ran.clone());
    std::thread::spawn(move || {
        rt2.spawn(Task::new(async move { *ran2.lock().unwrap() = true }))
            .unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(woken.load(Ordering::SeqCst), 1, "spawning woke the driver");
    assert!(
        driver
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    assert!(*ran.lock().unwrap());
}

#[test]
fn zero_timeout_rejects_before_the_executor_and_without_sleeping() {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    d.register(ForeverExec);
    let err = rt
        .block_on(d.job(Forever).timeout(Duration::ZERO).dispatch())
        .unwrap_err();
    assert!(matches!(err, JobError::TimedOut { budget } if budget.is_zero()));
    assert_eq!(rt.now(), Instant::ZERO);
}

/// Counts its calls.
struct Counted;
impl Job for Counted {
    type Output = ();
}
struct CountedExec(Arc<AtomicUsize>);
impl Executor<Counted> for CountedExec {
    type Error = std::convert::Infallible;
    async fn execute(&self, _: &Counted, _cx: JobContext) -> Result<(), Self::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn handle_cancel_before_the_first_poll_never_runs_the_executor() {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    let calls = Arc::new(AtomicUsize::new(0));
    d.register(CountedExec(calls.clone()));
    for timeout in [None, Some(Duration::from_secs(1))] {
        let handle = match timeout {
            None => d.dispatch(Counted),
            Some(budget) => d.job(Counted).timeout(budget).dispatch(),
        };
        handle.cancel_with("early");
        let err = rt.block_on(handle).unwrap_err();
        assert!(matches!(err, JobError::Cancelled { reason: Some(r) } if r == "early"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A runtime that notes how each task reached it: unboxed through `spawn_future` (with the
/// future's size) or boxed through `spawn`.
#[derive(Clone)]
struct Sizing {
    clock: VirtualRuntime,
    unboxed: Arc<Mutex<Vec<usize>>>,
    boxed: Arc<AtomicUsize>,
}
impl Spawn for Sizing {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        self.boxed.fetch_add(1, Ordering::SeqCst);
        self.clock.spawn(task)
    }
    fn spawn_future<F>(&self, future: F) -> Result<(), SpawnError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.unboxed.lock().unwrap().push(std::mem::size_of::<F>());
        self.clock.spawn(Task::new(future))
    }
}
impl Timer for Sizing {
    fn sleep(&self, d: Duration) -> Sleep {
        self.clock.sleep(d)
    }
    fn now(&self) -> Instant {
        self.clock.now()
    }
}

/// Notes the size of the future it returns (the job's own work).
struct Measured(Arc<AtomicUsize>);
impl Executor<Ping> for Measured {
    type Error = std::convert::Infallible;
    fn execute(
        &self,
        job: &Ping,
        cx: JobContext,
    ) -> impl Future<Output = Result<u32, Self::Error>> + Send {
        let work = async move {
            let _cx = cx;
            Ok(job.0)
        };
        self.0.store(std::mem::size_of_val(&work), Ordering::SeqCst);
        work
    }
}

/// A dispatch without options hands the runtime its future unboxed, and that future is the
/// executor's own plus at most 32 bytes (the executor, the job's state, the attempt's
/// reference to it and the state tags): the runtime's task is the job's only allocation
/// besides its shared state, and its size follows the work's.
#[test]
fn a_plain_dispatch_spawns_its_small_future_unboxed() {
    let rt = Sizing {
        clock: VirtualRuntime::new(),
        unboxed: Arc::default(),
        boxed: Arc::default(),
    };
    let work = Arc::new(AtomicUsize::new(0));
    let d = Dispatcher::new(rt.clone());
    d.register(Measured(work.clone()));
    assert_eq!(rt.clock.block_on(d.dispatch(Ping(7))).unwrap().value, 7);
    let spawned = rt.unboxed.lock().unwrap().clone();
    assert_eq!(spawned.len(), 1, "one task, unboxed");
    assert_eq!(rt.boxed.load(Ordering::SeqCst), 0, "nothing boxed");
    let work = work.load(Ordering::SeqCst);
    assert!(work > 0, "the executor ran");
    // With the `tracing` feature the task also holds the job's span (`Instrumented`).
    #[cfg(feature = "tracing")]
    let span = std::mem::size_of::<tracing::Span>();
    #[cfg(not(feature = "tracing"))]
    let span = 0;
    assert!(
        spawned[0] <= work + 32 + span,
        "the job's future is {} bytes for {work} bytes of work (and a span of {span})",
        spawned[0]
    );
    // A dispatch with options runs the full pipeline, boxed.
    let out = rt
        .clock
        .block_on(d.job(Ping(8)).timeout(Duration::from_secs(1)).dispatch());
    assert_eq!(out.unwrap().value, 8);
    assert_eq!(rt.unboxed.lock().unwrap().len(), 1);
    assert_eq!(rt.boxed.load(Ordering::SeqCst), 1);
}
