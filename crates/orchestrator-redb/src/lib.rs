//! The embedded store of durable orchestrator jobs: [`RedbStore`], one
//! [redb](https://docs.rs/redb) file (pure Rust, no server).
//!
//! - Every commit is durable when it returns: redb writes with immediate durability (an
//!   `fsync` per commit; `orchestrator-durable` puts the writes of every job waiting at that
//!   moment in one commit).
//! - One process at a time: a second [`RedbStore::open`] of the same file (in another process
//!   or in this one) fails with [`StoreError::Locked`].
//! - The file records the version of its layout. A file written by a newer version fails
//!   with [`StoreError::NewerFormat`] and is not changed; a file that is not a store, or is
//!   damaged, fails with [`StoreError::Corrupt`]. A full disk fails the commit with
//!   [`StoreError::Full`]; what was committed before is intact.
//!
//! ```
//! use orchestrator_redb::RedbStore;
//! use orchestrator_store::{Op, Store, Table};
//!
//! let dir = std::env::temp_dir().join(format!("redb-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("jobs.redb");
//! let store = RedbStore::open(&path)?;
//! // Written and fsynced before `commit` returns: the commit is ready, `wait` takes its result.
//! store.commit(&[Op::put(Table::Jobs, b"k".to_vec(), b"v".to_vec())]).wait()?;
//! // A second opening of the same file is refused while the first is open.
//! assert!(RedbStore::open(&path).is_err());
//! drop(store);
//! assert_eq!(RedbStore::open(&path)?.get(Table::Jobs, b"k")?, Some(b"v".to_vec()));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

use std::fmt;
use std::path::Path;

pub use orchestrator_store::{Commit, Entry, Op, Store, StoreError, Table};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// The layout version this build writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = 1;

/// The page cache [`RedbStore::open`] gives redb: 64 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

const META: TableDefinition<'static, &'static str, u32> = TableDefinition::new("orchestrator.meta");
const FORMAT_KEY: &str = "format";

const JOBS: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("orchestrator.jobs");
const ATTEMPTS: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("orchestrator.attempts");
const OUTCOMES: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("orchestrator.outcomes");
const EXPIRY: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("orchestrator.expiry");
const DEAD: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("orchestrator.dead");

type Bytes = TableDefinition<'static, &'static [u8], &'static [u8]>;

fn definition(table: Table) -> Bytes {
    match table {
        Table::Jobs => JOBS,
        Table::Attempts => ATTEMPTS,
        Table::Outcomes => OUTCOMES,
        Table::Expiry => EXPIRY,
        Table::Dead => DEAD,
        // `Table` is non-exhaustive; a table this build does not know reads as jobs' (it
        // cannot be constructed by this build's callers).
        _ => JOBS,
    }
}

/// A [`Store`] in one redb file.
pub struct RedbStore {
    db: Database,
    path: String,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens the store in the file at `path`, creating it if it does not exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] if the file is open elsewhere, [`StoreError::NewerFormat`] if a
    /// newer version wrote it, [`StoreError::Corrupt`] if it is not a store or is damaged, and
    /// [`StoreError::Other`] for an I/O error. The file is changed only when it is new.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store like [`open`](Self::open), with a page cache of at most `bytes` (redb's
    /// own default is 1 GiB; a job store's working set is small, so [`open`](Self::open) uses
    /// [`DEFAULT_CACHE_BYTES`]).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with_cache(path: impl AsRef<Path>, bytes: usize) -> Result<Self, StoreError> {
        let path_ref = path.as_ref();
        let shown = path_ref.display().to_string();
        let db = Database::builder()
            .set_cache_size(bytes)
            .create(path_ref)
            .map_err(|e| map(&shown, e.into()))?;
        let store = Self { db, path: shown };
        store.check_format()?;
        Ok(store)
    }

    /// Returns the file's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Reads the layout version; writes it (and creates the tables) in a new file.
    fn check_format(&self) -> Result<(), StoreError> {
        let e = |e: redb::Error| map(&self.path, e);
        let read = self.db.begin_read().map_err(|x| e(x.into()))?;
        let found = match read.open_table(META) {
            Ok(meta) => meta
                .get(FORMAT_KEY)
                .map_err(|x| e(x.into()))?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(other) => return Err(e(other.into())),
        };
        drop(read);
        match found {
            Some(version) if version > FORMAT_VERSION => Err(StoreError::NewerFormat {
                path: self.path.clone(),
                found: version,
                supported: FORMAT_VERSION,
            }),
            Some(_) => Ok(()),
            None => {
                let write = self.db.begin_write().map_err(|x| e(x.into()))?;
                {
                    let mut meta = write.open_table(META).map_err(|x| e(x.into()))?;
                    meta.insert(FORMAT_KEY, FORMAT_VERSION)
                        .map_err(|x| e(x.into()))?;
                    for table in Table::ALL {
                        write
                            .open_table(definition(table))
                            .map_err(|x| e(x.into()))?;
                    }
                }
                write.commit().map_err(|x| e(x.into()))
            }
        }
    }

    /// Applies `ops` in one write transaction.
    fn write(&self, ops: &[Op]) -> Result<(), StoreError> {
        let e = |e: redb::Error| map(&self.path, e);
        let write = self.db.begin_write().map_err(|x| e(x.into()))?;
        {
            let mut open = Vec::with_capacity(Table::ALL.len());
            for table in Table::ALL {
                open.push(
                    write
                        .open_table(definition(table))
                        .map_err(|x| e(x.into()))?,
                );
            }
            let index = |t: Table| Table::ALL.iter().position(|&x| x == t).unwrap_or(0);
            for op in ops {
                match op {
                    Op::Put { table, key, value } => {
                        open[index(*table)]
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(|x| e(x.into()))?;
                    }
                    Op::Delete { table, key } => {
                        open[index(*table)]
                            .remove(key.as_slice())
                            .map_err(|x| e(x.into()))?;
                    }
                }
            }
        }
        // Dropped without commit on an error above: nothing of the batch is written.
        write.commit().map_err(|x| e(x.into()))
    }

    fn read<R>(
        &self,
        table: Table,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<R, redb::Error>,
        empty: R,
    ) -> Result<R, StoreError> {
        let e = |e: redb::Error| map(&self.path, e);
        let read = self.db.begin_read().map_err(|x| e(x.into()))?;
        match read.open_table(definition(table)) {
            Ok(t) => f(&t).map_err(e),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
            Err(other) => Err(e(other.into())),
        }
    }
}

impl Store for RedbStore {
    /// Writes the batch in one redb transaction, fsynced before it returns: the commit is
    /// ready at once.
    fn commit(&self, ops: &[Op]) -> Commit {
        Commit::ready(self.write(ops))
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(table, |t| Ok(t.get(key)?.map(|v| v.value().to_vec())), None)
    }

    fn scan(&self, table: Table) -> Result<Vec<Entry>, StoreError> {
        self.read(
            table,
            |t| {
                let mut out = Vec::new();
                for item in t.iter()? {
                    let (k, v) = item?;
                    out.push((k.value().to_vec(), v.value().to_vec()));
                }
                Ok(out)
            },
            Vec::new(),
        )
    }

    fn scan_below(&self, table: Table, end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.read(
            table,
            |t| {
                let mut out = Vec::new();
                for item in t.range(..end)?.take(limit) {
                    let (k, v) = item?;
                    out.push((k.value().to_vec(), v.value().to_vec()));
                }
                Ok(out)
            },
            Vec::new(),
        )
    }
}

/// The store error of a redb error on the file at `path`.
fn map(path: &str, error: redb::Error) -> StoreError {
    match error {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::Locked {
                path: path.to_owned(),
            }
        }
        redb::Error::Corrupted(detail) => StoreError::Corrupt {
            path: path.to_owned(),
            detail,
        },
        redb::Error::UpgradeRequired(version) => StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!("the file has redb's old format {version}; upgrade it with redb"),
        },
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => StoreError::Full {
            detail: format!("{path}: {io}"),
        },
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::Corrupt {
                path: path.to_owned(),
                detail: io.to_string(),
            }
        }
        redb::Error::DatabaseClosed => StoreError::Closed,
        other => StoreError::Other(format!("{path}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redb_errors_become_store_errors_that_say_what_to_do() {
        let full = map(
            "jobs.redb",
            redb::Error::Io(std::io::Error::from(std::io::ErrorKind::StorageFull)),
        );
        assert!(matches!(full, StoreError::Full { .. }), "{full:?}");
        assert!(full.to_string().contains("intact"), "{full}");
        let locked = map("jobs.redb", redb::Error::DatabaseAlreadyOpen);
        assert_eq!(
            locked,
            StoreError::Locked {
                path: "jobs.redb".into()
            }
        );
        let corrupt = map("jobs.redb", redb::Error::Corrupted("bad page".into()));
        assert!(corrupt.to_string().contains("bad page"), "{corrupt}");
        let other = map("jobs.redb", redb::Error::Unsupported);
        assert!(other.to_string().starts_with("jobs.redb: "), "{other}");
    }
}
