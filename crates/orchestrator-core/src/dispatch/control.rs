//! The type-erased view of a running job ([`JobControl`]), and [`EmitError`].

use crate::bus::{BusRef, SignalBus};
use crate::cache::CacheProvider;
use crate::cancel::CancellationToken;
use crate::cause::Cause;
use crate::event::{Event, Meta};
use crate::id::JobId;
use crate::progress::Progress;
use crate::runtime::Runtime;
use crate::sync::{Arc, Weak};
use crate::watch::Watch;
use core::fmt;

use super::env::JobEnv;
use super::registry::Cancel;

/// A job's progress: the latest report, if any.
pub(crate) type ProgressWatch = Watch<Option<Progress>>;

/// The type-erased part of a job's shared state (`JobShared`) that contexts, progress
/// streams, sub-job parents and followers use.
pub(crate) trait JobControl: Cancel + Send + Sync + 'static {
    fn id(&self) -> JobId;
    fn runtime(&self) -> &dyn Runtime;
    fn token(&self) -> Option<&CancellationToken>;
    /// When the dispatch's total timeout expires, on the runtime's clock.
    fn deadline(&self) -> Option<crate::runtime::Instant>;
    fn metadata(&self, key: &str) -> Option<&str>;
    fn cache(&self) -> &dyn CacheProvider;
    /// Publishes an event of this job on its bus, unless the job has ended.
    fn publish(&self, event: Event) -> Result<usize, EmitError>;
    /// Publishes an event of this job on `bus`, unless the job has ended.
    fn publish_to(&self, bus: &SignalBus, event: Event) -> Result<usize, EmitError>;
    fn report(&self, progress: Progress) -> bool;
    fn is_cancel_requested(&self) -> bool;
    fn cause(&self) -> &Cause;
    fn parent_id(&self) -> Option<JobId>;
    /// The bus this job publishes on, when it is not its dispatcher's (sub-jobs inherit it).
    fn bus_override(&self) -> Option<BusRef>;
    /// The envelope of an event of this job (no data source).
    fn meta(&self) -> Meta;
    fn env(&self) -> &Arc<JobEnv>;
    /// Cancels `child` with this job; returns `false` (and cancels it) if this job has ended.
    fn adopt(&self, child: Weak<dyn JobControl>) -> bool;
    fn current_progress(&self) -> Option<Progress>;
    /// The job's progress (the job it follows, for a dedup join).
    fn progress_watch(&self) -> Arc<ProgressWatch>;
}

/// The error returned by [`JobContext::emit`](crate::JobContext::emit); it gives the event back.
#[derive(Debug, Clone)]
pub struct EmitError {
    event: Event,
    job_ended: bool,
}

impl EmitError {
    pub(crate) fn job_ended(event: Event) -> Self {
        Self {
            event,
            job_ended: true,
        }
    }

    pub(crate) fn closed(event: Event) -> Self {
        Self {
            event,
            job_ended: false,
        }
    }

    /// Returns `true` if the job had already reached its outcome.
    pub fn is_job_ended(&self) -> bool {
        self.job_ended
    }

    /// Returns `true` if the job's bus is closed.
    pub fn is_closed(&self) -> bool {
        !self.job_ended
    }

    /// Returns the event that was not published.
    pub fn into_inner(self) -> Event {
        self.event
    }
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.job_ended {
            "the job has already ended"
        } else {
            "the job's signal bus is closed"
        })
    }
}

impl core::error::Error for EmitError {}
