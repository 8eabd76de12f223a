//! What crosses the wire: a job request, its outcome, its progress, and events.

use orchestrator_core::{DataSource, Progress};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CodecError, WireError};
use crate::id::{NodeId, WireJobId};

/// One attempt of a job, sent to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    /// The job's id on the wire (the dispatching node and its job id there).
    pub id: WireJobId,
    /// The job type's wire name.
    pub job_type: String,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// When the work is stale, in milliseconds since the Unix epoch (the dispatcher's deadline;
    /// a worker skips a request received after it).
    pub deadline_unix_ms: Option<u64>,
    /// The job, serialized.
    pub payload: Value,
    /// How many times a worker handed this attempt back unfinished (it stopped) before this
    /// delivery: the count of deliveries that a server does not see.
    #[serde(default)]
    pub handed_back: u32,
}

/// The outcome of one attempt, sent back to the dispatching node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// The job's id on the wire.
    pub id: WireJobId,
    /// The attempt it ends (outcomes of other attempts are duplicates).
    pub attempt: u32,
    /// The output, serialized, or the executor's error.
    pub result: Result<Value, WireError>,
}

/// A progress report of a job running elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressReport {
    /// The job's id on the wire.
    pub id: WireJobId,
    /// The report.
    pub progress: Progress,
}

/// An event published in one process, for the buses of the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireEvent {
    /// The payload type's wire name.
    pub name: String,
    /// The payload, serialized.
    pub payload: Value,
    /// The job the event belongs to.
    pub correlation: Option<WireJobId>,
    /// That job's parent (for a sub-job).
    pub parent: Option<WireJobId>,
    /// The wire name of that job's type, if it has one.
    pub job_type: Option<String>,
    /// How many reactions led to the event.
    pub causal_depth: u32,
    /// Where a job output came from.
    pub data_source: Option<DataSource>,
    /// The node that published it.
    pub node: NodeId,
}

macro_rules! json_bytes {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// Encodes it as JSON bytes (the form the transports send).
            ///
            /// # Errors
            ///
            /// [`CodecError::Serde`] if a payload cannot be encoded.
            pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
                Ok(serde_json::to_vec(self)?)
            }

            /// Decodes it from JSON bytes.
            ///
            /// # Errors
            ///
            /// [`CodecError::Serde`] if the bytes are not one.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
                Ok(serde_json::from_slice(bytes)?)
            }
        }
    )*};
}

json_bytes!(JobRequest, JobOutcome, ProgressReport, WireEvent);
