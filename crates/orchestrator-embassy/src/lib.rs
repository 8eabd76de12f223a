//! [embassy](https://embassy.dev) adapter for [`orchestrator-core`](orchestrator_core).
//!
//! [`EmbassyRuntime`] spawns each job as a task of embassy's executor, through a
//! [`SendSpawner`], into a static pool of tasks declared with
//! `#[embassy_executor::task(pool_size = N)]` (a [`JobPool`]); it sleeps with
//! `embassy_time::Timer` and reads `embassy_time::Instant` (time since boot). The crate is
//! `#![no_std]` (it needs `alloc`: the core boxes each job's future).
//!
//! # On a microcontroller
//!
//! The application picks the executor's platform and the time driver, as with any embassy
//! library: `embassy-executor` with `platform-cortex-m` and `executor-thread` on a Cortex-M,
//! and `embassy-time` with the HAL's driver (for example `embassy-stm32`'s
//! `time-driver-any`). It also needs a global allocator (for example `embedded-alloc`) and a
//! critical-section implementation (`cortex-m`'s `critical-section-single-core`), which the
//! core's lock uses. Then:
//!
//! ```no_run
//! // no_run: embassy's `main` runs the executor forever.
//! use embassy_executor::Spawner;
//! use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext};
//! use orchestrator_embassy::EmbassyRuntime;
//!
//! struct Blink(u32);
//! impl Job for Blink {
//!     type Output = u32;
//! }
//! struct Led;
//! impl Executor<Blink> for Led {
//!     type Error = core::convert::Infallible;
//!     async fn execute(&self, job: &Blink, cx: JobContext) -> Result<u32, Self::Error> {
//!         for _ in 0..job.0 {
//!             cx.sleep(core::time::Duration::from_millis(500)).await; // embassy-time
//!         }
//!         Ok(job.0)
//!     }
//! }
//!
//! #[embassy_executor::main]
//! async fn main(spawner: Spawner) {
//!     let rt = EmbassyRuntime::new(spawner.make_send()); // the default pool of 16 tasks
//!     let dispatcher = Dispatcher::new(rt);
//!     dispatcher.register(Led);
//!     let blinks = dispatcher.dispatch(Blink(3)).await;
//!     assert_eq!(blinks.map(|done| done.value).ok(), Some(3));
//! }
//! ```
//!
//! The same code runs on a host, where `embassy-executor`'s `platform-std` and
//! `embassy-time`'s `std` driver stand in (this crate's tests run that way).
//!
//! # The task pool
//!
//! embassy allocates no task at run time: every job runs in a slot of a static pool. The
//! default pool ([`DEFAULT_POOL`], used by [`EmbassyRuntime::new`]) has
//! [`DEFAULT_POOL_SIZE`] slots; declare a pool of another size with [`job_pool!`] and use it
//! with [`EmbassyRuntime::with_pool`]. A pool is shared by every runtime that uses it, on any
//! executor. When every slot is busy, a dispatch is **rejected**
//! (`Rejection::Spawn(SpawnErrorKind::Full)`), never a panic; a slot is free again once its job
//! finished. A job holds its slot for the job's whole run (attempts, backoff), and an
//! orchestrator's event loop holds one for as long as the orchestrator runs.
//!
//! # Timers
//!
//! Sleeps are `embassy_time::Timer`s. With embassy-time's default timer queue, integrated in
//! the executor, a timer must be polled from an embassy task: the job pipelines are, but a
//! future awaited outside embassy (a `block_on` on another thread) that sleeps through this
//! runtime needs embassy-time's generic queue (a `generic-queue-N` feature of
//! `embassy-time`). Durations are rounded up to embassy ticks; a deadline past the end of
//! embassy's clock never fires (it does not panic).
//!
//! # Features
//!
//! No feature selects an architecture: the executor platform is a feature of
//! `embassy-executor` that the application enables, so `--all-features` builds everywhere.
//! `std` turns on the core's `std` feature (executor panics become failed outcomes instead
//! of aborting the program), for hosted targets.
//!
//! # Conformance
//!
//! `tests/conformance.rs` runs the core's whole conformance suite on embassy's std executor
//! (one executor thread, every case spawned on it as an embassy task, the test thread waiting
//! on a channel); no case is left out.

#![no_std]

extern crate alloc;

use alloc::sync::Arc;
use core::cell::Cell;
use core::fmt;
use core::time::Duration;

use critical_section::Mutex;
use embassy_executor::{SendSpawner, SpawnToken};
use orchestrator_core::runtime::{Instant, Sleep, Spawn, SpawnError, SpawnErrorKind, Task, Timer};

/// The number of slots of [`DEFAULT_POOL`].
pub const DEFAULT_POOL_SIZE: usize = 16;

job_pool! {
    /// The pool of [`DEFAULT_POOL_SIZE`] job tasks used by [`EmbassyRuntime::new`].
    ///
    /// ```
    /// assert_eq!(orchestrator_embassy::DEFAULT_POOL.size(), 16);
    /// ```
    pub static DEFAULT_POOL: DEFAULT_POOL_SIZE;
}

/// Runs the core's jobs as tasks of an embassy executor.
///
/// It is `Copy`, `Send` and `Sync`: a [`SendSpawner`] and a [`JobPool`]. It is a handle (see
/// the core's `runtime` docs on ownership): the executor is the application's.
///
/// ```
/// # fn spawner() -> embassy_executor::SendSpawner {
/// #     // A host stand-in for the microcontroller's executor: embassy's std executor.
/// #     let (tx, rx) = std::sync::mpsc::channel();
/// #     std::thread::spawn(move || {
/// #         let executor = Box::leak(Box::new(embassy_executor::Executor::new()));
/// #         executor.run(|spawner| tx.send(spawner.make_send()).unwrap())
/// #     });
/// #     rx.recv().unwrap()
/// # }
/// use orchestrator_core::runtime::{Spawn, Task};
/// use orchestrator_embassy::EmbassyRuntime;
///
/// let rt = EmbassyRuntime::new(spawner());
/// let (tx, rx) = std::sync::mpsc::channel();
/// rt.spawn(Task::new(async move { tx.send(7).unwrap() })).unwrap();
/// assert_eq!(rx.recv(), Ok(7)); // it ran on the executor's thread
/// ```
#[derive(Clone, Copy)]
pub struct EmbassyRuntime {
    spawner: SendSpawner,
    pool: JobPool,
}

impl EmbassyRuntime {
    /// Creates the runtime: jobs are spawned with `spawner`, into [`DEFAULT_POOL`].
    ///
    /// On a microcontroller the spawner is `spawner.make_send()` of the `Spawner` that
    /// `#[embassy_executor::main]` gives (see the [crate docs](crate)).
    ///
    /// ```
    /// # fn spawner() -> embassy_executor::SendSpawner {
    /// #     let (tx, rx) = std::sync::mpsc::channel();
    /// #     std::thread::spawn(move || {
    /// #         let executor = Box::leak(Box::new(embassy_executor::Executor::new()));
    /// #         executor.run(|spawner| tx.send(spawner.make_send()).unwrap())
    /// #     });
    /// #     rx.recv().unwrap()
    /// # }
    /// let rt = orchestrator_embassy::EmbassyRuntime::new(spawner());
    /// assert_eq!(rt.pool().size(), orchestrator_embassy::DEFAULT_POOL_SIZE);
    /// ```
    pub fn new(spawner: SendSpawner) -> Self {
        Self::with_pool(spawner, DEFAULT_POOL)
    }

    /// Creates the runtime with the job pool `pool` (declared with [`job_pool!`]).
    ///
    /// ```
    /// # fn spawner() -> embassy_executor::SendSpawner {
    /// #     let (tx, rx) = std::sync::mpsc::channel();
    /// #     std::thread::spawn(move || {
    /// #         let executor = Box::leak(Box::new(embassy_executor::Executor::new()));
    /// #         executor.run(|spawner| tx.send(spawner.make_send()).unwrap())
    /// #     });
    /// #     rx.recv().unwrap()
    /// # }
    /// orchestrator_embassy::job_pool!(static JOBS: 64;);
    /// let rt = orchestrator_embassy::EmbassyRuntime::with_pool(spawner(), JOBS);
    /// assert_eq!(rt.pool().size(), 64);
    /// ```
    pub fn with_pool(spawner: SendSpawner, pool: JobPool) -> Self {
        Self { spawner, pool }
    }

    /// Returns the pool this runtime spawns jobs into.
    ///
    /// ```
    /// # fn spawner() -> embassy_executor::SendSpawner {
    /// #     let (tx, rx) = std::sync::mpsc::channel();
    /// #     std::thread::spawn(move || {
    /// #         let executor = Box::leak(Box::new(embassy_executor::Executor::new()));
    /// #         executor.run(|spawner| tx.send(spawner.make_send()).unwrap())
    /// #     });
    /// #     rx.recv().unwrap()
    /// # }
    /// let rt = orchestrator_embassy::EmbassyRuntime::new(spawner());
    /// assert_eq!(rt.pool().size(), 16);
    /// ```
    pub fn pool(&self) -> JobPool {
        self.pool
    }
}

impl fmt::Debug for EmbassyRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbassyRuntime")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl Spawn for EmbassyRuntime {
    /// Spawns `task` into a free slot of the pool; with every slot busy, the task comes back
    /// in a [`SpawnErrorKind::Full`] error.
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        (self.pool.spawn)(self.spawner, task)
    }
}

impl Timer for EmbassyRuntime {
    fn sleep(&self, duration: Duration) -> Sleep {
        let ticks = u64::try_from(duration.as_nanos())
            .ok()
            .and_then(embassy_time::Duration::try_from_nanos);
        let deadline = ticks.and_then(|d| embassy_time::Instant::now().checked_add(d));
        match deadline {
            Some(at) => Sleep::new(embassy_time::Timer::at(at)),
            // Past the end of embassy's clock: it never comes.
            None => Sleep::new(core::future::pending()),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_elapsed(Duration::from_micros(
            embassy_time::Instant::now().as_micros(),
        ))
    }
}

/// A static pool of embassy tasks that run jobs, declared with [`job_pool!`].
///
/// It is a function that spawns into the pool, and the pool's size.
///
/// ```
/// orchestrator_embassy::job_pool!(static FOUR: 4;);
/// assert_eq!(FOUR.size(), 4);
/// ```
#[derive(Clone, Copy)]
pub struct JobPool {
    spawn: fn(SendSpawner, Task) -> Result<(), SpawnError>,
    size: usize,
}

impl JobPool {
    /// Used by [`job_pool!`]; not part of the API.
    #[doc(hidden)]
    pub const fn __new(
        spawn: fn(SendSpawner, Task) -> Result<(), SpawnError>,
        size: usize,
    ) -> Self {
        Self { spawn, size }
    }

    /// Returns the number of jobs the pool runs at once.
    ///
    /// ```
    /// assert_eq!(orchestrator_embassy::DEFAULT_POOL.size(), orchestrator_embassy::DEFAULT_POOL_SIZE);
    /// ```
    pub const fn size(&self) -> usize {
        self.size
    }
}

impl fmt::Debug for JobPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobPool").field("size", &self.size).finish()
    }
}

/// Declares a static pool of `N` embassy tasks for jobs, as a [`JobPool`] constant.
///
/// `job_pool!(static NAME: N;)` (with optional attributes and visibility) expands to an
/// `#[embassy_executor::task(pool_size = N)]` function and a `const NAME: JobPool`. The pool's
/// slots are `static` memory, reserved at build time; each holds a pointer to the job's boxed
/// future plus embassy's task header. The expansion contains embassy's macro-generated
/// `unsafe` code (allowed on the generated items; a crate with `#![forbid(unsafe_code)]`
/// must declare its pools in a module that does not forbid it).
///
/// ```
/// orchestrator_embassy::job_pool! {
///     /// Room for 32 jobs at once.
///     pub static WIDE: 32;
/// }
/// assert_eq!(WIDE.size(), 32);
/// ```
#[macro_export]
macro_rules! job_pool {
    ($(#[$meta:meta])* $vis:vis static $name:ident: $size:expr;) => {
        $(#[$meta])*
        $vis const $name: $crate::JobPool = {
            #[allow(unsafe_code)]
            #[$crate::__private::embassy_executor::task(
                pool_size = $size,
                embassy_executor = $crate::__private::embassy_executor
            )]
            async fn job_task(handoff: $crate::__private::Handoff) {
                handoff.run().await
            }
            #[allow(unsafe_code)]
            fn spawn(
                spawner: $crate::__private::embassy_executor::SendSpawner,
                task: $crate::__private::Task,
            ) -> ::core::result::Result<(), $crate::__private::SpawnError> {
                $crate::__private::spawn_with(spawner, task, job_task)
            }
            $crate::JobPool::__new(spawn, $size)
        };
    };
}

/// What [`job_pool!`] expands to uses; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use embassy_executor;
    pub use orchestrator_core::runtime::{SpawnError, Task};

    use super::*;

    /// Carries a job's task into its embassy task. The spawner keeps a second reference, so a
    /// spawn refused for want of a slot (which drops the embassy task's arguments) gives the
    /// task back.
    pub struct Handoff(Arc<Mutex<Cell<Option<Task>>>>);

    impl fmt::Debug for Handoff {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Handoff").finish_non_exhaustive()
        }
    }

    impl Handoff {
        /// Runs the task (the body of the pool's embassy task).
        pub async fn run(self) {
            let task = critical_section::with(|cs| self.0.borrow(cs).take());
            drop(self);
            if let Some(task) = task {
                task.await;
            }
        }
    }

    /// Spawns `task` into the pool whose embassy task function is `start`.
    pub fn spawn_with<S: Send>(
        spawner: SendSpawner,
        task: Task,
        start: fn(Handoff) -> Result<SpawnToken<S>, embassy_executor::SpawnError>,
    ) -> Result<(), SpawnError> {
        let slot = Arc::new(Mutex::new(Cell::new(Some(task))));
        match start(Handoff(slot.clone())) {
            Ok(token) => {
                spawner.spawn(token);
                Ok(())
            }
            Err(_busy) => {
                // The refused embassy task dropped its `Handoff`: the slot is ours alone.
                let task = critical_section::with(|cs| slot.borrow(cs).take());
                match task {
                    Some(task) => Err(SpawnError::new(SpawnErrorKind::Full, task)),
                    // Unreachable: only the embassy task takes the task, and that embassy task
                    // was never spawned.
                    None => Ok(()),
                }
            }
        }
    }
}
