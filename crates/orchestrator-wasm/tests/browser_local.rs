//! Local executors and orchestrators in a browser (headless Chromium in CI): an executor that
//! awaits real JavaScript promises (a `JsFuture`, which is not `Send`) and keeps page state in
//! an `Rc`, and an orchestrator holding a `JsValue`, all on [`WasmRuntime`]'s `spawn_local`.

#![cfg(target_arch = "wasm32")]

use core::cell::{Cell, RefCell};
use core::time::Duration;
use std::rc::Rc;

use js_sys::{Function, Promise, Reflect};
use orchestrator_core::runtime::Timer;
use orchestrator_core::{
    Dispatch, Dispatcher, Event, Job, JobContext, JobError, LocalExecutor, Orchestrator,
    OrchestratorContext, Origin, RetryPolicy,
};
use orchestrator_wasm::WasmRuntime;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// A promise that `setTimeout` settles after `ms` with `value` (rejects if `reject`).
fn settle_later(ms: u32, value: JsValue, reject: bool) -> Promise {
    Promise::new(&mut |resolve: Function, rejecter: Function| {
        let global = js_sys::global();
        let set_timeout: Function = Reflect::get(&global, &"setTimeout".into())
            .expect("setTimeout")
            .into();
        let settle = if reject { rejecter } else { resolve };
        set_timeout
            .call3(&global, &settle, &JsValue::from(ms), &value)
            .expect("setTimeout accepts the callback");
    })
}

#[derive(Debug)]
struct JsFailure(String);
impl core::fmt::Display for JsFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "the promise was rejected: {}", self.0)
    }
}
impl core::error::Error for JsFailure {}

/// Asks "JavaScript" to double a number, after `delay_ms`.
struct Double {
    value: f64,
    delay_ms: u32,
    reject: bool,
}
impl Job for Double {
    type Output = f64;
}

/// Counts its calls in an `Rc<Cell<..>>` and awaits a `JsFuture`: neither is `Send`.
struct Js {
    calls: Rc<Cell<u32>>,
    /// The promises still pending (a dropped `JsFuture` leaves its promise to settle alone).
    pending: Rc<Cell<u32>>,
}
impl LocalExecutor<Double> for Js {
    type Error = JsFailure;
    async fn execute(&self, job: &Double, _cx: JobContext) -> Result<f64, JsFailure> {
        self.calls.set(self.calls.get() + 1);
        let promise = settle_later(job.delay_ms, JsValue::from(job.value * 2.0), job.reject);
        let pending = self.pending.clone();
        pending.set(pending.get() + 1);
        let settled = JsFuture::from(promise).await;
        pending.set(pending.get() - 1);
        let value =
            settled.map_err(|e| JsFailure(e.as_f64().map_or("?".into(), |v| v.to_string())))?;
        value
            .as_f64()
            .ok_or_else(|| JsFailure("not a number".into()))
    }
}

fn dispatcher() -> (Dispatcher<WasmRuntime>, Rc<Cell<u32>>, Rc<Cell<u32>>) {
    let dispatcher = Dispatcher::new(WasmRuntime::new());
    let (calls, pending) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    dispatcher.register_local(Js {
        calls: calls.clone(),
        pending: pending.clone(),
    });
    (dispatcher, calls, pending)
}

#[wasm_bindgen_test]
async fn a_local_executor_awaits_a_real_promise() {
    let (dispatcher, calls, _) = dispatcher();
    let handles: Vec<_> = (1..=3)
        .map(|i| {
            dispatcher.dispatch(Double {
                value: f64::from(i),
                delay_ms: 5 * i,
                reject: false,
            })
        })
        .collect();
    let mut values = Vec::new();
    for handle in handles {
        values.push(handle.await.expect("resolved by JavaScript").value);
    }
    assert_eq!(values, [2.0, 4.0, 6.0]);
    assert_eq!(calls.get(), 3);
    assert_eq!(dispatcher.in_flight(), 0);
}

#[wasm_bindgen_test]
async fn a_rejected_promise_is_a_failure_and_is_retried() {
    let (dispatcher, calls, _) = dispatcher();
    let err = dispatcher
        .job(Double {
            value: 1.0,
            delay_ms: 1,
            reject: true,
        })
        .retry(RetryPolicy::fixed(2, Duration::from_millis(1)))
        .dispatch()
        .await
        .unwrap_err();
    match err {
        JobError::Failed(failure) => {
            assert_eq!(failure.attempts(), 3);
            let js = failure
                .downcast_ref::<JsFailure>()
                .expect("the executor's error");
            assert_eq!(js.0, "2", "the value the promise was rejected with");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(calls.get(), 3);
}

#[wasm_bindgen_test]
async fn cancel_and_timeout_drop_a_pending_js_future() {
    let (dispatcher, _, pending) = dispatcher();
    let slow = || Double {
        value: 1.0,
        delay_ms: 60_000,
        reject: false,
    };
    let handle = dispatcher.dispatch(slow());
    // Let the job start and reach its await.
    Timer::sleep(&WasmRuntime::new(), Duration::from_millis(5)).await;
    assert_eq!(pending.get(), 1);
    handle.cancel();
    assert!(matches!(handle.await, Err(JobError::Cancelled { .. })));
    let timed = dispatcher
        .job(slow())
        .timeout(Duration::from_millis(10))
        .dispatch()
        .await;
    assert!(matches!(timed, Err(JobError::TimedOut { .. })), "{timed:?}");
    assert_eq!(dispatcher.in_flight(), 0);
}

struct Clicked;

/// An orchestrator that keeps the page's last message in a `JsValue`: not `Send`.
struct Page {
    last: Rc<RefCell<JsValue>>,
}
impl Orchestrator for Page {
    type State = u32;
    fn on_event(&mut self, event: &Event, _: Origin, cx: &mut OrchestratorContext<'_, u32>) {
        if event.is::<Clicked>() {
            cx.update(|n| *n += 1);
            *self.last.borrow_mut() = JsValue::from(format!("clicked {}", cx.state()));
        }
    }
}

#[wasm_bindgen_test]
async fn a_local_orchestrator_holds_js_values() {
    let dispatcher = Dispatcher::new(WasmRuntime::new());
    let last = Rc::new(RefCell::new(JsValue::NULL));
    let page = Page { last: last.clone() }
        .builder(0, &dispatcher)
        .start_local()
        .expect("a browser runs local orchestrators");
    dispatcher.bus().emit(Clicked).unwrap();
    dispatcher.bus().emit(Clicked).unwrap();
    page.states().wait_for(|n| *n == 2).await.unwrap();
    assert_eq!(last.borrow().as_string().as_deref(), Some("clicked 2"));
    page.dispose();
}
