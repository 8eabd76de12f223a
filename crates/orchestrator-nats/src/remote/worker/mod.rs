//! The worker side of remote execution: [`Worker`] and its builder (here), its slots and
//! pull requests (`slots.rs`), and what happens to a job it holds: running, storing the
//! outcome, acknowledging, heartbeats, handing back (`finish.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, Context};
use async_nats::{Client, Subject};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use orchestrator_core::{
    CancellationToken, Dispatch, Dispatcher, Event, Job, JobError, Progress, SignalBus,
};
use orchestrator_remote::{CodecError, JobRequest, ProgressReport, Registry, WireError, WireJobId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::{REMOTE_ATTEMPT, REMOTE_JOB, RemoteConfig, RemoteError, add, attempt_id, token};
use crate::message_id;

mod finish;
mod slots;

use finish::{Finished, hand_back};
use slots::{Puller, Slots};

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
    /// Pull requests sent to the server (each asks for up to the worker's free slots).
    pub pull_requests: u64,
    /// Pull requests the server refused (too many waiting on the consumer, the consumer
    /// changed): the worker waits a moment before asking again.
    pub pulls_refused: u64,
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
    pull_requests: AtomicU64,
    pulls_refused: AtomicU64,
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
    running: Mutex<HashMap<WireJobId, Running>>,
    /// Set by `Worker::stop`: the messages of the attempts it drops wait here for their
    /// negative acknowledgement instead of sending it on their own.
    stopping: std::sync::atomic::AtomicBool,
    handed_back: Mutex<Vec<jetstream::Message>>,
    /// The finisher's queue, and how many jobs in it (or being stored) it has not finished.
    finished: mpsc::UnboundedSender<Finished>,
    finishing: AtomicU64,
}

/// A job the worker runs: how to cancel it, and where its heartbeats go.
struct Running {
    token: CancellationToken,
    /// The subject the server acknowledges the job's delivery on.
    reply: Option<Subject>,
}

impl WorkerShared {
    fn running(&self) -> MutexGuard<'_, HashMap<WireJobId, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn handed_back(&self) -> MutexGuard<'_, Vec<jetstream::Message>> {
        self.handed_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
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
/// - It asks the server only for jobs it can start at once (pull requests sized to its free
///   slots, sent once at least half are free): every job it holds is running, and the others
///   wait on the server, for whichever worker has a free slot first.
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
    /// The cancel requests' subscription, the heartbeats, the finisher.
    background: Vec<JoinHandle<()>>,
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
            pull_requests: c.pull_requests.load(Ordering::Relaxed),
            pulls_refused: c.pulls_refused.load(Ordering::Relaxed),
        }
    }

    /// Returns how many job tasks the worker keeps: those of the jobs it runs or finishes, and
    /// those that ended since it last took a job (never more than its concurrency plus the
    /// jobs of one pull request).
    pub async fn tasks(&self) -> usize {
        self.jobs.lock().await.len()
    }

    /// Stops taking jobs, waits up to `grace` for the running ones (and for their outcomes to
    /// be stored), then hands the rest back to the server (they go to another worker at once)
    /// and returns.
    pub async fn stop(mut self, grace: Duration) {
        for pull in std::mem::take(&mut self.pulls) {
            pull.abort();
            // Ended: its subscription is dropped (and its unsubscription queued).
            let _ = pull.await;
        }
        // Once the server has dropped this worker's pull requests, a job handed back cannot go
        // to them again.
        let _ = self.shared.client.flush().await;
        let shared = self.shared.clone();
        let mut jobs = self.jobs.lock().await;
        let drained = tokio::time::timeout(grace, async {
            while jobs.join_next().await.is_some() {}
            while shared.finishing.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Dropping a job's task, or the finisher with the jobs it holds, hands their messages
        // back (see `HandBack`).
        jobs.shutdown().await;
        for task in std::mem::take(&mut self.background) {
            task.abort();
            let _ = task.await;
        }
        if drained.is_err() {
            let back = std::mem::take(&mut *self.shared.handed_back());
            for message in back {
                hand_back(&self.shared, message).await;
            }
        }
        let _ = self.shared.client.flush().await;
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        for task in self.pulls.iter().chain(&self.background) {
            task.abort();
        }
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
                let events = bus.subscribe();
                let handle = dispatcher
                    .job(job)
                    .cancellation(token)
                    .bus(bus.clone())
                    .metadata(REMOTE_JOB, request.id.to_string())
                    .metadata(REMOTE_ATTEMPT, request.attempt.to_string())
                    .dispatch();
                let progress = handle.progress();
                let run = async {
                    let outcome = handle.await;
                    bus.close(); // ends `forward_events` after the queued events
                    outcome
                };
                let reports = report_progress(&shared, request.id, progress);
                let forward = forward_events(&shared, &request, events);
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
        let (finished, to_finish) = mpsc::unbounded_channel();
        let shared = Arc::new(WorkerShared {
            client: self.client,
            js: js.clone(),
            registry: self.registry,
            config: self.config,
            counters: WorkerCounters::default(),
            running: Mutex::new(HashMap::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            handed_back: Mutex::new(Vec::new()),
            finished,
            finishing: AtomicU64::new(0),
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
                let token = canceller.running().get(&id).map(|r| r.token.clone());
                if let Some(token) = token {
                    token.cancel();
                    add(&canceller.counters.cancelled);
                }
            }
        });
        let background = vec![
            cancels,
            tokio::spawn(finish::heartbeats(shared.clone())),
            tokio::spawn(finish::finish(shared.clone(), to_finish)),
        ];
        Ok(Worker {
            shared,
            pulls,
            jobs,
            background,
        })
    }
}

/// Sends a running job's progress reports to its dispatching node (core NATS, at most once).
async fn report_progress(
    shared: &WorkerShared,
    id: WireJobId,
    mut progress: impl Stream<Item = Progress> + Unpin,
) {
    let mut subject = None;
    while let Some(report) = progress.next().await {
        let report = ProgressReport {
            id,
            progress: report,
        };
        let Ok(body) = report.to_bytes() else {
            continue;
        };
        let subject = subject
            .get_or_insert_with(|| shared.config.progress_subject(id.node.as_u64()))
            .clone();
        // Boxed: most jobs report nothing, and the publish would weigh on every job's task.
        let _ = Box::pin(shared.client.publish(subject, Bytes::from(body))).await;
    }
}

/// Sends what a running job's executor emits (registered payloads, but not the output event,
/// which the dispatching side publishes itself) to its dispatching node, on the outcome stream,
/// before the outcome.
async fn forward_events(
    shared: &WorkerShared,
    request: &JobRequest,
    mut events: impl Stream<Item = Event> + Unpin,
) {
    let mut acks = Vec::new();
    let mut index = 0u32;
    let mut subject = None;
    while let Some(event) = events.next().await {
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
        let subject = subject
            .get_or_insert_with(|| {
                shared
                    .config
                    .returns_subject(request.id.node.as_u64(), "event")
            })
            .clone();
        // Boxed: most jobs emit nothing, and the publish would weigh on every job's task.
        let publish = Box::pin(
            shared
                .js
                .publish_with_headers(subject, headers, Bytes::from(body)),
        );
        match publish.await {
            Ok(ack) => acks.push(ack),
            Err(_) => add(&shared.counters.events_failed),
        }
    }
    for ack in acks {
        if ack.await.is_err() {
            add(&shared.counters.events_failed);
        }
    }
}
