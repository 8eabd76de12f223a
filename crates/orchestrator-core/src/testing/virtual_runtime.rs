//! [`VirtualRuntime`]: a runtime whose tasks and clock the test drives.

use core::fmt;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use crate::runtime::deadlines::{Deadlines, SleepUntil};
use crate::runtime::{Instant, Sleep, Spawn, SpawnError, Task, TaskPool, Timer};
#[cfg(feature = "std")]
use crate::runtime::{LocalSpawn, LocalSpawnError, LocalTask};
use crate::sync::{Arc, AtomicBool, Mutex, Ordering};

/// A runtime whose tasks and clock are driven by the test.
///
/// Cheap to clone; clones share tasks and clock. The value [`new`](Self::new) returns owns the
/// tasks and its clones are handles: see [Ownership](super#ownership). Time starts at
/// [`Instant::ZERO`].
#[derive(Clone)]
pub struct VirtualRuntime {
    pool: TaskPool,
    /// The virtual time since the epoch and the pending sleeps, by deadline.
    clock: Arc<Mutex<Deadlines<Duration>>>,
}

impl Default for VirtualRuntime {
    fn default() -> Self {
        Self {
            pool: TaskPool::new(),
            clock: Arc::new(Mutex::new(Deadlines::new(Duration::ZERO))),
        }
    }
}

/// The error returned by [`VirtualRuntime::try_block_on`] when nothing can make progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled;

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stalled: the future is pending, no task is ready and no timer is pending")
    }
}

impl core::error::Error for Stalled {}

impl VirtualRuntime {
    /// Creates a runtime at virtual time zero with no tasks, and returns its owner.
    ///
    /// ```
    /// use orchestrator_core::testing::VirtualRuntime;
    /// let rt = VirtualRuntime::new();
    /// assert!(rt.pool().is_owner());
    /// assert!(!rt.clone().pool().is_owner());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the pool holding this runtime's tasks.
    pub fn pool(&self) -> &TaskPool {
        &self.pool
    }

    /// Drops every unfinished task (their jobs resolve as cancelled) and refuses later spawns;
    /// see [`TaskPool::shutdown`]. Dropping the owner does the same.
    pub fn shutdown(&self) {
        self.pool.shutdown();
    }

    /// Polls ready tasks until none is ready, without moving the clock; returns the polls made.
    pub fn run_until_stalled(&self) -> usize {
        self.pool.run_until_stalled()
    }

    /// Moves the clock forward by `duration`, firing due timers in deadline order and running
    /// tasks until stalled after each.
    pub fn advance(&self, duration: Duration) {
        let target = self.clock.with(|c| c.now.saturating_add(duration));
        self.advance_to(target);
    }

    /// Returns the deadline of the earliest pending sleep, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clock
            .with(|c| c.next_deadline())
            .map(Instant::from_elapsed)
    }

    fn advance_to(&self, target: Duration) {
        self.pool.run_until_stalled();
        loop {
            let due = self.clock.with(|c| {
                let (deadline, waker) = c.pop_due(target)?;
                c.now = c.now.max(deadline);
                Some(waker)
            });
            match due {
                Some(waker) => {
                    waker.wake();
                    self.pool.run_until_stalled();
                }
                None => break,
            }
        }
        self.clock.with(|c| c.now = c.now.max(target));
        self.pool.run_until_stalled();
    }

    /// Drives `future` and this runtime's tasks to completion, advancing the clock to the next
    /// timer whenever everything else is idle.
    ///
    /// # Errors
    ///
    /// Returns [`Stalled`] if `future` is pending while no task is ready and no sleep is
    /// pending: nothing could ever wake it.
    pub fn try_block_on<F: Future>(&self, future: F) -> Result<F::Output, Stalled> {
        let mut future = pin!(future);
        let flag = Arc::new(WakeFlag(AtomicBool::new(true)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            if flag.0.swap(false, Ordering::AcqRel) {
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    return Ok(out);
                }
            }
            if self.pool.run_until_stalled() > 0 || flag.0.load(Ordering::Acquire) {
                continue;
            }
            match self.next_deadline() {
                Some(deadline) => self.advance_to(deadline.elapsed_since_epoch()),
                None => return Err(Stalled),
            }
        }
    }

    /// Like [`try_block_on`](Self::try_block_on), for tests.
    ///
    /// # Panics
    ///
    /// Panics if the future can never complete ([`Stalled`]).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match self.try_block_on(future) {
            Ok(out) => out,
            Err(stalled) => panic!("VirtualRuntime::block_on: {stalled}"),
        }
    }
}

struct WakeFlag(AtomicBool);

impl alloc::task::Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

impl Spawn for VirtualRuntime {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        self.pool.spawn(task)
    }

    #[cfg(feature = "std")]
    fn local(&self) -> Option<&dyn LocalSpawn> {
        Some(self)
    }
}

/// With `std`, the runtime also runs tasks that are not `Send` (see [`TaskPool`]'s
/// `LocalSpawn`): drive it from the thread that spawns them. Local executors
/// ([`Dispatcher::register_local`](crate::Dispatcher::register_local)) and local orchestrators
/// run on it, deterministically.
#[cfg(feature = "std")]
impl LocalSpawn for VirtualRuntime {
    fn spawn_local(&self, task: LocalTask) -> Result<(), LocalSpawnError> {
        self.pool.spawn_local(task)
    }
}

impl Timer for VirtualRuntime {
    fn sleep(&self, duration: Duration) -> Sleep {
        let deadline = self.clock.with(|c| c.now.saturating_add(duration));
        Sleep::new(SleepUntil::new(self.clock.clone(), deadline))
    }

    fn now(&self) -> Instant {
        Instant::from_elapsed(self.clock.with(|c| c.now))
    }
}

impl fmt::Debug for VirtualRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (now, timers) = self.clock.with(|c| (c.now, c.len()));
        f.debug_struct("VirtualRuntime")
            .field("now", &now)
            .field("timers", &timers)
            .field("pool", &self.pool)
            .finish()
    }
}
