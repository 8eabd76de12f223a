//! The wire model of [`orchestrator-core`](orchestrator_core), for transports that carry jobs
//! and events between processes (`orchestrator-nats`, or your own).
//!
//! It names nothing about the transport: it says what a job, an outcome, a progress report
//! and an event look like on the wire, and how a process turns its own values into them and
//! back.
//!
//! - [`NodeId`] names a process; [`WireJobId`] names a job across processes and their
//!   restarts (the node that dispatched it, that process's incarnation, and its
//!   [`JobId`](orchestrator_core::JobId) there).
//! - [`Registry`] gives job types and event payloads stable **wire names** and encodes them
//!   with serde ([`JobRequest`], [`JobOutcome`], [`ProgressReport`], [`WireEvent`], all JSON).
//!   Events keep their correlation id, parent, job type, causal depth and data source; an
//!   event received from another node says so ([`Event::remote_node`](orchestrator_core::Event::remote_node)),
//!   so a bridge never sends it back.
//! - [`WireError`] carries an executor's error as its message and whether it may be retried
//!   (an executor's error type is not serializable in general).
//!
//! ```
//! use orchestrator_core::{Job, JobId};
//! use orchestrator_remote::{JobOutcome, JobRequest, NodeId, Registry, WireError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Resize { width: u32 }
//! impl Job for Resize {
//!     type Output = Vec<u8>;
//! }
//!
//! let mut shop = Registry::new(NodeId::new(1));
//! shop.register_job::<Resize>("images.resize")?;
//! let mut worker = Registry::new(NodeId::new(2));
//! worker.register_job::<Resize>("images.resize")?;
//!
//! // The shop sends attempt 1 of a job ...
//! let id = JobId::next();
//! let bytes = shop.encode_job(id, &Resize { width: 64 }, 1, None)?.to_bytes()?;
//! // ... the worker decodes and runs it ...
//! let request = JobRequest::from_bytes(&bytes)?;
//! assert_eq!(worker.decode_job::<Resize>(&request)?, Resize { width: 64 });
//! let outcome = JobOutcome {
//!     id: request.id,
//!     attempt: request.attempt,
//!     result: Err(WireError::new("disk full", true)),
//! };
//! // ... and the shop matches the outcome to its handle.
//! let back = JobOutcome::from_bytes(&outcome.to_bytes()?)?;
//! assert_eq!(back.id.local_to(shop.node(), shop.incarnation()), Some(id));
//! assert!(back.result.unwrap_err().is_retryable());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod error;
mod id;
mod registry;
mod wire;

pub use error::{CodecError, RegistryError, WireError};
pub use id::{NodeId, WireJobId};
pub use registry::{DEFAULT_ALIASES, Registry, is_stale};
pub use wire::{JobOutcome, JobRequest, ProgressReport, WireEvent};
