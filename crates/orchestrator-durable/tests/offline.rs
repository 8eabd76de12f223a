//! Offline-first: network-bound durable jobs wait for the network, are answered optimistically,
//! survive a crash while queued, are sent in order when the network returns, and a job the
//! server always rejects is poisoned and rolled back. On virtual time, with the connectivity
//! set by hand.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    DataSource, Dispatch, Dispatcher, Event, Executor, Job, JobContext, JobError,
    ManualConnectivity, Orchestrator, OrchestratorContext, OrchestratorHandle, Origin, RetryPolicy,
};
use orchestrator_durable::{DeadLettered, Durable, MemoryStore, Online, Recovery};
use orchestrator_remote::{NodeId, Registry};
use serde::{Deserialize, Serialize};

/// Sends a message; the server answers with its number, or rejects it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Send {
    text: String,
}

/// A message row: what the UI shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    text: String,
    /// The server's number once confirmed.
    number: Option<u32>,
}

impl Job for Send {
    type Output = Row;
    fn output_event(&self, row: &Row) -> Option<impl std::marker::Send + Sync + 'static> {
        Some(row.clone())
    }
}

#[derive(Debug)]
struct Rejected;
impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server rejected it")
    }
}
impl std::error::Error for Rejected {}

/// The server: numbers messages in the order they arrive; rejects those saying "spam".
#[derive(Clone, Default)]
struct Server {
    received: Arc<Mutex<Vec<String>>>,
    /// How many sends run at this moment, and the most seen at once.
    running: Arc<Mutex<(usize, usize)>>,
}

impl Executor<Send> for Server {
    type Error = Rejected;
    async fn execute(&self, job: &Send, cx: JobContext) -> Result<Row, Rejected> {
        {
            let mut r = self.running.lock().unwrap();
            r.0 += 1;
            r.1 = r.1.max(r.0);
        }
        cx.sleep(Duration::from_millis(100)).await; // the round trip
        self.running.lock().unwrap().0 -= 1;
        let mut received = self.received.lock().unwrap();
        received.push(job.text.clone());
        if job.text == "spam" {
            return Err(Rejected);
        }
        Ok(Row {
            text: job.text.clone(),
            number: Some(received.len() as u32),
        })
    }
}

/// The UI's state: the rows, optimistic until confirmed, removed if their job is poisoned.
#[derive(Debug, Clone, Default, PartialEq)]
struct Outbox {
    rows: Vec<Row>,
    rolled_back: Vec<String>,
}

struct OutboxOrchestrator;
impl Orchestrator for OutboxOrchestrator {
    type State = Outbox;
    fn on_event(&mut self, event: &Event, _: Origin, cx: &mut OrchestratorContext<'_, Outbox>) {
        if let Some(row) = event.downcast_ref::<Row>() {
            let row = row.clone();
            let optimistic = event.data_source() == Some(DataSource::Optimistic);
            cx.update(
                |outbox| match outbox.rows.iter_mut().find(|r| r.text == row.text) {
                    Some(existing) if !optimistic => *existing = row,
                    Some(_) => {}
                    None => outbox.rows.push(row),
                },
            );
        } else if let Some(dead) = event.downcast_ref::<DeadLettered>() {
            let Some(Ok(row)) = dead.placeholder_as::<Row>() else {
                return;
            };
            cx.update(|outbox| {
                outbox.rows.retain(|r| r.text != row.text);
                outbox.rolled_back.push(row.text);
            });
        }
    }
}

struct App {
    rt: VirtualRuntime,
    durable: Durable,
    outbox: OrchestratorHandle<Outbox>,
}

fn start(
    store: &MemoryStore,
    network: &ManualConnectivity,
    server: &Server,
    concurrency: usize,
) -> (App, Recovery) {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let mut registry = Registry::new(NodeId::new(1));
    registry.register_job::<Send>("chat.send").unwrap();
    let (durable, recovery) = Durable::builder(store.clone(), Arc::new(registry))
        .register_online::<Send, _>(
            server.clone(),
            Online {
                concurrency,
                max_failures: 3,
            },
        )
        .connectivity(network.clone())
        .inline_commits()
        .open(&dispatcher)
        .unwrap();
    let outbox = OutboxOrchestrator
        .builder(Outbox::default(), &dispatcher)
        .start()
        .unwrap();
    (
        App {
            rt,
            durable,
            outbox,
        },
        recovery,
    )
}

/// A first start on a new store, its recovery (empty) resumed.
fn fresh(online: bool, concurrency: usize) -> (App, ManualConnectivity, Server) {
    let network = ManualConnectivity::new(online);
    let server = Server::default();
    let (app, recovery) = start(&MemoryStore::new(), &network, &server, concurrency);
    recovery.resume();
    (app, network, server)
}

fn send(app: &App, text: &str) -> orchestrator_core::JobHandle<Row> {
    app.outbox
        .job(Send { text: text.into() })
        .placeholder(Row {
            text: text.into(),
            number: None,
        })
        .retry(RetryPolicy::fixed(10, Duration::from_secs(1)))
        .dispatch()
}

fn texts(outbox: &Outbox) -> Vec<(&str, Option<u32>)> {
    outbox
        .rows
        .iter()
        .map(|r| (r.text.as_str(), r.number))
        .collect()
}

#[test]
fn queued_offline_answered_at_once_kept_across_a_crash_sent_in_order_and_rolled_back_if_poisoned() {
    let store = MemoryStore::new();
    let network = ManualConnectivity::new(false);
    let server = Server::default();

    // Offline: three sends (one the server will always reject) are stored and shown at once.
    let (app, recovery) = start(&store, &network, &server, 1);
    recovery.resume();
    let handles: Vec<_> = ["hello", "spam", "bye"].map(|t| send(&app, t)).into();
    for handle in &handles {
        app.rt
            .block_on(handle.stored())
            .expect("queued: stored while offline");
    }
    app.rt.run_until_stalled();
    app.rt.advance(Duration::from_secs(60));
    assert!(
        server.received.lock().unwrap().is_empty(),
        "nothing sent offline"
    );
    assert!(
        handles.iter().all(|h| !h.is_finished()),
        "handles stay pending"
    );
    assert_eq!(
        texts(&app.outbox.state()),
        [("hello", None), ("spam", None), ("bye", None)]
    );
    assert_eq!(app.durable.stats().waiting_for_network, 3);

    // The process dies while offline with the three queued.
    app.rt.shutdown();
    drop((app, handles));

    // Started again, still offline: the rows are back (their placeholders, again), queued.
    let (app, mut recovery) = start(&store, &network, &server, 1);
    assert_eq!(recovery.len(), 3);
    let adopted = recovery.adopt::<Send>(&app.outbox);
    drop(recovery);
    app.rt.run_until_stalled();
    assert_eq!(
        texts(&app.outbox.state()),
        [("hello", None), ("spam", None), ("bye", None)]
    );
    app.rt.advance(Duration::from_secs(60));
    assert!(server.received.lock().unwrap().is_empty());

    // Online: sent in the order they were accepted, one at a time, and confirmed.
    network.set_online(true);
    for id in &adopted {
        app.rt.block_on(app.outbox.handled(*id)).unwrap();
    }
    let received = server.received.lock().unwrap().clone();
    // "spam" keeps its turn through its retries: "bye" never overtakes it.
    assert_eq!(
        received,
        ["hello", "spam", "spam", "spam", "bye"],
        "first accepted, first sent"
    );
    assert_eq!(server.running.lock().unwrap().1, 1, "one at a time");
    let outbox = app.outbox.state();
    // "spam" was poisoned after 3 failures: rolled back; the others confirmed.
    assert_eq!(
        texts(&outbox),
        [("hello", Some(1)), ("bye", Some(received.len() as u32))]
    );
    assert_eq!(outbox.rolled_back, ["spam"]);
    let dead = app.durable.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("poisoned"), "{}", dead[0].reason);
    assert_eq!(app.durable.stats().waiting_for_network, 0);
}

#[test]
fn flapping_connectivity_sends_each_job_once_at_a_time_and_loses_none() {
    let (app, network, server) = fresh(false, 2);
    let texts: Vec<String> = (0..20).map(|n| format!("m{n}")).collect();
    let handles: Vec<_> = texts.iter().map(|t| send(&app, t)).collect();
    // The network flips every 30 ms (of virtual time) while the sends (100 ms each) go out.
    let mut online = false;
    for _ in 0..400 {
        online = !online;
        network.set_online(online);
        app.rt.advance(Duration::from_millis(30));
    }
    network.set_online(true);
    for handle in handles {
        let row = app.rt.block_on(handle).expect("every job ends confirmed");
        assert!(row.value.number.is_some());
    }
    let received = server.received.lock().unwrap().clone();
    assert_eq!(received, texts, "each sent once, in order");
    assert!(
        server.running.lock().unwrap().1 <= 2,
        "never more than its concurrency"
    );
}

#[test]
fn going_offline_while_a_job_is_sent_does_not_lose_it() {
    let (app, network, _server) = fresh(true, 1);
    let first = send(&app, "first");
    let second = send(&app, "second");
    app.rt.run_until_stalled();
    app.rt.advance(Duration::from_millis(50)); // "first" is on the wire
    network.set_online(false);
    app.rt.advance(Duration::from_millis(50));
    assert_eq!(app.rt.block_on(first).unwrap().value.number, Some(1));
    app.rt.advance(Duration::from_secs(10));
    assert!(!second.is_finished(), "the next waits for the network");
    network.set_online(true);
    assert_eq!(app.rt.block_on(second).unwrap().value.number, Some(2));
}

#[test]
fn a_queued_job_cancelled_while_offline_ends_and_lets_the_next_go() {
    let (app, network, server) = fresh(false, 1);
    let first = send(&app, "first");
    let second = send(&app, "second");
    app.rt.run_until_stalled();
    first.cancel();
    assert!(matches!(
        app.rt.block_on(first),
        Err(JobError::Cancelled { .. })
    ));
    network.set_online(true);
    assert_eq!(app.rt.block_on(second).unwrap().value.number, Some(1));
    assert_eq!(*server.received.lock().unwrap(), ["second"]);
}

#[test]
fn a_dispatch_with_the_dedup_key_of_a_queued_job_joins_it() {
    let (app, network, server) = fresh(false, 1);
    let dedup = |text: &str| {
        app.outbox
            .job(Send { text: text.into() })
            .dedup("draft-42")
            .dispatch()
    };
    let first = dedup("draft v1");
    let second = dedup("draft v2"); // joins the queued one: same job, same outcome
    assert_eq!(first.id(), second.id());
    assert!(
        app.rt.block_on(second.stored()).is_err(),
        "a join stores nothing of its own"
    );
    network.set_online(true);
    let (a, b) = (
        app.rt.block_on(first).unwrap(),
        app.rt.block_on(second).unwrap(),
    );
    assert_eq!(a.value, b.value);
    assert_eq!(*server.received.lock().unwrap(), ["draft v1"], "sent once");
}
