//! Subscriptions: the receiving ends of a bus.

use alloc::collections::VecDeque;
use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use futures_core::{FusedStream, Stream};

use super::BusInner;
use crate::event::Event;
use crate::sync::Arc;

/// How many queued events a subscription takes per lock.
const BATCH: usize = 32;

/// A stream of every event published on a bus while it exists; see
/// [`SignalBus::subscribe`](super::SignalBus::subscribe).
///
/// It ends (`None`) after the bus is closed and every event published before the close was
/// yielded. Dropping it unsubscribes and releases the events it had not taken yet.
///
/// # Cancel safety
///
/// `next()` on it is cancel-safe: an event is taken out of the bus only when it is yielded
/// (or buffered inside the subscription, which keeps it for the next call).
#[must_use = "streams do nothing unless polled"]
pub struct Subscription {
    bus: Arc<BusInner>,
    /// The position of the next event to take from the bus.
    position: u64,
    /// Events taken from the bus but not yielded yet.
    buffer: VecDeque<Event>,
    /// This subscription's slot in the bus's waker table.
    id: usize,
    /// Counted in the bus's `subscribers` (false once it has ended, or if the bus was closed).
    registered: bool,
}

enum Fetch {
    Got,
    Empty,
    Closed,
}

impl Subscription {
    pub(super) fn new(bus: Arc<BusInner>, position: u64, closed: bool, id: usize) -> Self {
        Self {
            bus,
            position,
            buffer: VecDeque::new(),
            id,
            registered: !closed,
        }
    }

    /// Returns an event that is ready now, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        if self.buffer.is_empty() {
            fetch(
                &self.bus,
                &mut self.position,
                &mut self.buffer,
                &mut self.registered,
                self.id,
                None,
            );
        }
        self.buffer.pop_front()
    }
}

/// Moves up to `BATCH` queued events from the bus into `buffer`.
fn fetch(
    bus: &BusInner,
    position: &mut u64,
    buffer: &mut VecDeque<Event>,
    registered: &mut bool,
    id: usize,
    waker: Option<&Waker>,
) -> Fetch {
    if !*registered {
        return Fetch::Closed;
    }
    let fetched = bus.state.with(|s| {
        let available = s.tail() - *position;
        if available == 0 {
            if s.closed {
                s.subscribers -= 1;
                s.unregister(id);
                return Fetch::Closed;
            }
            if let Some(waker) = waker {
                // Registered under the same lock as the check: no publish can fall between.
                s.register(id, waker);
            }
            return Fetch::Empty;
        }
        let count = available.min(BATCH as u64) as usize;
        s.take(*position, count, buffer);
        *position += count as u64;
        Fetch::Got
    });
    if matches!(fetched, Fetch::Closed) {
        *registered = false;
    }
    fetched
}

impl Stream for Subscription {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = &mut *self;
        if let Some(event) = this.buffer.pop_front() {
            return Poll::Ready(Some(event));
        }
        match fetch(
            &this.bus,
            &mut this.position,
            &mut this.buffer,
            &mut this.registered,
            this.id,
            Some(cx.waker()),
        ) {
            Fetch::Got => Poll::Ready(this.buffer.pop_front()),
            Fetch::Closed => Poll::Ready(None),
            Fetch::Empty => Poll::Pending,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.buffer.len(), None)
    }
}

impl FusedStream for Subscription {
    fn is_terminated(&self) -> bool {
        !self.registered && self.buffer.is_empty()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.registered {
            return;
        }
        let position = self.position;
        self.bus.state.with(|s| {
            let left = (s.tail() - position) as usize;
            s.release(position, left);
            s.subscribers -= 1;
            s.unregister(self.id);
        });
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("position", &self.position)
            .field("buffered", &self.buffer.len())
            .field("ended", &!self.registered)
            .finish()
    }
}

/// A stream of the events whose payload is a `P`; see
/// [`SignalBus::subscribe_to`](super::SignalBus::subscribe_to).
///
/// It filters on the receiving side: the bus queues every event for it, and it skips the ones
/// of other types as it reads.
#[must_use = "streams do nothing unless polled"]
pub struct TypedSubscription<P> {
    inner: Subscription,
    _payload: PhantomData<fn() -> P>,
}

impl<P: Send + Sync + 'static> TypedSubscription<P> {
    pub(crate) fn new(inner: Subscription) -> Self {
        Self {
            inner,
            _payload: PhantomData,
        }
    }

    /// Returns a `P` event that is ready now, without waiting (skipping events of other
    /// types that are ready).
    pub fn try_next(&mut self) -> Option<TypedEvent<P>> {
        loop {
            let event = self.inner.try_next()?;
            if event.is::<P>() {
                return Some(TypedEvent {
                    event,
                    _payload: PhantomData,
                });
            }
        }
    }
}

impl<P: Send + Sync + 'static> Stream for TypedSubscription<P> {
    type Item = TypedEvent<P>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TypedEvent<P>>> {
        loop {
            match core::task::ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(event) if event.is::<P>() => {
                    return Poll::Ready(Some(TypedEvent {
                        event,
                        _payload: PhantomData,
                    }));
                }
                Some(_) => {}
            }
        }
    }
}

impl<P: Send + Sync + 'static> FusedStream for TypedSubscription<P> {
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

impl<P> fmt::Debug for TypedSubscription<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedSubscription")
            .field("payload", &core::any::type_name::<P>())
            .field("inner", &self.inner)
            .finish()
    }
}

/// An event whose payload is known to be a `P`; it dereferences to the payload.
pub struct TypedEvent<P> {
    event: Event,
    _payload: PhantomData<fn() -> P>,
}

impl<P: 'static> TypedEvent<P> {
    /// The typed view of `event`, if its payload is a `P`.
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn from_event(event: Event) -> Option<Self> {
        event.is::<P>().then_some(TypedEvent {
            event,
            _payload: PhantomData,
        })
    }

    /// Returns the envelope (correlation id, timestamp, job type, source).
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// Returns the envelope, dropping the typed view.
    pub fn into_event(self) -> Event {
        self.event
    }
}

impl<P: 'static> Deref for TypedEvent<P> {
    type Target = P;

    fn deref(&self) -> &P {
        // Invariant: a `TypedEvent<P>` is only built for events whose payload is a `P`.
        self.event
            .downcast_ref::<P>()
            .expect("a TypedEvent<P> always holds a P")
    }
}

impl<P> Clone for TypedEvent<P> {
    fn clone(&self) -> Self {
        Self {
            event: self.event.clone(),
            _payload: PhantomData,
        }
    }
}

impl<P: fmt::Debug + 'static> fmt::Debug for TypedEvent<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedEvent")
            .field("payload", &**self)
            .field("event", &self.event)
            .finish()
    }
}
