//! The in-memory store passes the suite every store runs.

use orchestrator_store::{MemoryStore, Op, Store, StoreError, Table, conformance};

#[test]
fn the_memory_store_passes_the_conformance_suite() {
    let store = MemoryStore::new();
    assert_eq!(conformance::run(|| Ok(store.clone())), conformance::CASES);
}

#[test]
fn a_refused_commit_changes_nothing_and_the_store_works_after() {
    let store = MemoryStore::new();
    store
        .commit(&[Op::put(Table::Jobs, b"a".to_vec(), b"1".to_vec())])
        .wait()
        .unwrap();
    store.fail_after(Some(0));
    let error = store
        .commit(&[
            Op::put(Table::Jobs, b"b".to_vec(), b"2".to_vec()),
            Op::delete(Table::Jobs, b"a".to_vec()),
        ])
        .wait()
        .unwrap_err();
    assert!(matches!(error, StoreError::Full { .. }));
    assert!(error.to_string().contains("intact"), "{error}");
    assert_eq!(store.scan(Table::Jobs).unwrap().len(), 1);
    store.fail_after(None);
    store
        .commit(&[Op::put(Table::Jobs, b"b".to_vec(), b"2".to_vec())])
        .wait()
        .unwrap();
    assert_eq!(store.len(Table::Jobs), 2);
}

/// A store that forgets everything at "reopen" fails the suite: the suite can fail.
#[test]
#[should_panic(expected = "what was committed survives a reopen")]
fn a_store_that_loses_its_writes_fails_the_suite() {
    let mut fresh = None::<MemoryStore>;
    conformance::run(|| {
        // A new, empty store every time but the first two openings of a case.
        let store = match fresh.take() {
            Some(store) => store,
            None => MemoryStore::new(),
        };
        fresh = Some(store.clone());
        if store.len(Table::Jobs) > 100 {
            return Ok(MemoryStore::new());
        }
        Ok(store)
    });
}

/// A store whose commits end later, on another thread (as IndexedDB's end in a callback):
/// the batch is applied there, in call order, and the commit resolves after it.
#[derive(Clone, Default)]
struct Deferred {
    inner: MemoryStore,
    /// One thread per store applies the batches in order.
    queue: std::sync::Arc<std::sync::Mutex<Option<std::sync::mpsc::Sender<Job>>>>,
}

type Done =
    std::sync::Arc<std::sync::Mutex<(Option<Result<(), StoreError>>, Option<std::task::Waker>)>>;
type Job = (Vec<Op>, Done);

impl Deferred {
    fn sender(&self) -> std::sync::mpsc::Sender<Job> {
        let mut queue = self.queue.lock().unwrap();
        queue
            .get_or_insert_with(|| {
                let (tx, rx) = std::sync::mpsc::channel::<Job>();
                let store = self.inner.clone();
                std::thread::spawn(move || {
                    for (ops, done) in rx {
                        std::thread::yield_now();
                        let result = store.commit(&ops).wait();
                        let mut done = done.lock().unwrap();
                        done.0 = Some(result);
                        if let Some(waker) = done.1.take() {
                            waker.wake();
                        }
                    }
                });
                tx
            })
            .clone()
    }
}

impl Store for Deferred {
    fn commit(&self, ops: &[Op]) -> orchestrator_store::Commit {
        let done: Done = Default::default();
        self.sender().send((ops.to_vec(), done.clone())).unwrap();
        orchestrator_store::Commit::pending(std::future::poll_fn(move |cx| {
            let mut done = done.lock().unwrap();
            match done.0.take() {
                Some(result) => std::task::Poll::Ready(result),
                None => {
                    done.1 = Some(cx.waker().clone());
                    std::task::Poll::Pending
                }
            }
        }))
    }
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn scan(&self, table: Table) -> Result<Vec<orchestrator_store::Entry>, StoreError> {
        self.inner.scan(table)
    }
    fn scan_below(
        &self,
        table: Table,
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<orchestrator_store::Entry>, StoreError> {
        self.inner.scan_below(table, end, limit)
    }
}

#[test]
fn a_store_whose_commits_end_later_passes_the_suite() {
    let store = Deferred::default();
    let mut commit = store.commit(&[Op::put(Table::Jobs, b"a".to_vec(), b"1".to_vec())]);
    assert!(!commit.is_ready(), "the commit ends on the store's thread");
    assert_eq!(commit.try_result(), None);
    commit.wait().unwrap();
    assert_eq!(conformance::run(|| Ok(store.clone())), conformance::CASES);
}
