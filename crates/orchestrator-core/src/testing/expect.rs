//! Checks of a job's outcome that say what was expected and what happened instead.
//!
//! Each function takes a [`JobResult`] and returns `Ok` with the part of the outcome a test
//! usually looks at next (the success, the failure, the reason, the budget), or a
//! [`Mismatch`] that names the expected outcome and describes the actual one. None of them
//! panics: the test asserts, with `.unwrap()` or with `?` in a test that returns
//! `Result<(), Mismatch>` (a mismatch's `Debug` is its message, so both print it as is).
//!
//! ```
//! use orchestrator_core::testing::{FakeError, FakeExecutor, VirtualRuntime, expect};
//! use orchestrator_core::{Dispatch, Dispatcher, Job};
//!
//! #[derive(Clone)]
//! struct Fetch;
//! impl Job for Fetch {
//!     type Output = u32;
//! }
//!
//! let rt = VirtualRuntime::new();
//! let dispatcher = Dispatcher::new(rt.clone());
//! dispatcher.register(FakeExecutor::<Fetch, _>::fail(FakeError::new("connection reset")));
//! let outcome = rt.block_on(dispatcher.dispatch(Fetch));
//! let mismatch = expect::succeeded_with(&outcome, &5).unwrap_err();
//! assert_eq!(
//!     mismatch.to_string(),
//!     "expected the job to succeed with 5, but the job failed after 1 attempt: connection reset"
//! );
//! assert!(expect::failed_after(&outcome, 1, "connection reset").is_ok());
//! ```

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::{String, ToString};
use core::error::Error;
use core::fmt;
use core::time::Duration;

use crate::outcome::{DataSource, Failure, JobError, Rejection, Success};
use crate::state::JobResult;

/// An outcome that is not the expected one: what was expected and what happened.
///
/// It displays as `expected <expected>, but <actual>`; its `Debug` is the same text, so that
/// `.unwrap()` and a test returning `Result<(), Mismatch>` print the message as is.
#[derive(Clone, PartialEq, Eq)]
pub struct Mismatch {
    expected: Cow<'static, str>,
    actual: String,
}

impl Mismatch {
    /// Creates a mismatch from what was expected and a description of what happened.
    pub fn new(expected: impl Into<Cow<'static, str>>, actual: impl Into<String>) -> Self {
        Self {
            expected: expected.into(),
            actual: actual.into(),
        }
    }

    /// Returns what was expected (`the job to succeed with 5`).
    pub fn expected(&self) -> &str {
        &self.expected
    }

    /// Returns what happened (`the job failed after 1 attempt: connection reset`).
    pub fn actual(&self) -> &str {
        &self.actual
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, but {}", self.expected, self.actual)
    }
}

impl fmt::Debug for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Error for Mismatch {}

/// Describes an outcome in words: `the job succeeded with 5 (fresh)`, `the job failed after
/// 3 attempts: connection reset`, `the job was cancelled`, `the job timed out after 5s`,
/// `the job was rejected: ...`.
///
/// ```
/// use orchestrator_core::testing::expect::describe;
/// use orchestrator_core::{DataSource, JobError, Success};
/// let ok: Result<_, JobError> = Ok(Success { value: 5, data_source: DataSource::Cached });
/// assert_eq!(describe(&ok), "the job succeeded with 5 (cached)");
/// let cancelled: Result<Success<u32>, _> = Err(JobError::Cancelled { reason: None });
/// assert_eq!(describe(&cancelled), "the job was cancelled");
/// ```
pub fn describe<T: fmt::Debug>(result: &JobResult<T>) -> String {
    match result {
        Ok(success) => format!(
            "the job succeeded with {:?} ({})",
            success.value,
            source_name(success.data_source)
        ),
        Err(JobError::Failed(failure)) => format!("the {failure:#}"),
        Err(JobError::Cancelled { reason: None }) => "the job was cancelled".to_string(),
        Err(JobError::Cancelled {
            reason: Some(reason),
        }) => format!("the job was cancelled: {reason}"),
        Err(JobError::TimedOut { budget }) => format!("the job timed out after {budget:?}"),
        Err(JobError::Rejected(rejection)) => format!("the job was rejected: {rejection}"),
    }
}

fn source_name(source: DataSource) -> &'static str {
    match source {
        DataSource::Fresh => "fresh",
        DataSource::Cached => "cached",
        DataSource::Optimistic => "optimistic",
    }
}

fn attempts(n: u32) -> String {
    format!("{n} attempt{}", if n == 1 { "" } else { "s" })
}

/// Checks that the job succeeded; returns its success.
///
/// # Errors
///
/// A [`Mismatch`] if the job did not succeed.
pub fn succeeded<T: fmt::Debug>(result: &JobResult<T>) -> Result<&Success<T>, Mismatch> {
    result
        .as_ref()
        .map_err(|_| Mismatch::new("the job to succeed", describe(result)))
}

/// Checks that the job succeeded with `expected`.
///
/// # Errors
///
/// A [`Mismatch`] if the job did not succeed, or succeeded with another value.
pub fn succeeded_with<T: PartialEq + fmt::Debug>(
    result: &JobResult<T>,
    expected: &T,
) -> Result<(), Mismatch> {
    match result {
        Ok(success) if success.value == *expected => Ok(()),
        _ => Err(Mismatch::new(
            format!("the job to succeed with {expected:?}"),
            describe(result),
        )),
    }
}

/// Checks that the job succeeded with a value that came from `source` (fresh, cached or a
/// placeholder).
///
/// # Errors
///
/// A [`Mismatch`] if the job did not succeed, or its value came from elsewhere.
pub fn data_source<T: fmt::Debug>(
    result: &JobResult<T>,
    source: DataSource,
) -> Result<(), Mismatch> {
    match result {
        Ok(success) if success.data_source == source => Ok(()),
        _ => Err(Mismatch::new(
            format!(
                "the job to succeed with a{} {} value",
                if source == DataSource::Optimistic {
                    "n"
                } else {
                    ""
                },
                source_name(source)
            ),
            describe(result),
        )),
    }
}

/// Checks that the executor failed, however many attempts it took; returns the failure.
///
/// # Errors
///
/// A [`Mismatch`] if the job did not end as a failure.
pub fn failed<T: fmt::Debug>(result: &JobResult<T>) -> Result<&Failure, Mismatch> {
    match result {
        Err(JobError::Failed(failure)) => Ok(failure),
        _ => Err(Mismatch::new("the job to fail", describe(result))),
    }
}

/// Checks that the executor failed after exactly `attempts` attempts and that its last
/// error displays as `message`; returns the failure.
///
/// # Errors
///
/// A [`Mismatch`] if the job did not fail, failed after another number of attempts, or with
/// another message.
pub fn failed_after<'a, T: fmt::Debug>(
    result: &'a JobResult<T>,
    attempts_made: u32,
    message: &str,
) -> Result<&'a Failure, Mismatch> {
    match result {
        Err(JobError::Failed(failure))
            if failure.attempts() == attempts_made && failure.error().to_string() == message =>
        {
            Ok(failure)
        }
        _ => Err(Mismatch::new(
            format!(
                "the job to fail after {}: {message}",
                attempts(attempts_made)
            ),
            describe(result),
        )),
    }
}

/// Checks that the executor failed after exactly `attempts` attempts with an error of type
/// `E` that satisfies `matches`; returns that error.
///
/// # Errors
///
/// A [`Mismatch`] if the job did not fail, failed after another number of attempts, with an
/// error of another type, or with one that `matches` refuses.
///
/// ```
/// use orchestrator_core::testing::{FakeError, FakeExecutor, VirtualRuntime, expect};
/// use orchestrator_core::{Dispatch, Dispatcher, Job};
///
/// #[derive(Clone)]
/// struct Pay;
/// impl Job for Pay {
///     type Output = ();
/// }
///
/// let rt = VirtualRuntime::new();
/// let dispatcher = Dispatcher::new(rt.clone());
/// dispatcher.register(FakeExecutor::<Pay, _>::fail(FakeError::new("card declined")));
/// let outcome = rt.block_on(dispatcher.dispatch(Pay));
/// let error = expect::failed_with(&outcome, 1, |e: &FakeError| e.message().contains("declined"));
/// assert_eq!(error.unwrap().message(), "card declined");
/// let wrong = expect::failed_with(&outcome, 2, |_: &FakeError| true).unwrap_err();
/// assert_eq!(
///     wrong.to_string(),
///     "expected the job to fail after 2 attempts with a matching \
///      `orchestrator_core::testing::fakes::FakeError`, \
///      but the job failed after 1 attempt: card declined"
/// );
/// ```
pub fn failed_with<T: fmt::Debug, E: Error + 'static>(
    result: &JobResult<T>,
    attempts_made: u32,
    matches: impl FnOnce(&E) -> bool,
) -> Result<&E, Mismatch> {
    let found = match result {
        Err(JobError::Failed(failure)) if failure.attempts() == attempts_made => {
            failure.downcast_ref::<E>().filter(|error| matches(error))
        }
        _ => None,
    };
    found.ok_or_else(|| {
        Mismatch::new(
            format!(
                "the job to fail after {} with a matching `{}`",
                attempts(attempts_made),
                core::any::type_name::<E>()
            ),
            describe(result),
        )
    })
}

/// Checks that the job was cancelled; returns the reason given, if any.
///
/// # Errors
///
/// A [`Mismatch`] if the job did not end as cancelled.
pub fn cancelled<T: fmt::Debug>(result: &JobResult<T>) -> Result<Option<&str>, Mismatch> {
    match result {
        Err(JobError::Cancelled { reason }) => Ok(reason.as_deref()),
        _ => Err(Mismatch::new("the job to be cancelled", describe(result))),
    }
}

/// Checks that the job's total time budget ran out; returns the budget.
///
/// # Errors
///
/// A [`Mismatch`] if the job did not time out.
pub fn timed_out<T: fmt::Debug>(result: &JobResult<T>) -> Result<Duration, Mismatch> {
    match result {
        Err(JobError::TimedOut { budget }) => Ok(*budget),
        _ => Err(Mismatch::new("the job to time out", describe(result))),
    }
}

/// Checks that the job was rejected (it never ran); returns the rejection.
///
/// # Errors
///
/// A [`Mismatch`] if the job was not rejected.
pub fn rejected<T: fmt::Debug>(result: &JobResult<T>) -> Result<&Rejection, Mismatch> {
    match result {
        Err(JobError::Rejected(rejection)) => Ok(rejection),
        _ => Err(Mismatch::new("the job to be rejected", describe(result))),
    }
}
