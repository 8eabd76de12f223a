//! Executors: the *how* of a job type.

use core::future::Future;

use crate::job::Job;
use crate::sync::Arc;

use super::context::JobContext;

/// Runs jobs of type `J`.
///
/// Register one per job type on a [`Dispatcher`](crate::Dispatcher). `execute` is called once
/// per attempt with the job (borrowed, so it can be retried) and a [`JobContext`] for progress,
/// cancellation checks and runtime-agnostic sleeping. The future it returns may be dropped at
/// any `.await` point (cancellation, timeout): keep cleanup in `Drop` impls.
///
/// An implementation may be written with `async fn`:
///
/// ```
/// use orchestrator_core::{Executor, Job, JobContext};
///
/// struct Double(u32);
/// impl Job for Double {
///     type Output = u32;
/// }
///
/// #[derive(Debug)]
/// struct TooBig;
/// impl core::fmt::Display for TooBig {
///     fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
///         f.write_str("too big")
///     }
/// }
/// impl core::error::Error for TooBig {}
///
/// struct Doubler;
/// impl Executor<Double> for Doubler {
///     type Error = TooBig;
///     async fn execute(&self, job: &Double, cx: JobContext) -> Result<u32, TooBig> {
///         cx.report_progress(0.5);
///         job.0.checked_mul(2).ok_or(TooBig)
///     }
/// }
/// ```
pub trait Executor<J: Job>: Send + Sync + 'static {
    /// The executor's own error type.
    type Error: core::error::Error + Send + Sync + 'static;

    /// Runs one attempt of `job`.
    fn execute(
        &self,
        job: &J,
        cx: JobContext,
    ) -> impl Future<Output = Result<J::Output, Self::Error>> + Send;
}

/// An executor shared behind an `Arc` is an executor: one value can serve several job types
/// (`dispatcher.register::<A, _>(shared.clone())`).
impl<J: Job, E: Executor<J>> Executor<J> for Arc<E> {
    type Error = E::Error;

    fn execute(
        &self,
        job: &J,
        cx: JobContext,
    ) -> impl Future<Output = Result<J::Output, Self::Error>> + Send {
        (**self).execute(job, cx)
    }
}
