//! What the durable engine writes: keys, job records, attempt counters, outcomes and dead
//! letters (JSON, versioned), and the event of a dead letter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orchestrator_core::{DataSource, JobError, RetryPolicy, Success};
use orchestrator_remote::{JobRequest, NodeId, WireJobId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version of the records this build writes (and the newest it reads).
pub(crate) const RECORD_VERSION: u32 = 1;

/// The wall clock the engine reads (the system's, or a test's).
pub(crate) type Clock = std::sync::Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The wall clock: `SystemTime::now()`, or in a browser (where that panics) `Date.now()`.
pub(crate) fn wall_now() -> SystemTime {
    #[cfg(target_arch = "wasm32")]
    {
        UNIX_EPOCH + Duration::from_millis(js_sys::Date::now() as u64)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        SystemTime::now()
    }
}

/// Milliseconds since the Unix epoch at `time`.
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A job's key: node, incarnation and job id, big-endian (jobs of one run sort by dispatch).
pub(crate) fn key(id: WireJobId) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(&id.node.as_u64().to_be_bytes());
    k.extend_from_slice(&id.incarnation.to_be_bytes());
    k.extend_from_slice(&id.job.to_be_bytes());
    k
}

/// The job id of a key, if it is one.
pub(crate) fn id_of(key: &[u8]) -> Option<WireJobId> {
    let part = |i: usize| -> Option<u64> {
        Some(u64::from_be_bytes(
            key.get(i * 8..i * 8 + 8)?.try_into().ok()?,
        ))
    };
    if key.len() != 24 {
        return None;
    }
    Some(WireJobId {
        node: NodeId::new(part(0)?),
        incarnation: part(1)?,
        job: part(2)?,
    })
}

/// The expiry key of an outcome: when it expires, then its job.
pub(crate) fn expiry_key(expires_ms: u64, id: WireJobId) -> Vec<u8> {
    let mut k = expires_ms.to_be_bytes().to_vec();
    k.extend_from_slice(&key(id));
    k
}

/// The metadata form of a job id (hex of its key).
pub(crate) fn hex(id: WireJobId) -> String {
    format!(
        "{:016x}{:016x}{:016x}",
        id.node.as_u64(),
        id.incarnation,
        id.job
    )
}

pub(crate) fn parse_hex(s: &str) -> Option<WireJobId> {
    if s.len() != 48 {
        return None;
    }
    let part = |i: usize| u64::from_str_radix(s.get(i * 16..i * 16 + 16)?, 16).ok();
    Some(WireJobId {
        node: NodeId::new(part(0)?),
        incarnation: part(1)?,
        job: part(2)?,
    })
}

/// A retry policy's numbers (its predicate, if any, is code and is not kept).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RetryRecord {
    max_retries: u32,
    base_delay: Duration,
    multiplier: f64,
    max_delay: Duration,
    jitter: f64,
    had_predicate: bool,
}

impl RetryRecord {
    pub(crate) fn of(policy: &RetryPolicy) -> Self {
        Self {
            max_retries: policy.max_retries(),
            base_delay: policy.base_delay(),
            multiplier: policy.multiplier(),
            max_delay: policy.max_delay(),
            jitter: policy.jitter(),
            had_predicate: policy.has_predicate(),
        }
    }

    pub(crate) fn policy(&self) -> Option<RetryPolicy> {
        RetryPolicy::builder()
            .max_retries(self.max_retries)
            .base_delay(self.base_delay)
            .multiplier(self.multiplier)
            .max_delay(self.max_delay)
            .jitter(self.jitter)
            .build()
            .ok()
    }
}

/// An accepted job, as stored until it has an outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub(crate) version: u32,
    /// The job on the wire: its id, type name and payload.
    pub(crate) request: JobRequest,
    pub(crate) accepted_unix_ms: u64,
    /// When it may run (its acceptance plus its delay).
    pub(crate) due_unix_ms: u64,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) attempt_timeout_ms: Option<u64>,
    pub(crate) retry: Option<RetryRecord>,
    pub(crate) placeholder: Option<Value>,
    pub(crate) metadata: Vec<(String, String)>,
    /// Its dedup key, if it had one (absent from records written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dedup: Option<String>,
}

/// How many attempts of a job started, failed (and so used a retry), and were handed back
/// by a shutdown. Starts that did none of that were interrupted by the process's death.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) starts: u32,
    pub(crate) failures: u32,
    pub(crate) released: u32,
}

impl Counters {
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12);
        for n in [self.starts, self.failures, self.released] {
            b.extend_from_slice(&n.to_be_bytes());
        }
        b
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Option<Self> {
        let n = |i: usize| {
            Some(u32::from_be_bytes(
                b.get(i * 4..i * 4 + 4)?.try_into().ok()?,
            ))
        };
        (b.len() == 12).then_some(())?;
        Some(Self {
            starts: n(0)?,
            failures: n(1)?,
            released: n(2)?,
        })
    }

    /// Starts that ended neither in a failure nor in a hand-back: the process died in them.
    pub(crate) fn crashed(self) -> u32 {
        self.starts
            .saturating_sub(self.failures)
            .saturating_sub(self.released)
    }
}

/// How a job ended, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum End {
    /// It succeeded with `output` (serialized), which came from `source`.
    Succeeded {
        /// The output, serialized.
        output: Value,
        /// Where it came from.
        source: DataSource,
    },
    /// Its last attempt failed (it is on the dead-letter list too).
    Failed {
        /// The error's message, with its causes.
        error: String,
        /// How many attempts it made.
        attempts: u32,
    },
    /// It was cancelled.
    Cancelled {
        /// The reason, if one was given.
        reason: Option<String>,
    },
    /// Its total time budget ran out.
    TimedOut {
        /// What was left of the budget when the run that timed out began, in milliseconds.
        budget_ms: u64,
    },
    /// It was rejected before it ran.
    Rejected {
        /// Why.
        reason: String,
    },
}

/// The message of an error with its causes, `: `-separated.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut s = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let m = e.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        next = e.source();
    }
    s
}

impl End {
    pub(crate) fn of<T: Serialize>(outcome: &Result<Success<T>, JobError>) -> Result<Self, String> {
        Ok(match outcome {
            Ok(success) => End::Succeeded {
                output: serde_json::to_value(&success.value).map_err(|e| e.to_string())?,
                source: success.data_source,
            },
            Err(JobError::Failed(failure)) => End::Failed {
                error: chain(failure),
                attempts: failure.attempts(),
            },
            Err(JobError::Cancelled { reason }) => End::Cancelled {
                reason: reason.as_ref().map(|r| r.to_string()),
            },
            Err(JobError::TimedOut { budget }) => End::TimedOut {
                budget_ms: ms(*budget),
            },
            Err(JobError::Rejected(rejection)) => End::Rejected {
                reason: rejection.to_string(),
            },
            Err(other) => End::Rejected {
                reason: other.to_string(),
            },
        })
    }
}

/// A finished job's outcome, read back by id (also after a restart) until its retention ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredOutcome {
    /// The job's durable id.
    pub id: WireJobId,
    /// Its type's wire name.
    pub job_type: String,
    /// When it ended, in milliseconds since the Unix epoch.
    pub finished_unix_ms: u64,
    /// How it ended.
    pub end: End,
}

impl StoredOutcome {
    /// Decodes the output of a job that succeeded (`None` for any other end).
    pub fn output<T: DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        match &self.end {
            End::Succeeded { output, .. } => Some(T::deserialize(output)),
            _ => None,
        }
    }
}

/// Why a job is on the dead-letter list (the job itself stays in the jobs table).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeadRecord {
    pub(crate) reason: String,
    pub(crate) dead_unix_ms: u64,
}

/// A job on the dead-letter list: it will not run again until [retried](crate::Durable::retry_dead)
/// or [discarded](crate::Durable::discard).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The job's durable id.
    pub id: WireJobId,
    /// Its type's wire name.
    pub job_type: String,
    /// Why it is here: the error of its last attempt, the count of runs the process died in,
    /// or a payload that no longer decodes.
    pub reason: String,
    /// When it got here, in milliseconds since the Unix epoch.
    pub dead_unix_ms: u64,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub accepted_unix_ms: u64,
    /// How many attempts started, in every run.
    pub starts: u32,
    /// How many of them failed.
    pub failures: u32,
    /// The job, serialized.
    pub payload: Value,
    /// Its placeholder value, serialized, if it had one.
    pub placeholder: Option<Value>,
}

/// The event published (on the dispatcher's bus, or the job's) when a job goes to the
/// dead-letter list: its id, why, and its placeholder value, so that an optimistic state can
/// roll back.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLettered {
    /// The job's durable id.
    pub id: WireJobId,
    /// Its type's wire name.
    pub job_type: String,
    /// Why.
    pub reason: String,
    /// Its placeholder value, serialized, if it had one.
    pub placeholder: Option<Value>,
}

impl DeadLettered {
    /// Decodes the placeholder value, if the job had one.
    pub fn placeholder_as<T: DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        self.placeholder.as_ref().map(T::deserialize)
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| e.to_string())
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ids_round_trip_and_sort_by_dispatch() {
        let id = |job| WireJobId {
            node: NodeId::new(7),
            incarnation: 0xabc,
            job,
        };
        assert_eq!(id_of(&key(id(5))), Some(id(5)));
        assert_eq!(parse_hex(&hex(id(5))), Some(id(5)));
        assert!(key(id(9)) < key(id(10)));
        assert_eq!(id_of(b"short"), None);
        assert_eq!(parse_hex("zz"), None);
        let c = Counters {
            starts: 3,
            failures: 1,
            released: 1,
        };
        assert_eq!(Counters::from_bytes(&c.to_bytes()), Some(c));
        assert_eq!(c.crashed(), 1);
        assert_eq!(Counters::from_bytes(&[1, 2]), None);
    }
}
