//! The one place where panics of user code (executors, handlers, observers) are caught.
//!
//! With `std`, [`catch`] runs its closure under `catch_unwind` and turns a panic into its
//! message; without `std` there is no unwinding to catch, and it just runs the closure.

use alloc::string::String;

/// Runs `f`; returns its panic message instead of unwinding (with `std`).
#[cfg(feature = "std")]
#[inline]
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(core::panic::AssertUnwindSafe(f)).map_err(message)
}

/// The message of a caught panic.
#[cfg(feature = "std")]
#[cold]
fn message(payload: alloc::boxed::Box<dyn core::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        String::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("<non-string panic payload>")
    }
}

/// Runs `f` (without `std`, a panic aborts: there is nothing to catch).
#[cfg(not(feature = "std"))]
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    Ok(f())
}
