//! The event bridge against a real NATS server (feature `server-tests`; `.ci/run` starts
//! `nats-server` on 127.0.0.1 and sets `NATS_URL`). Two dispatchers, each with its own NATS
//! connection, registry and node id, stand for two processes.

#![cfg(feature = "server-tests")]

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use orchestrator_core::{
    Dispatch, Dispatcher, Event, Executor, Job, JobContext, Orchestrator, OrchestratorContext,
    Origin,
};
use orchestrator_nats::{BridgeStats, EventBridge};
use orchestrator_remote::{NodeId, Registry};
use orchestrator_tokio::TokioRuntime;
use serde::{Deserialize, Serialize};

/// A bound on every wait, so that a broken bridge fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(20);

fn url() -> String {
    std::env::var("NATS_URL")
        .expect("the server tests need a NATS server: set NATS_URL (`.ci/run` starts one)")
}

#[derive(Serialize, Deserialize)]
struct Charge {
    cents: u64,
}
impl Job for Charge {
    type Output = ();
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Charged {
    cents: u64,
}
/// Not registered: stays in its process.
struct Audit;

struct Biller;
impl Executor<Charge> for Biller {
    type Error = std::convert::Infallible;
    async fn execute(&self, job: &Charge, cx: JobContext) -> Result<(), Self::Error> {
        cx.emit(Audit).unwrap();
        cx.emit(Charged { cents: job.cents }).unwrap();
        Ok(())
    }
}

fn registry(node: u64) -> Arc<Registry> {
    let mut registry = Registry::new(NodeId::new(node));
    registry
        .register_job::<Charge>("billing.charge")
        .unwrap()
        .register_event::<Charged>("billing.charged")
        .unwrap();
    Arc::new(registry)
}

/// Counts the `Charged` events it sees, by origin.
struct Ledger;
impl Orchestrator for Ledger {
    type State = (u32, u32); // (active, passive)
    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, (u32, u32)>,
    ) {
        if event.is::<Charged>() {
            cx.update(|(active, passive)| match origin {
                Origin::Active => *active += 1,
                Origin::Passive => *passive += 1,
            });
        }
    }
}

/// Awaits `future`, failing with `what` and the bridges' counts if it takes longer than
/// [`PATIENCE`].
async fn within<F: std::future::Future>(
    what: &str,
    bridges: &[&EventBridge],
    future: F,
) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => {
            let stats: Vec<BridgeStats> = bridges.iter().map(|b| b.stats()).collect();
            panic!("{what}: nothing within {PATIENCE:?}; bridges: {stats:?}")
        }
    }
}

/// Starts a durable bridge for node `node` on `dispatcher`'s bus (events kept 10 minutes).
async fn durable(
    nats: &async_nats::Client,
    node: u64,
    dispatcher: &Dispatcher<TokioRuntime>,
    prefix: &str,
) -> EventBridge {
    EventBridge::start_durable(
        nats.clone(),
        registry(node),
        dispatcher,
        prefix,
        dispatcher.bus(),
        Duration::from_secs(600),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_once_keep_their_envelope_and_never_echo() {
    let prefix = format!("test-{}", NodeId::random().as_u64());
    let (billing_nats, shop_nats) = (
        async_nats::connect(url()).await.expect("connects"),
        async_nats::connect(url()).await.expect("connects"),
    );
    let (billing_registry, shop_registry) = (registry(1), registry(2));
    let billing = Dispatcher::new(TokioRuntime::default());
    let shop = Dispatcher::new(TokioRuntime::default());
    billing.register(Biller);
    let billing_bridge = EventBridge::start_on(
        billing_nats.clone(),
        billing_registry.clone(),
        &billing,
        &prefix,
        billing.bus(),
    )
    .await
    .unwrap();
    let shop_bridge = EventBridge::start_on(
        shop_nats.clone(),
        shop_registry.clone(),
        &shop,
        &prefix,
        shop.bus(),
    )
    .await
    .unwrap();
    // The server has both subscriptions once each connection's flush returns.
    billing_nats.flush().await.unwrap();
    shop_nats.flush().await.unwrap();

    let ledger = Ledger.builder((0, 0), &shop).start().unwrap();
    let mut at_shop = shop.bus().subscribe_to::<Charged>();
    let mut at_billing = billing.bus().subscribe_to::<Charged>();

    let handle = billing.dispatch(Charge { cents: 250 });
    let job = handle.id();
    handle.await.unwrap();

    let seen = within(
        "the event at the shop",
        &[&billing_bridge, &shop_bridge],
        at_shop.next(),
    )
    .await
    .unwrap();
    assert_eq!(*seen, Charged { cents: 250 });
    let event = seen.event();
    assert_eq!(event.remote_node(), Some(1));
    assert!(event.is_from_job::<Charge>());
    let alias = event.correlation_id().unwrap();
    assert_eq!(
        shop_registry.wire_id(alias),
        billing_registry.wire_id(job),
        "the shop's alias names the billing job"
    );
    let mut states = ledger.states();
    within(
        "the shop's orchestrator",
        &[&billing_bridge, &shop_bridge],
        states.wait_for(|s| *s == (0, 1)),
    )
    .await
    .unwrap();

    // The shop publishes one of its own: billing gets it, and nothing twice.
    shop.bus().emit(Charged { cents: 999 }).unwrap();
    let first = within(
        "billing's own event",
        &[&billing_bridge, &shop_bridge],
        at_billing.next(),
    )
    .await
    .unwrap();
    assert_eq!((first.cents, first.event().remote_node()), (250, None));
    let second = within(
        "the shop's event at billing",
        &[&billing_bridge, &shop_bridge],
        at_billing.next(),
    )
    .await
    .unwrap();
    assert_eq!((second.cents, second.event().remote_node()), (999, Some(2)));

    // Flushed, every send has reached the server; the counts say what crossed.
    billing_nats.flush().await.unwrap();
    shop_nats.flush().await.unwrap();
    let billing_stats = billing_bridge.stats();
    let shop_stats = shop_bridge.stats();
    assert_eq!(
        (billing_stats.sent, billing_stats.received),
        (1, 1),
        "{billing_stats:?}"
    );
    assert_eq!(
        (shop_stats.sent, shop_stats.received),
        (1, 1),
        "{shop_stats:?}"
    );
    assert!(
        billing_stats.local_only >= 1,
        "Audit stayed local: {billing_stats:?}"
    );
    let clean =
        |s: BridgeStats| s.encode_failed + s.send_failed + s.decode_failed + s.bus_refused == 0;
    assert!(clean(billing_stats) && clean(shop_stats));
    let own = at_shop
        .try_next()
        .expect("the shop's own event, on its bus");
    assert_eq!((own.cents, own.event().remote_node()), (999, None));
    assert!(
        at_shop.try_next().is_none(),
        "no echo came back to the shop"
    );
    ledger.dispose();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_subject_is_counted_not_fatal() {
    let prefix = format!("test-{}", NodeId::random().as_u64());
    let nats = async_nats::connect(url()).await.expect("connects");
    let dispatcher = Dispatcher::new(TokioRuntime::default());
    let bridge = EventBridge::start_on(
        nats.clone(),
        registry(5),
        &dispatcher,
        &prefix,
        dispatcher.bus(),
    )
    .await
    .unwrap();
    nats.flush().await.unwrap();
    let other = async_nats::connect(url()).await.expect("connects");
    other
        .publish(
            format!("{prefix}.events.billing.charged"),
            "not json".into(),
        )
        .await
        .unwrap();
    other.flush().await.unwrap();
    // Then a valid event from node 6: once it is in, the garbage (sent before) was handled.
    let mut sender = Registry::new(NodeId::new(6));
    sender.register_event::<Charged>("billing.charged").unwrap();
    let wire = sender
        .encode_event(&Event::new(Charged { cents: 1 }))
        .unwrap()
        .unwrap();
    let mut at_bus = dispatcher.bus().subscribe_to::<Charged>();
    other
        .publish(
            format!("{prefix}.events.billing.charged"),
            wire.to_bytes().unwrap().into(),
        )
        .await
        .unwrap();
    within("the valid event", &[&bridge], at_bus.next())
        .await
        .unwrap();
    let stats = bridge.stats();
    assert_eq!((stats.decode_failed, stats.received), (1, 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_bridge_delivers_what_was_published_while_it_was_down() {
    let prefix = format!("test-{}", NodeId::random().as_u64());
    let (billing_nats, shop_nats) = (
        async_nats::connect(url()).await.expect("connects"),
        async_nats::connect(url()).await.expect("connects"),
    );
    let billing = Dispatcher::new(TokioRuntime::default());
    let billing_bridge = durable(&billing_nats, 1, &billing, &prefix).await;
    let shop = Dispatcher::new(TokioRuntime::default());
    let start_shop = || durable(&shop_nats, 2, &shop, &prefix);
    let mut at_shop = shop.bus().subscribe_to::<Charged>();
    let first = start_shop().await;
    billing.bus().emit(Charged { cents: 1 }).unwrap();
    let seen = within(
        "the first event",
        &[&billing_bridge, &first],
        at_shop.next(),
    )
    .await;
    assert_eq!(seen.map(|e| e.cents), Some(1));
    first.stop().await; // the shop's bridge is down ...
    for cents in 2..=4 {
        billing.bus().emit(Charged { cents }).unwrap();
    }
    within("billing stored them", &[&billing_bridge], async {
        while billing_bridge.stats().sent < 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // ... and up again, with the same node id: what it missed comes, in order.
    let again = start_shop().await;
    for cents in 2..=4 {
        let seen = within("a missed event", &[&billing_bridge, &again], at_shop.next()).await;
        assert_eq!(
            seen.map(|e| (e.cents, e.event().remote_node())),
            Some((cents, Some(1)))
        );
    }
    assert_eq!(billing_bridge.stats().send_failed, 0);
}

/// A durable bridge started again (a process restarted, or a bridge stopped and started) sends
/// its events under message ids of its own: the server never drops them as duplicates of the
/// previous start's, whose ids counted from 1 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_bridge_started_again_is_not_taken_for_its_previous_start() {
    let prefix = format!("test-{}", NodeId::random().as_u64());
    let (billing_nats, shop_nats) = (
        async_nats::connect(url()).await.expect("connects"),
        async_nats::connect(url()).await.expect("connects"),
    );
    let billing = Dispatcher::new(TokioRuntime::default());
    let start_billing = || durable(&billing_nats, 1, &billing, &prefix);
    let shop = Dispatcher::new(TokioRuntime::default());
    let shop_bridge = durable(&shop_nats, 2, &shop, &prefix).await;
    let mut at_shop = shop.bus().subscribe_to::<Charged>();
    for (start, cents) in [(1, [1, 2]), (2, [10, 20])] {
        let bridge = start_billing().await;
        for cents in cents {
            billing.bus().emit(Charged { cents }).unwrap();
            let seen = within("an event", &[&bridge, &shop_bridge], at_shop.next()).await;
            assert_eq!(seen.map(|e| e.cents), Some(cents), "start {start}");
        }
        // (Counted once the server's acknowledgement is back, maybe after the shop saw it.)
        within("both counted as sent", &[&bridge], async {
            while bridge.stats().sent < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert_eq!(bridge.stats().send_failed, 0, "start {start}");
        bridge.stop().await;
    }
}
