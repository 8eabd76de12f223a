//! Dispatching: the [`Dispatch`] trait (every entry point) and the [`JobBuilder`] it returns.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use core::fmt;
use core::time::Duration;

use crate::bus::SignalBus;
use crate::cache::CachePolicy;
use crate::cancel::CancellationToken;
use crate::event::{Event, Meta};
use crate::job::Job;
use crate::outcome::DataSource;
#[cfg(doc)]
use crate::outcome::{JobError, Rejection};
use crate::retry::RetryPolicy;

use super::context::JobContext;
use super::dispatcher::{self, Dispatcher, Inner, Route, Via};
use super::handle::JobHandle;
use super::options::{CacheSpec, Dedup, Extras, JobOptions, Placeholder, copy, load, store};

mod sealed {
    /// Implemented by the crate's dispatch entry points only.
    #[allow(unreachable_pub)]
    pub trait Sealed {
        #[allow(private_interfaces)]
        fn route(&self) -> super::Route<'_>;

        /// A dispatch with default options (a dispatcher takes a shorter path).
        fn dispatch_default<J: crate::job::Job>(
            &self,
            job: J,
        ) -> crate::dispatch::handle::JobHandle<J::Output> {
            super::dispatcher::dispatch(
                self.route(),
                job,
                super::JobOptions::new(),
                super::Extras::none(),
            )
        }
    }
}

pub(crate) use sealed::Sealed;

/// Everything that dispatches jobs: a [`Dispatcher`], an orchestrator's handle and its
/// handler's context, and a running job's context (sub-jobs).
///
/// One set of methods, whatever the entry point: [`dispatch`](Self::dispatch) runs a job with
/// default options; [`job`](Self::job) starts a [`JobBuilder`] for options, cache, dedup and
/// the rest. What the entry point adds is the same either way:
///
/// - through an orchestrator ([`OrchestratorHandle`](crate::OrchestratorHandle),
///   [`OrchestratorContext`](crate::OrchestratorContext)), the job is tracked by it and
///   publishes on its bus;
/// - through an orchestrator's handler, the job carries the handled event's causal depth plus
///   one (see [`LoopGuard`](crate::LoopGuard));
/// - through a [`JobContext`](crate::JobContext), the job is a sub-job: it carries its
///   parent's id and depth and is cancelled with its parent.
///
/// Problems never panic and never return early: they arrive through the handle as
/// [`JobError::Rejected`].
///
/// ```
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext};
/// use core::time::Duration;
///
/// struct Ping;
/// impl Job for Ping {
///     type Output = &'static str;
/// }
/// struct Pong;
/// impl Executor<Ping> for Pong {
///     type Error = core::convert::Infallible;
///     async fn execute(&self, _: &Ping, _: JobContext) -> Result<&'static str, Self::Error> {
///         Ok("pong")
///     }
/// }
///
/// let rt = VirtualRuntime::new();
/// let dispatcher = Dispatcher::new(rt.clone());
/// dispatcher.register(Pong);
/// assert_eq!(rt.block_on(dispatcher.dispatch(Ping)).unwrap().value, "pong");
/// let configured = dispatcher.job(Ping).timeout(Duration::from_secs(1)).dispatch();
/// assert_eq!(rt.block_on(configured).unwrap().value, "pong");
/// ```
pub trait Dispatch: Sealed {
    /// Starts configuring a dispatch of `job`; [`JobBuilder::dispatch`] sends it.
    fn job<J: Job>(&self, job: J) -> JobBuilder<'_, J> {
        JobBuilder::new(self.route(), job)
    }

    /// Dispatches `job` with default options and returns its handle at once.
    fn dispatch<J: Job>(&self, job: J) -> JobHandle<J::Output> {
        self.dispatch_default(job)
    }
}

impl<T: Sealed + ?Sized> Dispatch for T {}

/// A dispatch being configured: options, cache, placeholder, dedup, metadata.
///
/// Made by [`Dispatch::job`] on any entry point; [`dispatch`](Self::dispatch) routes it
/// exactly like [`Dispatch::dispatch`] on the same entry point (to the executor registered for
/// `J`, tracked by the orchestrator it came from, if any). Every option set here is honoured
/// or the dispatch is rejected with a reason ([`Rejection::Invalid`]); none is ignored.
///
/// To reuse a configuration, write a function that takes and returns a builder.
///
/// ```
/// use core::time::Duration;
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{CachePolicy, DataSource, Dispatch, Dispatcher, Executor, Job, JobContext, RetryPolicy};
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
/// assert_eq!(rt.block_on(fetch()).unwrap().data_source, DataSource::Fresh);
/// assert_eq!(rt.block_on(fetch()).unwrap().data_source, DataSource::Cached);
/// ```
#[must_use = "a builder does nothing until `dispatch` is called"]
pub struct JobBuilder<'a, J: Job> {
    route: Route<'a>,
    job: J,
    options: JobOptions,
    extras: Extras<J>,
}

impl<'a, J: Job> JobBuilder<'a, J> {
    pub(crate) fn new(route: Route<'a>, job: J) -> Self {
        Self {
            route,
            job,
            options: JobOptions::new(),
            extras: Extras::none(),
        }
    }

    /// Sets the total time budget over all attempts and backoff sleeps.
    ///
    /// When it runs out, the work future is dropped and the job ends as
    /// [`JobError::TimedOut`]. The budget starts when the job's task first runs. A zero budget
    /// times out without running the executor (a cache hit too).
    pub fn timeout(mut self, budget: Duration) -> Self {
        self.options = self.options.with_timeout(budget);
        self
    }

    /// Sets a limit for each attempt; an attempt that outlives it fails with
    /// [`AttemptTimedOut`](crate::AttemptTimedOut) and may be retried.
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.options = self.options.with_attempt_timeout(limit);
        self
    }

    /// Sets the retry policy; see [`RetryPolicy`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options = self.options.with_retry(policy);
        self
    }

    /// Cancels the job when `token` is cancelled (a token cancelled already: the job ends as
    /// cancelled without running, whatever else it is: cache hit, dedup join).
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.options = self.options.with_cancellation(token);
        self
    }

    /// Publishes the job's events on `bus` instead of the dispatcher's bus.
    ///
    /// Through an orchestrator, the job always publishes on the orchestrator's bus (it must
    /// see the job's events); another bus there rejects the dispatch
    /// ([`Rejection::Invalid`]).
    pub fn bus(mut self, bus: SignalBus) -> Self {
        self.options = self.options.with_bus(bus);
        self
    }

    /// Turns [`JobLifecycle`](crate::JobLifecycle) events on or off for this dispatch, overriding the
    /// dispatcher's default.
    ///
    /// Through an orchestrator, a job publishes every lifecycle event but `Progress` unless
    /// turned on (it must see the terminal event); turning them off there rejects the
    /// dispatch ([`Rejection::Invalid`]).
    pub fn lifecycle_events(mut self, on: bool) -> Self {
        self.options = self.options.with_lifecycle_events(on);
        self
    }

    /// Delays the job: its first attempt runs no earlier than `delay` after the dispatch, on
    /// the runtime's clock. The wait can be cancelled like the work; the total budget
    /// ([`timeout`](Self::timeout)) starts when the job is due.
    ///
    /// A delayed dispatch cannot use the cache (a hit would answer before the job is due):
    /// the two together are rejected ([`Rejection::Invalid`]). A journaled job type keeps the
    /// due time across restarts (see [`Journal`](crate::Journal)).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.options = self.options.with_delay(delay);
        self
    }

    /// Numbers the job's first attempt `attempt` (at least 1) instead of 1, so that its
    /// retry policy continues where an earlier run of the same job stopped: a job resumed
    /// after a restart with 2 attempts behind it starts at attempt 3 and has
    /// `max_retries + 1 - 2` attempts left.
    pub fn first_attempt(mut self, attempt: u32) -> Self {
        self.options = self.options.with_first_attempt(attempt);
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

    /// Publishes `value`'s output event ([`Job::output_event`]) with
    /// [`DataSource::Optimistic`] before the work starts (and a `Placeholder` lifecycle event,
    /// if those are on). The handle still resolves with the real outcome.
    ///
    /// A job whose `output_event` makes no event for `value` cannot have a placeholder: the
    /// dispatch is rejected ([`Rejection::Invalid`]).
    pub fn placeholder(mut self, value: J::Output) -> Self {
        let set = self.extras.set_mut();
        match self.job.output_event(&value) {
            Some(payload) => {
                set.placeholder = Some(Placeholder {
                    event: Box::new(move |meta: Meta| {
                        let meta = Meta {
                            data_source: Some(DataSource::Optimistic),
                            ..meta
                        };
                        Event::build(payload, meta)
                    }),
                    value,
                });
            }
            None => set.invalid = Some("the placeholder value makes no output event"),
        }
        self
    }

    /// Dispatches the job and returns its handle at once; the work runs on the runtime.
    ///
    /// Never panics and never waits. Problems arrive through the handle as
    /// [`JobError::Rejected`]: no executor for `J` ([`Rejection::NoExecutor`], naming the
    /// type), a closed dispatcher, a disposed orchestrator, an invalid combination of options,
    /// or a runtime that refused the task.
    pub fn dispatch(self) -> JobHandle<J::Output> {
        dispatcher::dispatch(self.route, self.job, self.options, self.extras)
    }
}

impl<J: Job> JobBuilder<'_, J> {
    /// Takes `key` as this dispatch's dedup key without joining another: it runs, and while
    /// it is in flight the dispatches of `J` with [`dedup`](Self::dedup) and the same key join
    /// it. For a job whose output is not `Clone`, and for one that must run whatever is in
    /// flight (a stored job run again after a restart keeps the key it was dispatched with).
    pub fn dedup_lead(mut self, key: impl Into<Cow<'static, str>>) -> Self {
        self.extras.set_mut().dedup = Some(Dedup {
            key: key.into(),
            copy: None,
        });
        self
    }
}

impl<J: Job> JobBuilder<'_, J>
where
    J::Output: Clone + Sync,
{
    /// Caches the output under the policy's key; see [`CachePolicy`].
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
    /// A joined handle keeps its own cancellation: cancelling it, its token, or its own
    /// timeout detaches it (it resolves as cancelled or timed out) and leaves the job running
    /// for the others. A joined dispatch is not a job of its own: an orchestrator it was
    /// dispatched through does not track it (the job it joined is tracked by whoever
    /// dispatched that one).
    pub fn dedup(mut self, key: impl Into<Cow<'static, str>>) -> Self {
        self.extras.set_mut().dedup = Some(Dedup {
            key: key.into(),
            copy: Some(copy::<J::Output>),
        });
        self
    }
}

impl<J: Job> fmt::Debug for JobBuilder<'_, J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extras = self.extras.0.as_deref();
        f.debug_struct("JobBuilder")
            .field("job", &core::any::type_name::<J>())
            .field("options", &self.options)
            .field("tracked", &self.route.tracker.is_some())
            .field("causal_depth", &self.route.cause.depth)
            .field(
                "cache",
                &extras.and_then(|e| e.cache.as_ref()).map(|c| &c.policy),
            )
            .field(
                "placeholder",
                &extras.is_some_and(|e| e.placeholder.is_some()),
            )
            .field("dedup", &self.extras.dedup().map(|d| &d.key))
            .finish()
    }
}

impl<R> Sealed for Dispatcher<R> {
    fn route(&self) -> Route<'_> {
        Route::plain(self.inner())
    }

    fn dispatch_default<J: Job>(&self, job: J) -> JobHandle<J::Output> {
        self.inner().dispatch_default(job)
    }
}

impl Sealed for JobContext {
    fn route(&self) -> Route<'_> {
        let env = self.control.env();
        Route {
            via: match Inner::from_env(env) {
                Some(dispatcher) => Via::Owned(dispatcher),
                None => Via::Gone(env.clone()),
            },
            tracker: None,
            cause: self.control.cause().clone(),
            parent: Some(&*self.control),
        }
    }
}
