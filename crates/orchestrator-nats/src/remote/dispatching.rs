//! The dispatching side of remote execution: [`RemoteJobs`] and [`RemoteExecutor`].

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use bytes::Bytes;
use futures_util::StreamExt;
use orchestrator_core::{Executor, Job, JobContext};
use orchestrator_remote::{CodecError, JobOutcome, ProgressReport, Registry, WireEvent, WireJobId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{RemoteConfig, RemoteError, add, attempt_id};
use crate::message_id;

/// What the dispatching side has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// Attempts sent to the workers (stored by the server).
    pub sent: u64,
    /// Outcomes given to a waiting attempt.
    pub outcomes: u64,
    /// Outcomes that found no waiting attempt: duplicates of one already given, or for an
    /// attempt that was cancelled or timed out meanwhile. Dropped (acknowledged).
    pub duplicates_dropped: u64,
    /// Outcomes and events of jobs of this node's earlier runs (a process that had the same
    /// node id before this one): never taken for this run's jobs, whose ids may be the same
    /// numbers. Dropped (acknowledged).
    pub earlier_runs: u64,
    /// Requests sent again, under the same message id, because the server's acknowledgement
    /// did not come within [`RemoteConfig::ack_timeout`] (the server stores them once).
    pub republished: u64,
    /// Requests the server acknowledged as duplicates of a message it already held under the
    /// same id, on their first send: failed with [`RemoteError::DuplicateId`], never taken for
    /// an acceptance.
    pub duplicate_ids: u64,
    /// Messages on the outcome subject that were not outcomes.
    pub undecodable: u64,
    /// Progress reports passed on to a running attempt.
    pub progress: u64,
    /// Cancel requests sent for attempts dropped before their outcome.
    pub cancels_sent: u64,
    /// Events emitted by a job's executor on its worker, emitted here as the job's events.
    pub events: u64,
    /// Such events that found no waiting attempt, or a job that had ended, or did not decode
    /// (dropped).
    pub events_dropped: u64,
}

#[derive(Default)]
struct RemoteCounters {
    sent: AtomicU64,
    outcomes: AtomicU64,
    duplicates_dropped: AtomicU64,
    earlier_runs: AtomicU64,
    republished: AtomicU64,
    duplicate_ids: AtomicU64,
    undecodable: AtomicU64,
    progress: AtomicU64,
    cancels_sent: AtomicU64,
    events: AtomicU64,
    events_dropped: AtomicU64,
}

/// The attempt of a job that waits for its outcome (a job has at most one: its attempts run one
/// after the other).
struct Waiter {
    attempt: u32,
    outcome: oneshot::Sender<JobOutcome>,
    context: JobContext,
}

type Waiters = Mutex<HashMap<WireJobId, Waiter>>;

struct RemoteInner {
    client: Client,
    js: Context,
    registry: Arc<Registry>,
    config: RemoteConfig,
    waiters: Waiters,
    counters: RemoteCounters,
}

/// The dispatching side of remote execution: job types registered with
/// [`executor`](Self::executor) are run by [`Worker`](super::Worker) processes, over NATS JetStream.
///
/// A [`RemoteExecutor`] is an ordinary [`Executor`]: the dispatcher's timeout, retries,
/// cancellation, circuit breaker and cache stay in this process, and each attempt is one
/// request to the workers:
///
/// - the attempt goes to a work-queue stream (`<prefix>.jobs.<wire name>`), under a message id
///   made of the job's wire id and the attempt, so a republished attempt is stored once; it
///   carries the time left before the dispatch's deadline, and a worker skips it once that has
///   passed;
/// - its outcome comes back on another work-queue stream, addressed to this node; it is given
///   to the waiting attempt **exactly once** (a duplicate, or an outcome for an attempt that
///   ended meanwhile, is dropped and counted);
/// - progress reports come back over core NATS to the attempt's context, at most once and
///   only while the attempt waits (a report that arrives after its outcome is dropped);
/// - an attempt dropped before its outcome (cancelled, timed out) sends a cancel request to the
///   workers (best effort) and resolves locally at once.
///
/// Execution is **at least once**: a job whose worker dies before it answers is delivered to
/// another worker when the server's ack wait passes.
pub struct RemoteJobs {
    inner: Arc<RemoteInner>,
    tasks: Vec<JoinHandle<()>>,
}

impl RemoteJobs {
    /// Connects the dispatching side: creates the streams if needed, and starts receiving this
    /// node's outcomes and progress. Call it in a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Nats`] if the streams or the subscriptions cannot be made.
    pub async fn start(
        client: Client,
        registry: Arc<Registry>,
        config: RemoteConfig,
    ) -> Result<Self, RemoteError> {
        let js = config.context(&client);
        config.ensure_streams(&js).await?;
        let node = registry.node().as_u64();
        let nats = |e: &dyn std::fmt::Display| RemoteError::Nats(e.to_string());
        let outcomes = js
            .get_stream(config.stream_name("outcomes"))
            .await
            .map_err(|e| nats(&e))?
            .get_or_create_consumer(
                &format!("outcomes-{node:016x}"),
                pull::Config {
                    durable_name: Some(format!("outcomes-{node:016x}")),
                    filter_subject: config.returns_filter(node),
                    ack_policy: AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| nats(&e))?;
        let mut progress = client
            .subscribe(config.progress_subject(node))
            .await
            .map_err(|e| nats(&e))?;
        crate::round_trip(&client)
            .await
            .map_err(RemoteError::Nats)?;
        let inner = Arc::new(RemoteInner {
            client,
            js,
            registry,
            config,
            waiters: Mutex::new(HashMap::new()),
            counters: RemoteCounters::default(),
        });
        let receiver = inner.clone();
        let outcome_task = tokio::spawn(async move {
            // The message stream ends or fails when the connection does; start it again.
            loop {
                let Ok(mut messages) = outcomes.messages().await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                while let Some(message) = messages.next().await {
                    let Ok(message) = message else { break };
                    if message.subject.ends_with(".event") {
                        receiver.event(&message.payload);
                    } else {
                        receiver.deliver(&message.payload);
                    }
                    // Acknowledged after it was handled; a lost ack redelivers it, and the
                    // duplicate is dropped.
                    let _ = message.ack().await;
                }
            }
        });
        let reporter = inner.clone();
        let progress_task = tokio::spawn(async move {
            while let Some(message) = progress.next().await {
                let Ok(report) = ProgressReport::from_bytes(&message.payload) else {
                    continue;
                };
                let context = reporter
                    .waiters()
                    .get(&report.id)
                    .map(|waiter| waiter.context.clone());
                if let Some(context) = context
                    && context.report_progress(report.progress)
                {
                    add(&reporter.counters.progress);
                }
            }
        });
        Ok(Self {
            inner,
            tasks: vec![outcome_task, progress_task],
        })
    }

    /// Returns an executor that runs job type `J` on the workers (register it on a
    /// dispatcher like any executor).
    ///
    /// # Errors
    ///
    /// [`CodecError::Unregistered`] if `J` has no wire name in the registry.
    pub fn executor<J>(&self) -> Result<RemoteExecutor<J>, CodecError>
    where
        J: Job + Serialize + Sync,
        J::Output: DeserializeOwned,
    {
        let name = self
            .inner
            .registry
            .job_name::<J>()
            .ok_or(CodecError::Unregistered(std::any::type_name::<J>()))?;
        Ok(RemoteExecutor {
            inner: self.inner.clone(),
            subject: self.inner.config.jobs_subject(name),
            _job: PhantomData,
        })
    }

    /// Returns what this side has seen so far.
    pub fn stats(&self) -> RemoteStats {
        let c = &self.inner.counters;
        RemoteStats {
            sent: c.sent.load(Ordering::Relaxed),
            outcomes: c.outcomes.load(Ordering::Relaxed),
            duplicates_dropped: c.duplicates_dropped.load(Ordering::Relaxed),
            earlier_runs: c.earlier_runs.load(Ordering::Relaxed),
            republished: c.republished.load(Ordering::Relaxed),
            duplicate_ids: c.duplicate_ids.load(Ordering::Relaxed),
            undecodable: c.undecodable.load(Ordering::Relaxed),
            progress: c.progress.load(Ordering::Relaxed),
            cancels_sent: c.cancels_sent.load(Ordering::Relaxed),
            events: c.events.load(Ordering::Relaxed),
            events_dropped: c.events_dropped.load(Ordering::Relaxed),
        }
    }

    /// Returns how many attempts are waiting for their outcome.
    pub fn waiting(&self) -> usize {
        self.inner.waiters().len()
    }
}

impl Drop for RemoteJobs {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // The waiting attempts end with `Stopped`.
        self.inner.waiters().clear();
    }
}

impl std::fmt::Debug for RemoteJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJobs")
            .field("node", &self.inner.registry.node())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl RemoteInner {
    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<WireJobId, Waiter>> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Emits an event of a job that runs elsewhere as the waiting attempt's own event, or
    /// counts it as dropped.
    fn event(&self, payload: &[u8]) {
        let Ok(wire) = WireEvent::from_bytes(payload) else {
            return add(&self.counters.undecodable);
        };
        if wire
            .correlation
            .is_some_and(|id| self.registry.is_earlier_run(id))
        {
            return add(&self.counters.earlier_runs);
        }
        let context = wire
            .correlation
            .and_then(|id| self.waiters().get(&id).map(|waiter| waiter.context.clone()));
        match context.map(|cx| self.registry.emit_in(&wire, &cx)) {
            Some(Ok(true)) => add(&self.counters.events),
            _ => add(&self.counters.events_dropped),
        }
    }

    /// Stores a request on the jobs stream under message id `id`. Returns the outcome if it
    /// comes first (the server's acknowledgement can be lost while the job runs anyway).
    ///
    /// An acknowledgement that does not come within the ack timeout (a server restarting, a
    /// connection dropped) does not fail the attempt: the request is sent again under the same
    /// id (the server stores it once), until one is acknowledged or half the duplicate window
    /// has passed. An acknowledgement that says *duplicate* for the first send means the server
    /// already holds another message with this id: an error, never taken for an acceptance.
    async fn send(
        &self,
        subject: &str,
        id: &str,
        body: Bytes,
        rx: &mut oneshot::Receiver<JobOutcome>,
    ) -> Result<Option<JobOutcome>, RemoteError> {
        let since = tokio::time::Instant::now();
        let give_up = self.config.duplicate_window / 2;
        let mut pause = Duration::from_millis(50);
        let mut first = true;
        loop {
            let stored = async {
                let ack = self
                    .js
                    .publish_with_headers(subject.to_owned(), message_id(id), body.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                ack.await.map_err(|e| e.to_string())
            };
            let error = tokio::select! {
                outcome = &mut *rx => {
                    // It ran, so it was stored: its acknowledgement is what was lost.
                    add(&self.counters.sent);
                    return outcome.map(Some).map_err(|_| RemoteError::Stopped);
                }
                ack = stored => match ack {
                    Ok(ack) if ack.duplicate && first => {
                        add(&self.counters.duplicate_ids);
                        return Err(RemoteError::DuplicateId(id.to_owned()));
                    }
                    Ok(_) => {
                        add(&self.counters.sent);
                        return Ok(None);
                    }
                    Err(error) => error,
                },
            };
            if since.elapsed() + pause >= give_up {
                return Err(RemoteError::Nats(error));
            }
            first = false;
            tokio::select! {
                outcome = &mut *rx => {
                    add(&self.counters.sent);
                    return outcome.map(Some).map_err(|_| RemoteError::Stopped);
                }
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(1));
            add(&self.counters.republished);
        }
    }

    /// Gives an outcome to its waiting attempt, or counts it as a duplicate.
    fn deliver(&self, payload: &[u8]) {
        let Ok(outcome) = JobOutcome::from_bytes(payload) else {
            return add(&self.counters.undecodable);
        };
        if self.registry.is_earlier_run(outcome.id) {
            return add(&self.counters.earlier_runs);
        }
        let waiter = {
            let mut waiters = self.waiters();
            match waiters.get(&outcome.id) {
                Some(waiter) if waiter.attempt == outcome.attempt => waiters.remove(&outcome.id),
                _ => None,
            }
        };
        match waiter {
            Some(waiter) => {
                if waiter.outcome.send(outcome).is_ok() {
                    add(&self.counters.outcomes);
                } else {
                    add(&self.counters.duplicates_dropped);
                }
            }
            None => add(&self.counters.duplicates_dropped),
        }
    }
}

/// Runs job type `J` on the workers; made by [`RemoteJobs::executor`].
pub struct RemoteExecutor<J> {
    inner: Arc<RemoteInner>,
    subject: String,
    _job: PhantomData<fn(J)>,
}

/// Removes an attempt's waiter when the attempt ends, and asks the workers to cancel it if it
/// ended without an outcome.
struct Pending {
    inner: Arc<RemoteInner>,
    key: (WireJobId, u32),
    answered: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let waiter = {
            let mut waiters = self.inner.waiters();
            match waiters.get(&self.key.0) {
                Some(waiter) if waiter.attempt == self.key.1 => waiters.remove(&self.key.0),
                _ => None,
            }
        };
        drop(waiter);
        let (client, subject) = (
            self.inner.client.clone(),
            self.inner.config.cancel_subject(),
        );
        let id = self.key.0;
        add(&self.inner.counters.cancels_sent);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Ok(body) = serde_json::to_vec(&id) {
                    let _ = client.publish(subject, Bytes::from(body)).await;
                }
            });
        }
    }
}

impl<J> Executor<J> for RemoteExecutor<J>
where
    J: Job + Serialize + Sync,
    J::Output: DeserializeOwned,
{
    type Error = RemoteError;

    async fn execute(&self, job: &J, cx: JobContext) -> Result<J::Output, RemoteError> {
        let inner = &self.inner;
        let left = cx
            .deadline()
            .map(|deadline| deadline.saturating_duration_since(cx.now()));
        let request = inner
            .registry
            .encode_job(cx.job_id(), job, cx.attempt(), left)?;
        let body = request.to_bytes()?;
        let key = (request.id, request.attempt);
        let (tx, mut rx) = oneshot::channel();
        inner.waiters().insert(
            key.0,
            Waiter {
                attempt: key.1,
                outcome: tx,
                context: cx.clone(),
            },
        );
        let mut pending = Pending {
            inner: inner.clone(),
            key,
            answered: false,
        };
        let id = attempt_id(key.0, key.1, "");
        let outcome = match inner
            .send(&self.subject, &id, Bytes::from(body), &mut rx)
            .await?
        {
            Some(outcome) => outcome,
            None => rx.await.map_err(|_| RemoteError::Stopped)?,
        };
        pending.answered = true;
        match outcome.result {
            Ok(value) => Ok(inner.registry.decode_output::<J>(&value)?),
            Err(wire) => Err(RemoteError::Remote(wire)),
        }
    }
}

impl<J> std::fmt::Debug for RemoteExecutor<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteExecutor")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}
