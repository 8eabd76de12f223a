//! Spawning tasks that are not `Send`, for single-threaded hosts.

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use super::{Instant, Runtime, SpawnErrorKind, Task};
use crate::sync::Arc;

/// A unit of work for a [`LocalSpawn`] runtime: a `'static` future of `()` that need not be
/// `Send` (it may hold an `Rc` or a JavaScript value across an `.await`).
///
/// ```
/// use orchestrator_core::runtime::LocalTask;
/// use std::rc::Rc;
///
/// let shared = Rc::new(5);
/// let task = LocalTask::new(async move { assert_eq!(*shared, 5) });
/// futures::executor::block_on(task);
/// ```
///
/// A [`Task`] is a local task too ([`From`]), without another allocation.
#[must_use = "a task does nothing until it is spawned or polled"]
pub struct LocalTask {
    inner: Inner,
}

enum Inner {
    Local(Pin<Box<dyn Future<Output = ()> + 'static>>),
    Send(Task),
}

impl LocalTask {
    /// Boxes `future` into a task (one allocation).
    pub fn new(future: impl Future<Output = ()> + 'static) -> Self {
        Self {
            inner: Inner::Local(Box::pin(future)),
        }
    }

    /// Returns the [`Task`] this local task was made from, if it was made from one.
    pub(crate) fn into_send(self) -> Result<Task, Self> {
        match self.inner {
            Inner::Send(task) => Ok(task),
            inner @ Inner::Local(_) => Err(Self { inner }),
        }
    }
}

impl From<Task> for LocalTask {
    fn from(task: Task) -> Self {
        Self {
            inner: Inner::Send(task),
        }
    }
}

impl Future for LocalTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.inner {
            Inner::Local(future) => future.as_mut().poll(cx),
            Inner::Send(task) => Pin::new(task).poll(cx),
        }
    }
}

impl fmt::Debug for LocalTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalTask").finish_non_exhaustive()
    }
}

/// The future returned by [`LocalTimer::sleep_local`]: a host's sleep that need not be
/// `Send` (a browser timer, say).
///
/// ```
/// use orchestrator_core::runtime::LocalSleep;
/// futures::executor::block_on(LocalSleep::new(async {})); // already due
/// ```
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct LocalSleep {
    inner: Pin<Box<dyn Future<Output = ()> + 'static>>,
}

impl LocalSleep {
    /// Wraps a host's sleep future (one allocation).
    pub fn new(future: impl Future<Output = ()> + 'static) -> Self {
        Self {
            inner: Box::pin(future),
        }
    }
}

impl Future for LocalSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for LocalSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSleep").finish_non_exhaustive()
    }
}

/// The error returned when a runtime refuses a [`LocalTask`]; it gives the task back.
///
/// ```
/// use orchestrator_core::runtime::{LocalSpawnError, LocalTask, SpawnErrorKind};
/// let err = LocalSpawnError::new(SpawnErrorKind::NotLocal, LocalTask::new(async {}));
/// assert!(err.kind().is_not_local());
/// assert_eq!(err.to_string(), "the runtime cannot run tasks that are not `Send`");
/// let _task_back: LocalTask = err.into_task();
/// ```
pub struct LocalSpawnError {
    kind: SpawnErrorKind,
    task: LocalTask,
}

impl LocalSpawnError {
    /// Creates the error for `task`, which the runtime could not accept.
    pub fn new(kind: SpawnErrorKind, task: LocalTask) -> Self {
        Self { kind, task }
    }

    /// Returns why the task was refused.
    pub fn kind(&self) -> SpawnErrorKind {
        self.kind
    }

    /// Returns the refused task.
    pub fn into_task(self) -> LocalTask {
        self.task
    }
}

impl fmt::Debug for LocalSpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSpawnError")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for LocalSpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl core::error::Error for LocalSpawnError {}

/// Starts tasks that are not `Send` on the current thread: the runtime of a single-threaded
/// host (a browser page, a `LocalSet`-style executor, a test executor).
///
/// The runtime *value* is still `Send + Sync` (a zero-sized handle, typically): only the
/// tasks it takes need not be. A runtime that implements it lets a dispatcher run local
/// executors ([`Dispatcher::register_local`](crate::Dispatcher::register_local)) and local
/// orchestrators ([`OrchestratorBuilder::start_local`](crate::OrchestratorBuilder::start_local));
/// it says so from [`Spawn::local`](super::Spawn::local) as well, so that a type-erased
/// dispatcher finds it.
///
/// The contract is [`Spawn`](super::Spawn)'s: run the task to completion unless the runtime
/// shuts down, never poll it after `Ready`, give it back in the error if it is refused.
///
/// ```
/// use orchestrator_core::runtime::{LocalSpawn, LocalTask, Spawn};
/// use orchestrator_core::testing::VirtualRuntime;
/// use std::cell::Cell;
/// use std::rc::Rc;
///
/// let rt = VirtualRuntime::new();
/// let ran = Rc::new(Cell::new(false));
/// let flag = ran.clone();
/// rt.spawn_local(LocalTask::new(async move { flag.set(true) })).unwrap();
/// rt.run_until_stalled();
/// assert!(ran.get());
/// assert!(rt.local().is_some());
/// ```
pub trait LocalSpawn: Send + Sync + 'static {
    /// Starts `task` on this thread, in the background.
    ///
    /// # Errors
    ///
    /// Returns a [`LocalSpawnError`] carrying the task back if the runtime cannot accept it
    /// ([`SpawnErrorKind::NotLocal`] if this runtime cannot run tasks that are not `Send`,
    /// or the reasons of [`Spawn::spawn`](super::Spawn::spawn)).
    fn spawn_local(&self, task: LocalTask) -> Result<(), LocalSpawnError>;
}

/// A shared local runtime is a local runtime.
impl<T: LocalSpawn + ?Sized> LocalSpawn for Arc<T> {
    fn spawn_local(&self, task: LocalTask) -> Result<(), LocalSpawnError> {
        (**self).spawn_local(task)
    }
}

/// A type-erased runtime spawns local tasks if the runtime behind it can
/// ([`Spawn::local`](super::Spawn::local)), and refuses them with
/// [`SpawnErrorKind::NotLocal`] otherwise.
impl LocalSpawn for dyn Runtime {
    fn spawn_local(&self, task: LocalTask) -> Result<(), LocalSpawnError> {
        match self.local() {
            Some(local) => local.spawn_local(task),
            None => Err(LocalSpawnError::new(SpawnErrorKind::NotLocal, task)),
        }
    }
}

/// Sleeps with futures that need not be `Send`, and reads a monotonic clock: a host's own
/// timer (a browser's `setTimeout` through `gloo-timers`, say).
///
/// The engine's sleeps (deadlines, backoffs, [`JobContext::sleep`](crate::JobContext::sleep))
/// are `Send`; [`LocalHost`](super::LocalHost) schedules them on a `LocalTimer` with one host
/// sleep per earliest deadline.
pub trait LocalTimer: Send + Sync + 'static {
    /// Returns a future that completes once `duration` has elapsed on this timer's clock.
    fn sleep_local(&self, duration: Duration) -> LocalSleep;

    /// Returns the current time of this timer's monotonic clock.
    fn now(&self) -> Instant;
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::super::bound::len;
    use super::{LocalSpawn, LocalTask};
    use crate::runtime::{Spawn, Task, TaskPool};
    use alloc::rc::Rc;
    use core::cell::Cell;

    #[test]
    fn finished_and_dropped_local_tasks_leave_the_table() {
        let before = len();
        let pool = TaskPool::new();
        let done = Rc::new(Cell::new(0));
        let counted = done.clone();
        pool.spawn_local(LocalTask::new(async move { counted.set(1) }))
            .unwrap();
        let held = Rc::new(());
        let holder = held.clone();
        pool.spawn_local(LocalTask::new(async move {
            let _holder = holder;
            core::future::pending::<()>().await;
        }))
        .unwrap();
        assert_eq!(len(), before + 2);
        pool.run_until_stalled();
        assert_eq!((done.get(), len()), (1, before + 1));
        drop(pool); // the owner: the pending task is dropped, here, with its `Rc`
        assert_eq!((Rc::strong_count(&held), len()), (1, before));
    }

    #[test]
    fn a_refused_local_task_comes_back() {
        let before = len();
        let pool = TaskPool::new();
        pool.shutdown();
        let ran = Rc::new(Cell::new(false));
        let flag = ran.clone();
        let refused = pool
            .spawn_local(LocalTask::new(async move { flag.set(true) }))
            .unwrap_err();
        assert!(refused.kind().is_shutdown());
        assert_eq!(len(), before);
        futures::executor::block_on(refused.into_task());
        assert!(ran.get());
    }

    #[test]
    fn a_local_task_polled_on_another_thread_is_refused_loudly() {
        let pool = TaskPool::new();
        pool.spawn_local(LocalTask::new(async {})).unwrap();
        let handle = pool.clone();
        let there = std::thread::spawn(move || handle.run_until_stalled()).join();
        assert!(
            there.is_err(),
            "polled elsewhere: a panic, not a hang or a silent loss"
        );
        let _ = pool.spawn(Task::new(async {}));
    }
}
