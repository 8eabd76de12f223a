//! Whether the network can be reached: [`Connectivity`], [`AlwaysOnline`] (the default) and
//! [`ManualConnectivity`].

use core::fmt;

use crate::sync::Arc;
use crate::watch::{StateStream, Watch};

/// Whether the network can be reached, now and as it changes.
///
/// Network-bound job types (durable jobs registered as needing the network) wait for it to
/// say online before each attempt: while it says offline, their dispatches are stored and
/// answered optimistically (a placeholder), and they run once it says online again.
///
/// Implementations: [`AlwaysOnline`] (nothing ever waits), [`ManualConnectivity`] (the
/// application, or a test, says), and the browser's `navigator.onLine` in
/// `orchestrator-wasm`.
pub trait Connectivity: Send + Sync + 'static {
    /// Returns `true` while the network can be reached.
    fn is_online(&self) -> bool;

    /// Returns a stream of the state: the current one first, then each change (a slow reader
    /// skips states that were replaced before it looked, and always gets the latest).
    fn changes(&self) -> StateStream<bool>;
}

/// Always online: the default, so nothing waits for the network.
#[derive(Clone)]
pub struct AlwaysOnline {
    watch: Arc<Watch<bool>>,
}

impl AlwaysOnline {
    /// A connectivity that is always online.
    pub fn new() -> Self {
        Self {
            watch: Arc::new(Watch::new(true)),
        }
    }
}

impl Default for AlwaysOnline {
    fn default() -> Self {
        Self::new()
    }
}

impl Connectivity for AlwaysOnline {
    fn is_online(&self) -> bool {
        true
    }

    fn changes(&self) -> StateStream<bool> {
        StateStream::new(self.watch.clone())
    }
}

impl fmt::Debug for AlwaysOnline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AlwaysOnline")
    }
}

/// A connectivity the application sets: for tests, and for applications that know better than
/// the platform (a captive portal, a server health check).
///
/// Clones share the state.
///
/// ```
/// use orchestrator_core::{Connectivity, ManualConnectivity};
///
/// let network = ManualConnectivity::new(false);
/// assert!(!network.is_online());
/// network.set_online(true);
/// assert!(network.is_online());
/// ```
#[derive(Clone)]
pub struct ManualConnectivity {
    watch: Arc<Watch<bool>>,
}

impl ManualConnectivity {
    /// A connectivity that starts `online` (or offline).
    pub fn new(online: bool) -> Self {
        Self {
            watch: Arc::new(Watch::new(online)),
        }
    }

    /// Says whether the network can be reached; streams see a change only when it changes.
    pub fn set_online(&self, online: bool) {
        if self.watch.get() != online {
            self.watch.update(|state| *state = online);
        }
    }
}

impl Connectivity for ManualConnectivity {
    fn is_online(&self) -> bool {
        self.watch.get()
    }

    fn changes(&self) -> StateStream<bool> {
        StateStream::new(self.watch.clone())
    }
}

impl fmt::Debug for ManualConnectivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualConnectivity")
            .field("online", &self.is_online())
            .finish()
    }
}

impl<C: Connectivity + ?Sized> Connectivity for Arc<C> {
    fn is_online(&self) -> bool {
        (**self).is_online()
    }

    fn changes(&self) -> StateStream<bool> {
        (**self).changes()
    }
}
