//! The job pipeline: one task per dispatch that runs attempts under a budget.
//!
//! # State machine
//!
//! ```text
//!             ┌─ token cancelled / cancel requested ─────────────▶ Cancelled
//! Start ──────┼─ zero budget ────────────────────────────────────▶ TimedOut
//!             └─▶ Attempt(n) ──ok──────────────────────────────▶ Succeeded
//!                   │  └──err, panic or attempt timeout──▶ should retry?
//!                   │                      no ─────────────────▶ Failed(n)
//!                   │                      yes ─▶ Backoff(n) ─▶ Attempt(n+1)
//!                   └─ (any time) cancel ───────────────────────▶ Cancelled
//!                   └─ (any time) budget expired ───────────────▶ TimedOut
//! ```
//!
//! Invariants:
//!
//! 1. The attempts and backoff sleeps run inside one `work` future, raced against the handle's
//!    cancel request ([`Cancellable`]) and the token and the budget's deadline ([`Race`]).
//!    Whichever wins, `work` is dropped *before* the outcome is recorded, so no attempt runs
//!    after the handle resolved.
//! 2. On a tie within one poll, cancellation (token, then handle) wins over completion, and
//!    completion over the deadline.
//! 3. The outcome is recorded exactly once, by [`Completer`]; if the task is dropped before
//!    it finished, even before its first poll (the runtime shut down), the completer records
//!    `Cancelled` instead. A runtime that refuses the task returns it in its `SpawnError`,
//!    so the dispatcher records the rejection first.
//! 4. Panics are caught per attempt (with `std`) and never retried.
//! 5. A dispatch without options runs a smaller task ([`PlainAttempt`]: one attempt raced
//!    against the handle's cancel request); its behaviour is the full pipeline's with every
//!    option off.
//! 6. Nothing here requires `Send`: a task is `Send` exactly when its executor's future is,
//!    so the threaded flavour (an `Executor`, seen through `Threaded`) and the local one (a
//!    `LocalExecutor`) run the same pipeline.

use alloc::borrow::Cow;
use core::error::Error;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use pin_project_lite::pin_project;

use crate::cache::{CacheEntry, CacheError};
use crate::cancel::{CancellationToken, WaitForCancellation};
use crate::job::Job;
use crate::lifecycle::JobLifecycle;
use crate::outcome::{
    AttemptTimedOut, DataSource, Failure, JobError, Panicked, Rejection, Success,
};
use crate::runtime::{Sleep, YieldNow};
use crate::sync::Arc;
use crate::trace;

use super::context::JobContext;
use super::executor::LocalExecutor;
use super::journal::{Ending, Journal, not_stored};
use super::options::{CacheSpec, JobOptions, pre_check};
use super::shared::JobShared;

type Outcome<T> = Result<Success<T>, JobError>;

/// Returns `true` if a dispatch with these options runs the smaller task of
/// [`plain_task`] rather than [`full_task`].
pub(crate) fn is_plain<J: Job>(options: &JobOptions, cache: Option<&CacheSpec<J>>) -> bool {
    options.is_plain() && cache.is_none()
}

/// The future of a dispatch without options (the common case): one attempt raced against
/// the handle's cancel request only. It is small, so the runtime's task holds it inline.
///
/// It is `Send` exactly when the executor's future is: the threaded and the local flavours
/// spawn the same future.
pub(crate) fn plain_task<J: Job, E: LocalExecutor<J>>(
    executor: Arc<E>,
    job: J,
    shared: Arc<JobShared<J::Output>>,
) -> impl Future<Output = ()> + 'static {
    // Armed before the first poll: a task dropped unpolled still resolves its handle.
    let completer = Completer(Some(shared));
    async move {
        let Some(shared) = completer.0.as_ref() else {
            return;
        };
        started(shared);
        // One attempt, no limit, raced against the handle's cancel request: one future
        // (`PlainAttempt`) instead of `Cancellable` around `Attempt`, so one poll level and a
        // smaller task for the runtime. The executor's future is made at the attempt's first
        // poll, so no local of this block holds it across the await.
        let start = || {
            trace::attempt(1);
            executor.execute(&job, JobContext::new(shared.clone(), 1))
        };
        let outcome = PlainAttempt::Start {
            shared,
            start: Some(start),
        }
        .await;
        finish(completer, &job, outcome);
    }
}

/// The future of any other dispatch: the full pipeline (cache, token, budget, retries). The
/// caller boxes it ([`Task`](crate::runtime::Task) or [`LocalTask`](crate::runtime::LocalTask)),
/// so that a plain dispatch's task stays small.
pub(crate) fn full_task<J: Job, E: LocalExecutor<J>>(
    executor: Arc<E>,
    job: J,
    shared: Arc<JobShared<J::Output>>,
    options: JobOptions,
    cache: Option<CacheSpec<J>>,
    journal: Option<Arc<dyn Journal<J>>>,
) -> impl Future<Output = ()> + 'static {
    let completer = Completer(Some(shared));
    async move {
        let completer = completer;
        let Some(shared) = completer.0.as_ref() else {
            return;
        };
        if !cache.as_ref().is_some_and(|spec| spec.looked_up) {
            started(shared); // (a looked-up dispatch was announced by the dispatcher)
        }
        let journal = journal.as_deref();
        if let Some(journal) = journal {
            // A journaled job runs only once it is stored; a failed write rejects it.
            if let Some(receipt) = shared.receipt() {
                if let Err(error) = core::future::poll_fn(|cx| receipt.poll_stored(cx)).await {
                    let rejection = Rejection::NotStored {
                        job_type: core::any::type_name::<J>(),
                        reason: not_stored(&error),
                    };
                    let outcome = Err(JobError::Rejected(rejection));
                    let outcome = journaled_end(journal, shared, outcome).await;
                    finish(completer, &job, outcome);
                    return;
                }
            }
        }
        let outcome = match cache {
            None => run(&*executor, &job, shared, &options, journal).await,
            Some(spec) => cached(&*executor, &job, shared, &options, &spec, journal).await,
        };
        if let Some(journal) = journal {
            let outcome = journaled_end(journal, shared, outcome).await;
            finish(completer, &job, outcome);
            return;
        }
        finish(completer, &job, outcome);
    }
}

/// Tells a journal how a job ended and waits for its write; an outcome the journal could not
/// store is still the handle's (the job stays in the journal, which runs it again after a
/// restart).
async fn journaled_end<J: Job>(
    journal: &dyn Journal<J>,
    shared: &Arc<JobShared<J::Output>>,
    outcome: Outcome<J::Output>,
) -> Outcome<J::Output> {
    let interrupted =
        matches!(&outcome, Err(JobError::Cancelled { .. })) && shared.env().jobs.is_cancelled();
    let ending = if interrupted {
        Ending::Interrupted
    } else {
        Ending::Outcome(&outcome)
    };
    let cx = JobContext::new(shared.clone(), 0);
    // An error is the journal's to report: the job's outcome stands.
    let _ = journal.finish(shared.id(), ending, &cx).await;
    outcome
}

/// The pipeline of a cached dispatch: lookup, then (on a miss, or to revalidate) the full
/// pipeline, then storing a fresh success.
async fn cached<J: Job, E: LocalExecutor<J>>(
    executor: &E,
    job: &J,
    shared: &Arc<JobShared<J::Output>>,
    options: &JobOptions,
    spec: &CacheSpec<J>,
    journal: Option<&dyn Journal<J>>,
) -> Outcome<J::Output> {
    if let Some(end) = pre_check(options) {
        return Err(end);
    }
    let provider = shared.env().cache.clone();
    let key = spec.policy.key();
    if !spec.policy.is_force_refresh() && !spec.looked_up {
        if let Some(hit) = lookup(shared, spec) {
            if !spec.policy.is_revalidate() {
                return Ok(hit);
            }
            // Stale-while-revalidate: the cached value now, the fresh one when it comes.
            publish_output_event(job, &hit, shared);
            shared.resolve(Ok(hit));
        }
    }
    let outcome = run(executor, job, shared, options, journal).await;
    if let Ok(success) = &outcome {
        let now = shared.runtime_arc().now();
        let entry = CacheEntry {
            value: (spec.store)(&success.value),
            expires_at: spec.policy.ttl().map(|ttl| now.saturating_add(ttl)),
        };
        if let Err(error) = provider.put(key, entry, now) {
            cache_error(shared, key, &error);
        }
    }
    outcome
}

/// Looks the policy's key up; a hit is announced (`CacheHit`) and returned as `Cached` data.
/// A provider error is reported to the observers and is a miss.
pub(crate) fn lookup<J: Job>(
    shared: &JobShared<J::Output>,
    spec: &CacheSpec<J>,
) -> Option<Success<J::Output>> {
    let key = spec.policy.key();
    let now = shared.runtime_arc().now();
    let value = match shared.env().cache.get(key, now) {
        Ok(entry) => entry.and_then(|entry| (spec.load)(&entry.value))?,
        Err(error) => {
            cache_error(shared, key, &error);
            return None;
        }
    };
    shared.lifecycle(|| JobLifecycle::CacheHit);
    Some(Success {
        value,
        data_source: DataSource::Cached,
    })
}

fn cache_error<T: Send + 'static>(shared: &JobShared<T>, key: &str, error: &CacheError) {
    let info = shared.info();
    shared
        .env()
        .observers
        .each(|o| o.on_cache_error(&info, key, error));
}

/// Publishes the job's output event ([`Job::output_event`]), if it makes one, before the
/// outcome is recorded.
pub(crate) fn publish_output_event<J: Job>(
    job: &J,
    success: &Success<J::Output>,
    shared: &JobShared<J::Output>,
) {
    if let Some(payload) = job.output_event(&success.value) {
        shared.publish_reported(shared.event(payload, Some(success.data_source)));
    }
}

/// Reports the start of the job's task to observers and (if on) as a lifecycle event.
pub(crate) fn started<T: Send + 'static>(shared: &JobShared<T>) {
    if shared.env().observers.any() {
        let info = shared.info();
        shared.env().observers.each(|o| o.on_job_start(&info));
    }
    shared.lifecycle(|| JobLifecycle::Started);
}

/// Runs the success hook, then records the outcome.
fn finish<J: Job>(completer: Completer<J::Output>, job: &J, outcome: Outcome<J::Output>) {
    trace::outcome(&outcome);
    if let (Ok(success), Some(shared)) = (&outcome, &completer.0) {
        publish_output_event(job, success, shared);
    }
    completer.complete(outcome);
}

/// Records the outcome exactly once, even if the task is dropped half-way.
struct Completer<T>(Option<Arc<JobShared<T>>>);

impl<T> Completer<T> {
    fn complete(mut self, outcome: Outcome<T>) {
        let shared = self.0.take();
        // Nothing is left to drop: skip the drop guard's check.
        core::mem::forget(self);
        if let Some(shared) = shared {
            shared.complete(outcome);
        }
    }
}

impl<T> Drop for Completer<T> {
    #[inline]
    fn drop(&mut self) {
        // Usually the outcome was recorded: nothing to do, inline.
        if let Some(shared) = self.0.take() {
            dropped_unfinished(&shared);
        }
    }
}

/// Records that the runtime dropped a job's task before it finished.
#[cold]
#[inline(never)]
fn dropped_unfinished<T>(shared: &JobShared<T>) {
    shared.complete(Err(JobError::cancelled(Some(Cow::Borrowed(
        "the runtime dropped the job's task",
    )))));
}

/// The full pipeline: pre-checks, then attempts raced against token and budget.
async fn run<J: Job, E: LocalExecutor<J>>(
    executor: &E,
    job: &J,
    shared: &Arc<JobShared<J::Output>>,
    options: &JobOptions,
    journal: Option<&dyn Journal<J>>,
) -> Outcome<J::Output> {
    let token = options.cancellation();
    if let Some(token) = token.filter(|t| t.is_cancelled()) {
        return Err(JobError::cancelled(token.reason()));
    }
    let budget = options.timeout();
    if budget == Some(Duration::ZERO) {
        return Err(JobError::TimedOut {
            budget: Duration::ZERO,
        });
    }
    if let Some(delay) = options.delay().filter(|d| !d.is_zero()) {
        // Not due yet: wait, cancellable like the work; the budget starts when it is due.
        Race {
            token,
            token_wait: token.map(CancellationToken::cancelled),
            inner: Cancellable {
                shared,
                work: async {
                    shared.runtime_arc().sleep(delay).await;
                    Ok(Success {
                        value: (),
                        data_source: DataSource::Fresh,
                    })
                },
            },
            deadline: None,
        }
        .await?;
    }
    Race {
        token,
        token_wait: token.map(CancellationToken::cancelled),
        inner: Cancellable {
            shared,
            work: attempts(executor, job, shared, options, journal),
        },
        deadline: budget.map(|b| (shared.runtime_arc().sleep(b), b)),
    }
    .await
}

/// Runs attempts and backoff sleeps until success, a final failure, or a panic.
async fn attempts<J: Job, E: LocalExecutor<J>>(
    executor: &E,
    job: &J,
    shared: &Arc<JobShared<J::Output>>,
    options: &JobOptions,
    journal: Option<&dyn Journal<J>>,
) -> Outcome<J::Output> {
    let mut attempt = options.first_attempt();
    loop {
        let recorded = match journal {
            None => Ok(()),
            Some(journal) => journal.attempt(shared.id(), attempt).await,
        };
        let failure = match recorded {
            Err(error) if error.is_fatal() => {
                let attempts = attempt.saturating_sub(1);
                return Err(JobError::Failed(Failure::new(Arc::new(error), attempts)));
            }
            Err(error) => AttemptFailure::Error(Arc::new(error)),
            Ok(()) => {
                match one_attempt(executor, job, shared, attempt, options.attempt_timeout()).await {
                    Ok(success) => return Ok(success),
                    Err(failure) => failure,
                }
            }
        };
        let retry = match &failure {
            AttemptFailure::Error(error) => options
                .retry()
                .filter(|policy| policy.should_retry(&**error as &(dyn Error + 'static), attempt)),
            AttemptFailure::Panicked(_) => None,
        };
        let Some(policy) = retry else {
            return Err(failure.into_job_error(attempt));
        };
        let delay = policy.jittered_delay(attempt - 1, shared.id().as_u64());
        retrying(shared, attempt, delay, &failure);
        if let (Some(journal), AttemptFailure::Error(error)) = (journal, &failure) {
            let recorded =
                journal.retrying(shared.id(), attempt, &**error as &(dyn Error + 'static));
            // A failed write does not stop the retry (the attempt may then run again after a
            // crash, which at-least-once allows).
            let _ = recorded.await;
        }
        if delay.is_zero() {
            // Attempts that fail without awaiting must still let the budget and cancellation
            // be seen between them.
            YieldNow::new().await;
        } else {
            shared.runtime_arc().sleep(delay).await;
        }
        attempt = attempt.saturating_add(1);
    }
}

/// Reports a retry to observers and (if on) as a lifecycle event.
fn retrying<T: Send + 'static>(
    shared: &JobShared<T>,
    attempt: u32,
    delay: Duration,
    failure: &AttemptFailure,
) {
    let AttemptFailure::Error(error) = failure else {
        return;
    };
    trace::retry(attempt, delay, &**error as &(dyn Error + 'static));
    if shared.env().observers.any() {
        let info = shared.info();
        shared
            .env()
            .observers
            .each(|o| o.on_job_retry(&info, attempt, delay, &**error as &(dyn Error + 'static)));
    }
    shared.lifecycle(|| JobLifecycle::Retrying {
        attempt,
        delay,
        error: error.clone(),
    });
}

/// Why one attempt did not succeed.
enum AttemptFailure {
    /// The executor's error, or an [`AttemptTimedOut`].
    Error(Arc<dyn Error + Send + Sync>),
    /// The executor panicked (never retried).
    Panicked(Panicked),
}

impl AttemptFailure {
    fn into_job_error(self, attempts: u32) -> JobError {
        let error: Arc<dyn Error + Send + Sync> = match self {
            AttemptFailure::Error(error) => error,
            AttemptFailure::Panicked(panicked) => Arc::new(panicked),
        };
        JobError::Failed(Failure::new(error, attempts))
    }
}

/// Runs attempt number `attempt`, under `limit` if given, catching panics (with `std`).
async fn one_attempt<J: Job, E: LocalExecutor<J>>(
    executor: &E,
    job: &J,
    shared: &Arc<JobShared<J::Output>>,
    attempt: u32,
    limit: Option<Duration>,
) -> Result<Success<J::Output>, AttemptFailure> {
    let work = Attempt::Start {
        start: Some(|| {
            trace::attempt(attempt);
            executor.execute(job, JobContext::new(shared.clone(), attempt))
        }),
    };
    let result = match limit {
        None => work.await,
        Some(limit) => {
            let sleep = shared.runtime_arc().sleep(limit);
            match (Timeout { inner: work, sleep }).await {
                Some(result) => result,
                None => return Err(AttemptFailure::Error(Arc::new(AttemptTimedOut { limit }))),
            }
        }
    };
    settle(result)
}

/// What one attempt came to: the executor's value, its error, or its panic.
#[inline]
fn settle<T, E: Error + Send + Sync + 'static>(
    result: Result<Result<T, E>, Panicked>,
) -> Result<Success<T>, AttemptFailure> {
    match result {
        Ok(Ok(value)) => Ok(Success {
            value,
            data_source: DataSource::Fresh,
        }),
        Ok(Err(error)) => Err(AttemptFailure::Error(Arc::new(error))),
        Err(panicked) => Err(AttemptFailure::Panicked(panicked)),
    }
}

pin_project! {
    /// Races `work` against the handle's cancel request (and the dispatcher's shutdown);
    /// resolves to `Err(cancelled)` if cancel wins.
    struct Cancellable<'a, T, W> {
        shared: &'a Arc<JobShared<T>>,
        #[pin]
        work: W,
    }
}

impl<T: Send + 'static, W: Future> Future for Cancellable<'_, T, W> {
    type Output = Result<W::Output, JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // A request made before this poll wins; the flag spares the lock when there is none.
        if this.shared.may_be_cancelled() {
            if let Poll::Ready(reason) = this.shared.poll_cancel_request(cx) {
                return Poll::Ready(Err(JobError::cancelled(reason)));
            }
        }
        if let Poll::Ready(outcome) = this.work.poll(cx) {
            return Poll::Ready(Ok(outcome));
        }
        // Still running: register for a later cancel request, catching one made meanwhile.
        match this.shared.poll_cancel_request(cx) {
            Poll::Ready(reason) => Poll::Ready(Err(JobError::cancelled(reason))),
            Poll::Pending => Poll::Pending,
        }
    }
}

pin_project! {
    /// The plain task's one attempt raced against the handle's cancel request: what
    /// [`Cancellable`] around [`Attempt`] does, in one future that yields the job's outcome.
    #[project = PlainAttemptProj]
    enum PlainAttempt<'a, T, S, F> {
        Start { shared: &'a Arc<JobShared<T>>, start: Option<S> },
        Running { shared: &'a Arc<JobShared<T>>, #[pin] work: F },
    }
}

impl<'a, T, S, F, E> Future for PlainAttempt<'a, T, S, F>
where
    T: Send + 'static,
    S: FnOnce() -> F,
    F: Future<Output = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    type Output = Outcome<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T>> {
        let (PlainAttempt::Start { shared, .. } | PlainAttempt::Running { shared, .. }) = *self;
        if shared.may_be_cancelled() {
            if let Poll::Ready(reason) = shared.poll_cancel_request(cx) {
                return Poll::Ready(Err(JobError::cancelled(reason)));
            }
        }
        if let PlainAttemptProj::Start { start, .. } = self.as_mut().project() {
            let Some(start) = start.take() else {
                return Poll::Pending;
            };
            match catch_panic(start) {
                Ok(work) => self.as_mut().set(PlainAttempt::Running { shared, work }),
                Err(panicked) => {
                    return Poll::Ready(Err(AttemptFailure::Panicked(panicked).into_job_error(1)));
                }
            }
        }
        let PlainAttemptProj::Running { work, .. } = self.project() else {
            return Poll::Pending;
        };
        let polled = {
            let cx = &mut *cx;
            catch_panic(move || work.poll(cx))
        };
        let result = match polled {
            Ok(Poll::Ready(result)) => Ok(result),
            Err(panicked) => Err(panicked),
            Ok(Poll::Pending) => {
                return match shared.poll_cancel_request(cx) {
                    Poll::Ready(reason) => Poll::Ready(Err(JobError::cancelled(reason))),
                    Poll::Pending => Poll::Pending,
                };
            }
        };
        Poll::Ready(settle(result).map_err(|failure| failure.into_job_error(1)))
    }
}

pin_project! {
    /// Races the cancellable work against the token and the deadline.
    struct Race<'a, I> {
        token: Option<&'a CancellationToken>,
        #[pin]
        token_wait: Option<WaitForCancellation<'a>>,
        #[pin]
        inner: I,
        deadline: Option<(Sleep, Duration)>,
    }
}

impl<T, I: Future<Output = Result<Outcome<T>, JobError>>> Future for Race<'_, I> {
    type Output = Outcome<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T>> {
        let this = self.project();
        if let (Some(wait), Some(token)) = (this.token_wait.as_pin_mut(), this.token) {
            if wait.poll(cx).is_ready() {
                return Poll::Ready(Err(JobError::cancelled(token.reason())));
            }
        }
        if let Poll::Ready(outcome) = this.inner.poll(cx) {
            return Poll::Ready(outcome.and_then(|outcome| outcome));
        }
        if let Some((sleep, budget)) = this.deadline {
            if Pin::new(sleep).poll(cx).is_ready() {
                return Poll::Ready(Err(JobError::TimedOut { budget: *budget }));
            }
        }
        Poll::Pending
    }
}

pin_project! {
    /// Resolves to `None` if `sleep` finishes first.
    struct Timeout<F> {
        #[pin]
        inner: F,
        sleep: Sleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(Some(out));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

pin_project! {
    /// One attempt whose future is made by `start` at the first poll: a panic while making it
    /// or polling it becomes `Err(Panicked)` (with `std`).
    #[project = AttemptProj]
    enum Attempt<S, F> {
        Start { start: Option<S> },
        Running { #[pin] work: F },
    }
}

impl<S, F, T, E> Future for Attempt<S, F>
where
    S: FnOnce() -> F,
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<Result<T, E>, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let AttemptProj::Start { start } = self.as_mut().project() {
            let Some(start) = start.take() else {
                // Only after it resolved (the start panicked): never polled again.
                return Poll::Pending;
            };
            match catch_panic(start) {
                Ok(work) => self.as_mut().set(Attempt::Running { work }),
                Err(panicked) => return Poll::Ready(Err(panicked)),
            }
        }
        match self.project() {
            AttemptProj::Running { work } => match catch_panic(move || work.poll(cx)) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(result)) => Poll::Ready(Ok(result)),
                Err(panicked) => Poll::Ready(Err(panicked)),
            },
            AttemptProj::Start { .. } => Poll::Pending,
        }
    }
}

fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, Panicked> {
    crate::panic::catch(f).map_err(Panicked::new)
}
