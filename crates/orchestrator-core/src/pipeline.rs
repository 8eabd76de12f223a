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
//! 1. The attempts and backoff sleeps run inside one `work` future, raced against the cancel
//!    request, the token and the budget's deadline ([`Race`]). Whichever wins, `work` is
//!    dropped *before* the outcome is recorded, so no attempt runs after the handle resolved.
//! 2. On a tie within one poll, cancellation wins over completion, and completion over the
//!    deadline.
//! 3. The outcome is recorded exactly once, by [`Completer`]; if the task is dropped before
//!    it finished, even before its first poll (the runtime shut down), the completer records
//!    `Cancelled` instead. A runtime that refuses the task returns it in its `SpawnError`,
//!    so the dispatcher records the rejection first.
//! 4. Panics are caught per attempt (with `std`) and never retried.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use core::error::Error;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use pin_project_lite::pin_project;

use crate::cancel::{CancellationToken, WaitForCancellation};
use crate::executor::{Executor, JobContext};
use crate::handle::{JobControl, JobShared};
use crate::job::{Job, JobOptions};
use crate::outcome::{AttemptTimedOut, DataSource, Failure, JobError, Panicked, Success};
use crate::runtime::{Runtime, Sleep, Task};
use crate::sync::Arc;

type Outcome<T> = Result<Success<T>, JobError>;

/// Builds the task for one dispatch of `job` on `executor`.
pub(crate) fn job_task<J: Job, E: Executor<J>>(
    executor: Arc<E>,
    job: J,
    shared: Arc<JobShared<J::Output>>,
    options: JobOptions,
    runtime: Arc<dyn Runtime>,
) -> Task {
    // Armed before the first poll: a task dropped unpolled still resolves its handle.
    let completer = Completer(Some(shared));
    Box::pin(async move {
        let completer = completer;
        let Some(shared) = completer.0.as_ref() else {
            return;
        };
        let outcome = run(&*executor, &job, shared, &options, &runtime).await;
        completer.complete(outcome);
    })
}

/// Records the outcome exactly once, even if the task is dropped half-way.
struct Completer<T>(Option<Arc<JobShared<T>>>);

impl<T> Completer<T> {
    fn complete(mut self, outcome: Outcome<T>) {
        if let Some(shared) = self.0.take() {
            shared.complete(outcome);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.complete(Err(JobError::cancelled(Some(Cow::Borrowed(
                "the runtime dropped the job's task",
            )))));
        }
    }
}

async fn run<J: Job, E: Executor<J>>(
    executor: &E,
    job: &J,
    shared: &Arc<JobShared<J::Output>>,
    options: &JobOptions,
    runtime: &Arc<dyn Runtime>,
) -> Outcome<J::Output> {
    let token = options.cancellation();
    if let Some(token) = token.filter(|t| t.is_cancelled()) {
        return Err(JobError::cancelled(token.reason()));
    }
    if let Some(reason) = shared.cancel_reason() {
        return Err(JobError::cancelled(reason));
    }
    let budget = options.timeout();
    if budget == Some(Duration::ZERO) {
        return Err(JobError::TimedOut {
            budget: Duration::ZERO,
        });
    }
    Race {
        shared,
        token,
        token_wait: token.map(CancellationToken::cancelled),
        work: attempts(executor, job, shared, options, runtime),
        deadline: budget.map(|b| (runtime.sleep(b), b)),
    }
    .await
}

fn cancel_outcome<T>(shared: &JobShared<T>, token: Option<&CancellationToken>) -> JobError {
    match token.filter(|t| t.is_cancelled()) {
        Some(token) => JobError::cancelled(token.reason()),
        None => JobError::cancelled(shared.cancel_reason().flatten()),
    }
}

/// Runs attempts and backoff sleeps until success, a final failure, or a panic.
async fn attempts<J: Job, E: Executor<J>>(
    executor: &E,
    job: &J,
    shared: &Arc<JobShared<J::Output>>,
    options: &JobOptions,
    runtime: &Arc<dyn Runtime>,
) -> Outcome<J::Output> {
    let control: Arc<dyn JobControl> = shared.clone();
    let mut attempt = 1u32;
    loop {
        let cx = JobContext::new(
            control.clone(),
            options.cancellation().cloned(),
            runtime.clone(),
            attempt,
        );
        let error: Arc<dyn Error + Send + Sync> = match catch_panic(|| executor.execute(job, cx)) {
            Err(panicked) => return Err(failed(panicked, attempt)),
            Ok(work) => {
                let work = CatchUnwind { inner: work };
                let result = match options.attempt_timeout() {
                    None => work.await,
                    Some(limit) => match (Timeout {
                        inner: work,
                        sleep: runtime.sleep(limit),
                    })
                    .await
                    {
                        Some(result) => result,
                        None => Ok(Err(AttemptError::TimedOut(AttemptTimedOut { limit }))),
                    },
                };
                match result {
                    Ok(Ok(value)) => {
                        return Ok(Success {
                            value,
                            source: DataSource::Fresh,
                        });
                    }
                    Ok(Err(AttemptError::Executor(e))) => Arc::new(e),
                    Ok(Err(AttemptError::TimedOut(e))) => Arc::new(e),
                    Err(panicked) => return Err(failed(panicked, attempt)),
                }
            }
        };
        let retry = options
            .retry()
            .filter(|policy| policy.should_retry(&*error as &(dyn Error + 'static), attempt));
        let Some(policy) = retry else {
            return Err(JobError::Failed(Failure::new(error, attempt)));
        };
        let delay = policy.jittered_delay(attempt - 1, shared_seed(shared));
        if !delay.is_zero() {
            runtime.sleep(delay).await;
        }
        attempt += 1;
    }
}

fn shared_seed<T: Send + 'static>(shared: &Arc<JobShared<T>>) -> u64 {
    JobControl::id(&**shared).as_u64()
}

fn failed(panicked: Panicked, attempt: u32) -> JobError {
    JobError::Failed(Failure::new(Arc::new(panicked), attempt))
}

/// The error of one attempt.
enum AttemptError<E> {
    Executor(E),
    TimedOut(AttemptTimedOut),
}

pin_project! {
    /// Races the work against the cancel request, the token and the deadline.
    struct Race<'a, T, W> {
        shared: &'a JobShared<T>,
        token: Option<&'a CancellationToken>,
        #[pin]
        token_wait: Option<WaitForCancellation<'a>>,
        #[pin]
        work: W,
        deadline: Option<(Sleep, Duration)>,
    }
}

impl<T: Send + 'static, W: Future<Output = Outcome<T>>> Future for Race<'_, T, W> {
    type Output = Outcome<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T>> {
        let this = self.project();
        if let Poll::Ready(reason) = this.shared.poll_cancel_request(cx) {
            return Poll::Ready(Err(JobError::cancelled(reason)));
        }
        if let Some(wait) = this.token_wait.as_pin_mut() {
            if wait.poll(cx).is_ready() {
                return Poll::Ready(Err(cancel_outcome(this.shared, *this.token)));
            }
        }
        if let Poll::Ready(outcome) = this.work.poll(cx) {
            return Poll::Ready(outcome);
        }
        if let Some((sleep, budget)) = this.deadline {
            if sleep.as_mut().poll(cx).is_ready() {
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
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

pin_project! {
    /// Turns a panic while polling `inner` into `Err(Panicked)` (with `std`).
    struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<T, E, F: Future<Output = Result<T, E>>> Future for CatchUnwind<F> {
    type Output = Result<Result<T, AttemptError<E>>, Panicked>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch_panic(move || inner.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r.map_err(AttemptError::Executor))),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

#[cfg(feature = "std")]
fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, Panicked> {
    std::panic::catch_unwind(core::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            alloc::string::String::from(*s)
        } else if let Some(s) = payload.downcast_ref::<alloc::string::String>() {
            s.clone()
        } else {
            alloc::string::String::from("<non-string panic payload>")
        };
        Panicked::new(message)
    })
}

#[cfg(not(feature = "std"))]
fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, Panicked> {
    Ok(f())
}
