//! Jobs: typed descriptions of work, and the options a dispatch runs them with.

use core::time::Duration;

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::bus::SignalBus;
use crate::cancel::CancellationToken;
use crate::retry::RetryPolicy;

/// A typed description of *what* to do.
///
/// A job is a plain value; the [`Executor`](crate::Executor) registered for its type on a
/// [`Dispatcher`](crate::Dispatcher) decides *how*. Each dispatch of a job gets its own
/// [`JobId`](crate::JobId).
///
/// A job is borrowed by its executor (`&J`) so that it can be retried; it must therefore be
/// `Sync` as well as `Send`.
///
/// ```
/// use orchestrator_core::Job;
///
/// struct FetchUser {
///     user_id: u64,
/// }
///
/// impl Job for FetchUser {
///     type Output = String;
/// }
/// # let _ = FetchUser { user_id: 1 }.user_id;
/// ```
pub trait Job: Send + Sync + 'static {
    /// The value a successful run produces.
    type Output: Send + 'static;

    /// Makes the domain event this job publishes when it succeeds, if any (none by default).
    ///
    /// Whatever executor runs the job and however it is dispatched, a successful job whose
    /// `output_event` returns `Some(payload)` publishes `payload` on its bus before its handle
    /// resolves (and before its terminal lifecycle event), with the job's id as correlation id
    /// and the output's [`DataSource`](crate::DataSource) in the envelope. A cache hit
    /// publishes it too (as [`DataSource::Cached`](crate::DataSource::Cached)), and a
    /// placeholder ([`JobBuilder::placeholder`](crate::JobBuilder::placeholder)) is published
    /// through it as [`DataSource::Optimistic`](crate::DataSource::Optimistic).
    ///
    /// ```
    /// use orchestrator_core::Job;
    ///
    /// struct LoadCart;
    /// struct CartLoaded {
    ///     items: Vec<String>,
    /// }
    ///
    /// impl Job for LoadCart {
    ///     type Output = Vec<String>;
    ///     fn output_event(&self, items: &Vec<String>) -> Option<impl Send + Sync + 'static> {
    ///         Some(CartLoaded { items: items.clone() })
    ///     }
    /// }
    /// assert!(LoadCart.output_event(&vec!["tea".to_string()]).is_some());
    /// # let _ = CartLoaded { items: vec![] }.items;
    /// ```
    fn output_event(&self, output: &Self::Output) -> Option<impl Send + Sync + 'static> {
        let _ = output;
        None::<()>
    }
}

/// Which lifecycle events a dispatch publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Off,
    /// All but `Progress` (what an orchestrator needs to track its jobs).
    Tracking,
    All,
}

/// One metadata entry of a dispatch: a key and a value.
pub type MetadataEntry = (Cow<'static, str>, Cow<'static, str>);

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

    /// Returns the bus override, if any.
    pub(crate) fn bus(&self) -> Option<&SignalBus> {
        self.set.as_ref()?.bus.as_ref()
    }

    /// Returns `true` if no execution option is set (the dispatch takes the fast path).
    pub(crate) fn is_plain(&self) -> bool {
        self.set.as_ref().is_none_or(|s| {
            s.timeout.is_none()
                && s.attempt_timeout.is_none()
                && s.retry.is_none()
                && s.token.is_none()
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
