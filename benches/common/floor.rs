//! A hand-written floor for one plain dispatch: the steps a dispatch cannot skip, written
//! directly in safe code, with none of the engine's generality (one job type, no options, no
//! events, no observers, no shutdown, no local flavour).
//!
//! What it keeps, because the engine's contract needs it for every dispatch:
//!
//! - the executor looked up by the job's type under a lock, and its reference count taken;
//! - a process-wide job id and a count of jobs in flight;
//! - a per-job state shared by the handle and the task (an `Arc`): a lock around the outcome
//!   slot and the handle's waker, and a cancel flag the task reads before it polls;
//! - a context given to the executor, holding its own reference to that state;
//! - panics caught on every poll of the executor's future (`FutureExt::catch_unwind`);
//! - the task spawned through the same runtime adapter (`Spawn::spawn_future`).
//!
//! It locks with the same mutex as the core (`parking_lot`'s).
//!
//! `benches/instructions.rs` measures it beside the engine and the spawn + oneshot baseline:
//! what lies between the floor and the baseline is the price of the contract; what lies
//! between the engine and the floor is the engine's own.

use hashbrown::HashMap;
use std::any::{Any, TypeId};
use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use futures::FutureExt;
use orchestrator_core::runtime::Spawn;
use parking_lot::Mutex;

/// The no-op job of the floor.
pub(crate) struct FloorJob;

/// The no-op executor of the floor.
pub(crate) struct FloorExecutor;

impl FloorExecutor {
    #[allow(clippy::unused_async)] // an executor is an async function, as in the engine
    async fn execute(&self, _job: &FloorJob, _cx: FloorContext) -> Result<(), ()> {
        Ok(())
    }
}

/// What the executor gets: a reference to the job's state.
pub(crate) struct FloorContext {
    _state: Arc<State>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Slot {
    outcome: Option<Result<(), ()>>,
    waker: Option<Waker>,
}

struct State {
    _id: u64,
    in_flight: Arc<AtomicUsize>,
    cancelled: AtomicBool,
    slot: Mutex<Slot>,
}

/// A dispatcher of one job type on runtime `R`.
#[derive(Debug)]
pub(crate) struct Floor<R> {
    runtime: R,
    executors: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    in_flight: Arc<AtomicUsize>,
}

impl<R: Spawn> Floor<R> {
    pub(crate) fn new(runtime: R) -> Self {
        let mut executors: HashMap<TypeId, Arc<dyn Any + Send + Sync>> = HashMap::new();
        executors.insert(TypeId::of::<FloorJob>(), Arc::new(FloorExecutor));
        Self {
            runtime,
            executors: Mutex::new(executors),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Dispatches `job`; the handle resolves with its outcome.
    pub(crate) fn dispatch(&self, job: FloorJob) -> FloorHandle {
        let executor = self
            .executors
            .lock()
            .get(&TypeId::of::<FloorJob>())
            .cloned()
            .and_then(|e| e.downcast::<FloorExecutor>().ok())
            .expect("the floor's executor is registered");
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(State {
            _id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            in_flight: self.in_flight.clone(),
            cancelled: AtomicBool::new(false),
            slot: Mutex::new(Slot {
                outcome: None,
                waker: None,
            }),
        });
        let task_state = state.clone();
        let spawned = self.runtime.spawn_future(async move {
            let cx = FloorContext {
                _state: task_state.clone(),
            };
            let mut work = pin!(AssertUnwindSafe(executor.execute(&job, cx)).catch_unwind());
            let outcome = poll_fn(|cx| {
                if task_state.cancelled.load(Ordering::Acquire) {
                    return Poll::Ready(Err(()));
                }
                work.as_mut()
                    .poll(cx)
                    .map(|caught| caught.unwrap_or(Err(())))
            })
            .await;
            complete(&task_state, outcome);
        });
        if spawned.is_err() {
            complete(&state, Err(()));
        }
        FloorHandle { state }
    }
}

fn complete(state: &State, outcome: Result<(), ()>) {
    let waker = {
        let mut slot = state.slot.lock();
        slot.outcome = Some(outcome);
        slot.waker.take()
    };
    state.in_flight.fetch_sub(1, Ordering::Relaxed);
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The caller's side: the outcome, once the task recorded it.
pub(crate) struct FloorHandle {
    state: Arc<State>,
}

impl Future for FloorHandle {
    type Output = Result<(), ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.state.slot.lock();
        match slot.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                match &slot.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => slot.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}
