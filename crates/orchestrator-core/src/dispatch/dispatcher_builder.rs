//! [`DispatcherBuilder`]: a dispatcher's bus, cache, observers and lifecycle events.

use alloc::vec::Vec;
use core::any::Any;
use core::fmt;

use crate::bus::SignalBus;
use crate::cache::{CacheEntry, CacheError, CacheProvider, InMemoryCache, InvalidateCache};
use crate::observer::{Observer, Observers};
use crate::runtime::{Instant, Runtime};
use crate::sync::{Arc, AtomicUsize, Weak};

use super::context::JobContext;
use super::dispatcher::{Dispatcher, Inner};
use super::env::JobEnv;
use super::executor::Executor;
use super::registry::Registry;

impl Dispatcher {
    /// Creates a type-erased dispatcher on an already shared runtime (otherwise like
    /// [`new`](Self::new)).
    pub fn with_runtime(runtime: Arc<dyn Runtime>) -> Self {
        DispatcherBuilder::new(runtime).build()
    }
}

impl<R: Runtime> Dispatcher<R> {
    /// Creates a dispatcher with no executors that runs jobs on `runtime` and publishes their
    /// events on a new, isolated [`SignalBus`] (see [`bus`](Self::bus)).
    pub fn new(runtime: R) -> Self {
        Self::builder(runtime).build()
    }

    /// Starts a dispatcher with options: its bus, observers, lifecycle events.
    pub fn builder(runtime: R) -> DispatcherBuilder<R> {
        DispatcherBuilder::new(runtime)
    }
}

/// Builds a [`Dispatcher`]; see [`Dispatcher::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct DispatcherBuilder<R = Arc<dyn Runtime>> {
    runtime: Arc<R>,
    bus: Option<SignalBus>,
    cache: Option<Arc<dyn CacheProvider>>,
    observers: Vec<Arc<dyn Observer>>,
    lifecycle: bool,
}

impl<R: Runtime> DispatcherBuilder<R> {
    pub(super) fn new(runtime: R) -> Self {
        Self {
            runtime: Arc::new(runtime),
            bus: None,
            cache: None,
            observers: Vec::new(),
            lifecycle: false,
        }
    }

    /// Uses `provider` for cached dispatches (default: an [`InMemoryCache`] of
    /// [`DEFAULT_CACHE_CAPACITY`] entries).
    pub fn cache(mut self, provider: impl CacheProvider) -> Self {
        self.cache = Some(Arc::new(provider));
        self
    }

    /// Publishes job events on `bus` (for example [`SignalBus::global`]) instead of a new,
    /// isolated bus.
    pub fn bus(mut self, bus: SignalBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Adds an observer; several are called in the order they were added.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Publishes [`JobLifecycle`](crate::JobLifecycle) events for every job by default
    /// (a dispatch can still override it).
    pub fn lifecycle_events(mut self, on: bool) -> Self {
        self.lifecycle = on;
        self
    }

    /// Builds the dispatcher.
    pub fn build(self) -> Dispatcher<R> {
        let cache =
            self.cache
                .unwrap_or_else(|| match InMemoryCache::new(DEFAULT_CACHE_CAPACITY) {
                    Ok(cache) => Arc::new(cache),
                    Err(_) => Arc::new(NoCache),
                });
        let shared_runtime: Arc<dyn Runtime> = self.runtime.clone();
        let env = |dispatcher: &Weak<Inner>| JobEnv {
            runtime: shared_runtime,
            cache,
            bus: self.bus.unwrap_or_default(),
            observers: Observers::new(self.observers),
            lifecycle: self.lifecycle,
            dispatcher: dispatcher.clone() as Weak<dyn Any + Send + Sync>,
            jobs: Registry::default(),
            undelivered: AtomicUsize::new(0),
        };
        let dispatcher = Dispatcher::assemble(self.runtime, env);
        dispatcher.register(InvalidateCacheExecutor);
        dispatcher
    }
}

impl<R> fmt::Debug for DispatcherBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatcherBuilder")
            .field("bus", &self.bus)
            .field("observers", &self.observers.len())
            .field("lifecycle", &self.lifecycle)
            .finish_non_exhaustive()
    }
}

/// The capacity of a dispatcher's default in-memory cache.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// Runs [`InvalidateCache`] jobs against the dispatcher's cache.
struct InvalidateCacheExecutor;

impl Executor<InvalidateCache> for InvalidateCacheExecutor {
    type Error = CacheError;

    async fn execute(&self, job: &InvalidateCache, cx: JobContext) -> Result<usize, CacheError> {
        job.target.apply(cx.cache())
    }
}

/// A provider that stores nothing (never used: the default capacity is not zero).
struct NoCache;

impl CacheProvider for NoCache {
    fn get(&self, _: &str, _: Instant) -> Result<Option<CacheEntry>, CacheError> {
        Ok(None)
    }
    fn put(&self, _: &str, _: CacheEntry, _: Instant) -> Result<(), CacheError> {
        Ok(())
    }
    fn invalidate(&self, _: &str) -> Result<bool, CacheError> {
        Ok(false)
    }
    fn invalidate_prefix(&self, _: &str) -> Result<usize, CacheError> {
        Ok(0)
    }
    fn invalidate_where(&self, _: &dyn Fn(&str) -> bool) -> Result<usize, CacheError> {
        Ok(0)
    }
}
