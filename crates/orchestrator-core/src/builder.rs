//! The fluent way to dispatch: [`JobBuilder`].

use alloc::borrow::Cow;
use alloc::boxed::Box;
use core::fmt;
use core::time::Duration;

use crate::bus::SignalBus;
use crate::cache::{CachePolicy, CacheValue};
use crate::cancel::CancellationToken;
use crate::dispatcher::Dispatcher;
use crate::handle::{JobHandle, JobShared};
use crate::id::JobId;
use crate::job::{EventJob, Job, JobOptions};
use crate::lifecycle::JobLifecycle;
use crate::outcome::{DataSource, JobError, Success};
use crate::retry::RetryPolicy;
use crate::sync::Arc;

type Outcome<T> = Result<Success<T>, JobError>;

/// Publishes a job's placeholder before its work starts.
pub(crate) type PlaceholderFn<T> = Box<dyn FnOnce(&JobShared<T>) + Send>;

/// The typed parts of a dispatch that [`JobOptions`] cannot hold (boxed: a plain dispatch
/// moves one null pointer).
pub(crate) struct Extras<J: Job>(Option<Box<ExtrasSet<J>>>);

/// The parts of [`Extras`]: cache, placeholder, dedup.
pub(crate) type ExtrasParts<J> = (
    Option<CacheSpec<J>>,
    Option<PlaceholderFn<<J as Job>::Output>>,
    Option<Dedup<J>>,
);

pub(crate) struct ExtrasSet<J: Job> {
    pub(crate) cache: Option<CacheSpec<J>>,
    pub(crate) placeholder: Option<PlaceholderFn<J::Output>>,
    pub(crate) dedup: Option<Dedup<J>>,
}

impl<J: Job> Extras<J> {
    pub(crate) fn none() -> Self {
        Self(None)
    }

    fn set_mut(&mut self) -> &mut ExtrasSet<J> {
        self.0.get_or_insert_with(|| {
            Box::new(ExtrasSet {
                cache: None,
                placeholder: None,
                dedup: None,
            })
        })
    }

    pub(crate) fn dedup(&self) -> Option<&Dedup<J>> {
        self.0.as_ref()?.dedup.as_ref()
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

/// A dispatch's dedup key and how to copy its outcome for the dispatches that join it.
pub(crate) struct Dedup<J: Job> {
    pub(crate) key: Cow<'static, str>,
    pub(crate) copy: fn(&Outcome<J::Output>) -> Outcome<J::Output>,
}

fn store<T: Clone + Send + Sync + 'static>(value: &T) -> CacheValue {
    Arc::new(value.clone())
}

fn load<T: Clone + Send + Sync + 'static>(value: &CacheValue) -> Option<T> {
    value.downcast_ref::<T>().cloned()
}

fn copy<T: Clone>(outcome: &Outcome<T>) -> Outcome<T> {
    outcome.clone()
}

/// A dispatch being configured: options, cache, placeholder, dedup, metadata.
///
/// Made by [`Dispatcher::job`] (or an orchestrator's `job`); [`dispatch`](Self::dispatch)
/// routes it exactly like [`Dispatcher::dispatch`]: to the executor registered for `J`.
///
/// ```
/// use core::time::Duration;
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{CachePolicy, DataSource, Dispatcher, Executor, Job, JobContext, RetryPolicy};
///
/// #[derive(Clone)]
/// struct Price(&'static str);
/// impl Job for Price {
///     type Output = u32;
/// }
/// struct Prices;
/// impl Executor<Price> for Prices {
///     type Error = core::convert::Infallible;
///     async fn execute(&self, _: &Price, _: JobContext) -> Result<u32, Self::Error> {
///         Ok(42)
///     }
/// }
///
/// let rt = VirtualRuntime::new();
/// let dispatcher = Dispatcher::new(rt.clone());
/// dispatcher.register(Prices);
/// let fetch = || {
///     dispatcher
///         .job(Price("tea"))
///         .timeout(Duration::from_secs(5))
///         .retry(RetryPolicy::fixed(2, Duration::from_millis(100)))
///         .cache(CachePolicy::new("price/tea").with_ttl(Duration::from_secs(60)))
///         .metadata("caller", "doc")
///         .dispatch()
/// };
/// assert_eq!(rt.block_on(fetch()).unwrap().source, DataSource::Fresh);
/// assert_eq!(rt.block_on(fetch()).unwrap().source, DataSource::Cached);
/// ```
#[must_use = "a builder does nothing until `dispatch` is called"]
pub struct JobBuilder<'d, J: Job> {
    dispatcher: &'d Dispatcher,
    job: J,
    options: JobOptions,
    extras: Extras<J>,
}

impl<'d, J: Job> JobBuilder<'d, J> {
    pub(crate) fn new(dispatcher: &'d Dispatcher, job: J) -> Self {
        Self {
            dispatcher,
            job,
            options: JobOptions::new(),
            extras: Extras::none(),
        }
    }

    /// Replaces every plain option at once.
    pub fn options(mut self, options: JobOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the total time budget; see [`JobOptions::with_timeout`].
    pub fn timeout(mut self, budget: Duration) -> Self {
        self.options = self.options.with_timeout(budget);
        self
    }

    /// Sets the per-attempt limit; see [`JobOptions::with_attempt_timeout`].
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.options = self.options.with_attempt_timeout(limit);
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options = self.options.with_retry(policy);
        self
    }

    /// Cancels the job when `token` is cancelled.
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.options = self.options.with_cancellation(token);
        self
    }

    /// Publishes the job's events on `bus`.
    pub fn bus(mut self, bus: SignalBus) -> Self {
        self.options = self.options.with_bus(bus);
        self
    }

    /// Turns lifecycle events on or off for this dispatch.
    pub fn lifecycle_events(mut self, on: bool) -> Self {
        self.options = self.options.with_lifecycle_events(on);
        self
    }

    /// Attaches a metadata entry, readable by the executor ([`JobContext::metadata`]).
    ///
    /// [`JobContext::metadata`]: crate::JobContext::metadata
    pub fn metadata(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.options = self.options.with_metadata(key, value);
        self
    }

    /// Dispatches the job and returns its handle; see [`Dispatcher::dispatch_with`].
    pub fn dispatch(self) -> JobHandle<J::Output> {
        self.dispatcher
            .dispatch_full(JobId::next(), self.job, self.options, self.extras)
    }

    /// Splits the builder for a dispatcher-side caller (orchestrators).
    pub(crate) fn into_parts(self) -> (&'d Dispatcher, J, JobOptions, Extras<J>) {
        (self.dispatcher, self.job, self.options, self.extras)
    }
}

impl<J: Job> JobBuilder<'_, J>
where
    J::Output: Clone + Sync,
{
    /// Caches the output under the policy's key; see the [`cache`](crate::cache) module.
    pub fn cache(mut self, policy: CachePolicy) -> Self {
        self.extras.set_mut().cache = Some(CacheSpec {
            policy,
            store: store::<J::Output>,
            load: load::<J::Output>,
            looked_up: false,
        });
        self
    }

    /// Deduplicates: while a dispatch of `J` with the same key is in flight on this
    /// dispatcher, this one joins it (same id, same outcome, its progress) instead of running.
    ///
    /// Cancelling a joined handle detaches it (it resolves as cancelled) and leaves the job
    /// running for the others.
    pub fn dedup(mut self, key: impl Into<Cow<'static, str>>) -> Self {
        self.extras.set_mut().dedup = Some(Dedup {
            key: key.into(),
            copy: copy::<J::Output>,
        });
        self
    }
}

impl<J: EventJob> JobBuilder<'_, J>
where
    J::Output: Send + Sync,
{
    /// Publishes `value` as the job's output event with
    /// [`DataSource::Optimistic`](crate::DataSource::Optimistic) before the work starts (and a
    /// `Placeholder` lifecycle event, if those are on). The handle still resolves with the
    /// real outcome.
    pub fn placeholder(mut self, value: J::Output) -> Self {
        let event = J::event(&self.job, &value);
        self.extras.set_mut().placeholder = Some(Box::new(move |shared: &JobShared<J::Output>| {
            shared.lifecycle(|| JobLifecycle::Placeholder);
            let _ = shared.publish_event(shared.event(event, Some(DataSource::Optimistic)));
        }));
        self
    }
}

impl<J: Job> fmt::Debug for JobBuilder<'_, J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobBuilder")
            .field("job", &core::any::type_name::<J>())
            .field("options", &self.options)
            .field(
                "cache",
                &self
                    .extras
                    .0
                    .as_ref()
                    .and_then(|e| e.cache.as_ref())
                    .map(|c| &c.policy),
            )
            .field(
                "placeholder",
                &self
                    .extras
                    .0
                    .as_ref()
                    .is_some_and(|e| e.placeholder.is_some()),
            )
            .field("dedup", &self.extras.dedup().map(|d| &d.key))
            .finish()
    }
}
