//! The jobs in flight of one dispatcher: counted for accounting, reachable for shutdown.
//!
//! Counting is one atomic per dispatch and one per end. A job becomes *reachable* (a slot in
//! a slab of weak references, one lock) only when its task first waits: a job that ends
//! within its first poll (a no-op, a cache-like executor) never takes the lock. A job not yet
//! reachable is cancelled by the shutdown flag instead, which its task checks on every poll
//! and once more right after it takes a slot, so a shutdown never misses a job in flight.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use event_listener::Event as Notify;

use crate::sync::{Arc, AtomicBool, AtomicUsize, Mutex, Ordering, Weak};

/// What the registry can do to a job in flight: cancel it.
pub(crate) trait Cancel: Send + Sync {
    /// Asks the job to cancel; ignored once it has ended.
    fn cancel(&self, reason: Option<Cow<'static, str>>);
}

#[derive(Default)]
struct Slab {
    slots: Vec<Option<Weak<dyn Cancel>>>,
    free: Vec<u32>,
}

/// What [`Registry::reach`] did.
pub(crate) enum Reach {
    /// The job has a slot until it ends.
    Slot(u32),
    /// Every job in flight was cancelled already: the job cancels itself.
    Cancelled,
    /// Over four billion jobs are waiting (the slab is indexed by `u32` to keep the per-job
    /// state small): the job stays unreachable, and a shutdown cancels it through the flag
    /// its task checks on every poll.
    Full,
}

/// Why every job in flight was cancelled (set once, by a shutdown whose grace ran out).
pub(crate) const SHUTDOWN_REASON: &str = "the dispatcher shut down";

/// The jobs in flight of one dispatcher.
#[derive(Default)]
pub(crate) struct Registry {
    /// Jobs dispatched and not ended.
    live: AtomicUsize,
    /// The jobs in flight that have waited at least once.
    slab: Mutex<Slab>,
    /// Set when every job in flight is cancelled: a job that was not reachable yet sees it.
    cancelled: AtomicBool,
    /// Notified when the last job in flight ends, once someone waits for it (a shutdown).
    drained: Notify,
    /// Set by the first shutdown: until then nobody listens to `drained`.
    draining: AtomicBool,
}

impl Registry {
    /// Counts a job in flight (until [`leave`](Self::leave)).
    #[inline]
    pub(crate) fn enter(&self) {
        self.live.fetch_add(1, Ordering::SeqCst);
    }

    /// Records that a job counted by [`enter`](Self::enter) has ended.
    #[inline]
    pub(crate) fn leave(&self) {
        // SeqCst pairs with `drained`: either the shutdown sees zero, or this sees it waiting.
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 && self.draining.load(Ordering::SeqCst) {
            self.drained.notify(usize::MAX);
        }
    }

    /// Makes a job in flight reachable by [`cancel_all`](Self::cancel_all).
    pub(crate) fn reach(&self, job: Weak<dyn Cancel>) -> Reach {
        let slot = self.slab.with(|slab| match slab.free.pop() {
            Some(slot) => {
                slab.slots[slot as usize] = Some(job);
                Some(slot)
            }
            None => {
                let slot = u32::try_from(slab.slots.len())
                    .ok()
                    .filter(|&s| s < u32::MAX)?;
                slab.slots.push(Some(job));
                Some(slot)
            }
        });
        let Some(slot) = slot else {
            return Reach::Full;
        };
        // After taking the slot: a `cancel_all` that had already walked the slab set the flag
        // before it locked it, so this sees the flag.
        if self.is_cancelled() {
            self.unreach(slot);
            return Reach::Cancelled;
        }
        Reach::Slot(slot)
    }

    /// Gives back the slot of a job that has ended.
    pub(crate) fn unreach(&self, slot: u32) {
        let job = self.slab.with(|slab| {
            let job = slab.slots.get_mut(slot as usize).and_then(Option::take);
            if job.is_some() {
                slab.free.push(slot);
            }
            job
        });
        drop(job); // outside the lock
    }

    /// Returns `true` once every job in flight was cancelled ([`cancel_all`](Self::cancel_all)).
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Returns how many jobs are in flight.
    pub(crate) fn len(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Returns the event notified when the last job in flight ends; from now on it is
    /// notified (before, nobody waited, so ending jobs skip it).
    pub(crate) fn drained(&self) -> &Notify {
        self.draining.store(true, Ordering::SeqCst);
        &self.drained
    }

    /// Cancels every job in flight with [`SHUTDOWN_REASON`], and every job still to come
    /// that was dispatched before; returns how many were in flight.
    pub(crate) fn cancel_all(&self) -> usize {
        let in_flight = self.len();
        self.cancelled.store(true, Ordering::SeqCst);
        let jobs: Vec<Arc<dyn Cancel>> = self.slab.with(|slab| {
            slab.slots
                .iter()
                .flatten()
                .filter_map(Weak::upgrade)
                .collect()
        });
        for job in &jobs {
            job.cancel(Some(Cow::Borrowed(SHUTDOWN_REASON)));
        }
        in_flight
    }
}
