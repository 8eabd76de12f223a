//! Lifecycle events: what happens to a job, published on its bus for those who opt in.
//!
//! With lifecycle events on (per dispatcher, [`DispatcherBuilder::lifecycle_events`], or per
//! dispatch, [`JobBuilder::lifecycle_events`]), a job publishes [`JobLifecycle`] events on
//! its bus, in this order: `Placeholder` (if it has one), `Started`, `CacheHit` (on a hit),
//! then any `Progress` and `Retrying`, then exactly one
//! terminal event (`Succeeded`, `Failed`, `Cancelled`, `TimedOut` or `Rejected`; a rejected
//! job publishes only that). Nothing of the job is published after its terminal event. Off,
//! they cost one boolean check per hook point. A job dispatched through an orchestrator
//! publishes them all but `Progress` (unless the dispatch turns them on explicitly).
//!
//! [`DispatcherBuilder::lifecycle_events`]: crate::DispatcherBuilder::lifecycle_events
//! [`JobBuilder::lifecycle_events`]: crate::JobBuilder::lifecycle_events

use alloc::borrow::Cow;
use core::error::Error;
use core::fmt;
use core::time::Duration;

use crate::outcome::{DataSource, Failure, JobError, Rejection, Success};
use crate::progress::Progress;
use crate::sync::Arc;

/// A lifecycle event of one job; its envelope's correlation id is the job's id.
#[derive(Clone)]
#[non_exhaustive]
pub enum JobLifecycle {
    /// The job's task started.
    Started,
    /// The job's placeholder was published (before its work).
    Placeholder,
    /// The job's value was found in the cache.
    CacheHit,
    /// The executor reported progress.
    Progress(Progress),
    /// Attempt `attempt` failed with `error`; the next starts after `delay`.
    Retrying {
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// The attempt's error.
        error: Arc<dyn Error + Send + Sync>,
    },
    /// Terminal: the job succeeded.
    Succeeded {
        /// Where the value came from.
        data_source: DataSource,
    },
    /// Terminal: the executor failed on its last attempt.
    Failed(Failure),
    /// Terminal: the job was cancelled.
    Cancelled {
        /// The reason given, if any.
        reason: Option<Cow<'static, str>>,
    },
    /// Terminal: the job's budget expired.
    TimedOut {
        /// The budget.
        budget: Duration,
    },
    /// Terminal: the job never ran.
    Rejected(Rejection),
}

impl JobLifecycle {
    /// Returns `true` for the terminal events (every job publishes exactly one).
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            JobLifecycle::Started
                | JobLifecycle::Placeholder
                | JobLifecycle::CacheHit
                | JobLifecycle::Progress(_)
                | JobLifecycle::Retrying { .. }
        )
    }

    /// A small number per variant (the loop guard's opt-in rate limits count variants apart).
    pub(crate) fn kind(&self) -> u8 {
        match self {
            JobLifecycle::Started => 1,
            JobLifecycle::Progress(_) => 2,
            JobLifecycle::Retrying { .. } => 3,
            JobLifecycle::Succeeded { .. } => 4,
            JobLifecycle::Failed(_) => 5,
            JobLifecycle::Cancelled { .. } => 6,
            JobLifecycle::TimedOut { .. } => 7,
            JobLifecycle::Rejected(_) => 8,
            JobLifecycle::Placeholder => 9,
            JobLifecycle::CacheHit => 10,
        }
    }

    pub(crate) fn terminal<T>(outcome: &Result<Success<T>, JobError>) -> Self {
        match outcome {
            Ok(success) => JobLifecycle::Succeeded {
                data_source: success.data_source,
            },
            Err(JobError::Failed(failure)) => JobLifecycle::Failed(failure.clone()),
            Err(JobError::Cancelled { reason }) => JobLifecycle::Cancelled {
                reason: reason.clone(),
            },
            Err(JobError::TimedOut { budget }) => JobLifecycle::TimedOut { budget: *budget },
            Err(JobError::Rejected(rejection)) => JobLifecycle::Rejected(rejection.clone()),
        }
    }
}

impl fmt::Debug for JobLifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobLifecycle::Started => f.write_str("Started"),
            JobLifecycle::Placeholder => f.write_str("Placeholder"),
            JobLifecycle::CacheHit => f.write_str("CacheHit"),
            JobLifecycle::Progress(p) => f.debug_tuple("Progress").field(p).finish(),
            JobLifecycle::Retrying {
                attempt,
                delay,
                error,
            } => f
                .debug_struct("Retrying")
                .field("attempt", attempt)
                .field("delay", delay)
                .field("error", &format_args!("{error}"))
                .finish(),
            JobLifecycle::Succeeded { data_source } => f
                .debug_struct("Succeeded")
                .field("data_source", data_source)
                .finish(),
            JobLifecycle::Failed(failure) => f
                .debug_struct("Failed")
                .field("attempts", &failure.attempts())
                .field("error", &format_args!("{}", failure.error()))
                .finish(),
            JobLifecycle::Cancelled { reason } => {
                f.debug_struct("Cancelled").field("reason", reason).finish()
            }
            JobLifecycle::TimedOut { budget } => {
                f.debug_struct("TimedOut").field("budget", budget).finish()
            }
            JobLifecycle::Rejected(r) => f.debug_tuple("Rejected").field(r).finish(),
        }
    }
}
