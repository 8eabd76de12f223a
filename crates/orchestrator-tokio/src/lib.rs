//! Tokio adapter for [`orchestrator-core`](orchestrator_core).
//!
//! [`TokioRuntime`] spawns jobs with `tokio::spawn` (detached), sleeps with
//! `tokio::time::sleep` and reads `tokio::time::Instant`, so tokio's paused test clock
//! (`#[tokio::test(start_paused = true)]`) applies to job timeouts and backoff too. It works on
//! the multi-thread and the current-thread schedulers. The runtime must have its time driver
//! enabled (`#[tokio::main]` does; a hand-built runtime needs `enable_time()` or
//! `enable_all()`).
//!
//! ```
//! use orchestrator_core::Dispatcher;
//! use orchestrator_tokio::TokioRuntime;
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     let dispatcher = Dispatcher::new(TokioRuntime::default());
//!     assert!(!dispatcher.is_closed());
//! }
//! ```

#![forbid(unsafe_code)]

use core::time::Duration;

use orchestrator_core::runtime::{Instant, Sleep, Spawn, SpawnError, SpawnErrorKind, Task, Timer};
use tokio::runtime::Handle;

/// Runs the core's jobs on tokio.
///
/// `TokioRuntime::default()` spawns on whichever tokio runtime is current when a job is
/// dispatched (dispatching outside any runtime is rejected with
/// [`SpawnErrorKind::NoRuntime`]); [`TokioRuntime::with_handle`] pins it to one runtime.
#[derive(Debug, Clone)]
pub struct TokioRuntime {
    handle: Option<Handle>,
    epoch: tokio::time::Instant,
}

impl Default for TokioRuntime {
    fn default() -> Self {
        Self {
            handle: None,
            epoch: tokio::time::Instant::now(),
        }
    }
}

impl TokioRuntime {
    /// Spawns on the runtime that is current at each dispatch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns on the runtime behind `handle`, from any thread.
    pub fn with_handle(handle: Handle) -> Self {
        Self {
            handle: Some(handle),
            ..Self::default()
        }
    }
}

impl Spawn for TokioRuntime {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        let handle = match &self.handle {
            Some(handle) => handle.clone(),
            None => match Handle::try_current() {
                Ok(handle) => handle,
                Err(_) => return Err(SpawnError::new(SpawnErrorKind::NoRuntime, task)),
            },
        };
        drop(handle.spawn(task)); // dropping a JoinHandle detaches the task
        Ok(())
    }
}

impl Timer for TokioRuntime {
    fn sleep(&self, duration: Duration) -> Sleep {
        // A pinned handle's timer works from any thread: create the sleep inside its context.
        let _context = self.handle.as_ref().map(Handle::enter);
        Sleep::new(tokio::time::sleep(duration))
    }

    fn now(&self) -> Instant {
        Instant::from_elapsed(tokio::time::Instant::now().saturating_duration_since(self.epoch))
    }
}
