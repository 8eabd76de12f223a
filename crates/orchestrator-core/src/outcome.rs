//! The terminal outcome of a job: [`Success`] or [`JobError`].
//!
//! Every dispatched job ends in exactly one of five outcomes: succeeded
//! ([`Success`]), failed ([`JobError::Failed`]), cancelled ([`JobError::Cancelled`]), timed out
//! ([`JobError::TimedOut`]) or rejected ([`JobError::Rejected`]). A
//! [`JobHandle`](crate::JobHandle) resolves to `Result<Success<T>, JobError>` once.

use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use core::error::Error;
use core::fmt;
use core::time::Duration;

use crate::runtime::SpawnErrorKind;
use crate::sync::Arc;

/// Where a successful job's value came from.
///
/// With the `serde` feature it is `Serialize`/`Deserialize` (unit variants, by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum DataSource {
    /// Produced by the executor during this dispatch.
    #[default]
    Fresh,
    /// Served from a cache without running the executor.
    Cached,
    /// A placeholder published before the work started.
    Optimistic,
}

/// A successful outcome: the job's output and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success<T> {
    /// The value the job produced.
    pub value: T,
    /// Where the value came from.
    pub data_source: DataSource,
}

impl<T> Success<T> {
    /// Returns the value, dropping its source.
    pub fn into_value(self) -> T {
        self.value
    }
}

/// Why a job did not succeed.
///
/// It is `Clone` (the executor's error is shared behind an `Arc`), `Display`s in lowercase and
/// implements [`core::error::Error`]. Each message appears once along the `source()` chain:
/// a failure displays as "job failed after N attempts" and its `source()` is the executor's
/// error (print the chain to see it, or format with `{:#}`, which prints the whole chain on
/// one line); the other variants display everything and have no source.
///
/// ```
/// use core::error::Error;
/// use orchestrator_core::Dispatch;
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatcher, Executor, Job, JobContext};
///
/// struct Fetch;
/// impl Job for Fetch {
///     type Output = ();
/// }
/// struct Fetcher;
/// impl Executor<Fetch> for Fetcher {
///     type Error = std::io::Error;
///     async fn execute(&self, _: &Fetch, _: JobContext) -> Result<(), std::io::Error> {
///         Err(std::io::Error::other("connection reset"))
///     }
/// }
///
/// let rt = VirtualRuntime::new();
/// let dispatcher = Dispatcher::new(rt.clone());
/// dispatcher.register(Fetcher);
/// let error = rt.block_on(dispatcher.dispatch(Fetch)).unwrap_err();
/// assert_eq!(error.to_string(), "job failed after 1 attempt");
/// assert_eq!(error.source().unwrap().to_string(), "connection reset");
/// assert_eq!(format!("{error:#}"), "job failed after 1 attempt: connection reset");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JobError {
    /// The executor returned an error (or panicked) on its last attempt.
    Failed(Failure),
    /// The job was cancelled through its handle or a cancellation token before it finished.
    Cancelled {
        /// The reason given to the cancel call, if any.
        reason: Option<Cow<'static, str>>,
    },
    /// The job's total time budget ran out; the work was dropped.
    TimedOut {
        /// The budget that expired.
        budget: Duration,
    },
    /// The job never ran.
    Rejected(Rejection),
}

impl JobError {
    /// Returns `true` if the executor failed.
    pub fn is_failed(&self) -> bool {
        matches!(self, JobError::Failed(_))
    }

    /// Returns `true` if the job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JobError::Cancelled { .. })
    }

    /// Returns `true` if the job's time budget expired.
    pub fn is_timed_out(&self) -> bool {
        matches!(self, JobError::TimedOut { .. })
    }

    /// Returns `true` if the job never ran.
    pub fn is_rejected(&self) -> bool {
        matches!(self, JobError::Rejected(_))
    }

    /// Returns the failure, if the executor failed.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            JobError::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// Returns the rejection, if the job never ran.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            JobError::Rejected(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn cancelled(reason: Option<Cow<'static, str>>) -> Self {
        JobError::Cancelled { reason }
    }
}

/// Writes the messages along `error`'s `source()` chain after its own, `: `-separated, each
/// once (a message that repeats its source's is not written twice).
fn write_chain(
    f: &mut fmt::Formatter<'_>,
    mut next: Option<&(dyn Error + 'static)>,
) -> fmt::Result {
    let mut last: Option<String> = None;
    while let Some(error) = next {
        let message = error.to_string();
        if last.as_deref() != Some(message.as_str()) && !message.is_empty() {
            write!(f, ": {message}")?;
        }
        last = Some(message);
        next = error.source();
    }
    Ok(())
}

/// `{}` prints this error's own message (`job failed after 2 attempts`), as the Rust API
/// guidelines ask, so that a reporter walking `source()` prints each message once. The
/// alternate form `{:#}` prints the whole chain on one line:
/// `job failed after 2 attempts: connection reset: broken pipe`.
impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Failed(failure) => fmt::Display::fmt(failure, f),
            JobError::Cancelled { reason: None } => f.write_str("job cancelled"),
            JobError::Cancelled {
                reason: Some(reason),
            } => write!(f, "job cancelled: {reason}"),
            JobError::TimedOut { budget } => write!(f, "job timed out after {budget:?}"),
            JobError::Rejected(r) => write!(f, "job rejected: {r}"),
        }
    }
}

impl Error for JobError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            // The failure's own text is this error's text: skip to the executor's error.
            JobError::Failed(failure) => failure.source(),
            // The other variants print all they know (a spawn rejection names its reason).
            JobError::Cancelled { .. } | JobError::TimedOut { .. } | JobError::Rejected(_) => None,
        }
    }
}

/// An executor's failure: its error (shared) and how many attempts were made.
///
/// It displays as "job failed after N attempts" and is an [`Error`] whose `source()` is the
/// executor's error, so the executor's message is printed once by a reporter that walks the
/// chain.
#[derive(Clone)]
pub struct Failure {
    error: Arc<dyn Error + Send + Sync + 'static>,
    attempts: u32,
}

impl Failure {
    pub(crate) fn new(error: Arc<dyn Error + Send + Sync + 'static>, attempts: u32) -> Self {
        Self { error, attempts }
    }

    /// Returns the executor's error from the last attempt.
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.error
    }

    /// Returns the executor's error as its concrete type, if it is an `E`.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.error.downcast_ref::<E>()
    }

    /// Returns how many attempts ran (1 without retries).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Returns `true` if the last attempt panicked.
    pub fn is_panic(&self) -> bool {
        self.downcast_ref::<Panicked>().is_some()
    }

    /// Returns the panic message, if the last attempt panicked.
    pub fn panic_message(&self) -> Option<&str> {
        self.downcast_ref::<Panicked>().map(Panicked::message)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("error", &self.error)
            .field("attempts", &self.attempts)
            .finish()
    }
}

/// `{}`: `job failed after N attempts`; `{:#}`: the same followed by the executor's error and
/// its sources (see [`JobError`]'s `Display`).
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "job failed after {} attempt{}",
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
        )?;
        if f.alternate() {
            write_chain(f, Some(&*self.error as &(dyn Error + 'static)))?;
        }
        Ok(())
    }
}

impl Error for Failure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.error)
    }
}

/// Why a job was rejected before it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No executor is registered for the job's type.
    NoExecutor {
        /// The job type's name, from `core::any::type_name`.
        job_type: &'static str,
    },
    /// The runtime refused to spawn the job's task.
    Spawn(SpawnErrorKind),
    /// The dispatcher was shut down before this dispatch.
    Shutdown,
    /// The job type's failure circuit breaker is open.
    CircuitOpen {
        /// The job type's name.
        job_type: &'static str,
    },
    /// The orchestrator it was dispatched through was disposed.
    Disposed {
        /// The orchestrator's name.
        orchestrator: &'static str,
    },
    /// The orchestrator it was dispatched through was not started yet (it could not have
    /// observed the job's events).
    NotStarted {
        /// The orchestrator's name.
        orchestrator: &'static str,
    },
    /// The job type's executor is a local one ([`LocalExecutor`](crate::LocalExecutor)),
    /// registered on another thread than the one that dispatched the job.
    OtherThread {
        /// The job type's name.
        job_type: &'static str,
    },
    /// The dispatch's options cannot be honoured together.
    Invalid {
        /// Why.
        reason: &'static str,
    },
    /// The job type's journal could not store the dispatch (see
    /// [`Journal`](crate::Journal)): nothing of it was kept, and it did not run.
    NotStored {
        /// The job type's name.
        job_type: &'static str,
        /// The journal's error.
        reason: alloc::string::String,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NoExecutor { job_type } => {
                write!(f, "no executor registered for job type `{job_type}`")
            }
            Rejection::Spawn(e) => write!(f, "spawn failed: {e}"),
            Rejection::Shutdown => f.write_str("the dispatcher is shut down"),
            Rejection::CircuitOpen { job_type } => {
                write!(f, "the circuit breaker of job type `{job_type}` is open")
            }
            Rejection::Disposed { orchestrator } => {
                write!(f, "the orchestrator `{orchestrator}` is disposed")
            }
            Rejection::NotStarted { orchestrator } => {
                write!(f, "the orchestrator `{orchestrator}` is not started")
            }
            Rejection::OtherThread { job_type } => write!(
                f,
                "the local executor of job type `{job_type}` is registered on another thread"
            ),
            Rejection::Invalid { reason } => write!(f, "invalid dispatch: {reason}"),
            Rejection::NotStored { job_type, reason } => {
                write!(
                    f,
                    "the dispatch of `{job_type}` could not be stored: {reason}"
                )
            }
        }
    }
}

/// The error recorded when an executor panics (with `std`).
///
/// Panics are not retried: the executor's state may be inconsistent after one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked {
    message: String,
}

impl Panicked {
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    pub(crate) fn new(message: String) -> Self {
        Self { message }
    }

    /// Returns the panic message (`"<non-string panic payload>"` if it was not a string).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "executor panicked: {}", self.message)
    }
}

impl Error for Panicked {}

/// The error recorded when one attempt outlives the per-attempt timeout.
///
/// Unlike the total budget, an attempt timeout is an ordinary failed attempt: the retry
/// policy (and its `should_retry` predicate) decides whether another attempt follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTimedOut {
    /// The per-attempt limit that expired.
    pub limit: Duration,
}

impl fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt timed out after {:?}", self.limit)
    }
}

impl Error for AttemptTimedOut {}
