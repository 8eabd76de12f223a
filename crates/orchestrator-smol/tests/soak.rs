//! The randomized soak (`orchestrator_core::conformance::soak`) on smol's global
//! executor, with the heap checked back at its baseline afterwards.
//!
//! `SOAK_JOBS` sets the number of jobs (default 100,000: about 6 s in a debug build, 3 s in
//! release, on 2 cores; the jobs sleep for real) and `SOAK_SEED` the seed. A violation prints
//! the `SOAK_SEED=.. SOAK_JOBS=..` that replays the workload.

#![allow(unsafe_code)] // the counting allocator: `GlobalAlloc` is an unsafe trait

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use orchestrator_core::conformance::soak;
use orchestrator_smol::SmolRuntime;

/// `System`, counting the bytes live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees and the caller's obligations carry over; the counting touches only an
// atomic and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is the caller's, forwarded unchanged.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

fn live_bytes() -> usize {
    LIVE.load(Ordering::SeqCst)
}

#[test]
fn soak() {
    let jobs = soak::env_u64("SOAK_JOBS", 100_000);
    let seed = soak::env_u64("SOAK_SEED", soak::DEFAULT_SEED);
    let (report, heap) = soak::guarded(jobs, seed, || {
        smol::block_on(soak::run_measured(
            Arc::new(SmolRuntime::default()),
            jobs,
            seed,
            live_bytes,
        ))
    });
    eprintln!("{report}\n{heap}");
    report.assert_clean();
    heap.assert_back_to_baseline(&report);
}
