//! NATS transport for [`orchestrator-core`](orchestrator_core), on
//! [`async-nats`](async_nats): the events of one process's bus on the buses of the others.
//!
//! Each process names its job types and event payloads in an
//! [`orchestrator_remote::Registry`] (the same names in every process) with its own node id,
//! connects to NATS, and starts an [`EventBridge`] on its dispatcher:
//!
//! ```no_run
//! // no_run: needs a NATS server.
//! use std::sync::Arc;
//! use orchestrator_core::Dispatcher;
//! use orchestrator_nats::EventBridge;
//! use orchestrator_remote::{NodeId, Registry};
//! use orchestrator_tokio::TokioRuntime;
//! # #[derive(serde::Serialize, serde::Deserialize)] struct OrderPlaced { id: u64 }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut registry = Registry::new(NodeId::random());
//! registry.register_event::<OrderPlaced>("shop.order-placed")?;
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let dispatcher = Dispatcher::new(TokioRuntime::default());
//! let bridge = EventBridge::start(client, Arc::new(registry), &dispatcher).await?;
//! // OrderPlaced events published here now reach the other processes' buses, and theirs
//! // reach this one; everything else stays local.
//! println!("{:?}", bridge.stats());
//! # Ok(()) }
//! ```
//!
//! The bridge is at most once (core NATS); see [`EventBridge`] for what crosses, what does
//! not, and how everything it could not carry is counted. The crate needs tokio (async-nats
//! runs on it).

#![forbid(unsafe_code)]

mod bridge;
#[cfg(feature = "demo")]
#[cfg_attr(docsrs, doc(cfg(feature = "demo")))]
pub mod demo;
mod remote;

pub use bridge::{BridgeError, BridgeStats, DEFAULT_PREFIX, EventBridge};
pub use remote::{
    REMOTE_ATTEMPT, REMOTE_JOB, RemoteConfig, RemoteError, RemoteExecutor, RemoteJobs, RemoteStats,
    Worker, WorkerBuilder, WorkerStats,
};

/// The headers of a JetStream publish with message id `id`: the server stores a message once
/// per id within its stream's duplicate window.
pub(crate) fn message_id(id: &str) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    headers
}

/// Returns once the server has processed every subscription `client` has sent so far: a
/// message to a fresh inbox of its own comes back only after them (the server handles a
/// connection's operations in order). `Client::flush` only empties the client's buffer.
pub(crate) async fn round_trip(client: &async_nats::Client) -> Result<(), String> {
    use futures_util::StreamExt;

    let inbox = client.new_inbox();
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    client
        .publish(inbox, bytes::Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(std::time::Duration::from_secs(30), echo.next()).await {
        Ok(Some(_)) => Ok(()),
        _ => Err("the server did not answer".into()),
    }
}
