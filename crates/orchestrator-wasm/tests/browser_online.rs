//! The browser's connectivity in a browser (headless Chromium in CI): `navigator.onLine` when
//! made, then the page's `online` and `offline` events, seen by every value and by streams.

#![cfg(target_arch = "wasm32")]

use futures_core::Stream;
use orchestrator_core::Connectivity;
use orchestrator_wasm::BrowserConnectivity;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// Dispatches an `event` (a plain `Event`) on the global object, as the browser does when the
/// network comes and goes.
fn fire(event: &str) {
    let global = js_sys::global();
    let constructor: js_sys::Function = js_sys::Reflect::get(&global, &JsValue::from_str("Event"))
        .unwrap()
        .into();
    let args = js_sys::Array::of1(&JsValue::from_str(event));
    let event = js_sys::Reflect::construct(&constructor, &args).unwrap();
    let dispatch: js_sys::Function =
        js_sys::Reflect::get(&global, &JsValue::from_str("dispatchEvent"))
            .unwrap()
            .into();
    dispatch.call1(&global, &event).unwrap();
}

fn navigator_online() -> bool {
    let navigator =
        js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("navigator")).unwrap();
    js_sys::Reflect::get(&navigator, &JsValue::from_str("onLine"))
        .unwrap()
        .as_bool()
        .unwrap()
}

/// The next item of a stream that has one ready.
fn next_ready<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    let waker = core::task::Waker::noop().clone();
    let mut cx = core::task::Context::from_waker(&waker);
    match core::pin::Pin::new(stream).poll_next(&mut cx) {
        core::task::Poll::Ready(item) => item,
        core::task::Poll::Pending => None,
    }
}

#[wasm_bindgen_test]
fn it_follows_navigator_on_line_and_the_online_and_offline_events() {
    let network = BrowserConnectivity::new();
    assert_eq!(network.is_online(), navigator_online());
    let other = BrowserConnectivity::new();
    let mut changes = network.changes();
    assert_eq!(next_ready(&mut changes), Some(network.is_online()));

    fire("offline");
    assert!(!network.is_online());
    assert!(!other.is_online(), "every value shares the state");
    assert_eq!(next_ready(&mut changes), Some(false));

    fire("online");
    assert!(network.is_online());
    assert_eq!(next_ready(&mut changes), Some(true));
    assert_eq!(next_ready(&mut changes), None, "no change, nothing new");
}
