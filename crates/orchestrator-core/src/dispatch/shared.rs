//! The per-job engine behind a handle, a job's task and its contexts: [`JobShared`].
//!
//! # The per-job engine
//!
//! Each dispatch allocates one [`JobShared`], shared by the handle, the job's task and every
//! [`JobContext`](crate::JobContext). It holds two state machines:
//!
//! ```text
//! handle slot:  Pending ──resolve()/complete()──▶ Ready ──handle polled──▶ Taken
//! job:          running ──complete()──▶ ended
//! ```
//!
//! (`Ready` is `Succeeded` or `Failed` in the code: an error waits boxed.) Usually both move
//! together in `complete`. A cache hit being revalidated resolves the slot first (`resolve`,
//! the cached value) and ends the job later (`complete`, the fresh result).
//!
//! Invariants:
//!
//! 1. The handle's outcome is written at most once (`resolve` and `complete` only fill a
//!    `Pending` slot). The job ends at most once: `complete` on an ended job returns `false`
//!    and changes nothing. Only the job's pipeline (or its drop guard) ends it.
//! 2. A cancel request is recorded only while the job runs; the pipeline turns it into the
//!    outcome after dropping the work.
//! 3. Events and progress are accepted only while the job runs; the terminal lifecycle event
//!    is published in the critical section that ends it, so it is the job's last event.
//! 4. Completion wakes the handle and every progress subscriber, after the lock is released;
//!    `on_done` watchers (dedup followers, the breaker) see the final outcome outside the lock.
//! 5. The state is split: what every dispatch reads is inline (hot); what only some
//!    dispatches set (parent, bus, token, metadata, the job a dedup join follows) is one box
//!    made at dispatch only when needed (`Extra`); what only some jobs use while they run
//!    (progress, completion watchers, sub-jobs) is one box made under the lock on first use
//!    (`Cold`). A plain dispatch allocates neither.
//! 6. Progress is a `Watch` made on the first report or subscription; it is closed when the
//!    job ends, after which its streams yield the last report they have not seen, then end.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::task::{Context, Poll, Waker};

use crate::bus::{BusRef, SignalBus};
use crate::cache::CacheProvider;
use crate::cancel::CancellationToken;
use crate::cause::Cause;
use crate::event::{Event, Meta};
use crate::id::JobId;
use crate::job::{JobType, MetadataEntry};
use crate::lifecycle::JobLifecycle;
use crate::observer::JobInfo;
use crate::outcome::{DataSource, JobError, Success};
use crate::progress::Progress;
use crate::runtime::Runtime;
use crate::sync::{Arc, AtomicBool, Mutex, Ordering, Weak};
use crate::watch::Watch;

use super::control::{EmitError, JobControl, ProgressWatch};
use super::env::JobEnv;
use super::journal::Receipt;
use super::options::{JobOptions, Lifecycle};
use super::registry::{Cancel, Reach, SHUTDOWN_REASON};

/// A part of the state made only when needed (`None` for a plain dispatch). Dropping it
/// checks for `None` inline and drops a present part out of line, so that a job without it
/// pays no call to drop it.
struct OnDemand<P>(ManuallyDrop<Option<Box<P>>>);

impl<P> OnDemand<P> {
    fn new(part: Option<Box<P>>) -> Self {
        Self(ManuallyDrop::new(part))
    }
}

impl<P> Deref for OnDemand<P> {
    type Target = Option<Box<P>>;

    fn deref(&self) -> &Option<Box<P>> {
        &self.0
    }
}

impl<P> DerefMut for OnDemand<P> {
    fn deref_mut(&mut self) -> &mut Option<Box<P>> {
        &mut self.0
    }
}

impl<P> Drop for OnDemand<P> {
    #[inline]
    fn drop(&mut self) {
        if self.0.is_some() {
            drop_part(core::mem::take(&mut *self.0));
        }
    }
}

#[cold]
#[inline(never)]
fn drop_part<P>(part: Option<Box<P>>) {
    drop(part);
}

/// The outcome slot: pending, then ready, then taken by the handle.
///
/// The slot is about the size of the output, so that the per-job state stays small:
///
/// - the handle's waker lives in the pending slot (it is needed only until the outcome is
///   there);
/// - a ready error is boxed (errors are the rarer outcome, and `JobError` is 32 bytes);
/// - a success's [`DataSource`] waits beside the slot (`State::source`), so that an output
///   with a niche (a `String`, a `Vec`) leaves the slot its own size.
///
/// So for an output of up to 16 bytes, or a `String` or a `Vec`, the slot is 24 bytes and the
/// whole per-job state, with its `Arc`'s counts, is a 120-byte allocation: small enough for the
/// allocator's fastest bins (glibc's fastbins stop at 120 bytes requested), which matters once
/// many jobs are in flight and its per-thread cache overflows.
enum Slot<T> {
    /// No outcome yet; the waker of the handle's last poll that found it so.
    Pending(Option<Waker>),
    /// A success's value (its source is `State::source`).
    Succeeded(T),
    Failed(Box<JobError>),
    Taken,
}

impl<T> Slot<T> {
    fn is_pending(&self) -> bool {
        matches!(self, Slot::Pending(_))
    }
}

/// Called with the job's final outcome (dedup followers, dedup bookkeeping, the breaker).
pub(crate) type OnDone<T> = Box<dyn FnOnce(&Result<Success<T>, JobError>) + Send>;

struct State<T> {
    slot: Slot<T>,
    /// Where a `Succeeded` slot's value came from.
    source: DataSource,
    /// The job is running: it accepts events and progress, and has not published its terminal
    /// event. The handle's outcome may be ready earlier (a cache hit being revalidated).
    running: bool,
    /// The job's slot among its dispatcher's reachable jobs once its task has waited
    /// ([`UNREACHABLE`] until then).
    reachable: u32,
    task_waker: Option<Waker>,
    cold: OnDemand<Cold<T>>,
}

/// `State::reachable` of a job without a slot.
const UNREACHABLE: u32 = u32::MAX;

/// What only some jobs use while they run, made on first use.
struct Cold<T> {
    /// The first cancel request, with its reason (see `JobShared::cancel_flag`).
    cancel_request: Option<Option<Cow<'static, str>>>,
    on_done: Vec<OnDone<T>>,
    /// Sub-jobs dispatched through this job's contexts: cancelled with it.
    children: Vec<Weak<dyn JobControl>>,
    progress: Option<Arc<ProgressWatch>>,
    /// A journaled dispatch's receipt (see `Journal`).
    receipt: Option<Arc<dyn Receipt>>,
}

impl<T> State<T> {
    /// Takes the ready outcome (the slot is then taken: later polls stay pending), or
    /// registers `waker` to be woken when it is ready.
    #[inline]
    fn poll(&mut self, waker: &Waker) -> Poll<Result<Success<T>, JobError>> {
        if let Slot::Pending(registered) = &mut self.slot {
            match registered {
                Some(w) if w.will_wake(waker) => {}
                _ => *registered = Some(waker.clone()),
            }
            return Poll::Pending;
        }
        match core::mem::replace(&mut self.slot, Slot::Taken) {
            Slot::Succeeded(value) => Poll::Ready(Ok(Success {
                value,
                data_source: self.source,
            })),
            Slot::Failed(error) => Poll::Ready(Err(*error)),
            Slot::Pending(_) | Slot::Taken => Poll::Pending,
        }
    }

    /// A running job's state: nothing yet.
    #[inline]
    fn running() -> Self {
        State {
            slot: Slot::Pending(None),
            source: DataSource::Fresh,
            running: true,
            reachable: UNREACHABLE,
            task_waker: None,
            cold: OnDemand::new(None),
        }
    }

    /// Fills a pending slot with `outcome` and returns the handle's waker to wake; a slot
    /// that is not pending keeps its content and gives `outcome` back.
    #[inline]
    fn fill(
        &mut self,
        outcome: Result<Success<T>, JobError>,
    ) -> Result<Option<Waker>, Result<Success<T>, JobError>> {
        let Slot::Pending(waker) = &mut self.slot else {
            return Err(outcome);
        };
        let waker = waker.take();
        self.slot = match outcome {
            Ok(success) => {
                self.source = success.data_source;
                Slot::Succeeded(success.value)
            }
            Err(error) => Slot::Failed(Box::new(error)),
        };
        Ok(waker)
    }

    fn cancel_request(&self) -> Option<&Option<Cow<'static, str>>> {
        self.cold.as_ref()?.cancel_request.as_ref()
    }

    /// Gives back the job's slot, if it has one.
    fn take_reachable(&mut self) -> Option<u32> {
        let slot = core::mem::replace(&mut self.reachable, UNREACHABLE);
        (slot != UNREACHABLE).then_some(slot)
    }

    fn cold(&mut self) -> &mut Cold<T> {
        self.cold.get_or_insert_with(|| {
            Box::new(Cold {
                cancel_request: None,
                on_done: Vec::new(),
                children: Vec::new(),
                progress: None,
                receipt: None,
            })
        })
    }
}

/// What only some dispatches set, fixed at dispatch.
#[derive(Default)]
struct Extra {
    /// The job whose context dispatched this one (sub-jobs).
    parent_id: Option<JobId>,
    /// Why the job exists, when it is not the root cause (a causal depth above zero).
    cause: Cause,
    /// The bus of this dispatch, when it is not the dispatcher's.
    bus: Option<BusRef>,
    token: Option<CancellationToken>,
    metadata: Vec<MetadataEntry>,
    /// When the dispatch's total timeout expires, on the runtime's clock.
    deadline: Option<crate::runtime::Instant>,
    /// For a deduplicated dispatch that joined another: the job it follows (progress comes
    /// from there); it has no task of its own.
    leader: Option<Arc<dyn JobControl>>,
}

/// The engine shared by a job's handle, task and contexts.
pub(crate) struct JobShared<T> {
    pub(crate) id: JobId,
    /// The job's type (a function: 8 bytes instead of 32; read only for events and hooks).
    job_type: fn() -> JobType,
    env: Arc<JobEnv>,
    /// Counted in the dispatcher's jobs in flight until it ends (not a dedup follower nor a
    /// dispatch rejected before it was counted).
    counted: bool,
    /// Lifecycle events on (all but `Progress`).
    lifecycle: bool,
    /// `Progress` lifecycle events on too.
    progress_events: bool,
    /// Mirrors `cancel_request.is_some()`, so the pipeline can skip the lock when it is unset.
    cancel_flag: AtomicBool,
    extra: OnDemand<Extra>,
    state: Mutex<State<T>>,
}

impl<T> JobShared<T> {
    pub(crate) fn new(
        id: JobId,
        job_type: fn() -> JobType,
        env: Arc<JobEnv>,
        options: &mut JobOptions,
        cause: Cause,
        parent_id: Option<JobId>,
    ) -> Self {
        let extra = if options.is_default() && parent_id.is_none() && cause.is_root() {
            None
        } else {
            let extra = Extra {
                parent_id,
                cause,
                bus: options.bus().map(SignalBus::publisher),
                token: options.cancellation().cloned(),
                metadata: options.take_metadata(),
                deadline: options
                    .timeout()
                    .map(|budget| env.runtime.now().saturating_add(budget)),
                leader: None,
            };
            let plain = extra.parent_id.is_none()
                && extra.cause.is_root()
                && extra.bus.is_none()
                && extra.token.is_none()
                && extra.metadata.is_empty()
                && extra.deadline.is_none();
            (!plain).then(|| Box::new(extra))
        };
        let mode = options.lifecycle_mode().unwrap_or(if env.lifecycle {
            Lifecycle::All
        } else {
            Lifecycle::Off
        });
        Self::with_parts(
            id,
            job_type,
            env,
            (mode != Lifecycle::Off, mode == Lifecycle::All),
            extra,
        )
    }

    /// The state of a dispatch with default options outside any job: nothing optional, so
    /// no `Extra` box unless the cause is not the root one.
    #[inline]
    pub(crate) fn plain(
        id: JobId,
        job_type: fn() -> JobType,
        env: Arc<JobEnv>,
        cause: Cause,
    ) -> Self {
        let extra = (!cause.is_root()).then(|| {
            Box::new(Extra {
                cause,
                ..Extra::default()
            })
        });
        let lifecycle = env.lifecycle;
        Self::with_parts(id, job_type, env, (lifecycle, lifecycle), extra)
    }

    /// A running job, not counted in flight yet, with its lifecycle events (all but
    /// progress, and progress) on or off.
    #[inline]
    fn with_parts(
        id: JobId,
        job_type: fn() -> JobType,
        env: Arc<JobEnv>,
        (lifecycle, progress_events): (bool, bool),
        extra: Option<Box<Extra>>,
    ) -> Self {
        Self {
            id,
            job_type,
            counted: false,
            lifecycle,
            progress_events,
            env,
            cancel_flag: AtomicBool::new(false),
            extra: OnDemand::new(extra),
            state: Mutex::new(State::running()),
        }
    }

    /// Returns what the job's dispatcher gives it (runtime, observers).
    pub(crate) fn env(&self) -> &JobEnv {
        &self.env
    }

    /// Returns the hook target for observers.
    pub(crate) fn info(&self) -> JobInfo {
        JobInfo {
            id: self.id,
            job_type: (self.job_type)(),
        }
    }

    /// Builds an event of this job, stamped with the runtime's clock.
    pub(crate) fn event<P: Send + Sync + 'static>(
        &self,
        payload: P,
        source: Option<DataSource>,
    ) -> Event {
        Event::build(
            payload,
            Meta {
                data_source: source,
                ..self.job_meta()
            },
        )
    }

    /// The envelope of an event of this job, stamped now (no data source).
    pub(crate) fn job_meta(&self) -> Meta {
        Meta {
            correlation_id: Some(self.id),
            parent_id: self.parent_id(),
            timestamp: self.env.runtime.now(),
            job_type: Some((self.job_type)()),
            cause: self.cause().clone(),
            ..Meta::default()
        }
    }

    /// Publishes on `bus` unless the dispatch chose a bus itself (a sub-job follows its
    /// parent's bus).
    pub(crate) fn inherit_bus(&mut self, bus: Option<BusRef>) {
        let Some(bus) = bus else {
            return;
        };
        let extra = self.extra.get_or_insert_with(Box::default);
        if extra.bus.is_none() {
            extra.bus = Some(bus);
        }
    }

    fn bus_ref(&self) -> Option<&BusRef> {
        self.extra.as_ref()?.bus.as_ref()
    }

    fn leader(&self) -> Option<&Arc<dyn JobControl>> {
        self.extra.as_ref()?.leader.as_ref()
    }

    /// Returns the dispatch's metadata entries.
    pub(crate) fn metadata_entries(&self) -> &[MetadataEntry] {
        self.extra.as_ref().map_or(&[], |extra| &extra.metadata)
    }

    /// Keeps a journaled dispatch's receipt for [`JobHandle::stored`](crate::JobHandle::stored).
    pub(crate) fn set_receipt(&self, receipt: Arc<dyn Receipt>) {
        self.state.with(|s| s.cold().receipt = Some(receipt));
    }

    /// Returns a journaled dispatch's receipt.
    pub(crate) fn receipt(&self) -> Option<Arc<dyn Receipt>> {
        self.state.with(|s| s.cold.as_ref()?.receipt.clone())
    }

    /// Returns when the dispatch's total timeout expires, if it has one.
    pub(crate) fn deadline(&self) -> Option<crate::runtime::Instant> {
        self.extra.as_ref()?.deadline
    }

    pub(crate) fn token(&self) -> Option<&CancellationToken> {
        self.extra.as_ref()?.token.as_ref()
    }

    fn parent_id(&self) -> Option<JobId> {
        self.extra.as_ref()?.parent_id
    }

    /// Why the job exists (its causal depth), passed on to everything it produces.
    fn cause(&self) -> &Cause {
        static ROOT: Cause = Cause::ROOT;
        self.extra.as_ref().map_or(&ROOT, |extra| &extra.cause)
    }

    /// Returns the job's progress watch, made (closed, if the job has ended) on first use.
    fn own_progress(&self) -> Arc<ProgressWatch> {
        self.state.with(|s| {
            let running = s.running;
            s.cold()
                .progress
                .get_or_insert_with(|| {
                    let watch = Arc::new(Watch::draining(None));
                    if !running {
                        watch.close();
                    }
                    watch
                })
                .clone()
        })
    }

    /// Counts the job in its dispatcher's jobs in flight until it ends.
    pub(crate) fn count_in_flight(&mut self) {
        self.env.jobs.enter();
        self.counted = true;
    }

    /// Publishes a lifecycle event if they are on for this job (and it has not ended).
    pub(crate) fn lifecycle(&self, event: impl FnOnce() -> JobLifecycle) {
        if self.lifecycle {
            self.publish_reported(self.event(event(), None));
        }
    }

    /// Publishes an event nobody waits on (lifecycle, output, placeholder): a closed bus is
    /// reported to the observers and counted, never ignored. An ended job publishes nothing.
    pub(crate) fn publish_reported(&self, event: Event) {
        if let Err(error) = self.publish_event(event) {
            if error.is_closed() {
                self.env.undelivered(&error.into_inner());
            }
        }
    }

    fn bus_publish(&self, event: Event) -> Result<usize, crate::bus::PublishError> {
        match self.bus_ref() {
            Some(bus) => bus.publish(event),
            None => self.env.bus.publish(event),
        }
    }

    /// Publishes `event` under the job's lock (so never after its terminal event).
    pub(crate) fn publish_event(&self, event: Event) -> Result<usize, EmitError> {
        self.publish_event_to(None, event)
    }

    /// Publishes `event` on `bus` (the job's bus if `None`) under the job's lock.
    fn publish_event_to(&self, bus: Option<&SignalBus>, event: Event) -> Result<usize, EmitError> {
        let published = self.state.with(|s| {
            if !s.running {
                return Err(EmitError::job_ended(event.clone()));
            }
            let result = match bus {
                Some(bus) => bus.publish(event.clone()),
                None => self.bus_publish(event.clone()),
            };
            result.map_err(|e| EmitError::closed(e.into_inner()))
        })?;
        if self.env.observers.any() {
            self.env.observers.each(|o| o.on_event_published(&event));
        }
        Ok(published)
    }

    /// Records the job's final outcome; returns `false` (and drops `outcome`) if the job had
    /// already ended.
    ///
    /// The terminal lifecycle event (if on) is published in the same critical section, so it
    /// is the job's last event and precedes the handle's wake-up. If the handle was resolved
    /// early ([`resolve`](Self::resolve)), it keeps that outcome. Watchers and observers run
    /// afterwards, outside the lock.
    pub(crate) fn complete(&self, outcome: Result<Success<T>, JobError>) -> bool {
        // The common case first: no events to publish, nobody to tell, nothing cold.
        let outcome = if self.lifecycle || self.env.observers.any() {
            outcome
        } else {
            let ended = self.state.with(|s| {
                if !s.running || s.cold.is_some() {
                    return Err(outcome);
                }
                let waker = s.fill(outcome)?;
                s.running = false;
                Ok((waker, s.task_waker.take(), s.take_reachable()))
            });
            match ended {
                Ok((waker, task_waker, reachable)) => {
                    self.leave(reachable);
                    drop(task_waker);
                    if let Some(w) = waker {
                        w.wake();
                    }
                    return true;
                }
                Err(outcome) => outcome,
            }
        };
        self.complete_slow(outcome)
    }

    /// Stops counting the job in flight (and gives back its slot, if it had one).
    fn leave(&self, reachable: Option<u32>) {
        if let Some(slot) = reachable {
            self.env.jobs.unreach(slot);
        }
        if self.counted {
            self.env.jobs.leave();
        }
    }

    /// [`complete`](Self::complete) with events, observers, watchers or an early outcome
    /// (out of line, so that the common case stays small where it is inlined).
    #[inline(never)]
    fn complete_slow(&self, outcome: Result<Success<T>, JobError>) -> bool {
        let terminal = self
            .lifecycle
            .then(|| self.event(JobLifecycle::terminal(&outcome), None));
        // Cancelling or timing out a job cancels its sub-jobs; success and failure do not.
        let cascades = matches!(
            outcome,
            Err(JobError::Cancelled { .. } | JobError::TimedOut { .. })
        );
        let observed = self.env.observers.any().then(|| match &outcome {
            Ok(success) => Ok(success.data_source),
            Err(e) => Err(e.clone()),
        });
        let ended = self.state.with(|s| {
            if !s.running {
                return None;
            }
            s.running = false;
            let (published, refused) = match terminal {
                Some(t) => match self.bus_publish(t.clone()) {
                    Ok(_) => (Some(t), None),
                    Err(_) => (None, Some(t)),
                },
                None => (None, None),
            };
            let task_waker = s.task_waker.take();
            let reachable = s.take_reachable();
            // Watchers and sub-jobs leave with the job; the progress watch stays (closed below)
            // for late readers.
            let (on_done, children, progress) = match s.cold.as_mut() {
                Some(cold) => (
                    core::mem::take(&mut cold.on_done),
                    core::mem::take(&mut cold.children),
                    cold.progress.clone(),
                ),
                None => (Vec::new(), Vec::new(), None),
            };
            let on_done_pending = !on_done.is_empty();
            let (waker, outcome) = if on_done_pending {
                // Watchers see it first (then it resolves the handle, unless resolved early).
                (None, Some(outcome))
            } else {
                match s.fill(outcome) {
                    Ok(waker) => (waker, None),
                    // Resolved early: the handle keeps that outcome.
                    Err(outcome) => (None, Some(outcome)),
                }
            };
            Some((
                published,
                refused,
                on_done,
                children,
                progress,
                outcome,
                (waker, task_waker, reachable),
            ))
        });
        let Some((published, refused, on_done, children, progress, outcome, wakers)) = ended else {
            return false;
        };
        let (waker, task_waker, reachable) = wakers;
        self.leave(reachable);
        drop(task_waker);
        if let Some(w) = waker {
            w.wake();
        }
        if let Some(event) = refused {
            self.env.undelivered(&event);
        }
        if cascades {
            for child in children.iter().filter_map(Weak::upgrade) {
                child.cancel(Some(Cow::Borrowed("its parent job was cancelled")));
            }
        }
        if let Some(outcome) = outcome {
            for done in on_done {
                done(&outcome);
            }
            self.resolve(outcome);
        }
        if let Some(progress) = progress {
            progress.close();
        }
        if let Some(observed) = observed {
            let info = self.info();
            self.env.observers.each(|o| {
                if let Some(event) = &published {
                    o.on_event_published(event);
                }
                match &observed {
                    Ok(source) => o.on_job_success(&info, *source),
                    Err(error) => o.on_job_error(&info, error),
                }
            });
        }
        true
    }

    /// Resolves the handle with `outcome` if it is not resolved yet; the job may go on
    /// running (a cache hit being revalidated). Returns whether it resolved it.
    pub(crate) fn resolve(&self, outcome: Result<Success<T>, JobError>) -> bool {
        match self.state.with(|s| s.fill(outcome)) {
            Err(_) => false,
            Ok(waker) => {
                if let Some(w) = waker {
                    w.wake();
                }
                true
            }
        }
    }

    /// Runs `done` with the final outcome; returns `false` (without running it) if the job
    /// has already ended.
    pub(crate) fn on_done(&self, done: OnDone<T>) -> bool {
        self.state.with(|s| {
            if s.running {
                s.cold().on_done.push(done);
            }
            s.running
        })
    }

    /// Makes a handle state that follows `leader`'s job: same id, progress from the leader,
    /// outcome delivered by the leader's `on_done`.
    ///
    /// The follower keeps its own cancellation token (`options`); its own timeout is watched
    /// by the dispatcher.
    pub(crate) fn follower(leader: &Arc<JobShared<T>>, options: &JobOptions) -> Self
    where
        T: Send + 'static,
    {
        let mut own = JobOptions::new().with_lifecycle_events(false);
        if let Some(token) = options.cancellation() {
            own = own.with_cancellation(token.clone());
        }
        let mut follower = JobShared::new(
            leader.id,
            leader.job_type,
            leader.env.clone(),
            &mut own,
            leader.cause().clone(),
            leader.parent_id(),
        );
        let leader: Arc<dyn JobControl> = leader.clone();
        follower.extra.get_or_insert_with(Box::default).leader = Some(leader);
        follower
    }

    /// Ends a follower (no events, no observers: the job it follows goes on, or has ended):
    /// with its leader's outcome, or detached by its own cancel, token or timeout. Returns
    /// `false` if it had already ended.
    pub(crate) fn end_following(&self, outcome: Result<Success<T>, JobError>) -> bool {
        let ended = self.state.with(|s| {
            if !s.running {
                return None;
            }
            s.running = false;
            Some(s.task_waker.take())
        });
        let Some(watcher) = ended else {
            return false;
        };
        self.resolve(outcome);
        if let Some(w) = watcher {
            w.wake();
        }
        true
    }

    /// Registers the waker of a follower's watcher; returns `false` once the follower ended.
    pub(crate) fn watch_follower(&self, cx: &mut Context<'_>) -> bool {
        self.state.with(|s| {
            if s.running {
                s.task_waker = Some(cx.waker().clone());
            }
            s.running
        })
    }

    /// Asks the pipeline to cancel; ignored once the job has ended or was already cancelled.
    ///
    /// A follower has no pipeline: cancelling it resolves it at once and leaves the job it
    /// follows alone.
    pub(crate) fn request_cancel(&self, reason: Option<Cow<'static, str>>) {
        if self.leader().is_some() {
            self.end_following(Err(JobError::cancelled(reason)));
            return;
        }
        let waker = self.state.with(|s| {
            if !s.running || s.cancel_request().is_some() {
                return None;
            }
            s.cold().cancel_request = Some(reason);
            self.cancel_flag.store(true, Ordering::Release);
            s.task_waker.take()
        });
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Returns `true` if a cancel request may be pending (cheap; no lock).
    pub(crate) fn cancel_flagged(&self) -> bool {
        self.cancel_flag.load(Ordering::Acquire)
    }

    /// Says which job this is, for the job's tracing span, without holding on to the state
    /// (which moves into the job's task).
    #[inline]
    pub(crate) fn which(&self) -> impl FnOnce() -> (JobId, JobType) + use<T> {
        let (id, job_type) = (self.id, self.job_type);
        move || (id, job_type())
    }

    /// Returns the job's id.
    pub(crate) fn id(&self) -> JobId {
        self.id
    }

    /// Returns the runtime the job runs on.
    pub(crate) fn runtime_arc(&self) -> &Arc<dyn Runtime> {
        &self.env.runtime
    }

    /// Returns the cancel reason once cancel was requested, or registers the task's waker
    /// (and, the first time, makes the job reachable by a shutdown: see the registry).
    pub(crate) fn poll_cancel_request(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Cow<'static, str>>>
    where
        T: Send + 'static,
    {
        self.state.with(|s| {
            if s.reachable == UNREACHABLE
                && self.counted
                && s.running
                && s.cancel_request().is_none()
            {
                let this: Weak<dyn Cancel> = Arc::downgrade(self) as Weak<dyn Cancel>;
                match self.env.jobs.reach(this) {
                    Reach::Slot(slot) => s.reachable = slot,
                    Reach::Cancelled => {
                        s.cold().cancel_request = Some(Some(Cow::Borrowed(SHUTDOWN_REASON)));
                        self.cancel_flag.store(true, Ordering::Release);
                    }
                    // Only the flag can cancel it on a shutdown (checked on every poll).
                    Reach::Full => {}
                }
            }
            match s.cancel_request() {
                Some(reason) => Poll::Ready(reason.clone()),
                None => {
                    match &s.task_waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => s.task_waker = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            }
        })
    }

    /// Returns `true` if a cancel request may be pending, or every job of the dispatcher was
    /// cancelled (cheap; no lock).
    #[inline]
    pub(crate) fn may_be_cancelled(&self) -> bool {
        self.cancel_flagged() || self.env.jobs.is_cancelled()
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.state.with(|s| !s.slot.is_pending())
    }

    pub(crate) fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<Result<Success<T>, JobError>> {
        self.state.with(|s| s.poll(cx.waker()))
    }
}

impl<T: Send + 'static> Cancel for JobShared<T> {
    fn cancel(&self, reason: Option<Cow<'static, str>>) {
        self.request_cancel(reason);
    }
}

impl<T: Send + 'static> JobControl for JobShared<T> {
    fn id(&self) -> JobId {
        self.id
    }

    fn runtime(&self) -> &dyn Runtime {
        &*self.env.runtime
    }

    fn publish(&self, event: Event) -> Result<usize, EmitError> {
        self.publish_event(event)
    }

    fn publish_to(&self, bus: &SignalBus, event: Event) -> Result<usize, EmitError> {
        self.publish_event_to(Some(bus), event)
    }

    fn token(&self) -> Option<&CancellationToken> {
        JobShared::token(self)
    }

    fn deadline(&self) -> Option<crate::runtime::Instant> {
        JobShared::deadline(self)
    }

    fn cache(&self) -> &dyn CacheProvider {
        &*self.env.cache
    }

    fn metadata(&self, key: &str) -> Option<&str> {
        self.extra
            .as_ref()?
            .metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &**v)
    }

    fn report(&self, progress: Progress) -> bool {
        let lifecycle = self
            .progress_events
            .then(|| self.event(JobLifecycle::Progress(progress.clone()), None));
        let accepted = self.state.with(|s| {
            if !s.running {
                return None;
            }
            let watch = s
                .cold()
                .progress
                .get_or_insert_with(|| Arc::new(Watch::draining(None)));
            watch.update(|p| *p = Some(progress));
            let published = lifecycle.map(|e| match self.bus_publish(e.clone()) {
                Ok(_) => Ok(e),
                Err(_) => Err(e),
            });
            Some(published)
        });
        match accepted {
            None => false,
            Some(published) => {
                match published {
                    Some(Ok(event)) => self.env.observers.each(|o| o.on_event_published(&event)),
                    Some(Err(event)) => self.env.undelivered(&event),
                    None => {}
                }
                true
            }
        }
    }

    fn cause(&self) -> &Cause {
        JobShared::cause(self)
    }

    fn parent_id(&self) -> Option<JobId> {
        JobShared::parent_id(self)
    }

    fn bus_override(&self) -> Option<BusRef> {
        self.bus_ref().cloned()
    }

    fn meta(&self) -> Meta {
        self.job_meta()
    }

    fn env(&self) -> &Arc<JobEnv> {
        &self.env
    }

    fn adopt(&self, child: Weak<dyn JobControl>) -> bool {
        let adopted = self.state.with(|s| {
            if !s.running {
                return false;
            }
            let children = &mut s.cold().children;
            if children.len() == children.capacity() {
                children.retain(|c| c.strong_count() > 0);
            }
            children.push(child.clone());
            true
        });
        if !adopted {
            if let Some(child) = child.upgrade() {
                child.cancel(Some(Cow::Borrowed("its parent job had ended")));
            }
        }
        adopted
    }

    fn is_cancel_requested(&self) -> bool {
        self.cancel_flagged() || self.token().is_some_and(CancellationToken::is_cancelled)
    }

    fn current_progress(&self) -> Option<Progress> {
        if let Some(leader) = self.leader() {
            return leader.current_progress();
        }
        self.state.with(|s| {
            let watch = s.cold.as_ref()?.progress.as_ref()?;
            watch.get()
        })
    }

    fn progress_watch(&self) -> Arc<ProgressWatch> {
        match self.leader() {
            Some(leader) => leader.progress_watch(),
            None => self.own_progress(),
        }
    }
}
#[cfg(all(
    test,
    feature = "std",
    target_pointer_width = "64",
    not(orchestrator_loom)
))]
mod tests {
    use alloc::string::String;
    use alloc::sync::Arc;
    use alloc::vec::Vec;

    use core::task::{Poll, Waker};

    use super::{DataSource, JobError, JobShared, Slot, State, Success};

    /// The per-job state of a plain dispatch with an output of up to 16 bytes, a `String` or
    /// a `Vec` is, with its `Arc`'s counts, a 120-byte allocation (the largest that glibc
    /// serves from its fastbins, and within two cache lines; it is copied into place inline
    /// rather than by a `memcpy` call): what makes it larger belongs in `Extra` or `Cold`.
    #[test]
    fn the_per_job_state_stays_small() {
        assert!(core::mem::size_of::<JobShared<()>>() <= 104);
        assert!(core::mem::size_of::<JobShared<u64>>() <= 104);
        assert!(core::mem::size_of::<JobShared<Arc<u8>>>() <= 104);
        assert!(core::mem::size_of::<JobShared<[u64; 2]>>() <= 104);
        assert!(core::mem::size_of::<JobShared<String>>() <= 104);
        assert!(core::mem::size_of::<JobShared<Vec<u8>>>() <= 104);
    }

    /// An error waits in the slot boxed and comes out whole, once.
    #[test]
    fn a_ready_error_is_taken_whole() {
        let mut state: State<()> = State::running();
        let filled = state.fill(Err(JobError::TimedOut {
            budget: core::time::Duration::from_millis(7),
        }));
        assert!(
            matches!(filled, Ok(None)),
            "a pending slot takes the outcome"
        );
        assert!(
            matches!(state.slot, Slot::Failed(_)),
            "an error is stored as `Failed`"
        );
        assert!(matches!(
            state.poll(Waker::noop()),
            Poll::Ready(Err(JobError::TimedOut { budget })) if budget.as_millis() == 7
        ));
        assert!(
            state.poll(Waker::noop()).is_pending(),
            "a taken outcome is gone"
        );
    }

    /// A success comes out with its value and its source; a slot already filled keeps its
    /// outcome and gives the second one back.
    #[test]
    fn a_ready_success_keeps_its_source() {
        let mut state: State<String> = State::running();
        assert!(
            state.poll(Waker::noop()).is_pending(),
            "nothing to take while pending"
        );
        assert!(
            matches!(state.slot, Slot::Pending(Some(_))),
            "the pending slot keeps the waker"
        );
        let cached = Success {
            value: String::from("cached"),
            data_source: DataSource::Cached,
        };
        assert!(state.fill(Ok(cached)).is_ok());
        let fresh = Success {
            value: String::from("fresh"),
            data_source: DataSource::Fresh,
        };
        match state.fill(Ok(fresh)) {
            Err(Ok(back)) => assert_eq!(back.value, "fresh"),
            _ => panic!("a filled slot gives a second outcome back"),
        }
        let Poll::Ready(Ok(taken)) = state.poll(Waker::noop()) else {
            panic!("a ready success");
        };
        assert_eq!(taken.value, "cached");
        assert_eq!(taken.data_source, DataSource::Cached);
    }
}
