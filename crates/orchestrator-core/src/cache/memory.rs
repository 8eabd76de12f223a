//! The in-memory provider: LRU with a size bound, TTL with lazy expiry.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use hashbrown::HashMap;

use super::{CacheEntry, CacheError, CacheProvider, owned};
use crate::runtime::Instant;
use crate::sync::Mutex;

/// An in-memory cache: least-recently-used eviction beyond `capacity` entries, and expiry
/// checked lazily (on `get`) or in bulk ([`evict_expired`](Self::evict_expired)).
///
/// ```
/// use core::time::Duration;
/// use orchestrator_core::{CacheEntry, CacheProvider, InMemoryCache};
/// use orchestrator_core::runtime::Instant;
/// use std::sync::Arc;
///
/// let cache = InMemoryCache::new(2).unwrap();
/// let t0 = Instant::ZERO;
/// let put = |k: &str, v: u32, ttl: Option<u64>| {
///     let expires_at = ttl.map(|s| t0.saturating_add(Duration::from_secs(s)));
///     cache.put(k, CacheEntry { value: Arc::new(v), expires_at }, t0).unwrap();
/// };
/// put("a", 1, None);
/// put("b", 2, Some(10));
/// assert!(cache.get("a", t0).unwrap().is_some()); // "a" is now the most recent
/// put("c", 3, None); // evicts "b", the least recently used
/// assert!(cache.get("b", t0).unwrap().is_none());
/// assert_eq!(cache.stats().evictions, 1);
/// assert!(InMemoryCache::new(0).is_err());
/// ```
pub struct InMemoryCache {
    capacity: usize,
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    entries: HashMap<String, Stored>,
    /// Recency: use tick → key; the smallest tick is the least recently used.
    recency: BTreeMap<u64, String>,
    tick: u64,
    stats: CacheStats,
}

struct Stored {
    entry: CacheEntry,
    tick: u64,
}

/// Counters of an [`InMemoryCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing (or an expired entry).
    pub misses: u64,
    /// Entries stored.
    pub inserts: u64,
    /// Entries removed to stay within capacity.
    pub evictions: u64,
    /// Entries removed because they expired.
    pub expirations: u64,
    /// Entries removed by invalidation.
    pub invalidations: u64,
    /// Entries currently stored.
    pub len: usize,
}

/// The error returned by [`InMemoryCache::new`] for a zero capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCacheConfig;

impl fmt::Display for InvalidCacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cache capacity must be at least 1")
    }
}

impl core::error::Error for InvalidCacheConfig {}

impl InMemoryCache {
    /// Creates a cache holding at most `capacity` entries.
    ///
    /// # Errors
    ///
    /// [`InvalidCacheConfig`] if `capacity` is zero.
    pub fn new(capacity: usize) -> Result<Self, InvalidCacheConfig> {
        if capacity == 0 {
            return Err(InvalidCacheConfig);
        }
        Ok(Self {
            capacity,
            state: Mutex::new(MemoryState::default()),
        })
    }

    /// Returns the capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Returns the counters.
    pub fn stats(&self) -> CacheStats {
        self.state.with(|s| CacheStats {
            len: s.entries.len(),
            ..s.stats
        })
    }

    /// Removes every entry expired at `now`; returns how many.
    pub fn evict_expired(&self, now: Instant) -> usize {
        self.state.with(|s| {
            let expired: Vec<String> = s
                .entries
                .iter()
                .filter(|(_, stored)| is_expired(&stored.entry, now))
                .map(|(k, _)| k.clone())
                .collect();
            for key in &expired {
                s.remove(key);
            }
            s.stats.expirations += expired.len() as u64;
            expired.len()
        })
    }
}

fn is_expired(entry: &CacheEntry, now: Instant) -> bool {
    entry.expires_at.is_some_and(|at| now >= at)
}

impl MemoryState {
    fn remove(&mut self, key: &str) -> bool {
        match self.entries.remove(key) {
            Some(stored) => {
                self.recency.remove(&stored.tick);
                true
            }
            None => false,
        }
    }

    fn touch(&mut self, key: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(stored) = self.entries.get_mut(key) {
            self.recency.remove(&stored.tick);
            stored.tick = tick;
            self.recency.insert(tick, owned(key));
        }
    }

    fn remove_where(&mut self, mut predicate: impl FnMut(&str) -> bool) -> usize {
        let doomed: Vec<String> = self
            .entries
            .keys()
            .filter(|k| predicate(k))
            .cloned()
            .collect();
        for key in &doomed {
            self.remove(key);
        }
        self.stats.invalidations += doomed.len() as u64;
        doomed.len()
    }
}

impl CacheProvider for InMemoryCache {
    fn get(&self, key: &str, now: Instant) -> Result<Option<CacheEntry>, CacheError> {
        Ok(self.state.with(|s| {
            let live = match s.entries.get(key) {
                None => None,
                Some(stored) if is_expired(&stored.entry, now) => {
                    s.remove(key);
                    s.stats.expirations += 1;
                    None
                }
                Some(stored) => Some(stored.entry.clone()),
            };
            match &live {
                Some(_) => {
                    s.stats.hits += 1;
                    s.touch(key);
                }
                None => s.stats.misses += 1,
            }
            live
        }))
    }

    fn put(&self, key: &str, entry: CacheEntry, now: Instant) -> Result<(), CacheError> {
        if is_expired(&entry, now) {
            return Ok(()); // a zero TTL stores nothing
        }
        self.state.with(|s| {
            s.remove(key);
            while s.entries.len() >= self.capacity {
                let Some((_, oldest)) = s.recency.pop_first() else {
                    break;
                };
                s.entries.remove(&oldest);
                s.stats.evictions += 1;
            }
            s.tick += 1;
            let tick = s.tick;
            s.entries.insert(owned(key), Stored { entry, tick });
            s.recency.insert(tick, owned(key));
            s.stats.inserts += 1;
        });
        Ok(())
    }

    fn invalidate(&self, key: &str) -> Result<bool, CacheError> {
        Ok(self.state.with(|s| s.remove_where(|k| k == key) > 0))
    }

    fn invalidate_prefix(&self, prefix: &str) -> Result<usize, CacheError> {
        Ok(self
            .state
            .with(|s| s.remove_where(|k| k.starts_with(prefix))))
    }

    fn invalidate_where(&self, predicate: &dyn Fn(&str) -> bool) -> Result<usize, CacheError> {
        Ok(self.state.with(|s| s.remove_where(predicate)))
    }
}

impl fmt::Debug for InMemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryCache")
            .field("capacity", &self.capacity)
            .field("stats", &self.stats())
            .finish()
    }
}
