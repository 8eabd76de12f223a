//! Sagas: multi-step work whose completed steps can be undone by compensations.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::error::Error;
use core::fmt;
use core::future::Future;
use core::pin::Pin;

/// A recorded compensation, waiting for a rollback.
type Compensation<'a, E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send + 'a>>;

/// A completed step: its name and the compensation that undoes it.
struct Completed<'a, E> {
    name: Cow<'static, str>,
    compensation: Compensation<'a, E>,
}

/// Steps run in order, each with a compensation that undoes it; see below.
///
/// A [`Saga`] runs steps one at a time. [`Saga::step`] awaits the step's *action*; when the
/// action succeeds, the saga records the step's *compensation* (the async work that undoes
/// it) and returns the action's value. Then:
///
/// - [`commit`](Saga::commit) forgets every recorded compensation: the work stands.
/// - [`rollback`](Saga::rollback) runs the recorded compensations, last step first.
///
/// ## Failing steps
///
/// When a step's action fails, the saga rolls back **automatically** before `step` returns:
/// the compensations of the steps completed so far run (last-in-first-out) and
/// [`StepError`] carries the failing step's name, the action's error and the
/// [`RollbackReport`]. The failing step itself has no compensation to run: an action that
/// fails must leave nothing behind (or be split into smaller steps). After a failed step the
/// saga is empty and can be reused.
///
/// Failures that are not a step's (a check between two steps, a user who gives up) are
/// handled by calling [`rollback`](Saga::rollback) yourself.
///
/// ## Rollback
///
/// Compensations run one at a time, in reverse order of their steps. A compensation that
/// fails does not stop the rollback: the others still run, and every failure is listed, with
/// its step's name, in the [`RollbackReport`]. Nothing is retried; a compensation that must
/// not fail should retry inside itself (for example by dispatching a job with a
/// [`RetryPolicy`](crate::RetryPolicy)).
///
/// ## Dropping
///
/// Dropping a saga that still holds compensations runs none of them and does not panic: the
/// compensations' futures are dropped without being polled. Commit or roll back explicitly.
///
/// ## Jobs as steps
///
/// An action or compensation is any future, so a step can dispatch a job and await its
/// handle. Dispatching starts the job at once, so dispatch the undo job *inside* the
/// compensation's `async` block, where it waits for a rollback:
///
/// ```
/// use orchestrator_core::Dispatch;
/// use orchestrator_core::Saga;
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatcher, Executor, Job, JobContext, JobError};
///
/// struct Reserve(u32);
/// impl Job for Reserve {
///     type Output = u64; // a reservation id
/// }
/// struct Release(u64);
/// impl Job for Release {
///     type Output = ();
/// }
///
/// struct Warehouse;
/// impl Executor<Reserve> for Warehouse {
///     type Error = core::convert::Infallible;
///     async fn execute(&self, job: &Reserve, _cx: JobContext) -> Result<u64, Self::Error> {
///         Ok(1000 + u64::from(job.0))
///     }
/// }
/// impl Executor<Release> for Warehouse {
///     type Error = core::convert::Infallible;
///     async fn execute(&self, _job: &Release, _cx: JobContext) -> Result<(), Self::Error> {
///         Ok(())
///     }
/// }
///
/// let rt = VirtualRuntime::new();
/// let dispatcher = Dispatcher::new(rt.clone());
/// dispatcher.register::<Reserve, _>(Warehouse);
/// dispatcher.register::<Release, _>(Warehouse);
///
/// let report = rt.block_on(async {
///     let mut saga = Saga::<JobError>::new();
///     let id = saga
///         .step(
///             "reserve",
///             async { Ok(dispatcher.dispatch(Reserve(7)).await?.value) },
///             |&id| {
///                 let dispatcher = dispatcher.clone();
///                 async move {
///                     dispatcher.dispatch(Release(id)).await?;
///                     Ok(())
///                 }
///             },
///         )
///         .await
///         .unwrap();
///     assert_eq!(id, 1007);
///     // Payment was declined: undo the reservation.
///     saga.rollback().await
/// });
/// assert!(report.is_clean());
/// assert_eq!(report.compensated(), ["reserve"]);
/// ```
///
/// ## Cancel safety
///
/// The futures of [`step`](Saga::step) and [`rollback`](Saga::rollback) may be dropped at any
/// `.await`. Dropping `step` while its action runs drops the action and records nothing for
/// it; earlier steps stay recorded. Dropping a rollback drops the compensation it was
/// awaiting (which is not run again) and its report; the compensations it had not reached
/// stay in the saga. A compensation that panics propagates the panic the same way.
///
/// ## Threads
///
/// Compensations must be `Send` so that a saga can live in a task of a multi-threaded
/// runtime. Actions need not be: they are awaited inside `step`, whose future is `Send`
/// whenever the action is.
///
/// `E` is the error type of the actions and compensations (for dispatched jobs, usually
/// [`JobError`](crate::JobError)); `'a` bounds what the compensations may borrow.
///
/// ```
/// use orchestrator_core::Saga;
///
/// futures::executor::block_on(async {
///     let mut saga = Saga::<&str>::new();
///     let order = saga.step("create order", async { Ok(42) }, |_| async { Ok(()) }).await;
///     assert_eq!(order.unwrap(), 42);
///     assert_eq!(saga.len(), 1);
///     saga.commit();
///     assert!(saga.is_empty());
/// });
/// ```
pub struct Saga<'a, E> {
    completed: Vec<Completed<'a, E>>,
}

impl<'a, E> Saga<'a, E> {
    /// Creates a saga with no steps.
    ///
    /// ```
    /// use orchestrator_core::Saga;
    ///
    /// let saga = Saga::<()>::new();
    /// assert!(saga.is_empty());
    /// ```
    pub fn new() -> Self {
        Self {
            completed: Vec::new(),
        }
    }

    /// Runs a step: awaits `action`, and on success records the compensation that
    /// `compensation` builds from the action's value, then returns the value.
    ///
    /// `compensation` is called as soon as the action succeeds, with a reference to its value;
    /// the future it returns is polled only by a rollback, and dropped unpolled on commit.
    /// Keep its work inside the future (an `async move` block).
    ///
    /// ```
    /// use orchestrator_core::Saga;
    ///
    /// futures::executor::block_on(async {
    ///     let mut saga = Saga::<&str>::new();
    ///     let seat = saga.step("book seat", async { Ok("12A") }, |_| async { Ok(()) }).await;
    ///     assert_eq!(seat.unwrap(), "12A");
    ///     assert_eq!(saga.steps().collect::<Vec<_>>(), ["book seat"]);
    /// });
    /// ```
    ///
    /// # Errors
    ///
    /// If `action` fails, the saga first rolls back every step completed so far, then returns
    /// a [`StepError`] with this step's name, the action's error and the rollback's report.
    /// The saga is then empty.
    ///
    /// # Cancel safety
    ///
    /// Dropped while the action runs, nothing is recorded for this step; see the
    /// [type docs](Saga#cancel-safety) for a drop during the automatic rollback.
    pub async fn step<T, A, C, F>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        action: A,
        compensation: C,
    ) -> Result<T, StepError<E>>
    where
        A: Future<Output = Result<T, E>>,
        C: FnOnce(&T) -> F,
        F: Future<Output = Result<(), E>> + Send + 'a,
    {
        let name = name.into();
        match action.await {
            Ok(value) => {
                let compensation = Box::pin(compensation(&value));
                self.completed.push(Completed { name, compensation });
                Ok(value)
            }
            Err(error) => {
                let rollback = self.rollback().await;
                Err(StepError {
                    step: name,
                    error,
                    rollback,
                })
            }
        }
    }

    /// Forgets every recorded compensation: the completed steps stand.
    ///
    /// The compensations' futures are dropped without being polled. A later
    /// [`rollback`](Self::rollback) runs nothing for these steps.
    ///
    /// ```
    /// use orchestrator_core::Saga;
    ///
    /// futures::executor::block_on(async {
    ///     let mut saga = Saga::<()>::new();
    ///     saga.step("a", async { Ok(()) }, |_| async { Ok(()) }).await.unwrap();
    ///     saga.commit();
    ///     assert_eq!(saga.rollback().await.ran(), 0);
    /// });
    /// ```
    pub fn commit(&mut self) {
        self.completed.clear();
    }

    /// Undoes the completed steps: runs their compensations one at a time, last step first,
    /// and reports how it went.
    ///
    /// A failing compensation does not stop the rollback; each failure is listed in the
    /// report with its step's name. The saga is empty afterwards.
    ///
    /// ```
    /// use orchestrator_core::Saga;
    ///
    /// futures::executor::block_on(async {
    ///     let mut saga = Saga::<&str>::new();
    ///     saga.step("first", async { Ok(()) }, |_| async { Ok(()) }).await.unwrap();
    ///     saga.step("second", async { Ok(()) }, |_| async { Err("gone") }).await.unwrap();
    ///     let report = saga.rollback().await;
    ///     assert_eq!(report.compensated(), ["second", "first"]);
    ///     assert_eq!(report.failures()[0].step, "second");
    ///     assert_eq!(report.failures()[0].error, "gone");
    ///     assert!(saga.is_empty());
    /// });
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while a compensation runs, that compensation is dropped and the ones not yet
    /// reached stay in the saga.
    pub async fn rollback(&mut self) -> RollbackReport<E> {
        let mut report = RollbackReport {
            compensated: Vec::with_capacity(self.completed.len()),
            failures: Vec::new(),
        };
        while let Some(Completed { name, compensation }) = self.completed.pop() {
            let result = compensation.await;
            if let Err(error) = result {
                report.failures.push(CompensationFailure {
                    step: name.clone(),
                    error,
                });
            }
            report.compensated.push(name);
        }
        report
    }

    /// Returns the number of completed steps whose compensations are recorded.
    ///
    /// ```
    /// use orchestrator_core::Saga;
    ///
    /// futures::executor::block_on(async {
    ///     let mut saga = Saga::<()>::new();
    ///     saga.step("a", async { Ok(()) }, |_| async { Ok(()) }).await.unwrap();
    ///     saga.step("b", async { Ok(()) }, |_| async { Ok(()) }).await.unwrap();
    ///     assert_eq!(saga.len(), 2);
    /// });
    /// ```
    pub fn len(&self) -> usize {
        self.completed.len()
    }

    /// Returns `true` if no compensation is recorded (nothing to roll back).
    ///
    /// ```
    /// use orchestrator_core::Saga;
    ///
    /// assert!(Saga::<()>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.completed.is_empty()
    }

    /// Returns the names of the completed steps with recorded compensations, in the order
    /// the steps ran.
    ///
    /// ```
    /// use orchestrator_core::Saga;
    ///
    /// futures::executor::block_on(async {
    ///     let mut saga = Saga::<()>::new();
    ///     saga.step("a", async { Ok(()) }, |_| async { Ok(()) }).await.unwrap();
    ///     saga.step(format!("b{}", 2), async { Ok(()) }, |_| async { Ok(()) }).await.unwrap();
    ///     assert_eq!(saga.steps().collect::<Vec<_>>(), ["a", "b2"]);
    /// });
    /// ```
    pub fn steps(&self) -> impl ExactSizeIterator<Item = &str> + DoubleEndedIterator + '_ {
        self.completed.iter().map(|c| &*c.name)
    }
}

impl<E> Default for Saga<'_, E> {
    /// Returns a saga with no steps.
    fn default() -> Self {
        Self::new()
    }
}

impl<E> fmt::Debug for Saga<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saga")
            .field(
                "steps",
                &self.completed.iter().map(|c| &c.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What a rollback did: which compensations ran, in order, and which of them failed.
///
/// ```
/// use orchestrator_core::Saga;
///
/// futures::executor::block_on(async {
///     let mut saga = Saga::<u8>::new();
///     saga.step("a", async { Ok(()) }, |_| async { Err(1) }).await.unwrap();
///     saga.step("b", async { Ok(()) }, |_| async { Ok(()) }).await.unwrap();
///     let report = saga.rollback().await;
///     assert_eq!(report.ran(), 2);
///     assert!(!report.is_clean());
///     let failures = report.into_failures();
///     assert_eq!((&*failures[0].step, failures[0].error), ("a", 1));
/// });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a rollback report may list compensations that failed"]
pub struct RollbackReport<E> {
    compensated: Vec<Cow<'static, str>>,
    failures: Vec<CompensationFailure<E>>,
}

impl<E> RollbackReport<E> {
    /// Returns how many compensations ran (whether they succeeded or failed).
    ///
    /// ```
    /// use orchestrator_core::Saga;
    ///
    /// let report = futures::executor::block_on(Saga::<()>::new().rollback());
    /// assert_eq!(report.ran(), 0);
    /// ```
    pub fn ran(&self) -> usize {
        self.compensated.len()
    }

    /// Returns the names of the steps whose compensations ran, in the order they ran (the
    /// reverse of the steps' order).
    ///
    /// ```
    /// use orchestrator_core::Saga;
    ///
    /// futures::executor::block_on(async {
    ///     let mut saga = Saga::<()>::new();
    ///     saga.step("a", async { Ok(()) }, |_| async { Ok(()) }).await.unwrap();
    ///     saga.step("b", async { Ok(()) }, |_| async { Ok(()) }).await.unwrap();
    ///     assert_eq!(saga.rollback().await.compensated(), ["b", "a"]);
    /// });
    /// ```
    pub fn compensated(&self) -> &[Cow<'static, str>] {
        &self.compensated
    }

    /// Returns the compensations that failed, in the order they ran.
    ///
    /// ```
    /// use orchestrator_core::Saga;
    ///
    /// futures::executor::block_on(async {
    ///     let mut saga = Saga::<&str>::new();
    ///     saga.step("a", async { Ok(()) }, |_| async { Err("no") }).await.unwrap();
    ///     let report = saga.rollback().await;
    ///     assert_eq!(report.failures().len(), 1);
    ///     assert_eq!(report.failures()[0].error, "no");
    /// });
    /// ```
    pub fn failures(&self) -> &[CompensationFailure<E>] {
        &self.failures
    }

    /// Returns the compensations that failed, consuming the report.
    ///
    /// ```
    /// use orchestrator_core::Saga;
    ///
    /// let report = futures::executor::block_on(Saga::<()>::new().rollback());
    /// assert!(report.into_failures().is_empty());
    /// ```
    pub fn into_failures(self) -> Vec<CompensationFailure<E>> {
        self.failures
    }

    /// Returns `true` if every compensation that ran succeeded.
    ///
    /// ```
    /// use orchestrator_core::Saga;
    ///
    /// futures::executor::block_on(async {
    ///     let mut saga = Saga::<()>::new();
    ///     saga.step("a", async { Ok(()) }, |_| async { Ok(()) }).await.unwrap();
    ///     assert!(saga.rollback().await.is_clean());
    /// });
    /// ```
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A compensation that failed during a rollback: its step's name and its error.
///
/// ```
/// use orchestrator_core::CompensationFailure;
///
/// let failure = CompensationFailure { step: "refund".into(), error: "bank offline" };
/// assert_eq!(failure.to_string(), "compensation of step `refund` failed");
/// assert_eq!(failure.error, "bank offline"); // the error itself is a field (and its `source()`)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompensationFailure<E> {
    /// The name of the step whose compensation failed.
    pub step: Cow<'static, str>,
    /// The compensation's error.
    pub error: E,
}

impl<E: fmt::Display> fmt::Display for CompensationFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "compensation of step `{}` failed", self.step)
    }
}

impl<E: Error + 'static> Error for CompensationFailure<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.error)
    }
}

/// The error of [`Saga::step`]: the step's action failed and the saga rolled back.
///
/// ```
/// use orchestrator_core::Saga;
///
/// futures::executor::block_on(async {
///     let mut saga = Saga::<&str>::new();
///     saga.step("reserve", async { Ok(()) }, |_| async { Ok(()) }).await.unwrap();
///     let err = saga
///         .step("charge", async { Err::<(), _>("card declined") }, |_| async { Ok(()) })
///         .await
///         .unwrap_err();
///     assert_eq!(err.step, "charge");
///     assert_eq!(err.error, "card declined");
///     assert_eq!(err.rollback.compensated(), ["reserve"]);
///     assert_eq!(
///         err.to_string(),
///         "saga step `charge` failed (rolled back 1 step)"
///     );
/// });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepError<E> {
    /// The name of the step whose action failed.
    pub step: Cow<'static, str>,
    /// The action's error.
    pub error: E,
    /// What the automatic rollback of the earlier steps did.
    pub rollback: RollbackReport<E>,
}

impl<E> StepError<E> {
    /// Returns the action's error, dropping the step name and the rollback report.
    ///
    /// ```
    /// use orchestrator_core::Saga;
    ///
    /// futures::executor::block_on(async {
    ///     let mut saga = Saga::<u8>::new();
    ///     let err = saga.step("a", async { Err::<(), _>(3) }, |_| async { Ok(()) }).await;
    ///     assert_eq!(err.unwrap_err().into_error(), 3);
    /// });
    /// ```
    pub fn into_error(self) -> E {
        self.error
    }
}

impl<E: fmt::Display> fmt::Display for StepError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ran = self.rollback.ran();
        write!(
            f,
            "saga step `{}` failed (rolled back {ran} step{}",
            self.step,
            if ran == 1 { "" } else { "s" }
        )?;
        match self.rollback.failures.len() {
            0 => f.write_str(")"),
            n => write!(
                f,
                ", {n} compensation{} failed)",
                if n == 1 { "" } else { "s" }
            ),
        }
    }
}

impl<E: Error + 'static> Error for StepError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.error)
    }
}
