//! The suite every [`Store`] passes: written once, run against the in-memory store, the redb
//! store, and any store you write.
//!
//! ```
//! use orchestrator_store::{conformance, MemoryStore};
//!
//! let store = MemoryStore::new();
//! // `open` opens the same store again (a clone shares a memory store's tables).
//! let cases = conformance::run(|| Ok(store.clone()));
//! assert_eq!(cases, conformance::CASES);
//! ```

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use crate::{Op, Store, StoreError, Table};

/// How many cases [`run`] checks.
pub const CASES: usize = 8;

fn key(n: u32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// Runs every case against the store that `open` opens, and returns how many ran.
///
/// `open` must open the same store each time (the suite drops the previous one first, as a
/// restarted process would): the same file, or a clone of the same memory store. The suite
/// starts by clearing every table it uses.
///
/// # Panics
///
/// On the first case that fails, with a message naming it and what was seen (it is a test).
pub fn run<S: Store>(mut open: impl FnMut() -> Result<S, StoreError>) -> usize {
    let mut ran = 0;
    let mut case = |name: &str, check: &mut dyn FnMut(&mut dyn FnMut() -> S)| {
        let mut reopen = || open().unwrap_or_else(|e| panic!("{name}: open failed: {e}"));
        clear(&reopen());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&mut reopen)));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<alloc::string::String>()
                .map(alloc::string::String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("store conformance case `{name}` failed: {message}");
        }
        ran += 1;
    };

    case("a new store reads empty", &mut |open| {
        let store = open();
        for table in Table::ALL {
            assert_eq!(store.scan(table).unwrap(), vec![], "{table:?}");
            assert_eq!(store.get(table, b"x").unwrap(), None);
        }
    });

    case("committed writes are read back in key order", &mut |open| {
        let store = open();
        let ops: Vec<Op> = [3u32, 1, 2]
            .iter()
            .map(|&n| Op::put(Table::Jobs, key(n), format!("v{n}").into_bytes()))
            .collect();
        store.commit(&ops).unwrap();
        let keys: Vec<Vec<u8>> = store
            .scan(Table::Jobs)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![key(1), key(2), key(3)]);
        assert_eq!(
            store.get(Table::Jobs, &key(2)).unwrap(),
            Some(b"v2".to_vec())
        );
    });

    case(
        "a batch applies in order: the last write of a key wins",
        &mut |open| {
            let store = open();
            store
                .commit(&[
                    Op::put(Table::Jobs, key(1), b"a".to_vec()),
                    Op::delete(Table::Jobs, key(1)),
                    Op::put(Table::Jobs, key(2), b"a".to_vec()),
                    Op::put(Table::Jobs, key(2), b"b".to_vec()),
                    Op::delete(Table::Jobs, key(9)), // absent: nothing
                ])
                .unwrap();
            assert_eq!(store.get(Table::Jobs, &key(1)).unwrap(), None);
            assert_eq!(
                store.get(Table::Jobs, &key(2)).unwrap(),
                Some(b"b".to_vec())
            );
        },
    );

    case("tables are separate", &mut |open| {
        let store = open();
        let ops: Vec<Op> = Table::ALL
            .iter()
            .map(|&t| Op::put(t, key(1), t.name().as_bytes().to_vec()))
            .collect();
        store.commit(&ops).unwrap();
        for table in Table::ALL {
            assert_eq!(
                store.get(table, &key(1)).unwrap(),
                Some(table.name().as_bytes().to_vec())
            );
        }
        store.commit(&[Op::delete(Table::Dead, key(1))]).unwrap();
        assert_eq!(store.get(Table::Dead, &key(1)).unwrap(), None);
        assert!(store.get(Table::Jobs, &key(1)).unwrap().is_some());
    });

    case("what was committed survives a reopen", &mut |open| {
        let store = open();
        for n in 0..200u32 {
            store
                .commit(&[
                    Op::put(Table::Jobs, key(n), vec![n as u8; (n % 7) as usize]),
                    Op::put(Table::Attempts, key(n), key(n)),
                ])
                .unwrap();
        }
        store.commit(&[Op::delete(Table::Jobs, key(7))]).unwrap();
        drop(store);
        let store = open();
        let jobs = store.scan(Table::Jobs).unwrap();
        assert_eq!(jobs.len(), 199);
        assert_eq!(store.get(Table::Jobs, &key(7)).unwrap(), None);
        assert_eq!(store.get(Table::Jobs, &key(13)).unwrap(), Some(vec![13; 6]));
        assert_eq!(store.scan(Table::Attempts).unwrap().len(), 200);
    });

    case(
        "scan_below stops at the end key and the limit",
        &mut |open| {
            let store = open();
            let ops: Vec<Op> = (0..10u32)
                .map(|n| Op::put(Table::Expiry, key(n), Vec::new()))
                .collect();
            store.commit(&ops).unwrap();
            let below = store.scan_below(Table::Expiry, &key(5), 100).unwrap();
            assert_eq!(below.len(), 5);
            assert_eq!(below[4].0, key(4));
            let limited = store.scan_below(Table::Expiry, &key(5), 2).unwrap();
            assert_eq!(limited.len(), 2);
            assert_eq!(limited[0].0, key(0));
            assert!(
                store
                    .scan_below(Table::Expiry, &key(0), 10)
                    .unwrap()
                    .is_empty()
            );
        },
    );

    case("empty and large values round-trip", &mut |open| {
        let store = open();
        let large: Vec<u8> = (0..1_000_000u32).map(|n| (n % 251) as u8).collect();
        store
            .commit(&[
                Op::put(Table::Outcomes, key(1), Vec::new()),
                Op::put(Table::Outcomes, key(2), large.clone()),
            ])
            .unwrap();
        drop(store);
        let store = open();
        assert_eq!(
            store.get(Table::Outcomes, &key(1)).unwrap(),
            Some(Vec::new())
        );
        assert_eq!(store.get(Table::Outcomes, &key(2)).unwrap(), Some(large));
    });

    case("an empty batch commits and changes nothing", &mut |open| {
        let store = open();
        store
            .commit(&[Op::put(Table::Jobs, key(1), b"x".to_vec())])
            .unwrap();
        store.commit(&[]).unwrap();
        assert_eq!(store.scan(Table::Jobs).unwrap().len(), 1);
    });

    ran
}

/// Deletes every entry of every table.
fn clear<S: Store>(store: &S) {
    let mut ops = Vec::new();
    for table in Table::ALL {
        for (k, _) in store.scan(table).expect("scan while clearing") {
            ops.push(Op::delete(table, k));
        }
    }
    store.commit(&ops).expect("commit while clearing");
}
