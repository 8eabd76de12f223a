//! A tiny task pool: the core driven by one future the host polls, with no spawner at all.

use alloc::collections::VecDeque;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::convert::Infallible;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use super::{Instant, Sleep, Spawn, SpawnError, SpawnErrorKind, Task, Timer};
#[cfg(feature = "std")]
use super::{LocalSpawn, LocalSpawnError, LocalTask, ThreadBoundTask};
use crate::sync::{Arc, AtomicBool, Mutex, Ordering, Weak};

/// How many task polls [`RunPool`] makes before it yields to its host.
const RUN_BUDGET: usize = 128;

/// A queue of tasks that are polled by whoever drives the pool.
///
/// [`Spawn::spawn`] on a pool only queues the task; nothing runs until the host calls
/// [`TaskPool::run_until_stalled`] or polls the [`TaskPool::run`] future. This is how the core
/// runs on hosts with static tasks (embassy) or without threads: one host task polls
/// `pool.run()` forever.
///
/// # Ownership
///
/// The value [`new`](TaskPool::new) returns is the pool's **owner**; its clones are
/// **handles**, like tokio's `Runtime` and `Handle`. Every value spawns, drives and inspects
/// the same tasks, but only the owner keeps them alive: dropping it
/// [shuts the pool down](TaskPool::shutdown), and from then on every handle refuses tasks with
/// [`SpawnErrorKind::Shutdown`]. A job's task holds its dispatcher, and the dispatcher holds the
/// runtime it was given, so give dispatchers a clone and keep the owner: the tasks then never
/// keep their own pool alive, and dropping the owner, the dispatchers and the handles frees
/// everything.
///
/// ```
/// use orchestrator_core::runtime::{Spawn, Task, TaskPool};
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// let pool = TaskPool::new();
/// let ran = Arc::new(AtomicBool::new(false));
/// let flag = ran.clone();
/// pool.spawn(Task::new(async move { flag.store(true, Ordering::SeqCst) })).unwrap();
/// assert!(!ran.load(Ordering::SeqCst)); // queued, not run
/// pool.run_until_stalled();
/// assert!(ran.load(Ordering::SeqCst));
/// assert_eq!(pool.len(), 0);
///
/// let handle = pool.clone();
/// handle.spawn(Task::new(core::future::pending())).unwrap();
/// assert_eq!(pool.len(), 1);
/// drop(pool); // the owner: its pending task is dropped
/// assert!(handle.is_empty() && handle.is_shut_down());
/// let refused = handle.spawn(Task::new(async {})).unwrap_err();
/// assert!(refused.kind().is_shutdown());
/// ```
pub struct TaskPool {
    inner: Arc<PoolInner>,
    /// `true` for the value `new` returned: dropping it shuts the pool down.
    owner: bool,
}

#[derive(Default)]
struct PoolInner {
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    slots: Vec<Slot>,
    free: Vec<usize>,
    ready: VecDeque<usize>,
    live: usize,
    driver: Option<Waker>,
    shut_down: bool,
}

struct Slot {
    /// `None` while the task is being polled or once it finished.
    task: Option<Task>,
    polling: bool,
    woken_while_polling: bool,
    waker: Arc<TaskWaker>,
}

struct TaskWaker {
    pool: Weak<PoolInner>,
    index: usize,
    queued: AtomicBool,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(pool) = self.pool.upgrade() {
            pool.schedule(self.index);
        }
    }
}

impl PoolInner {
    fn schedule(&self, index: usize) {
        let driver = self.state.with(|s| {
            match s.slots.get_mut(index) {
                Some(slot) if slot.polling => slot.woken_while_polling = true,
                Some(slot) if slot.task.is_some() => s.ready.push_back(index),
                _ => return None,
            }
            s.driver.take()
        });
        if let Some(w) = driver {
            w.wake();
        }
    }
}

impl TaskPool {
    /// Creates an empty pool and returns its owner (see [Ownership](TaskPool#ownership)).
    ///
    /// ```
    /// use orchestrator_core::runtime::TaskPool;
    /// let pool = TaskPool::new();
    /// assert!(pool.is_owner() && pool.is_empty());
    /// ```
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            owner: true,
        }
    }

    /// Returns `true` for the pool's owner, `false` for its handles (its clones).
    ///
    /// ```
    /// use orchestrator_core::runtime::TaskPool;
    /// let pool = TaskPool::new();
    /// assert!(pool.is_owner());
    /// assert!(!pool.clone().is_owner());
    /// ```
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// Returns `true` once the pool was shut down, by [`shutdown`](Self::shutdown) or by
    /// dropping its owner.
    ///
    /// ```
    /// use orchestrator_core::runtime::TaskPool;
    /// let pool = TaskPool::new();
    /// let handle = pool.clone();
    /// assert!(!handle.is_shut_down());
    /// drop(pool);
    /// assert!(handle.is_shut_down());
    /// ```
    pub fn is_shut_down(&self) -> bool {
        self.inner.state.with(|s| s.shut_down)
    }

    /// Returns the number of tasks that have not finished yet.
    pub fn len(&self) -> usize {
        self.inner.state.with(|s| s.live)
    }

    /// Returns `true` if every task has finished.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns `true` if at least one task is waiting to be polled.
    pub fn has_ready(&self) -> bool {
        self.inner.state.with(|s| !s.ready.is_empty())
    }

    /// Polls ready tasks until none is ready, and returns how many polls it made.
    ///
    /// A panic in a task propagates to the caller.
    pub fn run_until_stalled(&self) -> usize {
        let mut polls = 0;
        while self.poll_one() {
            polls += 1;
        }
        polls
    }

    /// Drops every unfinished task and refuses later spawns with
    /// [`SpawnErrorKind::Shutdown`](super::SpawnErrorKind::Shutdown).
    ///
    /// Jobs whose tasks are dropped resolve as cancelled. Dropping the pool's owner does the
    /// same; call it to stop the tasks earlier, or through a handle. Idempotent.
    ///
    /// ```
    /// use orchestrator_core::runtime::{Spawn, Task, TaskPool};
    /// let pool = TaskPool::new();
    /// pool.spawn(Task::new(core::future::pending())).unwrap();
    /// pool.clone().shutdown();
    /// assert!(pool.is_empty() && pool.is_shut_down());
    /// assert!(pool.spawn(Task::new(async {})).unwrap_err().kind().is_shutdown());
    /// ```
    pub fn shutdown(&self) {
        let tasks: Vec<Task> = self.inner.state.with(|s| {
            s.shut_down = true;
            s.ready.clear();
            s.live = s.slots.iter().filter(|slot| slot.polling).count();
            s.slots
                .iter_mut()
                .filter_map(|slot| slot.task.take())
                .collect()
        });
        drop(tasks); // outside the lock: dropping a task runs its destructors
    }

    /// Returns a future that drives the pool forever.
    ///
    /// It polls ready tasks, yields to its host every 128 polls, and sleeps (returns
    /// `Pending`) while no task is ready. It never completes. It holds a handle, so it does not
    /// keep the tasks alive: once the owner is dropped it has nothing left to poll.
    pub fn run(&self) -> RunPool {
        RunPool { pool: self.clone() }
    }

    /// Polls one ready task; returns `false` if none was ready.
    fn poll_one(&self) -> bool {
        let taken = self.inner.state.with(|s| {
            while let Some(index) = s.ready.pop_front() {
                let slot = &mut s.slots[index];
                if let Some(task) = slot.task.take() {
                    slot.polling = true;
                    slot.woken_while_polling = false;
                    slot.waker.queued.store(false, Ordering::Release);
                    return Some((index, task, slot.waker.clone()));
                }
            }
            None
        });
        let Some((index, mut task, waker)) = taken else {
            return false;
        };
        let waker = Waker::from(waker);
        let done = Pin::new(&mut task)
            .poll(&mut Context::from_waker(&waker))
            .is_ready();
        let finished = self.inner.state.with(|s| {
            let slot = &mut s.slots[index];
            slot.polling = false;
            if done || s.shut_down {
                s.live = s.live.saturating_sub(1);
                s.free.push(index);
                return Some(task);
            }
            slot.task = Some(task);
            if slot.woken_while_polling {
                s.ready.push_back(index);
            }
            None
        });
        drop(finished); // outside the lock: dropping a task runs its destructors
        true
    }
}

impl Default for TaskPool {
    /// Same as [`TaskPool::new`]: an owner.
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for TaskPool {
    /// Returns a handle: it shares the tasks but does not keep them alive.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            owner: false,
        }
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        if self.owner {
            self.shutdown();
        }
    }
}

impl Spawn for TaskPool {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        let weak = Arc::downgrade(&self.inner);
        let (task, driver) = self.inner.state.with(|s| {
            if s.shut_down {
                return (Some(task), None);
            }
            let index = match s.free.pop() {
                Some(index) => index,
                None => {
                    let index = s.slots.len();
                    s.slots.push(Slot {
                        task: None,
                        polling: false,
                        woken_while_polling: false,
                        waker: Arc::new(TaskWaker {
                            pool: weak,
                            index,
                            queued: AtomicBool::new(false),
                        }),
                    });
                    index
                }
            };
            let slot = &mut s.slots[index];
            slot.task = Some(task);
            slot.waker.queued.store(true, Ordering::Release);
            s.ready.push_back(index);
            s.live += 1;
            (None, s.driver.take())
        });
        if let Some(task) = task {
            return Err(SpawnError::new(SpawnErrorKind::Shutdown, task));
        }
        if let Some(w) = driver {
            w.wake();
        }
        Ok(())
    }

    #[cfg(feature = "std")]
    fn local(&self) -> Option<&dyn LocalSpawn> {
        Some(self)
    }
}

/// With `std`, a pool also runs tasks that are not `Send`, on the thread that spawns them:
/// drive it from that thread ([`run_until_stalled`](TaskPool::run_until_stalled) or
/// [`run`](TaskPool::run)). Each local task waits in the spawning thread's table; the pool
/// holds a `Send` stand-in that polls it there.
///
/// # Panics
///
/// Polling a local task on another thread than the one that spawned it panics (a pool that
/// runs local tasks must be driven from one thread).
///
/// ```
/// use orchestrator_core::runtime::{LocalSpawn, LocalTask, TaskPool};
/// use std::cell::Cell;
/// use std::rc::Rc;
///
/// let pool = TaskPool::new();
/// let count = Rc::new(Cell::new(0));
/// let counted = count.clone();
/// pool.spawn_local(LocalTask::new(async move { counted.set(counted.get() + 1) }))
///     .unwrap();
/// pool.run_until_stalled();
/// assert_eq!(count.get(), 1);
///
/// pool.shutdown();
/// let refused = pool.spawn_local(LocalTask::new(async {})).unwrap_err();
/// assert!(refused.kind().is_shutdown());
/// ```
#[cfg(feature = "std")]
impl LocalSpawn for TaskPool {
    fn spawn_local(&self, task: LocalTask) -> Result<(), LocalSpawnError> {
        let parked = ThreadBoundTask::new(task);
        let reclaim = parked.reclaim();
        self.spawn(Task::new(parked)).map_err(|refused| {
            let task = reclaim.take();
            let kind = refused.kind();
            drop(refused); // the proxy, now empty
            LocalSpawnError::new(kind, task.unwrap_or_else(|| LocalTask::new(async {})))
        })
    }
}

impl fmt::Debug for TaskPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (live, ready) = self.inner.state.with(|s| (s.live, s.ready.len()));
        f.debug_struct("TaskPool")
            .field("owner", &self.owner)
            .field("live", &live)
            .field("ready", &ready)
            .finish()
    }
}

/// The future returned by [`TaskPool::run`]; it drives the pool and never completes.
#[must_use = "futures do nothing unless you .await or poll them"]
#[derive(Debug)]
pub struct RunPool {
    pool: TaskPool,
}

impl Future for RunPool {
    type Output = Infallible;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Infallible> {
        for _ in 0..RUN_BUDGET {
            if !self.pool.poll_one() {
                // Register first, then look again: a wake between the two is not lost.
                let ready = self.pool.inner.state.with(|s| {
                    s.driver = Some(cx.waker().clone());
                    !s.ready.is_empty()
                });
                if !ready {
                    return Poll::Pending;
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A [`Runtime`](super::Runtime) made of a [`TaskPool`] and a host-supplied [`Timer`].
///
/// A host with no async timer of its own uses a [`TickTimer`](super::TickTimer) and advances
/// it from its timer interrupt or main loop (see [`timer`](PoolRuntime::timer)).
///
/// Dispatching on it queues jobs in the pool; the host polls [`PoolRuntime::run`] (or calls
/// [`TaskPool::run_until_stalled`]) to make progress. Cheap to clone: clones share the pool
/// and the timer.
///
/// Like its pool, the value [`new`](PoolRuntime::new) returns is the owner and its clones are
/// handles (see [Ownership](TaskPool#ownership)): give the dispatcher a clone and keep the
/// owner for as long as jobs should run. Dropping the owner drops the unfinished tasks (their
/// jobs resolve as cancelled), and later dispatches are rejected with
/// [`SpawnErrorKind::Shutdown`].
///
/// ```
/// use core::future::Future;
/// use core::pin::pin;
/// use core::task::{Context, Poll, Waker};
/// use core::time::Duration;
/// use orchestrator_core::Dispatch;
/// use orchestrator_core::runtime::{Instant, PoolRuntime, Sleep, Timer};
/// use orchestrator_core::{Dispatcher, Executor, Job, JobContext};
///
/// struct Frozen; // a host clock that never moves
/// impl Timer for Frozen {
///     fn sleep(&self, _: Duration) -> Sleep {
///         Sleep::new(core::future::pending())
///     }
///     fn now(&self) -> Instant {
///         Instant::ZERO
///     }
/// }
/// struct Double(u32);
/// impl Job for Double {
///     type Output = u32;
/// }
/// struct Doubler;
/// impl Executor<Double> for Doubler {
///     type Error = core::convert::Infallible;
///     async fn execute(&self, job: &Double, _: JobContext) -> Result<u32, Self::Error> {
///         Ok(job.0 * 2)
///     }
/// }
///
/// let rt = PoolRuntime::new(Frozen);
/// let dispatcher = Dispatcher::new(rt.clone()); // a handle
/// dispatcher.register(Doubler);
/// let mut handle = dispatcher.dispatch(Double(21));
/// let cx = &mut Context::from_waker(Waker::noop());
/// assert!(pin!(rt.run()).poll(cx).is_pending()); // runs the job, then waits for more
/// assert!(matches!(pin!(&mut handle).poll(cx), Poll::Ready(Ok(done)) if done.value == 42));
///
/// drop(rt); // the owner: the dispatcher's handle now refuses tasks
/// let refused = pin!(dispatcher.dispatch(Double(1))).poll(cx);
/// assert!(matches!(refused, Poll::Ready(Err(e)) if e.is_rejected()));
/// ```
#[derive(Debug)]
pub struct PoolRuntime<T> {
    pool: TaskPool,
    timer: Arc<T>,
}

impl<T> Clone for PoolRuntime<T> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            timer: self.timer.clone(),
        }
    }
}

impl<T: Timer> PoolRuntime<T> {
    /// Creates a runtime that queues tasks in a new pool and uses `timer` for time; the value
    /// returned is the pool's owner.
    pub fn new(timer: T) -> Self {
        Self {
            pool: TaskPool::new(),
            timer: Arc::new(timer),
        }
    }

    /// Returns the pool that holds this runtime's tasks.
    pub fn pool(&self) -> &TaskPool {
        &self.pool
    }

    /// Returns the timer this runtime sleeps and reads the clock with.
    ///
    /// With a [`TickTimer`](super::TickTimer), this is where the host gets the
    /// [`Ticks`](super::Ticks) handle that its timer interrupt advances:
    ///
    /// ```
    /// use core::future::Future;
    /// use core::pin::pin;
    /// use core::task::{Context, Waker};
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::{PoolRuntime, Spawn, Task, TickTimer, Timer};
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// let rt = PoolRuntime::new(TickTimer::new(Duration::from_millis(1)));
    /// let ticks = rt.timer().ticks();
    /// let done = Arc::new(AtomicBool::new(false));
    /// let (flag, sleep) = (done.clone(), rt.sleep(Duration::from_millis(5)));
    /// rt.spawn(Task::new(async move {
    ///     sleep.await;
    ///     flag.store(true, Ordering::SeqCst);
    /// }))
    /// .unwrap();
    /// let mut run = pin!(rt.run());
    /// let cx = &mut Context::from_waker(Waker::noop());
    /// for _ in 0..5 {
    ///     assert!(run.as_mut().poll(cx).is_pending() && !done.load(Ordering::SeqCst));
    ///     ticks.advance(1); // the timer interrupt
    /// }
    /// assert!(run.as_mut().poll(cx).is_pending()); // the fifth tick woke the task
    /// assert!(done.load(Ordering::SeqCst));
    /// ```
    pub fn timer(&self) -> &T {
        &self.timer
    }

    /// Returns a future that drives every task of this runtime; see [`TaskPool::run`].
    pub fn run(&self) -> RunPool {
        self.pool.run()
    }
}

impl<T: Timer> Spawn for PoolRuntime<T> {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        self.pool.spawn(task)
    }

    #[cfg(feature = "std")]
    fn local(&self) -> Option<&dyn LocalSpawn> {
        Some(self)
    }
}

/// With `std`, local tasks go to the pool (see [`TaskPool`]'s `LocalSpawn`).
#[cfg(feature = "std")]
impl<T: Timer> LocalSpawn for PoolRuntime<T> {
    fn spawn_local(&self, task: LocalTask) -> Result<(), LocalSpawnError> {
        self.pool.spawn_local(task)
    }
}

impl<T: Timer> Timer for PoolRuntime<T> {
    fn sleep(&self, duration: Duration) -> Sleep {
        self.timer.sleep(duration)
    }

    fn now(&self) -> Instant {
        self.timer.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task holding a handle of its own pool (as a job's task holds its dispatcher, which
    /// holds the runtime) does not keep the pool alive once the owner is dropped.
    #[test]
    fn a_task_holding_a_handle_does_not_keep_its_pool_alive() {
        let owner = TaskPool::new();
        let queue = Arc::downgrade(&owner.inner);
        let handle = owner.clone();
        owner
            .spawn(Task::new(async move {
                core::future::pending::<()>().await;
                drop(handle);
            }))
            .ok();
        assert_eq!(owner.run_until_stalled(), 1);
        assert_eq!(owner.len(), 1);
        drop(owner);
        assert!(
            queue.upgrade().is_none(),
            "the queue and its task were freed"
        );
    }
}
