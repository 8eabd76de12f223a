//! The signal bus: a lossless, ordered, many-subscriber event channel.

mod subscription;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::task::Waker;

use crate::event::Event;
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering};

pub use subscription::{Subscription, TypedEvent, TypedSubscription};

/// A handle to an event bus. Cheap to clone.
///
/// A [`SignalBus`] is cheap to clone; clones are handles to the same bus.
/// [`SignalBus::new`] makes an isolated (scoped) bus; with `std`, [`SignalBus::global`] returns
/// the process-wide one. [`SignalBus::subscribe`] returns a [`Subscription`], a
/// [`Stream`](futures_core::Stream) of [`Event`]s; [`SignalBus::subscribe_to`] returns a
/// [`TypedSubscription`] that yields only one payload type.
///
/// ## Ordering
///
/// Publishing takes the bus's lock, so every publish has a place in one total order, and every
/// subscriber sees the events it receives in that order. In particular the events of one
/// publisher (one job, one task) arrive in the order they were published.
///
/// ## Lagging
///
/// Nothing is lost and nothing blocks: a subscription receives every event published while it
/// exists, however slowly it reads. The price is memory: an event stays queued (one `Event`, a
/// reference count, plus a counter: 24 bytes on 64-bit targets, the payload itself shared)
/// until every subscription that was present when it was published has taken it or has been
/// dropped. A subscription that is never read therefore keeps every later event alive; drop
/// subscriptions you no longer read. Publishers never wait.
///
/// ## Closing
///
/// [`SignalBus::close`] closes the bus; so does dropping its last `SignalBus` handle.
/// Publishing on a closed bus fails with [`PublishError`], which gives the event back.
/// Subscriptions first yield every event published before the close, then end (`None`).
/// Subscribing to a closed bus gives a subscription that ends at once.
///
/// ```
/// use futures::StreamExt;
/// use orchestrator_core::{Event, SignalBus};
///
/// struct Ping(u32);
///
/// let bus = SignalBus::new();
/// let mut all = bus.subscribe();
/// let mut pings = bus.subscribe_to::<Ping>();
/// assert_eq!(bus.emit(Ping(1)).unwrap(), 2); // queued for two subscriptions
/// bus.publish(Event::new("not a ping")).unwrap();
/// bus.close();
/// futures::executor::block_on(async {
///     assert!(all.next().await.unwrap().is::<Ping>());
///     assert!(all.next().await.unwrap().is::<&str>());
///     assert!(all.next().await.is_none());
///     assert_eq!(pings.next().await.map(|p| p.0), Some(1));
///     assert!(pings.next().await.is_none());
/// });
/// assert!(bus.emit(Ping(2)).is_err());
/// ```
pub struct SignalBus {
    inner: Arc<BusInner>,
}

pub(crate) struct BusInner {
    state: Mutex<BusState>,
    /// `SignalBus` handles alive; the bus closes when it drops to zero.
    handles: AtomicUsize,
}

struct BusState {
    /// Events not yet taken by every subscription that was present when they were published.
    queue: VecDeque<Slot>,
    /// The position (publish sequence number) of `queue[0]`.
    head: u64,
    subscribers: usize,
    /// Wakers of waiting subscriptions, by subscription id.
    wakers: Vec<Option<Waker>>,
    /// The ids whose slot in `wakers` holds a waker.
    waiting: Vec<usize>,
    /// Unused ids.
    free: Vec<usize>,
    closed: bool,
}

struct Slot {
    event: Event,
    /// Subscriptions that still have to take this event.
    pending: usize,
}

/// How many wakers `wake_waiting` takes per lock.
const WAKE_BATCH: usize = 32;

impl BusState {
    fn register(&mut self, id: usize, waker: &Waker) {
        match &mut self.wakers[id] {
            Some(old) => {
                if !old.will_wake(waker) {
                    old.clone_from(waker);
                }
            }
            slot @ None => {
                *slot = Some(waker.clone());
                self.waiting.push(id);
            }
        }
    }

    /// Frees `id` (the subscription ended or was dropped).
    fn unregister(&mut self, id: usize) {
        if self.wakers[id].take().is_some() {
            self.waiting.retain(|&w| w != id);
        }
        self.free.push(id);
    }

    fn new_id(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.wakers.push(None);
            self.wakers.len() - 1
        })
    }

    fn tail(&self) -> u64 {
        self.head + self.queue.len() as u64
    }

    /// Takes the `count` events from position `from` for one subscription, appending them to
    /// `buffer`, and frees the slots at the front that nobody needs any more.
    ///
    /// `pending` never decreases from the front of the queue to the back (a subscription that
    /// still has to take a slot has to take every later one too), so the slots this
    /// subscription is the last taker of are a prefix of the queue: their events are moved
    /// out, the others are cloned (one reference count each).
    fn take(&mut self, from: u64, count: usize, buffer: &mut VecDeque<Event>) {
        let start = (from - self.head) as usize;
        let mut count = count;
        if start == 0 {
            let last = self
                .queue
                .iter()
                .take(count)
                .take_while(|slot| slot.pending == 1)
                .count();
            if last > 0 {
                buffer.extend(self.queue.drain(..last).map(|slot| slot.event));
                self.head += last as u64;
                count -= last;
            }
        }
        buffer.extend(self.queue.range_mut(start..start + count).map(|slot| {
            slot.pending -= 1;
            slot.event.clone()
        }));
    }

    /// Marks `count` slots from position `from` as taken by one subscription and frees the
    /// slots at the front that nobody needs any more.
    fn release(&mut self, from: u64, count: usize) {
        let start = (from - self.head) as usize;
        for slot in self.queue.range_mut(start..start + count) {
            slot.pending -= 1;
        }
        while self.queue.front().is_some_and(|s| s.pending == 0) {
            self.queue.pop_front();
            self.head += 1;
        }
    }
}

impl SignalBus {
    /// Creates a new, isolated bus.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(BusInner {
                state: Mutex::new(BusState {
                    queue: VecDeque::new(),
                    head: 0,
                    subscribers: 0,
                    wakers: Vec::new(),
                    waiting: Vec::new(),
                    free: Vec::new(),
                    closed: false,
                }),
                handles: AtomicUsize::new(1),
            }),
        }
    }

    /// Returns the process-wide bus (created on first use; it stays open unless closed).
    ///
    /// Tests that need isolation should use [`SignalBus::new`] instead.
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn global() -> SignalBus {
        static GLOBAL: std::sync::OnceLock<SignalBus> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(SignalBus::new).clone()
    }

    /// Publishes `event` to every current subscription; returns how many it was queued for.
    ///
    /// # Errors
    ///
    /// Returns [`PublishError`] with the event if the bus is closed.
    ///
    /// With `std`, an event published while an orchestrator's handler runs on this thread
    /// (and not emitted by a job) gets that handler's causal depth; see
    /// [`Event::causal_depth`].
    pub fn publish(&self, mut event: Event) -> Result<usize, PublishError> {
        event.stamp_ambient();
        self.inner.publish(event)
    }

    /// Returns an uncounted reference for publishing (it does not keep the bus open).
    pub(crate) fn publisher(&self) -> BusRef {
        BusRef(self.inner.clone())
    }

    /// Wraps `payload` in an [`Event`] (see [`Event::new`]) and publishes it.
    ///
    /// # Errors
    ///
    /// Returns [`PublishError`] with the event if the bus is closed.
    pub fn emit<P: Send + Sync + 'static>(&self, payload: P) -> Result<usize, PublishError> {
        self.publish(Event::new(payload))
    }

    /// Subscribes to every event published from now on.
    pub fn subscribe(&self) -> Subscription {
        let (tail, closed, id) = self.inner.state.with(|s| {
            let id = if s.closed {
                usize::MAX
            } else {
                s.subscribers += 1;
                s.new_id()
            };
            (s.tail(), s.closed, id)
        });
        Subscription::new(self.inner.clone(), tail, closed, id)
    }

    /// Subscribes to the events whose payload is a `P`, published from now on.
    pub fn subscribe_to<P: Send + Sync + 'static>(&self) -> TypedSubscription<P> {
        TypedSubscription::new(self.subscribe())
    }

    /// Closes the bus: later publishes fail, subscriptions end after the queued events.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Returns `true` once the bus is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.state.with(|s| s.closed)
    }

    /// Returns the number of live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        self.inner.state.with(|s| s.subscribers)
    }

    /// Returns the number of events still queued for at least one subscription.
    pub fn queued(&self) -> usize {
        self.inner.state.with(|s| s.queue.len())
    }

    /// Returns `true` if both handles point to the same bus.
    pub fn same_bus(&self, other: &SignalBus) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl BusInner {
    fn publish(&self, event: Event) -> Result<usize, PublishError> {
        let queued = self.state.with(|s| {
            if s.closed {
                return Err(event);
            }
            let n = s.subscribers;
            if n > 0 {
                s.queue.push_back(Slot { event, pending: n });
            }
            Ok((n, !s.waiting.is_empty()))
        });
        match queued {
            Err(event) => Err(PublishError(event)),
            Ok((n, waiting)) => {
                if waiting {
                    self.wake_waiting();
                }
                Ok(n)
            }
        }
    }

    /// Wakes every waiting subscription, `WAKE_BATCH` per lock, outside the lock.
    fn wake_waiting(&self) {
        loop {
            let mut batch: [Option<Waker>; WAKE_BATCH] = Default::default();
            let more = self.state.with(|s| {
                for slot in batch.iter_mut() {
                    let Some(id) = s.waiting.pop() else {
                        return false;
                    };
                    *slot = s.wakers[id].take();
                }
                !s.waiting.is_empty()
            });
            for waker in batch.iter_mut().filter_map(Option::take) {
                waker.wake();
            }
            if !more {
                return;
            }
        }
    }

    fn close(&self) {
        let was_open = self
            .state
            .with(|s| !core::mem::replace(&mut s.closed, true));
        if was_open {
            self.wake_waiting();
        }
    }
}

impl Default for SignalBus {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for SignalBus {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for SignalBus {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.close();
        }
    }
}

impl fmt::Debug for SignalBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (subscribers, queued, closed) = self
            .inner
            .state
            .with(|s| (s.subscribers, s.queue.len(), s.closed));
        f.debug_struct("SignalBus")
            .field("subscribers", &subscribers)
            .field("queued", &queued)
            .field("closed", &closed)
            .finish()
    }
}

/// An uncounted reference to a bus, for publishing from jobs (it does not keep the bus open).
#[derive(Clone)]
pub(crate) struct BusRef(Arc<BusInner>);

impl BusRef {
    pub(crate) fn publish(&self, event: Event) -> Result<usize, PublishError> {
        self.0.publish(event)
    }
}

/// The error returned when publishing on a closed bus; it gives the event back.
#[derive(Debug, Clone)]
pub struct PublishError(pub Event);

impl PublishError {
    /// Returns the event that was not published.
    pub fn into_inner(self) -> Event {
        self.0
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the signal bus is closed")
    }
}

impl core::error::Error for PublishError {}
