//! Jobs on a tokio `LocalSet`: [`LocalSetRuntime`].

use std::thread::{self, ThreadId};
use std::time::Duration;

use orchestrator_core::runtime::{
    Instant, LocalSpawn, LocalSpawnError, LocalTask, Sleep, Spawn, SpawnError, SpawnErrorKind,
    Task, ThreadBoundTask, Timer,
};
use tokio::sync::mpsc;
use tokio::task::LocalSet;

use crate::TokioRuntime;

/// What the runner of a [`LocalSetRuntime`] spawns on its `LocalSet`.
enum Queued {
    Send(Task),
    Local(ThreadBoundTask),
}

/// Runs the core's jobs on a tokio [`LocalSet`]: every task (of `Send` executors and of
/// local ones, orchestrators' loops included) runs on the set's thread, so executors that are
/// not `Send` ([`LocalExecutor`](orchestrator_core::LocalExecutor), registered with
/// [`Dispatcher::register_local`](orchestrator_core::Dispatcher::register_local)) and local
/// orchestrators ([`start_local`](orchestrator_core::OrchestratorBuilder::start_local)) work.
/// Sleeps and the clock are tokio's, as with [`TokioRuntime`].
///
/// [`new`](Self::new) puts a small runner task on the set; spawning sends each task to it
/// over a channel, and it spawns them on the set with `spawn_local`. So:
///
/// - nothing runs until the set is driven (`local.run_until(..)`, `local.block_on(..)`, or
///   awaiting the set), inside a runtime with its time driver enabled;
/// - `Send` tasks may be spawned from any thread; a task that is not `Send` only from the
///   set's thread (elsewhere it is refused with [`SpawnErrorKind::NoRuntime`], and a local
///   job dispatched from another thread is rejected before that, its executor being
///   registered on the set's thread only);
/// - once the set is dropped, spawning is refused with [`SpawnErrorKind::Shutdown`], and the
///   tasks it still held are dropped (their jobs resolve as cancelled). Nothing panics.
///
/// ```
/// use orchestrator_core::{Dispatch, Dispatcher, Job, JobContext, LocalExecutor};
/// use orchestrator_tokio::LocalSetRuntime;
/// use std::cell::Cell;
/// use std::rc::Rc;
///
/// struct Tick;
/// impl Job for Tick {
///     type Output = u32;
/// }
/// /// Counts in an `Rc<Cell<..>>`: not `Send`.
/// struct Counter(Rc<Cell<u32>>);
/// impl LocalExecutor<Tick> for Counter {
///     type Error = core::convert::Infallible;
///     async fn execute(&self, _: &Tick, cx: JobContext) -> Result<u32, Self::Error> {
///         cx.sleep(std::time::Duration::from_millis(1)).await;
///         self.0.set(self.0.get() + 1);
///         Ok(self.0.get())
///     }
/// }
///
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// let local = tokio::task::LocalSet::new();
/// let dispatcher = Dispatcher::new(LocalSetRuntime::new(&local));
/// let count = Rc::new(Cell::new(0));
/// dispatcher.register_local(Counter(count.clone()));
/// local.block_on(&rt, async {
///     assert_eq!(dispatcher.dispatch(Tick).await.unwrap().value, 1);
///     assert_eq!(dispatcher.dispatch(Tick).await.unwrap().value, 2);
/// });
/// drop(local);
/// let refused = dispatcher.dispatch(Tick);
/// assert!(rt.block_on(refused).unwrap_err().to_string().contains("shut down"));
/// ```
#[derive(Debug, Clone)]
pub struct LocalSetRuntime {
    queue: mpsc::UnboundedSender<Queued>,
    thread: ThreadId,
    timer: TokioRuntime,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Queued::Send(_) => "Send",
            Queued::Local(_) => "Local",
        })
    }
}

impl LocalSetRuntime {
    /// Puts the runner on `local` and returns the runtime value (a handle: the set owns the
    /// tasks). Sleeps and the clock are those of the runtime that is current when they are
    /// made, as with [`TokioRuntime::new`].
    pub fn new(local: &LocalSet) -> Self {
        Self::with_timer(local, TokioRuntime::new())
    }

    /// As [`new`](Self::new), with the sleeps and clock of `timer` (for example a
    /// [`TokioRuntime::with_handle`] pinned to one runtime).
    pub fn with_timer(local: &LocalSet, timer: TokioRuntime) -> Self {
        let (queue, mut tasks) = mpsc::unbounded_channel::<Queued>();
        // Inside the set: `spawn_local` finds it.
        drop(local.spawn_local(async move {
            while let Some(task) = tasks.recv().await {
                // Dropping a JoinHandle detaches the task.
                match task {
                    Queued::Send(task) => drop(tokio::task::spawn_local(task)),
                    Queued::Local(task) => drop(tokio::task::spawn_local(task)),
                }
            }
        }));
        Self {
            queue,
            thread: thread::current().id(),
            timer,
        }
    }
}

impl Spawn for LocalSetRuntime {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        self.queue.send(Queued::Send(task)).map_err(|refused| {
            let task = match refused.0 {
                Queued::Send(task) => task,
                // The channel gives back what it was given.
                Queued::Local(_) => Task::new(async {}),
            };
            SpawnError::new(SpawnErrorKind::Shutdown, task)
        })
    }

    fn local(&self) -> Option<&dyn LocalSpawn> {
        Some(self)
    }
}

impl LocalSpawn for LocalSetRuntime {
    fn spawn_local(&self, task: LocalTask) -> Result<(), LocalSpawnError> {
        if thread::current().id() != self.thread {
            return Err(LocalSpawnError::new(SpawnErrorKind::NoRuntime, task));
        }
        let parked = ThreadBoundTask::new(task);
        self.queue.send(Queued::Local(parked)).map_err(|refused| {
            let task = match refused.0 {
                Queued::Local(parked) => parked.into_local().ok(),
                Queued::Send(_) => None,
            };
            // On this thread, a parked task always comes back.
            let task = task.unwrap_or_else(|| LocalTask::new(async {}));
            LocalSpawnError::new(SpawnErrorKind::Shutdown, task)
        })
    }
}

impl Timer for LocalSetRuntime {
    fn sleep(&self, duration: Duration) -> Sleep {
        self.timer.sleep(duration)
    }

    fn now(&self) -> Instant {
        self.timer.now()
    }
}
