//! Loom models of the core's concurrent paths: every interleaving of their lock and atomic
//! operations (up to loom's preemption bound) is run, and the invariants are asserted in each.
//!
//! Built only with `--cfg orchestrator_loom`, which makes `src/sync.rs` hand out loom's atomics
//! and lock (see its module docs for what stays unmodelled):
//!
//! ```text
//! RUSTFLAGS="--cfg orchestrator_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
//!     cargo test -p orchestrator-core --test loom --release -- --nocapture
//! ```
//!
//! Every core lock carries a `loom::alloc::Track` under that cfg, so loom also fails a model
//! whose interleaving leaves a token node, a job, a bus or a pool unfreed. A lost wake-up
//! shows as a loom deadlock: the threads below wait with `loom::future::block_on`, which parks
//! until woken. Each model prints how many interleavings it explored.

#![cfg(orchestrator_loom)]

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant as StdInstant};

use futures::Stream;
use futures::future::FusedFuture;
use loom::future::block_on;
use loom::sync::Mutex;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use orchestrator_core::runtime::{Instant, PoolRuntime, Sleep, Spawn, Task, TaskPool, Timer};
use orchestrator_core::{
    CancellationToken, DataSource, Dispatch, Dispatcher, Event, Executor, Job, JobContext,
    JobError, JobInfo, JobLifecycle, Observer, SignalBus,
};

/// How much of a model's schedule space to explore.
#[derive(Clone, Copy)]
enum Bound {
    /// Every interleaving, whatever `LOOM_MAX_PREEMPTIONS` says (the small models: a few
    /// seconds at most).
    Exhaustive,
    /// Up to `LOOM_MAX_PREEMPTIONS` preemptions per run (CI sets 2); unbounded without it.
    FromEnv,
}

/// Runs `model` under loom and prints how many interleavings it explored and how long it took.
fn explore(name: &str, bound: Bound, model: impl Fn() + Sync + Send + 'static) {
    let runs = Arc::new(StdAtomicUsize::new(0));
    let counted = runs.clone();
    let start = StdInstant::now();
    let mut builder = loom::model::Builder::new();
    if let Bound::Exhaustive = bound {
        builder.preemption_bound = None;
    }
    builder.check(move || {
        counted.fetch_add(1, StdOrdering::Relaxed);
        model();
    });
    let preemptions = match (bound, builder_bound()) {
        (Bound::FromEnv, Some(max)) => format!("at most {max} preemptions"),
        _ => "exhaustive".to_owned(),
    };
    eprintln!(
        "loom model {name}: {} interleavings ({preemptions}) in {:.1?}",
        runs.load(StdOrdering::Relaxed),
        start.elapsed()
    );
}

/// The preemption bound loom takes from the environment.
fn builder_bound() -> Option<usize> {
    loom::model::Builder::new().preemption_bound
}

/// Something another thread opens once (an I/O completion, a timer firing); futures waiting
/// on it are woken when it opens.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, Vec<Waker>)>,
}

impl Gate {
    fn open(&self) {
        let wakers = {
            let mut state = self.state.lock().unwrap();
            state.0 = true;
            std::mem::take(&mut state.1)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    fn wait(self: Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        poll_fn(move |cx| {
            let mut state = self.state.lock().unwrap();
            if state.0 {
                return Poll::Ready(());
            }
            if !state.1.iter().any(|w| w.will_wake(cx.waker())) {
                state.1.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

/// Drives `pool` on the current loom thread until `done` holds, parking while it has nothing
/// to do (so a lost wake-up is a loom deadlock).
fn drive_until(pool: &TaskPool, done: impl Fn() -> bool) {
    let mut run = pool.run();
    block_on(poll_fn(|cx| {
        let _pending = Pin::new(&mut run).poll(cx);
        if done() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }));
}

/// Reads `stream` to its end on the current loom thread.
fn collect<S: Stream + Unpin>(mut stream: S) -> Vec<S::Item> {
    let mut items = Vec::new();
    block_on(poll_fn(|cx| {
        loop {
            match Pin::new(&mut stream).poll_next(cx) {
                Poll::Ready(Some(item)) => items.push(item),
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }));
    items
}

// ---------------------------------------------------------------------------------------
// The per-job engine: completion racing cancel and timeout.
// ---------------------------------------------------------------------------------------

struct Ping;
impl Job for Ping {
    type Output = u32;
}

/// Completes at once, or once its gate opens.
struct Pong(Option<Arc<Gate>>);
impl Executor<Ping> for Pong {
    type Error = Infallible;
    async fn execute(&self, _: &Ping, _: JobContext) -> Result<u32, Infallible> {
        if let Some(gate) = &self.0 {
            gate.clone().wait().await;
        }
        Ok(7)
    }
}

/// A host timer whose every sleep ends when its gate opens (the deadline "fires").
struct GateTimer(Arc<Gate>);
impl Timer for GateTimer {
    fn sleep(&self, _: Duration) -> Sleep {
        Sleep::new(self.0.clone().wait())
    }
    fn now(&self) -> Instant {
        Instant::ZERO
    }
}

/// Counts the outcomes the dispatcher reports (each job's `complete` reports once).
#[derive(Default)]
struct Outcomes {
    succeeded: StdAtomicUsize,
    failed: StdAtomicUsize,
}
struct CountOutcomes(Arc<Outcomes>);
impl Observer for CountOutcomes {
    fn on_job_success(&self, _: &JobInfo, _: DataSource) {
        self.0.succeeded.fetch_add(1, StdOrdering::Relaxed);
    }
    fn on_job_error(&self, _: &JobInfo, _: &JobError) {
        self.0.failed.fetch_add(1, StdOrdering::Relaxed);
    }
}

/// What one run of the job model saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Succeeded,
    Cancelled,
    TimedOut,
}

/// A job with a timeout on a host-driven pool: the main loom thread drives the pool, one
/// thread cancels through the handle and then awaits it, one fires the deadline, and (with
/// `gated`) one completes the executor's work. Asserts that the outcome is written once, the
/// handle sees that one outcome, and every later completer is refused.
fn job_outcome_model(gated: bool) -> Seen {
    let fire = Arc::new(Gate::default());
    let work = gated.then(|| Arc::new(Gate::default()));
    let outcomes = Arc::new(Outcomes::default());
    let rt = PoolRuntime::new(GateTimer(fire.clone()));
    let dispatcher = Dispatcher::builder(rt.clone())
        .observer(CountOutcomes(outcomes.clone()))
        .build();
    dispatcher.register(Pong(work.clone()));
    let mut events = dispatcher.bus().subscribe();
    let handle = dispatcher
        .job(Ping)
        .timeout(Duration::from_secs(1))
        .lifecycle_events(true)
        .dispatch();

    let canceller = thread::spawn(move || {
        let mut handle = handle;
        handle.cancel();
        let outcome = block_on(&mut handle);
        assert!(handle.is_terminated() && handle.is_finished());
        outcome
    });
    let timer = thread::spawn(move || fire.open());
    let worker = work.map(|gate| thread::spawn(move || gate.open()));

    let pool = rt.pool().clone();
    drive_until(&pool, || pool.is_empty());
    let outcome = canceller.join().unwrap();
    timer.join().unwrap();
    if let Some(worker) = worker {
        worker.join().unwrap();
    }
    // Whatever the late cancel, deadline or completion woke: nothing of this job is left.
    pool.run_until_stalled();

    let seen = match &outcome {
        Ok(success) => {
            assert_eq!(success.value, 7);
            Seen::Succeeded
        }
        Err(error) if error.is_cancelled() => Seen::Cancelled,
        Err(error) if error.is_timed_out() => Seen::TimedOut,
        Err(error) => panic!("unexpected outcome {error:?}"),
    };
    let succeeded = outcomes.succeeded.load(StdOrdering::Relaxed);
    let failed = outcomes.failed.load(StdOrdering::Relaxed);
    assert_eq!(succeeded + failed, 1, "the outcome is written exactly once");
    assert_eq!(succeeded == 1, seen == Seen::Succeeded);
    assert_eq!(dispatcher.in_flight(), 0);
    assert!(pool.is_empty());

    // The terminal lifecycle event is published once, last, and agrees with the handle.
    let mut lifecycle = Vec::new();
    while let Some(event) = events.try_next() {
        if let Some(step) = event.downcast_ref::<JobLifecycle>() {
            lifecycle.push(step.clone());
        }
    }
    let terminal: Vec<_> = lifecycle.iter().filter(|s| s.is_terminal()).collect();
    assert_eq!(terminal.len(), 1, "one terminal event: {lifecycle:?}");
    assert!(lifecycle.last().is_some_and(JobLifecycle::is_terminal));
    let agrees = match terminal[0] {
        JobLifecycle::Succeeded { .. } => seen == Seen::Succeeded,
        JobLifecycle::Cancelled { .. } => seen == Seen::Cancelled,
        JobLifecycle::TimedOut { .. } => seen == Seen::TimedOut,
        _ => false,
    };
    assert!(agrees, "{:?} vs {seen:?}", terminal[0]);
    seen
}

/// The executor completes at once: the job succeeds unless the cancel request came before
/// its first poll (cancellation wins a tie), and it never times out (completion wins a tie
/// with the deadline).
#[test]
fn job_completing_at_once_races_cancel_and_timeout() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    explore(
        "job_completing_at_once_races_cancel_and_timeout",
        Bound::Exhaustive,
        move || {
            let outcome = job_outcome_model(false);
            assert_ne!(
                outcome,
                Seen::TimedOut,
                "completion wins a tie with the deadline"
            );
            let mut seen = record.lock().unwrap();
            if !seen.contains(&outcome) {
                seen.push(outcome);
            }
        },
    );
    let seen = seen.lock().unwrap();
    assert!(seen.contains(&Seen::Succeeded) && seen.contains(&Seen::Cancelled));
}

/// The executor's work completes from a third thread: completion, cancel and deadline all
/// race, and each of them wins in some interleaving.
#[test]
fn job_completing_later_races_cancel_and_timeout() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    explore(
        "job_completing_later_races_cancel_and_timeout",
        Bound::FromEnv,
        move || {
            let outcome = job_outcome_model(true);
            let mut seen = record.lock().unwrap();
            if !seen.contains(&outcome) {
                seen.push(outcome);
            }
        },
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "every completer wins somewhere: {seen:?}");
}

/// A job that only a cancel can end (its work never completes, it has no timeout): the cancel
/// request from another thread, wherever it lands relative to the job's polls, wakes the job
/// (a lost wake-up is a loom deadlock) and the handle resolves as cancelled, once.
#[test]
fn cancel_from_another_thread_always_wakes_the_job() {
    explore(
        "cancel_from_another_thread_always_wakes_the_job",
        Bound::Exhaustive,
        || {
            let never = Arc::new(Gate::default());
            let outcomes = Arc::new(Outcomes::default());
            let rt = PoolRuntime::new(GateTimer(Arc::new(Gate::default())));
            let dispatcher = Dispatcher::builder(rt.clone())
                .observer(CountOutcomes(outcomes.clone()))
                .build();
            dispatcher.register(Pong(Some(never)));
            let handle = dispatcher.dispatch(Ping);

            let canceller = thread::spawn(move || {
                let mut handle = handle;
                handle.cancel_with("stop");
                let outcome = block_on(&mut handle);
                assert!(handle.is_terminated());
                outcome
            });
            let pool = rt.pool().clone();
            drive_until(&pool, || pool.is_empty());
            let outcome = canceller.join().unwrap();
            assert!(matches!(outcome, Err(JobError::Cancelled { reason: Some(r) }) if r == "stop"));
            assert_eq!(outcomes.failed.load(StdOrdering::Relaxed), 1);
            assert_eq!(outcomes.succeeded.load(StdOrdering::Relaxed), 0);
            assert_eq!(dispatcher.in_flight(), 0);
        },
    );
}

/// A shutdown whose grace is over at once races a job's first poll: the job takes a registry
/// slot only when it first waits, so the shutdown's walk of the slots may miss it; the
/// shutdown flag it checks on every poll (and right after taking a slot) must still cancel
/// it. A job left running would never end (its work never completes): a loom deadlock.
#[test]
fn shutdown_races_a_jobs_first_wait() {
    explore(
        "shutdown_races_a_jobs_first_wait",
        Bound::Exhaustive,
        || {
            let open = Arc::new(Gate::default());
            open.open(); // the grace period's sleep is over at once
            let rt = PoolRuntime::new(GateTimer(open));
            let dispatcher = Dispatcher::new(rt.clone());
            dispatcher.register(Pong(Some(Arc::new(Gate::default()))));
            let handle = dispatcher.dispatch(Ping);

            // One poll of the shutdown: the grace is over, so it cancels every job in flight. (It
            // is not awaited to the end: its drain notification wakes inside event-listener's own
            // lock, which loom cannot see.)
            let mut shutdown = dispatcher.shutdown(Duration::ZERO);
            let stopper = thread::spawn(move || {
                let waker = futures::task::noop_waker();
                let mut cx = Context::from_waker(&waker);
                let _ = Pin::new(&mut shutdown).poll(&mut cx);
            });
            let pool = rt.pool().clone();
            drive_until(&pool, || pool.is_empty() && dispatcher.in_flight() == 0);
            stopper.join().unwrap();
            let outcome = block_on(handle);
            assert!(
                matches!(&outcome, Err(JobError::Cancelled { reason: Some(r) }) if r == "the dispatcher shut down"),
                "{outcome:?}"
            );
        },
    );
}

// ---------------------------------------------------------------------------------------
// The cancellation token tree.
// ---------------------------------------------------------------------------------------

// A node's children live in a hash map keyed by address, and cancelling or re-parenting
// locks them in the map's order, which varies from run to run; loom needs every run of a
// schedule to repeat the same operations. So these trees are chains (at most one child per
// node at any time), which is where the races are anyway: between a node's creation, its
// parent's drop and the cancel walking down.

/// Cancelling the root races a grandchild being made through the middle token and the middle
/// token's last handle being dropped (which hands its child to the root). The grandchild ends
/// cancelled with the root's reason, the root tracks no child, and (loom's leak check) every
/// node is freed.
#[test]
fn token_cancel_races_child_creation_and_middle_drop() {
    explore(
        "token_cancel_races_child_creation_and_middle_drop",
        Bound::Exhaustive,
        || {
            let root = CancellationToken::new();
            let middle = root.child_token();
            let other = middle.clone();

            let maker = thread::spawn(move || {
                let grandchild = other.child_token();
                drop(other);
                grandchild
            });
            let dropper = thread::spawn(move || drop(middle));
            root.cancel_with("stop");

            let grandchild = maker.join().unwrap();
            dropper.join().unwrap();
            assert!(grandchild.is_cancelled());
            assert_eq!(grandchild.reason().as_deref(), Some("stop"));
            assert!(format!("{root:?}").contains("children: 0"), "{root:?}");
        },
    );
}

/// Cancelling the root races the middle token's drop (re-parenting the grandchild onto the
/// root) and a great-grandchild's creation under the grandchild: both end cancelled.
#[test]
fn token_cancel_races_reparenting() {
    explore("token_cancel_races_reparenting", Bound::Exhaustive, || {
        let root = CancellationToken::new();
        let middle = root.child_token();
        let grandchild = middle.child_token();

        let dropper = thread::spawn(move || drop(middle));
        let maker = thread::spawn(move || {
            let deep = grandchild.child_token();
            (grandchild, deep)
        });
        root.cancel();

        dropper.join().unwrap();
        let (grandchild, deep) = maker.join().unwrap();
        assert!(grandchild.is_cancelled() && deep.is_cancelled());
        assert!(format!("{root:?}").contains("children: 0"), "{root:?}");
    });
}

/// No cancel in flight: the middle token's drop races the grandchild's drop (both re-parent
/// their child, one onto the other's parent) and a great-grandchild's creation. The survivor
/// ends up the root's only child, and a later cancel of the root reaches it.
#[test]
fn token_reparenting_races_child_creation_and_drop() {
    explore(
        "token_reparenting_races_child_creation_and_drop",
        Bound::Exhaustive,
        || {
            let root = CancellationToken::new();
            let middle = root.child_token();
            let grandchild = middle.child_token();
            let other = grandchild.clone();

            let maker = thread::spawn(move || {
                let deep = other.child_token();
                drop(other);
                deep
            });
            let dropper = thread::spawn(move || drop(middle));
            drop(grandchild);

            let deep = maker.join().unwrap();
            dropper.join().unwrap();
            assert!(!deep.is_cancelled());
            assert!(format!("{root:?}").contains("children: 1"), "{root:?}");
            root.cancel();
            assert!(deep.is_cancelled());
            drop(deep);
            assert!(format!("{root:?}").contains("children: 0"), "{root:?}");
        },
    );
}

// ---------------------------------------------------------------------------------------
// The signal bus.
// ---------------------------------------------------------------------------------------

/// One thread publishes two events and closes the bus, one subscribes and reads to the end,
/// one drops another subscription, and the main thread reads a subscription made before.
/// Every subscription present at a publish receives that event, in order; the late one gets a
/// suffix; the drop loses nobody's events; the queue drains.
#[test]
fn bus_publish_races_subscribe_and_unsubscribe() {
    explore(
        "bus_publish_races_subscribe_and_unsubscribe",
        Bound::FromEnv,
        || {
            let bus = SignalBus::new();
            let early = bus.subscribe();
            let doomed = bus.subscribe();

            let publisher = {
                let bus = bus.clone();
                thread::spawn(move || {
                    let first = bus.emit(1u32).unwrap();
                    let second = bus.emit(2u32).unwrap();
                    bus.close();
                    (first, second)
                })
            };
            let late = {
                let bus = bus.clone();
                thread::spawn(move || {
                    let sub = bus.subscribe();
                    drop(bus);
                    values(collect(sub))
                })
            };
            let dropper = thread::spawn(move || drop(doomed));

            assert_eq!(values(collect(early)), [1, 2]);
            let (first, second) = publisher.join().unwrap();
            let late = late.join().unwrap();
            dropper.join().unwrap();

            assert!(
                matches!(&late[..], [] | [2] | [1, 2]),
                "a suffix, in order: {late:?}"
            );
            // Queued-for counts: `early`, plus `late` if it got the event, plus `doomed` if it
            // still existed (it cannot come back once dropped).
            let doomed_at_first = first - 1 - usize::from(late.contains(&1));
            let doomed_at_second = second - 1 - usize::from(late.contains(&2));
            assert!(doomed_at_first <= 1 && doomed_at_second <= doomed_at_first);
            assert_eq!(bus.queued(), 0, "the queue drains");
            assert_eq!(bus.subscriber_count(), 0);
        },
    );
}

fn values(events: Vec<Event>) -> Vec<u32> {
    events
        .iter()
        .map(|e| *e.downcast_ref::<u32>().expect("a u32 event"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The task pool's wake-ups.
// ---------------------------------------------------------------------------------------

/// A task waits on a gate that another thread opens, and that thread then spawns a second
/// task; the main thread drives the pool. Whether the wake lands before the task's first poll,
/// while it is being polled, or while the pool sleeps, it is never lost (a lost one is a loom
/// deadlock), and both tasks run once.
#[test]
fn pool_wake_while_polling_is_never_lost() {
    explore(
        "pool_wake_while_polling_is_never_lost",
        Bound::Exhaustive,
        || {
            let pool = TaskPool::new();
            let gate = Arc::new(Gate::default());
            let finished = Arc::new(AtomicUsize::new(0));

            let waiting = {
                let gate = gate.clone();
                let finished = finished.clone();
                async move {
                    gate.wait().await;
                    finished.fetch_add(1, Ordering::AcqRel);
                }
            };
            pool.spawn(Task::new(waiting)).unwrap();
            let waker = {
                let pool = pool.clone();
                let finished = finished.clone();
                thread::spawn(move || {
                    gate.open();
                    let second = async move {
                        finished.fetch_add(1, Ordering::AcqRel);
                    };
                    pool.spawn(Task::new(second)).unwrap();
                })
            };

            drive_until(&pool, || finished.load(Ordering::Acquire) == 2);
            waker.join().unwrap();
            assert!(pool.is_empty());
            assert_eq!(pool.run_until_stalled(), 0);
        },
    );
}
