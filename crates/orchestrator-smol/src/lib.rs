//! smol adapter for [`orchestrator-core`](orchestrator_core).
//!
//! [`SmolRuntime`] spawns jobs on smol's global executor (`smol::spawn`, detached: a smol
//! `Task` cancels on drop, so the adapter detaches it), sleeps with `smol::Timer` and reads
//! `std::time::Instant`.
//!
//! ```
//! use orchestrator_core::Dispatcher;
//! use orchestrator_smol::SmolRuntime;
//!
//! let dispatcher = Dispatcher::new(SmolRuntime::default());
//! assert!(!dispatcher.is_closed());
//! ```

#![forbid(unsafe_code)]

use core::future::Future;
use core::time::Duration;

use orchestrator_core::runtime::{Instant, Sleep, Spawn, SpawnError, Task, Timer};

/// Runs the core's jobs on smol's global executor.
#[derive(Debug, Clone, Copy)]
pub struct SmolRuntime {
    epoch: std::time::Instant,
}

impl Default for SmolRuntime {
    fn default() -> Self {
        Self {
            epoch: std::time::Instant::now(),
        }
    }
}

impl SmolRuntime {
    /// Creates the adapter; its clock starts now.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Spawn for SmolRuntime {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        self.spawn_future(task)
    }

    /// Spawns `future` on smol's global executor as it is (no box of ours).
    #[inline]
    fn spawn_future<F>(&self, future: F) -> Result<(), SpawnError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        smol::spawn(future).detach();
        Ok(())
    }
}

impl Timer for SmolRuntime {
    fn sleep(&self, duration: Duration) -> Sleep {
        let timer = smol::Timer::after(duration);
        Sleep::new(async move {
            timer.await;
        })
    }

    fn now(&self) -> Instant {
        Instant::from_elapsed(self.epoch.elapsed())
    }
}
