//! The jobs in flight of one dispatcher: counted for accounting, reachable for shutdown.
//!
//! A slab of weak references: a job takes a slot when it is dispatched (one lock, no hashing,
//! no allocation once the slab has grown) and gives it back when it ends, so the registry never
//! keeps a finished job's memory. Its length is the number of jobs in flight.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use event_listener::Event as Notify;

use crate::sync::{Arc, AtomicBool, Mutex, Ordering, Weak};

/// What the registry can do to a job in flight: cancel it.
pub(crate) trait Cancel: Send + Sync {
    /// Asks the job to cancel; ignored once it has ended.
    fn cancel(&self, reason: Option<Cow<'static, str>>);
}

#[derive(Default)]
struct Slab {
    slots: Vec<Option<Weak<dyn Cancel>>>,
    free: Vec<usize>,
    live: usize,
}

/// The jobs in flight of one dispatcher.
#[derive(Default)]
pub(crate) struct Registry {
    slab: Mutex<Slab>,
    /// Notified when the last job in flight ends, once someone waits for it (a shutdown).
    drained: Notify,
    /// Set by the first shutdown: until then nobody listens to `drained`.
    draining: AtomicBool,
}

impl Registry {
    /// Records `job` as in flight; returns its slot.
    pub(crate) fn insert(&self, job: Weak<dyn Cancel>) -> usize {
        self.slab.with(|slab| {
            slab.live += 1;
            match slab.free.pop() {
                Some(slot) => {
                    slab.slots[slot] = Some(job);
                    slot
                }
                None => {
                    slab.slots.push(Some(job));
                    slab.slots.len() - 1
                }
            }
        })
    }

    /// Records that the job in `slot` has ended.
    pub(crate) fn remove(&self, slot: usize) {
        let (job, drained) = self.slab.with(|slab| {
            let job = slab.slots.get_mut(slot).and_then(Option::take);
            if job.is_some() {
                slab.live -= 1;
                slab.free.push(slot);
            }
            (job, slab.live == 0)
        });
        drop(job); // outside the lock
        if drained && self.draining.load(Ordering::Acquire) {
            self.drained.notify(usize::MAX);
        }
    }

    /// Returns how many jobs are in flight.
    pub(crate) fn len(&self) -> usize {
        self.slab.with(|slab| slab.live)
    }

    /// Returns the event notified when the last job in flight ends; from now on it is
    /// notified (before, nobody waited, so ending jobs skip it).
    pub(crate) fn drained(&self) -> &Notify {
        self.draining.store(true, Ordering::Release);
        &self.drained
    }

    /// Cancels every job in flight with `reason`; returns how many were asked to.
    pub(crate) fn cancel_all(&self, reason: &'static str) -> usize {
        let jobs: Vec<Arc<dyn Cancel>> = self.slab.with(|slab| {
            slab.slots
                .iter()
                .flatten()
                .filter_map(Weak::upgrade)
                .collect()
        });
        for job in &jobs {
            job.cancel(Some(Cow::Borrowed(reason)));
        }
        jobs.len()
    }
}
