//! An offline-first page: an outbox of messages that works without the network.
//!
//! **Send** dispatches a [`SendMessage`] job, durable and network-bound:
//!
//! 1. it is written to IndexedDB before anything else happens, and its row appears at once
//!    (its placeholder, published as an optimistic output event): `first · queued`;
//! 2. while the browser is offline it waits; a reload, a closed tab or a browser restart
//!    keeps it (the page adopts the recovered jobs, whose placeholders are published again);
//! 3. when the browser is online again, the queued messages are posted to the server one at a
//!    time, first accepted first sent, and each row shows the server's number: `first · sent #1`;
//! 4. a message the server rejects every time is poisoned after [`MAX_FAILURES`] failed
//!    attempts: the dead-letter event carries its placeholder, and the row moves to the
//!    rolled-back list.
//!
//! Everything but the DOM and `fetch` is in this library and builds on any target: the job
//! and its output ([`SendMessage`], [`Message`]), the outbox's state and orchestrator
//! ([`Outbox`], [`OutboxOrchestrator`]), the durable set-up ([`durable`]) and the dispatch
//! ([`send`]). The page (`page.rs`, `wasm32` only) opens the IndexedDB store (or falls back to
//! memory, and says so), follows the browser's connectivity, posts with `fetch`, and draws the
//! rows. Build and serve it with (from the workspace root; `.ci/run` does the same, then drives
//! the page in headless Chromium with the network switched off and on):
//!
//! ```text
//! cargo build -p orchestrator-offline-example --target wasm32-unknown-unknown --release
//! wasm-bindgen --target web --no-typescript --out-dir target/offline-example/pkg \
//!     target/wasm32-unknown-unknown/release/orchestrator_offline_example.wasm
//! cp examples/offline/index.html examples/offline/sw.js target/offline-example/
//! python3 .ci/offline_server.py --directory target/offline-example --port 8000
//! ```
//!
//! then open <http://127.0.0.1:8000/>. The server numbers the messages it accepts and refuses
//! any whose text contains `poison`.

#![forbid(unsafe_code)]

#[cfg(target_arch = "wasm32")]
mod page;

use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::{
    Connectivity, DataSource, Dispatch, Event, Executor, Job, JobHandle, Orchestrator,
    OrchestratorContext, OrchestratorHandle, Origin, RetryPolicy,
};
use orchestrator_durable::{DeadLettered, Durable, DurableBuilder, Online, Store};
use orchestrator_remote::{NodeId, Registry};
use serde::{Deserialize, Serialize};

/// The wire name of [`SendMessage`] in the store.
pub const SEND: &str = "outbox.send";

/// After this many failed attempts a message is poisoned (and rolled back).
pub const MAX_FAILURES: u32 = 3;

/// Posts a message to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendMessage {
    /// Made by the page when the user sends: the row's identity, and the server's key for
    /// recognising a message it has already numbered.
    pub key: String,
    /// What the user typed.
    pub text: String,
}

/// A message as the outbox shows it: its number once the server has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The message's key.
    pub key: String,
    /// Its text.
    pub text: String,
    /// The server's number, once sent.
    pub number: Option<u32>,
}

impl Job for SendMessage {
    type Output = Message;
    fn output_event(&self, message: &Message) -> Option<impl Send + Sync + 'static> {
        Some(message.clone())
    }
}

/// Why a send failed (each failure counts towards [`MAX_FAILURES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The request did not reach the server.
    Network(String),
    /// The server refused the message.
    Rejected(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Network(detail) => write!(f, "the server could not be reached: {detail}"),
            SendError::Rejected(reason) => write!(f, "the server refused it: {reason}"),
        }
    }
}

impl std::error::Error for SendError {}

/// What the page shows: the messages (queued or sent), and those rolled back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outbox {
    /// In the order they were sent by the user.
    pub rows: Vec<Message>,
    /// Poisoned messages, with the reason.
    pub rolled_back: Vec<(Message, String)>,
}

/// One row of the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowView {
    /// The element id: `msg-<key>`.
    pub id: String,
    /// The CSS class: `queued`, `sent` or `rolled-back`.
    pub class: &'static str,
    /// The row's text.
    pub line: String,
}

impl Outbox {
    /// The message rows, queued or sent.
    pub fn rows(&self) -> Vec<RowView> {
        self.rows
            .iter()
            .map(|m| match m.number {
                Some(n) => RowView {
                    id: format!("msg-{}", m.key),
                    class: "sent",
                    line: format!("{} · sent #{n}", m.text),
                },
                None => RowView {
                    id: format!("msg-{}", m.key),
                    class: "queued",
                    line: format!("{} · queued", m.text),
                },
            })
            .collect()
    }

    /// The rolled-back rows.
    pub fn rolled_back(&self) -> Vec<RowView> {
        self.rolled_back
            .iter()
            .map(|(m, reason)| RowView {
                id: format!("dead-{}", m.key),
                class: "rolled-back",
                line: format!("{} · rolled back: {reason}", m.text),
            })
            .collect()
    }

    /// One line for the page's summary.
    pub fn summary(&self) -> String {
        let queued = self.rows.iter().filter(|m| m.number.is_none()).count();
        format!(
            "{queued} queued, {} sent, {} rolled back",
            self.rows.len() - queued,
            self.rolled_back.len()
        )
    }
}

/// Keeps the outbox: a placeholder adds a queued row, a confirmed output fills in its number,
/// a dead letter moves it to the rolled-back list.
#[derive(Debug, Default)]
pub struct OutboxOrchestrator;

impl Orchestrator for OutboxOrchestrator {
    type State = Outbox;

    fn on_event(&mut self, event: &Event, _: Origin, cx: &mut OrchestratorContext<'_, Outbox>) {
        if let Some(message) = event.downcast_ref::<Message>() {
            let optimistic = event.data_source() == Some(DataSource::Optimistic);
            let message = message.clone();
            cx.update(|outbox| {
                match outbox.rows.iter_mut().find(|m| m.key == message.key) {
                    // A confirmation replaces the optimistic row; a second placeholder (the
                    // job recovered after a reload) changes nothing.
                    Some(row) if !optimistic => *row = message,
                    Some(_) => {}
                    None => outbox.rows.push(message),
                }
            });
        } else if let Some(dead) = event.downcast_ref::<DeadLettered>() {
            let Some(Ok(message)) = dead.placeholder_as::<Message>() else {
                return;
            };
            let reason = dead.reason.clone();
            cx.update(|outbox| {
                outbox.rows.retain(|m| m.key != message.key);
                outbox.rolled_back.push((message, reason));
            });
        }
    }
}

/// The registry that names [`SendMessage`] in the store.
pub fn registry() -> Arc<Registry> {
    let mut registry = Registry::new(NodeId::new(1));
    registry
        .register_job::<SendMessage>(SEND)
        .expect("one wire name, registered once");
    Arc::new(registry)
}

/// Durable, network-bound sends on `store`: one at a time, poisoned after [`MAX_FAILURES`].
pub fn durable(
    store: impl Store,
    sender: impl Executor<SendMessage>,
    network: impl Connectivity,
) -> DurableBuilder {
    Durable::builder(store, registry())
        .register_online::<SendMessage, _>(
            sender,
            Online {
                concurrency: 1,
                max_failures: MAX_FAILURES,
            },
        )
        .connectivity(network)
}

/// Sends `text` through the outbox: its row appears at once (the placeholder), and the job is
/// retried up to five times, half a second apart (a message the server refuses is poisoned
/// after [`MAX_FAILURES`] of them).
pub fn send(outbox: &OrchestratorHandle<Outbox>, key: String, text: String) -> JobHandle<Message> {
    let placeholder = Message {
        key: key.clone(),
        text: text.clone(),
        number: None,
    };
    outbox
        .job(SendMessage { key, text })
        .placeholder(placeholder)
        .retry(RetryPolicy::fixed(5, Duration::from_millis(500)))
        .dispatch()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use orchestrator_core::testing::VirtualRuntime;
    use orchestrator_core::{Dispatcher, JobContext, ManualConnectivity};
    use orchestrator_durable::MemoryStore;

    use super::*;

    /// The server: numbers what it accepts, refuses "poison".
    #[derive(Clone, Default)]
    struct Server(Arc<Mutex<Vec<String>>>);

    impl Executor<SendMessage> for Server {
        type Error = SendError;
        async fn execute(&self, job: &SendMessage, _: JobContext) -> Result<Message, SendError> {
            let mut received = self.0.lock().unwrap();
            received.push(job.text.clone());
            if job.text.contains("poison") {
                return Err(SendError::Rejected("no poison".into()));
            }
            Ok(Message {
                key: job.key.clone(),
                text: job.text.clone(),
                number: Some(received.len() as u32),
            })
        }
    }

    fn page(
        store: &MemoryStore,
        network: &ManualConnectivity,
        server: &Server,
    ) -> (VirtualRuntime, Durable, OrchestratorHandle<Outbox>) {
        let rt = VirtualRuntime::new();
        let dispatcher = Dispatcher::new(rt.clone());
        let (durable, mut recovery) = durable(store.clone(), server.clone(), network.clone())
            .inline_commits()
            .open(&dispatcher)
            .unwrap();
        let outbox = OutboxOrchestrator
            .builder(Outbox::default(), &dispatcher)
            .start()
            .unwrap();
        recovery.adopt::<SendMessage>(&outbox);
        assert!(recovery.resume().is_empty());
        (rt, durable, outbox)
    }

    fn lines(outbox: &Outbox) -> Vec<String> {
        outbox.rows().into_iter().map(|r| r.line).collect()
    }

    #[test]
    fn queued_offline_kept_across_a_reload_sent_in_order_and_poison_rolled_back() {
        let store = MemoryStore::new();
        let network = ManualConnectivity::new(false);
        let server = Server::default();

        let (rt, durable, outbox) = page(&store, &network, &server);
        for (key, text) in [("a", "first"), ("b", "second"), ("c", "third")] {
            drop(send(&outbox, key.into(), text.into()));
        }
        rt.run_until_stalled();
        assert_eq!(
            lines(&outbox.state()),
            ["first · queued", "second · queued", "third · queued"]
        );

        // The reload: a new page on the same store, still offline.
        rt.shutdown();
        drop((rt, durable, outbox));
        let (rt, durable, outbox) = page(&store, &network, &server);
        rt.run_until_stalled();
        assert_eq!(
            lines(&outbox.state()),
            ["first · queued", "second · queued", "third · queued"]
        );
        assert!(server.0.lock().unwrap().is_empty());

        network.set_online(true);
        drop(send(&outbox, "d".into(), "a poison pill".into()));
        rt.advance(Duration::from_secs(60));
        rt.run_until_stalled();
        let state = outbox.state();
        assert_eq!(
            lines(&state),
            ["first · sent #1", "second · sent #2", "third · sent #3"]
        );
        assert_eq!(state.rolled_back.len(), 1);
        assert_eq!(state.rolled_back[0].0.text, "a poison pill");
        assert_eq!(state.summary(), "0 queued, 3 sent, 1 rolled back");
        assert_eq!(
            *server.0.lock().unwrap(),
            [
                "first",
                "second",
                "third",
                "a poison pill",
                "a poison pill",
                "a poison pill"
            ]
        );
        assert_eq!(durable.dead_letters().unwrap().len(), 1);
    }
}
