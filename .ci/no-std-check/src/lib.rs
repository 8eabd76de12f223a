//! Links orchestrator-core into a `#![no_std]` artifact with its own panic handler,
//! allocator and critical section, and runs jobs through it on a `PoolRuntime`: one on a
//! frozen clock, then (driven tick by tick from C, as a timer interrupt would) a job retried
//! with backoff and a job that times out, on a `TickTimer`.

#![no_std]

extern crate alloc;
extern crate orchestrator_core;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::{RefCell, UnsafeCell};
use core::future::Future;
use core::pin::pin;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use orchestrator_core::runtime::{Instant, PoolRuntime, Sleep, TickTimer, Ticks, Timer};
use orchestrator_core::{
    Dispatch, Dispatcher, Executor, Job, JobContext, JobHandle, JobResult, RetryPolicy,
};

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

/// Fails its first two attempts, then succeeds with its input.
struct Flaky(u32);
impl Job for Flaky {
    type Output = u32;
}

static FLAKY_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// The flaky job's failure.
#[derive(Debug)]
struct Flake;
impl core::fmt::Display for Flake {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("flake")
    }
}
impl core::error::Error for Flake {}

struct FlakyExec;
impl Executor<Flaky> for FlakyExec {
    type Error = Flake;
    async fn execute(&self, job: &Flaky, _: JobContext) -> Result<u32, Flake> {
        if FLAKY_ATTEMPTS.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(Flake)
        } else {
            Ok(job.0)
        }
    }
}

/// Never finishes.
struct Hang;
impl Job for Hang {
    type Output = ();
}
struct HangExec;
impl Executor<Hang> for HangExec {
    type Error = core::convert::Infallible;
    async fn execute(&self, _: &Hang, _: JobContext) -> Result<(), Self::Error> {
        core::future::pending().await
    }
}

/// The tick runtime and the two jobs in flight, between calls from C.
struct TickCheck {
    rt: PoolRuntime<TickTimer>,
    ticks: Ticks,
    _dispatcher: Dispatcher<PoolRuntime<TickTimer>>,
    flaky: Option<JobHandle<u32>>,
    hang: Option<JobHandle<()>>,
    report: TickReport,
}

static TICK_CHECK: critical_section::Mutex<RefCell<Option<TickCheck>>> =
    critical_section::Mutex::new(RefCell::new(None));

/// What the tick-driven jobs did; `u32::MAX` where it has not happened yet.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TickReport {
    /// The retried job's value.
    pub retry_value: u32,
    /// How many attempts the retried job made.
    pub retry_attempts: u32,
    /// The tick at which the retried job succeeded.
    pub retry_tick: u32,
    /// 1 if the hanging job timed out, 0 if it ended otherwise.
    pub timed_out: u32,
    /// The tick at which the hanging job timed out.
    pub timeout_tick: u32,
}

/// Starts the tick check at tick zero, with 1 ms ticks: a job retried twice after 10 ms
/// each (it succeeds at tick 20) and a job with a 50 ms budget (it times out at tick 50).
#[unsafe(no_mangle)]
pub extern "C" fn orchestrator_tick_check_start() {
    let rt = PoolRuntime::new(TickTimer::new(Duration::from_millis(1)));
    let ticks = rt.timer().ticks();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(FlakyExec);
    dispatcher.register(HangExec);
    let flaky = dispatcher
        .job(Flaky(7))
        .retry(RetryPolicy::fixed(3, Duration::from_millis(10)))
        .dispatch();
    let hang = dispatcher
        .job(Hang)
        .timeout(Duration::from_millis(50))
        .dispatch();
    let check = TickCheck {
        rt,
        ticks,
        _dispatcher: dispatcher,
        flaky: Some(flaky),
        hang: Some(hang),
        report: TickReport {
            retry_value: u32::MAX,
            retry_attempts: u32::MAX,
            retry_tick: u32::MAX,
            timed_out: u32::MAX,
            timeout_tick: u32::MAX,
        },
    };
    critical_section::with(|cs| *TICK_CHECK.borrow_ref_mut(cs) = Some(check));
    orchestrator_tick(0);
}

/// Polls `handle` once; on its outcome, returns it and the tick it came at.
fn poll_handle<T>(handle: &mut Option<JobHandle<T>>, cx: &mut Context<'_>) -> Option<JobResult<T>>
where
    T: Send + 'static,
{
    let outcome = match pin!(handle.as_mut()?).poll(cx) {
        Poll::Ready(outcome) => outcome,
        Poll::Pending => return None,
    };
    *handle = None;
    Some(outcome)
}

/// The timer interrupt and one turn of the main loop: advances the clock `n` ticks, runs the
/// woken tasks, and looks at both jobs. Returns 1 once both have their outcome.
#[unsafe(no_mangle)]
pub extern "C" fn orchestrator_tick(n: u32) -> u32 {
    critical_section::with(|cs| {
        let mut slot = TICK_CHECK.borrow_ref_mut(cs);
        let Some(check) = slot.as_mut() else {
            return 0;
        };
        check.ticks.advance(u64::from(n));
        let now = u32::try_from(check.ticks.now()).unwrap_or(u32::MAX);
        let cx = &mut Context::from_waker(Waker::noop());
        let _ = pin!(check.rt.run()).poll(cx);
        if let Some(outcome) = poll_handle(&mut check.flaky, cx) {
            check.report.retry_value = outcome.map_or(0, |done| done.value);
            check.report.retry_attempts = FLAKY_ATTEMPTS.load(Ordering::SeqCst);
            check.report.retry_tick = now;
        }
        if let Some(outcome) = poll_handle(&mut check.hang, cx) {
            check.report.timed_out = u32::from(outcome.is_err_and(|e| e.is_timed_out()));
            check.report.timeout_tick = now;
        }
        u32::from(check.flaky.is_none() && check.hang.is_none())
    })
}

/// Returns what the tick check saw so far.
#[unsafe(no_mangle)]
pub extern "C" fn orchestrator_tick_check_report() -> TickReport {
    critical_section::with(|cs| TICK_CHECK.borrow_ref(cs).as_ref().map(|check| check.report))
        .unwrap_or(TickReport {
            retry_value: u32::MAX,
            retry_attempts: u32::MAX,
            retry_tick: u32::MAX,
            timed_out: u32::MAX,
            timeout_tick: u32::MAX,
        })
}
