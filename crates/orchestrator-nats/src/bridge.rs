//! Events between processes' buses: [`EventBridge`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use orchestrator_core::runtime::Runtime;
use orchestrator_core::{Dispatcher, Event, SignalBus};
use orchestrator_remote::{Registry, WireEvent};
use tokio::task::JoinHandle;

use crate::remote::token;

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

/// Why a bridge could not start (the subscription, or in durable mode the stream or the
/// consumer, could not be made).
#[derive(Debug)]
pub struct BridgeError(String);

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the bridge could not start: {}", self.0)
    }
}

impl std::error::Error for BridgeError {}

fn failed(e: impl std::fmt::Display) -> BridgeError {
    BridgeError(e.to_string())
}

/// Carries the events of one process's bus to the buses of the others, and theirs to it,
/// over core NATS. Once a start function returns, the events other processes publish reach
/// this bus.
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
/// messages for a process that is not connected ([`start_durable`](Self::start_durable) keeps
/// them, at least once). Every event the bridge could not carry is counted in
/// [`stats`](Self::stats).
///
/// Subjects: `<prefix>.events.<wire name>`.
pub struct EventBridge {
    counters: Arc<Counters>,
    tasks: Vec<JoinHandle<()>>,
    client: Client,
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
        let mut inbound = client.subscribe(subject(">")).await.map_err(failed)?;
        // Subscribed, here and at the server, before this returns: nothing published
        // afterwards is missed.
        crate::round_trip(&client).await.map_err(failed)?;
        let mut outbound = bus.subscribe();

        let out_counters = counters.clone();
        let out_registry = registry.clone();
        let out_prefix = prefix.to_owned();
        let out_client = client.clone();
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
                receive(&registry, &message.payload, &local, &*clock, &in_counters);
            }
        });
        Ok(Self {
            counters,
            tasks: vec![sender, receiver],
            client: out_client,
        })
    }

    /// Starts bridging `bus` in **durable** mode: events go through a JetStream stream
    /// (`<prefix>_events`, subjects `<prefix>.events.<wire name>`, kept for `retention`), and
    /// each process reads it through a durable consumer named after its node. A process that
    /// was down (or disconnected) receives, when its bridge starts again with the same node id,
    /// the events published meanwhile (those still within `retention`); a first start receives
    /// the events published from then on. Delivery is **at least once**, in publish order per
    /// process, except that an event whose acknowledgement was lost (the process died while
    /// handling it) comes again later, after the server's ack wait.
    ///
    /// # Errors
    ///
    /// [`BridgeError`] if the stream or the consumer cannot be made.
    pub async fn start_durable<R>(
        client: Client,
        registry: Arc<Registry>,
        dispatcher: &Dispatcher<R>,
        prefix: &str,
        bus: &SignalBus,
        retention: Duration,
    ) -> Result<Self, BridgeError> {
        let out_client = client.clone();
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: format!("{}_events", token(prefix)),
                subjects: vec![format!("{prefix}.events.>")],
                max_age: retention,
                ..Default::default()
            })
            .await
            .map_err(failed)?;
        let name = format!("events-{:016x}", registry.node().as_u64());
        let consumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    deliver_policy: DeliverPolicy::New,
                    ack_policy: AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .map_err(failed)?;
        let counters = Arc::new(Counters::default());
        let mut outbound = bus.subscribe();
        let out_counters = counters.clone();
        let out_registry = registry.clone();
        let out_prefix = prefix.to_owned();
        // Message ids name this start of this bridge: a sequence alone (or with the node id)
        // starts again with every start, and the server would drop a restarted bridge's
        // events as duplicates of the previous start's within its duplicate window.
        let run = orchestrator_remote::NodeId::random().as_u64();
        let sender = tokio::spawn(async move {
            let mut sequence = 0u64;
            while let Some(event) = outbound.next().await {
                let Some(wire) = wire_of(&out_registry, &event, &out_counters) else {
                    continue;
                };
                sequence += 1;
                let headers = crate::message_id(&format!(
                    "{:016x}/{run:016x}/{sequence}",
                    wire.node.as_u64()
                ));
                let subject = format!("{out_prefix}.events.{}", wire.name);
                let Ok(bytes) = wire.to_bytes() else {
                    Counters::add(&out_counters.encode_failed);
                    continue;
                };
                // Awaited one by one: the stream keeps this process's order.
                let stored = match js
                    .publish_with_headers(subject, headers, Bytes::from(bytes))
                    .await
                {
                    // A duplicate was not stored: another message had this id.
                    Ok(ack) => ack.await.is_ok_and(|ack| !ack.duplicate),
                    Err(_) => false,
                };
                if stored {
                    Counters::add(&out_counters.sent);
                } else {
                    Counters::add(&out_counters.send_failed);
                }
            }
        });
        let in_counters = counters.clone();
        let local = bus.clone();
        let clock = dispatcher.runtime().clone();
        let receiver = tokio::spawn(async move {
            loop {
                let Ok(mut messages) = consumer.messages().await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                while let Some(message) = messages.next().await {
                    let Ok(message) = message else { break };
                    receive(&registry, &message.payload, &local, &*clock, &in_counters);
                    let _ = message.ack().await;
                }
            }
        });
        Ok(Self {
            counters,
            tasks: vec![sender, receiver],
            client: out_client,
        })
    }

    /// Returns what the bridge has carried and not carried so far.
    pub fn stats(&self) -> BridgeStats {
        self.counters.snapshot()
    }

    /// Stops bridging, and returns once the server knows: its subscriptions are gone, so
    /// nothing more is delivered to them (in durable mode, what is published from now on waits
    /// in the stream for the next start). Dropping the bridge stops it too, without waiting.
    pub async fn stop(mut self) {
        for task in std::mem::take(&mut self.tasks) {
            task.abort();
            let _ = task.await; // ended: its subscription is dropped, its unsubscription queued
        }
        // Not `flush`, which only empties the client's buffer: the server must have processed
        // the unsubscriptions before this returns.
        if crate::round_trip(&self.client).await.is_err() {
            let _ = self.client.flush().await;
        }
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

/// Publishes a received event on the local bus, unless it is this node's own.
fn receive(
    registry: &Registry,
    payload: &[u8],
    local: &SignalBus,
    clock: &dyn Runtime,
    counters: &Counters,
) {
    let wire = match WireEvent::from_bytes(payload) {
        Ok(wire) => wire,
        Err(_) => return Counters::add(&counters.decode_failed),
    };
    if wire.node == registry.node() {
        return; // our own, echoed by the server
    }
    match registry.decode_event(&wire, clock.now()) {
        Ok(event) => {
            // Counted first: a subscriber may see the event before this task runs again.
            Counters::add(&counters.received);
            if local.publish(event).is_err() {
                Counters::add(&counters.bus_refused);
            }
        }
        Err(_) => Counters::add(&counters.decode_failed),
    }
}

/// The wire form of a local event, or `None` (counted) if it does not cross.
fn wire_of(registry: &Registry, event: &Event, counters: &Counters) -> Option<WireEvent> {
    if event.remote_node().is_some() {
        return None; // received from another process: never sent back
    }
    match registry.encode_event(event) {
        Ok(Some(wire)) => Some(wire),
        Ok(None) => {
            Counters::add(&counters.local_only);
            None
        }
        Err(_) => {
            Counters::add(&counters.encode_failed);
            None
        }
    }
}

async fn send(
    client: &Client,
    registry: &Registry,
    prefix: &str,
    event: &Event,
    counters: &Counters,
) {
    let Some(wire) = wire_of(registry, event, counters) else {
        return;
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
