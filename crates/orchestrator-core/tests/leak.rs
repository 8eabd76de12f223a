//! Dropping a runtime's owner, its dispatcher and its orchestrators without any shutdown call
//! frees everything: the task pool, its tasks, the executors, the orchestrator values.
//!
//! A job's task holds its dispatcher, and the dispatcher holds the runtime it spawns on; if that
//! kept the pool alive, the pool and the tasks would keep each other alive forever.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use orchestrator_core::runtime::{PoolRuntime, Spawn, SpawnErrorKind, Task};
use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    Dispatch, Dispatcher, Event, Executor, Job, JobContext, JobError, Observer, Orchestrator,
    OrchestratorContext, OrchestratorError, Origin, Rejection,
};

/// Counts how many of its clones were dropped.
#[derive(Clone, Default)]
struct Drops(Arc<AtomicUsize>);
impl Drops {
    fn probe(&self) -> Probe {
        Probe(self.0.clone())
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}
/// Adds one to its counter when dropped.
struct Probe(Arc<AtomicUsize>);
impl Drop for Probe {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Completes at once.
struct Quick;
impl Job for Quick {
    type Output = u32;
}
/// Never completes.
struct Park;
impl Job for Park {
    type Output = ();
}

/// Runs both jobs and holds a probe.
struct Exec(#[allow(dead_code)] Probe);
impl Executor<Quick> for Exec {
    type Error = std::convert::Infallible;
    async fn execute(&self, _: &Quick, _cx: JobContext) -> Result<u32, Self::Error> {
        Ok(7)
    }
}
impl Executor<Park> for Exec {
    type Error = std::convert::Infallible;
    async fn execute(&self, _: &Park, _cx: JobContext) -> Result<(), Self::Error> {
        std::future::pending().await
    }
}

/// An observer (held by the dispatcher's job environment, next to the runtime) with a probe.
struct Watcher(#[allow(dead_code)] Probe);
impl Observer for Watcher {}

/// Counts the events it handles, and holds a probe.
struct Counter(#[allow(dead_code)] Probe);
impl Orchestrator for Counter {
    type State = u32;
    fn on_event(&mut self, _: &Event, _: Origin, cx: &mut OrchestratorContext<'_, u32>) {
        cx.update(|n| *n += 1);
    }
}

fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

fn is_cancelled<T>(outcome: Poll<Result<T, JobError>>) -> bool {
    matches!(outcome, Poll::Ready(Err(JobError::Cancelled { .. })))
}

fn is_shut_down<T>(outcome: Poll<Result<T, JobError>>) -> bool {
    matches!(
        outcome,
        Poll::Ready(Err(JobError::Rejected(Rejection::Spawn(
            SpawnErrorKind::Shutdown
        ))))
    )
}

#[test]
fn a_virtual_runtime_dropped_without_shutdown_frees_its_tasks_dispatcher_and_orchestrators() {
    let drops = Drops::default();
    let rt = VirtualRuntime::new();
    let d = Dispatcher::builder(rt.clone())
        .observer(Watcher(drops.probe()))
        .build();
    d.register::<Quick, _>(Exec(drops.probe()));
    d.register::<Park, _>(Exec(drops.probe()));
    let counter = Counter(drops.probe()).builder(0, &d).start().unwrap();

    let quick = counter.dispatch(Quick);
    assert_eq!(rt.block_on(quick).unwrap().value, 7);
    let mut parked = counter.dispatch(Park);
    rt.run_until_stalled();
    assert!(counter.state() > 0, "the orchestrator saw its jobs' events");
    assert!(poll_once(&mut parked).is_pending());
    assert_eq!(rt.pool().len(), 2, "the event loop and the parked job");

    drop(counter);
    drop(d);
    assert_eq!(
        drops.count(),
        0,
        "the runtime still runs the loop and the job"
    );
    drop(rt);
    assert_eq!(
        drops.count(),
        3,
        "both executors and the orchestrator value were dropped"
    );
    assert!(is_cancelled(poll_once(&mut parked)));
    drop(parked); // the last holder of the job environment (and so of the observer)
    assert_eq!(drops.count(), 4);
}

#[test]
fn after_the_owner_is_dropped_its_clones_refuse_tasks_with_a_shutdown_error() {
    let drops = Drops::default();
    let rt = VirtualRuntime::new();
    let handle = rt.clone();
    let d = Dispatcher::new(rt.clone());
    d.register::<Quick, _>(Exec(drops.probe()));
    drop(rt);

    let err = handle.spawn(Task::new(async {})).unwrap_err();
    assert!(err.kind().is_shutdown());
    assert!(is_shut_down(poll_once(&mut d.dispatch(Quick))));
    let started = Counter(drops.probe()).builder(0, &d).start();
    assert!(matches!(
        started,
        Err(OrchestratorError::Spawn(SpawnErrorKind::Shutdown))
    ));
    assert_eq!(
        drops.count(),
        1,
        "the refused orchestrator value was dropped"
    );
    assert_eq!(handle.run_until_stalled(), 0);
    drop(d);
    assert_eq!(drops.count(), 2);
}

#[test]
fn a_pool_runtime_dropped_without_shutdown_frees_its_tasks_dispatcher_and_orchestrators() {
    let drops = Drops::default();
    let clock = VirtualRuntime::new();
    let rt = PoolRuntime::new(clock.clone());
    let d = Dispatcher::builder(rt.clone())
        .observer(Watcher(drops.probe()))
        .build();
    d.register::<Quick, _>(Exec(drops.probe()));
    d.register::<Park, _>(Exec(drops.probe()));
    let counter = Counter(drops.probe()).builder(0, &d).start().unwrap();

    let mut quick = counter.dispatch(Quick);
    let mut parked = counter.dispatch(Park);
    let mut driver = Box::pin(rt.run());
    assert!(poll_once(&mut driver).is_pending(), "the driver never ends");
    assert!(matches!(poll_once(&mut quick), Poll::Ready(Ok(s)) if s.value == 7));
    drop(quick);
    assert!(poll_once(&mut parked).is_pending());
    assert!(counter.state() > 0, "the orchestrator saw its jobs' events");
    assert_eq!(rt.pool().len(), 2, "the event loop and the parked job");

    drop(counter);
    drop(d);
    assert_eq!(
        drops.count(),
        0,
        "the pool still holds the loop and the job"
    );
    drop(rt);
    assert_eq!(
        drops.count(),
        3,
        "both executors and the orchestrator value were dropped"
    );
    assert!(is_cancelled(poll_once(&mut parked)));
    drop(parked); // the last holder of the job environment (and so of the observer)
    assert_eq!(drops.count(), 4);
    assert!(
        poll_once(&mut driver).is_pending(),
        "a driver outliving its pool idles"
    );
}

/// Counts its drops; its state counts events.
struct Counting {
    _probe: Probe,
}
impl Orchestrator for Counting {
    type State = u32;
    fn on_event(&mut self, _: &Event, _: Origin, cx: &mut OrchestratorContext<'_, u32>) {
        cx.update(|n| *n += 1);
    }
}

#[test]
fn dropping_the_last_orchestrator_handle_disposes_it_and_frees_its_loop() {
    let rt = VirtualRuntime::new();
    let dropped = Drops::default();
    let dispatcher = Dispatcher::new(rt.clone());
    let handle = Counting {
        _probe: dropped.probe(),
    }
    .builder(0, &dispatcher)
    .start()
    .unwrap();
    let clone = handle.clone();
    drop(handle);
    dispatcher.bus().emit(1u8).unwrap();
    rt.run_until_stalled();
    assert_eq!(clone.state(), 1, "a clone keeps it running");
    assert_eq!(rt.pool().len(), 1, "its event loop");
    let states = clone.states();
    drop(clone);
    rt.run_until_stalled();
    assert_eq!(rt.pool().len(), 0, "the loop ended with the last handle");
    assert_eq!(dropped.count(), 1, "and dropped the orchestrator value");
    drop(states);
}
