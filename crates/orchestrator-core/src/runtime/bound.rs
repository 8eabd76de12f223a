//! A task that is not `Send`, parked in its thread's table behind a `Send` handle.

use core::cell::RefCell;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::thread::{self, ThreadId};

use hashbrown::HashMap;

use super::LocalTask;

struct Table {
    next: u64,
    tasks: HashMap<u64, Option<LocalTask>>,
}

std::thread_local! {
    static TASKS: RefCell<Table> = RefCell::new(Table { next: 0, tasks: HashMap::new() });
}

/// A [`LocalTask`] parked in the current thread's table, behind a handle that is `Send`: how
/// an executor that takes only `Send` futures, but polls them all on one thread, runs tasks
/// that are not `Send` (the core's [`TaskPool`](super::TaskPool) does this; so can a
/// `LocalSet` runner fed through a channel).
///
/// The handle is a future that polls the task where it is parked. It must be polled on the
/// thread that parked it: polled on another thread it panics (the task is out of reach there,
/// and a hang would be worse). Dropped on its own thread, it drops the task; dropped on
/// another thread, the task stays in its thread's table until that thread ends.
///
/// ```
/// use orchestrator_core::runtime::{LocalTask, ThreadBoundTask};
/// use std::rc::Rc;
///
/// let not_send = Rc::new(3);
/// let parked = ThreadBoundTask::new(LocalTask::new(async move { assert_eq!(*not_send, 3) }));
/// fn is_send<T: Send>(_: &T) {}
/// is_send(&parked);
/// futures::executor::block_on(parked); // on the thread that parked it
///
/// // Taken back on its thread, it is a local task again.
/// let parked = ThreadBoundTask::new(LocalTask::new(async {}));
/// let _task: LocalTask = parked.into_local().unwrap();
/// ```
#[must_use = "a task does nothing until it is spawned or polled"]
pub struct ThreadBoundTask {
    key: u64,
    thread: ThreadId,
}

impl ThreadBoundTask {
    /// Parks `task` in the current thread's table.
    pub fn new(task: LocalTask) -> Self {
        let key = TASKS.with(|t| {
            let mut t = t.borrow_mut();
            let key = t.next;
            t.next = t.next.wrapping_add(1);
            t.tasks.insert(key, Some(task));
            key
        });
        Self {
            key,
            thread: thread::current().id(),
        }
    }

    /// Returns the thread the task is parked on.
    pub fn thread(&self) -> ThreadId {
        self.thread
    }

    /// Takes the task back out of the table, on its own thread; elsewhere (or if it already
    /// finished) gives the handle back.
    ///
    /// # Errors
    ///
    /// The handle itself, if called on another thread than the task's or after the task
    /// finished.
    pub fn into_local(self) -> Result<LocalTask, Self> {
        if thread::current().id() != self.thread {
            return Err(self);
        }
        match self.reclaim().take() {
            Some(task) => Ok(task),
            None => Err(self),
        }
    }

    /// What takes the task back after the handle was given away (to a pool that refused it).
    pub(crate) fn reclaim(&self) -> Reclaim {
        Reclaim { key: self.key }
    }
}

/// Takes a parked task back out of its table (before its handle is dropped).
pub(crate) struct Reclaim {
    key: u64,
}

impl Reclaim {
    pub(crate) fn take(self) -> Option<LocalTask> {
        TASKS
            .try_with(|t| t.borrow_mut().tasks.remove(&self.key).flatten())
            .ok()
            .flatten()
    }
}

impl Future for ThreadBoundTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        assert!(
            thread::current().id() == self.thread,
            "a task that is not `Send` was polled on another thread than the one that \
             parked it: drive the executor that runs local tasks from one thread"
        );
        let key = self.key;
        // Out of the table while it runs: it may park tasks itself.
        let Some(mut task) = TASKS.with(|t| t.borrow_mut().tasks.get_mut(&key)?.take()) else {
            return Poll::Ready(()); // already finished or taken back
        };
        let poll = Pin::new(&mut task).poll(cx);
        match poll {
            Poll::Pending => TASKS.with(|t| {
                if let Some(slot) = t.borrow_mut().tasks.get_mut(&key) {
                    *slot = Some(task);
                }
            }),
            Poll::Ready(()) => {
                TASKS.with(|t| t.borrow_mut().tasks.remove(&key));
                drop(task); // outside the table's borrow: its destructors may park tasks
            }
        }
        poll
    }
}

impl Drop for ThreadBoundTask {
    fn drop(&mut self) {
        if thread::current().id() == self.thread {
            drop(self.reclaim().take());
        }
    }
}

impl fmt::Debug for ThreadBoundTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadBoundTask")
            .field("thread", &self.thread)
            .finish_non_exhaustive()
    }
}

/// Returns how many tasks this thread's table holds.
#[cfg(test)]
pub(crate) fn len() -> usize {
    TASKS.with(|t| t.borrow().tasks.len())
}
