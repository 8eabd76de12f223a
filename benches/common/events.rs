//! The orchestrator event-handling scenario: an orchestrator whose `on_event` counts events
//! into its state, against a raw subscription loop that counts into an atomic. Shared by
//! `benches/orchestrator.rs` (wall clock) and `benches/instructions.rs` (callgrind).
//!
//! A round publishes [`BURST`] `u64` events on the bus and yields once; after the last round
//! the caller waits until every event was counted (exactly once: it panics otherwise).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use orchestrator_core::{
    Dispatcher, Event, Orchestrator, OrchestratorContext, OrchestratorHandle, Origin, SignalBus,
};
use orchestrator_tokio::TokioRuntime;

/// Events published per round.
pub(crate) const BURST: u64 = 1024;

/// Counts every event it handles.
struct Counter;

impl Orchestrator for Counter {
    type State = u64;

    fn on_event(&mut self, event: &Event, _origin: Origin, cx: &mut OrchestratorContext<'_, u64>) {
        if event.is::<u64>() {
            cx.update(|n| *n += 1);
        }
    }
}

/// Publishes `rounds` bursts on `bus`, yielding after each.
async fn publish_rounds(bus: &SignalBus, rounds: u64) {
    for round in 0..rounds {
        for i in 0..BURST {
            bus.publish(Event::new(round * BURST + i))
                .expect("the bus is open");
        }
        tokio::task::yield_now().await;
    }
}

/// An orchestrator counting the events of its dispatcher's bus (with the default loop guard,
/// which cuts by causal depth only: these depth-0 events are all handled).
pub(crate) struct Orchestrated {
    handle: OrchestratorHandle<u64>,
    bus: SignalBus,
}

impl Orchestrated {
    /// Starts it on the current tokio runtime.
    pub(crate) fn start() -> Self {
        let dispatcher = Dispatcher::new(TokioRuntime::default());
        let handle = Counter
            .builder(0, &dispatcher)
            .start()
            .expect("the orchestrator starts");
        let bus = dispatcher.bus().clone();
        Orchestrated { handle, bus }
    }

    /// Publishes `rounds` bursts and waits until the orchestrator counted them all.
    pub(crate) async fn run(&self, rounds: u64) -> Duration {
        let target = self.handle.state() + rounds * BURST;
        let began = Instant::now();
        publish_rounds(&self.bus, rounds).await;
        let n = self
            .handle
            .states()
            .wait_for(|n| *n >= target)
            .await
            .expect("the orchestrator runs");
        assert_eq!(n, target, "every event handled exactly once");
        began.elapsed()
    }

    /// Checks that the loop guard dropped nothing, and disposes the orchestrator.
    pub(crate) fn finish(self) {
        assert_eq!(
            self.handle.dropped_events(),
            0,
            "the loop guard drops no burst"
        );
        self.handle.dispose();
    }
}

/// A spawned task reading a raw `Subscription` of its own bus and counting into an atomic
/// (with a `tokio::sync::Notify` to wake the waiter).
pub(crate) struct RawLoop {
    bus: SignalBus,
    counted: Arc<AtomicU64>,
    notify: Arc<tokio::sync::Notify>,
}

impl RawLoop {
    /// Spawns the loop on the current tokio runtime.
    pub(crate) fn start() -> Self {
        let bus = SignalBus::new();
        let counted = Arc::new(AtomicU64::new(0));
        let notify = Arc::new(tokio::sync::Notify::new());
        let mut subscription = bus.subscribe();
        let (c, n) = (counted.clone(), notify.clone());
        tokio::spawn(async move {
            while let Some(event) = subscription.next().await {
                if event.is::<u64>() {
                    c.fetch_add(1, Ordering::Release);
                    n.notify_one();
                }
            }
        });
        RawLoop {
            bus,
            counted,
            notify,
        }
    }

    /// Publishes `rounds` bursts and waits until the loop counted them all.
    pub(crate) async fn run(&self, rounds: u64) -> Duration {
        let target = self.counted.load(Ordering::Acquire) + rounds * BURST;
        let began = Instant::now();
        publish_rounds(&self.bus, rounds).await;
        loop {
            let waiting = self.notify.notified();
            let n = self.counted.load(Ordering::Acquire);
            if n >= target {
                assert_eq!(n, target, "every event counted exactly once");
                break;
            }
            waiting.await;
        }
        began.elapsed()
    }

    /// Closes its bus, which ends the loop.
    pub(crate) fn finish(self) {
        self.bus.close();
    }
}
