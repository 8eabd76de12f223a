//! What one dispatch runs with: [`JobOptions`] (plain options) and [`Extras`] (the typed
//! parts: cache, placeholder, dedup). Set through the `JobBuilder`; read by the dispatcher and
//! the pipeline.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::time::Duration;

use crate::bus::SignalBus;
use crate::cache::{CachePolicy, CacheValue};
use crate::cancel::CancellationToken;
use crate::event::{Event, Meta};
use crate::job::{Job, MetadataEntry};
use crate::outcome::{JobError, Success};
use crate::retry::RetryPolicy;
use crate::sync::Arc;

type Outcome<T> = Result<Success<T>, JobError>;

/// Which lifecycle events a dispatch publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Off,
    /// All but `Progress` (what an orchestrator needs to track its jobs).
    Tracking,
    All,
}

/// How one dispatch runs: total timeout, per-attempt timeout, retries, cancellation, bus,
/// lifecycle events, metadata. Set through [`JobBuilder`](crate::JobBuilder); all off by
/// default (one attempt, no time limit, cancellable only through the handle).
#[derive(Debug, Clone, Default)]
pub(crate) struct JobOptions {
    /// `None` for the default options: a plain dispatch moves one pointer, allocates nothing.
    set: Option<Box<SetOptions>>,
}

#[derive(Debug, Clone, Default)]
struct SetOptions {
    timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    token: Option<CancellationToken>,
    bus: Option<SignalBus>,
    lifecycle: Option<Lifecycle>,
    metadata: Vec<MetadataEntry>,
    /// How long after the dispatch the first attempt is due.
    delay: Option<Duration>,
    /// The number of the first attempt (0 and 1 both mean 1).
    first_attempt: u32,
}

impl JobOptions {
    /// Creates the default options.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn set_mut(&mut self) -> &mut SetOptions {
        self.set.get_or_insert_with(Box::default)
    }

    /// Sets the total time budget over all attempts and backoff sleeps.
    ///
    /// When it runs out, the work future is dropped and the job ends as
    /// [`JobError::TimedOut`](crate::JobError::TimedOut). The budget starts when the job's
    /// task first runs. A zero budget times out without running the executor.
    pub(crate) fn with_timeout(mut self, budget: Duration) -> Self {
        self.set_mut().timeout = Some(budget);
        self
    }

    /// Sets a limit for each attempt; an attempt that outlives it fails with
    /// [`AttemptTimedOut`](crate::AttemptTimedOut) and may be retried.
    pub(crate) fn with_attempt_timeout(mut self, limit: Duration) -> Self {
        self.set_mut().attempt_timeout = Some(limit);
        self
    }

    /// Sets the retry policy.
    pub(crate) fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.set_mut().retry = Some(policy);
        self
    }

    /// Cancels the job when `token` is cancelled.
    pub(crate) fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.set_mut().token = Some(token);
        self
    }

    /// Publishes the job's events on `bus` instead of the dispatcher's bus.
    pub(crate) fn with_bus(mut self, bus: SignalBus) -> Self {
        self.set_mut().bus = Some(bus);
        self
    }

    /// Turns lifecycle events on or off for this dispatch, overriding the dispatcher's default;
    /// see [`JobLifecycle`](crate::JobLifecycle).
    pub(crate) fn with_lifecycle_events(mut self, on: bool) -> Self {
        self.set_mut().lifecycle = Some(if on { Lifecycle::All } else { Lifecycle::Off });
        self
    }

    /// Orchestrator dispatches: every lifecycle event but `Progress`, unless the dispatch
    /// asked for all of them (an explicit "off" is overridden: tracking needs the terminal
    /// event).
    pub(crate) fn with_lifecycle_tracking(mut self) -> Self {
        if self.lifecycle_mode() != Some(Lifecycle::All) {
            self.set_mut().lifecycle = Some(Lifecycle::Tracking);
        }
        self
    }

    pub(crate) fn lifecycle_mode(&self) -> Option<Lifecycle> {
        self.set.as_ref()?.lifecycle
    }

    /// Attaches a metadata entry, readable by the executor
    /// ([`JobContext::metadata`](crate::JobContext::metadata)).
    pub(crate) fn with_metadata(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.set_mut().metadata.push((key.into(), value.into()));
        self
    }

    pub(crate) fn take_metadata(&mut self) -> Vec<MetadataEntry> {
        self.set
            .as_mut()
            .map(|s| core::mem::take(&mut s.metadata))
            .unwrap_or_default()
    }

    /// Delays the first attempt by `delay`.
    pub(crate) fn with_delay(mut self, delay: Duration) -> Self {
        self.set_mut().delay = Some(delay);
        self
    }

    /// Numbers the first attempt `attempt` (at least 1).
    pub(crate) fn with_first_attempt(mut self, attempt: u32) -> Self {
        self.set_mut().first_attempt = attempt.max(1);
        self
    }

    /// Returns the delay before the first attempt, if any.
    pub(crate) fn delay(&self) -> Option<Duration> {
        self.set.as_ref()?.delay
    }

    /// Returns the number of the first attempt (1 unless set).
    pub(crate) fn first_attempt(&self) -> u32 {
        self.set.as_ref().map_or(1, |s| s.first_attempt.max(1))
    }

    /// Returns the bus override, if any.
    pub(crate) fn bus(&self) -> Option<&SignalBus> {
        self.set.as_ref()?.bus.as_ref()
    }

    /// Returns `true` if no option at all was set.
    pub(crate) fn is_default(&self) -> bool {
        self.set.is_none()
    }

    /// Returns `true` if no execution option is set (the dispatch takes the fast path).
    pub(crate) fn is_plain(&self) -> bool {
        self.set.as_ref().is_none_or(|s| {
            s.timeout.is_none()
                && s.attempt_timeout.is_none()
                && s.retry.is_none()
                && s.token.is_none()
                && s.delay.is_none()
                && s.first_attempt <= 1
        })
    }

    /// Returns the total time budget, if any.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.set.as_ref()?.timeout
    }

    /// Returns the per-attempt limit, if any.
    pub(crate) fn attempt_timeout(&self) -> Option<Duration> {
        self.set.as_ref()?.attempt_timeout
    }

    /// Returns the retry policy, if any.
    pub(crate) fn retry(&self) -> Option<&RetryPolicy> {
        self.set.as_ref()?.retry.as_ref()
    }

    /// Returns the cancellation token, if any.
    pub(crate) fn cancellation(&self) -> Option<&CancellationToken> {
        self.set.as_ref()?.token.as_ref()
    }
}

/// Makes a job's placeholder event from its envelope, before its work starts.
pub(crate) type PlaceholderFn = Box<dyn FnOnce(Meta) -> Event + Send>;

/// The typed parts of a dispatch that `JobOptions` cannot hold (boxed: a plain dispatch
/// moves one null pointer).
pub(crate) struct Extras<J: Job>(pub(crate) Option<Box<ExtrasSet<J>>>);

/// The parts of [`Extras`]: cache, placeholder, dedup.
pub(crate) type ExtrasParts<J> = (
    Option<CacheSpec<J>>,
    Option<Placeholder<J>>,
    Option<Dedup<J>>,
);

/// A placeholder: the event it publishes, and its value (which a journal keeps, so that an
/// optimistic state can be rolled back after a restart).
pub(crate) struct Placeholder<J: Job> {
    pub(crate) event: PlaceholderFn,
    pub(crate) value: J::Output,
}

pub(crate) struct ExtrasSet<J: Job> {
    pub(crate) cache: Option<CacheSpec<J>>,
    pub(crate) placeholder: Option<Placeholder<J>>,
    pub(crate) dedup: Option<Dedup<J>>,
    /// Why the dispatch cannot run as configured (it is rejected, never silently changed).
    pub(crate) invalid: Option<&'static str>,
}

impl<J: Job> Extras<J> {
    pub(crate) fn none() -> Self {
        Self(None)
    }

    pub(crate) fn set_mut(&mut self) -> &mut ExtrasSet<J> {
        self.0.get_or_insert_with(|| {
            Box::new(ExtrasSet {
                cache: None,
                placeholder: None,
                dedup: None,
                invalid: None,
            })
        })
    }

    pub(crate) fn dedup(&self) -> Option<&Dedup<J>> {
        self.0.as_ref()?.dedup.as_ref()
    }

    pub(crate) fn invalid(&self) -> Option<&'static str> {
        self.0.as_ref()?.invalid
    }

    /// Takes the parts: cache, placeholder, dedup.
    pub(crate) fn into_parts(self) -> ExtrasParts<J> {
        match self.0 {
            None => (None, None, None),
            Some(set) => {
                let ExtrasSet {
                    cache,
                    placeholder,
                    dedup,
                    ..
                } = *set;
                (cache, placeholder, dedup)
            }
        }
    }
}

/// How a cacheable job's output goes in and out of the cache.
pub(crate) struct CacheSpec<J: Job> {
    pub(crate) policy: CachePolicy,
    pub(crate) store: fn(&J::Output) -> CacheValue,
    pub(crate) load: fn(&CacheValue) -> Option<J::Output>,
    /// The dispatcher already looked the key up (and missed): the task must not again.
    pub(crate) looked_up: bool,
}

/// Copies the outcome of the dispatch a dedup join joined, for the joining handle.
pub(crate) type CopyOutcome<T> = fn(&Outcome<T>) -> Outcome<T>;

/// A dispatch's dedup key and how to copy an outcome for it when it joins another dispatch
/// (`None`: it never joins, it only leads).
pub(crate) struct Dedup<J: Job> {
    pub(crate) key: Cow<'static, str>,
    pub(crate) copy: Option<CopyOutcome<J::Output>>,
}

pub(crate) fn store<T: Clone + Send + Sync + 'static>(value: &T) -> CacheValue {
    Arc::new(value.clone())
}

pub(crate) fn load<T: Clone + Send + Sync + 'static>(value: &CacheValue) -> Option<T> {
    value.downcast_ref::<T>().cloned()
}

pub(crate) fn copy<T: Clone>(outcome: &Outcome<T>) -> Outcome<T> {
    outcome.clone()
}

/// The outcome of a dispatch whose token is already cancelled or whose budget is zero.
pub(crate) fn pre_check(options: &JobOptions) -> Option<JobError> {
    if let Some(token) = options.cancellation().filter(|t| t.is_cancelled()) {
        return Some(JobError::cancelled(token.reason()));
    }
    (options.timeout() == Some(Duration::ZERO)).then_some(JobError::TimedOut {
        budget: Duration::ZERO,
    })
}
