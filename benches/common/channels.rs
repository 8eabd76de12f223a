//! The three broadcast channels the bus benchmarks compare (`SignalBus`, `async-broadcast`,
//! `tokio::sync::broadcast`) behind one trait, and the burst and concurrent rounds they run:
//! shared by `benches/bus.rs` (wall clock) and `benches/instructions.rs` (callgrind).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use orchestrator_core::{Event, SignalBus, Subscription};

// ---------------------------------------------------------------------------------------------
// The three channels
// ---------------------------------------------------------------------------------------------

/// One broadcast implementation: a sending side and its receivers, reduced to what the two
/// scenarios need. Every received event is read back as the `u64` it carries.
pub(crate) trait Channel: Send + Sync + Sized + 'static {
    type Rx: Send + 'static;

    /// Makes the channel (able to hold `capacity` events) with `subscribers` receivers.
    fn open(subscribers: usize, capacity: usize) -> (Self, Vec<Self::Rx>);

    /// Publishes the event `seq` (allocating it); it must be queued for every receiver.
    fn publish(&self, seq: u64);

    /// Takes the next event if one is ready, without waiting.
    fn try_take(rx: &mut Self::Rx) -> Option<u64>;

    /// Waits for the next event.
    fn take(rx: &mut Self::Rx) -> impl Future<Output = Option<u64>> + Send + '_;
}

/// Ours: `SignalBus` and `Subscription`s of `Event`s.
#[derive(Debug)]
pub(crate) struct Ours {
    bus: SignalBus,
    subscribers: usize,
}

pub(crate) fn payload(event: &Event) -> u64 {
    *event
        .downcast_ref::<u64>()
        .expect("every event carries a u64")
}

impl Channel for Ours {
    type Rx = Subscription;

    fn open(subscribers: usize, _capacity: usize) -> (Self, Vec<Subscription>) {
        let bus = SignalBus::new();
        let subs = (0..subscribers).map(|_| bus.subscribe()).collect();
        (Ours { bus, subscribers }, subs)
    }

    fn publish(&self, seq: u64) {
        let queued = self.bus.publish(Event::new(seq)).expect("the bus is open");
        assert_eq!(queued, self.subscribers, "queued for every subscription");
    }

    fn try_take(rx: &mut Subscription) -> Option<u64> {
        rx.try_next().as_ref().map(payload)
    }

    async fn take(rx: &mut Subscription) -> Option<u64> {
        rx.next().await.as_ref().map(payload)
    }
}

/// `async_broadcast` with `Arc<u64>` messages.
#[derive(Debug)]
pub(crate) struct AsyncBroadcast {
    tx: async_broadcast::Sender<Arc<u64>>,
}

impl Channel for AsyncBroadcast {
    type Rx = async_broadcast::Receiver<Arc<u64>>;

    fn open(subscribers: usize, capacity: usize) -> (Self, Vec<Self::Rx>) {
        let (mut tx, rx) = async_broadcast::broadcast::<Arc<u64>>(capacity);
        tx.set_overflow(false);
        tx.set_await_active(false);
        let mut rxs = Vec::with_capacity(subscribers);
        for _ in 1..subscribers {
            rxs.push(rx.new_receiver());
        }
        rxs.push(rx);
        (AsyncBroadcast { tx }, rxs)
    }

    fn publish(&self, seq: u64) {
        let displaced = self
            .tx
            .try_broadcast(Arc::new(seq))
            .expect("the channel is open and has room");
        assert!(displaced.is_none(), "nothing is overwritten");
    }

    fn try_take(rx: &mut Self::Rx) -> Option<u64> {
        rx.try_recv().ok().map(|v| *v)
    }

    async fn take(rx: &mut Self::Rx) -> Option<u64> {
        rx.next().await.map(|v| *v)
    }
}

/// `tokio::sync::broadcast` with `Arc<u64>` messages.
#[derive(Debug)]
pub(crate) struct TokioBroadcast {
    tx: tokio::sync::broadcast::Sender<Arc<u64>>,
    subscribers: usize,
}

impl Channel for TokioBroadcast {
    type Rx = tokio::sync::broadcast::Receiver<Arc<u64>>;

    fn open(subscribers: usize, capacity: usize) -> (Self, Vec<Self::Rx>) {
        let (tx, rx) = tokio::sync::broadcast::channel::<Arc<u64>>(capacity);
        let mut rxs = Vec::with_capacity(subscribers);
        for _ in 1..subscribers {
            rxs.push(tx.subscribe());
        }
        rxs.push(rx);
        (TokioBroadcast { tx, subscribers }, rxs)
    }

    fn publish(&self, seq: u64) {
        let receivers = self.tx.send(Arc::new(seq)).expect("the channel is open");
        assert_eq!(receivers, self.subscribers, "sent to every receiver");
    }

    fn try_take(rx: &mut Self::Rx) -> Option<u64> {
        // A `Lagged` error (an overwritten event) comes out as `None` and fails the check.
        rx.try_recv().ok().map(|v| *v)
    }

    async fn take(rx: &mut Self::Rx) -> Option<u64> {
        rx.recv().await.ok().map(|v| *v)
    }
}

/// A channel, its receivers, and the sequence number of the next event.
#[derive(Debug)]
pub(crate) struct Lane<C: Channel> {
    pub(crate) channel: C,
    pub(crate) rxs: Vec<C::Rx>,
    pub(crate) next: u64,
}

impl<C: Channel> Lane<C> {
    pub(crate) fn open(subscribers: usize, capacity: usize) -> Self {
        let (channel, rxs) = C::open(subscribers, capacity);
        Lane {
            channel,
            rxs,
            next: 0,
        }
    }

    // --- burst -------------------------------------------------------------------------------

    pub(crate) fn burst_publish(&mut self, n: u64) {
        for seq in self.next..self.next + n {
            self.channel.publish(seq);
        }
    }

    /// Every receiver drains the `n` events just published, checking count and order.
    pub(crate) fn burst_drain(&mut self, n: u64) {
        let base = self.next;
        for rx in &mut self.rxs {
            for expected in base..base + n {
                assert_eq!(
                    C::try_take(rx),
                    Some(expected),
                    "burst: lost or out of order"
                );
            }
            assert_eq!(C::try_take(rx), None, "burst: more events than published");
        }
        self.next += n;
    }

    pub(crate) fn burst(&mut self, rounds: u64, n: u64) -> Duration {
        let began = Instant::now();
        for _ in 0..rounds {
            self.burst_publish(n);
            self.burst_drain(n);
        }
        began.elapsed()
    }

    // --- concurrent --------------------------------------------------------------------------

    /// One round: K subscriber tasks each await `n` events (checking order) while this task
    /// publishes them, yielding every `YIELD_EVERY`; then every subscriber is checked to have
    /// nothing more.
    pub(crate) async fn concurrent_round(&mut self, n: u64) {
        let base = self.next;
        let subscribers: Vec<_> = self
            .rxs
            .drain(..)
            .map(|mut rx| {
                tokio::spawn(async move {
                    for expected in base..base + n {
                        let got = C::take(&mut rx).await;
                        assert_eq!(got, Some(expected), "concurrent: lost or out of order");
                    }
                    rx
                })
            })
            .collect();
        for (i, seq) in (base..base + n).enumerate() {
            self.channel.publish(seq);
            if (i + 1) % YIELD_EVERY == 0 {
                tokio::task::yield_now().await;
            }
        }
        for subscriber in subscribers {
            self.rxs
                .push(subscriber.await.expect("a subscriber task does not panic"));
        }
        for rx in &mut self.rxs {
            assert_eq!(
                C::try_take(rx),
                None,
                "concurrent: more events than published"
            );
        }
        self.next += n;
    }

    pub(crate) async fn concurrent(mut self, rounds: u64, n: u64) -> (Self, Duration) {
        let began = Instant::now();
        for _ in 0..rounds {
            self.concurrent_round(n).await;
        }
        let elapsed = began.elapsed();
        (self, elapsed)
    }
}

/// The publisher yields after every this many events in the concurrent scenario.
const YIELD_EVERY: usize = 64;
