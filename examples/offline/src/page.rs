//! The page (wasm32 only): the store, the browser's connectivity, `fetch`, and the drawing.
//!
//! The page's own code (the click handler, the tasks that follow the outbox's states and the
//! network) runs on `wasm_bindgen_futures::spawn_local` and needs not be `Send`. The job's
//! executor is `Send`, as durable executors are: its `fetch` runs on a local task, and the
//! executor awaits the result through a `Send` slot.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

use futures_core::Stream;
use orchestrator_core::{
    Connectivity, Dispatcher, Executor, JobContext, Orchestrator, OrchestratorHandle,
};
use orchestrator_durable::{Durable, MemoryStore, Store};
use orchestrator_idb::IdbStore;
use orchestrator_wasm::{BrowserConnectivity, WasmRuntime};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Document, Element, HtmlInputElement};

use crate::{Message, Outbox, OutboxOrchestrator, RowView, SendError, SendMessage, durable, send};

/// The IndexedDB database of the page's jobs.
const DATABASE: &str = "orchestrator-offline-example";

/// Posts messages to the server's `/send` with `fetch`.
struct Sender;

impl Executor<SendMessage> for Sender {
    type Error = SendError;

    async fn execute(&self, job: &SendMessage, _: JobContext) -> Result<Message, SendError> {
        let number = on_page(post(job.clone())).await?;
        Ok(Message {
            key: job.key.clone(),
            text: job.text.clone(),
            number: Some(number),
        })
    }
}

/// `POST send` with the message as JSON; the server answers `{"number": n}` or refuses.
async fn post(job: SendMessage) -> Result<u32, SendError> {
    let network = |e: JsValue| SendError::Network(describe(&e));
    let window = web_sys::window().ok_or_else(|| SendError::Network("no window".into()))?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    let body = serde_json::json!({ "key": job.key, "text": job.text }).to_string();
    init.set_body(&JsValue::from_str(&body));
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str_and_init("send", &init))
        .await
        .map_err(network)?
        .unchecked_into();
    let text = JsFuture::from(response.text().map_err(network)?)
        .await
        .map_err(network)?
        .as_string()
        .unwrap_or_default();
    if !response.ok() {
        return Err(SendError::Rejected(text));
    }
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("number")?.as_u64())
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| SendError::Rejected(format!("an answer without a number: {text}")))
}

/// Runs `future` (not `Send`: it holds JavaScript values) on a local task of the page, and
/// returns a `Send` future of its output.
fn on_page<T: Send + 'static>(
    future: impl Future<Output = T> + 'static,
) -> impl Future<Output = T> + Send {
    type Slot<T> = Arc<Mutex<(Option<T>, Option<Waker>)>>;
    let slot: Slot<T> = Arc::new(Mutex::new((None, None)));
    let filled = slot.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let output = future.await;
        let waker = {
            let mut slot = filled.lock().unwrap_or_else(PoisonError::into_inner);
            slot.0 = Some(output);
            slot.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    });
    std::future::poll_fn(move |cx| {
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.0.take() {
            Some(output) => Poll::Ready(output),
            None => {
                slot.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    })
}

/// Everything the handlers share.
struct Page {
    outbox: OrchestratorHandle<Outbox>,
    _durable: Durable,
    document: Document,
    rows: Element,
    dead: Element,
    summary: Element,
    keys: Cell<u32>,
}

/// Runs once the module is instantiated (`init()` in `index.html`).
#[wasm_bindgen(start)]
fn main() {
    std::panic::set_hook(Box::new(|info| {
        if let Ok(status) = element("status") {
            status.set_text_content(Some(&format!("panicked: {info}")));
        }
    }));
    wasm_bindgen_futures::spawn_local(async {
        if let Err(error) = boot().await {
            if let Ok(status) = element("status") {
                status.set_text_content(Some(&format!("failed: {}", describe(&error))));
            }
        }
    });
}

async fn boot() -> Result<(), JsValue> {
    let dispatcher = Dispatcher::new(WasmRuntime::new());
    let network = BrowserConnectivity::new();
    // IndexedDB, or memory if the browser has none for this page (and the page says so).
    let (store, kept): (Arc<dyn Store>, String) = match IdbStore::open(DATABASE).await {
        Ok(store) => (Arc::new(store), "messages are kept in IndexedDB".into()),
        Err(error) => (
            Arc::new(MemoryStore::new()),
            format!("messages are kept only while this page is open ({error})"),
        ),
    };
    let (durable, mut recovery) = durable(store, Sender, network.clone())
        .open(&dispatcher)
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    let outbox = OutboxOrchestrator
        .builder(Outbox::default(), &dispatcher)
        .start()
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    // The messages a previous visit left queued: through the outbox, so their rows return.
    let recovered = recovery.adopt::<SendMessage>(&outbox).len();
    let unknown = recovery.resume();

    let page = Rc::new(Page {
        outbox,
        _durable: durable,
        document: document()?,
        rows: element("rows")?,
        dead: element("rolled-back")?,
        summary: element("summary")?,
        keys: Cell::new(0),
    });
    follow_states(page.clone());
    follow_network(network);
    let clicked = page.clone();
    on_click("send", move || clicked.send())?;

    let mut status = format!("ready: {kept}; {recovered} queued from before");
    if !unknown.is_empty() {
        status.push_str(&format!(
            "; {} kept of a job type this page does not know",
            unknown.len()
        ));
    }
    element("status")?.set_text_content(Some(&status));
    page.draw(&page.outbox.state());
    Ok(())
}

impl Page {
    /// Sends what the text field holds, and clears it.
    fn send(&self) {
        let Ok(input) = element("text").map(|e| e.unchecked_into::<HtmlInputElement>()) else {
            return;
        };
        let text = input.value();
        if text.trim().is_empty() {
            return;
        }
        input.set_value("");
        self.keys.set(self.keys.get() + 1);
        let key = format!("{:x}-{}", js_sys::Date::now() as u64, self.keys.get());
        // The page follows the outbox's state, not the handle.
        drop(send(&self.outbox, key, text));
    }

    fn draw(&self, outbox: &Outbox) {
        self.summary.set_text_content(Some(&outbox.summary()));
        let _ = self.fill(&self.rows, outbox.rows());
        let _ = self.fill(&self.dead, outbox.rolled_back());
    }

    /// Replaces `list`'s items with `rows`.
    fn fill(&self, list: &Element, rows: Vec<RowView>) -> Result<(), JsValue> {
        list.set_text_content(None);
        for row in rows {
            let item = self.document.create_element("li")?;
            item.set_id(&row.id);
            item.set_class_name(row.class);
            item.set_text_content(Some(&row.line));
            list.append_child(&item)?;
        }
        Ok(())
    }
}

/// Redraws the rows on every state of the outbox.
fn follow_states(page: Rc<Page>) {
    let mut states = page.outbox.states();
    wasm_bindgen_futures::spawn_local(async move {
        while let Some(outbox) = next(&mut states).await {
            page.draw(&outbox);
        }
    });
}

/// Shows the browser's connectivity.
fn follow_network(network: BrowserConnectivity) {
    let mut changes = network.changes();
    wasm_bindgen_futures::spawn_local(async move {
        while let Some(online) = next(&mut changes).await {
            if let Ok(line) = element("network") {
                line.set_text_content(Some(if online { "online" } else { "offline" }));
                line.set_class_name(if online { "online" } else { "offline" });
            }
        }
    });
}

async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

fn describe(error: &JsValue) -> String {
    error
        .as_string()
        .or_else(|| {
            js_sys::Reflect::get(error, &JsValue::from_str("message"))
                .ok()?
                .as_string()
        })
        .unwrap_or_else(|| format!("{error:?}"))
}

fn document() -> Result<Document, JsValue> {
    web_sys::window()
        .and_then(|window| window.document())
        .ok_or_else(|| JsValue::from_str("no window.document: this module runs in a page"))
}

fn element(id: &str) -> Result<Element, JsValue> {
    document()?
        .get_element_by_id(id)
        .ok_or_else(|| JsValue::from_str(&format!("index.html has no #{id}")))
}

/// Calls `handler` on each click of button `#id`, and enables the button.
fn on_click(id: &str, handler: impl FnMut() + 'static) -> Result<(), JsValue> {
    let button = element(id)?;
    let handler = Closure::<dyn FnMut()>::new(handler);
    button.add_event_listener_with_callback("click", handler.as_ref().unchecked_ref())?;
    handler.forget(); // for the page's life
    button.remove_attribute("disabled")?;
    Ok(())
}
