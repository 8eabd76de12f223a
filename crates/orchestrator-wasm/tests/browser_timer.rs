//! The browser timer of [`WasmRuntime`], in a browser (headless Chromium in CI): sleeps are
//! never early against `performance.now()`, share one browser timer, and drive a dispatch's
//! timeouts and retry backoffs. No test asserts an upper bound on any delay.

#![cfg(target_arch = "wasm32")]

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use orchestrator_core::runtime::{Spawn, Task, Timer};
use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext, JobError, RetryPolicy};
use orchestrator_wasm::{ClockSource, WasmRuntime};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// `performance.now()`, read directly (not through the runtime).
fn performance_now() -> f64 {
    let global = js_sys::global();
    let performance = js_sys::Reflect::get(&global, &JsValue::from_str("performance")).unwrap();
    let now: js_sys::Function = js_sys::Reflect::get(&performance, &JsValue::from_str("now"))
        .unwrap()
        .into();
    now.call0(&performance).unwrap().as_f64().unwrap()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

#[wasm_bindgen_test]
fn a_page_has_a_performance_clock() {
    assert_eq!(WasmRuntime::new().clock_source(), ClockSource::Performance);
}

#[wasm_bindgen_test]
async fn sleeps_complete_and_are_never_early_against_performance_now() {
    let rt = WasmRuntime::new();
    for millis in [1u64, 2, 5, 10, 25, 60] {
        let wanted = Duration::from_millis(millis);
        let start = performance_now();
        let clock_start = rt.now();
        rt.sleep(wanted).await;
        let elapsed = performance_now() - start;
        assert!(
            elapsed >= ms(wanted),
            "a sleep of {wanted:?} ended after {elapsed} ms"
        );
        assert!(rt.now().saturating_duration_since(clock_start) >= wanted);
    }
}

#[wasm_bindgen_test]
async fn the_clock_follows_performance_now_and_is_monotonic() {
    let rt = WasmRuntime::new();
    let before = performance_now();
    let a = rt.now();
    let after = performance_now();
    // The runtime's clock is performance.now() floored to the microsecond.
    let a_ms = ms(a.elapsed_since_epoch());
    assert!(
        a_ms <= after && a_ms >= before - 0.002,
        "{before} <= {a_ms} <= {after}"
    );
    let mut last = a;
    for _ in 0..1_000 {
        let t = rt.now();
        assert!(t >= last);
        last = t;
    }
}

/// Installs (once) a wrapper around `setTimeout` and `clearTimeout` that counts the browser
/// timers that are set and have neither fired nor been cleared.
fn count_live_timers() {
    js_sys::eval(
        "(() => {
            const g = globalThis;
            if (g.__liveTimers) return;
            const live = new Set();
            g.__liveTimers = live;
            const set = g.setTimeout, clear = g.clearTimeout;
            g.setTimeout = function (cb, delay, ...args) {
                const id = set.call(g, function (...a) { live.delete(id); return cb.apply(this, a); }, delay, ...args);
                live.add(id);
                return id;
            };
            g.clearTimeout = function (id) { live.delete(id); return clear.call(g, id); };
        })()",
    )
    .unwrap();
}

fn live_timers() -> f64 {
    let live = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("__liveTimers")).unwrap();
    js_sys::Reflect::get(&live, &JsValue::from_str("size"))
        .unwrap()
        .as_f64()
        .unwrap()
}

/// Polls every sleep until all are done, recording when each finished.
struct All {
    sleeps: Vec<(f64, Option<orchestrator_core::runtime::Sleep>, Option<f64>)>,
}

impl Future for All {
    type Output = Vec<(f64, f64)>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut pending = false;
        for (_, sleep, done) in &mut self.sleeps {
            if let Some(s) = sleep {
                if Pin::new(s).poll(cx).is_ready() {
                    *sleep = None;
                    *done = Some(performance_now());
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            return Poll::Pending;
        }
        Poll::Ready(
            self.sleeps
                .iter()
                .map(|(want, _, done)| (*want, done.unwrap_or(f64::NAN)))
                .collect(),
        )
    }
}

#[wasm_bindgen_test]
async fn many_sleeps_share_one_browser_timer_and_none_is_early() {
    count_live_timers();
    let rt = WasmRuntime::new();
    let before = live_timers();
    // Longest first: every sleep is a new earliest deadline, the worst case for re-arming.
    let start = performance_now();
    let sleeps = (0..300u64)
        .rev()
        .map(|i| {
            let d = Duration::from_micros(100 + i * 130); // 39 ms down to 0.1 ms
            (ms(d), Some(rt.sleep(d)), None)
        })
        .collect();
    let mut all = All { sleeps };
    // The first poll registers them all, synchronously: no callback can run in between.
    assert!(
        Pin::new(&mut all)
            .poll(&mut Context::from_waker(core::task::Waker::noop()))
            .is_pending()
    );
    assert!(
        live_timers() <= before + 1.0,
        "300 sleeps armed {} browser timers",
        live_timers() - before
    );
    for (want, done) in all.await {
        assert!(
            done - start >= want,
            "wanted {want} ms, got {} ms",
            done - start
        );
    }
}

#[wasm_bindgen_test]
async fn a_dropped_sleep_does_not_keep_the_others_from_completing() {
    let rt = WasmRuntime::new();
    let mut early = rt.sleep(Duration::from_millis(2));
    let cx = &mut Context::from_waker(core::task::Waker::noop());
    assert!(Pin::new(&mut early).poll(cx).is_pending());
    drop(early); // the callback was armed for it
    let start = performance_now();
    rt.sleep(Duration::from_millis(8)).await;
    assert!(performance_now() - start >= 8.0);
}

#[wasm_bindgen_test]
async fn spawned_tasks_run_and_can_sleep() {
    let rt = WasmRuntime::new();
    let done = Arc::new(AtomicU32::new(0));
    let flag = done.clone();
    rt.spawn(Task::new(async move {
        WasmRuntime::new().sleep(Duration::from_millis(3)).await;
        flag.store(1, Ordering::SeqCst);
    }))
    .expect("spawn_local never refuses");
    while done.load(Ordering::SeqCst) == 0 {
        rt.sleep(Duration::from_millis(1)).await;
    }
}

/// Fails its first `fail_first` attempts; its first `hang_first` attempts sleep an hour first.
struct Flaky {
    fail_first: u32,
    hang_first: u32,
}

impl Job for Flaky {
    type Output = u32;
}

#[derive(Debug)]
struct Failed(u32);

impl core::fmt::Display for Failed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "attempt {} failed", self.0)
    }
}

impl core::error::Error for Failed {}

struct FlakyExec {
    attempts: Arc<AtomicU32>,
    at: Arc<std::sync::Mutex<Vec<f64>>>,
}

impl Executor<Flaky> for FlakyExec {
    type Error = Failed;
    async fn execute(&self, job: &Flaky, cx: JobContext) -> Result<u32, Failed> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        self.at.lock().unwrap().push(performance_now());
        if attempt <= job.hang_first {
            cx.sleep(Duration::from_secs(3_600)).await;
        }
        if attempt <= job.fail_first {
            return Err(Failed(attempt));
        }
        Ok(attempt)
    }
}

fn flaky_dispatcher() -> (
    Dispatcher<WasmRuntime>,
    Arc<AtomicU32>,
    Arc<std::sync::Mutex<Vec<f64>>>,
) {
    let d = Dispatcher::new(WasmRuntime::new());
    let attempts = Arc::new(AtomicU32::new(0));
    let at = Arc::new(std::sync::Mutex::new(Vec::new()));
    d.register(FlakyExec {
        attempts: attempts.clone(),
        at: at.clone(),
    });
    (d, attempts, at)
}

#[wasm_bindgen_test]
async fn retry_backoffs_wait_at_least_their_delay() {
    let (d, attempts, at) = flaky_dispatcher();
    let base = Duration::from_millis(4);
    let done = d
        .job(Flaky {
            fail_first: 3,
            hang_first: 0,
        })
        .retry(RetryPolicy::exponential(5, base))
        .dispatch()
        .await
        .expect("the fourth attempt succeeds");
    assert_eq!(done.value, 4);
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    let policy = RetryPolicy::exponential(5, base);
    let at = at.lock().unwrap().clone();
    for (retry, pair) in at.windows(2).enumerate() {
        let waited = pair[1] - pair[0];
        let backoff = ms(policy.delay(retry as u32));
        assert!(
            waited >= backoff,
            "retry {}: waited {waited} ms, backoff {backoff} ms",
            retry + 1
        );
    }
}

#[wasm_bindgen_test]
async fn a_total_timeout_fires_and_is_not_early() {
    let (d, attempts, _) = flaky_dispatcher();
    let budget = Duration::from_millis(15);
    let start = performance_now();
    let err = d
        .job(Flaky {
            fail_first: 0,
            hang_first: u32::MAX,
        })
        .timeout(budget)
        .dispatch()
        .await
        .expect_err("the hanging attempt times out");
    assert!(
        matches!(err, JobError::TimedOut { budget: b } if b == budget),
        "{err:?}"
    );
    assert!(performance_now() - start >= ms(budget));
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

#[wasm_bindgen_test]
async fn an_attempt_timeout_is_retried() {
    let (d, attempts, at) = flaky_dispatcher();
    let limit = Duration::from_millis(10);
    let start = performance_now();
    let done = d
        .job(Flaky {
            fail_first: 0,
            hang_first: 1,
        })
        .attempt_timeout(limit)
        .retry(RetryPolicy::fixed(2, Duration::from_millis(3)))
        .dispatch()
        .await
        .expect("the second attempt succeeds");
    assert_eq!(done.value, 2);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    // The first attempt's limit started after `start`, the backoff after the limit expired.
    let second = at.lock().unwrap()[1];
    assert!(second - start >= ms(limit) + 3.0, "{start} {second}");
}
