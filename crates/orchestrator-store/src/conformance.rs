//! The suite every [`Store`] passes: written once, run against the in-memory store, the redb
//! store, the browser's IndexedDB store, and any store you write.
//!
//! The cases are `async` (a store's commits may end in a callback, as IndexedDB's do):
//! [`run_async`] is the suite; [`run`] drives it on the calling thread, for stores whose
//! commits end in the thread that makes them or another thread.
//!
//! ```
//! use orchestrator_store::{conformance, MemoryStore};
//!
//! let store = MemoryStore::new();
//! // `open` opens the same store again (a clone shares a memory store's tables).
//! let cases = conformance::run(|| Ok(store.clone()));
//! assert_eq!(cases, conformance::CASES);
//! ```

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;

use crate::{Op, Store, StoreError, Table};

/// How many cases [`run_async`] checks.
pub const CASES: usize = 8;

fn key(n: u32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// Fails the case with a message if the condition does not hold.
macro_rules! check {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(format!($($message)+));
        }
    };
}

/// Fails the case if the two values differ, showing both.
macro_rules! check_eq {
    ($left:expr, $right:expr) => {
        check_eq!($left, $right, "")
    };
    ($left:expr, $right:expr, $context:expr) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(format!(
                "`{}` is {:?}, expected {:?} {:?}",
                stringify!($left),
                left,
                right,
                $context
            ));
        }
    }};
}

/// Turns a store error into the case's failure.
fn step<T>(what: &str, result: Result<T, StoreError>) -> Result<T, String> {
    result.map_err(|e| format!("{what} failed: {e}"))
}

type Case<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;

/// A named case: it reopens the store as it needs.
type Named<S> = (&'static str, for<'a> fn(Open<'a, S>) -> Case<'a>);

/// Opens the store again, as a restarted process would.
type Open<'a, S> = &'a mut dyn FnMut() -> Pin<Box<dyn Future<Output = Result<S, StoreError>>>>;

/// Runs every case against the store that `open` opens, and returns how many ran.
///
/// `open` must open the same store each time (the suite drops the previous one first, as a
/// restarted process would): the same file or database, or a clone of the same memory store.
/// The suite starts each case by clearing every table.
///
/// # Panics
///
/// On the first case that fails, with a message naming it and what was seen (it is a test).
pub async fn run_async<S, F, Fut>(mut open: F) -> usize
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<S, StoreError>> + 'static,
{
    let mut open =
        move || -> Pin<Box<dyn Future<Output = Result<S, StoreError>>>> { Box::pin(open()) };
    let cases: [Named<S>; CASES] = [
        ("a new store reads empty", |o| {
            Box::pin(new_store_reads_empty(o))
        }),
        ("committed writes are read back in key order", |o| {
            Box::pin(writes_read_back_in_order(o))
        }),
        (
            "a batch applies in order: the last write of a key wins",
            |o| Box::pin(last_write_wins(o)),
        ),
        ("tables are separate", |o| Box::pin(tables_are_separate(o))),
        ("what was committed survives a reopen", |o| {
            Box::pin(survives_a_reopen(o))
        }),
        ("scan_below stops at the end key and the limit", |o| {
            Box::pin(scan_below_stops(o))
        }),
        ("empty and large values round-trip", |o| {
            Box::pin(values_round_trip(o))
        }),
        ("an empty batch commits and changes nothing", |o| {
            Box::pin(empty_batch(o))
        }),
    ];
    let mut ran = 0;
    for (name, case) in cases {
        let result = async {
            let store = step("open", open().await)?;
            clear(&store).await?;
            drop(store);
            case(&mut open).await
        }
        .await;
        if let Err(message) = result {
            panic!("store conformance case `{name}` failed: {message}");
        }
        ran += 1;
    }
    ran
}

/// Runs [`run_async`] on the calling thread (blocking it while a commit is pending), for
/// stores whose commits do not need the thread's event loop.
///
/// # Panics
///
/// On the first case that fails, as [`run_async`].
pub fn run<S: Store>(mut open: impl FnMut() -> Result<S, StoreError>) -> usize {
    // The opener runs at once; the future only hands over what it opened.
    crate::commit::block_on(run_async(move || core::future::ready(open())))
}

async fn commit<S: Store>(store: &S, ops: &[Op]) -> Result<(), String> {
    step("commit", store.commit(ops).await)
}

async fn reopen<S: Store>(open: Open<'_, S>) -> Result<S, String> {
    step("open", open().await)
}

async fn new_store_reads_empty<S: Store>(open: Open<'_, S>) -> Result<(), String> {
    let store = reopen(open).await?;
    for table in Table::ALL {
        check_eq!(step("scan", store.scan(table))?, vec![], table);
        check_eq!(step("get", store.get(table, b"x"))?, None, table);
    }
    Ok(())
}

async fn writes_read_back_in_order<S: Store>(open: Open<'_, S>) -> Result<(), String> {
    let store = reopen(open).await?;
    let ops: Vec<Op> = [3u32, 1, 2]
        .iter()
        .map(|&n| Op::put(Table::Jobs, key(n), format!("v{n}").into_bytes()))
        .collect();
    commit(&store, &ops).await?;
    let keys: Vec<Vec<u8>> = step("scan", store.scan(Table::Jobs))?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    check_eq!(keys, vec![key(1), key(2), key(3)]);
    check_eq!(
        step("get", store.get(Table::Jobs, &key(2)))?,
        Some(b"v2".to_vec())
    );
    Ok(())
}

async fn last_write_wins<S: Store>(open: Open<'_, S>) -> Result<(), String> {
    let store = reopen(open).await?;
    commit(
        &store,
        &[
            Op::put(Table::Jobs, key(1), b"a".to_vec()),
            Op::delete(Table::Jobs, key(1)),
            Op::put(Table::Jobs, key(2), b"a".to_vec()),
            Op::put(Table::Jobs, key(2), b"b".to_vec()),
            Op::delete(Table::Jobs, key(9)), // absent: nothing
        ],
    )
    .await?;
    check_eq!(step("get", store.get(Table::Jobs, &key(1)))?, None);
    check_eq!(
        step("get", store.get(Table::Jobs, &key(2)))?,
        Some(b"b".to_vec())
    );
    Ok(())
}

async fn tables_are_separate<S: Store>(open: Open<'_, S>) -> Result<(), String> {
    let store = reopen(open).await?;
    let ops: Vec<Op> = Table::ALL
        .iter()
        .map(|&t| Op::put(t, key(1), t.name().as_bytes().to_vec()))
        .collect();
    commit(&store, &ops).await?;
    for table in Table::ALL {
        check_eq!(
            step("get", store.get(table, &key(1)))?,
            Some(table.name().as_bytes().to_vec()),
            table
        );
    }
    commit(&store, &[Op::delete(Table::Dead, key(1))]).await?;
    check_eq!(step("get", store.get(Table::Dead, &key(1)))?, None);
    check!(
        step("get", store.get(Table::Jobs, &key(1)))?.is_some(),
        "deleting from one table deleted from another"
    );
    Ok(())
}

async fn survives_a_reopen<S: Store>(open: Open<'_, S>) -> Result<(), String> {
    let store = reopen(open).await?;
    // Committed one after another without waiting: the order of calls is the order of
    // batches, and every one of them is durable once the last has ended.
    let mut commits = Vec::new();
    for n in 0..200u32 {
        commits.push(store.commit(&[
            Op::put(Table::Jobs, key(n), vec![n as u8; (n % 7) as usize]),
            Op::put(Table::Attempts, key(n), key(n)),
        ]));
    }
    commits.push(store.commit(&[Op::delete(Table::Jobs, key(7))]));
    for commit in commits {
        step("commit", commit.await)?;
    }
    drop(store);
    let store = reopen(open).await?;
    let jobs = step("scan", store.scan(Table::Jobs))?;
    check_eq!(jobs.len(), 199);
    check_eq!(step("get", store.get(Table::Jobs, &key(7)))?, None);
    check_eq!(
        step("get", store.get(Table::Jobs, &key(13)))?,
        Some(vec![13; 6])
    );
    check_eq!(step("scan", store.scan(Table::Attempts))?.len(), 200);
    Ok(())
}

async fn scan_below_stops<S: Store>(open: Open<'_, S>) -> Result<(), String> {
    let store = reopen(open).await?;
    let ops: Vec<Op> = (0..10u32)
        .map(|n| Op::put(Table::Expiry, key(n), Vec::new()))
        .collect();
    commit(&store, &ops).await?;
    let below = step("scan_below", store.scan_below(Table::Expiry, &key(5), 100))?;
    check_eq!(below.len(), 5);
    check_eq!(below[4].0, key(4));
    let limited = step("scan_below", store.scan_below(Table::Expiry, &key(5), 2))?;
    check_eq!(limited.len(), 2);
    check_eq!(limited[0].0, key(0));
    check!(
        step("scan_below", store.scan_below(Table::Expiry, &key(0), 10))?.is_empty(),
        "scan_below the first key returned entries"
    );
    Ok(())
}

async fn values_round_trip<S: Store>(open: Open<'_, S>) -> Result<(), String> {
    let store = reopen(open).await?;
    let large: Vec<u8> = (0..1_000_000u32).map(|n| (n % 251) as u8).collect();
    commit(
        &store,
        &[
            Op::put(Table::Outcomes, key(1), Vec::new()),
            Op::put(Table::Outcomes, key(2), large.clone()),
        ],
    )
    .await?;
    drop(store);
    let store = reopen(open).await?;
    check_eq!(
        step("get", store.get(Table::Outcomes, &key(1)))?,
        Some(Vec::new())
    );
    let read = step("get", store.get(Table::Outcomes, &key(2)))?;
    check!(
        read.as_ref() == Some(&large),
        "the 1 MB value read back differs (length {:?})",
        read.map(|v| v.len())
    );
    Ok(())
}

async fn empty_batch<S: Store>(open: Open<'_, S>) -> Result<(), String> {
    let store = reopen(open).await?;
    commit(&store, &[Op::put(Table::Jobs, key(1), b"x".to_vec())]).await?;
    commit(&store, &[]).await?;
    check_eq!(step("scan", store.scan(Table::Jobs))?.len(), 1);
    Ok(())
}

/// Deletes every entry of every table.
async fn clear<S: Store>(store: &S) -> Result<(), String> {
    let mut ops = Vec::new();
    for table in Table::ALL {
        for (k, _) in step("scan while clearing", store.scan(table))? {
            ops.push(Op::delete(table, k));
        }
    }
    step("commit while clearing", store.commit(&ops).await)
}
