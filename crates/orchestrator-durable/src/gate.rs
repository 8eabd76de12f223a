//! The gate of a network-bound job type: its attempts wait for the network, then for their
//! turn (first accepted, first sent; `concurrency` jobs at a time). A job keeps its turn
//! through its retries until it ends, so a later job never overtakes an earlier one that is
//! retrying (a message is never sent before the one written before it is settled).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use orchestrator_core::{Connectivity, JobId, StateStream};

#[derive(Default)]
struct State {
    /// Jobs waiting for their turn, by acceptance order.
    waiting: BTreeMap<u64, (JobId, Option<Waker>)>,
    /// Jobs whose attempt holds a turn.
    holders: HashSet<JobId>,
}

/// One network-bound job type's turns.
pub(crate) struct Gate {
    connectivity: Arc<dyn Connectivity>,
    concurrency: usize,
    state: Mutex<State>,
}

impl Gate {
    pub(crate) fn new(connectivity: Arc<dyn Connectivity>, concurrency: usize) -> Self {
        Self {
            connectivity,
            concurrency: concurrency.max(1),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the network is up and it is job `id`'s turn (`seq`: its acceptance order).
    pub(crate) fn turn(self: &Arc<Self>, id: JobId, seq: u64) -> Turn {
        Turn {
            gate: self.clone(),
            id,
            seq,
            changes: self.connectivity.changes(),
            done: false,
        }
    }

    /// Job `id` has ended: its turn goes to the next job.
    pub(crate) fn release(&self, id: JobId) {
        let mut state = self.state();
        if state.holders.remove(&id) {
            wake_next(state);
        }
    }

    /// Returns how many jobs wait for the network or their turn.
    pub(crate) fn waiting(&self) -> usize {
        self.state().waiting.len()
    }
}

/// Wakes the first job in line (after the lock is let go of).
fn wake_next(mut state: MutexGuard<'_, State>) {
    let next = state
        .waiting
        .values_mut()
        .next()
        .and_then(|(_, waker)| waker.take());
    drop(state);
    if let Some(waker) = next {
        waker.wake();
    }
}

/// The future of a job's turn.
pub(crate) struct Turn {
    gate: Arc<Gate>,
    id: JobId,
    seq: u64,
    /// Woken when the network's state changes.
    changes: StateStream<bool>,
    done: bool,
}

impl Future for Turn {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(());
        }
        // Drain the network's changes (and register to hear the next one).
        while let Poll::Ready(Some(_)) = Pin::new(&mut this.changes).poll_next(cx) {}
        let online = this.gate.connectivity.is_online();
        let mut state = this.gate.state();
        if state.holders.contains(&this.id) {
            // A retry: it has its turn; it waits for the network only.
            if online {
                this.done = true;
                return Poll::Ready(());
            }
            return Poll::Pending;
        }
        let first = state.waiting.keys().next().copied();
        let my_turn = first.is_none_or(|seq| seq >= this.seq);
        if online && my_turn && state.holders.len() < this.gate.concurrency {
            state.waiting.remove(&this.seq);
            state.holders.insert(this.id);
            this.done = true;
            // The next in line may have a turn too (concurrency above one).
            wake_next(state);
            return Poll::Ready(());
        }
        state
            .waiting
            .insert(this.seq, (this.id, Some(cx.waker().clone())));
        Poll::Pending
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Given up while waiting (the job was cancelled or timed out): the next may go.
        let mut state = self.gate.state();
        state.waiting.remove(&self.seq);
        wake_next(state);
    }
}
