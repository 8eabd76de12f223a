//! Caching job outputs: the provider trait, per-dispatch cache policies, the in-memory LRU.

mod memory;

use alloc::borrow::Cow;
use alloc::string::String;
use core::any::Any;
use core::error::Error;
use core::fmt;
use core::time::Duration;

use crate::runtime::Instant;
use crate::sync::Arc;

pub use memory::{CacheStats, InMemoryCache, InvalidCacheConfig};

/// A cached value: a job's output, type-erased and shared.
pub type CacheValue = Arc<dyn Any + Send + Sync>;

/// A stored entry.
#[derive(Clone)]
pub struct CacheEntry {
    /// The value.
    pub value: CacheValue,
    /// When it expires, if ever.
    pub expires_at: Option<Instant>,
}

impl fmt::Debug for CacheEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheEntry")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Where job outputs are cached. Implementations must be cheap to call from any thread.
///
/// `now` is the dispatcher runtime's clock: providers need no clock of their own, and expiry
/// follows the virtual clock in tests.
pub trait CacheProvider: Send + Sync + 'static {
    /// Returns the live entry for `key`, if any (an expired one is a miss).
    ///
    /// # Errors
    ///
    /// A [`CacheError`] if the store could not be read (the core treats it as a miss).
    fn get(&self, key: &str, now: Instant) -> Result<Option<CacheEntry>, CacheError>;

    /// Stores `entry` under `key`, replacing any previous one.
    ///
    /// # Errors
    ///
    /// A [`CacheError`] if the store could not be written (the core reports it and goes on).
    fn put(&self, key: &str, entry: CacheEntry, now: Instant) -> Result<(), CacheError>;

    /// Removes `key`; returns whether it was present.
    ///
    /// # Errors
    ///
    /// A [`CacheError`] if the store could not be written.
    fn invalidate(&self, key: &str) -> Result<bool, CacheError>;

    /// Removes every key starting with `prefix`; returns how many.
    ///
    /// # Errors
    ///
    /// A [`CacheError`] if the store could not be written.
    fn invalidate_prefix(&self, prefix: &str) -> Result<usize, CacheError>;

    /// Removes every key for which `predicate` returns `true`; returns how many.
    ///
    /// # Errors
    ///
    /// A [`CacheError`] if the store could not be written.
    fn invalidate_where(&self, predicate: &dyn Fn(&str) -> bool) -> Result<usize, CacheError>;
}

/// A cache provider's error: it wraps the provider's own error.
#[derive(Clone)]
pub struct CacheError {
    error: Arc<dyn Error + Send + Sync>,
}

impl CacheError {
    /// Wraps a provider's error.
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        Self {
            error: Arc::new(error),
        }
    }

    /// Returns the provider's error.
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.error
    }
}

impl fmt::Debug for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CacheError").field(&self.error).finish()
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the cache provider failed")
    }
}

impl Error for CacheError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.error)
    }
}

/// How one dispatch uses the cache.
///
/// A dispatch with a [`CachePolicy`] (through [`JobBuilder::cache`](crate::JobBuilder::cache))
/// first looks its key up in the dispatcher's [`CacheProvider`]:
///
/// - **hit** (not expired, and holding a value of the job's output type): the handle resolves
///   with the cached value and [`DataSource::Cached`](crate::DataSource::Cached), without
///   calling the executor, unless the policy says `revalidate`: then the executor runs anyway
///   (stale-while-revalidate), and its fresh result updates the cache and is published as the
///   job's output event with `DataSource::Fresh` (for a job with an [`output_event`](crate::Job::output_event)). The job
///   stays running, and active for the orchestrator that dispatched it, until revalidation ends.
/// - **miss** (absent, expired, a value of another type, or a provider error): the executor
///   runs; a success is stored with the policy's TTL.
/// - `force_refresh` skips the lookup (but still stores the fresh result).
///
/// A failed job never evicts or overwrites an entry. A provider's read or write errors are
/// reported to the observers ([`Observer::on_cache_error`](crate::Observer::on_cache_error)) and
/// treated as a miss. Entries are invalidated by key, prefix or predicate, from code
/// ([`Dispatcher::cache`](crate::Dispatcher::cache)) or as a job ([`InvalidateCache`]).
///
/// ```
/// use core::time::Duration;
/// use orchestrator_core::CachePolicy;
///
/// let policy = CachePolicy::new("users/42")
///     .with_ttl(Duration::from_secs(300))
///     .revalidate();
/// assert_eq!(policy.key(), "users/42");
/// assert!(policy.is_revalidate() && !policy.is_force_refresh());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct CachePolicy {
    key: Cow<'static, str>,
    ttl: Option<Duration>,
    revalidate: bool,
    force_refresh: bool,
}

impl CachePolicy {
    /// Caches under `key`, without expiry, serving hits without running the executor.
    pub fn new(key: impl Into<Cow<'static, str>>) -> Self {
        Self {
            key: key.into(),
            ttl: None,
            revalidate: false,
            force_refresh: false,
        }
    }

    /// Expires the stored value `ttl` after it was stored (a zero TTL stores nothing).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Stale-while-revalidate: on a hit, resolve with the cached value and run the executor
    /// anyway to refresh it.
    pub fn revalidate(mut self) -> Self {
        self.revalidate = true;
        self
    }

    /// Skips the lookup: always runs the executor (and stores its result).
    pub fn force_refresh(mut self) -> Self {
        self.force_refresh = true;
        self
    }

    /// Returns the key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Returns the TTL, if any.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// Returns `true` for stale-while-revalidate.
    pub fn is_revalidate(&self) -> bool {
        self.revalidate
    }

    /// Returns `true` if the lookup is skipped.
    pub fn is_force_refresh(&self) -> bool {
        self.force_refresh
    }
}

/// Which cache entries an [`InvalidateCache`] job removes.
#[derive(Clone)]
#[non_exhaustive]
pub enum Invalidation {
    /// One key.
    Key(Cow<'static, str>),
    /// Every key with this prefix.
    Prefix(Cow<'static, str>),
    /// Every key the predicate accepts.
    Where(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl fmt::Debug for Invalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalidation::Key(k) => f.debug_tuple("Key").field(k).finish(),
            Invalidation::Prefix(p) => f.debug_tuple("Prefix").field(p).finish(),
            Invalidation::Where(_) => f.write_str("Where(..)"),
        }
    }
}

impl Invalidation {
    pub(crate) fn apply(&self, provider: &dyn CacheProvider) -> Result<usize, CacheError> {
        match self {
            Invalidation::Key(key) => provider.invalidate(key).map(usize::from),
            Invalidation::Prefix(prefix) => provider.invalidate_prefix(prefix),
            Invalidation::Where(predicate) => provider.invalidate_where(&**predicate),
        }
    }
}

/// A job that invalidates cache entries of its dispatcher's cache; its output is how many
/// entries it removed. Every dispatcher has its executor registered.
///
/// ```
/// use orchestrator_core::Dispatch;
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatcher, InvalidateCache};
///
/// let rt = VirtualRuntime::new();
/// let dispatcher = Dispatcher::new(rt.clone());
/// let removed = rt.block_on(dispatcher.dispatch(InvalidateCache::prefix("users/"))).unwrap();
/// assert_eq!(removed.value, 0);
/// ```
#[derive(Debug, Clone)]
pub struct InvalidateCache {
    /// What to remove.
    pub target: Invalidation,
}

impl InvalidateCache {
    /// Removes one key.
    pub fn key(key: impl Into<Cow<'static, str>>) -> Self {
        Self {
            target: Invalidation::Key(key.into()),
        }
    }

    /// Removes every key with `prefix`.
    pub fn prefix(prefix: impl Into<Cow<'static, str>>) -> Self {
        Self {
            target: Invalidation::Prefix(prefix.into()),
        }
    }

    /// Removes every key `predicate` accepts.
    pub fn matching(predicate: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self {
            target: Invalidation::Where(Arc::new(predicate)),
        }
    }
}

impl crate::Job for InvalidateCache {
    type Output = usize;
}

/// Owned key helper for providers.
pub(crate) fn owned(key: &str) -> String {
    String::from(key)
}
