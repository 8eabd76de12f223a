//! [`JobContext`]: what an executor can see and do while it runs one attempt.

use core::fmt;
use core::time::Duration;

use crate::bus::SignalBus;
use crate::cancel::CancellationToken;
use crate::event::Event;
use crate::id::JobId;
use crate::progress::Progress;
use crate::runtime::{Instant, Sleep};
use crate::sync::Arc;

use super::control::{EmitError, JobControl};

/// What an executor can see and do while it runs one attempt.
///
/// Cheap to clone (a few reference counts); a clone may be moved into a sub-task. Reports made
/// after the job has ended go nowhere.
///
/// # Sub-jobs
///
/// A context dispatches sub-jobs ([`Dispatch`](crate::Dispatch)): on the job's dispatcher,
/// without the executor holding a dispatcher (no reference cycle). A sub-job carries its
/// parent's id ([`Event::parent_id`]) and causal depth, publishes on its parent's bus unless
/// it names one, and is cancelled when its parent is
/// cancelled or times out (it outlives a parent that succeeds or fails, like any
/// fire-and-forget job). A sub-job dispatched after its parent ended is cancelled at once.
#[derive(Clone)]
pub struct JobContext {
    pub(crate) control: Arc<dyn JobControl>,
    attempt: u32,
}

impl JobContext {
    pub(crate) fn new(control: Arc<dyn JobControl>, attempt: u32) -> Self {
        Self { control, attempt }
    }

    /// Returns the id of the dispatch this attempt belongs to.
    pub fn job_id(&self) -> JobId {
        self.control.id()
    }

    /// Returns the 1-based number of this attempt.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Reports progress: a value (`0.5`, clamped to `0.0..=1.0`) or a full [`Progress`]
    /// record with a message and steps. Returns `false` if it was ignored (NaN value, or the
    /// job already ended).
    ///
    /// The handle's [`progress`](crate::JobHandle::progress) stream delivers it.
    pub fn report_progress(&self, progress: impl Into<Progress>) -> bool {
        let progress = progress.into();
        progress.is_valid() && self.control.report(progress)
    }

    /// Returns when the dispatch's total timeout ([`JobBuilder::timeout`](crate::JobBuilder::timeout))
    /// expires, on the runtime's clock ([`now`](Self::now)); `None` without one. Work that
    /// continues elsewhere (another process) can carry it and skip what is already too late.
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::Instant;
    /// use orchestrator_core::testing::VirtualRuntime;
    /// use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext};
    ///
    /// struct Left;
    /// impl Job for Left {
    ///     type Output = Option<Duration>;
    /// }
    /// struct TimeLeft;
    /// impl Executor<Left> for TimeLeft {
    ///     type Error = core::convert::Infallible;
    ///     async fn execute(&self, _: &Left, cx: JobContext) -> Result<Option<Duration>, Self::Error> {
    ///         cx.sleep(Duration::from_secs(1)).await;
    ///         Ok(cx.deadline().map(|d| d.saturating_duration_since(cx.now())))
    ///     }
    /// }
    ///
    /// let rt = VirtualRuntime::new();
    /// let dispatcher = Dispatcher::new(rt.clone());
    /// dispatcher.register(TimeLeft);
    /// let timed = dispatcher.job(Left).timeout(Duration::from_secs(10)).dispatch();
    /// assert_eq!(rt.block_on(timed).unwrap().value, Some(Duration::from_secs(9)));
    /// assert_eq!(rt.block_on(dispatcher.dispatch(Left)).unwrap().value, None);
    /// # let _ = Instant::ZERO;
    /// ```
    pub fn deadline(&self) -> Option<crate::runtime::Instant> {
        self.control.deadline()
    }

    /// Returns the id of the job whose context dispatched this one, for sub-jobs.
    pub fn parent_id(&self) -> Option<JobId> {
        self.control.parent_id()
    }

    /// Returns the job's causal depth (see [`Event::causal_depth`]).
    pub fn causal_depth(&self) -> u32 {
        self.control.cause().depth
    }

    /// Publishes `payload` as an event of this job on the job's bus; returns how many
    /// subscriptions it was queued for.
    ///
    /// The envelope carries the job's id as correlation id, the job's type, and a timestamp
    /// from the runtime's clock. Events are published in call order, and never after the job's
    /// terminal outcome.
    ///
    /// # Errors
    ///
    /// Returns [`EmitError`] with the event if the job has already ended (a context kept past
    /// its job) or its bus is closed.
    pub fn emit<P: Send + Sync + 'static>(&self, payload: P) -> Result<usize, EmitError> {
        self.control.publish(self.job_event(payload))
    }

    /// Wraps `payload` in this job's envelope (id, type, runtime timestamp, cause).
    fn job_event<P: Send + Sync + 'static>(&self, payload: P) -> Event {
        Event::build(payload, self.control.meta())
    }

    /// Publishes `payload` as an event of this job on `bus` on purpose (for example
    /// [`SignalBus::global`](crate::SignalBus::global) from a job on a scoped bus), with the
    /// same envelope and rules as [`emit`](Self::emit).
    ///
    /// # Errors
    ///
    /// As [`emit`](Self::emit).
    pub fn emit_to<P: Send + Sync + 'static>(
        &self,
        bus: &SignalBus,
        payload: P,
    ) -> Result<usize, EmitError> {
        self.control.publish_to(bus, self.job_event(payload))
    }

    /// Returns `true` once the job has been cancelled (through its handle or its token).
    ///
    /// Checking is optional: a cancelled job's work future is dropped anyway. It is useful for
    /// synchronous loops inside an attempt.
    pub fn is_cancelled(&self) -> bool {
        self.control.is_cancel_requested()
    }

    /// Returns the dispatcher's cache provider.
    pub fn cache(&self) -> &dyn crate::cache::CacheProvider {
        self.control.cache()
    }

    /// Returns the value of metadata entry `key`, if the dispatch set one.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.control.metadata(key)
    }

    /// Returns the cancellation token the job was dispatched with, if any.
    pub fn cancellation(&self) -> Option<&CancellationToken> {
        self.control.token()
    }

    /// Sleeps on the dispatcher's runtime, whatever it is.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        self.control.runtime().sleep(duration)
    }

    /// Reads the dispatcher runtime's clock.
    pub fn now(&self) -> Instant {
        self.control.runtime().now()
    }
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("job_id", &self.job_id())
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}
