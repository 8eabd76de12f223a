//! Events between processes' buses: [`EventBridge`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use orchestrator_core::runtime::Timer;
use orchestrator_core::{Dispatcher, Event, SignalBus};
use orchestrator_remote::{Registry, WireEvent};
use tokio::task::JoinHandle;

/// The subject prefix of the subjects a bridge uses, unless told otherwise.
pub const DEFAULT_PREFIX: &str = "orchestrator";

/// What a bridge has done so far; every event it did not carry is counted here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Events sent to the other processes.
    pub sent: u64,
    /// Events received from other processes and decoded (those the local bus refused are
    /// also counted in `bus_refused`).
    pub received: u64,
    /// Local events whose payload type has no wire name: they stay local (not a loss).
    pub local_only: u64,
    /// Events that could not be encoded (a payload serde refused).
    pub encode_failed: u64,
    /// Events the NATS client refused to send (disconnected, closed, too large).
    pub send_failed: u64,
    /// Messages from other processes that could not be decoded (unknown wire name, bad
    /// payload, not an event).
    pub decode_failed: u64,
    /// Received events the local bus refused (it was closed).
    pub bus_refused: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    local_only: AtomicU64,
    encode_failed: AtomicU64,
    send_failed: AtomicU64,
    decode_failed: AtomicU64,
    bus_refused: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> BridgeStats {
        BridgeStats {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            local_only: self.local_only.load(Ordering::Relaxed),
            encode_failed: self.encode_failed.load(Ordering::Relaxed),
            send_failed: self.send_failed.load(Ordering::Relaxed),
            decode_failed: self.decode_failed.load(Ordering::Relaxed),
            bus_refused: self.bus_refused.load(Ordering::Relaxed),
        }
    }
}

/// Why a bridge could not start.
#[derive(Debug)]
pub struct BridgeError(async_nats::SubscribeError);

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the bridge could not subscribe: {}", self.0)
    }
}

impl std::error::Error for BridgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Carries the events of one process's bus to the buses of the others, and theirs to it,
/// over core NATS.
///
/// An event crosses when its payload type is registered in the [`Registry`] (it gets a wire
/// name, and the other processes decode it with the same name); others stay local. Each
/// process runs one bridge per bus, with its own node id; all of them use the same subject
/// prefix. On the other side the event keeps its correlation id (a local alias there), job
/// type, causal depth and data source, and says which node it came from
/// ([`Event::remote_node`]): the orchestrators there see it as a *passive* event (not of their
/// own jobs). A bridge never sends back an event it received, and ignores its own.
///
/// Delivery is **at most once**, in publish order per process: core NATS does not keep
/// messages for a process that is not connected. Every event the bridge could not carry is
/// counted in [`stats`](Self::stats).
///
/// Subjects: `<prefix>.events.<wire name>`.
pub struct EventBridge {
    counters: Arc<Counters>,
    tasks: [JoinHandle<()>; 2],
}

impl EventBridge {
    /// Starts bridging `dispatcher`'s bus under the default subject prefix.
    ///
    /// Must be called in a tokio runtime (the NATS client's).
    ///
    /// # Errors
    ///
    /// [`BridgeError`] if the subscription to the other processes' events fails.
    pub async fn start<R>(
        client: Client,
        registry: Arc<Registry>,
        dispatcher: &Dispatcher<R>,
    ) -> Result<Self, BridgeError> {
        Self::start_on(
            client,
            registry,
            dispatcher,
            DEFAULT_PREFIX,
            dispatcher.bus(),
        )
        .await
    }

    /// Starts bridging `bus` (one of `dispatcher`'s, whose clock stamps received events)
    /// under subject prefix `prefix`.
    ///
    /// # Errors
    ///
    /// [`BridgeError`] if the subscription to the other processes' events fails.
    pub async fn start_on<R>(
        client: Client,
        registry: Arc<Registry>,
        dispatcher: &Dispatcher<R>,
        prefix: &str,
        bus: &SignalBus,
    ) -> Result<Self, BridgeError> {
        let counters = Arc::new(Counters::default());
        let subject = |name: &str| format!("{prefix}.events.{name}");
        let mut inbound = client.subscribe(subject(">")).await.map_err(BridgeError)?;
        // Subscribed before this returns: nothing published afterwards is missed.
        let mut outbound = bus.subscribe();

        let out_counters = counters.clone();
        let out_registry = registry.clone();
        let out_prefix = prefix.to_owned();
        let sender = tokio::spawn(async move {
            while let Some(event) = outbound.next().await {
                send(&client, &out_registry, &out_prefix, &event, &out_counters).await;
            }
        });

        let in_counters = counters.clone();
        let local = bus.clone();
        let clock = dispatcher.runtime().clone();
        let receiver = tokio::spawn(async move {
            while let Some(message) = inbound.next().await {
                let wire = match WireEvent::from_bytes(&message.payload) {
                    Ok(wire) => wire,
                    Err(_) => {
                        Counters::add(&in_counters.decode_failed);
                        continue;
                    }
                };
                if wire.node == registry.node() {
                    continue; // our own, echoed by the server
                }
                match registry.decode_event(&wire, clock.now()) {
                    Ok(event) => {
                        // Counted first: a subscriber may see the event before this task
                        // runs again.
                        Counters::add(&in_counters.received);
                        if local.publish(event).is_err() {
                            Counters::add(&in_counters.bus_refused);
                        }
                    }
                    Err(_) => Counters::add(&in_counters.decode_failed),
                }
            }
        });
        Ok(Self {
            counters,
            tasks: [sender, receiver],
        })
    }

    /// Returns what the bridge has carried and not carried so far.
    pub fn stats(&self) -> BridgeStats {
        self.counters.snapshot()
    }

    /// Stops bridging (dropping the bridge does the same).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for EventBridge {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for EventBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBridge")
            .field("stats", &self.stats())
            .finish()
    }
}

async fn send(
    client: &Client,
    registry: &Registry,
    prefix: &str,
    event: &Event,
    counters: &Counters,
) {
    if event.remote_node().is_some() {
        return; // received from another process: never sent back
    }
    let wire = match registry.encode_event(event) {
        Ok(Some(wire)) => wire,
        Ok(None) => return Counters::add(&counters.local_only),
        Err(_) => return Counters::add(&counters.encode_failed),
    };
    let Ok(bytes) = wire.to_bytes() else {
        return Counters::add(&counters.encode_failed);
    };
    let subject = format!("{prefix}.events.{}", wire.name);
    match client.publish(subject, Bytes::from(bytes)).await {
        Ok(()) => Counters::add(&counters.sent),
        Err(_) => Counters::add(&counters.send_failed),
    }
}
