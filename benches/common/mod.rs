//! Helpers shared by the benchmarks: the no-op job, a counting allocator, quick mode, medians, and the
//! event scenarios that both a wall-clock benchmark and the callgrind driver run
//! ([`channels`], [`events`]).
//!
//! Each benchmark that counts allocations installs the allocator itself
//! (`#[global_allocator] static GLOBAL: CountingAlloc = CountingAlloc;`); the others only use
//! the helpers, hence the `dead_code` allowance.

#![allow(dead_code)]

pub(crate) mod channels;
pub(crate) mod events;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub(crate) mod sched;

// ---------------------------------------------------------------------------------------------
// The no-op job every dispatch benchmark runs
// ---------------------------------------------------------------------------------------------

/// A job that does nothing.
#[derive(Debug)]
pub(crate) struct Noop;

impl orchestrator_core::Job for Noop {
    type Output = ();
}

/// Completes every [`Noop`] at once.
#[derive(Debug)]
pub(crate) struct NoopExecutor;

impl orchestrator_core::Executor<Noop> for NoopExecutor {
    type Error = std::convert::Infallible;

    async fn execute(
        &self,
        _job: &Noop,
        _cx: orchestrator_core::JobContext,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------------------------

/// `System`, plus counters of allocation calls and bytes while [`COUNTING`] is on.
///
/// The flag keeps the timing runs free of shared-counter traffic: when it is off, each call
/// costs one relaxed load of a read-mostly flag.
#[derive(Debug)]
pub(crate) struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOC_CALLS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
static FREED_BYTES: AtomicU64 = AtomicU64::new(0);

fn record_alloc(size: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

fn record_free(size: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        FREED_BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees (and the caller's obligations) carry over as they are; the counting
// around the calls touches only atomics and never allocates. This is the only `unsafe` in the
// benchmark: `GlobalAlloc` is an unsafe trait and cannot be implemented otherwise.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record_alloc(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record_alloc(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record_free(layout.size());
        // SAFETY: `ptr` was returned by `System` (every allocation goes through this type)
        // with this `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as one allocation call of `new_size` bytes that frees the old block.
        record_alloc(new_size);
        record_free(layout.size());
        // SAFETY: as for `dealloc`; `new_size` is the caller's, forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocation counters, or their change over a window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AllocStats {
    pub(crate) calls: u64,
    pub(crate) bytes: u64,
    pub(crate) freed: u64,
}

impl AllocStats {
    /// Reads the counters.
    pub(crate) fn now() -> Self {
        AllocStats {
            calls: ALLOC_CALLS.load(Ordering::SeqCst),
            bytes: ALLOC_BYTES.load(Ordering::SeqCst),
            freed: FREED_BYTES.load(Ordering::SeqCst),
        }
    }

    /// Returns the change from `before` to `self`.
    pub(crate) fn since(self, before: AllocStats) -> AllocStats {
        AllocStats {
            calls: self.calls - before.calls,
            bytes: self.bytes - before.bytes,
            freed: self.freed - before.freed,
        }
    }
}

/// Turns counting on; returns the counters at that point.
pub(crate) fn start_counting() -> AllocStats {
    let before = AllocStats::now();
    COUNTING.store(true, Ordering::SeqCst);
    before
}

/// Turns counting off; returns what was counted since `before`.
pub(crate) fn stop_counting(before: AllocStats) -> AllocStats {
    COUNTING.store(false, Ordering::SeqCst);
    AllocStats::now().since(before)
}

impl AllocStats {
    /// Adds `other` to `self`.
    pub(crate) fn add(&mut self, other: AllocStats) {
        self.calls += other.calls;
        self.bytes += other.bytes;
        self.freed += other.freed;
    }
}

/// Returns `true` for the smoke mode: `BENCH_QUICK` set (not empty, not `0`), `--quick`
/// among the arguments, or an unoptimized build.
pub(crate) fn quick_mode() -> bool {
    cfg!(debug_assertions)
        || std::env::var_os("BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
        || std::env::args().any(|a| a == "--quick")
}

/// The median and range of a cell's samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    /// Sorts `values` and returns their median (the mean of the middle two for an even
    /// count) and range.
    pub(crate) fn of(values: &mut [f64]) -> Spread {
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        let median = if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        };
        Spread {
            median,
            min: values[0],
            max: values[values.len() - 1],
        }
    }
}

/// Returns the median of `values`; see [`Spread::of`].
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    Spread::of(&mut values).median
}
