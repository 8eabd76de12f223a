//! The runtime abstraction: spawning, sleeping and a monotonic clock.
//!
//! The core never names an async runtime. Everything it needs from one is in two small,
//! object-safe traits:
//!
//! - [`Spawn`] starts a `'static` task and may refuse with a [`SpawnError`];
//! - [`Timer`] sleeps for a [`Duration`] and reads a monotonic [`Instant`].
//!
//! A type that implements both is a [`Runtime`] (blanket implementation). The adapter crates
//! (`orchestrator-tokio`, `orchestrator-smol`, `orchestrator-async-std`) each provide one in a
//! single small file. Hosts without a spawner (an embassy task, a bare-metal loop) use
//! [`PoolRuntime`]: jobs are queued in a [`TaskPool`] and the host polls one future,
//! [`TaskPool::run`], that drives them all. A host without an async timer either pairs it
//! with [`TickTimer`], whose clock is a tick count the host advances from its timer interrupt
//! or main loop (through [`Ticks`]), or writes its own [`Timer`].
//!
//! With the `test-util` feature, `testing::VirtualRuntime` implements
//! the same traits over a virtual clock, so timeouts and backoff schedules are tested instantly
//! and deterministically.
//!
//! # Ownership
//!
//! A [`Dispatcher`](crate::Dispatcher) keeps the runtime value it is given, and every task it
//! spawns (a job, an orchestrator's event loop) holds the dispatcher. The value a dispatcher
//! gets must therefore be a **handle** that does not keep the tasks alive, or the tasks would
//! keep themselves alive forever. This is tokio's model: the `Runtime` owns the tasks, a
//! `Handle` only reaches them, and spawning through a handle whose runtime is gone fails.
//!
//! - The adapters are handles: `TokioRuntime` spawns on a tokio runtime that the application
//!   owns (and drops).
//! - [`TaskPool`], [`PoolRuntime`] and `testing::VirtualRuntime` are
//!   owned by the value their `new` returns; their clones are handles. Give dispatchers a
//!   clone and keep the owner for as long as jobs should run. Dropping the owner drops the
//!   unfinished tasks (their jobs resolve as cancelled), and later spawns are refused with
//!   [`SpawnErrorKind::Shutdown`] (dispatches resolve as rejected; nothing panics).
//!
//! ```
//! use orchestrator_core::runtime::{Spawn, Task, TaskPool};
//!
//! let owner = TaskPool::new();
//! let handle = owner.clone();
//! handle.spawn(Task::new(core::future::pending())).unwrap();
//! assert_eq!(owner.len(), 1);
//! drop(owner);
//! assert!(handle.is_empty());
//! assert!(handle.spawn(Task::new(async {})).unwrap_err().kind().is_shutdown());
//! ```

#[cfg(feature = "std")]
mod bound;
pub(crate) mod deadlines;
mod host;
mod local;
mod pool;
mod tick;

use crate::sync::Arc;
use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub use bound::ThreadBoundTask;
pub use host::LocalHost;
pub use local::{LocalSleep, LocalSpawn, LocalSpawnError, LocalTask, LocalTimer};
pub use pool::{PoolRuntime, RunPool, TaskPool};
pub use tick::{TickTimer, Ticks};

/// A unit of work handed to a [`Spawn`] implementation: a `'static`, `Send` future of `()`.
///
/// It is opaque so that its layout can change without touching the adapters; an adapter
/// spawns it as any other future (`tokio::spawn(task)`).
///
/// ```
/// use orchestrator_core::runtime::Task;
/// let task = Task::new(async {});
/// futures::executor::block_on(task);
/// ```
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct Task {
    inner: Pin<Box<dyn Future<Output = ()> + Send + 'static>>,
}

impl Task {
    /// Wraps `future` (one allocation).
    pub fn new(future: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(future),
        }
    }
}

impl Future for Task {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").finish_non_exhaustive()
    }
}

/// The future returned by [`Timer::sleep`]; it completes once the duration has elapsed.
///
/// ```
/// use orchestrator_core::runtime::Sleep;
/// let ready = Sleep::new(async {}); // a timer that is already due
/// futures::executor::block_on(ready);
/// ```
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct Sleep {
    inner: Pin<Box<dyn Future<Output = ()> + Send + 'static>>,
}

impl Sleep {
    /// Wraps a runtime's sleep future (one allocation).
    pub fn new(future: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(future),
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep").finish_non_exhaustive()
    }
}

/// Starts tasks.
///
/// Implementations must run the task to completion unless the runtime itself shuts down, and
/// must not poll it after it returned `Ready`. A task that is dropped before it finishes is
/// still accounted for: the job it carries resolves as cancelled (see `docs/semantics.md`).
///
/// The value a dispatcher stores must not own the tasks it spawns, since those tasks hold the
/// dispatcher: make it a handle to a runtime owned elsewhere, and refuse tasks with
/// [`SpawnErrorKind::Shutdown`] once that runtime is gone (see [Ownership](self#ownership)).
pub trait Spawn: Send + Sync + 'static {
    /// Starts `task` in the background.
    ///
    /// # Errors
    ///
    /// Returns a [`SpawnError`] carrying the task back if the runtime cannot accept it (it is
    /// shut down, there is no runtime in this context, a static pool is full).
    fn spawn(&self, task: Task) -> Result<(), SpawnError>;

    /// Starts `future` in the background without boxing it first, where the runtime can
    /// (a dispatcher built on a concrete runtime type spawns its jobs this way: the runtime's
    /// own task is then the job's only allocation besides its shared state).
    ///
    /// The default boxes the future into a [`Task`] and calls [`spawn`](Self::spawn);
    /// adapters whose executor takes any future override it.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn); the error carries the future back, boxed.
    fn spawn_future<F>(&self, future: F) -> Result<(), SpawnError>
    where
        F: Future<Output = ()> + Send + 'static,
        Self: Sized,
    {
        self.spawn(Task::new(future))
    }

    /// Returns this runtime as a [`LocalSpawn`] if it can also run tasks that are not `Send`
    /// (a single-threaded host's runtime). The default says it cannot.
    ///
    /// A type-erased dispatcher (on an `Arc<dyn Runtime>`) finds local spawning through it:
    /// implement it as `Some(self)` alongside [`LocalSpawn`].
    fn local(&self) -> Option<&dyn LocalSpawn> {
        None
    }
}

/// A shared runtime is a runtime (a dispatcher on an `Arc<dyn Runtime>` spawns boxed tasks).
impl<T: Spawn + ?Sized> Spawn for Arc<T> {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        (**self).spawn(task)
    }

    fn local(&self) -> Option<&dyn LocalSpawn> {
        (**self).local()
    }
}

/// A shared timer is a timer.
impl<T: Timer + ?Sized> Timer for Arc<T> {
    fn sleep(&self, duration: Duration) -> Sleep {
        (**self).sleep(duration)
    }

    fn now(&self) -> Instant {
        (**self).now()
    }
}

/// Sleeps and reads a monotonic clock.
pub trait Timer: Send + Sync + 'static {
    /// Returns a future that completes once `duration` has elapsed on this timer's clock.
    fn sleep(&self, duration: Duration) -> Sleep;

    /// Returns the current time of this timer's monotonic clock.
    fn now(&self) -> Instant;
}

/// A complete runtime for the core: a [`Spawn`] and a [`Timer`].
///
/// Implemented automatically for every type that implements both.
pub trait Runtime: Spawn + Timer {}

impl<T: Spawn + Timer> Runtime for T {}

/// A point on a runtime's monotonic clock.
///
/// It is the time elapsed since an epoch chosen by the runtime (usually its creation). Two
/// instants are only comparable when they come from the same runtime. Unlike
/// `std::time::Instant` it exists without `std`, and it never panics: arithmetic saturates.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(Duration);

impl Instant {
    /// The runtime's epoch.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// Creates the instant `elapsed` after the runtime's epoch.
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::Instant;
    /// let t = Instant::from_elapsed(Duration::from_secs(3));
    /// assert_eq!(t.elapsed_since_epoch(), Duration::from_secs(3));
    /// ```
    pub const fn from_elapsed(elapsed: Duration) -> Self {
        Instant(elapsed)
    }

    /// Returns the time elapsed between the runtime's epoch and this instant.
    pub const fn elapsed_since_epoch(self) -> Duration {
        self.0
    }

    /// Returns the time from `earlier` to `self`, or zero if `earlier` is later.
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::Instant;
    /// let a = Instant::from_elapsed(Duration::from_secs(1));
    /// let b = Instant::from_elapsed(Duration::from_secs(4));
    /// assert_eq!(b.saturating_duration_since(a), Duration::from_secs(3));
    /// assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
    /// ```
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// Returns `self + duration`, saturating at the largest representable instant.
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::Instant;
    /// let far = Instant::from_elapsed(Duration::MAX).saturating_add(Duration::from_secs(1));
    /// assert_eq!(far.elapsed_since_epoch(), Duration::MAX);
    /// ```
    pub fn saturating_add(self, duration: Duration) -> Instant {
        Instant(self.0.saturating_add(duration))
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant(+{:?})", self.0)
    }
}

/// The error returned when a runtime refuses a task; it gives the task back.
///
/// ```
/// use orchestrator_core::runtime::{SpawnError, SpawnErrorKind, Task};
/// let task = Task::new(async {});
/// let err = SpawnError::new(SpawnErrorKind::Full, task);
/// assert!(err.kind().is_full());
/// assert_eq!(err.to_string(), "the runtime has no room for another task");
/// let _task_back: Task = err.into_task();
/// ```
pub struct SpawnError {
    kind: SpawnErrorKind,
    task: Task,
}

impl SpawnError {
    /// Creates the error for `task`, which the runtime could not accept.
    pub fn new(kind: SpawnErrorKind, task: Task) -> Self {
        Self { kind, task }
    }

    /// Returns why the task was refused.
    pub fn kind(&self) -> SpawnErrorKind {
        self.kind
    }

    /// Returns the refused task.
    pub fn into_task(self) -> Task {
        self.task
    }
}

impl fmt::Debug for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnError")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl core::error::Error for SpawnError {}

/// Why a runtime refused a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpawnErrorKind {
    /// The runtime has shut down.
    Shutdown,
    /// There is no runtime to spawn on in this context.
    NoRuntime,
    /// The runtime has no room for another task.
    Full,
    /// The task is not `Send` and the runtime cannot run such tasks (it is not a
    /// [`LocalSpawn`] runtime).
    NotLocal,
}

impl SpawnErrorKind {
    /// Returns `true` if the runtime has shut down.
    pub const fn is_shutdown(self) -> bool {
        matches!(self, SpawnErrorKind::Shutdown)
    }

    /// Returns `true` if there was no runtime in this context.
    pub const fn is_no_runtime(self) -> bool {
        matches!(self, SpawnErrorKind::NoRuntime)
    }

    /// Returns `true` if the runtime had no room for another task.
    pub const fn is_full(self) -> bool {
        matches!(self, SpawnErrorKind::Full)
    }

    /// Returns `true` if the task was not `Send` and the runtime cannot run such tasks.
    pub const fn is_not_local(self) -> bool {
        matches!(self, SpawnErrorKind::NotLocal)
    }
}

impl fmt::Display for SpawnErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpawnErrorKind::Shutdown => "the runtime has shut down",
            SpawnErrorKind::NoRuntime => "no runtime is available in this context",
            SpawnErrorKind::Full => "the runtime has no room for another task",
            SpawnErrorKind::NotLocal => "the runtime cannot run tasks that are not `Send`",
        })
    }
}

impl core::error::Error for SpawnErrorKind {}

/// Returns `Pending` once (waking its task at once), then `Ready`: lets the task's other
/// arms and the executor's other tasks run (between retries that never await, say).
pub(crate) struct YieldNow(bool);

impl YieldNow {
    /// A yield that has not happened yet.
    pub(crate) const fn new() -> Self {
        Self(false)
    }
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
