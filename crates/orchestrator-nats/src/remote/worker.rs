//! The worker side of remote execution: [`Worker`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, AckKind, Context};
use bytes::Bytes;
use futures_util::StreamExt;
use orchestrator_core::{CancellationToken, Dispatch, Dispatcher, Job, JobError, SignalBus};
use orchestrator_remote::{
    CodecError, JobOutcome, JobRequest, ProgressReport, Registry, WireError, WireJobId, is_stale,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::{REMOTE_ATTEMPT, REMOTE_JOB, RemoteConfig, RemoteError, add, attempt_id, token};
use crate::message_id;

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
                        let headers = message_id(&attempt_id(
                            request.id,
                            request.attempt,
                            &format!("/e{index}"),
                        ));
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
        let js = self.config.context(&self.client);
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
        let mut pullers = Vec::new();
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
            pullers.push(Puller {
                consumer,
                subject: shared.config.jobs_subject(&name),
                runner,
                requests: VecDeque::new(),
            });
        }
        // The answers to every pull request come to one subscription (`<inbox>.<n>`).
        let inbox = shared.client.new_inbox();
        let deliveries = shared
            .client
            .subscribe(format!("{inbox}.>"))
            .await
            .map_err(|e| nats(&e))?;
        crate::round_trip(&shared.client)
            .await
            .map_err(RemoteError::Nats)?;
        let jobs = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let slots = Slots {
            shared: shared.clone(),
            pullers,
            inbox,
            concurrency: self.concurrency,
            running: 0,
            next_request: 0,
            jobs: jobs.clone(),
        };
        let pulls = vec![tokio::spawn(slots.run(deliveries))];
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

/// How long a pull request waits on the server for jobs before it expires (and, if slots are
/// free, another is sent).
const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// How long after its expiry a pull request that was never answered (the server restarted,
/// the connection dropped) is taken as over, its slots free again.
const PULL_GRACE: Duration = Duration::from_secs(2);

/// How long to wait before sending a pull request again after NATS refused one.
const PULL_RETRY: Duration = Duration::from_millis(200);

/// One job type's consumer, how its requests run, and its open pull requests.
struct Puller {
    consumer: async_nats::jetstream::consumer::PullConsumer,
    /// The subject its jobs arrive with (a delivery names the job's subject, not the pull
    /// request's).
    subject: String,
    runner: Runner,
    /// Its pull requests the server has not finished answering, oldest first: the server
    /// fills a consumer's requests in the order they came.
    requests: VecDeque<Request>,
}

impl Puller {
    /// Jobs asked for by its open requests and not delivered yet.
    fn reserved(&self) -> usize {
        self.requests.iter().map(|r| r.remaining).sum()
    }
}

/// A pull request the server has not finished answering.
struct Request {
    n: u64,
    /// Jobs it may still deliver.
    remaining: usize,
    /// When it is taken as over if the server never says so.
    over_at: tokio::time::Instant,
}

/// The worker's slots: every job it holds is running, so none waits in the worker while its
/// ack wait passes.
///
/// Invariants:
/// 1. `running + Σ reserved <= concurrency`, except for a job delivered on a request already
///    taken as over (the server answered after `PULL_GRACE`): it runs, over the limit.
/// 2. A request is sent only for slots that are free, and only once at least half of a
///    puller's share is free: pulls come in batches, not one per freed slot.
/// 3. A puller never has more than its share (`concurrency / pullers`, rounded up) reserved,
///    so one job type's waiting request cannot take every slot from the others.
/// 4. A request ends when it has delivered all it asked for, when the server says it is over
///    (with how many it did not deliver), or `PULL_GRACE` after its expiry.
struct Slots {
    shared: Arc<WorkerShared>,
    pullers: Vec<Puller>,
    inbox: String,
    concurrency: usize,
    running: usize,
    next_request: u64,
    jobs: Arc<tokio::sync::Mutex<JoinSet<()>>>,
}

impl Slots {
    async fn run(mut self, mut deliveries: async_nats::Subscriber) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
        let share = self.concurrency.div_ceil(self.pullers.len().max(1));
        let batch_at = share.div_ceil(2);
        let mut retry_at = None;
        loop {
            if retry_at.is_none_or(|at| tokio::time::Instant::now() >= at) {
                retry_at = None;
                for index in 0..self.pullers.len() {
                    let reserved: usize = self.pullers.iter().map(Puller::reserved).sum();
                    let free = self.concurrency.saturating_sub(self.running + reserved);
                    let want = free.min(share.saturating_sub(self.pullers[index].reserved()));
                    if want == 0 || want < batch_at {
                        continue;
                    }
                    if !self.pull(index, want).await {
                        retry_at = Some(tokio::time::Instant::now() + PULL_RETRY);
                        break;
                    }
                }
            }
            let wake = self
                .pullers
                .iter()
                .flat_map(|p| p.requests.iter().map(|r| r.over_at))
                .chain(retry_at)
                .min()
                .unwrap_or_else(|| tokio::time::Instant::now() + PULL_EXPIRES);
            tokio::select! {
                message = deliveries.next() => {
                    let Some(message) = message else { return };
                    self.delivered(message, &done_tx).await;
                }
                Some(()) = done_rx.recv() => {
                    self.running = self.running.saturating_sub(1);
                    while done_rx.try_recv().is_ok() {
                        self.running = self.running.saturating_sub(1);
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = tokio::time::Instant::now();
                    for puller in &mut self.pullers {
                        puller.requests.retain(|r| r.over_at > now);
                    }
                }
            }
        }
    }

    /// Asks puller `index`'s consumer for up to `want` jobs; `false` if NATS refused.
    async fn pull(&mut self, index: usize, want: usize) -> bool {
        let n = self.next_request;
        self.next_request += 1;
        let reply = format!("{}.{n}", self.inbox);
        let request = async_nats::jetstream::consumer::pull::BatchConfig {
            batch: want,
            expires: Some(PULL_EXPIRES),
            ..Default::default()
        };
        let puller = &mut self.pullers[index];
        if puller
            .consumer
            .request_batch(request, reply.into())
            .await
            .is_err()
        {
            return false;
        }
        puller.requests.push_back(Request {
            n,
            remaining: want,
            over_at: tokio::time::Instant::now() + PULL_EXPIRES + PULL_GRACE,
        });
        true
    }

    /// Handles what came on the pull requests' subscription: a job (run at once) or the
    /// server's word that a request is over (expired, or ended for another reason).
    async fn delivered(&mut self, message: async_nats::Message, done: &mpsc::UnboundedSender<()>) {
        match message.status {
            None | Some(async_nats::StatusCode::OK) => {}
            Some(async_nats::StatusCode::IDLE_HEARTBEAT) => return,
            // 408 (expired), 409 (the consumer changed, too many requests): that request is
            // over. It comes on the request's own subject.
            Some(_) => return self.over(&message),
        }
        let subject = message.subject.as_str();
        let Some(puller) = self.pullers.iter_mut().find(|p| p.subject == subject) else {
            return;
        };
        if let Some(request) = puller.requests.iter_mut().find(|r| r.remaining > 0) {
            request.remaining -= 1;
        }
        puller.requests.retain(|r| r.remaining > 0);
        let runner = puller.runner.clone();
        self.running += 1;
        let message = jetstream::Message {
            message,
            context: self.shared.js.clone(),
        };
        let (shared, done) = (self.shared.clone(), done.clone());
        self.jobs.lock().await.spawn(async move {
            let _slot = SlotGuard(done);
            handle(shared, runner, message).await;
        });
    }

    /// Ends the request a status message is about (it comes on the request's subject): the
    /// jobs it did not deliver free their slots.
    fn over(&mut self, status: &async_nats::Message) {
        let n = status.subject.as_str().rsplit('.').next();
        let Some(n) = n.and_then(|t| t.parse::<u64>().ok()) else {
            return;
        };
        for puller in &mut self.pullers {
            puller.requests.retain(|r| r.n != n);
        }
    }
}

/// Frees its job's slot when the job's task ends, however it ends.
struct SlotGuard(mpsc::UnboundedSender<()>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let _ = self.0.send(());
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
            let headers = message_id(&attempt_id(
                request.id,
                request.attempt,
                &format!("/h{}", request.handed_back),
            ));
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
    let headers = message_id(&attempt_id(request.id, request.attempt, "/outcome"));
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
