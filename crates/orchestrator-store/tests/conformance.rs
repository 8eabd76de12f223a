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
        .unwrap();
    store.fail_after(Some(0));
    let error = store
        .commit(&[
            Op::put(Table::Jobs, b"b".to_vec(), b"2".to_vec()),
            Op::delete(Table::Jobs, b"a".to_vec()),
        ])
        .unwrap_err();
    assert!(matches!(error, StoreError::Full { .. }));
    assert!(error.to_string().contains("intact"), "{error}");
    assert_eq!(store.scan(Table::Jobs).unwrap().len(), 1);
    store.fail_after(None);
    store
        .commit(&[Op::put(Table::Jobs, b"b".to_vec(), b"2".to_vec())])
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
