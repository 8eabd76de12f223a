//! Jobs run by worker processes: [`RemoteJobs`] (the dispatching side) and [`Worker`].

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::stream::{self, RetentionPolicy};
use async_nats::jetstream::{self, AckKind, Context};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures_util::StreamExt;
use orchestrator_core::{
    CancellationToken, Dispatch, Dispatcher, Executor, Job, JobContext, JobError, SignalBus,
};
use orchestrator_remote::{
    CodecError, JobOutcome, JobRequest, ProgressReport, Registry, WireError, WireEvent, WireJobId,
    is_stale,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use crate::bridge::DEFAULT_PREFIX;

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
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

impl RemoteConfig {
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
/// ([`JobContext::metadata`]), for example `node-0000000000000001/job-42`.
pub const REMOTE_JOB: &str = "orchestrator.remote.job";

/// The metadata key under which a worker's executor finds the dispatching side's attempt
/// number (its own [`JobContext::attempt`] counts the worker's attempts: 1 unless the worker's
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
            RemoteError::Codec(_) | RemoteError::Stopped => false,
        }
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::Remote(wire) => write!(f, "the worker failed: {wire}"),
            RemoteError::Codec(e) => write!(f, "{e}"),
            RemoteError::Nats(e) => write!(f, "NATS: {e}"),
            RemoteError::Stopped => f.write_str("remote execution was stopped"),
        }
    }
}

impl std::error::Error for RemoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RemoteError::Remote(wire) => Some(wire),
            RemoteError::Codec(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CodecError> for RemoteError {
    fn from(e: CodecError) -> Self {
        RemoteError::Codec(e)
    }
}

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
    undecodable: AtomicU64,
    progress: AtomicU64,
    cancels_sent: AtomicU64,
    events: AtomicU64,
    events_dropped: AtomicU64,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Waiter {
    outcome: oneshot::Sender<JobOutcome>,
    context: JobContext,
}

type Waiters = Mutex<HashMap<(WireJobId, u32), Waiter>>;

struct RemoteInner {
    client: Client,
    js: Context,
    registry: Arc<Registry>,
    config: RemoteConfig,
    waiters: Waiters,
    counters: RemoteCounters,
}

/// The dispatching side of remote execution: job types registered with
/// [`executor`](Self::executor) are run by [`Worker`] processes, over NATS JetStream.
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
        let js = jetstream::new(client.clone());
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
                let context = reporter.waiters().iter().find_map(|((id, _), waiter)| {
                    (*id == report.id).then(|| waiter.context.clone())
                });
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
    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<(WireJobId, u32), Waiter>> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Emits an event of a job that runs elsewhere as the waiting attempt's own event, or
    /// counts it as dropped.
    fn event(&self, payload: &[u8]) {
        let Ok(wire) = WireEvent::from_bytes(payload) else {
            return add(&self.counters.undecodable);
        };
        let node = self.registry.node();
        let context = wire
            .correlation
            .filter(|id| id.node == node)
            .and_then(|id| {
                self.waiters()
                    .iter()
                    .find_map(|((job, _), waiter)| (*job == id).then(|| waiter.context.clone()))
            });
        match context.map(|cx| self.registry.emit_in(&wire, &cx)) {
            Some(Ok(true)) => add(&self.counters.events),
            _ => add(&self.counters.events_dropped),
        }
    }

    /// Gives an outcome to its waiting attempt, or counts it as a duplicate.
    fn deliver(&self, payload: &[u8]) {
        let Ok(outcome) = JobOutcome::from_bytes(payload) else {
            return add(&self.counters.undecodable);
        };
        let waiter = self.waiters().remove(&(outcome.id, outcome.attempt));
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
        let waiter = self.inner.waiters().remove(&self.key);
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
        let (tx, rx) = oneshot::channel();
        inner.waiters().insert(
            key,
            Waiter {
                outcome: tx,
                context: cx.clone(),
            },
        );
        let mut pending = Pending {
            inner: inner.clone(),
            key,
            answered: false,
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            format!("{}/{}/{}", key.0.node.as_u64(), key.0.job, key.1).as_str(),
        );
        let nats = |e: &dyn std::fmt::Display| RemoteError::Nats(e.to_string());
        let ack = inner
            .js
            .publish_with_headers(self.subject.clone(), headers, Bytes::from(body))
            .await
            .map_err(|e| nats(&e))?;
        ack.await.map_err(|e| nats(&e))?;
        add(&inner.counters.sent);
        let outcome = rx.await.map_err(|_| RemoteError::Stopped)?;
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

/// What a worker has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Attempts run to an outcome that was sent back.
    pub completed: u64,
    /// Deliveries past the maximum: answered with a failed outcome (once the server stores
    /// it), not run.
    pub poisoned: u64,
    /// Attempts skipped because their deadline had passed (acknowledged, not run).
    pub stale: u64,
    /// Attempts cancelled at the dispatching side's request.
    pub cancelled: u64,
    /// Messages that were not job requests (terminated).
    pub undecodable: u64,
    /// Attempts handed back to the server (negative acknowledgement) because the worker
    /// stopped or the outcome could not be stored.
    pub handed_back: u64,
    /// Events of running jobs that could not be sent back (NATS refused them).
    pub events_failed: u64,
}

#[derive(Default)]
struct WorkerCounters {
    completed: AtomicU64,
    poisoned: AtomicU64,
    stale: AtomicU64,
    cancelled: AtomicU64,
    undecodable: AtomicU64,
    handed_back: AtomicU64,
    events_failed: AtomicU64,
}

/// Runs one job type's requests on the worker's dispatcher and encodes the outcome.
type Runner = Arc<
    dyn Fn(
            JobRequest,
            CancellationToken,
            Arc<WorkerShared>,
        )
            -> futures_util::future::BoxFuture<'static, Result<serde_json::Value, WireError>>
        + Send
        + Sync,
>;

struct WorkerShared {
    client: Client,
    js: Context,
    registry: Arc<Registry>,
    config: RemoteConfig,
    counters: WorkerCounters,
    running: Mutex<HashMap<WireJobId, CancellationToken>>,
    /// Set by `Worker::stop`: the messages of the attempts it drops wait here for their
    /// negative acknowledgement instead of sending it on their own.
    stopping: std::sync::atomic::AtomicBool,
    handed_back: Mutex<Vec<jetstream::Message>>,
}

/// Configures a [`Worker`]: which job types it takes, how many it runs at once.
pub struct WorkerBuilder<R> {
    client: Client,
    registry: Arc<Registry>,
    dispatcher: Dispatcher<R>,
    config: RemoteConfig,
    concurrency: usize,
    runners: Vec<(String, Runner)>,
}

impl<R> std::fmt::Debug for WorkerBuilder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let accepted: Vec<&str> = self.runners.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("WorkerBuilder")
            .field("config", &self.config)
            .field("concurrency", &self.concurrency)
            .field("accepts", &accepted)
            .finish_non_exhaustive()
    }
}

/// A worker process's side of remote execution: takes job requests from the work-queue
/// stream, runs them on a local dispatcher (with its executors, and their panics caught),
/// and sends each outcome back to the dispatching node.
///
/// - At most `concurrency` attempts run at once (default 16); the server holds the rest.
/// - While an attempt runs, the worker tells the server it is alive (every third of the ack
///   wait); if the worker dies, the server hands the job to another worker after the ack wait.
/// - The outcome is stored on the outcome stream (with a message id, so a job run twice sends
///   one outcome) before the job is acknowledged.
/// - A request past its deadline is acknowledged without running; a delivery past the maximum
///   becomes a failed outcome (`poison`), never run; a cancel request from the dispatching
///   side cancels the running attempt.
/// - [`stop`](Worker::stop) stops taking jobs, lets the running ones finish for a grace
///   period, then hands the rest back to the server for another worker.
pub struct Worker {
    shared: Arc<WorkerShared>,
    pulls: Vec<JoinHandle<()>>,
    jobs: Arc<tokio::sync::Mutex<JoinSet<()>>>,
    cancels: JoinHandle<()>,
}

impl Worker {
    /// Starts configuring a worker whose jobs run on `dispatcher` (register their executors
    /// there).
    pub fn builder<R>(
        client: Client,
        registry: Arc<Registry>,
        dispatcher: &Dispatcher<R>,
    ) -> WorkerBuilder<R> {
        WorkerBuilder {
            client,
            registry,
            dispatcher: dispatcher.clone(),
            config: RemoteConfig::default(),
            concurrency: 16,
            runners: Vec::new(),
        }
    }

    /// Returns what the worker has done so far.
    pub fn stats(&self) -> WorkerStats {
        let c = &self.shared.counters;
        WorkerStats {
            completed: c.completed.load(Ordering::Relaxed),
            poisoned: c.poisoned.load(Ordering::Relaxed),
            stale: c.stale.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            undecodable: c.undecodable.load(Ordering::Relaxed),
            handed_back: c.handed_back.load(Ordering::Relaxed),
            events_failed: c.events_failed.load(Ordering::Relaxed),
        }
    }

    /// Stops taking jobs, waits up to `grace` for the running ones, then hands the rest back
    /// to the server (they go to another worker at once) and returns.
    pub async fn stop(mut self, grace: Duration) {
        for pull in std::mem::take(&mut self.pulls) {
            pull.abort();
            // Ended: its subscription is dropped (and its unsubscription queued).
            let _ = pull.await;
        }
        self.cancels.abort();
        // Once the server has dropped this worker's pull requests, a job handed back cannot go
        // to them again.
        let _ = self.shared.client.flush().await;
        let mut jobs = self.jobs.lock().await;
        let drained =
            tokio::time::timeout(grace, async { while jobs.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            self.shared.stopping.store(true, Ordering::SeqCst);
            // Dropping a job's task hands its message back (see `HandBack`).
            jobs.shutdown().await;
            let back = std::mem::take(
                &mut *self
                    .shared
                    .handed_back
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            for message in back {
                hand_back(&self.shared, message).await;
            }
            let _ = self.shared.client.flush().await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        for pull in &self.pulls {
            pull.abort();
        }
        self.cancels.abort();
        // The running attempts' tasks end with the `JoinSet` and hand their jobs back.
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("node", &self.shared.registry.node())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<R: Send + Sync + 'static> WorkerBuilder<R> {
    /// Uses these settings (they must match the dispatching side's).
    pub fn config(mut self, config: RemoteConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs at most `n` attempts at once (at least one).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Takes the requests of job type `J` (registered in the registry, with an executor on
    /// the dispatcher).
    ///
    /// # Errors
    ///
    /// [`CodecError::Unregistered`] if `J` has no wire name.
    pub fn accept<J>(mut self) -> Result<Self, CodecError>
    where
        J: Job + DeserializeOwned,
        J::Output: Serialize + Clone,
    {
        let name = self
            .registry
            .job_name::<J>()
            .ok_or(CodecError::Unregistered(std::any::type_name::<J>()))?
            .to_owned();
        let dispatcher = self.dispatcher.erase();
        let runner: Runner = Arc::new(move |request, token, shared| {
            let dispatcher = dispatcher.clone();
            Box::pin(async move {
                let job: J = shared
                    .registry
                    .decode_job(&request)
                    .map_err(|e| WireError::new(e.to_string(), false))?;
                // The job's events go to a bus of its own, and from there back to the
                // dispatching node (before its outcome, on the same stream).
                let bus = SignalBus::new();
                let mut events = bus.subscribe();
                let handle = dispatcher
                    .job(job)
                    .cancellation(token)
                    .bus(bus.clone())
                    .metadata(REMOTE_JOB, request.id.to_string())
                    .metadata(REMOTE_ATTEMPT, request.attempt.to_string())
                    .dispatch();
                let mut progress = handle.progress();
                let forward = async {
                    let subject = shared
                        .config
                        .returns_subject(request.id.node.as_u64(), "event");
                    let mut acks = Vec::new();
                    let mut index = 0u32;
                    while let Some(event) = events.next().await {
                        // Output events are the job type's: the dispatching side makes its own.
                        if event.data_source().is_some() {
                            continue;
                        }
                        let Ok(Some(mut wire)) = shared.registry.encode_event(&event) else {
                            continue; // unregistered payloads stay on the worker
                        };
                        wire.correlation = Some(request.id);
                        let Ok(body) = wire.to_bytes() else { continue };
                        index += 1;
                        let mut headers = HeaderMap::new();
                        headers.insert(
                            "Nats-Msg-Id",
                            format!(
                                "{}/{}/{}/e{index}",
                                request.id.node.as_u64(),
                                request.id.job,
                                request.attempt
                            )
                            .as_str(),
                        );
                        match shared
                            .js
                            .publish_with_headers(subject.clone(), headers, Bytes::from(body))
                            .await
                        {
                            Ok(ack) => acks.push(ack),
                            Err(_) => add(&shared.counters.events_failed),
                        }
                    }
                    for ack in acks {
                        if ack.await.is_err() {
                            add(&shared.counters.events_failed);
                        }
                    }
                };
                let run = async {
                    let outcome = handle.await;
                    bus.close(); // ends `forward` after the queued events
                    outcome
                };
                let reports = async {
                    let subject = shared.config.progress_subject(request.id.node.as_u64());
                    while let Some(report) = progress.next().await {
                        let report = ProgressReport {
                            id: request.id,
                            progress: report,
                        };
                        if let Ok(body) = report.to_bytes() {
                            let _ = shared
                                .client
                                .publish(subject.clone(), Bytes::from(body))
                                .await;
                        }
                    }
                };
                let (outcome, (), ()) = futures_util::future::join3(run, reports, forward).await;
                match outcome {
                    Ok(success) => shared
                        .registry
                        .encode_output::<J>(&success.value)
                        .map_err(|e| WireError::new(e.to_string(), false)),
                    Err(JobError::Failed(failure)) => {
                        Err(WireError::from_error(failure.error(), !failure.is_panic()))
                    }
                    Err(other) => Err(WireError::new(other.to_string(), false)),
                }
            })
        });
        self.runners.push((name, runner));
        Ok(self)
    }

    /// Creates the streams if needed and starts taking jobs.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Nats`] if the streams, consumers or subscriptions cannot be made.
    pub async fn start(self) -> Result<Worker, RemoteError> {
        let js = jetstream::new(self.client.clone());
        self.config.ensure_streams(&js).await?;
        let nats = |e: &dyn std::fmt::Display| RemoteError::Nats(e.to_string());
        let mut cancels = self
            .client
            .subscribe(self.config.cancel_subject())
            .await
            .map_err(|e| nats(&e))?;
        crate::round_trip(&self.client)
            .await
            .map_err(RemoteError::Nats)?;
        let shared = Arc::new(WorkerShared {
            client: self.client,
            js: js.clone(),
            registry: self.registry,
            config: self.config,
            counters: WorkerCounters::default(),
            running: Mutex::new(HashMap::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            handed_back: Mutex::new(Vec::new()),
        });
        let jobs_stream = js
            .get_stream(shared.config.stream_name("jobs"))
            .await
            .map_err(|e| nats(&e))?;
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let jobs = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let mut pulls = Vec::new();
        for (name, runner) in self.runners {
            let durable = format!("workers-{}", token(&name));
            let consumer = jobs_stream
                .get_or_create_consumer(
                    &durable,
                    pull::Config {
                        durable_name: Some(durable.clone()),
                        filter_subject: shared.config.jobs_subject(&name),
                        ack_policy: AckPolicy::Explicit,
                        ack_wait: shared.config.ack_wait,
                        // One more than allowed: that delivery becomes the poison outcome.
                        max_deliver: i64::from(shared.config.max_deliver) + 1,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| nats(&e))?;
            let (shared, permits, jobs) = (shared.clone(), permits.clone(), jobs.clone());
            let batch = self.concurrency;
            pulls.push(tokio::spawn(async move {
                loop {
                    // Pulled in batches of at most `concurrency`, and one job taken at a time
                    // once a slot is free: a worker holds few jobs it is not running (their
                    // ack wait runs, and they wait for another worker if this one dies).
                    let pulled = consumer
                        .stream()
                        .max_messages_per_batch(batch)
                        .messages()
                        .await;
                    let Ok(mut messages) = pulled else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    loop {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            return;
                        };
                        let Some(message) = messages.next().await else {
                            break;
                        };
                        let Ok(message) = message else { break };
                        let (shared, runner) = (shared.clone(), runner.clone());
                        jobs.lock().await.spawn(async move {
                            handle(shared, runner, message).await;
                            drop(permit);
                        });
                    }
                }
            }));
        }
        let canceller = shared.clone();
        let cancels = tokio::spawn(async move {
            while let Some(message) = cancels.next().await {
                let Ok(id) = serde_json::from_slice::<WireJobId>(&message.payload) else {
                    continue;
                };
                let token = canceller
                    .running
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&id)
                    .cloned();
                if let Some(token) = token {
                    token.cancel();
                    add(&canceller.counters.cancelled);
                }
            }
        });
        Ok(Worker {
            shared,
            pulls,
            jobs,
            cancels,
        })
    }
}

/// Hands a message back if the task handling it is dropped before it is done: to
/// `Worker::stop` (which republishes it, see [`hand_back`]), or else to the server directly.
struct HandBack {
    message: Option<jetstream::Message>,
    shared: Arc<WorkerShared>,
}

impl HandBack {
    async fn ack(mut self, kind: AckKind) {
        if let Some(message) = self.message.take() {
            let _ = message.ack_with(kind).await;
        }
    }
}

impl Drop for HandBack {
    fn drop(&mut self) {
        if let Some(message) = self.message.take() {
            add(&self.shared.counters.handed_back);
            if self.shared.stopping.load(Ordering::SeqCst) {
                self.shared
                    .handed_back
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(message);
            } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                });
            }
        }
    }
}

/// Gives an unfinished job back for another worker: republished with its hand-back count one
/// higher (a server's own delivery count does not always see a negative acknowledgement
/// followed by a delivery to another consumer's client), then acknowledged; if it cannot be
/// republished, negatively acknowledged instead.
async fn hand_back(shared: &WorkerShared, message: jetstream::Message) {
    let republished = match JobRequest::from_bytes(&message.payload) {
        Ok(mut request) => {
            request.handed_back = request.handed_back.saturating_add(1);
            let mut headers = HeaderMap::new();
            headers.insert(
                "Nats-Msg-Id",
                format!(
                    "{}/{}/{}/h{}",
                    request.id.node.as_u64(),
                    request.id.job,
                    request.attempt,
                    request.handed_back
                )
                .as_str(),
            );
            match request.to_bytes() {
                Ok(body) => match shared
                    .js
                    .publish_with_headers(message.subject.clone(), headers, Bytes::from(body))
                    .await
                {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                },
                Err(_) => false,
            }
        }
        Err(_) => false,
    };
    let kind = if republished {
        AckKind::Ack
    } else {
        AckKind::Nak(None)
    };
    let _ = message.ack_with(kind).await;
}

/// Handles one delivery of a job request.
async fn handle(shared: Arc<WorkerShared>, runner: Runner, message: jetstream::Message) {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    let request = match JobRequest::from_bytes(&message.payload) {
        Ok(request) => request,
        Err(_) => {
            add(&shared.counters.undecodable);
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let hand_back = HandBack {
        message: Some(message),
        shared: shared.clone(),
    };
    let deliveries = delivered.saturating_add(i64::from(request.handed_back));
    if deliveries > i64::from(shared.config.max_deliver) {
        let wire = WireError::new(
            format!("delivered {deliveries} times without an outcome: poison job, not run again"),
            false,
        );
        add(&shared.counters.poisoned);
        if send_outcome(&shared, &request, Err(wire)).await {
            hand_back.ack(AckKind::Term).await;
        }
        return;
    }
    if is_stale(request.deadline_unix_ms) {
        add(&shared.counters.stale);
        hand_back.ack(AckKind::Ack).await;
        return;
    }
    let token = CancellationToken::new();
    shared
        .running
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(request.id, token.clone());
    // Heartbeats while the attempt runs: the server must not hand it to another worker.
    let beat = shared.config.ack_wait / 3;
    let result = {
        let run = runner(request.clone(), token, shared.clone());
        tokio::pin!(run);
        loop {
            tokio::select! {
                result = &mut run => break result,
                () = tokio::time::sleep(beat) => {
                    if let Some(message) = &hand_back.message {
                        let _ = message.ack_with(AckKind::Progress).await;
                    }
                }
            }
        }
    };
    shared
        .running
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&request.id);
    if send_outcome(&shared, &request, result).await {
        add(&shared.counters.completed);
        hand_back.ack(AckKind::Ack).await;
    }
    // Otherwise `hand_back` drops here: the job goes back to the server.
}

/// Stores an outcome on the outcome stream; `false` if the server did not take it.
async fn send_outcome(
    shared: &WorkerShared,
    request: &JobRequest,
    result: Result<serde_json::Value, WireError>,
) -> bool {
    let outcome = JobOutcome {
        id: request.id,
        attempt: request.attempt,
        result,
    };
    let Ok(body) = outcome.to_bytes() else {
        return false;
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        format!(
            "{}/{}/{}/outcome",
            request.id.node.as_u64(),
            request.id.job,
            request.attempt
        )
        .as_str(),
    );
    let subject = shared
        .config
        .returns_subject(request.id.node.as_u64(), "outcome");
    match shared
        .js
        .publish_with_headers(subject, headers, Bytes::from(body))
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
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
    }
}
