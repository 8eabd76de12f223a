//! Jobs run by worker processes: [`RemoteJobs`] (the dispatching side, `dispatching.rs`) and
//! [`Worker`] (`worker.rs`); here, what both sides share: the settings, the names of streams
//! and subjects, the metadata keys and the error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::stream::{self, RetentionPolicy};
use orchestrator_remote::{CodecError, WireError, WireJobId};

use crate::bridge::DEFAULT_PREFIX;

mod dispatching;
mod worker;

pub use dispatching::{RemoteExecutor, RemoteJobs, RemoteStats};
pub use worker::{Worker, WorkerBuilder, WorkerStats};

/// The message id of attempt `attempt` of job `id` (a republished one is stored once),
/// followed by `suffix` for what the attempt sends (`/outcome`, `/e1`, ...). It names the
/// dispatching process's incarnation: a restarted process's job ids start again at 1, and
/// its messages must not be taken for its previous run's duplicates.
fn attempt_id(id: WireJobId, attempt: u32, suffix: &str) -> String {
    format!(
        "{:x}/{:x}/{}/{attempt}{suffix}",
        id.node.as_u64(),
        id.incarnation,
        id.job
    )
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The settings both sides of remote execution must agree on.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The subject prefix (default [`DEFAULT_PREFIX`]); streams are named after it.
    pub prefix: String,
    /// How long a worker may hold a job without a sign of life before the server hands it to
    /// another worker (workers send a heartbeat at a third of it while they run a job).
    pub ack_wait: Duration,
    /// How many times a job may be delivered to workers; a job delivered once more becomes a
    /// failed outcome (a *poison* job), never run again.
    pub max_deliver: u32,
    /// The window in which the server drops a republished job or outcome with the same id.
    pub duplicate_window: Duration,
    /// How long a publish waits for the server's acknowledgement before the request is sent
    /// again under the same message id (the server stores it once); a request is sent again
    /// for up to half the duplicate window before the attempt fails with
    /// [`RemoteError::Nats`].
    pub ack_timeout: Duration,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            duplicate_window: Duration::from_secs(120),
            ack_timeout: Duration::from_secs(5),
        }
    }
}

impl RemoteConfig {
    /// A JetStream context on `client` whose publishes wait `ack_timeout` for their
    /// acknowledgement.
    fn context(&self, client: &async_nats::Client) -> Context {
        let mut js = async_nats::jetstream::new(client.clone());
        js.set_timeout(self.ack_timeout);
        js
    }

    fn stream_name(&self, what: &str) -> String {
        format!("{}_{}", token(&self.prefix), token(what))
    }

    fn jobs_subject(&self, job_type: &str) -> String {
        format!("{}.jobs.{job_type}", self.prefix)
    }

    /// What comes back to node `node`, in order: its jobs' events, then their outcomes.
    fn returns_subject(&self, node: u64, kind: &str) -> String {
        format!("{}.outcomes.{node:016x}.{kind}", self.prefix)
    }

    fn returns_filter(&self, node: u64) -> String {
        format!("{}.outcomes.{node:016x}.>", self.prefix)
    }

    fn progress_subject(&self, node: u64) -> String {
        format!("{}.progress.{node:016x}", self.prefix)
    }

    fn cancel_subject(&self) -> String {
        format!("{}.cancel", self.prefix)
    }

    /// Creates the two work-queue streams (jobs, outcomes) if they do not exist.
    async fn ensure_streams(&self, js: &Context) -> Result<(), RemoteError> {
        for (what, subjects) in [
            ("jobs", format!("{}.jobs.>", self.prefix)),
            ("outcomes", format!("{}.outcomes.>", self.prefix)),
        ] {
            js.get_or_create_stream(stream::Config {
                name: self.stream_name(what),
                subjects: vec![subjects],
                retention: RetentionPolicy::WorkQueue,
                duplicate_window: self.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(|e| RemoteError::Nats(e.to_string()))?;
        }
        Ok(())
    }
}

/// `s` as one token of a stream or consumer name (no `.`, `*`, `>` or spaces).
pub(crate) fn token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The metadata key under which a worker's executor finds the job's wire id
/// ([`JobContext::metadata`](orchestrator_core::JobContext::metadata)), for example
/// `node-0000000000000001/run-9f3c2a6b1d4e5f70/job-42`.
pub const REMOTE_JOB: &str = "orchestrator.remote.job";

/// The metadata key under which a worker's executor finds the dispatching side's attempt
/// number (its own [`JobContext::attempt`](orchestrator_core::JobContext::attempt) counts the worker's attempts: 1 unless the worker's
/// dispatcher retries too).
pub const REMOTE_ATTEMPT: &str = "orchestrator.remote.attempt";

/// Why a remote attempt did not give an output.
#[derive(Debug)]
#[non_exhaustive]
pub enum RemoteError {
    /// The worker's executor failed (its message, and whether a retry may help).
    Remote(WireError),
    /// The job or its output could not be encoded or decoded.
    Codec(CodecError),
    /// NATS refused an operation (not connected, stream missing, ...).
    Nats(String),
    /// The server already held a message under this request's message id, so it did not store
    /// the request: another process sends with the same node id and incarnation. Never taken
    /// for an acceptance.
    DuplicateId(String),
    /// The [`RemoteJobs`] it was sent through stopped before the outcome came.
    Stopped,
}

impl RemoteError {
    /// Returns `true` if retrying the job may help: the worker said so, or the message never
    /// reached NATS.
    pub fn is_retryable(&self) -> bool {
        match self {
            RemoteError::Remote(wire) => wire.is_retryable(),
            RemoteError::Nats(_) => true,
            RemoteError::Codec(_) | RemoteError::DuplicateId(_) | RemoteError::Stopped => false,
        }
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::Remote(wire) => write!(f, "the worker failed: {wire}"),
            RemoteError::Codec(e) => write!(f, "{e}"),
            RemoteError::Nats(e) => write!(f, "NATS: {e}"),
            RemoteError::DuplicateId(id) => write!(
                f,
                "the server already holds a message with id `{id}`: another process sends as \
                 this node and incarnation"
            ),
            RemoteError::Stopped => f.write_str("remote execution was stopped"),
        }
    }
}

/// Each variant's message says all it knows (a worker's error arrives as its message, with its
/// sources already in it), so `source()` is `None`: a report that walks the chain prints each
/// message once.
impl std::error::Error for RemoteError {}

impl From<CodecError> for RemoteError {
    fn from(e: CodecError) -> Self {
        RemoteError::Codec(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_tokens_and_subjects_follow_the_prefix() {
        let config = RemoteConfig {
            prefix: "shop.v2".into(),
            ..RemoteConfig::default()
        };
        assert_eq!(config.stream_name("jobs"), "shop_v2_jobs");
        assert_eq!(config.stream_name("math.square"), "shop_v2_math_square");
        assert_eq!(token("a.b*c>d e-f_g"), "a_b_c_d_e-f_g");
        assert_eq!(
            config.jobs_subject("math.square"),
            "shop.v2.jobs.math.square"
        );
        assert_eq!(
            config.returns_subject(255, "outcome"),
            "shop.v2.outcomes.00000000000000ff.outcome"
        );
        assert_eq!(
            config.returns_filter(255),
            "shop.v2.outcomes.00000000000000ff.>"
        );
        assert_eq!(config.cancel_subject(), "shop.v2.cancel");
        let defaults = RemoteConfig::default();
        assert_eq!(
            (defaults.prefix.as_str(), defaults.max_deliver),
            (DEFAULT_PREFIX, 5)
        );
    }

    #[test]
    fn what_a_retry_policy_may_retry() {
        assert!(RemoteError::Remote(WireError::new("busy", true)).is_retryable());
        assert!(!RemoteError::Remote(WireError::new("panicked", false)).is_retryable());
        assert!(RemoteError::Nats("not connected".into()).is_retryable());
        assert!(!RemoteError::Stopped.is_retryable());
        assert!(!RemoteError::Codec(CodecError::Unregistered("X")).is_retryable());
        let shown = RemoteError::Remote(WireError::new("disk full", true)).to_string();
        assert_eq!(shown, "the worker failed: disk full");
        assert!(!RemoteError::DuplicateId("1/2/3/1".into()).is_retryable());
    }

    /// Every message along an error's `source()` chain, from the outermost.
    fn chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
        std::iter::successors(Some(error), |e| e.source())
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_remote_error_prints_each_message_once_along_its_chain() {
        let poison = RemoteError::Remote(WireError::new("delivered 6 times: poison job", false));
        let messages = chain(&poison);
        let joined = messages.join(": ");
        assert_eq!(joined.matches("poison job").count(), 1, "{messages:?}");
        let codec = RemoteError::Codec(CodecError::from(
            serde_json::from_str::<u8>("x").unwrap_err(),
        ));
        let joined = chain(&codec).join(": ");
        assert_eq!(joined.matches("expected value").count(), 1, "{joined}");
    }
}
