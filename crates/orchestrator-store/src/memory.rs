//! [`MemoryStore`]: the tables in memory, for tests.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use std::sync::{Mutex, PoisonError};

use crate::{Commit, Entry, Op, Store, StoreError, Table};

type Tables = BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Default)]
struct Inner {
    tables: Tables,
    /// After this many more committed batches, commits fail as if the disk were full.
    fail_after: Option<usize>,
    commits: usize,
}

/// A [`Store`] in memory: atomic like any store, durable only as long as the value (clones
/// share the tables, so a test can "reopen" a store by cloning it before dropping the
/// dispatcher that used it).
///
/// [`fail_after`](Self::fail_after) makes it refuse commits, as a full disk would.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// After `batches` more commits, every commit fails with [`StoreError::Full`] (and
    /// changes nothing); `None` lets them succeed again.
    pub fn fail_after(&self, batches: Option<usize>) {
        self.lock(|inner| inner.fail_after = batches);
    }

    /// Returns how many batches were committed.
    pub fn commits(&self) -> usize {
        self.lock(|inner| inner.commits)
    }

    /// Returns how many entries `table` holds.
    pub fn len(&self, table: Table) -> usize {
        self.lock(|inner| inner.tables.get(&table).map_or(0, BTreeMap::len))
    }

    /// Returns `true` if no table holds an entry.
    pub fn is_empty(&self) -> bool {
        self.lock(|inner| inner.tables.values().all(BTreeMap::is_empty))
    }

    fn lock<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl core::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.lock(|inner| {
            let mut d = f.debug_struct("MemoryStore");
            for table in Table::ALL {
                d.field(
                    table.name(),
                    &inner.tables.get(&table).map_or(0, BTreeMap::len),
                );
            }
            d.finish()
        })
    }
}

impl Store for MemoryStore {
    fn commit(&self, ops: &[Op]) -> Commit {
        Commit::ready(self.lock(|inner| {
            match &mut inner.fail_after {
                Some(0) => {
                    return Err(StoreError::Full {
                        detail: String::from("the memory store was told to refuse writes"),
                    });
                }
                Some(n) => *n -= 1,
                None => {}
            }
            for op in ops {
                match op {
                    Op::Put { table, key, value } => {
                        inner
                            .tables
                            .entry(*table)
                            .or_default()
                            .insert(key.clone(), value.clone());
                    }
                    Op::Delete { table, key } => {
                        if let Some(t) = inner.tables.get_mut(table) {
                            t.remove(key);
                        }
                    }
                }
            }
            inner.commits += 1;
            Ok(())
        }))
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock(|inner| inner.tables.get(&table)?.get(key).cloned()))
    }

    fn scan(&self, table: Table) -> Result<Vec<Entry>, StoreError> {
        Ok(self.lock(|inner| {
            inner.tables.get(&table).map_or_else(Vec::new, |t| {
                t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            })
        }))
    }

    fn scan_below(&self, table: Table, end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        Ok(self.lock(|inner| {
            inner.tables.get(&table).map_or_else(Vec::new, |t| {
                t.range::<[u8], _>((core::ops::Bound::Unbounded, core::ops::Bound::Excluded(end)))
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
        }))
    }
}
