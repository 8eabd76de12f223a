//! The IndexedDB store in a browser (headless Chromium in CI): the conformance suite every
//! store passes, one tab at a time, the bad databases, and durable jobs on it: queued while
//! offline, kept across a reopen (a page reload), sent in order when the network returns,
//! with a job type the page no longer knows kept and reported.

#![cfg(target_arch = "wasm32")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext, ManualConnectivity};
use orchestrator_durable::{Durable, Online, Recovery};
use orchestrator_idb::{FORMAT_VERSION, IdbStore, Op, Store, StoreError, Table};
use orchestrator_remote::{NodeId, Registry};
use orchestrator_store::conformance;
use orchestrator_wasm::WasmRuntime;
use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// A database name of its own for each test, deleted first.
async fn fresh(name: &'static str) -> &'static str {
    IdbStore::delete(name)
        .await
        .expect("delete the test database");
    name
}

#[wasm_bindgen_test]
async fn the_indexeddb_store_passes_the_conformance_suite() {
    let name = fresh("conformance").await;
    let cases = conformance::run_async(move || IdbStore::open(name)).await;
    assert_eq!(cases, conformance::CASES);
}

#[wasm_bindgen_test]
async fn a_second_store_on_the_same_database_is_refused_until_the_first_is_dropped() {
    let name = fresh("twice").await;
    let first = IdbStore::open(name).await.unwrap();
    first
        .commit(&[Op::put(Table::Jobs, b"k".to_vec(), b"v".to_vec())])
        .await
        .unwrap();
    let second = IdbStore::open(name).await.unwrap_err();
    assert_eq!(
        second,
        StoreError::Locked {
            path: "indexeddb:twice".into()
        }
    );
    assert!(
        second.to_string().contains("one process at a time"),
        "{second}"
    );
    drop(first);
    let again = IdbStore::open(name).await.unwrap();
    assert_eq!(again.get(Table::Jobs, b"k").unwrap(), Some(b"v".to_vec()));
}

/// Opens `name` at `version` with the raw API (no tables), as another program would.
async fn raw_open(name: &str, version: u32) -> web_sys::IdbDatabase {
    let factory: web_sys::IdbFactory =
        js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("indexedDB"))
            .unwrap()
            .unchecked_into();
    let request = factory.open_with_u32(name, version).unwrap();
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    });
    JsFuture::from(promise).await.unwrap();
    request.result().unwrap().unchecked_into()
}

#[wasm_bindgen_test]
async fn a_database_of_a_newer_format_is_refused_and_left_as_it_was() {
    let name = fresh("newer").await;
    raw_open(name, FORMAT_VERSION + 1).await.close();
    let error = IdbStore::open(name).await.unwrap_err();
    assert_eq!(
        error,
        StoreError::NewerFormat {
            path: "indexeddb:newer".into(),
            found: FORMAT_VERSION + 1,
            supported: FORMAT_VERSION,
        }
    );
    let db = raw_open(name, FORMAT_VERSION + 1).await;
    assert_eq!(db.version() as u32, FORMAT_VERSION + 1, "not downgraded");
    db.close();
}

#[wasm_bindgen_test]
async fn a_database_that_is_not_a_store_is_an_error_not_a_panic() {
    let name = fresh("foreign").await;
    raw_open(name, FORMAT_VERSION).await.close(); // the right version, no tables
    let error = IdbStore::open(name).await.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("indexeddb:foreign"), "{error}");
}

#[wasm_bindgen_test]
async fn commits_apply_in_call_order_without_being_awaited_one_by_one() {
    let name = fresh("order").await;
    let store = IdbStore::open(name).await.unwrap();
    let first = store.commit(&[Op::put(Table::Jobs, b"k".to_vec(), b"1".to_vec())]);
    let second = store.commit(&[Op::put(Table::Jobs, b"k".to_vec(), b"2".to_vec())]);
    assert!(!first.is_ready(), "IndexedDB answers later");
    second.await.unwrap();
    first.await.unwrap();
    assert_eq!(store.get(Table::Jobs, b"k").unwrap(), Some(b"2".to_vec()));
    drop(store);
    let store = IdbStore::open(name).await.unwrap();
    assert_eq!(store.get(Table::Jobs, b"k").unwrap(), Some(b"2".to_vec()));
}

// ---- durable jobs on IndexedDB ---------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Send {
    text: String,
}

impl Job for Send {
    type Output = String;
}

#[derive(Debug)]
struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

/// The "server": records what it was sent, in order.
#[derive(Clone, Default)]
struct Server(Arc<Mutex<Vec<String>>>);

impl Executor<Send> for Server {
    type Error = Never;
    async fn execute(&self, job: &Send, _: JobContext) -> Result<String, Never> {
        self.0.lock().unwrap().push(job.text.clone());
        Ok(format!("sent {}", job.text))
    }
}

fn registry(with_send: bool) -> Arc<Registry> {
    let mut registry = Registry::new(NodeId::new(1));
    if with_send {
        registry.register_job::<Send>("chat.send").unwrap();
    }
    Arc::new(registry)
}

async fn page(
    name: &str,
    network: &ManualConnectivity,
    server: &Server,
) -> (Dispatcher<WasmRuntime>, Durable, Recovery) {
    let dispatcher = Dispatcher::new(WasmRuntime::new());
    let store = IdbStore::open(name).await.unwrap();
    let (durable, recovery) = Durable::builder(store, registry(true))
        .register_online::<Send, _>(server.clone(), Online::default())
        .connectivity(network.clone())
        .open(&dispatcher)
        .unwrap();
    (dispatcher, durable, recovery)
}

#[wasm_bindgen_test]
async fn jobs_queued_offline_survive_a_reload_and_are_sent_in_order_when_online() {
    let name = fresh("offline-queue").await;
    let network = ManualConnectivity::new(false);
    let server = Server::default();

    // The first page: three sends while offline, each stored before its handle says so. (It
    // has a network of its own that never comes back: its parked tasks stand for a page that
    // is gone, as the reload below leaves them.)
    let gone = ManualConnectivity::new(false);
    let (dispatcher, durable, recovery) = page(name, &gone, &server).await;
    recovery.resume();
    let handles: Vec<_> = ["one", "two", "three"]
        .map(|text| dispatcher.dispatch(Send { text: text.into() }))
        .into();
    for handle in &handles {
        handle.stored().await.expect("stored in IndexedDB");
    }
    // Each job's task reaches the network gate once the browser has run it.
    settle(|| durable.stats().waiting_for_network == 3).await;
    assert_eq!(durable.stats().waiting_for_network, 3);
    assert!(server.0.lock().unwrap().is_empty(), "nothing sent offline");

    // The reload: everything of the page goes away, the database stays.
    durable.close();
    drop((dispatcher, durable, handles));

    let (dispatcher, durable, recovery) = page(name, &network, &server).await;
    assert_eq!(recovery.len(), 3, "the three are still queued");
    let ids = recovery.ids();
    recovery.resume();
    sleep(Duration::from_millis(50)).await;
    assert!(server.0.lock().unwrap().is_empty(), "still offline");

    network.set_online(true);
    let mut outcomes = Vec::new();
    for id in ids {
        let handle = durable
            .take_handle::<String>(id)
            .expect("a recovered job's handle");
        outcomes.push(handle.await.expect("sent").into_value());
    }
    assert_eq!(outcomes, ["sent one", "sent two", "sent three"]);
    assert_eq!(*server.0.lock().unwrap(), ["one", "two", "three"]);
    drop(dispatcher);
    durable.close();
}

#[wasm_bindgen_test]
async fn a_job_type_the_page_no_longer_knows_is_kept_and_reported() {
    let name = fresh("unknown-type").await;
    let network = ManualConnectivity::new(false);
    let server = Server::default();
    let gone = ManualConnectivity::new(false);
    let (dispatcher, durable, recovery) = page(name, &gone, &server).await;
    recovery.resume();
    let handle = dispatcher.dispatch(Send {
        text: "kept".into(),
    });
    handle.stored().await.unwrap();
    durable.close();
    drop((dispatcher, durable, handle));

    // A page update removed the job type.
    let dispatcher = Dispatcher::new(WasmRuntime::new());
    let store = IdbStore::open(name).await.unwrap();
    let (durable, recovery) = Durable::builder(store, registry(false))
        .open(&dispatcher)
        .unwrap();
    let unknown = recovery.resume();
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].job_type, "chat.send");
    durable.close();
    drop((dispatcher, durable));

    // The next version knows it again: the job is still there, and is sent.
    network.set_online(true);
    let (dispatcher, durable, recovery) = page(name, &network, &server).await;
    assert_eq!(recovery.len(), 1);
    let id = recovery.ids()[0];
    recovery.resume();
    let handle = durable.take_handle::<String>(id).unwrap();
    assert_eq!(handle.await.unwrap().into_value(), "sent kept");
    drop(dispatcher);
    durable.close();
}

#[wasm_bindgen_test]
async fn without_indexeddb_open_says_so_and_the_page_can_fall_back() {
    // Hide `indexedDB`, as a browser in a private mode without storage does.
    let global = js_sys::global();
    let saved = js_sys::Reflect::get(&global, &JsValue::from_str("indexedDB")).unwrap();
    let descriptor = js_sys::Object::new();
    js_sys::Reflect::set(&descriptor, &"value".into(), &JsValue::UNDEFINED).unwrap();
    js_sys::Reflect::set(&descriptor, &"configurable".into(), &JsValue::TRUE).unwrap();
    let object: js_sys::Object = global.unchecked_into();
    js_sys::Object::define_property(&object, &"indexedDB".into(), &descriptor);
    let error = IdbStore::open("hidden").await.unwrap_err();
    js_sys::Reflect::set(&descriptor, &"value".into(), &saved).unwrap();
    js_sys::Object::define_property(&object, &"indexedDB".into(), &descriptor);

    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    assert!(
        error.to_string().contains("no durable storage here"),
        "{error}"
    );

    // The page's choice: jobs in memory, for as long as the page lives (and it says so).
    let dispatcher = Dispatcher::new(WasmRuntime::new());
    let (durable, recovery) =
        Durable::builder(orchestrator_durable::MemoryStore::new(), registry(true))
            .register::<Send, _>(Server::default())
            .open(&dispatcher)
            .unwrap();
    recovery.resume();
    let handle = dispatcher.dispatch(Send { text: "x".into() });
    assert_eq!(handle.await.unwrap().into_value(), "sent x");
    durable.close();
}

/// Lets the page run until `done` holds (or a generous number of turns have passed; the
/// assertion after it then says what is wrong).
async fn settle(done: impl Fn() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        sleep(Duration::from_millis(5)).await;
    }
}

/// Sleeps on the browser's timer.
async fn sleep(duration: Duration) {
    use orchestrator_core::runtime::Timer;
    WasmRuntime::new().sleep(duration).await;
}
