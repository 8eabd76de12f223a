//! Links orchestrator-core into a `#![no_std]` artifact with its own panic handler,
//! allocator and critical section, and runs a job through it on a `PoolRuntime`.

#![no_std]

extern crate alloc;
extern crate orchestrator_core;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::future::Future;
use core::pin::pin;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::{Context, Waker};
use core::time::Duration;

use orchestrator_core::runtime::{Instant, PoolRuntime, Sleep, Timer};
use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// A bump allocator over a static arena; it never frees.
struct Bump {
    arena: UnsafeCell<[u8; 1 << 16]>,
    next: AtomicUsize,
}

// SAFETY: allocations hand out disjoint ranges, reserved with an atomic bump pointer.
unsafe impl Sync for Bump {}

// SAFETY: every returned block is inside the arena, aligned, and handed out once.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.arena.get() as usize;
        let mut offset = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + offset).next_multiple_of(layout.align()) - base;
            let end = start + layout.size();
            if end > 1 << 16 {
                return core::ptr::null_mut();
            }
            match self
                .next
                .compare_exchange(offset, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return (base + start) as *mut u8,
                Err(current) => offset = current,
            }
        }
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

#[global_allocator]
static ALLOCATOR: Bump = Bump {
    arena: UnsafeCell::new([0; 1 << 16]),
    next: AtomicUsize::new(0),
};

/// A single-core critical section: nothing to exclude (no threads, no interrupts here).
struct SingleCore;
critical_section::set_impl!(SingleCore);

// SAFETY: this artifact is single-threaded and installs no interrupt handlers.
unsafe impl critical_section::Impl for SingleCore {
    unsafe fn acquire() -> critical_section::RawRestoreState {
        true
    }
    unsafe fn release(_: critical_section::RawRestoreState) {}
}

/// A clock that never moves; sleeps never finish.
struct Frozen;
impl Timer for Frozen {
    fn sleep(&self, _: Duration) -> Sleep {
        Sleep::new(core::future::pending())
    }
    fn now(&self) -> Instant {
        Instant::ZERO
    }
}

struct Add(u32, u32);
impl Job for Add {
    type Output = u32;
}

struct Adder;
impl Executor<Add> for Adder {
    type Error = core::convert::Infallible;
    async fn execute(&self, job: &Add, cx: JobContext) -> Result<u32, Self::Error> {
        cx.report_progress(1.0);
        Ok(job.0 + job.1)
    }
}

/// Dispatches one job on a pool runtime and drives it by polling one future.
#[unsafe(no_mangle)]
pub extern "C" fn orchestrator_no_std_check() -> u32 {
    let rt = PoolRuntime::new(Frozen);
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(Adder);
    let mut handle = dispatcher.dispatch(Add(2, 3));
    let cx = &mut Context::from_waker(Waker::noop());
    let _ = pin!(rt.run()).poll(cx);
    match pin!(&mut handle).poll(cx) {
        core::task::Poll::Ready(Ok(done)) => done.value,
        _ => 0,
    }
}
