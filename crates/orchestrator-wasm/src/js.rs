//! The JavaScript side of the timer: the clock and the one `setTimeout` callback per thread.
//!
//! Everything is looked up on the global object, so a page, a worker and Node.js all work;
//! every JavaScript call that can throw is made through `js_sys::Function::call*`, which
//! returns the exception instead of panicking.

use core::cell::RefCell;

use js_sys::{Function, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use crate::{CLOCK, ClockSource, ms_to_ticks, sync};

/// The longest delay `setTimeout` takes (a longer one fires at once): 2^31 - 1 ms.
const MAX_DELAY_MS: u64 = i32::MAX as u64;

/// Microseconds (ticks) per millisecond.
const TICKS_PER_MS: u64 = 1_000;

std::thread_local! {
    static DRIVER: Driver = Driver::new();
}

/// Where the clock is read.
enum Clock {
    /// `performance.now`, called on `performance`.
    Performance { performance: JsValue, now: Function },
    /// `Date.now()` minus its first reading.
    Date { origin: f64 },
}

/// The thread's clock, its timer callback and what the callback is armed for.
struct Driver {
    clock: Clock,
    callback: Closure<dyn FnMut()>,
    /// The deadline tick the callback is armed for, and the `setTimeout` handle.
    armed: RefCell<Option<(u64, JsValue)>>,
}

impl Driver {
    fn new() -> Self {
        Self {
            clock: Clock::detect(),
            callback: Closure::new(on_timeout),
            armed: RefCell::new(None),
        }
    }

    /// Arms the callback for the earliest pending deadline if it is not armed for it or
    /// earlier already.
    fn arm(&self) {
        let Ok(Some(deadline)) = CLOCK.try_with(|timer| timer.ticks().next_deadline()) else {
            return;
        };
        let Ok(mut armed) = self.armed.try_borrow_mut() else {
            return;
        };
        if matches!(&*armed, Some((at, _)) if *at <= deadline) {
            return;
        }
        if let Some((_, handle)) = armed.take() {
            clear_timeout(&handle);
        }
        let now = match self.clock.now_ms() {
            Some(ms) => ms_to_ticks(ms),
            None => CLOCK.try_with(|timer| timer.ticks().now()).unwrap_or(0),
        };
        let delay_ms = deadline
            .saturating_sub(now)
            .div_ceil(TICKS_PER_MS)
            .min(MAX_DELAY_MS);
        if let Some(handle) = set_timeout(&self.callback, delay_ms) {
            *armed = Some((deadline, handle));
        }
    }
}

impl Clock {
    fn detect() -> Self {
        let global = js_sys::global();
        let performance = Reflect::get(&global, &JsValue::from_str("performance"))
            .ok()
            .filter(JsValue::is_object);
        if let Some(performance) = performance {
            let now = Reflect::get(&performance, &JsValue::from_str("now"))
                .ok()
                .and_then(|f| f.dyn_into::<Function>().ok());
            if let Some(now) = now {
                let clock = Clock::Performance { performance, now };
                if clock.now_ms().is_some() {
                    return clock;
                }
            }
        }
        Clock::Date {
            origin: js_sys::Date::now(),
        }
    }

    fn source(&self) -> ClockSource {
        match self {
            Clock::Performance { .. } => ClockSource::Performance,
            Clock::Date { .. } => ClockSource::Date,
        }
    }

    /// The clock in milliseconds, if it could be read as a finite number.
    fn now_ms(&self) -> Option<f64> {
        let ms = match self {
            Clock::Performance { performance, now } => now.call0(performance).ok()?.as_f64()?,
            Clock::Date { origin } => js_sys::Date::now() - origin,
        };
        ms.is_finite().then_some(ms)
    }
}

/// Calls `globalThis.setTimeout(callback, delay_ms)`; `None` if there is none or it threw.
fn set_timeout(callback: &Closure<dyn FnMut()>, delay_ms: u64) -> Option<JsValue> {
    let global = js_sys::global();
    let set = Reflect::get(&global, &JsValue::from_str("setTimeout"))
        .ok()?
        .dyn_into::<Function>()
        .ok()?;
    // Exact: at most 2^31 - 1.
    let delay = JsValue::from_f64(delay_ms as f64);
    set.call2(&global, callback.as_ref(), &delay).ok()
}

/// Calls `globalThis.clearTimeout(handle)`, if there is one.
fn clear_timeout(handle: &JsValue) {
    let global = js_sys::global();
    if let Some(clear) = Reflect::get(&global, &JsValue::from_str("clearTimeout"))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
    {
        let _ = clear.call1(&global, handle);
    }
}

/// The callback: not armed any more; move the ticks (waking the due sleeps); re-arm.
fn on_timeout() {
    let _ = DRIVER.try_with(|driver| {
        if let Ok(mut armed) = driver.armed.try_borrow_mut() {
            *armed = None;
        }
    });
    let _ = CLOCK.try_with(sync);
    arm();
}

/// Reads the thread's JavaScript clock, in milliseconds.
pub(crate) fn now_ms() -> Option<f64> {
    DRIVER
        .try_with(|driver| driver.clock.now_ms())
        .ok()
        .flatten()
}

/// Makes sure the callback is armed for the earliest pending deadline.
pub(crate) fn arm() {
    let _ = DRIVER.try_with(Driver::arm);
}

/// The clock the thread reads.
pub(crate) fn source() -> ClockSource {
    DRIVER
        .try_with(|driver| driver.clock.source())
        .unwrap_or(ClockSource::Unavailable)
}
