//! The one place where the core gets its synchronisation primitives.
//!
//! Every other module imports `Arc`, atomics and the lock from here, so that the `std` and
//! `no_std` builds differ in this file only.
//!
//! The lock is closure-based ([`Mutex::with`]): a guard can never be held across an `.await`,
//! and the two backends (a `std` mutex, or a `critical-section` mutex around a `RefCell`)
//! present the same interface.
//!
//! Lock poisoning is ignored on purpose: every critical section in the core is a few field
//! writes that cannot panic half-way, and user code (executors, observers) never runs while a
//! core lock is held.

pub(crate) use alloc::sync::{Arc, Weak};
#[cfg(target_has_atomic = "64")]
pub(crate) use core::sync::atomic::AtomicU64;
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// A mutual-exclusion lock with a closure-based interface.
pub(crate) struct Mutex<T> {
    #[cfg(feature = "std")]
    inner: std::sync::Mutex<T>,
    #[cfg(not(feature = "std"))]
    inner: critical_section::Mutex<core::cell::RefCell<T>>,
}

impl<T> Mutex<T> {
    /// Creates a new lock around `value`.
    pub(crate) const fn new(value: T) -> Self {
        Self {
            #[cfg(feature = "std")]
            inner: std::sync::Mutex::new(value),
            #[cfg(not(feature = "std"))]
            inner: critical_section::Mutex::new(core::cell::RefCell::new(value)),
        }
    }

    /// Runs `f` with exclusive access to the protected value.
    ///
    /// `f` must not call back into the same lock.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        #[cfg(feature = "std")]
        {
            let mut guard = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        }
        #[cfg(not(feature = "std"))]
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
