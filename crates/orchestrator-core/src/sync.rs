//! The one place where the core gets its synchronisation primitives.
//!
//! Every other module imports `Arc`, atomics and the lock from here, so that the `std` and
//! `no_std` builds differ in this file only.
//!
//! The lock is closure-based ([`Mutex::with`]): a guard can never be held across an `.await`,
//! and the two backends (with `std`, `parking_lot`'s mutex; without it, a `critical-section`
//! mutex around a `RefCell`) present the same interface. Under Miri the `std` build uses
//! `std::sync::Mutex` instead (see `StdLock`).
//!
//! The lock does not poison, on purpose: every critical section in the core is a few field
//! writes that cannot panic half-way, and user code (executors, observers) never runs while a
//! core lock is held. That is why the `std` build uses `parking_lot` rather than
//! `std::sync::Mutex`: the standard mutex checks whether the thread is panicking on every lock
//! and unlock, to poison, and a plain dispatch takes four locks (measured: 42 fewer
//! instructions per dispatch on tokio current-thread, 58 on smol).
//!
//! # Model checking (`--cfg orchestrator_loom`)
//!
//! Built with `RUSTFLAGS="--cfg orchestrator_loom"` (only the `tests/loom.rs` models do so),
//! the atomics and the lock are [loom](https://docs.rs/loom)'s, so that loom explores every
//! interleaving of the core's lock and atomic operations. Three things stay as they are:
//!
//! - `Arc` and `Weak` are `alloc`'s. Loom's `Arc` has no `Weak` and no `new_cyclic` (the
//!   dispatcher and the job registry need both), cannot be unsized into `Arc<dyn Trait>`
//!   (used throughout for runtimes, executors, observers) and cannot back a `Waker` through
//!   `alloc::task::Wake` (the task pool's wakers). Reference counting is `alloc`'s, not the
//!   core's, so nothing of ours goes unmodelled by this.
//! - `AtomicU64` and `StaticAtomicUsize` are `core`'s: their only users are `static`s (the
//!   process-wide job id counter, the count of running handlers), and loom objects cannot
//!   outlive one model iteration.
//! - `event_listener::Event` (used by cancellation futures, progress streams, watches) keeps
//!   its own lock; the models do not wait on one.
//!
//! Each lock then also carries a `loom::alloc::Track`: loom reports, after every explored
//! interleaving, any core object with a lock (token node, job state, bus, pool) that was
//! never freed.

pub(crate) use alloc::sync::{Arc, Weak};
#[cfg(target_has_atomic = "64")]
pub(crate) use core::sync::atomic::AtomicU64;
/// An atomic for `static`s (never a loom one: statics outlive a model iteration).
#[cfg(feature = "std")]
pub(crate) use core::sync::atomic::AtomicUsize as StaticAtomicUsize;
pub(crate) use core::sync::atomic::Ordering;
#[cfg(not(orchestrator_loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize};
#[cfg(orchestrator_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize};

/// The `std` build's lock: `parking_lot`'s, which does not poison. Under Miri the standard
/// mutex stands in: `parking_lot`'s parking code turns integers into pointers, which Miri's
/// strict-provenance checking rejects.
#[cfg(all(not(orchestrator_loom), feature = "std", not(miri)))]
type StdLock<T> = parking_lot::Mutex<T>;
#[cfg(all(not(orchestrator_loom), feature = "std", miri))]
type StdLock<T> = std::sync::Mutex<T>;

/// A mutual-exclusion lock with a closure-based interface.
pub(crate) struct Mutex<T> {
    #[cfg(orchestrator_loom)]
    inner: loom::sync::Mutex<T>,
    /// Makes loom report a lock (and so the object that holds it) that is never dropped.
    #[cfg(orchestrator_loom)]
    _leak_check: loom::alloc::Track<()>,
    #[cfg(all(not(orchestrator_loom), feature = "std"))]
    inner: StdLock<T>,
    #[cfg(all(not(orchestrator_loom), not(feature = "std")))]
    inner: critical_section::Mutex<core::cell::RefCell<T>>,
}

impl<T> Mutex<T> {
    /// Creates a new lock around `value`.
    #[cfg(not(orchestrator_loom))]
    pub(crate) const fn new(value: T) -> Self {
        Self {
            #[cfg(feature = "std")]
            inner: StdLock::new(value),
            #[cfg(not(feature = "std"))]
            inner: critical_section::Mutex::new(core::cell::RefCell::new(value)),
        }
    }

    /// Creates a new lock around `value` (loom's lock is not `const`).
    #[cfg(orchestrator_loom)]
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: loom::sync::Mutex::new(value),
            _leak_check: loom::alloc::Track::new(()),
        }
    }

    /// Runs `f` with exclusive access to the protected value.
    ///
    /// `f` must not call back into the same lock.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        #[cfg(orchestrator_loom)]
        {
            let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        }
        #[cfg(all(not(orchestrator_loom), feature = "std", not(miri)))]
        {
            f(&mut self.inner.lock())
        }
        #[cfg(all(not(orchestrator_loom), feature = "std", miri))]
        {
            let mut guard = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        }
        #[cfg(all(not(orchestrator_loom), not(feature = "std")))]
        {
            critical_section::with(|cs| f(&mut self.inner.borrow_ref_mut(cs)))
        }
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.with(|v| f.debug_tuple("Mutex").field(v).finish())
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// Polls `check` until it returns `Some`, waiting on `notify` in between.
///
/// The listener is registered *before* the second check, so a notification that arrives
/// between a failed check and the registration is not lost. `listener` keeps the registration
/// across polls; it is cleared once `check` succeeds.
pub(crate) fn poll_notified<R>(
    notify: &event_listener::Event,
    listener: &mut Option<event_listener::EventListener>,
    cx: &mut core::task::Context<'_>,
    mut check: impl FnMut() -> Option<R>,
) -> core::task::Poll<R> {
    use core::future::Future;
    loop {
        if let Some(ready) = check() {
            *listener = None;
            return core::task::Poll::Ready(ready);
        }
        match listener.as_mut() {
            None => *listener = Some(notify.listen()),
            Some(l) => {
                if core::pin::Pin::new(l).poll(cx).is_pending() {
                    return core::task::Poll::Pending;
                }
                *listener = None;
            }
        }
    }
}
