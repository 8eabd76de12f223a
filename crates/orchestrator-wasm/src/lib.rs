//! Browser adapter for [`orchestrator-core`](orchestrator_core): jobs run on the page's (or the
//! worker's) event loop.
//!
//! [`WasmRuntime`] spawns each job with `wasm_bindgen_futures::spawn_local`, reads its clock
//! from `performance.now()` and completes sleeps from `setTimeout`. It is a zero-sized handle:
//! the JavaScript event loop owns the tasks, and every `WasmRuntime` of a thread shares one
//! clock.
//!
//! ```no_run
//! // no_run: the runtime needs a JavaScript host (a browser page or worker); on other targets
//! // it refuses every task (see "Other targets" below).
//! use core::time::Duration;
//! use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext};
//! use orchestrator_wasm::WasmRuntime;
//!
//! struct Fetch(u32);
//! impl Job for Fetch {
//!     type Output = u32;
//! }
//! struct Api;
//! impl Executor<Fetch> for Api {
//!     type Error = core::convert::Infallible;
//!     async fn execute(&self, job: &Fetch, cx: JobContext) -> Result<u32, Self::Error> {
//!         cx.sleep(Duration::from_millis(20)).await; // a setTimeout underneath
//!         Ok(job.0 * 2)
//!     }
//! }
//!
//! // In a `#[wasm_bindgen(start)]` function or any async code of the page:
//! # async fn page() {
//! let dispatcher = Dispatcher::new(WasmRuntime::new());
//! dispatcher.register(Api);
//! let done = dispatcher.dispatch(Fetch(21)).await;
//! assert_eq!(done.map(|s| s.value).ok(), Some(42));
//! # }
//! ```
//!
//! # Executors that await JavaScript
//!
//! A browser runs everything on one thread, and much of its work is JavaScript: an executor
//! that awaits a `JsFuture` (a `fetch`) or holds a `JsValue` across an await is not `Send`.
//! Register it as a [`LocalExecutor`](orchestrator_core::LocalExecutor) with
//! [`Dispatcher::register_local`](orchestrator_core::Dispatcher::register_local): its jobs
//! run as tasks that are not `Send`, spawned with `spawn_local` ([`LocalSpawn`]). An
//! orchestrator that holds JavaScript values starts with
//! [`start_local`](orchestrator_core::OrchestratorBuilder::start_local). Executors that are
//! `Send` register as usual, on the same dispatcher.
//!
//! ```no_run
//! // no_run: needs a JavaScript host, as above.
//! use orchestrator_core::{Dispatch, Dispatcher, Job, JobContext, LocalExecutor};
//! use orchestrator_wasm::WasmRuntime;
//! use std::rc::Rc;
//!
//! struct Lookup(&'static str);
//! impl Job for Lookup {
//!     type Output = usize;
//! }
//! /// Holds page state in an `Rc`: not `Send`, so a local executor.
//! struct Page(Rc<Vec<&'static str>>);
//! impl LocalExecutor<Lookup> for Page {
//!     type Error = core::convert::Infallible;
//!     async fn execute(&self, job: &Lookup, cx: JobContext) -> Result<usize, Self::Error> {
//!         let names = self.0.clone(); // held across the await: a future that is not `Send`
//!         cx.sleep(core::time::Duration::from_millis(5)).await; // or a JsFuture
//!         Ok(names.iter().filter(|n| **n == job.0).count())
//!     }
//! }
//! # async fn page() {
//! let dispatcher = Dispatcher::new(WasmRuntime::new());
//! dispatcher.register_local(Page(Rc::new(vec!["a", "b", "a"])));
//! assert_eq!(dispatcher.dispatch(Lookup("a")).await.unwrap().value, 2);
//! # }
//! ```
//!
//! # The timer
//!
//! A browser timer is a JavaScript object, and a future holding one is not `Send`, while the
//! core's `Sleep` must be. So the sleeps are not browser timers: they are registrations in
//! a core [`TickTimer`] whose tick is one microsecond, which are `Send`. Per thread, this
//! crate keeps the tick timer and, on the JavaScript side, **one** `setTimeout` callback:
//!
//! - the clock is `performance.now()` (since the page's or worker's time origin) floored to
//!   whole microseconds; reading it ([`Timer::now`], [`Timer::sleep`]) moves the ticks there,
//!   which completes every sleep that is due;
//! - when a polled sleep leaves an earliest deadline earlier than the one the callback is
//!   armed for (or it is not armed), the callback is re-armed (`clearTimeout`, then
//!   `setTimeout` for the remaining whole milliseconds, rounded up);
//! - when it fires, it moves the ticks to `performance.now()`, waking the due sleeps' tasks,
//!   and arms itself for the next deadline, if any.
//!
//! So at most one browser timer is pending per thread, whatever the number of sleeps; a sleep
//! dropped early is removed from the deadline queue at once (the callback may then fire once
//! for nothing and re-arm for the next deadline).
//!
//! **Precision.** A sleep of `d` completes at the first reading of the clock (the callback, or
//! any `now` or `sleep` on the thread) at which `performance.now()` is more than `d` past the
//! sleep's creation: its deadline is `d` rounded up to the microsecond, plus one microsecond
//! that absorbs the flooring of the clock. It is never early against `performance.now()`, even
//! when a browser fires a timer slightly ahead of time (the callback then re-arms). It is
//! late by the browser's timer latency: typically 1 ms or more, at least 4 ms for timers
//! nested deeply, and much more in a background tab, which browsers throttle to about one
//! timer per second. `performance.now()` itself is coarsened by browsers (to 100 µs in
//! Chromium without cross-origin isolation). A zero sleep completes at once. Delays beyond
//! what `setTimeout` accepts (2<sup>31</sup> − 1 ms, about 24.8 days) are armed in steps.
//!
//! # Hosts without a `window`, a `performance` or a `setTimeout`
//!
//! Nothing here needs a `window`: the crate looks up `performance`, `setTimeout` and
//! `clearTimeout` on the global object (`globalThis`), so it works the same in a dedicated
//! or shared worker, a service worker, or Node.js. Without a usable `performance.now()`, the
//! clock is `Date.now()` (millisecond resolution) counted from its first reading; `Date.now()`
//! follows the wall clock, but the ticks never go back, so the clock stays monotonic (it
//! pauses while the wall clock is set back). [`WasmRuntime::clock_source`] says which clock is
//! used. Without a callable `setTimeout` (an audio worklet), nothing panics: sleeps complete
//! only when the thread's clock is next read (a later [`Timer::now`] or [`Timer::sleep`] on
//! any `WasmRuntime` of the thread).
//!
//! # Threads
//!
//! `wasm32-unknown-unknown` is single-threaded. Built with shared-memory threads, each thread
//! (each worker) has its own clock and its own callback: a sleep completes through the
//! thread that created it, so await it there (with `spawn_local`, a task stays on the thread
//! that spawned it).
//!
//! # Other targets
//!
//! On targets other than `wasm32` there is no JavaScript: the crate builds (so a workspace
//! that contains it builds on its host), [`WasmRuntime::spawn`](Spawn::spawn) refuses every
//! task with [`NoRuntime`](orchestrator_core::runtime::SpawnErrorKind::NoRuntime), the clock
//! stays at zero ([`ClockSource::Unavailable`]) and non-zero sleeps never complete.

#![forbid(unsafe_code)]

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

#[cfg(not(target_arch = "wasm32"))]
use orchestrator_core::runtime::SpawnErrorKind;
use orchestrator_core::runtime::{
    Instant, LocalSpawn, LocalSpawnError, LocalTask, Sleep, Spawn, SpawnError, Task, TickTimer,
    Timer,
};

#[cfg(target_arch = "wasm32")]
mod js;
mod online;

pub use online::BrowserConnectivity;

/// Stand-ins for the JavaScript side on targets without JavaScript.
#[cfg(not(target_arch = "wasm32"))]
mod js {
    /// There is no clock to read.
    pub(crate) fn now_ms() -> Option<f64> {
        None
    }

    /// There is no browser timer to arm.
    pub(crate) fn arm() {}

    /// No clock.
    pub(crate) fn source() -> super::ClockSource {
        super::ClockSource::Unavailable
    }
}

/// The length of one tick of the thread's [`TickTimer`].
const TICK: Duration = Duration::from_micros(1);

std::thread_local! {
    /// The thread's clock and deadline queue (its sleeps are `Send` registrations in it).
    static CLOCK: TickTimer = TickTimer::new(TICK);
}

/// Converts a reading of the JavaScript clock (milliseconds, fractional) to whole ticks,
/// rounding down; negative and non-finite readings count as zero (the casts saturate).
fn ms_to_ticks(ms: f64) -> u64 {
    if ms > 0.0 {
        (ms * 1_000.0).floor() as u64
    } else {
        0
    }
}

/// Moves the thread's ticks to the JavaScript clock, completing every sleep that is due.
fn sync(timer: &TickTimer) {
    if let Some(ms) = js::now_ms() {
        timer.ticks().set_now(ms_to_ticks(ms));
    }
}

/// Which clock a thread's [`WasmRuntime`]s read; see [`WasmRuntime::clock_source`].
///
/// ```
/// use orchestrator_wasm::ClockSource;
/// assert_ne!(ClockSource::Performance, ClockSource::Date);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClockSource {
    /// `performance.now()`: monotonic, since the page's or worker's time origin.
    Performance,
    /// `Date.now()`, since its first reading on this thread: there is no usable
    /// `performance.now()`.
    Date,
    /// No JavaScript clock (a target other than `wasm32`): the clock stays at zero.
    Unavailable,
}

/// The browser runtime: jobs on `wasm_bindgen_futures::spawn_local`, sleeps on `setTimeout`,
/// the clock from `performance.now()` (see the [crate documentation](crate) for the timer's
/// design and precision).
///
/// It is a zero-sized handle; all the `WasmRuntime`s of a thread share its clock, so their
/// instants are comparable. Spawning never fails on `wasm32` (the event loop has no capacity
/// limit and never shuts down).
///
/// ```no_run
/// // no_run: spawning needs a JavaScript event loop (on other targets it is refused).
/// use orchestrator_core::runtime::{Spawn, Task};
/// use orchestrator_wasm::WasmRuntime;
///
/// let rt = WasmRuntime::new();
/// assert!(rt.spawn(Task::new(async {})).is_ok());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct WasmRuntime {
    _private: (),
}

impl WasmRuntime {
    /// Creates a handle to the current thread's event loop and clock.
    ///
    /// ```
    /// use orchestrator_core::Dispatcher;
    /// use orchestrator_wasm::WasmRuntime;
    /// let dispatcher = Dispatcher::new(WasmRuntime::new());
    /// assert!(!dispatcher.is_closed());
    /// ```
    pub const fn new() -> Self {
        Self { _private: () }
    }

    /// Returns which clock this thread's runtimes read: [`ClockSource::Performance`] in a
    /// page or a worker, [`ClockSource::Date`] where `performance.now()` is missing, and
    /// [`ClockSource::Unavailable`] off `wasm32`.
    ///
    /// ```
    /// use orchestrator_wasm::{ClockSource, WasmRuntime};
    /// let source = WasmRuntime::new().clock_source();
    /// if cfg!(target_arch = "wasm32") {
    ///     assert_ne!(source, ClockSource::Unavailable);
    /// } else {
    ///     assert_eq!(source, ClockSource::Unavailable);
    /// }
    /// ```
    pub fn clock_source(&self) -> ClockSource {
        js::source()
    }
}

impl Spawn for WasmRuntime {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        #[cfg(target_arch = "wasm32")]
        {
            self.spawn_future(task)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Err(SpawnError::new(SpawnErrorKind::NoRuntime, task))
        }
    }

    /// Spawns `future` with `spawn_local` as it is (no box of ours).
    fn spawn_future<F>(&self, future: F) -> Result<(), SpawnError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        #[cfg(target_arch = "wasm32")]
        {
            wasm_bindgen_futures::spawn_local(future);
            Ok(())
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Err(SpawnError::new(
                SpawnErrorKind::NoRuntime,
                Task::new(future),
            ))
        }
    }

    fn local(&self) -> Option<&dyn LocalSpawn> {
        Some(self)
    }
}

/// Spawns tasks that are not `Send` (local executors awaiting a `JsFuture`, local
/// orchestrators holding JavaScript values) with `spawn_local`, on the current thread's event
/// loop.
///
/// ```
/// use orchestrator_core::runtime::{LocalSpawn, LocalTask};
/// use orchestrator_wasm::WasmRuntime;
/// use std::rc::Rc;
///
/// let page = Rc::new("not Send");
/// let spawned = WasmRuntime::new().spawn_local(LocalTask::new(async move { let _ = page; }));
/// // Off wasm32 there is no event loop to run it: refused, and given back.
/// assert_eq!(spawned.is_ok(), cfg!(target_arch = "wasm32"));
/// ```
impl LocalSpawn for WasmRuntime {
    fn spawn_local(&self, task: LocalTask) -> Result<(), LocalSpawnError> {
        #[cfg(target_arch = "wasm32")]
        {
            wasm_bindgen_futures::spawn_local(task);
            Ok(())
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Err(LocalSpawnError::new(SpawnErrorKind::NoRuntime, task))
        }
    }
}

impl Timer for WasmRuntime {
    fn sleep(&self, duration: Duration) -> Sleep {
        if duration.is_zero() {
            return Sleep::new(async {});
        }
        CLOCK
            .try_with(|timer| {
                sync(timer);
                // One tick more than asked: the clock was floored to the tick, so the sleep
                // started up to a tick after the current tick count.
                let inner = timer.sleep(duration.saturating_add(TICK));
                Sleep::new(BrowserSleep { inner })
            })
            // Only while the thread is being torn down: nothing could complete it.
            .unwrap_or_else(|_| Sleep::new(core::future::pending()))
    }

    fn now(&self) -> Instant {
        CLOCK
            .try_with(|timer| {
                sync(timer);
                timer.now()
            })
            .unwrap_or(Instant::ZERO)
    }
}

/// A sleep of the thread's tick timer that makes sure the browser timer is armed for the
/// earliest deadline whenever it is left pending.
struct BrowserSleep {
    inner: Sleep,
}

impl Future for BrowserSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match Pin::new(&mut self.inner).poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                js::arm();
                Poll::Pending
            }
        }
    }
}

/// Host unit tests (the browser tests are in `tests/`).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn clock_readings_floor_to_microseconds_and_never_panic() {
        assert_eq!(ms_to_ticks(1.5), 1_500);
        assert_eq!(ms_to_ticks(0.000_9), 0);
        assert_eq!(ms_to_ticks(-3.0), 0);
        assert_eq!(ms_to_ticks(f64::NAN), 0);
        assert_eq!(ms_to_ticks(f64::INFINITY), u64::MAX);
    }

    #[test]
    fn without_javascript_spawns_are_refused_and_the_clock_stays_at_zero() {
        let rt = WasmRuntime::new();
        let err = rt.spawn(Task::new(async {})).unwrap_err();
        assert!(err.kind().is_no_runtime());
        assert_eq!(rt.now(), Instant::ZERO);
        assert_eq!(rt.clock_source(), ClockSource::Unavailable);
        let mut zero = rt.sleep(Duration::ZERO);
        let cx = &mut Context::from_waker(core::task::Waker::noop());
        assert!(Pin::new(&mut zero).poll(cx).is_ready());
        let mut later = rt.sleep(Duration::from_millis(1));
        assert!(Pin::new(&mut later).poll(cx).is_pending());
    }
}
