//! The dispatcher: routes each job, by type, to its executor.

use alloc::borrow::Cow;
use alloc::boxed::Box;
#[cfg(feature = "std")]
use alloc::rc::Rc;
use alloc::string::String;
use core::any::{Any, TypeId};
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::Poll;
use core::time::Duration;

use event_listener::EventListener;
use hashbrown::HashMap;

use crate::breaker::{Admission, Breaker, BreakerConfig};
use crate::bus::SignalBus;
use crate::cache::CacheProvider;
use crate::cancel::CancellationToken;
use crate::cause::Cause;
use crate::id::JobId;
use crate::job::{Job, JobType};
use crate::lifecycle::JobLifecycle;
use crate::observer::Observers;
use crate::outcome::{JobError, Rejection};
use crate::runtime::{LocalSpawn, Runtime, Spawn, SpawnError, Task};
#[cfg(feature = "std")]
use crate::runtime::{LocalSpawnError, LocalTask};
use crate::sync::{Arc, AtomicBool, AtomicUsize, Mutex, Ordering, Weak};
use crate::trace;
use crate::typemap::{TypeMap, type_map};

use super::control::JobControl;
use super::env::JobEnv;
#[cfg(feature = "std")]
use super::executor::LocalExecutor;
use super::executor::{Executor, Threaded};
use super::handle::JobHandle;
#[cfg(feature = "std")]
use super::local;
use super::options::{CacheSpec, Dedup, Extras, JobOptions, Lifecycle, pre_check};
use super::pipeline::{full_task, is_plain, lookup, plain_task, publish_output_event, started};
use super::shared::JobShared;

use super::shutdown::Shutdown;

/// Starts one dispatch of `J`: builds its future and spawns it on the runtime the executor
/// was registered with (monomorphized for that runtime, the job and the executor: no box for
/// a plain dispatch on a concrete runtime). `None` is a plain dispatch (no options, no cache).
///
/// The job's state moves into its task (no reference count taken for the start); a start
/// that fails leaves the job to its caller, which holds the handle: see [`Refused`].
pub(super) type StartFn<J> = dyn Fn(J, Arc<JobShared<<J as Job>::Output>>, Option<Full<J>>) -> Result<(), Refused>
    + Send
    + Sync;

/// Why a start did not spawn the job's task. The job has not ended yet: the caller records the
/// rejection ([`record`](Self::record)) before the refused task goes, so that the task's drop
/// guard then finds the job ended instead of recording a cancellation.
pub(super) enum Refused {
    /// Refused before a task was made (shut down, no executor, circuit open, other thread).
    Rejected(Rejection),
    /// The runtime refused the task; it comes back in the error.
    Spawn(SpawnError),
    /// The runtime refused the local task; it comes back in the error.
    #[cfg(feature = "std")]
    Local(LocalSpawnError),
}

impl Refused {
    /// Ends the job with the rejection, then drops the refused task.
    fn record<T: Send + 'static>(self, shared: &JobShared<T>) {
        let rejection = match &self {
            Refused::Rejected(rejection) => rejection.clone(),
            Refused::Spawn(refused) => Rejection::Spawn(refused.kind()),
            #[cfg(feature = "std")]
            Refused::Local(refused) => Rejection::Spawn(refused.kind()),
        };
        shared.complete(Err(JobError::Rejected(rejection)));
        drop(self); // the task, after the job ended
    }
}

/// What a dispatch that is not plain starts with: its options, its cache policy, and its
/// placeholder value and dedup key (for a journal).
pub(super) struct Full<J: Job> {
    pub(super) options: JobOptions,
    pub(super) cache: Option<CacheSpec<J>>,
    pub(super) placeholder: Option<J::Output>,
    pub(super) dedup: Option<Cow<'static, str>>,
}

impl<J: Job> Full<J> {
    /// `None` if a dispatch with these options runs the plain task.
    fn of(
        options: JobOptions,
        cache: Option<CacheSpec<J>>,
        placeholder: Option<J::Output>,
        dedup: Option<Cow<'static, str>>,
    ) -> Option<Self> {
        (!is_plain(&options, cache.as_ref()) || placeholder.is_some() || dedup.is_some()).then_some(
            Self {
                options,
                cache,
                placeholder,
                dedup,
            },
        )
    }
}

/// What the registry holds for job type `J`: how to start it.
struct Registered<J: Job> {
    start: Arc<StartFn<J>>,
    /// `true` if `start` forwards to a local executor registered on some thread.
    local: bool,
}

/// Starts one dispatch of `J` on a local executor (this thread's table holds it).
#[cfg(feature = "std")]
type LocalStartFn<J> =
    dyn Fn(J, Arc<JobShared<<J as Job>::Output>>, Option<Full<J>>) -> Result<(), Refused>;

/// What this thread's table holds for job type `J` of one dispatcher.
#[cfg(feature = "std")]
struct LocalRegistered<J: Job> {
    start: Rc<LocalStartFn<J>>,
}

/// A registry entry: a `Registered<J>` for the `J` whose `TypeId` is its key.
type Entry = Box<dyn Any + Send + Sync>;

/// Where a dispatch goes and what it inherits: the dispatcher, the orchestrator that tracks
/// it, its cause, and the job that dispatched it.
#[allow(unreachable_pub)] // public only to appear in the sealed `Dispatch` trait
pub struct Route<'a> {
    pub(crate) via: Via<'a>,
    pub(crate) tracker: Option<&'a dyn Tracker>,
    pub(crate) cause: Cause,
    pub(crate) parent: Option<&'a dyn JobControl>,
}

/// The dispatcher a route goes through.
pub(crate) enum Via<'a> {
    Borrowed(&'a Inner),
    Owned(Arc<Inner>),
    /// A sub-job whose dispatcher is gone: it is rejected (the parent's environment says
    /// where its handle's events would have gone).
    Gone(Arc<JobEnv>),
}

/// An orchestrator that tracks the jobs dispatched through it.
pub(crate) trait Tracker: Send + Sync {
    /// The bus it listens to: its jobs publish there.
    fn bus(&self) -> &SignalBus;
    /// Tracks job `id` before it is dispatched, or refuses (disposed, not started).
    fn track(&self, id: JobId) -> Result<(), Rejection>;
}

impl fmt::Debug for Route<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("tracked", &self.tracker.is_some())
            .field("causal_depth", &self.cause.depth)
            .field("sub_job", &self.parent.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> Route<'a> {
    /// A plain dispatch on `dispatcher`: no tracker, no parent, the ambient cause.
    pub(crate) fn plain(dispatcher: &'a Inner) -> Self {
        Self {
            via: Via::Borrowed(dispatcher),
            tracker: None,
            cause: Cause::ambient(),
            parent: None,
        }
    }
}

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
/// # use orchestrator_core::Dispatch;
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
///
/// # The runtime type
///
/// `Dispatcher<R>` remembers its runtime's type so that executors registered on it spawn each
/// job's future directly on that runtime ([`Spawn::spawn_future`](crate::runtime::Spawn::spawn_future)),
/// without boxing it. `Dispatcher` alone is `Dispatcher<Arc<dyn Runtime>>`, the type-erased
/// form ([`with_runtime`](Dispatcher::with_runtime), [`erase`](Self::erase)): the same
/// dispatcher, whose own registrations spawn boxed tasks. Switching runtime is still changing
/// the one constructor line; code that names the type writes `Dispatcher<TokioRuntime>` (or
/// erases it).
pub struct Dispatcher<R = Arc<dyn Runtime>> {
    pub(super) inner: Arc<Inner>,
    pub(super) runtime: Arc<R>,
}

impl<R> Clone for Dispatcher<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            runtime: self.runtime.clone(),
        }
    }
}

pub(crate) struct Inner {
    /// Itself, weakly (for the dedup and breaker watchers of its jobs).
    weak: Weak<Inner>,
    env: Arc<JobEnv>,
    executors: Mutex<TypeMap<Entry>>,
    closed: AtomicBool,
    /// In-flight deduplicated dispatches by (job type, key): an `Arc<JobShared<J::Output>>`.
    inflight: Mutex<HashMap<(TypeId, String), Entry>>,
    breakers: Mutex<TypeMap<Breaker>>,
    /// Set once any breaker is configured: dispatches skip the breaker lock until then.
    has_breakers: AtomicBool,
    /// Executors offered after the dispatcher closed (not registered: they could never run).
    refused_registrations: AtomicUsize,
}

impl<R> Dispatcher<R> {
    /// A dispatcher on `runtime` whose jobs' environment `env` makes (given the dispatcher,
    /// weakly): the builder's last step.
    pub(super) fn assemble(runtime: Arc<R>, env: impl FnOnce(&Weak<Inner>) -> JobEnv) -> Self {
        Dispatcher {
            inner: Arc::new_cyclic(|weak| Inner {
                weak: weak.clone(),
                env: Arc::new(env(weak)),
                executors: Mutex::new(type_map()),
                closed: AtomicBool::new(false),
                inflight: Mutex::new(HashMap::new()),
                breakers: Mutex::new(type_map()),
                has_breakers: AtomicBool::new(false),
                refused_registrations: AtomicUsize::new(0),
            }),
            runtime,
        }
    }
}

impl<R: Runtime> Dispatcher<R> {
    /// Registers `executor` for job type `J`, replacing any previous one; returns `self` for
    /// chaining.
    ///
    /// There is one way to register: what a job publishes on success
    /// ([`Job::output_event`]) belongs to the job type, whatever runs it. Jobs of `J` are
    /// spawned on this dispatcher's runtime type `R` whichever entry point dispatches them.
    ///
    /// A closed dispatcher (after [`close`](Self::close) or [`shutdown`](Self::shutdown))
    /// registers nothing: the executor could never run a job. The refusal is counted
    /// ([`refused_registrations`](Self::refused_registrations)) and, with the `tracing`
    /// feature, logged as a warning.
    pub fn register<J: Job, E: Executor<J>>(&self, executor: E) -> &Self {
        let executor = Arc::new(Threaded(executor));
        let runtime = self.runtime.clone();
        let start: Arc<StartFn<J>> = Arc::new(move |job, shared, full: Option<Full<J>>| {
            let which = shared.which();
            match full {
                // Unboxed: the runtime's own task holds the small plain future.
                None => {
                    let future = plain_task(executor.clone(), job, shared);
                    R::spawn_future(&runtime, trace::job(future, which))
                }
                Some(Full { options, cache, .. }) => {
                    let future = full_task(executor.clone(), job, shared, options, cache, None);
                    runtime.spawn(Task::new(trace::job(future, which)))
                }
            }
            .map_err(Refused::Spawn)
        });
        self.inner.insert::<J>(start, false);
        self
    }
}

impl<R: Runtime + LocalSpawn> Dispatcher<R> {
    /// Registers a local `executor` for job type `J` on **this thread**, replacing any
    /// previous executor of `J`; returns `self` for chaining.
    ///
    /// A [`LocalExecutor`] need not be `Send` (it may hold an `Rc`), nor its futures (they may
    /// await a `JsFuture`): its jobs run as tasks that are not `Send`, spawned with
    /// [`LocalSpawn::spawn_local`], on the thread that dispatches them. The dispatcher stays
    /// `Send + Sync`; only the registration is per thread: a job of `J` dispatched from
    /// another thread is rejected with [`Rejection::OtherThread`]. Everything else (options,
    /// handles, events, orchestrators, shutdown) is the same as for [`register`](Self::register).
    ///
    /// Needs a runtime that runs tasks that are not `Send` ([`LocalSpawn`]); on a type-erased
    /// dispatcher whose runtime cannot, every dispatch of `J` is rejected with
    /// [`Rejection::Spawn`]`(`[`SpawnErrorKind::NotLocal`](crate::runtime::SpawnErrorKind::NotLocal)`)`.
    ///
    /// ```
    /// use orchestrator_core::testing::VirtualRuntime;
    /// use orchestrator_core::{Dispatch, Dispatcher, Job, JobContext, LocalExecutor, Rejection};
    /// use orchestrator_core::JobError;
    /// use std::rc::Rc;
    ///
    /// struct Ping;
    /// impl Job for Ping {
    ///     type Output = usize;
    /// }
    /// struct Counter(Rc<()>); // not `Send`
    /// impl LocalExecutor<Ping> for Counter {
    ///     type Error = core::convert::Infallible;
    ///     async fn execute(&self, _: &Ping, _cx: JobContext) -> Result<usize, Self::Error> {
    ///         Ok(Rc::strong_count(&self.0))
    ///     }
    /// }
    ///
    /// let rt = VirtualRuntime::new();
    /// let dispatcher = Dispatcher::new(rt.clone());
    /// dispatcher.register_local(Counter(Rc::new(())));
    /// assert_eq!(rt.block_on(dispatcher.dispatch(Ping)).unwrap().value, 1);
    ///
    /// // Another thread has no executor for `Ping`: a rejection, not a panic.
    /// let there = dispatcher.clone();
    /// let rejected = std::thread::spawn(move || {
    ///     VirtualRuntime::new().block_on(there.dispatch(Ping)).unwrap_err()
    /// })
    /// .join()
    /// .unwrap();
    /// assert!(matches!(rejected, JobError::Rejected(Rejection::OtherThread { .. })));
    /// ```
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn register_local<J: Job, E: LocalExecutor<J>>(&self, executor: E) -> &Self {
        let executor = Arc::new(executor);
        let runtime = self.runtime.clone();
        let start: Rc<LocalStartFn<J>> = Rc::new(move |job, shared, full: Option<Full<J>>| {
            let which = shared.which();
            let task = match full {
                None => {
                    let future = plain_task(executor.clone(), job, shared);
                    LocalTask::new(trace::job(future, which))
                }
                Some(Full { options, cache, .. }) => {
                    let future = full_task(executor.clone(), job, shared, options, cache, None);
                    LocalTask::new(trace::job(future, which))
                }
            };
            runtime.spawn_local(task).map_err(Refused::Local)
        });
        let job = TypeId::of::<J>();
        local::insert(&self.inner.weak, job, Rc::new(LocalRegistered { start }));
        // The shared registry forwards to this thread's table.
        let owner = self.inner.weak.clone();
        let forward: Arc<StartFn<J>> = Arc::new(move |job, shared, full| {
            let registered = local::get(&owner, TypeId::of::<J>());
            let start = registered
                .as_ref()
                .and_then(|r| r.downcast_ref::<LocalRegistered<J>>())
                .map(|r| r.start.clone());
            match start {
                Some(start) => start(job, shared, full),
                None => Err(Refused::Rejected(Rejection::OtherThread {
                    job_type: core::any::type_name::<J>(),
                })),
            }
        });
        self.inner.insert::<J>(forward, true);
        self
    }
}

impl<R> Dispatcher<R> {
    /// Returns the type-erased form of this dispatcher (the same dispatcher: same executors,
    /// bus, cache and jobs).
    pub fn erase(&self) -> Dispatcher {
        Dispatcher {
            inner: self.inner.clone(),
            runtime: Arc::new(self.inner.env.runtime.clone()),
        }
    }

    /// The engine, for routes.
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Returns the bus on which jobs publish their events, unless a dispatch overrides it.
    pub fn bus(&self) -> &SignalBus {
        &self.inner.env.bus
    }

    /// Removes the executor for `J`; returns `true` if there was one.
    pub fn unregister<J: Job>(&self) -> bool {
        let removed = self
            .inner
            .executors
            .with(|map| map.remove(&TypeId::of::<J>()));
        #[cfg(feature = "std")]
        local::remove(&self.inner.weak, TypeId::of::<J>());
        removed.is_some()
    }

    /// Returns `true` if an executor is registered for `J` (for a local executor: on this
    /// thread).
    pub fn is_registered<J: Job>(&self) -> bool {
        let local = self.inner.executors.with(|map| {
            map.get(&TypeId::of::<J>())
                .and_then(|e| e.downcast_ref::<Registered<J>>())
                .map(|r| r.local)
        });
        match local {
            None => false,
            Some(false) => true,
            #[cfg(feature = "std")]
            Some(true) => local::contains(&self.inner.weak, TypeId::of::<J>()),
            #[cfg(not(feature = "std"))]
            Some(true) => false,
        }
    }

    /// Returns the cache provider of this dispatcher's cached dispatches (for invalidation
    /// from code: `dispatcher.cache().invalidate_prefix("users/")`).
    pub fn cache(&self) -> &dyn CacheProvider {
        &*self.inner.env.cache
    }

    /// Configures the failure circuit breaker of job type `J` (replacing any previous one);
    /// see [`BreakerConfig`](crate::BreakerConfig).
    pub fn set_circuit_breaker<J: Job>(&self, config: BreakerConfig) {
        self.inner
            .breakers
            .with(|b| b.insert(TypeId::of::<J>(), Breaker::new(config)));
        self.inner.has_breakers.store(true, Ordering::Release);
    }

    /// Stops intake: every later dispatch is rejected with [`Rejection::Shutdown`]; running
    /// jobs go on. See [`shutdown`](Self::shutdown) to also wait for them.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
    }

    /// Returns `true` once [`close`](Self::close) (or [`shutdown`](Self::shutdown)) was
    /// called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Returns how many jobs are in flight: dispatched and not ended (dedup joins are not
    /// jobs of their own and are not counted).
    pub fn in_flight(&self) -> usize {
        self.inner.env.in_flight()
    }

    /// Returns how many events of this dispatcher's jobs (lifecycle, output and placeholder
    /// events) could not be published because their bus was closed; each was also reported
    /// to the observers ([`Observer::on_event_undelivered`](crate::Observer::on_event_undelivered)).
    pub fn undelivered_events(&self) -> usize {
        self.inner.env.undelivered.load(Ordering::Relaxed)
    }

    /// Shuts down gracefully: stops intake at once (as [`close`](Self::close)), waits up to
    /// `grace` (on the runtime's clock) for the jobs in flight to end, then cancels the rest
    /// and waits for them to end. Every handle resolves.
    ///
    /// The returned future tells how many jobs had to be cancelled.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future keeps the dispatcher closed and cancels nothing.
    pub fn shutdown(&self, grace: Duration) -> Shutdown {
        self.close();
        Shutdown::new(self.inner.env.clone(), self.inner.env.runtime.sleep(grace))
    }

    pub(crate) fn observers(&self) -> &Observers {
        &self.inner.env.observers
    }

    /// Returns how many executors were offered after the dispatcher closed
    /// ([`close`](Self::close) or [`shutdown`](Self::shutdown)): they are not registered (a
    /// closed dispatcher rejects every dispatch), and counted here so the mistake is seen.
    pub fn refused_registrations(&self) -> usize {
        self.inner.refused_registrations.load(Ordering::Relaxed)
    }

    /// Returns the runtime jobs run on.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.inner.env.runtime
    }
}

impl<R> fmt::Debug for Dispatcher<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let executors = self.inner.executors.with(|m| m.len());
        f.debug_struct("Dispatcher")
            .field("executors", &executors)
            .field("closed", &self.is_closed())
            .field("in_flight", &self.in_flight())
            .field("refused_registrations", &self.refused_registrations())
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // This thread's local registrations go with the dispatcher (other threads' are pruned
        // at their next registration, or go with the thread).
        #[cfg(feature = "std")]
        local::forget(self.weak.as_ptr().addr());
    }
}

impl Inner {
    /// Puts `start` in the registry for `J`, replacing any previous executor of `J`.
    pub(super) fn insert<J: Job>(&self, start: Arc<StartFn<J>>, local: bool) {
        if self.closed.load(Ordering::Acquire) {
            // It could never run a job: refused, counted and (with `tracing`) reported.
            self.refused_registrations.fetch_add(1, Ordering::Relaxed);
            trace::registration_refused(core::any::type_name::<J>());
            return;
        }
        let entry: Entry = Box::new(Registered::<J> { start, local });
        let replaced = self
            .executors
            .with(|map| map.insert(TypeId::of::<J>(), entry));
        drop(replaced); // outside the lock: it may hold the last reference to an executor
    }

    /// Every dispatch ends here (see [`dispatch`]).
    pub(crate) fn dispatch_full<J: Job>(
        &self,
        tracker: Option<&dyn Tracker>,
        cause: Cause,
        parent: Option<&dyn JobControl>,
        job: J,
        mut options: JobOptions,
        extras: Extras<J>,
    ) -> JobHandle<J::Output> {
        let env = &self.env;
        let parent_id = parent.map(|p| p.id());
        let mut invalid = extras.invalid();
        if let Some(tracker) = tracker {
            if options
                .bus()
                .is_some_and(|bus| !bus.same_bus(tracker.bus()))
            {
                invalid = Some("a job dispatched through an orchestrator publishes on its bus");
            }
            if options.lifecycle_mode() == Some(Lifecycle::Off) {
                invalid = Some("an orchestrator's jobs need their lifecycle events");
            }
            options = options
                .with_bus(tracker.bus().clone())
                .with_lifecycle_tracking();
        }
        if options.delay().is_some() && extras.0.as_ref().is_some_and(|e| e.cache.is_some()) {
            invalid = Some("a delayed dispatch cannot use the cache");
        }
        if let Some(reason) = invalid {
            let rejection = Rejection::Invalid { reason };
            return rejected::<J>(env, cause, parent_id, options, rejection);
        }
        if let Some(dedup) = extras.dedup() {
            if let Some(joined) = self.join::<J>(dedup, &options, parent) {
                return joined;
            }
        }
        let id = JobId::next();
        if let Some(tracker) = tracker {
            // Tracked before dispatch: no event of the job can be seen untracked.
            if let Err(rejection) = tracker.track(id) {
                return rejected::<J>(env, cause, parent_id, options, rejection);
            }
        }
        let inherited = parent.and_then(|p| p.bus_override());
        let shared = Arc::new({
            let mut shared = JobShared::new(
                id,
                JobType::of::<J>,
                env.clone(),
                &mut options,
                cause,
                parent_id,
            );
            shared.inherit_bus(inherited);
            shared.count_in_flight();
            shared
        });
        if let Some(parent) = parent {
            parent.adopt(Arc::downgrade(&shared) as Weak<dyn JobControl>);
        }
        let handle = JobHandle::new(shared.clone());
        if let Err(refused) = self.start(job, shared, options, extras) {
            refused.record(handle.shared());
        }
        handle
    }

    /// A dispatch with default options outside any orchestrator and job: the same steps as
    /// [`dispatch_full`](Self::dispatch_full) with nothing to validate, join, track or adopt.
    pub(crate) fn dispatch_default<J: Job>(&self, job: J) -> JobHandle<J::Output> {
        let shared = Arc::new({
            let mut shared = JobShared::plain(
                JobId::next(),
                JobType::of::<J>,
                self.env.clone(),
                Cause::ambient(),
            );
            shared.count_in_flight();
            shared
        });
        let handle = JobHandle::new(shared.clone());
        if let Err(refused) = self.start_plain(job, shared) {
            refused.record(handle.shared());
        }
        handle
    }

    /// Joins the in-flight dispatch of `J` with the same dedup key, if there is one. The
    /// joined handle keeps its own token and timeout.
    fn join<J: Job>(
        &self,
        dedup: &Dedup<J>,
        options: &JobOptions,
        parent: Option<&dyn JobControl>,
    ) -> Option<JobHandle<J::Output>> {
        let copy = dedup.copy?;
        let key = (TypeId::of::<J>(), String::from(&*dedup.key));
        let follower = self.inflight.with(|inflight| {
            let leader = inflight
                .get(&key)?
                .downcast_ref::<Arc<JobShared<J::Output>>>()?
                .clone();
            let follower = Arc::new(JobShared::follower(&leader, options));
            let target = follower.clone();
            let joined = leader.on_done(Box::new(move |outcome| {
                target.end_following(copy(outcome));
            }));
            joined.then_some(follower)
        })?;
        let token = options.cancellation();
        if let Some(token) = token.filter(|t| t.is_cancelled()) {
            follower.end_following(Err(JobError::cancelled(token.reason())));
        } else if options.timeout() == Some(Duration::ZERO) {
            follower.end_following(Err(JobError::TimedOut {
                budget: Duration::ZERO,
            }));
        } else if token.is_some() || options.timeout().is_some() {
            let watcher = watch_follower(follower.clone(), token.cloned(), options.timeout());
            if let Err(refused) = self.env.runtime.spawn(Task::new(watcher)) {
                let rejection = Rejection::Spawn(refused.kind());
                follower.end_following(Err(JobError::Rejected(rejection)));
            }
        }
        if let Some(parent) = parent {
            parent.adopt(Arc::downgrade(&follower) as Weak<dyn JobControl>);
        }
        Some(JobHandle::new(follower))
    }

    /// Checks intake and the breaker, then returns how to start `J`.
    #[inline]
    fn starter<J: Job>(
        &self,
        shared: &Arc<JobShared<J::Output>>,
    ) -> Result<Arc<StartFn<J>>, Rejection> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Rejection::Shutdown);
        }
        self.admit::<J>(shared)?;
        self.executors
            .with(|map| {
                let registered = map
                    .get(&TypeId::of::<J>())?
                    .downcast_ref::<Registered<J>>()?;
                Some(registered.start.clone())
            })
            .ok_or(Rejection::NoExecutor {
                job_type: core::any::type_name::<J>(),
            })
    }

    /// Starts a dispatch with default options and no extras.
    #[inline]
    fn start_plain<J: Job>(
        &self,
        job: J,
        shared: Arc<JobShared<J::Output>>,
    ) -> Result<(), Refused> {
        match self.starter::<J>(&shared) {
            Ok(start) => start(job, shared, None),
            Err(rejection) => Err(Refused::Rejected(rejection)),
        }
    }

    fn start<J: Job>(
        &self,
        job: J,
        shared: Arc<JobShared<J::Output>>,
        options: JobOptions,
        extras: Extras<J>,
    ) -> Result<(), Refused> {
        let start = self.starter::<J>(&shared).map_err(Refused::Rejected)?;
        let (mut cache, placeholder, dedup) = extras.into_parts();
        let (placeholder, value) = match placeholder {
            Some(p) => (Some(p.event), Some(p.value)),
            None => (None, None),
        };
        let dedup = dedup.map(|dedup| {
            self.lead::<J>(&shared, &dedup.key);
            dedup.key
        });
        if let Some(spec) = cache.as_mut() {
            // A plain hit is served here, without a task: cheaper than running the job. Its
            // token and budget apply as to any other dispatch.
            if !spec.policy.is_revalidate() && !spec.policy.is_force_refresh() {
                if let Some(end) = pre_check(&options) {
                    shared.complete(Err(end));
                    return Ok(());
                }
                if let Some(placeholder) = placeholder {
                    publish_placeholder(&shared, placeholder);
                }
                started(&shared);
                if let Some(hit) = lookup(&shared, spec) {
                    publish_output_event(&job, &hit, &shared);
                    shared.complete(Ok(hit));
                    return Ok(());
                }
                spec.looked_up = true;
                return start(job, shared, Full::of(options, cache, value, dedup));
            }
        }
        if let Some(placeholder) = placeholder {
            publish_placeholder(&shared, placeholder);
        }
        start(job, shared, Full::of(options, cache, value, dedup))
    }

    /// Registers `shared` as the in-flight dispatch for its dedup key until it ends.
    fn lead<J: Job>(&self, shared: &Arc<JobShared<J::Output>>, key: &str) {
        let key = (TypeId::of::<J>(), String::from(key));
        let entry: Entry = Box::new(shared.clone());
        self.inflight
            .with(|inflight| inflight.insert(key.clone(), entry));
        let inner = self.weak.clone();
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
        let _ = registered;
    }

    /// Consults `J`'s circuit breaker, if it has one; a run reports its outcome to it.
    fn admit<J: Job>(&self, shared: &Arc<JobShared<J::Output>>) -> Result<(), Rejection> {
        if !self.has_breakers.load(Ordering::Acquire) {
            return Ok(());
        }
        let now = self.env.runtime.now();
        let admission = self.breakers.with(|b| {
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
            trace::breaker(job_type, state);
            self.env
                .observers
                .each(|o| o.on_breaker_transition(job_type, state));
        }
        let inner = self.weak.clone();
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
                trace::breaker(job_type, state);
                inner
                    .env
                    .observers
                    .each(|o| o.on_breaker_transition(job_type, state));
            }
        }));
        Ok(())
    }
}

impl Inner {
    /// The dispatcher of a job's environment, if it still exists.
    pub(crate) fn from_env(env: &JobEnv) -> Option<Arc<Inner>> {
        env.dispatcher.upgrade()?.downcast::<Inner>().ok()
    }
}

/// Sends a configured dispatch on its route.
pub(crate) fn dispatch<J: Job>(
    route: Route<'_>,
    job: J,
    options: JobOptions,
    extras: Extras<J>,
) -> JobHandle<J::Output> {
    let Route {
        via,
        tracker,
        cause,
        parent,
    } = route;
    match via {
        Via::Borrowed(dispatcher) => {
            dispatcher.dispatch_full(tracker, cause, parent, job, options, extras)
        }
        Via::Owned(dispatcher) => {
            dispatcher.dispatch_full(tracker, cause, parent, job, options, extras)
        }
        Via::Gone(env) => {
            let parent_id = parent.map(|p| p.id());
            rejected::<J>(&env, cause, parent_id, options, Rejection::Shutdown)
        }
    }
}

/// A handle that resolves at once with `rejection` (the job never runs).
fn rejected<J: Job>(
    env: &Arc<JobEnv>,
    cause: Cause,
    parent_id: Option<JobId>,
    mut options: JobOptions,
    rejection: Rejection,
) -> JobHandle<J::Output> {
    let shared = Arc::new(JobShared::new(
        JobId::next(),
        JobType::of::<J>,
        env.clone(),
        &mut options,
        cause,
        parent_id,
    ));
    shared.complete(Err(JobError::Rejected(rejection)));
    JobHandle::new(shared)
}

/// Ends a dedup follower on its own token or timeout (it has no task of its own otherwise).
async fn watch_follower<T: Send + 'static>(
    follower: Arc<JobShared<T>>,
    token: Option<CancellationToken>,
    budget: Option<Duration>,
) {
    let mut deadline = budget.map(|b| (follower.runtime_arc().sleep(b), b));
    let mut listener: Option<EventListener> = None;
    core::future::poll_fn(|cx| {
        if !follower.watch_follower(cx) {
            return Poll::Ready(());
        }
        if let Some(token) = &token {
            if token.poll_cancelled(&mut listener, cx).is_ready() {
                follower.end_following(Err(JobError::cancelled(token.reason())));
                return Poll::Ready(());
            }
        }
        if let Some((sleep, budget)) = &mut deadline {
            if Pin::new(sleep).poll(cx).is_ready() {
                follower.end_following(Err(JobError::TimedOut { budget: *budget }));
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await;
}

/// Publishes a dispatch's placeholder (and its lifecycle event) before its work starts.
fn publish_placeholder<T: Send + 'static>(
    shared: &JobShared<T>,
    placeholder: super::options::PlaceholderFn,
) {
    shared.lifecycle(|| JobLifecycle::Placeholder);
    shared.publish_reported(placeholder(shared.job_meta()));
}
