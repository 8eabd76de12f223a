//! The dispatcher: routes each job, by type, to its executor.

use alloc::boxed::Box;
use core::any::{Any, TypeId};
use core::fmt;

use hashbrown::HashMap;

use crate::executor::Executor;
use crate::handle::{JobHandle, JobShared};
use crate::id::JobId;
use crate::job::{Job, JobOptions};
use crate::outcome::{JobError, Rejection};
use crate::pipeline::job_task;
use crate::runtime::{Runtime, Task};
use crate::sync::{Arc, AtomicBool, Mutex, Ordering};

/// Starts a dispatch of `J` on a concrete executor (the erased registry entry).
trait Start<J: Job>: Send + Sync {
    fn start(
        self: Arc<Self>,
        job: J,
        shared: Arc<JobShared<J::Output>>,
        options: JobOptions,
    ) -> Task;
}

impl<J: Job, E: Executor<J>> Start<J> for E {
    fn start(
        self: Arc<Self>,
        job: J,
        shared: Arc<JobShared<J::Output>>,
        options: JobOptions,
    ) -> Task {
        job_task(self, job, shared, options)
    }
}

/// A registry entry: an `Arc<dyn Start<J>>` for the `J` whose `TypeId` is its key.
type Entry = Box<dyn Any + Send + Sync>;

/// Routes jobs to executors by job type and runs them on a runtime.
///
/// Cheap to clone: clones share the registry and the runtime. Lookup is O(1) by `TypeId`.
/// Registering an executor for a type that already has one replaces it; jobs already
/// dispatched keep the executor they started with.
///
/// ```
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatcher, Executor, Job, JobContext};
///
/// struct Greet(&'static str);
/// impl Job for Greet {
///     type Output = String;
/// }
///
/// struct Greeter;
/// impl Executor<Greet> for Greeter {
///     type Error = core::convert::Infallible;
///     async fn execute(&self, job: &Greet, _cx: JobContext) -> Result<String, Self::Error> {
///         Ok(format!("hello, {}", job.0))
///     }
/// }
///
/// let rt = VirtualRuntime::new();
/// let dispatcher = Dispatcher::new(rt.clone());
/// dispatcher.register(Greeter);
/// let handle = dispatcher.dispatch(Greet("world"));
/// assert_eq!(rt.block_on(handle).unwrap().value, "hello, world");
///
/// // No executor: an error value naming the type, never a panic.
/// struct Unknown;
/// impl Job for Unknown {
///     type Output = ();
/// }
/// let err = rt.block_on(dispatcher.dispatch(Unknown)).unwrap_err();
/// assert!(err.to_string().contains("Unknown"));
/// ```
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Arc<dyn Runtime>,
    executors: Mutex<HashMap<TypeId, Entry>>,
    shut_down: AtomicBool,
}

impl Dispatcher {
    /// Creates a dispatcher with no executors that runs jobs on `runtime`.
    pub fn new(runtime: impl Runtime) -> Self {
        Self::with_runtime(Arc::new(runtime))
    }

    /// Creates a dispatcher on an already shared runtime.
    pub fn with_runtime(runtime: Arc<dyn Runtime>) -> Self {
        Self {
            inner: Arc::new(Inner {
                runtime,
                executors: Mutex::new(HashMap::new()),
                shut_down: AtomicBool::new(false),
            }),
        }
    }

    /// Registers `executor` for job type `J`, replacing any previous one; returns `self` for
    /// chaining.
    pub fn register<J: Job, E: Executor<J>>(&self, executor: E) -> &Self {
        let start: Arc<dyn Start<J>> = Arc::new(executor);
        let entry: Entry = Box::new(start);
        self.inner
            .executors
            .with(|map| map.insert(TypeId::of::<J>(), entry));
        self
    }

    /// Removes the executor for `J`; returns `true` if there was one.
    pub fn unregister<J: Job>(&self) -> bool {
        self.inner
            .executors
            .with(|map| map.remove(&TypeId::of::<J>()).is_some())
    }

    /// Returns `true` if an executor is registered for `J`.
    pub fn is_registered<J: Job>(&self) -> bool {
        self.inner
            .executors
            .with(|map| map.contains_key(&TypeId::of::<J>()))
    }

    /// Dispatches `job` with default options; see [`dispatch_with`](Self::dispatch_with).
    pub fn dispatch<J: Job>(&self, job: J) -> JobHandle<J::Output> {
        self.dispatch_with(job, JobOptions::default())
    }

    /// Dispatches `job` and returns its handle at once; the work runs on the runtime.
    ///
    /// Never panics and never waits. Problems arrive through the handle as
    /// [`JobError::Rejected`]: no executor for `J` ([`Rejection::NoExecutor`], naming the
    /// type), a dispatcher that was shut down, or a runtime that refused the task.
    pub fn dispatch_with<J: Job>(&self, job: J, options: JobOptions) -> JobHandle<J::Output> {
        let shared = Arc::new(JobShared::new(
            JobId::next(),
            self.inner.runtime.clone(),
            options.cancellation().cloned(),
        ));
        let handle = JobHandle::new(shared.clone());
        if let Err(rejection) = self.start(job, shared.clone(), options) {
            shared.complete(Err(JobError::Rejected(rejection)));
        }
        handle
    }

    fn start<J: Job>(
        &self,
        job: J,
        shared: Arc<JobShared<J::Output>>,
        options: JobOptions,
    ) -> Result<(), Rejection> {
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(Rejection::Shutdown);
        }
        let no_executor = || Rejection::NoExecutor {
            job_type: core::any::type_name::<J>(),
        };
        let start = self
            .inner
            .executors
            .with(|map| {
                map.get(&TypeId::of::<J>())?
                    .downcast_ref::<Arc<dyn Start<J>>>()
                    .cloned()
            })
            .ok_or_else(no_executor)?;
        let task = start.start(job, shared.clone(), options);
        self.inner.runtime.spawn(task).map_err(|refused| {
            // Record the rejection before the refused task (and its drop guard) goes away.
            shared.complete(Err(JobError::Rejected(Rejection::Spawn(refused.kind()))));
            Rejection::Spawn(refused.kind())
        })
    }

    /// Refuses every later dispatch with [`Rejection::Shutdown`]; running jobs go on.
    pub fn shutdown(&self) {
        self.inner.shut_down.store(true, Ordering::Release);
    }

    /// Returns `true` once [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shut_down.load(Ordering::Acquire)
    }

    /// Returns the runtime jobs run on.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.inner.runtime
    }
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let executors = self.inner.executors.with(|m| m.len());
        f.debug_struct("Dispatcher")
            .field("executors", &executors)
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}
