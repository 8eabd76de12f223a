//! The browser's store of durable orchestrator jobs: [`IdbStore`], on IndexedDB.
//!
//! A page that dispatches durable jobs (an offline queue, a form that must reach the server)
//! keeps them across a reload, a closed tab and a browser restart: give an [`IdbStore`] to
//! `orchestrator-durable` as you would a redb file on a server.
//!
//! ```no_run
//! # async fn page() -> Result<(), orchestrator_store::StoreError> {
//! use orchestrator_idb::IdbStore;
//! use orchestrator_store::{Op, Store, Table};
//!
//! let store = IdbStore::open("my-app-jobs").await?; // one tab at a time
//! store.commit(&[Op::put(Table::Jobs, b"k".to_vec(), b"v".to_vec())]).await?;
//! assert_eq!(store.get(Table::Jobs, b"k")?, Some(b"v".to_vec()));
//! # Ok(()) }
//! ```
//!
//! # How it stores
//!
//! - **One database per name**, at IndexedDB version [`FORMAT_VERSION`], with one object
//!   store per table; keys and values are bytes (binary keys, which IndexedDB orders
//!   bytewise, as the store contract wants).
//! - **Reads come from memory.** [`IdbStore::open`] reads every table once; each commit
//!   updates that copy when IndexedDB says the transaction is complete, so reads are
//!   synchronous, as the store trait has them, and see exactly the committed batches. The
//!   whole store therefore lives in memory too: right for a queue of pending jobs and recent
//!   outcomes, not for megabytes of history (keep the retention short).
//! - **Commits are transactions** with strict durability (the browser flushes to disk before
//!   it says complete). [`Store::commit`] starts the transaction before it returns and
//!   hands back a pending [`Commit`]; IndexedDB runs read-write transactions on the same
//!   stores in the order they were made, so batches apply in call order.
//! - **One tab at a time.** Two tabs running the same jobs would send each of them twice, so
//!   `open` takes an exclusive Web Lock named after the database, waiting up to
//!   [`LOCK_WAIT`] for a tab that is closing; if another tab still holds it, `open` fails with
//!   [`StoreError::Locked`]. The lock is released when the store is dropped. A browser
//!   without Web Locks opens the database without one.
//!
//! # When the browser says no
//!
//! | The browser | `open` or `commit` returns |
//! |---|---|
//! | no IndexedDB (private mode in some browsers, storage disabled, not a browser) | [`StoreError::Unavailable`] |
//! | the quota is exceeded | [`StoreError::Full`] (the batch was not written) |
//! | another tab has the database | [`StoreError::Locked`] |
//! | the database has a newer version (a newer build of the page wrote it) | [`StoreError::NewerFormat`], nothing changed |
//! | the database exists but is not a store | [`StoreError::Corrupt`] |
//!
//! None of them loses a job silently: `orchestrator-durable` rejects a dispatch whose
//! acceptance cannot be written (`Rejection::NotStored`), and the page decides what to do,
//! for example fall back to an in-memory store and tell the user that jobs last only while
//! the page is open.
//!
//! Off `wasm32` the crate builds, and [`IdbStore::open`] returns
//! [`StoreError::Unavailable`].
//!
//! [`Store::commit`]: orchestrator_store::Store::commit

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use core::time::Duration;

pub use orchestrator_store::{Commit, Entry, Op, Store, StoreError, Table};

#[cfg(target_arch = "wasm32")]
mod browser;
mod errors;

/// The IndexedDB version of a store's database: the format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// How long [`IdbStore::open`] waits for another holder of the database's lock (a tab that is
/// closing, or a store of this page that is being dropped) before it fails with
/// [`StoreError::Locked`].
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// A [`Store`] on the browser's IndexedDB (see the crate's documentation).
///
/// Made on one thread (the page's, or a worker's) and used there: a store used from another
/// thread answers [`StoreError::Other`].
#[derive(Debug)]
pub struct IdbStore {
    #[cfg(target_arch = "wasm32")]
    inner: browser::Connection,
    #[cfg(not(target_arch = "wasm32"))]
    _none: (),
}

impl IdbStore {
    /// Opens (or creates) the store of database `name`, and reads it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] without IndexedDB (or off `wasm32`),
    /// [`StoreError::Locked`] if another tab has it, [`StoreError::NewerFormat`] if a newer
    /// build wrote it, [`StoreError::Corrupt`] if it is not a store.
    pub async fn open(name: &str) -> Result<Self, StoreError> {
        #[cfg(target_arch = "wasm32")]
        {
            Ok(Self {
                inner: browser::Connection::open(name).await?,
            })
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Err(errors::not_a_browser(name))
        }
    }

    /// Deletes database `name` and everything in it (close its stores first).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] without IndexedDB; [`StoreError::Locked`] if the database
    /// is still open (in this page or another tab).
    pub async fn delete(name: &str) -> Result<(), StoreError> {
        #[cfg(target_arch = "wasm32")]
        {
            browser::delete(name).await
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Err(errors::not_a_browser(name))
        }
    }
}

#[cfg(target_arch = "wasm32")]
impl Store for IdbStore {
    fn commit(&self, ops: &[Op]) -> Commit {
        self.inner.commit(ops)
    }
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.mirror().get(table, key)
    }
    fn scan(&self, table: Table) -> Result<Vec<Entry>, StoreError> {
        self.inner.mirror().scan(table)
    }
    fn scan_below(&self, table: Table, end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.inner.mirror().scan_below(table, end, limit)
    }
}

/// Off `wasm32` no store can be opened; the impl exists so that code naming `IdbStore` as
/// a `Store` builds on the host.
#[cfg(not(target_arch = "wasm32"))]
impl Store for IdbStore {
    fn commit(&self, _: &[Op]) -> Commit {
        Commit::ready(Err(StoreError::Closed))
    }
    fn get(&self, _: Table, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Closed)
    }
    fn scan(&self, _: Table) -> Result<Vec<Entry>, StoreError> {
        Err(StoreError::Closed)
    }
    fn scan_below(&self, _: Table, _: &[u8], _: usize) -> Result<Vec<Entry>, StoreError> {
        Err(StoreError::Closed)
    }
}
