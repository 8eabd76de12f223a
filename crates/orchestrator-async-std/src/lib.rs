//! async-std adapter for [`orchestrator-core`](orchestrator_core).
//!
//! **async-std is discontinued upstream** (its maintainers point to smol). This adapter is
//! kept deliberately thin, so that existing async-std applications can use the core; new
//! code should prefer `orchestrator-smol` or `orchestrator-tokio`. Nothing else in the
//! workspace depends on it.
//!
//! [`AsyncStdRuntime`] spawns with `async_std::task::spawn` (dropping the `JoinHandle`
//! detaches), sleeps with `async_std::task::sleep` and reads `std::time::Instant`.
//!
//! ```
//! use orchestrator_async_std::AsyncStdRuntime;
//! use orchestrator_core::Dispatcher;
//!
//! let dispatcher = Dispatcher::new(AsyncStdRuntime::default());
//! assert!(!dispatcher.is_closed());
//! ```

#![forbid(unsafe_code)]

use core::future::Future;
use core::time::Duration;

use orchestrator_core::runtime::{Instant, Sleep, Spawn, SpawnError, Task, Timer};

/// Runs the core's jobs on async-std's global executor.
#[derive(Debug, Clone, Copy)]
pub struct AsyncStdRuntime {
    epoch: std::time::Instant,
}

impl Default for AsyncStdRuntime {
    fn default() -> Self {
        Self {
            epoch: std::time::Instant::now(),
        }
    }
}

impl AsyncStdRuntime {
    /// Creates the adapter; its clock starts now.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Spawn for AsyncStdRuntime {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        self.spawn_future(task)
    }

    /// Spawns `future` on async-std as it is (no box of ours).
    fn spawn_future<F>(&self, future: F) -> Result<(), SpawnError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(async_std::task::spawn(future));
        Ok(())
    }
}

impl Timer for AsyncStdRuntime {
    fn sleep(&self, duration: Duration) -> Sleep {
        Sleep::new(async_std::task::sleep(duration))
    }

    fn now(&self) -> Instant {
        Instant::from_elapsed(self.epoch.elapsed())
    }
}
