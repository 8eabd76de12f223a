//! Orchestrators: state holders that react to events and dispatch jobs.

mod group;
mod guard;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::TypeId;
use core::cell::OnceCell;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use event_listener::{Event as Notify, EventListener};
use futures_core::{FusedStream, Stream};
use hashbrown::HashMap;

use crate::bus::{PublishError, SignalBus, Subscription, TypedEvent, TypedSubscription};
use crate::cancel::CancellationToken;
use crate::cause::Cause;
use crate::dispatch::builder::Sealed;
use crate::dispatch::dispatcher::Dispatcher;
use crate::dispatch::dispatcher::{Route, Tracker, Via};
use crate::event::ambient::{self, Reaction};
use crate::event::{Event, Meta};
use crate::id::JobId;
use crate::lifecycle::JobLifecycle;
use crate::outcome::Rejection;
use crate::runtime::{LocalSpawn, LocalTask, Runtime, SpawnErrorKind, Task};
use crate::sync::{Arc, AtomicU8, Mutex, Ordering, poll_notified};
use crate::trace;
use crate::typemap::TypeMap;
use crate::watch::{StateStream, Watch};

use crate::observer::DroppedEvent;
pub use group::OrchestratorGroup;
use guard::GuardState;
pub use guard::{DEFAULT_MAX_DEPTH, LoopGuard};

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

/// Where an orchestrator is in its life; see [`Orchestrator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OrchestratorStatus {
    /// Built, not started: it handles nothing and refuses dispatches.
    Built,
    /// Started: it handles events and dispatches tracked jobs.
    Running,
    /// Disposed: it handles nothing more; its state stays readable.
    Disposed,
    /// Its bus closed, or its runtime dropped its event loop (the runtime shut down): it
    /// handles nothing more; its state stays readable.
    Stopped,
}

impl OrchestratorStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => OrchestratorStatus::Built,
            1 => OrchestratorStatus::Running,
            2 => OrchestratorStatus::Disposed,
            _ => OrchestratorStatus::Stopped,
        }
    }

    /// Returns `true` once it has ended (disposed or stopped).
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            OrchestratorStatus::Disposed | OrchestratorStatus::Stopped
        )
    }
}

/// The behaviour of an orchestrator: how it reacts to events.
///
/// An [`Orchestrator`] owns a state value and handles every event of its bus in one method,
/// [`on_event`](Orchestrator::on_event), told whether the event is **active** (it belongs to a
/// job this orchestrator dispatched and that has not finished) or **passive** (everything
/// else). Starting one ([`OrchestratorBuilder::start`]) subscribes it to its bus and spawns its
/// event loop on the dispatcher's runtime; the returned [`OrchestratorHandle`] reads the state
/// (synchronously, or as a [`StateStream`]), dispatches tracked jobs, waits for them to be
/// handled, and disposes it.
///
/// An orchestrator need not be `Send`: one that holds an `Rc` (a single-threaded host's
/// orchestrator) starts with [`OrchestratorBuilder::start_local`] on a runtime that runs
/// tasks that are not `Send`. Its state is shared with its handles, so it is `Send + Sync`.
///
/// # Status
///
/// An orchestrator is in one [`OrchestratorStatus`] at a time:
///
/// ```text
/// Built ──start()──▶ Running ──dispose()──────▶ Disposed
///   │                   └──its bus closed────▶ Stopped
///   └──dispose()──────────────────────────────▶ Disposed
/// ```
///
/// Only a running orchestrator handles events and accepts dispatches; a dispatch through a
/// built or ended one is rejected ([`Rejection::NotStarted`](crate::Rejection),
/// [`Rejection::Disposed`](crate::Rejection)).
///
/// # Tracking
///
/// A job dispatched through an orchestrator (any [`Dispatch`](crate::Dispatch) method of its
/// handle or of its handler's context, plain or configured) is tracked *before* it is
/// dispatched, so none of its events can be seen untracked, and it publishes its lifecycle
/// events (all but `Progress`, unless the dispatch turns them on) on the orchestrator's bus so
/// that its terminal event arrives. Every event of the job up to and including that terminal
/// event arrives as active; tracking ends when this orchestrator's loop takes the terminal
/// event (so in its handler, `is_job_running` is already `false`), even if the loop guard
/// keeps the event from the handler. No timer is involved: a late event of the job (a
/// revalidated cache value, say) still arrives as active.
/// [`OrchestratorHandle::handled`] waits until the orchestrator has handled a job's terminal
/// event.
///
/// # Loop protection
///
/// Every orchestrator has a [`LoopGuard`]: it cuts chains of reactions deeper than a limit and
/// drops nothing else; see the guard's docs.
///
/// # Disposal
///
/// [`OrchestratorHandle::dispose`] stops event handling (an event being handled finishes, no
/// further one starts), ends the state streams, forgets its tracked jobs, and refuses state
/// changes and dispatches from then on. Jobs it started keep running unless cancelled. Other
/// subscribers of the bus are unaffected. An orchestrator whose bus closes stops the same way.
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
pub trait Orchestrator: 'static {
    /// The state it owns and publishes.
    type State: Clone + Send + Sync + 'static;

    /// Handles one event of the bus, in publish order.
    ///
    /// Jobs dispatched and events emitted through `cx` carry this event's causal depth plus
    /// one (see [`LoopGuard`]). With `std`, a panic here is caught, reported to the
    /// dispatcher's observers ([`Observer::on_handler_panic`](crate::Observer::on_handler_panic)),
    /// and the orchestrator goes on with the next event.
    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, Self::State>,
    );

    /// Learns that the loop guard kept an event from [`on_event`](Self::on_event): a chain
    /// of reactions was cut, or an opt-in rate limit was exceeded. Does nothing by default.
    ///
    /// The drop is also counted
    /// ([`OrchestratorHandle::dropped_events`]) and reported to the observers. What this
    /// method dispatches or emits is one step deeper than the dropped event, so it is cut too
    /// if it reaches this orchestrator again.
    fn on_dropped(
        &mut self,
        dropped: &DroppedEvent<'_>,
        cx: &mut OrchestratorContext<'_, Self::State>,
    ) {
        let _ = (dropped, cx);
    }

    /// Starts configuring an orchestrator with this behaviour, an initial state and the
    /// dispatcher its jobs go through.
    fn builder<R>(
        self,
        initial: Self::State,
        dispatcher: &Dispatcher<R>,
    ) -> OrchestratorBuilder<Self>
    where
        Self: Sized,
    {
        OrchestratorBuilder {
            orchestrator: self,
            initial,
            dispatcher: dispatcher.erase(),
            bus: None,
            guard: LoopGuard::new(),
            name: core::any::type_name::<Self>(),
        }
    }
}

/// What an event handler can do: read and change the state, dispatch tracked jobs
/// ([`Dispatch`](crate::Dispatch)), emit events. What it dispatches or emits carries the
/// handled event's causal depth plus one.
pub struct OrchestratorContext<'a, S> {
    shared: &'a Shared<S>,
    event: &'a Event,
    cause: OnceCell<Cause>,
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

    /// Publishes `payload` on this orchestrator's bus, one causal step deeper than the event
    /// being handled; returns how many subscriptions it was queued for.
    ///
    /// # Errors
    ///
    /// [`PublishError`] with the event if the bus is closed.
    pub fn emit<P: Send + Sync + 'static>(&self, payload: P) -> Result<usize, PublishError> {
        self.emit_to(&self.shared.bus, payload)
    }

    /// Publishes `payload` on `bus`, one causal step deeper than the event being handled.
    ///
    /// # Errors
    ///
    /// [`PublishError`] with the event if `bus` is closed.
    pub fn emit_to<P: Send + Sync + 'static>(
        &self,
        bus: &SignalBus,
        payload: P,
    ) -> Result<usize, PublishError> {
        let meta = Meta {
            timestamp: self.shared.dispatcher.runtime().now(),
            cause: self.cause().clone(),
            ..Meta::default()
        };
        bus.publish(Event::build(payload, meta))
    }

    /// Returns `true` while job `id` is one of this orchestrator's running jobs.
    pub fn is_job_running(&self, id: JobId) -> bool {
        self.shared.is_tracked(id)
    }

    fn cause(&self) -> &Cause {
        self.cause
            .get_or_init(|| Reaction::cause_of(self.shared.name, self.event))
    }
}

impl<S: Clone + Send + Sync + 'static> Sealed for OrchestratorContext<'_, S> {
    fn route(&self) -> Route<'_> {
        Route {
            via: Via::Borrowed(self.shared.dispatcher.inner()),
            tracker: Some(self.shared),
            cause: self.cause().clone(),
            parent: None,
        }
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
    guard: LoopGuard,
    name: &'static str,
}

impl<O: Orchestrator> OrchestratorBuilder<O> {
    /// Listens to and dispatches on `bus` instead of the dispatcher's bus.
    pub fn bus(mut self, bus: SignalBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Sets the loop guard (default: [`LoopGuard::new`], chains deeper than
    /// [`DEFAULT_MAX_DEPTH`] are cut, nothing else is dropped).
    pub fn guard(mut self, guard: LoopGuard) -> Self {
        self.guard = guard;
        self
    }

    /// Names the orchestrator in observer reports and rejections (default: its type name).
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// Builds the orchestrator without starting it (see [`OrchestratorHandle::start`]).
    pub fn build(self) -> OrchestratorHandle<O::State>
    where
        O: Send,
    {
        let (handle, orchestrator, guard) = self.into_parts();
        let loop_shared = handle.shared.clone();
        let start: StartLoop = Box::new(move |subscription| {
            Task::new(event_loop(loop_shared, orchestrator, subscription, guard))
        });
        handle.shared.pending.with(|p| *p = Some(start));
        handle
    }

    /// Builds and starts the orchestrator.
    ///
    /// # Errors
    ///
    /// [`OrchestratorError::Spawn`] if the runtime refused the event loop.
    pub fn start(self) -> Result<OrchestratorHandle<O::State>, OrchestratorError>
    where
        O: Send,
    {
        let handle = self.build();
        handle.start()?;
        Ok(handle)
    }

    /// Builds and starts an orchestrator that need not be `Send` (it may hold an `Rc`), on
    /// the current thread: its event loop is a task that is not `Send`, spawned with
    /// [`LocalSpawn::spawn_local`] on the dispatcher's runtime. Its handle, state and events
    /// are those of any orchestrator; only the loop stays on this thread.
    ///
    /// # Errors
    ///
    /// [`OrchestratorError::Spawn`] if the runtime refused the event loop, with
    /// [`SpawnErrorKind::NotLocal`](crate::runtime::SpawnErrorKind::NotLocal) if it cannot run
    /// tasks that are not `Send` (the orchestrator is then disposed).
    ///
    /// ```
    /// use orchestrator_core::testing::VirtualRuntime;
    /// use orchestrator_core::{Dispatcher, Event, Orchestrator, OrchestratorContext, Origin};
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    ///
    /// struct Clicked;
    /// /// Counts clicks in an `Rc<Cell<..>>` it shares with the page: not `Send`.
    /// struct Clicks(Rc<Cell<u32>>);
    /// impl Orchestrator for Clicks {
    ///     type State = u32;
    ///     fn on_event(&mut self, event: &Event, _: Origin, cx: &mut OrchestratorContext<'_, u32>) {
    ///         if event.is::<Clicked>() {
    ///             self.0.set(self.0.get() + 1);
    ///             cx.update(|n| *n += 1);
    ///         }
    ///     }
    /// }
    ///
    /// let rt = VirtualRuntime::new();
    /// let dispatcher = Dispatcher::new(rt.clone());
    /// let seen = Rc::new(Cell::new(0));
    /// let clicks = Clicks(seen.clone()).builder(0, &dispatcher).start_local().unwrap();
    /// dispatcher.bus().emit(Clicked).unwrap();
    /// rt.run_until_stalled();
    /// assert_eq!((clicks.state(), seen.get()), (1, 1));
    ///
    /// // A runtime that runs only `Send` tasks refuses it: an error, not a panic.
    /// # use orchestrator_core::runtime::{Instant, Sleep, Spawn, SpawnError, Task, Timer};
    /// # use std::time::Duration;
    /// # struct SendOnly(VirtualRuntime);
    /// # impl Spawn for SendOnly {
    /// #     fn spawn(&self, task: Task) -> Result<(), SpawnError> { self.0.spawn(task) }
    /// # }
    /// # impl Timer for SendOnly {
    /// #     fn sleep(&self, d: Duration) -> Sleep { self.0.sleep(d) }
    /// #     fn now(&self) -> Instant { self.0.now() }
    /// # }
    /// let threaded = Dispatcher::new(SendOnly(rt.clone()));
    /// let refused = Clicks(seen.clone()).builder(0, &threaded).start_local().unwrap_err();
    /// assert!(matches!(refused, orchestrator_core::OrchestratorError::Spawn(k) if k.is_not_local()));
    /// ```
    pub fn start_local(self) -> Result<OrchestratorHandle<O::State>, OrchestratorError> {
        let (handle, orchestrator, guard) = self.into_parts();
        let shared = &handle.shared;
        shared
            .tracked
            .with(|t| shared.set_status(t, OrchestratorStatus::Running));
        // Subscribed before anything can be dispatched through it.
        let subscription = shared.bus.subscribe();
        let task = LocalTask::new(event_loop(
            shared.clone(),
            orchestrator,
            subscription,
            guard,
        ));
        let runtime: &dyn Runtime = &**shared.dispatcher.runtime();
        match runtime.spawn_local(task) {
            Ok(()) => Ok(handle),
            Err(refused) => {
                handle.dispose();
                Err(OrchestratorError::Spawn(refused.kind()))
            }
        }
    }

    /// The handle of a built, not started orchestrator, and what its loop will own.
    fn into_parts(self) -> (OrchestratorHandle<O::State>, O, GuardState) {
        let bus = self.bus.unwrap_or_else(|| self.dispatcher.bus().clone());
        let shared = Arc::new(Shared {
            name: self.name,
            state: Arc::new(Watch::new(self.initial)),
            tracked: Mutex::new(Tracked {
                status: OrchestratorStatus::Built,
                jobs: HashMap::new(),
            }),
            status: AtomicU8::new(OrchestratorStatus::Built as u8),
            stop: CancellationToken::new(),
            drops: Mutex::new(Drops::default()),
            handled: Notify::new(),
            dispatcher: self.dispatcher,
            bus,
            pending: Mutex::new(None),
        });
        let handle = OrchestratorHandle {
            _owner: Arc::new(Owner(shared.clone() as Arc<dyn Dispose>)),
            shared,
        };
        (handle, self.orchestrator, GuardState::new(self.guard))
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

/// The jobs an orchestrator tracks, and its status (changed under the same lock, so a job is
/// never tracked by an orchestrator that has ended).
struct Tracked {
    status: OrchestratorStatus,
    /// `true` while the job runs; `false` while its terminal event is being handled.
    jobs: HashMap<JobId, bool>,
}

/// Drop counts by payload type.
#[derive(Default)]
struct Drops {
    total: u64,
    by_type: TypeMap<(&'static str, u64)>,
}

/// What the handle and the event loop share.
struct Shared<S> {
    name: &'static str,
    dispatcher: Dispatcher,
    bus: SignalBus,
    state: Arc<Watch<S>>,
    tracked: Mutex<Tracked>,
    /// A lock-free copy of `tracked.status`, for reads.
    status: AtomicU8,
    /// Cancelled when it ends: wakes the event loop and ends `on` subscriptions.
    stop: CancellationToken,
    drops: Mutex<Drops>,
    /// Notified after a tracked job's terminal event was handled, and when it ends.
    handled: Notify,
    /// The event loop, until it is started.
    pending: Mutex<Option<StartLoop>>,
}

impl<S: Clone> Shared<S> {
    fn status(&self) -> OrchestratorStatus {
        OrchestratorStatus::from_u8(self.status.load(Ordering::Acquire))
    }

    fn set_status(&self, tracked: &mut Tracked, status: OrchestratorStatus) {
        tracked.status = status;
        self.status.store(status as u8, Ordering::Release);
    }

    fn is_tracked(&self, id: JobId) -> bool {
        self.tracked
            .with(|t| t.jobs.get(&id).copied().unwrap_or(false))
    }

    /// Ends the orchestrator (disposed, or stopped by its bus); returns `false` if it had
    /// already ended.
    fn end(&self, status: OrchestratorStatus) -> bool {
        let ended = self.tracked.with(|t| {
            if t.status.is_ended() {
                return false;
            }
            self.set_status(t, status);
            t.jobs.clear();
            true
        });
        if ended {
            self.pending.with(Option::take);
            self.state.close();
            self.stop.cancel();
            self.handled.notify(usize::MAX);
        }
        ended
    }

    fn poll_handled_id(
        &self,
        id: JobId,
        listener: &mut Option<EventListener>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), OrchestratorError>> {
        poll_notified(&self.handled, listener, cx, || {
            self.tracked.with(|t| {
                if t.status.is_ended() {
                    Some(Err(OrchestratorError::Disposed))
                } else if t.jobs.contains_key(&id) {
                    None
                } else {
                    Some(Ok(()))
                }
            })
        })
    }
}

/// The type-erased part of an orchestrator that [`Handled`] waits on.
trait HandledSource: Send + Sync {
    fn poll_handled(
        &self,
        id: JobId,
        listener: &mut Option<EventListener>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), OrchestratorError>>;
}

impl<S: Clone + Send + Sync> HandledSource for Shared<S> {
    fn poll_handled(
        &self,
        id: JobId,
        listener: &mut Option<EventListener>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), OrchestratorError>> {
        self.poll_handled_id(id, listener, cx)
    }
}

impl<S: Clone + Send + Sync> Tracker for Shared<S> {
    fn bus(&self) -> &SignalBus {
        &self.bus
    }

    fn track(&self, id: JobId) -> Result<(), Rejection> {
        self.tracked.with(|t| match t.status {
            OrchestratorStatus::Running => {
                t.jobs.insert(id, true);
                Ok(())
            }
            OrchestratorStatus::Built => Err(Rejection::NotStarted {
                orchestrator: self.name,
            }),
            _ => Err(Rejection::Disposed {
                orchestrator: self.name,
            }),
        })
    }
}

/// A handle to a built orchestrator. Cheap to clone; clones control the same orchestrator.
///
/// It dispatches tracked jobs through [`Dispatch`](crate::Dispatch): their events arrive as
/// [`Origin::Active`] until this orchestrator has handled their terminal event.
///
/// The handles own the orchestrator: dropping the last one disposes it (its event loop ends
/// and frees what it holds; its running jobs go on). Keep a handle (or put it in an
/// [`OrchestratorGroup`]) for as long as the orchestrator should react to events.
#[must_use = "dropping the last handle disposes the orchestrator"]
pub struct OrchestratorHandle<S> {
    shared: Arc<Shared<S>>,
    /// Shared by every clone of the handle; disposes the orchestrator when the last goes.
    _owner: Arc<Owner>,
}

/// Disposes its orchestrator when dropped (with the last handle).
struct Owner(Arc<dyn Dispose>);

/// The type-erased disposal of an orchestrator.
trait Dispose: Send + Sync {
    fn dispose(&self);
}

impl<S: Clone + Send + Sync> Dispose for Shared<S> {
    fn dispose(&self) {
        self.end(OrchestratorStatus::Disposed);
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.dispose();
    }
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
        let shared = &self.shared;
        let start = shared.tracked.with(|t| match t.status {
            OrchestratorStatus::Built => {
                let start = shared.pending.with(Option::take);
                if start.is_some() {
                    shared.set_status(t, OrchestratorStatus::Running);
                }
                start.ok_or(OrchestratorError::AlreadyStarted)
            }
            OrchestratorStatus::Running => Err(OrchestratorError::AlreadyStarted),
            _ => Err(OrchestratorError::Disposed),
        })?;
        // Subscribed before anything can be dispatched through it.
        let subscription = shared.bus.subscribe();
        let task = start(subscription);
        shared.dispatcher.runtime().spawn(task).map_err(|refused| {
            self.dispose();
            OrchestratorError::Spawn(refused.kind())
        })
    }

    /// Returns a copy of the current state (after disposal, the last state stays readable).
    pub fn state(&self) -> S {
        self.shared.state.get()
    }

    /// Returns a stream of states: the current one first, then each change, until the
    /// orchestrator ends. [`StateStream::wait_for`] waits for a state that satisfies a
    /// predicate.
    pub fn states(&self) -> StateStream<S> {
        StateStream::new(self.shared.state.clone())
    }

    /// Returns `true` while job `id` is one of this orchestrator's running jobs.
    pub fn is_job_running(&self, id: JobId) -> bool {
        self.shared.is_tracked(id)
    }

    /// Returns how many of its jobs are running (tracked, terminal event not handled yet).
    pub fn running_jobs(&self) -> usize {
        self.shared.tracked.with(|t| t.jobs.len())
    }

    /// Returns a future that completes once this orchestrator has handled job `id`'s
    /// terminal event (its handler has returned, or its guard dropped the event), at once if
    /// the job is not one of its running jobs.
    ///
    /// # Errors
    ///
    /// The future yields [`OrchestratorError::Disposed`] if the orchestrator ends (disposed,
    /// or its bus closed) first.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future loses nothing; a new one sees the same state.
    pub fn handled(&self, id: JobId) -> Handled {
        Handled {
            source: self.shared.clone(),
            id,
            listener: None,
        }
    }

    /// Returns how many events its loop guard has dropped so far.
    pub fn dropped_events(&self) -> u64 {
        self.shared.drops.with(|d| d.total)
    }

    /// Returns how many events whose payload is a `P` its loop guard has dropped so far.
    pub fn dropped_events_of<P: 'static>(&self) -> u64 {
        self.shared.drops.with(|d| {
            d.by_type
                .get(&TypeId::of::<P>())
                .map_or(0, |(_, count)| *count)
        })
    }

    /// Returns the dropped events by payload type name (in no particular order).
    pub fn dropped_event_types(&self) -> Vec<(&'static str, u64)> {
        self.shared
            .drops
            .with(|d| d.by_type.values().copied().collect())
    }

    /// Returns a stream of the events whose payload is a `P`, that ends when the orchestrator
    /// ends.
    pub fn on<P: Send + Sync + 'static>(&self) -> OnEvent<P> {
        OnEvent {
            inner: self.shared.bus.subscribe_to::<P>(),
            stop: self.shared.stop.clone(),
            listener: None,
            ended: self.shared.status().is_ended(),
        }
    }

    /// Disposes the orchestrator; see [`Orchestrator`]. Idempotent.
    pub fn dispose(&self) {
        self.shared.end(OrchestratorStatus::Disposed);
    }

    /// Returns where the orchestrator is in its life.
    pub fn status(&self) -> OrchestratorStatus {
        self.shared.status()
    }

    /// Returns `true` once disposed.
    pub fn is_disposed(&self) -> bool {
        self.shared.status() == OrchestratorStatus::Disposed
    }

    /// Returns `true` once started and until it ends.
    pub fn is_running(&self) -> bool {
        self.shared.status() == OrchestratorStatus::Running
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

impl<S: Clone + Send + Sync + 'static> Sealed for OrchestratorHandle<S> {
    fn route(&self) -> Route<'_> {
        Route {
            via: Via::Borrowed(self.shared.dispatcher.inner()),
            tracker: Some(&*self.shared),
            cause: Cause::ambient(),
            parent: None,
        }
    }
}

impl<S> Clone for OrchestratorHandle<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _owner: self._owner.clone(),
        }
    }
}

impl<S> fmt::Debug for OrchestratorHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestratorHandle")
            .field("name", &self.shared.name)
            .field(
                "status",
                &OrchestratorStatus::from_u8(self.shared.status.load(Ordering::Acquire)),
            )
            .finish_non_exhaustive()
    }
}

/// The future returned by [`OrchestratorHandle::handled`].
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct Handled {
    source: Arc<dyn HandledSource>,
    id: JobId,
    listener: Option<EventListener>,
}

impl Future for Handled {
    type Output = Result<(), OrchestratorError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.source.poll_handled(this.id, &mut this.listener, cx)
    }
}

impl fmt::Debug for Handled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handled").field("id", &self.id).finish()
    }
}

/// The event loop: one per started orchestrator.
///
/// It runs until the orchestrator is disposed (explicitly, or by dropping its last handle) or
/// its bus closes.
async fn event_loop<O: Orchestrator>(
    shared: Arc<Shared<O::State>>,
    mut orchestrator: O,
    mut subscription: Subscription,
    mut guard: GuardState,
) {
    /// Ends the orchestrator when the loop ends, however it ends: also when its runtime drops
    /// the loop's task unfinished (the runtime shut down), so its status is never `Running`
    /// with no loop behind it.
    struct EndOnDrop<'a, S: Clone>(&'a Shared<S>);
    impl<S: Clone> Drop for EndOnDrop<'_, S> {
        fn drop(&mut self) {
            self.0.end(OrchestratorStatus::Stopped);
        }
    }
    let _end = EndOnDrop(&*shared);
    let mut stop_listener: Option<EventListener> = None;
    'events: loop {
        let next = core::future::poll_fn(|cx| {
            // A stop is seen before the next event is taken. Only when there is no event to
            // take does the loop register to be woken by one (the check is an atomic load; the
            // registration takes the token's listener lock).
            if shared.stop.is_cancelled() {
                return Poll::Ready(None);
            }
            if let Poll::Ready(next) = Pin::new(&mut subscription).poll_next(cx) {
                return Poll::Ready(next);
            }
            match shared.stop.poll_cancelled(&mut stop_listener, cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let Some(mut event) = next else {
            break;
        };
        if shared.status().is_ended() {
            break;
        }
        // The events already there are handled under one entry of the ambient cause (only its
        // event changes), with the same checks as the outer loop before each one.
        let mut ambient = ambient::enter(Reaction::new(shared.name, &event));
        loop {
            handle_event(&shared, &mut orchestrator, &mut guard, &event);
            if shared.stop.is_cancelled() {
                break;
            }
            let Some(next) = subscription.try_next() else {
                break;
            };
            if shared.status().is_ended() {
                break 'events;
            }
            event = next;
            ambient.switch(Reaction::new(shared.name, &event));
        }
    }
}

fn handle_event<O: Orchestrator>(
    shared: &Shared<O::State>,
    orchestrator: &mut O,
    guard: &mut GuardState,
    event: &Event,
) {
    let id = event.correlation_id();
    let lifecycle = event.downcast_ref::<JobLifecycle>();
    let terminal = lifecycle.is_some_and(JobLifecycle::is_terminal);
    // A job's terminal event is its last: its job stops running now (the handler still gets
    // it as active, and sees the job as no longer running), and is forgotten once handled.
    // This bookkeeping happens even if the guard keeps the event from the handler.
    let origin = match id {
        Some(id) => shared.tracked.with(|t| match t.jobs.get_mut(&id) {
            Some(running) if *running => {
                *running = !terminal;
                Origin::Active
            }
            _ => Origin::Passive,
        }),
        None => Origin::Passive,
    };
    let kind = lifecycle.map_or(0, JobLifecycle::kind);
    let now = || shared.dispatcher.runtime().now();
    let verdict = guard.check(event.causal_depth(), || event.payload_type_id(), kind, now);
    let mut cx = OrchestratorContext {
        shared,
        event,
        cause: OnceCell::new(),
    };
    let outcome = match verdict {
        Ok(()) => crate::panic::catch(|| orchestrator.on_event(event, origin, &mut cx)),
        Err(reason) => {
            let dropped = DroppedEvent {
                orchestrator: shared.name,
                event,
                reason,
            };
            shared.drops.with(|d| {
                d.total = d.total.saturating_add(1);
                let entry = d
                    .by_type
                    .entry(event.payload_type_id())
                    .or_insert((event.payload_type_name(), 0));
                entry.1 = entry.1.saturating_add(1);
            });
            trace::dropped(shared.name, event.payload_type_name(), event.causal_depth());
            shared
                .dispatcher
                .observers()
                .each(|o| o.on_event_dropped(&dropped));
            crate::panic::catch(|| orchestrator.on_dropped(&dropped, &mut cx))
        }
    };
    if let Err(message) = outcome {
        shared
            .dispatcher
            .observers()
            .each(|o| o.on_handler_panic(shared.name, &message));
    }
    if origin.is_active() && terminal {
        if let Some(id) = id {
            shared.tracked.with(|t| t.jobs.remove(&id));
            shared.handled.notify(usize::MAX);
        }
    }
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
