//! [`Recovery`]: the jobs a previous run left unfinished, and [`UnknownJob`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use orchestrator_core::{Dispatch, Dispatcher, Job, JobId};
use orchestrator_remote::WireJobId;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::journal::{Pending, Shared, lock, redispatch};

/// A stored job whose type is not durable in this process: it is kept, never dropped, and
/// runs once a process that knows its type starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownJob {
    /// The job's durable id.
    pub id: WireJobId,
    /// Its type's wire name.
    pub job_type: String,
}

/// The jobs a previous run left unfinished, waiting to run again.
///
/// [`adopt`](Self::adopt) dispatches those of one type through an orchestrator (so that it
/// tracks them as its own); [`resume`](Self::resume), or dropping the recovery, dispatches the
/// rest through the dispatcher. Jobs whose type is not durable here are kept in the store and
/// reported (what [`resume`](Self::resume) returns).
#[must_use = "recovered jobs run when the recovery is resumed (or dropped)"]
pub struct Recovery {
    pub(crate) shared: Arc<Shared>,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) pending: Vec<Pending>,
    pub(crate) unknown: Vec<UnknownJob>,
    pub(crate) dead_lettered: Vec<WireJobId>,
}

impl Recovery {
    /// Returns the durable ids of the jobs waiting to run, in the order they were accepted.
    pub fn ids(&self) -> Vec<WireJobId> {
        self.pending.iter().map(|p| p.id).collect()
    }

    /// Returns how many jobs wait to run.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Returns `true` if no job waits to run.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Returns the jobs dead-lettered when the store was opened (the process died in too
    /// many of their runs).
    pub fn dead_lettered(&self) -> &[WireJobId] {
        &self.dead_lettered
    }

    /// Dispatches the waiting jobs of type `J` through `via` (an orchestrator's handle, so
    /// that its state sees their outcomes as its own); returns their local ids. Their handles:
    /// [`Durable::take_handle`](crate::Durable::take_handle).
    pub fn adopt<J>(&mut self, via: &impl Dispatch) -> Vec<JobId>
    where
        J: Job + Serialize + DeserializeOwned,
        J::Output: Serialize + DeserializeOwned + Send,
    {
        let Some(name) = self.shared.registry.job_name::<J>().map(str::to_owned) else {
            return Vec::new();
        };
        let (mine, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.record.request.job_type == name);
        self.pending = rest;
        mine.into_iter()
            .filter_map(|p| redispatch::<J>(&self.shared, via, p).ok())
            .collect()
    }

    /// Dispatches every waiting job through the dispatcher; returns the jobs whose type is
    /// not durable here (kept in the store, reported).
    pub fn resume(mut self) -> Vec<UnknownJob> {
        self.resume_all();
        std::mem::take(&mut self.unknown)
    }

    fn resume_all(&mut self) {
        for pending in std::mem::take(&mut self.pending) {
            let resume = lock(&self.shared.types)
                .get(&pending.record.request.job_type)
                .cloned();
            match resume {
                Some(resume) => {
                    let _ = resume(&self.shared, &self.dispatcher, pending);
                }
                None => {
                    self.shared.stats.unknown.fetch_add(1, Ordering::Relaxed);
                    self.unknown.push(UnknownJob {
                        id: pending.id,
                        job_type: pending.record.request.job_type,
                    });
                }
            }
        }
    }
}

impl Drop for Recovery {
    fn drop(&mut self) {
        self.resume_all();
    }
}

impl fmt::Debug for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovery")
            .field("pending", &self.ids())
            .field("dead_lettered", &self.dead_lettered)
            .finish()
    }
}
