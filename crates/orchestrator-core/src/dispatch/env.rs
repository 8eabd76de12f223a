//! What a dispatcher gives every job it starts: [`JobEnv`].

use core::any::Any;

use crate::bus::SignalBus;
use crate::cache::CacheProvider;
use crate::event::Event;
use crate::observer::Observers;
use crate::runtime::Runtime;
use crate::sync::{Arc, AtomicUsize, Ordering, Weak};

use super::registry::Registry;

/// What a dispatcher gives every job it starts: shared, one reference count per job.
pub(crate) struct JobEnv {
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) cache: Arc<dyn CacheProvider>,
    pub(crate) bus: SignalBus,
    pub(crate) observers: Observers,
    pub(crate) lifecycle: bool,
    /// The dispatcher itself, for sub-jobs (weak: jobs never keep their dispatcher alive).
    pub(crate) dispatcher: Weak<dyn Any + Send + Sync>,
    /// The jobs in flight (dispatched, not ended), for accounting and shutdown.
    pub(crate) jobs: Registry,
    /// Job events that could not be published (their bus was closed).
    pub(crate) undelivered: AtomicUsize,
}

impl JobEnv {
    /// Counts and reports an event of a job that its closed bus refused.
    pub(crate) fn undelivered(&self, event: &Event) {
        self.undelivered.fetch_add(1, Ordering::Relaxed);
        self.observers.each(|o| o.on_event_undelivered(event));
    }

    /// Returns how many jobs are in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.jobs.len()
    }
}
