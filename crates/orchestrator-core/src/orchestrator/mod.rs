//! Orchestrators: state holders that react to events and dispatch jobs.
//!
//! An [`Orchestrator`] owns a state value and handles every event of its bus in one method,
//! [`on_event`](Orchestrator::on_event), told whether the event is **active** (it belongs to a
//! job this orchestrator dispatched and that has not finished) or **passive** (everything
//! else). Starting one ([`OrchestratorBuilder::start`]) subscribes it to its bus and spawns its
//! event loop on the dispatcher's runtime; the returned [`OrchestratorHandle`] reads the state
//! (synchronously, or as a [`StateStream`]), dispatches tracked jobs, and disposes it.
//!
//! # Tracking
//!
//! A job dispatched through an orchestrator is tracked *before* it is dispatched, so none of
//! its events can be seen untracked, and it publishes its lifecycle events (all but
//! `Progress`, unless the dispatch asks for all with `lifecycle_events(true)`) so that its
//! terminal event reaches the bus. Every event of the job up to and including that terminal
//! event arrives as active; tracking ends when this orchestrator's loop takes the terminal
//! event (so in its handler, `is_job_running` is already `false`). No timer is involved: a late
//! event of the job (a revalidated cache value, say) still arrives as active.
//!
//! # Disposal
//!
//! [`OrchestratorHandle::dispose`] stops event handling (an event being handled finishes, no
//! further one starts), ends the state streams, and refuses state changes and dispatches from
//! then on. Jobs it started keep running unless cancelled. Other subscribers of the bus are
//! unaffected.

mod group;
mod guard;

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;
use core::pin::Pin;
use core::task::Poll;

use event_listener::EventListener;
use futures_core::{FusedStream, Stream};
use hashbrown::HashSet;

use crate::builder::{Extras, JobBuilder};
use crate::bus::{SignalBus, Subscription, TypedEvent, TypedSubscription};
use crate::cancel::CancellationToken;
use crate::dispatcher::Dispatcher;
use crate::event::Event;
use crate::handle::JobHandle;
use crate::id::JobId;
use crate::job::{Job, JobOptions};
use crate::lifecycle::JobLifecycle;
use crate::runtime::{SpawnErrorKind, Task};
use crate::sync::{Arc, AtomicBool, AtomicUsize, Mutex, Ordering};
use crate::watch::{StateStream, Watch};

pub use group::OrchestratorGroup;
pub use guard::{DEFAULT_LIMIT, StormGuard};
use guard::{GuardState, Verdict};

/// Whether an event belongs to one of the orchestrator's own running jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The event's job was dispatched by this orchestrator and has not finished.
    Active,
    /// Any other event.
    Passive,
}

impl Origin {
    /// Returns `true` for [`Origin::Active`].
    pub fn is_active(self) -> bool {
        self == Origin::Active
    }
}

/// The behaviour of an orchestrator: how it reacts to events.
///
/// ```
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatcher, Event, Orchestrator, OrchestratorContext, Origin};
///
/// struct Clicked;
/// struct Counter;
/// impl Orchestrator for Counter {
///     type State = u32;
///     fn on_event(&mut self, event: &Event, _origin: Origin, cx: &mut OrchestratorContext<'_, u32>) {
///         if event.is::<Clicked>() {
///             cx.update(|n| *n += 1);
///         }
///     }
/// }
///
/// let rt = VirtualRuntime::new();
/// let dispatcher = Dispatcher::new(rt.clone());
/// let counter = Counter.builder(0, &dispatcher).start().unwrap();
/// dispatcher.bus().emit(Clicked).unwrap();
/// dispatcher.bus().emit(Clicked).unwrap();
/// rt.run_until_stalled();
/// assert_eq!(counter.state(), 2);
/// counter.dispose();
/// ```
pub trait Orchestrator: Send + 'static {
    /// The state it owns and publishes.
    type State: Clone + Send + Sync + 'static;

    /// Handles one event of the bus, in publish order.
    ///
    /// With `std`, a panic here is caught, reported to the dispatcher's observers
    /// ([`Observer::on_handler_panic`](crate::Observer::on_handler_panic)), and the
    /// orchestrator goes on with the next event.
    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, Self::State>,
    );

    /// Starts configuring an orchestrator with this behaviour, an initial state and the
    /// dispatcher its jobs go through.
    fn builder(self, initial: Self::State, dispatcher: &Dispatcher) -> OrchestratorBuilder<Self>
    where
        Self: Sized,
    {
        OrchestratorBuilder {
            orchestrator: self,
            initial,
            dispatcher: dispatcher.clone(),
            bus: None,
            guard: StormGuard::new(),
            name: core::any::type_name::<Self>(),
        }
    }
}

/// What an event handler can do: read and change the state, dispatch tracked jobs.
pub struct OrchestratorContext<'a, S> {
    shared: &'a Shared<S>,
}

impl<S: Clone + Send + Sync + 'static> OrchestratorContext<'_, S> {
    /// Returns a copy of the current state.
    pub fn state(&self) -> S {
        self.shared.state.get()
    }

    /// Changes the state in place and publishes it to the state streams.
    pub fn update(&mut self, f: impl FnOnce(&mut S)) {
        self.shared.state.update(f);
    }

    /// Replaces the state and publishes it.
    pub fn set_state(&mut self, state: S) {
        self.shared.state.update(|s| *s = state);
    }

    /// Dispatches a tracked job (see [`OrchestratorHandle::dispatch`]).
    ///
    /// # Errors
    ///
    /// [`OrchestratorError::Disposed`] if the orchestrator was disposed meanwhile.
    pub fn dispatch<J: Job>(&mut self, job: J) -> Result<JobHandle<J::Output>, OrchestratorError> {
        self.shared.dispatch(job, JobOptions::new())
    }

    /// Dispatches a tracked job with options.
    ///
    /// # Errors
    ///
    /// [`OrchestratorError::Disposed`] if the orchestrator was disposed meanwhile.
    pub fn dispatch_with<J: Job>(
        &mut self,
        job: J,
        options: JobOptions,
    ) -> Result<JobHandle<J::Output>, OrchestratorError> {
        self.shared.dispatch(job, options)
    }

    /// Dispatches a tracked job configured with a [`JobBuilder`] (cache, placeholder, dedup,
    /// ...); the dispatch uses this orchestrator's dispatcher and bus.
    ///
    /// # Errors
    ///
    /// [`OrchestratorError::Disposed`] if the orchestrator was disposed meanwhile.
    pub fn dispatch_job<J: Job>(
        &mut self,
        builder: JobBuilder<'_, J>,
    ) -> Result<JobHandle<J::Output>, OrchestratorError> {
        self.shared.dispatch_built(builder)
    }

    /// Starts a [`JobBuilder`] on this orchestrator's dispatcher (dispatch it with
    /// [`dispatch_job`](Self::dispatch_job) to have it tracked).
    pub fn job<J: Job>(&self, job: J) -> JobBuilder<'_, J> {
        self.shared.dispatcher.job(job)
    }

    /// Returns `true` while job `id` is one of this orchestrator's running jobs.
    pub fn is_job_running(&self, id: JobId) -> bool {
        self.shared.is_tracked(id)
    }

    /// Returns the bus this orchestrator listens to and dispatches on.
    pub fn bus(&self) -> &SignalBus {
        &self.shared.bus
    }
}

impl<S> fmt::Debug for OrchestratorContext<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestratorContext")
            .field("orchestrator", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// Configures an orchestrator before it starts; see [`Orchestrator::builder`].
#[must_use = "a builder does nothing until `build` or `start` is called"]
pub struct OrchestratorBuilder<O: Orchestrator> {
    orchestrator: O,
    initial: O::State,
    dispatcher: Dispatcher,
    bus: Option<SignalBus>,
    guard: StormGuard,
    name: &'static str,
}

impl<O: Orchestrator> OrchestratorBuilder<O> {
    /// Listens to and dispatches on `bus` instead of the dispatcher's bus.
    pub fn bus(mut self, bus: SignalBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Sets the storm guard (default: [`StormGuard::new`], 50 events per type per second).
    pub fn guard(mut self, guard: StormGuard) -> Self {
        self.guard = guard;
        self
    }

    /// Names the orchestrator in observer reports (default: its type name).
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// Builds the orchestrator without starting it (see [`OrchestratorHandle::start`]).
    pub fn build(self) -> OrchestratorHandle<O::State> {
        let bus = self.bus.unwrap_or_else(|| self.dispatcher.bus().clone());
        let shared = Arc::new(Shared {
            name: self.name,
            state: Arc::new(Watch::new(self.initial)),
            tracked: Mutex::new(HashSet::new()),
            disposed: AtomicBool::new(false),
            started: AtomicBool::new(false),
            stop: CancellationToken::new(),
            dropped: AtomicUsize::new(0),
            dispatcher: self.dispatcher,
            bus,
            pending: Mutex::new(None),
        });
        let orchestrator = self.orchestrator;
        let guard = GuardState::new(self.guard);
        let loop_shared = shared.clone();
        let start: StartLoop = Box::new(move |subscription| {
            Task::new(event_loop(loop_shared, orchestrator, subscription, guard))
        });
        shared.pending.with(|p| *p = Some(start));
        OrchestratorHandle { shared }
    }

    /// Builds and starts the orchestrator.
    ///
    /// # Errors
    ///
    /// [`OrchestratorError::Spawn`] if the runtime refused the event loop.
    pub fn start(self) -> Result<OrchestratorHandle<O::State>, OrchestratorError> {
        let handle = self.build();
        handle.start()?;
        Ok(handle)
    }
}

impl<O: Orchestrator> fmt::Debug for OrchestratorBuilder<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestratorBuilder")
            .field("name", &self.name)
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

type StartLoop = Box<dyn FnOnce(Subscription) -> Task + Send>;

/// What the handle and the event loop share.
struct Shared<S> {
    name: &'static str,
    dispatcher: Dispatcher,
    bus: SignalBus,
    state: Arc<Watch<S>>,
    /// Jobs dispatched by this orchestrator whose terminal event it has not handled yet.
    tracked: Mutex<HashSet<JobId>>,
    disposed: AtomicBool,
    started: AtomicBool,
    /// Cancelled on dispose: wakes the event loop and ends `on` subscriptions.
    stop: CancellationToken,
    dropped: AtomicUsize,
    /// The event loop, until it is started.
    pending: Mutex<Option<StartLoop>>,
}

impl<S> Shared<S> {
    fn is_tracked(&self, id: JobId) -> bool {
        self.tracked.with(|t| t.contains(&id))
    }

    fn is_disposed(&self) -> bool {
        self.disposed.load(Ordering::Acquire)
    }

    fn dispatch<J: Job>(
        &self,
        job: J,
        options: JobOptions,
    ) -> Result<JobHandle<J::Output>, OrchestratorError> {
        self.dispatch_full(job, options, Extras::none())
    }

    fn dispatch_built<J: Job>(
        &self,
        builder: JobBuilder<'_, J>,
    ) -> Result<JobHandle<J::Output>, OrchestratorError> {
        let (_, job, options, extras) = builder.into_parts();
        self.dispatch_full(job, options, extras)
    }

    fn dispatch_full<J: Job>(
        &self,
        job: J,
        options: JobOptions,
        extras: Extras<J>,
    ) -> Result<JobHandle<J::Output>, OrchestratorError> {
        if self.is_disposed() {
            return Err(OrchestratorError::Disposed);
        }
        if !self.started.load(Ordering::Acquire) {
            return Err(OrchestratorError::NotStarted);
        }
        let id = JobId::next();
        // Tracked before dispatch: no event of the job can be seen untracked.
        self.tracked.with(|t| t.insert(id));
        let options = options.with_bus(self.bus.clone()).with_lifecycle_tracking();
        Ok(self.dispatcher.dispatch_full(id, job, options, extras))
    }
}

/// A handle to a built orchestrator. Cheap to clone; clones control the same orchestrator.
pub struct OrchestratorHandle<S> {
    shared: Arc<Shared<S>>,
}

impl<S: Clone + Send + Sync + 'static> OrchestratorHandle<S> {
    /// Subscribes the orchestrator to its bus and spawns its event loop.
    ///
    /// # Errors
    ///
    /// [`OrchestratorError::AlreadyStarted`], [`OrchestratorError::Disposed`], or
    /// [`OrchestratorError::Spawn`] if the runtime refused the loop (the orchestrator is then
    /// disposed).
    pub fn start(&self) -> Result<(), OrchestratorError> {
        if self.shared.is_disposed() {
            return Err(OrchestratorError::Disposed);
        }
        let Some(start) = self.shared.pending.with(Option::take) else {
            return Err(OrchestratorError::AlreadyStarted);
        };
        // Subscribe before anything can be dispatched through it.
        let subscription = self.shared.bus.subscribe();
        self.shared.started.store(true, Ordering::Release);
        let task = start(subscription);
        self.shared
            .dispatcher
            .runtime()
            .spawn(task)
            .map_err(|refused| {
                self.dispose();
                OrchestratorError::Spawn(refused.kind())
            })
    }

    /// Returns a copy of the current state (the initial state after disposal stays readable
    /// as the last state).
    pub fn state(&self) -> S {
        self.shared.state.get()
    }

    /// Returns a stream of states: the current one first, then each change, until disposal.
    pub fn states(&self) -> StateStream<S> {
        StateStream::new(self.shared.state.clone())
    }

    /// Dispatches a tracked job: its events arrive as [`Origin::Active`] until this
    /// orchestrator has handled its terminal event.
    ///
    /// # Errors
    ///
    /// [`OrchestratorError::Disposed`] after disposal, [`OrchestratorError::NotStarted`]
    /// before [`start`](Self::start) (its events could not be observed).
    pub fn dispatch<J: Job>(&self, job: J) -> Result<JobHandle<J::Output>, OrchestratorError> {
        self.shared.dispatch(job, JobOptions::new())
    }

    /// Dispatches a tracked job with options (its bus is always the orchestrator's).
    ///
    /// # Errors
    ///
    /// As [`dispatch`](Self::dispatch).
    pub fn dispatch_with<J: Job>(
        &self,
        job: J,
        options: JobOptions,
    ) -> Result<JobHandle<J::Output>, OrchestratorError> {
        self.shared.dispatch(job, options)
    }

    /// Dispatches a tracked job configured with a [`JobBuilder`] (cache, placeholder, dedup,
    /// ...), made with [`job`](Self::job); it goes through this orchestrator's dispatcher and
    /// bus.
    ///
    /// # Errors
    ///
    /// As [`dispatch`](Self::dispatch).
    pub fn dispatch_job<J: Job>(
        &self,
        builder: JobBuilder<'_, J>,
    ) -> Result<JobHandle<J::Output>, OrchestratorError> {
        self.shared.dispatch_built(builder)
    }

    /// Starts a [`JobBuilder`] on this orchestrator's dispatcher.
    pub fn job<J: Job>(&self, job: J) -> JobBuilder<'_, J> {
        self.shared.dispatcher.job(job)
    }

    /// Returns `true` while job `id` is one of this orchestrator's running jobs.
    pub fn is_job_running(&self, id: JobId) -> bool {
        self.shared.is_tracked(id)
    }

    /// Returns how many of its jobs are running.
    pub fn running_jobs(&self) -> usize {
        self.shared.tracked.with(|t| t.len())
    }

    /// Returns how many events its storm guard has dropped so far (wrapping on overflow).
    pub fn dropped_events(&self) -> usize {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Returns a stream of the events whose payload is a `P`, that ends when the orchestrator
    /// is disposed (or its bus closes).
    pub fn on<P: Send + Sync + 'static>(&self) -> OnEvent<P> {
        OnEvent {
            inner: self.shared.bus.subscribe_to::<P>(),
            stop: self.shared.stop.clone(),
            listener: None,
            ended: self.shared.is_disposed(),
        }
    }

    /// Stops the orchestrator; see the [module docs](self). Idempotent.
    pub fn dispose(&self) {
        if self.shared.disposed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared.pending.with(Option::take);
        self.shared.state.close();
        self.shared.stop.cancel();
    }

    /// Returns `true` once disposed.
    pub fn is_disposed(&self) -> bool {
        self.shared.is_disposed()
    }

    /// Returns `true` once started (and until disposed).
    pub fn is_running(&self) -> bool {
        self.shared.started.load(Ordering::Acquire) && !self.shared.is_disposed()
    }

    /// Returns the orchestrator's name (its type name unless set).
    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// Returns the bus it listens to.
    pub fn bus(&self) -> &SignalBus {
        &self.shared.bus
    }
}

impl<S> Clone for OrchestratorHandle<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S> fmt::Debug for OrchestratorHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestratorHandle")
            .field("name", &self.shared.name)
            .field("disposed", &self.shared.is_disposed())
            .finish_non_exhaustive()
    }
}

/// The event loop: one per started orchestrator.
///
/// It runs until the orchestrator is disposed or its bus closes; dropping every handle does
/// not stop it (its handler may have effects beyond its state).
async fn event_loop<O: Orchestrator>(
    shared: Arc<Shared<O::State>>,
    mut orchestrator: O,
    mut subscription: Subscription,
    mut guard: GuardState,
) {
    let mut stop_listener: Option<EventListener> = None;
    loop {
        let next = core::future::poll_fn(|cx| {
            if shared
                .stop
                .poll_cancelled(&mut stop_listener, cx)
                .is_ready()
            {
                return Poll::Ready(None);
            }
            Pin::new(&mut subscription).poll_next(cx)
        })
        .await;
        let Some(event) = next else {
            return;
        };
        if shared.is_disposed() {
            return;
        }
        handle_event(&shared, &mut orchestrator, &mut guard, &event);
    }
}

fn handle_event<O: Orchestrator>(
    shared: &Shared<O::State>,
    orchestrator: &mut O,
    guard: &mut GuardState,
    event: &Event,
) {
    let origin = match event.correlation_id() {
        Some(id) if shared.is_tracked(id) => Origin::Active,
        _ => Origin::Passive,
    };
    // A job's terminal event is its last: untrack it now (the handler still gets it as
    // active, and sees the job as no longer running). This bookkeeping happens even if the
    // guard keeps the event from the handler.
    let lifecycle = event.downcast_ref::<JobLifecycle>();
    if origin.is_active() && lifecycle.is_some_and(JobLifecycle::is_terminal) {
        if let Some(id) = event.correlation_id() {
            shared.tracked.with(|t| t.remove(&id));
        }
    }
    let kind = lifecycle.map_or(0, JobLifecycle::kind);
    let now = || shared.dispatcher.runtime().now();
    match guard.check(event.payload_type_id(), kind, now) {
        Verdict::Admit => {
            let mut cx = OrchestratorContext { shared };
            if let Err(message) = catch_panic(|| orchestrator.on_event(event, origin, &mut cx)) {
                shared
                    .dispatcher
                    .observers()
                    .each(|o| o.on_handler_panic(shared.name, &message));
            }
        }
        Verdict::Drop { report, limit } => {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            if report {
                let event_type = event.payload_type_name();
                shared
                    .dispatcher
                    .observers()
                    .each(|o| o.on_event_dropped(shared.name, event_type, limit));
            }
        }
    }
}

#[cfg(feature = "std")]
fn catch_panic(f: impl FnOnce()) -> Result<(), String> {
    std::panic::catch_unwind(core::panic::AssertUnwindSafe(f)).map_err(|payload| {
        if let Some(s) = payload.downcast_ref::<&'static str>() {
            String::from(*s)
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            String::from("<non-string panic payload>")
        }
    })
}

#[cfg(not(feature = "std"))]
fn catch_panic(f: impl FnOnce()) -> Result<(), String> {
    f();
    Ok(())
}

/// A stream of one payload type that ends when its orchestrator is disposed; see
/// [`OrchestratorHandle::on`].
#[must_use = "streams do nothing unless polled"]
pub struct OnEvent<P> {
    inner: TypedSubscription<P>,
    stop: CancellationToken,
    listener: Option<EventListener>,
    ended: bool,
}

impl<P: Send + Sync + 'static> Stream for OnEvent<P> {
    type Item = TypedEvent<P>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> Poll<Option<TypedEvent<P>>> {
        let this = &mut *self;
        if this.ended || this.stop.poll_cancelled(&mut this.listener, cx).is_ready() {
            this.ended = true;
            return Poll::Ready(None);
        }
        let next = core::task::ready!(Pin::new(&mut this.inner).poll_next(cx));
        this.ended = next.is_none();
        Poll::Ready(next)
    }
}

impl<P: Send + Sync + 'static> FusedStream for OnEvent<P> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl<P> fmt::Debug for OnEvent<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnEvent")
            .field("inner", &self.inner)
            .field("ended", &self.ended)
            .finish()
    }
}

/// Why an orchestrator operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrchestratorError {
    /// The orchestrator was disposed.
    Disposed,
    /// The orchestrator has not been started, so it could not observe the job's events.
    NotStarted,
    /// [`OrchestratorHandle::start`] was called twice.
    AlreadyStarted,
    /// The runtime refused the orchestrator's event loop.
    Spawn(SpawnErrorKind),
}

impl fmt::Display for OrchestratorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrchestratorError::Disposed => f.write_str("the orchestrator is disposed"),
            OrchestratorError::NotStarted => f.write_str("the orchestrator has not been started"),
            OrchestratorError::AlreadyStarted => f.write_str("the orchestrator is already started"),
            OrchestratorError::Spawn(kind) => write!(f, "the orchestrator could not start: {kind}"),
        }
    }
}

impl core::error::Error for OrchestratorError {}
