//! The errors of the undo stack's operations, one type per operation, and the report of
//! [`UndoStack::undo_to`](crate::UndoStack::undo_to).

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::error::Error;
use core::fmt;

use crate::outcome::JobError;

use super::Reversible;
use super::view::{HistoryAction, HistoryEntry, HistoryStep};

/// Why one entry could not be undone or redone: its entry (as it still is: the history did not
/// change for it), the action and the reason.
///
/// It displays as `undo of entry 3 (`add milk`) failed` and its `source()` is the job's
/// [`JobError`]; `{:#}` prints the whole chain on one line. A veto displays with its reason:
/// `undo of entry 3 (`add milk`) vetoed: already shipped`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EntryFailure {
    /// Undo or redo.
    pub action: HistoryAction,
    /// The entry, unchanged.
    pub entry: HistoryEntry,
    /// Why it failed.
    pub reason: FailureReason,
}

/// Why an entry could not be undone or redone.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FailureReason {
    /// A before-hook vetoed, with this reason; nothing was dispatched.
    Vetoed(Cow<'static, str>),
    /// The dispatched job (the inverse, or the job again) did not succeed.
    Job(JobError),
}

impl EntryFailure {
    /// Returns `true` if a before-hook vetoed.
    pub fn is_vetoed(&self) -> bool {
        matches!(self.reason, FailureReason::Vetoed(_))
    }

    /// Returns the veto's reason, if a hook vetoed.
    pub fn veto_reason(&self) -> Option<&str> {
        match &self.reason {
            FailureReason::Vetoed(reason) => Some(reason),
            FailureReason::Job(_) => None,
        }
    }

    /// Returns the job's error, if the dispatched job did not succeed.
    pub fn job_error(&self) -> Option<&JobError> {
        match &self.reason {
            FailureReason::Job(error) => Some(error),
            FailureReason::Vetoed(_) => None,
        }
    }
}

impl fmt::Display for EntryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of entry {} (`{}`) ",
            self.action, self.entry.id, self.entry.description
        )?;
        match &self.reason {
            FailureReason::Vetoed(reason) => write!(f, "vetoed: {reason}"),
            FailureReason::Job(error) if f.alternate() => write!(f, "failed: {error:#}"),
            FailureReason::Job(_) => f.write_str("failed"),
        }
    }
}

impl Error for EntryFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.reason {
            FailureReason::Job(error) => Some(error),
            FailureReason::Vetoed(_) => None,
        }
    }
}

macro_rules! operation_error {
    (
        $(#[$doc:meta])*
        $name:ident, $nothing:ident, $nothing_doc:literal, $nothing_text:literal, $is_nothing:ident
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        #[non_exhaustive]
        pub enum $name {
            #[doc = $nothing_doc]
            $nothing,
            /// Another undo or redo of this stack is running; nothing was done.
            Busy,
            /// The entry could not be changed (a hook vetoed, or its job did not succeed);
            /// it stays where it was.
            Entry(Box<EntryFailure>),
        }

        impl $name {
            #[doc = $nothing_doc]
            pub fn $is_nothing(&self) -> bool {
                matches!(self, Self::$nothing)
            }

            /// Returns `true` if another undo or redo was running.
            pub fn is_busy(&self) -> bool {
                matches!(self, Self::Busy)
            }

            /// Returns `true` if a before-hook vetoed.
            pub fn is_vetoed(&self) -> bool {
                self.entry_failure().is_some_and(EntryFailure::is_vetoed)
            }

            /// Returns `true` if the dispatched job did not succeed.
            pub fn is_failed(&self) -> bool {
                self.job_error().is_some()
            }

            /// Returns the entry's failure (a veto or a job that did not succeed).
            pub fn entry_failure(&self) -> Option<&EntryFailure> {
                match self {
                    Self::Entry(failure) => Some(&**failure),
                    _ => None,
                }
            }

            /// Returns the job's error, if the dispatched job did not succeed.
            pub fn job_error(&self) -> Option<&JobError> {
                self.entry_failure().and_then(EntryFailure::job_error)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Self::$nothing => f.write_str($nothing_text),
                    Self::Busy => f.write_str("another undo or redo is running"),
                    Self::Entry(failure) => fmt::Display::fmt(failure, f),
                }
            }
        }

        impl Error for $name {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                self.entry_failure().and_then(Error::source)
            }
        }
    };
}

operation_error! {
    /// The error of [`UndoStack::undo`](crate::UndoStack::undo). In every case the history is
    /// as it was before the call.
    ///
    /// ```
    /// use orchestrator_core::UndoError;
    /// assert_eq!(UndoError::NothingToUndo.to_string(), "nothing to undo");
    /// assert!(UndoError::Busy.is_busy());
    /// assert!(UndoError::Busy.job_error().is_none());
    /// ```
    UndoError, NothingToUndo, "Nothing is done: nothing to undo.", "nothing to undo",
    is_nothing_to_undo
}

operation_error! {
    /// The error of [`UndoStack::redo`](crate::UndoStack::redo). In every case the history is
    /// as it was before the call.
    ///
    /// ```
    /// use orchestrator_core::RedoError;
    /// assert_eq!(RedoError::NothingToRedo.to_string(), "nothing to redo");
    /// assert_eq!(RedoError::Busy.to_string(), "another undo or redo is running");
    /// ```
    RedoError, NothingToRedo,
    "Nothing is undone (or a job recorded since discarded what was): nothing to redo.",
    "nothing to redo", is_nothing_to_redo
}

/// What [`UndoStack::undo_to`](crate::UndoStack::undo_to) does when an entry cannot be
/// undone (a hook vetoed or its inverse did not succeed).
///
/// In each case the failing entry stays done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UndoStrategy {
    /// Stop there: the entries undone before the failure stay undone.
    #[default]
    StopAtFirstError,
    /// Leave the entry done and go on with the older ones. A skipped entry moves below the
    /// ones undone after it, so the history still reads "applied, then undone".
    SkipFailed,
    /// Redo the entries this call undid (the most recently undone last), so the history ends
    /// where it started. A re-apply that fails stops the rollback; it is reported.
    RollBack,
}

/// What an [`UndoStack::undo_to`](crate::UndoStack::undo_to) did: the entries undone, the
/// failures, and for [`UndoStrategy::RollBack`] the entries re-applied.
#[derive(Debug, Clone)]
#[must_use = "a report may list entries that could not be undone"]
#[non_exhaustive]
pub struct UndoToReport {
    /// The position asked for.
    pub target: usize,
    /// The cursor when the call ended.
    pub position: usize,
    /// The entries undone, in order (steps re-applied by a rollback included).
    pub undone: Vec<HistoryStep>,
    /// The entries that could not be undone, in order.
    pub failures: Vec<EntryFailure>,
    /// The entries a rollback redid, in order.
    pub reapplied: Vec<HistoryStep>,
    /// The re-apply that failed and stopped the rollback, if one did.
    pub reapply_failure: Option<EntryFailure>,
}

impl UndoToReport {
    /// Returns `true` if the cursor reached the target with no failure.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty() && self.position == self.target
    }
}

/// The error of [`UndoStack::undo_to`](crate::UndoStack::undo_to).
///
/// ```
/// use orchestrator_core::UndoToError;
/// let err = UndoToError::AheadOfCursor { target: 5, position: 2 };
/// assert_eq!(err.to_string(), "cannot undo to position 5: the cursor is at 2");
/// assert!(err.report().is_none());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum UndoToError {
    /// Another undo or redo of this stack is running; nothing was done.
    Busy,
    /// The target is above the cursor (that would be a redo); nothing was done.
    AheadOfCursor {
        /// The position asked for.
        target: usize,
        /// The cursor.
        position: usize,
    },
    /// At least one entry could not be undone; the report says what was done about it.
    Failed(Box<UndoToReport>),
}

impl UndoToError {
    /// Returns `true` if another undo or redo was running.
    pub fn is_busy(&self) -> bool {
        matches!(self, UndoToError::Busy)
    }

    /// Returns `true` if an entry could not be undone.
    pub fn is_failed(&self) -> bool {
        matches!(self, UndoToError::Failed(_))
    }

    /// Returns the report, if entries were tried.
    pub fn report(&self) -> Option<&UndoToReport> {
        match self {
            UndoToError::Failed(report) => Some(&**report),
            _ => None,
        }
    }
}

impl fmt::Display for UndoToError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UndoToError::Busy => f.write_str("another undo or redo is running"),
            UndoToError::AheadOfCursor { target, position } => write!(
                f,
                "cannot undo to position {target}: the cursor is at {position}"
            ),
            UndoToError::Failed(report) => {
                let failed = report.failures.len();
                write!(
                    f,
                    "undo to position {} stopped at position {}: {failed} entr{} could not be undone",
                    report.target,
                    report.position,
                    if failed == 1 { "y" } else { "ies" }
                )?;
                if !report.reapplied.is_empty() || report.reapply_failure.is_some() {
                    write!(f, ", {} re-applied", report.reapplied.len())?;
                }
                if report.reapply_failure.is_some() {
                    f.write_str(", a re-apply failed")?;
                }
                Ok(())
            }
        }
    }
}

impl Error for UndoToError {
    /// The first failure.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.report()
            .and_then(|r| r.failures.first())
            .map(|f| f as &(dyn Error + 'static))
    }
}

/// The error of [`UndoStack::record`](crate::UndoStack::record): an undo or redo was running,
/// so the job was not recorded. It gives the job and its output back.
pub struct RecordError<J: Reversible> {
    job: J,
    output: J::Output,
}

impl<J: Reversible> RecordError<J> {
    pub(super) fn new(job: J, output: J::Output) -> Self {
        Self { job, output }
    }

    /// Returns `true`: an undo or redo was running (the only reason a record is refused).
    pub fn is_busy(&self) -> bool {
        true
    }

    /// Returns the job and its output, to record later.
    pub fn into_inner(self) -> (J, J::Output) {
        (self.job, self.output)
    }
}

impl<J: Reversible> fmt::Debug for RecordError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordError")
            .field("job_type", &core::any::type_name::<J>())
            .finish_non_exhaustive()
    }
}

impl<J: Reversible> fmt::Display for RecordError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("another undo or redo is running: the job was not recorded")
    }
}

impl<J: Reversible> Error for RecordError<J> {}

/// The error of [`UndoStack::run`](crate::UndoStack::run).
#[non_exhaustive]
pub enum RunError<J: Reversible> {
    /// An undo or redo was running: the job was not dispatched.
    Busy,
    /// The job did not succeed: nothing was recorded.
    Job(JobError),
    /// The job succeeded, but an undo or redo started while it ran, so it was not recorded:
    /// its effect stands. The error gives the job and its output back.
    NotRecorded(RecordError<J>),
}

impl<J: Reversible> RunError<J> {
    /// Returns `true` if the job was not dispatched or not recorded because an undo or redo
    /// was running.
    pub fn is_busy(&self) -> bool {
        matches!(self, RunError::Busy | RunError::NotRecorded(_))
    }

    /// Returns the job's error, if it did not succeed.
    pub fn job_error(&self) -> Option<&JobError> {
        match self {
            RunError::Job(error) => Some(error),
            _ => None,
        }
    }
}

impl<J: Reversible> fmt::Debug for RunError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Busy => f.write_str("Busy"),
            RunError::Job(error) => f.debug_tuple("Job").field(error).finish(),
            RunError::NotRecorded(error) => f.debug_tuple("NotRecorded").field(error).finish(),
        }
    }
}

impl<J: Reversible> fmt::Display for RunError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Busy => f.write_str("another undo or redo is running: the job was not run"),
            RunError::Job(_) if !f.alternate() => f.write_str("the job did not succeed"),
            RunError::Job(error) => write!(f, "the job did not succeed: {error:#}"),
            RunError::NotRecorded(error) => fmt::Display::fmt(error, f),
        }
    }
}

impl<J: Reversible> Error for RunError<J> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RunError::Job(error) => Some(error),
            _ => None,
        }
    }
}

/// The error of [`UndoStackBuilder::build`](crate::UndoStackBuilder::build): a history limit
/// of 0 would keep nothing.
///
/// ```
/// use orchestrator_core::InvalidHistoryLimit;
/// assert_eq!(InvalidHistoryLimit.to_string(), "the undo history limit must be at least 1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InvalidHistoryLimit;

impl fmt::Display for InvalidHistoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the undo history limit must be at least 1")
    }
}

impl Error for InvalidHistoryLimit {}
