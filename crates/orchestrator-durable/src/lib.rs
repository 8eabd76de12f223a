//! Durable jobs for [`orchestrator-core`](orchestrator_core): nothing accepted is lost when
//! the process dies.
//!
//! A job type made durable ([`DurableBuilder::register`]) is written to a [`Store`] before
//! its dispatch counts as accepted ([`JobHandle::stored`](orchestrator_core::JobHandle::stored)),
//! with the writes of concurrent dispatches in one commit. When the process starts again,
//! every accepted job without an outcome runs again ([`Recovery`]) with its attempt count,
//! deadline and due time carried over; jobs that keep killing the process, or that fail their
//! last attempt, go to a dead-letter list ([`Durable::dead_letters`]) with a
//! [`DeadLettered`] event; outcomes stay readable by id for a retention
//! ([`Durable::outcome`]). Everything else (timeouts, retries, cancellation, progress,
//! events, orchestrators) is as for any job.
//!
//! The stores: [`MemoryStore`] for tests, `orchestrator-redb` (one file) for applications.
//! Job types are named by the same [`Registry`](orchestrator_remote::Registry) as remote
//! execution, so the same jobs move to NATS when one machine is not enough.
//!
//! ```
//! use std::sync::Arc;
//! use orchestrator_core::testing::VirtualRuntime;
//! use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext};
//! use orchestrator_durable::{Durable, MemoryStore};
//! use orchestrator_remote::{NodeId, Registry};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendEmail { to: String }
//! impl Job for SendEmail {
//!     type Output = u32;
//! }
//! struct Mailer;
//! impl Executor<SendEmail> for Mailer {
//!     type Error = std::convert::Infallible;
//!     async fn execute(&self, job: &SendEmail, _: JobContext) -> Result<u32, Self::Error> {
//!         Ok(job.to.len() as u32)
//!     }
//! }
//!
//! let mut registry = Registry::new(NodeId::new(1));
//! registry.register_job::<SendEmail>("email.send")?;
//! let rt = VirtualRuntime::new();
//! let dispatcher = Dispatcher::new(rt.clone());
//! let store = MemoryStore::new();
//! let (durable, recovery) = Durable::builder(store.clone(), Arc::new(registry))
//!     .register::<SendEmail, _>(Mailer)
//!     .inline_commits() // on virtual time; a real application keeps the writer thread
//!     .open(&dispatcher)?;
//! recovery.resume(); // nothing to recover in a new store
//!
//! let handle = dispatcher.dispatch(SendEmail { to: "ada@example.com".into() });
//! rt.block_on(handle.stored())?; // now it survives a crash
//! let id = durable.wire_id(handle.id());
//! assert_eq!(rt.block_on(handle)?.value, 15);
//! let outcome = durable.outcome(id)?.expect("kept for the retention");
//! assert_eq!(outcome.output::<u32>().unwrap()?, 15);
//! durable.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod durable;
mod error;
mod gate;
mod journal;
mod record;
mod recovery;
mod writer;

use std::time::SystemTime;

pub use durable::{
    DEFAULT_POISON_AFTER, DEFAULT_RETENTION, DURABLE_ID, Durable, DurableBuilder, DurableStats,
    Online,
};
pub use error::DurableError;
pub use orchestrator_store::{Commit, Entry, MemoryStore, Op, Store, StoreError, Table};
pub use record::{DeadLetter, DeadLettered, End, StoredOutcome};
pub use recovery::{Recovery, UnknownJob};

use orchestrator_core::{Job, JobBuilder};
use orchestrator_remote::WireJobId;

/// Writes a durable id as 48 hex digits (node, run, job): a form for URLs and logs that
/// [`parse_id`] reads back.
pub fn format_id(id: WireJobId) -> String {
    record::hex(id)
}

/// Reads a durable id written by [`format_id`]; `None` if `text` is not one.
pub fn parse_id(text: &str) -> Option<WireJobId> {
    record::parse_hex(text)
}

/// Scheduling by the wall clock, for durable jobs: [`run_at`](Self::run_at).
pub trait ScheduleExt: Sized {
    /// Runs the job no earlier than `at` (the wall clock): the same as
    /// [`delay`](JobBuilder::delay) by what is left until `at` (nothing if it is past). A
    /// durable job keeps its due time across restarts; one overdue when recovered runs at once.
    fn run_at(self, at: SystemTime) -> Self;
}

impl<J: Job> ScheduleExt for JobBuilder<'_, J> {
    fn run_at(self, at: SystemTime) -> Self {
        let left = at
            .duration_since(record::wall_now())
            .unwrap_or(std::time::Duration::ZERO);
        self.delay(left)
    }
}
