//! Observers: hooks into every job and event, for logging, metrics and tracing.

use alloc::vec::Vec;
use core::error::Error;
use core::fmt;
use core::time::Duration;

use crate::breaker::BreakerState;
use crate::cache::CacheError;
use crate::event::Event;
use crate::id::JobId;
use crate::job::JobType;
use crate::outcome::{DataSource, JobError};
use crate::sync::Arc;

/// Which job a hook is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobInfo {
    /// The dispatch's id.
    pub id: JobId,
    /// The job's type.
    pub job_type: JobType,
}

/// Hooks into the life of jobs and events. Every method has an empty default.
///
/// An [`Observer`] has one method per hook, each with an empty default, so an implementation
/// overrides only what it needs. Observers are registered on a dispatcher
/// ([`DispatcherBuilder::observer`](crate::DispatcherBuilder::observer)); several compose and
/// are called in registration order. Hooks run outside every lock of the core. With `std`, a
/// panicking observer is contained: the panic is swallowed, the job and the other observers go
/// on. Without observers the hooks cost one emptiness check.
///
#[allow(unused_variables)]
pub trait Observer: Send + Sync + 'static {
    /// A job's task started (before its first attempt).
    fn on_job_start(&self, job: &JobInfo) {}

    /// A job succeeded.
    fn on_job_success(&self, job: &JobInfo, data_source: DataSource) {}

    /// A job ended without success (failed, cancelled, timed out or rejected).
    fn on_job_error(&self, job: &JobInfo, error: &JobError) {}

    /// Attempt `attempt` of a job failed with `error`; the next one starts after `delay`.
    fn on_job_retry(
        &self,
        job: &JobInfo,
        attempt: u32,
        delay: Duration,
        error: &(dyn Error + 'static),
    ) {
    }

    /// An event of a job (emitted by its executor, its output event, or a lifecycle event)
    /// was published on its bus.
    fn on_event_published(&self, event: &Event) {}

    /// An orchestrator's loop guard kept an event from its handler (every drop is
    /// reported): the event, its causal chain
    /// ([`Event::causal_chain`](crate::Event::causal_chain)), the orchestrator and why.
    fn on_event_dropped(&self, dropped: &DroppedEvent<'_>) {}

    /// An event of a job (lifecycle, output or placeholder event) could not be published
    /// because the job's bus was closed. The dispatcher counts these too
    /// ([`Dispatcher::undelivered_events`](crate::Dispatcher::undelivered_events)).
    fn on_event_undelivered(&self, event: &Event) {}

    /// A cache provider failed to read or write `key` for a job (treated as a miss).
    fn on_cache_error(&self, job: &JobInfo, key: &str, error: &CacheError) {}

    /// The failure circuit breaker of `job_type` changed state.
    fn on_breaker_transition(&self, job_type: &'static str, state: BreakerState) {}

    /// An orchestrator's event handler panicked (with `std`); the orchestrator goes on.
    fn on_handler_panic(&self, orchestrator: &'static str, message: &str) {}
}

/// The observers of one dispatcher, in registration order.
#[derive(Clone, Default)]
pub(crate) struct Observers {
    list: Option<Arc<[Arc<dyn Observer>]>>,
}

impl Observers {
    pub(crate) fn new(list: Vec<Arc<dyn Observer>>) -> Self {
        Self {
            list: (!list.is_empty()).then(|| Arc::from(list)),
        }
    }

    /// Returns `true` if there is at least one observer.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.list.is_some()
    }

    /// Calls `hook` on every observer, containing panics (with `std`).
    pub(crate) fn each(&self, hook: impl Fn(&dyn Observer)) {
        let Some(list) = &self.list else {
            return;
        };
        for observer in list.iter() {
            contain(|| hook(&**observer));
        }
    }
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observers")
            .field("count", &self.list.as_ref().map_or(0, |l| l.len()))
            .finish()
    }
}

fn contain(f: impl FnOnce()) {
    let _ = crate::panic::catch(f);
}

/// Why an orchestrator did not handle an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The event's causal depth is over the guard's limit: a chain of reactions was cut.
    TooDeep {
        /// The limit.
        limit: u32,
    },
    /// More events of its type arrived in the current one-second window than the opt-in rate
    /// limit allows.
    RateLimited {
        /// The limit per window.
        limit: u32,
    },
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::TooDeep { limit } => {
                write!(f, "causal chain deeper than the limit of {limit}")
            }
            DropReason::RateLimited { limit } => {
                write!(f, "more than {limit} events of its type in one second")
            }
        }
    }
}

/// An event an orchestrator did not handle, with why; see [`LoopGuard`](crate::LoopGuard).
///
/// Its [`event`](Self::event) tells the rest: its type, its job, its causal depth and the
/// chain of reactions that produced it ([`Event::causal_chain`]).
#[derive(Debug, Clone, Copy)]
pub struct DroppedEvent<'a> {
    pub(crate) orchestrator: &'static str,
    pub(crate) event: &'a Event,
    pub(crate) reason: DropReason,
}

impl<'a> DroppedEvent<'a> {
    /// Returns the name of the orchestrator that dropped it.
    pub fn orchestrator(&self) -> &'static str {
        self.orchestrator
    }

    /// Returns the event.
    pub fn event(&self) -> &'a Event {
        self.event
    }

    /// Returns why it was dropped.
    pub fn reason(&self) -> DropReason {
        self.reason
    }
}
