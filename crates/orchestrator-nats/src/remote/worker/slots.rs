//! A worker's slots: it asks the server only for jobs it can start at once ([`Slots`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::finish::handle;
use super::{Runner, WorkerShared};
use crate::remote::add;

/// How long a pull request waits on the server for jobs before it expires (and, if slots are
/// free, another is sent).
const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// How long after its expiry a pull request that was never answered (the server restarted,
/// the connection dropped) is taken as over, its slots free again.
const PULL_GRACE: Duration = Duration::from_secs(2);

/// How long to wait before sending a pull request again after NATS refused one.
const PULL_RETRY: Duration = Duration::from_millis(200);

/// One job type's consumer, how its requests run, and its open pull requests.
pub(super) struct Puller {
    pub(super) consumer: async_nats::jetstream::consumer::PullConsumer,
    /// The subject its jobs arrive with (a delivery names the job's subject, not the pull
    /// request's).
    pub(super) subject: String,
    pub(super) runner: Runner,
    /// Its pull requests the server has not finished answering, oldest first: the server
    /// fills a consumer's requests in the order they came.
    pub(super) requests: VecDeque<Request>,
}

impl Puller {
    /// Jobs asked for by its open requests and not delivered yet.
    fn reserved(&self) -> usize {
        self.requests.iter().map(|r| r.remaining).sum()
    }
}

/// A pull request the server has not finished answering.
pub(super) struct Request {
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
pub(super) struct Slots {
    pub(super) shared: Arc<WorkerShared>,
    pub(super) pullers: Vec<Puller>,
    pub(super) inbox: String,
    pub(super) concurrency: usize,
    pub(super) running: usize,
    pub(super) next_request: u64,
    pub(super) jobs: Arc<tokio::sync::Mutex<JoinSet<()>>>,
}

impl Slots {
    pub(super) async fn run(mut self, mut deliveries: async_nats::Subscriber) {
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
                    if self.delivered(message, &done_tx).await {
                        // The server refused a request (409: too many waiting requests on the
                        // consumer, or it changed): wait before asking again.
                        retry_at = Some(tokio::time::Instant::now() + PULL_RETRY);
                    }
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
        add(&self.shared.counters.pull_requests);
        puller.requests.push_back(Request {
            n,
            remaining: want,
            over_at: tokio::time::Instant::now() + PULL_EXPIRES + PULL_GRACE,
        });
        true
    }

    /// Handles what came on the pull requests' subscription: a job (run at once) or the
    /// server's word that a request is over (expired, or ended for another reason).
    ///
    /// Returns `true` if the server refused a request rather than letting it expire.
    async fn delivered(
        &mut self,
        message: async_nats::Message,
        done: &mpsc::UnboundedSender<()>,
    ) -> bool {
        match message.status {
            None | Some(async_nats::StatusCode::OK) => {}
            Some(async_nats::StatusCode::IDLE_HEARTBEAT) => return false,
            // Expired: over (the word comes on the request's own subject).
            Some(async_nats::StatusCode::TIMEOUT) => {
                self.over(&message);
                return false;
            }
            // 409 (too many waiting requests, the consumer changed) and the like: over too.
            Some(_) => {
                add(&self.shared.counters.pulls_refused);
                self.over(&message);
                return true;
            }
        }
        let subject = message.subject.as_str();
        let Some(puller) = self.pullers.iter_mut().find(|p| p.subject == subject) else {
            return false;
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
        let (shared, slot) = (self.shared.clone(), SlotGuard(done.clone()));
        let job = handle(shared, runner, Box::new(message), slot);
        let mut jobs = self.jobs.lock().await;
        // A task that ended stays in the set until it is taken out: without this, every job
        // the worker ever ran would keep its task's memory until the worker stops.
        while jobs.try_join_next().is_some() {}
        jobs.spawn(job);
        false
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

/// Frees its job's slot when dropped: once the job's outcome is stored and the job
/// acknowledged, or handed back, however that ends.
pub(super) struct SlotGuard(mpsc::UnboundedSender<()>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}
