//! The IndexedDB side of [`IdbStore`](crate::IdbStore) (`wasm32` only).
//!
//! JavaScript objects are not `Send`, and a store is: the database and the lock's release
//! live in a thread-local table, and a [`Connection`] holds only its key there, its name and
//! the in-memory copy that reads are served from. Every request's outcome comes back through
//! a promise whose `resolve` and `reject` are the request's own event handlers, so no Rust
//! closure outlives what it waits for.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use orchestrator_store::{Commit, MemoryStore, Op, Store, StoreError, Table};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbFactory, IdbRequest, IdbTransaction, IdbVersionChangeEvent};

use crate::errors::{map, path};
use crate::{FORMAT_VERSION, LOCK_WAIT};

/// The JavaScript half of an open store.
struct Open {
    db: IdbDatabase,
    /// Resolves the promise that holds the database's Web Lock; `None` without Web Locks.
    release: Option<Function>,
}

thread_local! {
    static OPEN: RefCell<HashMap<u64, Open>> = RefCell::new(HashMap::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An open store: its key in this thread's table, and the copy reads come from.
#[derive(Debug)]
pub(crate) struct Connection {
    id: u64,
    name: String,
    mirror: MemoryStore,
}

impl Connection {
    pub(crate) async fn open(name: &str) -> Result<Self, StoreError> {
        let factory = factory(name)?;
        let release = lock(name).await?;
        let opened = async {
            let db = open_db(&factory, name).await?;
            match load(&db, name).await {
                Ok(mirror) => Ok((db, mirror)),
                Err(error) => {
                    db.close();
                    Err(error)
                }
            }
        }
        .await;
        let (db, mirror) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                if let Some(release) = &release {
                    let _ = release.call0(&JsValue::NULL);
                }
                return Err(error);
            }
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        OPEN.with(|open| open.borrow_mut().insert(id, Open { db, release }));
        Ok(Self {
            id,
            name: name.to_owned(),
            mirror,
        })
    }

    pub(crate) fn mirror(&self) -> &MemoryStore {
        &self.mirror
    }

    /// Starts one read-write transaction with every write of `ops`; the commit ends when the
    /// browser says the transaction is complete (and the copy has the writes) or aborted.
    pub(crate) fn commit(&self, ops: &[Op]) -> Commit {
        if ops.is_empty() {
            return Commit::ready(Ok(()));
        }
        let started = OPEN.with(|open| {
            let open = open.borrow();
            let Some(open) = open.get(&self.id) else {
                return Err(StoreError::Other(format!(
                    "{}: the store is used on another thread than the one that opened it",
                    path(&self.name)
                )));
            };
            let error = |e: JsValue| js_error(&self.name, "commit", &e);
            let tx = readwrite(&open.db).map_err(error)?;
            let done = Promise::new(&mut |resolve, reject| {
                tx.set_oncomplete(Some(&resolve));
                tx.set_onabort(Some(&reject));
            });
            for op in ops {
                if let Err(e) = write(&tx, op) {
                    let _ = tx.abort();
                    return Err(error(e));
                }
            }
            Ok((tx, done))
        });
        let (tx, done) = match started {
            Ok(started) => started,
            Err(error) => return Commit::ready(Err(error)),
        };
        let slot: Arc<Mutex<Slot>> = Arc::default();
        let (mirror, ops, name) = (self.mirror.clone(), ops.to_vec(), self.name.clone());
        wasm_bindgen_futures::spawn_local({
            let slot = slot.clone();
            async move {
                let result = match JsFuture::from(done).await {
                    Ok(_) => mirror.commit(&ops).wait(),
                    Err(_) => Err(match tx.error() {
                        Some(e) => map(&name, "commit", &e.name(), &e.message()),
                        None => StoreError::Other(format!(
                            "{}: commit: the transaction was aborted",
                            path(&name)
                        )),
                    }),
                };
                let waker = {
                    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
                    slot.0 = Some(result);
                    slot.1.take()
                };
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
        });
        Commit::pending(std::future::poll_fn(move |cx| {
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.0.take() {
                Some(result) => Poll::Ready(result),
                None => {
                    slot.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }))
    }
}

/// A commit's result once the browser has said, and who waits for it.
type Slot = (Option<Result<(), StoreError>>, Option<Waker>);

impl Drop for Connection {
    /// Closes the database (its running transactions still complete) and releases the lock.
    fn drop(&mut self) {
        let open = OPEN
            .try_with(|open| open.borrow_mut().remove(&self.id))
            .ok()
            .flatten();
        if let Some(open) = open {
            open.db.close();
            if let Some(release) = open.release {
                let _ = release.call0(&JsValue::NULL);
            }
        }
    }
}

/// Deletes database `name`, holding its lock meanwhile.
pub(crate) async fn delete(name: &str) -> Result<(), StoreError> {
    let factory = factory(name)?;
    let release = lock(name).await?;
    let result = async {
        let request = factory
            .delete_database(name)
            .map_err(|e| js_error(name, "delete", &e))?;
        done(name, "delete", &request).await.map(drop)
    }
    .await;
    if let Some(release) = &release {
        let _ = release.call0(&JsValue::NULL);
    }
    result
}

/// The global object's `indexedDB`.
fn factory(name: &str) -> Result<IdbFactory, StoreError> {
    // Some private modes throw on the very access.
    let value = Reflect::get(&js_sys::global(), &JsValue::from_str("indexedDB"))
        .map_err(|e| js_error(name, "open", &e))?;
    if value.is_undefined() || value.is_null() {
        return Err(StoreError::Unavailable {
            detail: format!(
                "this browser context has no IndexedDB, so `{}` cannot be opened",
                path(name)
            ),
        });
    }
    value
        .dyn_into::<IdbFactory>()
        .map_err(|_| StoreError::Unavailable {
            detail: "the global `indexedDB` is not an IDBFactory".into(),
        })
}

/// Takes the database's exclusive Web Lock, waiting up to [`LOCK_WAIT`]; returns the
/// function that releases it, or `None` where there are no Web Locks.
async fn lock(name: &str) -> Result<Option<Function>, StoreError> {
    let get = |target: &JsValue, key: &str| {
        Reflect::get(target, &JsValue::from_str(key))
            .ok()
            .filter(JsValue::is_object)
    };
    let Some(locks) = get(&js_sys::global(), "navigator").and_then(|n| get(&n, "locks")) else {
        return Ok(None);
    };
    let Ok(request) =
        Reflect::get(&locks, &JsValue::from_str("request")).and_then(|f| f.dyn_into::<Function>())
    else {
        return Ok(None);
    };
    let options = Object::new();
    let _ = Reflect::set(&options, &"mode".into(), &"exclusive".into());
    match abort_after(LOCK_WAIT) {
        Some(signal) => {
            let _ = Reflect::set(&options, &"signal".into(), &signal);
        }
        // No timed signal: take it only if free.
        None => {
            let _ = Reflect::set(&options, &"ifAvailable".into(), &JsValue::TRUE);
        }
    }
    // Granted: the callback hands over the `resolve` of the promise it returns, which holds
    // the lock until called. Refused (timed out, or not available): the request's promise
    // rejects, or the callback gets `null`.
    let mut settle = None;
    let granted = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
    let Some((grant, refuse)) = settle else {
        return Ok(None);
    };
    let callback = Closure::once_into_js({
        let refuse = refuse.clone();
        move |lock: JsValue| -> JsValue {
            if lock.is_null() {
                let _ = refuse.call1(&JsValue::NULL, &JsValue::from_str("NotAvailable"));
                return JsValue::UNDEFINED;
            }
            Promise::new(&mut |release, _| {
                let _ = grant.call1(&JsValue::NULL, &release);
            })
            .into()
        }
    });
    let lock_name = JsValue::from_str(&format!("orchestrator-idb:{name}"));
    let held = request
        .call3(&locks, &lock_name, &options, &callback)
        .map_err(|e| js_error(name, "lock", &e))?;
    if let Ok(then) = Reflect::get(&held, &"then".into()).and_then(|f| f.dyn_into::<Function>()) {
        let _ = then.call2(&held, &JsValue::UNDEFINED, &refuse);
    }
    match JsFuture::from(granted).await {
        Ok(release) => Ok(release.dyn_into::<Function>().ok()),
        Err(_) => Err(StoreError::Locked { path: path(name) }),
    }
}

/// `AbortSignal.timeout(after)`, where the browser has it.
fn abort_after(after: core::time::Duration) -> Option<JsValue> {
    let class = Reflect::get(&js_sys::global(), &"AbortSignal".into()).ok()?;
    let timeout = Reflect::get(&class, &"timeout".into())
        .ok()?
        .dyn_into::<Function>()
        .ok()?;
    timeout
        .call1(&class, &JsValue::from_f64(after.as_millis() as f64))
        .ok()
}

/// Opens the database at this build's version, making the tables if it is new.
async fn open_db(factory: &IdbFactory, name: &str) -> Result<IdbDatabase, StoreError> {
    let request = factory
        .open_with_u32(name, FORMAT_VERSION)
        .map_err(|e| js_error(name, "open", &e))?;
    let upgrade = Closure::<dyn FnMut(IdbVersionChangeEvent)>::new({
        let request = request.clone();
        move |_: IdbVersionChangeEvent| {
            // A new database (older formats, of which there are none yet, would migrate here).
            let Ok(db) = request.result() else { return };
            let db: IdbDatabase = db.unchecked_into();
            let names = db.object_store_names();
            for table in Table::ALL {
                if !names.contains(table.name()) {
                    let _ = db.create_object_store(table.name());
                }
            }
        }
    });
    request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
    let opened = done(name, "open", &request).await;
    request.set_onupgradeneeded(None);
    drop(upgrade);
    match opened {
        Ok(db) => Ok(db.unchecked_into()),
        Err(StoreError::Other(detail)) if detail.contains("VersionError") => {
            Err(newer(factory, name).await)
        }
        Err(error) => Err(error),
    }
}

/// The error for a database that a newer build wrote: its version, read without changing it.
async fn newer(factory: &IdbFactory, name: &str) -> StoreError {
    let found = async {
        let request = factory.open(name).ok()?;
        let db: IdbDatabase = done(name, "open", &request).await.ok()?.unchecked_into();
        let version = db.version();
        db.close();
        Some(version as u32)
    }
    .await;
    StoreError::NewerFormat {
        path: path(name),
        found: found.unwrap_or(FORMAT_VERSION + 1),
        supported: FORMAT_VERSION,
    }
}

/// Reads every table into memory.
async fn load(db: &IdbDatabase, name: &str) -> Result<MemoryStore, StoreError> {
    let error = |e: JsValue| js_error(name, "read", &e);
    let tx = db
        .transaction_with_str_sequence(&table_names())
        .map_err(error)?;
    // Every request's handlers are set before the first await: none completes unheard.
    let mut reads = Vec::new();
    for table in Table::ALL {
        let store = tx.object_store(table.name()).map_err(error)?;
        let keys = store.get_all_keys().map_err(error)?;
        let values = store.get_all().map_err(error)?;
        reads.push((
            table,
            done(name, "read", &keys),
            done(name, "read", &values),
        ));
    }
    let mut ops = Vec::new();
    for (table, keys, values) in reads {
        let keys: Array = keys.await?.unchecked_into();
        let values: Array = values.await?.unchecked_into();
        let corrupt = |detail: &str| StoreError::Corrupt {
            path: path(name),
            detail: format!("table `{}`: {detail}", table.name()),
        };
        if keys.length() != values.length() {
            return Err(corrupt("as many keys as values were not read"));
        }
        for (key, value) in keys.iter().zip(values.iter()) {
            let key = bytes(&key).ok_or_else(|| corrupt("a key is not bytes"))?;
            let value = bytes(&value).ok_or_else(|| corrupt("a value is not bytes"))?;
            ops.push(Op::put(table, key, value));
        }
    }
    let mirror = MemoryStore::new();
    mirror.commit(&ops).wait()?;
    Ok(mirror)
}

/// Waits for `request`; its result, or its error as the store's. The handlers are set
/// when this is called, not when the future is first polled: a request that completes before
/// the future is awaited is still heard.
fn done(
    name: &str,
    what: &'static str,
    request: &IdbRequest,
) -> impl Future<Output = Result<JsValue, StoreError>> + 'static {
    let settled = JsFuture::from(Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    }));
    let (request, name) = (request.clone(), name.to_owned());
    async move {
        match settled.await {
            Ok(_) => request.result().map_err(|e| js_error(&name, what, &e)),
            Err(_) => Err(match request.error() {
                Ok(Some(e)) => map(&name, what, &e.name(), &e.message()),
                _ => StoreError::Other(format!("{}: {what} failed", path(&name))),
            }),
        }
    }
}

/// A read-write transaction on every table, with strict durability where the browser has
/// the option (the browser flushes to disk before it says complete).
fn readwrite(db: &IdbDatabase) -> Result<IdbTransaction, JsValue> {
    let options = Object::new();
    Reflect::set(&options, &"durability".into(), &"strict".into())?;
    let transaction: Function = Reflect::get(db, &"transaction".into())?.dyn_into()?;
    transaction
        .call3(db, &table_names(), &"readwrite".into(), &options)?
        .dyn_into()
}

/// One write of a batch.
fn write(tx: &IdbTransaction, op: &Op) -> Result<(), JsValue> {
    match op {
        Op::Put { table, key, value } => tx
            .object_store(table.name())?
            .put_with_key(
                &Uint8Array::from(value.as_slice()),
                &Uint8Array::from(key.as_slice()),
            )
            .map(drop),
        Op::Delete { table, key } => tx
            .object_store(table.name())?
            .delete(&Uint8Array::from(key.as_slice()))
            .map(drop),
    }
}

fn table_names() -> Array {
    Table::ALL
        .iter()
        .map(|t| JsValue::from_str(t.name()))
        .collect()
}

/// The bytes of a binary key or value (an `ArrayBuffer` or a typed array), copied.
fn bytes(value: &JsValue) -> Option<Vec<u8>> {
    let binary =
        value.is_instance_of::<js_sys::ArrayBuffer>() || js_sys::ArrayBuffer::is_view(value);
    binary.then(|| Uint8Array::new(value).to_vec())
}

/// A JavaScript exception (a `DOMException` or an `Error`) as the store's error.
fn js_error(name: &str, what: &str, error: &JsValue) -> StoreError {
    let field = |key: &str| {
        Reflect::get(error, &JsValue::from_str(key))
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let exception = field("name");
    if exception.is_empty() {
        return StoreError::Other(format!("{}: {what}: {error:?}", path(name)));
    }
    map(name, what, &exception, &field("message"))
}
