//! The storage under durable jobs: a [`Store`] is a few ordered tables of byte keys and
//! values, changed only by atomic batches of writes ([`Store::commit`]).
//!
//! A store knows nothing of jobs: `orchestrator-durable` decides what the records mean, and
//! batches the writes of concurrent jobs into one commit (group commit). That keeps a store
//! small enough to back with anything that can write a batch atomically: an embedded
//! database file (`orchestrator-redb`), flash on a microcontroller, or memory for tests
//! ([`MemoryStore`]).
//!
//! The trait needs only `alloc`: the crate is `#![no_std]` without its `std` feature (which
//! adds [`MemoryStore`]). Every store passes the same suite, `conformance::run` (feature
//! `conformance`).
//!
//! ```
//! use orchestrator_store::{MemoryStore, Op, Store, Table};
//!
//! let store = MemoryStore::new();
//! // A commit is a future of "durable"; a memory or file store's is ready at once, and
//! // `wait` blocks a thread on it (an async caller awaits it instead).
//! store
//!     .commit(&[
//!         Op::put(Table::Jobs, b"b".to_vec(), b"second".to_vec()),
//!         Op::put(Table::Jobs, b"a".to_vec(), b"first".to_vec()),
//!     ])
//!     .wait()?;
//! let jobs = store.scan(Table::Jobs)?;
//! assert_eq!(jobs[0], (b"a".to_vec(), b"first".to_vec())); // in key order
//! store.commit(&[Op::delete(Table::Jobs, b"a".to_vec())]).wait()?;
//! assert_eq!(store.get(Table::Jobs, b"a")?, None);
//! # Ok::<(), orchestrator_store::StoreError>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

mod commit;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
#[cfg(feature = "std")]
mod memory;

#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub use memory::MemoryStore;

pub use commit::{Commit, PendingCommit};

/// The tables of a store. Each is an ordered map from byte keys to byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Table {
    /// Accepted jobs that have no outcome yet (and dead-lettered ones).
    Jobs,
    /// Per job: how many attempts started, failed and were handed back.
    Attempts,
    /// Finished jobs' outcomes.
    Outcomes,
    /// Outcomes by the time they expire: what compaction deletes first.
    Expiry,
    /// Jobs that will not run again until retried by hand (the dead-letter list).
    Dead,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 5] = [
        Table::Jobs,
        Table::Attempts,
        Table::Outcomes,
        Table::Expiry,
        Table::Dead,
    ];

    /// Returns the table's name (stable: stores use it as the table's name on disk).
    pub fn name(self) -> &'static str {
        match self {
            Table::Jobs => "jobs",
            Table::Attempts => "attempts",
            Table::Outcomes => "outcomes",
            Table::Expiry => "expiry",
            Table::Dead => "dead",
        }
    }
}

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value` in `table`.
    Put {
        /// The table.
        table: Table,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Removes `key` from `table` (nothing if it is absent).
    Delete {
        /// The table.
        table: Table,
        /// The key.
        key: Vec<u8>,
    },
}

impl Op {
    /// A [`Op::Put`].
    pub fn put(table: Table, key: Vec<u8>, value: Vec<u8>) -> Self {
        Op::Put { table, key, value }
    }

    /// A [`Op::Delete`].
    pub fn delete(table: Table, key: Vec<u8>) -> Self {
        Op::Delete { table, key }
    }

    /// Returns how many bytes the write carries (key and value).
    pub fn len(&self) -> usize {
        match self {
            Op::Put { key, value, .. } => key.len() + value.len(),
            Op::Delete { key, .. } => key.len(),
        }
    }

    /// Returns `true` for a delete of an empty key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What went wrong in a store. Every variant says what to do about it in its message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (or another store in this one) has the file open.
    Locked {
        /// The file.
        path: String,
    },
    /// The file was written by a newer version of the store's format; nothing was changed.
    NewerFormat {
        /// The file.
        path: String,
        /// The format version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The file is not a store, or it is damaged.
    Corrupt {
        /// The file.
        path: String,
        /// What the store found.
        detail: String,
    },
    /// The device (or the browser's quota) is full: the batch was not written, and everything
    /// before it is intact.
    Full {
        /// The store's own message.
        detail: String,
    },
    /// There is no durable storage here: a browser in private mode, storage disabled by the
    /// user or a policy, or no IndexedDB at all. Nothing can be stored; the application
    /// chooses a fallback (an in-memory store keeps jobs only while the page lives).
    Unavailable {
        /// What the platform said.
        detail: String,
    },
    /// The store was closed.
    Closed,
    /// Any other failure, with the store's own message.
    Other(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Locked { path } => write!(
                f,
                "the store `{path}` is open in another process (or twice in this one): one \
                 process at a time"
            ),
            StoreError::NewerFormat {
                path,
                found,
                supported,
            } => write!(
                f,
                "the store `{path}` has format version {found}, newer than this build reads \
                 ({supported}); upgrade the program (the file was not changed)"
            ),
            StoreError::Corrupt { path, detail } => {
                write!(f, "the store `{path}` is damaged or not a store: {detail}")
            }
            StoreError::Full { detail } => write!(
                f,
                "the disk is full ({detail}): the write was refused, what was stored before \
                 is intact"
            ),
            StoreError::Unavailable { detail } => write!(
                f,
                "no durable storage here ({detail}): nothing can be stored; fall back to \
                 another store or tell the user"
            ),
            StoreError::Closed => f.write_str("the store is closed"),
            StoreError::Other(detail) => f.write_str(detail),
        }
    }
}

impl core::error::Error for StoreError {}

/// A key-value value pair read from a table.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Ordered tables of bytes, written by atomic batches.
///
/// The contract (checked by `conformance::run`, feature `conformance`):
///
/// - [`commit`](Self::commit) applies a batch in order, atomically and durably: once its
///   [`Commit`] resolves `Ok`, every write survives a process kill (and, for a store that says
///   so, a power loss); once it resolves `Err`, none of them happened, and the store still
///   works. Batches apply in the order `commit` was called, whether or not anyone awaits them.
/// - Reads see every batch whose commit has resolved `Ok`, in key order (bytewise). A batch
///   still pending may or may not be seen yet.
/// - A store never panics on what it reads back: a damaged value is an error.
pub trait Store: Send + Sync + 'static {
    /// Applies `ops` in order, atomically and durably; the [`Commit`] resolves when they are
    /// durable.
    ///
    /// A store that writes in the calling thread returns [`Commit::ready`]; one whose
    /// writes end later (in a browser's event loop) returns [`Commit::pending`], having
    /// started the writes before returning (so the order of calls is the order of batches).
    ///
    /// # Errors
    ///
    /// The commit resolves to a [`StoreError`]; then none of `ops` was applied.
    fn commit(&self, ops: &[Op]) -> Commit;

    /// Returns the value of `key` in `table`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the table cannot be read.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Returns every entry of `table`, in key order.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the table cannot be read.
    fn scan(&self, table: Table) -> Result<Vec<Entry>, StoreError>;

    /// Returns up to `limit` entries of `table` whose keys are below `end`, in key order.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the table cannot be read.
    fn scan_below(&self, table: Table, end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError>;
}

impl<S: Store + ?Sized> Store for alloc::sync::Arc<S> {
    fn commit(&self, ops: &[Op]) -> Commit {
        (**self).commit(ops)
    }
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(table, key)
    }
    fn scan(&self, table: Table) -> Result<Vec<Entry>, StoreError> {
        (**self).scan(table)
    }
    fn scan_below(&self, table: Table, end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        (**self).scan_below(table, end, limit)
    }
}
