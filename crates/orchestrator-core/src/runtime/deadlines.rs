//! The deadline-ordered queue of pending sleeps behind the clocks the core drives itself
//! ([`TickTimer`](super::TickTimer) and, with `test-util`, the virtual clock).
//!
//! A clock is an `Arc<Mutex<Deadlines<T>>>`, where `T` is its unit of time (ticks, or a
//! `Duration` since the epoch). A [`SleepUntil`] registers its waker under
//! `(deadline, key)` on its first pending poll and removes it when dropped, so an abandoned
//! sleep neither leaks nor is woken. The clock's owner moves `now` and pops the due entries in
//! deadline order ([`Deadlines::pop_due`]), waking each outside the lock.
//!
//! Costs, with `n` pending sleeps: registering, re-registering and dropping a sleep are
//! `O(log n)`; finding that nothing is due is `O(log n)`; firing `k` due sleeps is
//! `O(k log n)`. Nothing scans every pending sleep.

use alloc::collections::BTreeMap;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use crate::sync::{Arc, Mutex};

/// A clock's current time and its pending sleeps, by deadline then registration order.
#[derive(Debug)]
pub(crate) struct Deadlines<T> {
    pub(crate) now: T,
    next_key: u64,
    sleeps: BTreeMap<(T, u64), Waker>,
}

impl<T: Ord + Copy> Deadlines<T> {
    pub(crate) const fn new(now: T) -> Self {
        Self {
            now,
            next_key: 0,
            sleeps: BTreeMap::new(),
        }
    }

    /// Returns the earliest pending deadline.
    pub(crate) fn next_deadline(&self) -> Option<T> {
        self.sleeps.keys().next().map(|&(deadline, _)| deadline)
    }

    /// Returns the number of pending sleeps.
    pub(crate) fn len(&self) -> usize {
        self.sleeps.len()
    }

    /// Removes the earliest sleep due at or before `until` and returns its deadline and
    /// waker; the caller wakes it after releasing the lock.
    pub(crate) fn pop_due(&mut self, until: T) -> Option<(T, Waker)> {
        let entry = self.sleeps.first_entry()?;
        let deadline = entry.key().0;
        (deadline <= until).then(|| (deadline, entry.remove()))
    }

    /// The body of [`SleepUntil::poll`]: `true` once `deadline` is reached, else the waker is
    /// registered (once; re-polls only replace a waker that would wake another task).
    fn poll_sleep(&mut self, deadline: T, key: &mut Option<u64>, waker: &Waker) -> bool {
        if self.now >= deadline {
            if let Some(k) = key.take() {
                self.sleeps.remove(&(deadline, k));
            }
            return true;
        }
        match *key {
            Some(k) => match self.sleeps.get_mut(&(deadline, k)) {
                Some(registered) => {
                    if !registered.will_wake(waker) {
                        registered.clone_from(waker);
                    }
                }
                // Popped by a clock move that did not reach it (cannot happen with `pop_due`,
                // which only pops due entries), or never there: register again.
                None => {
                    self.sleeps.insert((deadline, k), waker.clone());
                }
            },
            None => {
                let k = self.next_key;
                self.next_key = self.next_key.wrapping_add(1);
                self.sleeps.insert((deadline, k), waker.clone());
                *key = Some(k);
            }
        }
        false
    }
}

/// A sleep on a clock of the core's: completes once the clock reaches `deadline`.
pub(crate) struct SleepUntil<T: Ord + Copy> {
    clock: Arc<Mutex<Deadlines<T>>>,
    deadline: T,
    key: Option<u64>,
}

impl<T: Ord + Copy> SleepUntil<T> {
    pub(crate) fn new(clock: Arc<Mutex<Deadlines<T>>>, deadline: T) -> Self {
        Self {
            clock,
            deadline,
            key: None,
        }
    }
}

impl<T: Ord + Copy + Unpin> Future for SleepUntil<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let (deadline, key) = (this.deadline, &mut this.key);
        if this.clock.with(|c| c.poll_sleep(deadline, key, cx.waker())) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl<T: Ord + Copy> Drop for SleepUntil<T> {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            let entry = (self.deadline, k);
            let removed = self.clock.with(|c| c.sleeps.remove(&entry));
            drop(removed); // outside the lock: dropping a waker may run its owner's code
        }
    }
}
