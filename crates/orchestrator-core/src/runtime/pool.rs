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
use crate::sync::{Arc, AtomicBool, Mutex, Ordering, Weak};

/// How many task polls [`RunPool`] makes before it yields to its host.
const RUN_BUDGET: usize = 128;

/// A queue of tasks that are polled by whoever drives the pool.
///
/// [`Spawn::spawn`] on a pool only queues the task; nothing runs until the host calls
/// [`TaskPool::run_until_stalled`] or polls the [`TaskPool::run`] future. This is how the core
/// runs on hosts with static tasks (embassy) or without threads: one host task polls
/// `pool.run()` forever. The pool is cheap to clone; clones share the same tasks.
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
/// ```
#[derive(Clone, Default)]
pub struct TaskPool {
    inner: Arc<PoolInner>,
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
    /// Creates an empty pool.
    pub fn new() -> Self {
        Self::default()
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
    /// Jobs whose tasks are dropped resolve as cancelled. Call it to tear a pool down: a job's
    /// task holds the runtime, so a pool with pending tasks is otherwise kept alive by them.
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
    /// `Pending`) while no task is ready. It never completes.
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
}

impl fmt::Debug for TaskPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (live, ready) = self.inner.state.with(|s| (s.live, s.ready.len()));
        f.debug_struct("TaskPool")
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
/// Dispatching on it queues jobs in the pool; the host polls [`PoolRuntime::run`] (or calls
/// [`TaskPool::run_until_stalled`]) to make progress. Cheap to clone: clones share the pool
/// and the timer.
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
    /// Creates a runtime that queues tasks in a new pool and uses `timer` for time.
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

    /// Returns a future that drives every task of this runtime; see [`TaskPool::run`].
    pub fn run(&self) -> RunPool {
        self.pool.run()
    }
}

impl<T: Timer> Spawn for PoolRuntime<T> {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        self.pool.spawn(task)
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
