//! The dispatcher: routes each job, by type, to its executor.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::{Any, TypeId};
use core::fmt;

use hashbrown::HashMap;

use alloc::borrow::Cow;
use alloc::string::String;

use crate::breaker::{Admission, Breaker, BreakerConfig};
use crate::builder::{CacheSpec, Dedup, Extras, JobBuilder};
use crate::bus::SignalBus;
use crate::cache::{CacheEntry, CacheError, CacheProvider, InMemoryCache, InvalidateCache};
use crate::event::JobType;
use crate::executor::{Executor, JobContext};
use crate::handle::{JobEnv, JobHandle, JobShared};
use crate::id::JobId;
use crate::job::{EventJob, Job, JobOptions};
use crate::observer::{Observer, Observers};
use crate::outcome::{JobError, Rejection};
use crate::pipeline::job_task;
use crate::pipeline::{OnSuccess, lookup, publish_output_event, started};
use crate::runtime::Instant;
use crate::runtime::{Runtime, Task};
use crate::sync::{Arc, AtomicBool, Mutex, Ordering};

/// Builds the task of one dispatch from a type-erased executor (an `Arc<E>`).
type StartFn<J> = fn(
    Arc<dyn Any + Send + Sync>,
    J,
    Arc<JobShared<<J as Job>::Output>>,
    JobOptions,
    Option<OnSuccess<J>>,
    Option<CacheSpec<J>>,
) -> Task;

/// What the registry holds for job type `J`: the executor, how to start it, and the
/// output-event hook of an [`EventJob`].
struct Registered<J: Job> {
    executor: Arc<dyn Any + Send + Sync>,
    start: StartFn<J>,
    on_success: Option<OnSuccess<J>>,
}

fn start_job<J: Job, E: Executor<J>>(
    executor: Arc<dyn Any + Send + Sync>,
    job: J,
    shared: Arc<JobShared<J::Output>>,
    options: JobOptions,
    on_success: Option<OnSuccess<J>>,
    cache: Option<CacheSpec<J>>,
) -> Task {
    match executor.downcast::<E>() {
        Ok(executor) => job_task(executor, job, shared, options, on_success, cache),
        Err(_) => mismatched::<J>(shared),
    }
}

/// Unreachable by construction (an entry's `start` is instantiated with its executor's
/// type); resolves the job as rejected rather than panicking.
fn mismatched<J: Job>(shared: Arc<JobShared<J::Output>>) -> Task {
    Task::new(async move {
        shared.complete(Err(JobError::Rejected(Rejection::NoExecutor {
            job_type: core::any::type_name::<J>(),
        })));
    })
}

/// A registry entry: a `Registered<J>` for the `J` whose `TypeId` is its key.
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
    env: Arc<JobEnv>,
    executors: Mutex<HashMap<TypeId, Entry>>,
    shut_down: AtomicBool,
    /// In-flight deduplicated dispatches by (job type, key): an `Arc<JobShared<J::Output>>`.
    inflight: Mutex<HashMap<(TypeId, String), Entry>>,
    breakers: Mutex<HashMap<TypeId, Breaker>>,
    /// Set once any breaker is configured: dispatches skip the breaker lock until then.
    has_breakers: AtomicBool,
}

impl Dispatcher {
    /// Creates a dispatcher with no executors that runs jobs on `runtime` and publishes their
    /// events on a new, isolated [`SignalBus`] (see [`bus`](Self::bus)).
    pub fn new(runtime: impl Runtime) -> Self {
        Self::builder(runtime).build()
    }

    /// Creates a dispatcher on an already shared runtime (otherwise like [`new`](Self::new)).
    pub fn with_runtime(runtime: Arc<dyn Runtime>) -> Self {
        DispatcherBuilder::from_arc(runtime).build()
    }

    /// Starts a dispatcher with options: its bus, observers, lifecycle events.
    pub fn builder(runtime: impl Runtime) -> DispatcherBuilder {
        DispatcherBuilder::from_arc(Arc::new(runtime))
    }

    /// Registers `executor` for job type `J`, replacing any previous one; returns `self` for
    /// chaining.
    pub fn register<J: Job, E: Executor<J>>(&self, executor: E) -> &Self {
        self.insert(Registered::<J> {
            executor: Arc::new(executor),
            start: start_job::<J, E>,
            on_success: None,
        })
    }

    /// Registers `executor` for the [`EventJob`] type `J`: on success, the job's output event
    /// is published on the job's bus with its [`DataSource`](crate::DataSource).
    pub fn register_event_job<J: EventJob, E: Executor<J>>(&self, executor: E) -> &Self {
        self.insert(Registered::<J> {
            executor: Arc::new(executor),
            start: start_job::<J, E>,
            on_success: Some(publish_output_event::<J>),
        })
    }

    fn insert<J: Job>(&self, registered: Registered<J>) -> &Self {
        let entry: Entry = Box::new(registered);
        self.inner
            .executors
            .with(|map| map.insert(TypeId::of::<J>(), entry));
        self
    }

    /// Returns the bus on which jobs publish their events, unless a dispatch overrides it.
    pub fn bus(&self) -> &SignalBus {
        &self.inner.env.bus
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
        self.dispatch_as(JobId::next(), job, options)
    }

    /// Starts a fluent dispatch of `job`: options, cache, placeholder, dedup, metadata.
    pub fn job<J: Job>(&self, job: J) -> JobBuilder<'_, J> {
        JobBuilder::new(self, job)
    }

    /// Returns the cache provider of this dispatcher's cached dispatches (for invalidation
    /// from code: `dispatcher.cache().invalidate_prefix("users/")`).
    pub fn cache(&self) -> &dyn CacheProvider {
        &*self.inner.env.cache
    }

    /// Configures the failure circuit breaker of job type `J` (replacing any previous one);
    /// see [`breaker`](crate::breaker).
    pub fn set_circuit_breaker<J: Job>(&self, config: BreakerConfig) {
        self.inner
            .breakers
            .with(|b| b.insert(TypeId::of::<J>(), Breaker::new(config)));
        self.inner.has_breakers.store(true, Ordering::Release);
    }

    /// Dispatches with a pre-allocated id (orchestrators track the id before dispatching).
    pub(crate) fn dispatch_as<J: Job>(
        &self,
        id: JobId,
        job: J,
        options: JobOptions,
    ) -> JobHandle<J::Output> {
        self.dispatch_full(id, job, options, Extras::none())
    }

    /// Every dispatch ends here.
    pub(crate) fn dispatch_full<J: Job>(
        &self,
        id: JobId,
        job: J,
        mut options: JobOptions,
        extras: Extras<J>,
    ) -> JobHandle<J::Output> {
        if let Some(dedup) = extras.dedup() {
            if let Some(joined) = self.join::<J>(dedup) {
                return joined;
            }
        }
        let shared = Arc::new(JobShared::new(
            id,
            JobType::of::<J>(),
            self.inner.env.clone(),
            &mut options,
        ));
        let handle = JobHandle::new(shared.clone());
        if let Err(rejection) = self.start(job, shared.clone(), options, extras) {
            shared.complete(Err(JobError::Rejected(rejection)));
        }
        handle
    }

    /// Joins the in-flight dispatch of `J` with the same dedup key, if there is one.
    fn join<J: Job>(&self, dedup: &Dedup<J>) -> Option<JobHandle<J::Output>> {
        let key = (TypeId::of::<J>(), String::from(&*dedup.key));
        self.inner.inflight.with(|inflight| {
            let leader = inflight
                .get(&key)?
                .downcast_ref::<Arc<JobShared<J::Output>>>()?
                .clone();
            let follower = Arc::new(JobShared::follower(&leader));
            let target = follower.clone();
            let copy = dedup.copy;
            let joined =
                leader.on_done(Box::new(move |outcome| target.end_following(copy(outcome))));
            joined.then(|| JobHandle::new(follower))
        })
    }

    fn start<J: Job>(
        &self,
        job: J,
        shared: Arc<JobShared<J::Output>>,
        options: JobOptions,
        extras: Extras<J>,
    ) -> Result<(), Rejection> {
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(Rejection::Shutdown);
        }
        self.admit::<J>(&shared)?;
        let no_executor = || Rejection::NoExecutor {
            job_type: core::any::type_name::<J>(),
        };
        let (executor, start, on_success) = self
            .inner
            .executors
            .with(|map| {
                let registered = map
                    .get(&TypeId::of::<J>())?
                    .downcast_ref::<Registered<J>>()?;
                Some((
                    registered.executor.clone(),
                    registered.start,
                    registered.on_success,
                ))
            })
            .ok_or_else(no_executor)?;
        let (mut cache, placeholder, dedup) = extras.into_parts();
        if let Some(dedup) = dedup {
            self.lead::<J>(&shared, dedup.key);
        }
        if let Some(placeholder) = placeholder {
            placeholder(&shared);
        }
        if let Some(spec) = cache.as_mut() {
            // A plain hit is served here, without a task: cheaper than running the job.
            if !spec.policy.is_revalidate() && !spec.policy.is_force_refresh() {
                started(&shared);
                if let Some(hit) = lookup(&shared, spec) {
                    if let Some(hook) = on_success {
                        hook(&job, &hit, &shared);
                    }
                    shared.complete(Ok(hit));
                    return Ok(());
                }
                spec.looked_up = true;
            }
        }
        let task = start(executor, job, shared.clone(), options, on_success, cache);
        self.inner.env.runtime.spawn(task).map_err(|refused| {
            // Record the rejection before the refused task (and its drop guard) goes away.
            shared.complete(Err(JobError::Rejected(Rejection::Spawn(refused.kind()))));
            Rejection::Spawn(refused.kind())
        })
    }

    /// Registers `shared` as the in-flight dispatch for its dedup key until it ends.
    fn lead<J: Job>(&self, shared: &Arc<JobShared<J::Output>>, key: Cow<'static, str>) {
        let key = (TypeId::of::<J>(), String::from(&*key));
        let entry: Entry = Box::new(shared.clone());
        self.inner
            .inflight
            .with(|inflight| inflight.insert(key.clone(), entry));
        let inner = Arc::downgrade(&self.inner);
        let id = shared.id();
        let registered = shared.on_done(Box::new(move |_| {
            if let Some(inner) = inner.upgrade() {
                inner.inflight.with(|inflight| {
                    // Remove only our own entry (a later leader may have replaced it).
                    let ours = inflight
                        .get(&key)
                        .and_then(|e| e.downcast_ref::<Arc<JobShared<J::Output>>>())
                        .is_some_and(|leader| leader.id() == id);
                    if ours {
                        inflight.remove(&key);
                    }
                });
            }
        }));
        debug_assert!(registered, "a job that has not started cannot have ended");
    }

    /// Consults `J`'s circuit breaker, if it has one; a run reports its outcome to it.
    fn admit<J: Job>(&self, shared: &Arc<JobShared<J::Output>>) -> Result<(), Rejection> {
        if !self.inner.has_breakers.load(Ordering::Acquire) {
            return Ok(());
        }
        let now = self.inner.env.runtime.now();
        let admission = self.inner.breakers.with(|b| {
            b.get_mut(&TypeId::of::<J>())
                .map(|breaker| breaker.admit(now))
        });
        let transition = match admission {
            None => return Ok(()),
            Some(Admission::Reject) => {
                return Err(Rejection::CircuitOpen {
                    job_type: core::any::type_name::<J>(),
                });
            }
            Some(Admission::Run { transition }) => transition,
        };
        let job_type = core::any::type_name::<J>();
        if let Some(state) = transition {
            self.observers()
                .each(|o| o.on_breaker_transition(job_type, state));
        }
        let inner = Arc::downgrade(&self.inner);
        shared.on_done(Box::new(move |outcome| {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let failed = match outcome {
                Ok(_) => Some(false),
                Err(JobError::Failed(_) | JobError::TimedOut { .. }) => Some(true),
                Err(_) => None,
            };
            let now = inner.env.runtime.now();
            let transition = inner.breakers.with(|b| {
                b.get_mut(&TypeId::of::<J>())
                    .and_then(|breaker| breaker.record(failed, now))
            });
            if let Some(state) = transition {
                inner
                    .env
                    .observers
                    .each(|o| o.on_breaker_transition(job_type, state));
            }
        }));
        Ok(())
    }

    /// Refuses every later dispatch with [`Rejection::Shutdown`]; running jobs go on.
    pub fn shutdown(&self) {
        self.inner.shut_down.store(true, Ordering::Release);
    }

    /// Returns `true` once [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shut_down.load(Ordering::Acquire)
    }

    pub(crate) fn observers(&self) -> &Observers {
        &self.inner.env.observers
    }

    /// Returns the runtime jobs run on.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.inner.env.runtime
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

/// Builds a [`Dispatcher`]; see [`Dispatcher::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct DispatcherBuilder {
    runtime: Arc<dyn Runtime>,
    bus: Option<SignalBus>,
    cache: Option<Arc<dyn CacheProvider>>,
    observers: Vec<Arc<dyn Observer>>,
    lifecycle: bool,
}

impl DispatcherBuilder {
    fn from_arc(runtime: Arc<dyn Runtime>) -> Self {
        Self {
            runtime,
            bus: None,
            cache: None,
            observers: Vec::new(),
            lifecycle: false,
        }
    }

    /// Uses `provider` for cached dispatches (default: an [`InMemoryCache`] of
    /// [`DEFAULT_CACHE_CAPACITY`] entries).
    pub fn cache(mut self, provider: impl CacheProvider) -> Self {
        self.cache = Some(Arc::new(provider));
        self
    }

    /// Publishes job events on `bus` (for example [`SignalBus::global`]) instead of a new,
    /// isolated bus.
    pub fn bus(mut self, bus: SignalBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Adds an observer; several are called in the order they were added.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Publishes [`JobLifecycle`](crate::JobLifecycle) events for every job by default
    /// (a dispatch can still override it).
    pub fn lifecycle_events(mut self, on: bool) -> Self {
        self.lifecycle = on;
        self
    }

    /// Builds the dispatcher.
    pub fn build(self) -> Dispatcher {
        let cache =
            self.cache
                .unwrap_or_else(|| match InMemoryCache::new(DEFAULT_CACHE_CAPACITY) {
                    Ok(cache) => Arc::new(cache),
                    Err(_) => Arc::new(NoCache),
                });
        let dispatcher = Dispatcher {
            inner: Arc::new(Inner {
                env: Arc::new(JobEnv {
                    runtime: self.runtime,
                    cache,
                    bus: self.bus.unwrap_or_default(),
                    observers: Observers::new(self.observers),
                    lifecycle: self.lifecycle,
                }),
                executors: Mutex::new(HashMap::new()),
                shut_down: AtomicBool::new(false),
                inflight: Mutex::new(HashMap::new()),
                breakers: Mutex::new(HashMap::new()),
                has_breakers: AtomicBool::new(false),
            }),
        };
        dispatcher.register(InvalidateCacheExecutor);
        dispatcher
    }
}

impl fmt::Debug for DispatcherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatcherBuilder")
            .field("bus", &self.bus)
            .field("observers", &self.observers.len())
            .field("lifecycle", &self.lifecycle)
            .finish_non_exhaustive()
    }
}

/// The capacity of a dispatcher's default in-memory cache.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// Runs [`InvalidateCache`] jobs against the dispatcher's cache.
struct InvalidateCacheExecutor;

impl Executor<InvalidateCache> for InvalidateCacheExecutor {
    type Error = CacheError;

    async fn execute(&self, job: &InvalidateCache, cx: JobContext) -> Result<usize, CacheError> {
        job.target.apply(cx.cache())
    }
}

/// A provider that stores nothing (never used: the default capacity is not zero).
struct NoCache;

impl CacheProvider for NoCache {
    fn get(&self, _: &str, _: Instant) -> Result<Option<CacheEntry>, CacheError> {
        Ok(None)
    }
    fn put(&self, _: &str, _: CacheEntry, _: Instant) -> Result<(), CacheError> {
        Ok(())
    }
    fn invalidate(&self, _: &str) -> Result<bool, CacheError> {
        Ok(false)
    }
    fn invalidate_prefix(&self, _: &str) -> Result<usize, CacheError> {
        Ok(0)
    }
    fn invalidate_where(&self, _: &dyn Fn(&str) -> bool) -> Result<usize, CacheError> {
        Ok(0)
    }
}
