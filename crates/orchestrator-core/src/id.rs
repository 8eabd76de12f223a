//! Job identifiers.

use core::fmt;
use core::num::NonZeroU64;

/// The unique identifier of one dispatch (its correlation id).
///
/// Ids are allocated from a process-wide counter: creating one is a single atomic increment,
/// comparing and hashing them is comparing a `u64`. Dispatching the same job value twice gives
/// two different ids. Ids are never reused within a process (the counter would need 2^64
/// dispatches to wrap).
///
/// ```
/// use orchestrator_core::JobId;
/// let a = JobId::next();
/// let b = JobId::next();
/// assert_ne!(a, b);
/// assert!(b > a);
/// assert_eq!(JobId::from_u64(a.as_u64()), Some(a));
/// ```
///
/// With the `serde` feature it is `Serialize`/`Deserialize` as its number (a newtype struct);
/// deserializing zero is an error.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct JobId(NonZeroU64);

impl JobId {
    /// Allocates a fresh id.
    pub fn next() -> JobId {
        JobId(next_raw())
    }

    /// Rebuilds an id from [`as_u64`](Self::as_u64); `None` for zero, which is never an id.
    pub const fn from_u64(raw: u64) -> Option<JobId> {
        match NonZeroU64::new(raw) {
            Some(n) => Some(JobId(n)),
            None => None,
        }
    }

    /// Returns the id as a number (never zero).
    pub const fn as_u64(self) -> u64 {
        self.0.get()
    }
}

#[cfg(target_has_atomic = "64")]
fn next_raw() -> NonZeroU64 {
    use crate::sync::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let raw = NEXT.fetch_add(1, Ordering::Relaxed);
    NonZeroU64::new(raw).unwrap_or(NonZeroU64::MIN)
}

#[cfg(not(target_has_atomic = "64"))]
fn next_raw() -> NonZeroU64 {
    static NEXT: crate::sync::Mutex<u64> = crate::sync::Mutex::new(1);
    let raw = NEXT.with(|n| {
        let raw = *n;
        *n = n.wrapping_add(1).max(1);
        raw
    });
    NonZeroU64::new(raw).unwrap_or(NonZeroU64::MIN)
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job-{}", self.0)
    }
}
