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

/// Runs jobs of type `J` on a single-threaded host: an [`Executor`] that need not be `Send`
/// or `Sync`, whose futures need not be `Send` either. It may hold an `Rc`, a `RefCell`, or
/// a JavaScript value, and await a `JsFuture`.
///
/// Register one with [`Dispatcher::register_local`](crate::Dispatcher::register_local) on a
/// runtime that can run tasks that are not `Send` ([`LocalSpawn`](crate::runtime::LocalSpawn)).
/// The job, its options, its handle and its events are the same as with an [`Executor`]: only
/// where the work runs differs (on the thread that registered the executor).
///
/// ```
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatch, Dispatcher, Job, JobContext, LocalExecutor};
/// use std::cell::RefCell;
/// use std::rc::Rc;
///
/// struct Note(&'static str);
/// impl Job for Note {
///     type Output = usize;
/// }
///
/// /// Keeps every note in an `Rc<RefCell<..>>`: not `Send`, so not an `Executor`.
/// struct Notebook(Rc<RefCell<Vec<&'static str>>>);
/// impl LocalExecutor<Note> for Notebook {
///     type Error = core::convert::Infallible;
///     async fn execute(&self, job: &Note, _cx: JobContext) -> Result<usize, Self::Error> {
///         let notes = self.0.clone(); // an `Rc` held across the await below
///         futures::future::ready(()).await;
///         notes.borrow_mut().push(job.0);
///         Ok(notes.borrow().len())
///     }
/// }
///
/// let rt = VirtualRuntime::new();
/// let dispatcher = Dispatcher::new(rt.clone());
/// let notes = Rc::new(RefCell::new(Vec::new()));
/// dispatcher.register_local(Notebook(notes.clone()));
/// assert_eq!(rt.block_on(dispatcher.dispatch(Note("milk"))).unwrap().value, 1);
/// assert_eq!(rt.block_on(dispatcher.dispatch(Note("eggs"))).unwrap().value, 2);
/// assert_eq!(*notes.borrow(), ["milk", "eggs"]);
/// ```
pub trait LocalExecutor<J: Job>: 'static {
    /// The executor's own error type (shared with the handle, so it is `Send + Sync`).
    type Error: core::error::Error + Send + Sync + 'static;

    /// Runs one attempt of `job`.
    fn execute(
        &self,
        job: &J,
        cx: JobContext,
    ) -> impl Future<Output = Result<J::Output, Self::Error>>;
}

/// A threaded executor seen as a local one, so that one pipeline runs both: its futures stay
/// `Send`, and so does the task that runs them.
pub(crate) struct Threaded<E>(pub(crate) E);

impl<J: Job, E: Executor<J>> LocalExecutor<J> for Threaded<E> {
    type Error = E::Error;

    fn execute(
        &self,
        job: &J,
        cx: JobContext,
    ) -> impl Future<Output = Result<J::Output, Self::Error>> {
        self.0.execute(job, cx)
    }
}
