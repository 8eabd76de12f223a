//! Fake executors: canned behaviours that record every attempt they run.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use core::error::Error;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::time::Duration;

use crate::dispatch::context::JobContext;
use crate::dispatch::executor::Executor;
use crate::id::JobId;
use crate::job::Job;
use crate::progress::Progress;
use crate::sync::{Arc, Mutex};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a fake does with one attempt: the job (a clone), its context and the attempt's
/// number among every attempt this fake ran (1-based).
type Behaviour<J, E> =
    dyn Fn(J, JobContext, u32) -> BoxFuture<Result<<J as Job>::Output, E>> + Send + Sync;

/// An executor with a canned behaviour that records the jobs it receives.
///
/// Build one with a constructor ([`succeed`](Self::succeed), [`fail`](Self::fail),
/// [`fail_times`](Self::fail_times), [`never`](Self::never), [`progress`](Self::progress),
/// [`from_fn`](Self::from_fn)), keep its [`Recorder`] and register it like any executor.
/// Clones share the behaviour and the recorder. Name the job type when building one
/// (`FakeExecutor::<Charge>::succeed(30)`); the error type is then [`FakeError`], unless named
/// too (`FakeExecutor::<Charge, PaymentError>::fail(error)`).
///
/// Every attempt is recorded before the behaviour runs, with a clone of the job (so `J` must
/// be `Clone`), the job's id and the attempt's number: the recorder shows what was asked of
/// the executor while the jobs run and after.
///
/// ```
/// use orchestrator_core::testing::{FakeExecutor, VirtualRuntime};
/// use orchestrator_core::{Dispatch, Dispatcher, Job};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Greet(&'static str);
/// impl Job for Greet {
///     type Output = String;
/// }
///
/// let rt = VirtualRuntime::new();
/// let dispatcher = Dispatcher::new(rt.clone());
/// let fake = FakeExecutor::<Greet>::succeed("hello".to_string());
/// let recorder = fake.recorder();
/// dispatcher.register(fake);
/// let greeting = rt.block_on(dispatcher.dispatch(Greet("ada"))).unwrap();
/// assert_eq!(greeting.value, "hello");
/// assert_eq!(recorder.jobs(), [Greet("ada")]);
/// assert_eq!(recorder.attempts(), 1);
/// ```
pub struct FakeExecutor<J: Job, E = FakeError> {
    behaviour: Arc<Behaviour<J, E>>,
    recorder: Recorder<J>,
    description: Cow<'static, str>,
}

impl<J: Job, E> Clone for FakeExecutor<J, E> {
    fn clone(&self) -> Self {
        Self {
            behaviour: self.behaviour.clone(),
            recorder: self.recorder.clone(),
            description: self.description.clone(),
        }
    }
}

impl<J: Job> FakeExecutor<J> {
    /// Returns a fake whose every attempt succeeds at once with a clone of `value`.
    pub fn succeed(value: J::Output) -> Self
    where
        J::Output: Clone + Sync,
    {
        Self::with(
            "succeeds".into(),
            Box::new(move |_, _, _| {
                let value = value.clone();
                Box::pin(async move { Ok(value) })
            }),
        )
    }

    /// Returns a fake whose attempts never finish: they end only when the job is cancelled,
    /// times out or its attempt timeout fails it (the work future is then dropped).
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::testing::{FakeExecutor, VirtualRuntime, expect};
    /// use orchestrator_core::{Dispatch, Dispatcher, Job};
    ///
    /// #[derive(Clone)]
    /// struct Hang;
    /// impl Job for Hang {
    ///     type Output = ();
    /// }
    ///
    /// let rt = VirtualRuntime::new();
    /// let dispatcher = Dispatcher::new(rt.clone());
    /// dispatcher.register(FakeExecutor::<Hang>::never());
    /// let job = dispatcher.job(Hang).timeout(Duration::from_secs(30)).dispatch();
    /// let outcome = rt.block_on(job); // the virtual clock jumps to the deadline
    /// assert_eq!(expect::timed_out(&outcome), Ok(Duration::from_secs(30)));
    /// ```
    pub fn never() -> Self {
        Self::with(
            "never finishes".into(),
            Box::new(|_, _, _| Box::pin(core::future::pending())),
        )
    }

    /// Returns a fake whose every attempt reports progress in `steps` equal steps, sleeping
    /// `every` on the runtime's clock before each report, then succeeds with a clone of
    /// `value`.
    ///
    /// Step `k` reports `k / steps` with [`Progress::with_step`]`(k, steps)`; with `steps`
    /// zero it succeeds at once without a report.
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::testing::{FakeExecutor, VirtualRuntime};
    /// use orchestrator_core::{Dispatch, Dispatcher, Job};
    ///
    /// #[derive(Clone)]
    /// struct Upload;
    /// impl Job for Upload {
    ///     type Output = u32;
    /// }
    ///
    /// let rt = VirtualRuntime::new();
    /// let dispatcher = Dispatcher::new(rt.clone());
    /// dispatcher.register(FakeExecutor::<Upload>::progress(4, Duration::from_secs(1), 7));
    /// let job = dispatcher.dispatch(Upload);
    /// rt.advance(Duration::from_secs(2));
    /// assert_eq!(job.current_progress().unwrap().step(), Some((2, 4)));
    /// assert_eq!(rt.block_on(job).unwrap().value, 7);
    /// ```
    pub fn progress(steps: u32, every: Duration, value: J::Output) -> Self
    where
        J::Output: Clone + Sync,
    {
        Self::with(
            format!("reports progress in {steps} steps, then succeeds").into(),
            Box::new(move |_, cx, _| {
                let value = value.clone();
                Box::pin(async move {
                    for step in 1..=steps {
                        cx.sleep(every).await;
                        let fraction = f64::from(step) / f64::from(steps);
                        cx.report_progress(Progress::new(fraction).with_step(step, steps));
                    }
                    Ok(value)
                })
            }),
        )
    }
}

impl<J: Job, E: Error + Clone + Send + Sync + 'static> FakeExecutor<J, E> {
    /// Returns a fake whose every attempt fails at once with a clone of `error`.
    ///
    /// ```
    /// use orchestrator_core::testing::{FakeError, FakeExecutor, VirtualRuntime, expect};
    /// use orchestrator_core::{Dispatch, Dispatcher, Job, RetryPolicy};
    /// use core::time::Duration;
    ///
    /// #[derive(Clone)]
    /// struct Pay;
    /// impl Job for Pay {
    ///     type Output = ();
    /// }
    ///
    /// let rt = VirtualRuntime::new();
    /// let dispatcher = Dispatcher::new(rt.clone());
    /// let fake = FakeExecutor::<Pay, _>::fail(FakeError::new("card declined"));
    /// let recorder = fake.recorder();
    /// dispatcher.register(fake);
    /// let retried = dispatcher.job(Pay).retry(RetryPolicy::fixed(2, Duration::from_secs(1)));
    /// let outcome = rt.block_on(retried.dispatch());
    /// assert!(expect::failed_after(&outcome, 3, "card declined").is_ok());
    /// assert_eq!(recorder.attempts(), 3);
    /// assert_eq!(recorder.jobs().len(), 1, "one job, three attempts");
    /// ```
    pub fn fail(error: E) -> Self {
        Self::with(
            "fails".into(),
            Box::new(move |_, _, _| {
                let error = error.clone();
                Box::pin(async move { Err(error) })
            }),
        )
    }

    /// Returns a fake whose first `failures` attempts fail with a clone of `error` and whose
    /// later attempts succeed with a clone of `value`.
    ///
    /// The attempts are counted over everything this fake (and its clones) runs, whatever
    /// the job: with retries, one job fails `failures` times then succeeds; without, the
    /// first `failures` jobs fail.
    pub fn fail_times(failures: u32, error: E, value: J::Output) -> Self
    where
        J::Output: Clone + Sync,
    {
        Self::with(
            format!("fails {failures} times, then succeeds").into(),
            Box::new(move |_, _, attempt| {
                let outcome = if attempt <= failures {
                    Err(error.clone())
                } else {
                    Ok(value.clone())
                };
                Box::pin(async move { outcome })
            }),
        )
    }
}

impl<J: Job, E> FakeExecutor<J, E> {
    /// Returns a fake that runs `run` for every attempt, with a clone of the job and the
    /// attempt's context.
    ///
    /// ```
    /// use orchestrator_core::testing::{FakeError, FakeExecutor, VirtualRuntime};
    /// use orchestrator_core::{Dispatch, Dispatcher, Job};
    ///
    /// #[derive(Clone)]
    /// struct Double(u32);
    /// impl Job for Double {
    ///     type Output = u32;
    /// }
    ///
    /// let rt = VirtualRuntime::new();
    /// let dispatcher = Dispatcher::new(rt.clone());
    /// dispatcher.register(FakeExecutor::from_fn(|job: Double, _cx| async move {
    ///     job.0.checked_mul(2).ok_or(FakeError::new("overflow"))
    /// }));
    /// assert_eq!(rt.block_on(dispatcher.dispatch(Double(21))).unwrap().value, 42);
    /// assert!(rt.block_on(dispatcher.dispatch(Double(u32::MAX))).is_err());
    /// ```
    pub fn from_fn<F, Fut>(run: F) -> Self
    where
        F: Fn(J, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<J::Output, E>> + Send + 'static,
    {
        Self::with(
            "runs a closure".into(),
            Box::new(move |job, cx, _| Box::pin(run(job, cx))),
        )
    }

    fn with(description: Cow<'static, str>, behaviour: Box<Behaviour<J, E>>) -> Self {
        Self {
            behaviour: Arc::from(behaviour),
            recorder: Recorder::new(),
            description,
        }
    }

    /// Returns the recorder of this fake's attempts (shared with its clones).
    pub fn recorder(&self) -> Recorder<J> {
        self.recorder.clone()
    }
}

impl<J, E> Executor<J> for FakeExecutor<J, E>
where
    J: Job + Clone,
    E: Error + Send + Sync + 'static,
{
    type Error = E;

    fn execute(
        &self,
        job: &J,
        cx: JobContext,
    ) -> impl Future<Output = Result<J::Output, E>> + Send {
        let number = self.recorder.record(job.clone(), cx.job_id(), cx.attempt());
        let work = (self.behaviour)(job.clone(), cx, number);
        let recorder = self.recorder.clone();
        async move {
            let outcome = work.await;
            recorder.returned(outcome.is_ok());
            outcome
        }
    }
}

impl<J: Job, E> fmt::Debug for FakeExecutor<J, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeExecutor")
            .field("behaviour", &self.description)
            .field("recorder", &self.recorder)
            .finish()
    }
}

/// One attempt a [`FakeExecutor`] ran.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Call<J> {
    /// A clone of the job.
    pub job: J,
    /// The job's id.
    pub id: JobId,
    /// The attempt's number for this job (1 for the first; see
    /// [`JobContext::attempt`]).
    pub attempt: u32,
}

/// What a [`FakeExecutor`] received: every attempt, in the order they started.
///
/// A cheap, cloneable handle, readable from the test while jobs run and after.
pub struct Recorder<J> {
    inner: Arc<Mutex<Record<J>>>,
}

struct Record<J> {
    calls: Vec<Call<J>>,
    succeeded: u32,
    failed: u32,
}

impl<J> Clone for Recorder<J> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<J> Recorder<J> {
    fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Record {
                calls: Vec::new(),
                succeeded: 0,
                failed: 0,
            })),
        }
    }

    /// Records an attempt; returns its number among every attempt (1-based).
    fn record(&self, job: J, id: JobId, attempt: u32) -> u32 {
        self.inner.with(|r| {
            r.calls.push(Call { job, id, attempt });
            u32::try_from(r.calls.len()).unwrap_or(u32::MAX)
        })
    }

    fn returned(&self, ok: bool) {
        self.inner.with(|r| {
            if ok {
                r.succeeded += 1;
            } else {
                r.failed += 1;
            }
        });
    }

    /// Returns how many attempts started, over every job.
    pub fn attempts(&self) -> u32 {
        self.inner
            .with(|r| u32::try_from(r.calls.len()).unwrap_or(u32::MAX))
    }

    /// Returns how many attempts returned `Ok`.
    pub fn succeeded(&self) -> u32 {
        self.inner.with(|r| r.succeeded)
    }

    /// Returns how many attempts returned an error.
    pub fn failed(&self) -> u32 {
        self.inner.with(|r| r.failed)
    }

    /// Returns how many attempts started and have not returned: they are running, or their
    /// work was dropped (the job was cancelled or timed out).
    pub fn unfinished(&self) -> u32 {
        self.inner.with(|r| {
            let started = u32::try_from(r.calls.len()).unwrap_or(u32::MAX);
            started.saturating_sub(r.succeeded.saturating_add(r.failed))
        })
    }

    /// Returns the ids of the jobs received, each once, in the order of their first attempt.
    pub fn ids(&self) -> Vec<JobId> {
        self.inner.with(|r| {
            let mut ids: Vec<JobId> = Vec::new();
            for call in &r.calls {
                if !ids.contains(&call.id) {
                    ids.push(call.id);
                }
            }
            ids
        })
    }
}

impl<J: Clone> Recorder<J> {
    /// Returns every attempt, in the order they started.
    pub fn calls(&self) -> Vec<Call<J>> {
        self.inner.with(|r| r.calls.clone())
    }

    /// Returns the jobs received, each once (a retried job is listed at its first attempt),
    /// in the order of their first attempt.
    pub fn jobs(&self) -> Vec<J> {
        self.inner.with(|r| {
            let mut seen: Vec<JobId> = Vec::new();
            let mut jobs = Vec::new();
            for call in &r.calls {
                if !seen.contains(&call.id) {
                    seen.push(call.id);
                    jobs.push(call.job.clone());
                }
            }
            jobs
        })
    }

    /// Returns the job of the latest attempt, if any.
    pub fn last_job(&self) -> Option<J> {
        self.inner.with(|r| r.calls.last().map(|c| c.job.clone()))
    }
}

impl<J> fmt::Debug for Recorder<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (attempts, succeeded, failed) =
            self.inner.with(|r| (r.calls.len(), r.succeeded, r.failed));
        f.debug_struct("Recorder")
            .field("attempts", &attempts)
            .field("succeeded", &succeeded)
            .field("failed", &failed)
            .finish()
    }
}

/// The error of the fakes that fail: a message.
///
/// ```
/// use orchestrator_core::testing::FakeError;
/// let error = FakeError::new("connection reset");
/// assert_eq!(error.to_string(), "connection reset");
/// assert_eq!(error.message(), "connection reset");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeError {
    message: Cow<'static, str>,
}

impl FakeError {
    /// Creates an error with `message`.
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Returns the message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for FakeError {}
