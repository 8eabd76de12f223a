//! What happens to a job once a worker holds it: [`handle`] runs it, the finisher
//! ([`finish`]) stores its outcome and then acknowledges it, [`heartbeats`] keep the running
//! ones alive on the server, and [`HandBack`] gives back a job the worker could not finish.
//!
//! A job's own task holds only the job while it runs; storing outcomes and acknowledging jobs
//! happens in one finisher task per worker, which pipelines them: it sends each outcome as it
//! comes and acknowledges each job once the server has stored its outcome, without waiting for
//! one job's acknowledgement before sending the next outcome.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use orchestrator_core::CancellationToken;
use orchestrator_remote::{JobOutcome, JobRequest, WireError, is_stale};
use tokio::sync::mpsc;

use super::slots::SlotGuard;
use super::{Runner, Running, WorkerShared};
use crate::message_id;
use crate::remote::{add, attempt_id};

/// A job the worker is done with, for the finisher.
pub(super) struct Finished {
    /// The job's message (handed back if it is dropped unacknowledged).
    pub(super) message: HandBack,
    /// The outcome to store first, if any.
    pub(super) outcome: Option<JobOutcome>,
    /// How to acknowledge the job once its outcome is stored.
    pub(super) kind: AckKind,
    /// Whether the job ran to this outcome (counted as completed once it is stored).
    pub(super) ran: bool,
    /// The job's slot, free once it is acknowledged.
    pub(super) _slot: SlotGuard,
}

/// Handles one delivery of a job request: skips it (stale, poison, undecodable) or runs it,
/// then gives it to the finisher.
pub(super) async fn handle(
    shared: Arc<WorkerShared>,
    runner: Runner,
    message: Box<jetstream::Message>,
    slot: SlotGuard,
) {
    // The message is boxed, and nothing large lives across the run's await: this task stays
    // small (a task of over a kilobyte costs the allocator far more).
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    let reply = message.reply.clone();
    let request = JobRequest::from_bytes(&message.payload);
    let message = HandBack {
        message: Some(message),
        shared: shared.clone(),
    };
    let done = |outcome: Option<JobOutcome>, kind: AckKind, ran: bool| Finished {
        message,
        outcome,
        kind,
        ran,
        _slot: slot,
    };
    let Ok(request) = request else {
        add(&shared.counters.undecodable);
        return shared.finish(done(None, AckKind::Term, false));
    };
    let (id, attempt) = (request.id, request.attempt);
    let outcome = |result| {
        Some(JobOutcome {
            id,
            attempt,
            result,
        })
    };
    let deliveries = delivered.saturating_add(i64::from(request.handed_back));
    if deliveries > i64::from(shared.config.max_deliver) {
        let wire = WireError::new(
            format!("delivered {deliveries} times without an outcome: poison job, not run again"),
            false,
        );
        add(&shared.counters.poisoned);
        return shared.finish(done(outcome(Err(wire)), AckKind::Term, false));
    }
    if is_stale(request.deadline_unix_ms) {
        add(&shared.counters.stale);
        return shared.finish(done(None, AckKind::Ack, false));
    }
    let token = CancellationToken::new();
    shared.running().insert(
        id,
        Running {
            token: token.clone(),
            reply,
        },
    );
    let result = runner(request, token, shared.clone()).await;
    shared.running().remove(&id);
    shared.finish(done(outcome(result), AckKind::Ack, true));
}

impl WorkerShared {
    /// Gives a job to the finisher (which may be gone if the worker stopped: then the job is
    /// handed back as its message drops).
    fn finish(&self, finished: Finished) {
        self.finishing.fetch_add(1, Ordering::SeqCst);
        if let Err(mpsc::error::SendError(finished)) = self.finished.send(finished) {
            self.finishing.fetch_sub(1, Ordering::SeqCst);
            drop(finished);
        }
    }
}

/// The finisher: stores each job's outcome (with its message id, so a job run twice stores
/// one), then acknowledges the job; a job whose outcome the server did not take is handed
/// back. Runs until the worker stops it.
pub(super) async fn finish(
    shared: Arc<WorkerShared>,
    mut finished: mpsc::UnboundedReceiver<Finished>,
) {
    let mut storing = FuturesUnordered::new();
    loop {
        tokio::select! {
            next = finished.recv() => {
                let Some(job) = next else { break };
                let sent = match &job.outcome {
                    Some(outcome) => Some(store(&shared, outcome).await),
                    None => None,
                };
                match sent {
                    None => acknowledge(&shared, job, true).await,
                    Some(Ok(stored)) => storing.push(async move { (stored.await.is_ok(), job) }),
                    Some(Err(())) => acknowledge(&shared, job, false).await,
                }
            }
            Some((stored, job)) = storing.next(), if !storing.is_empty() => {
                acknowledge(&shared, job, stored).await;
            }
        }
    }
}

/// Sends an outcome to the outcome stream; the future resolves when the server has stored it.
async fn store(
    shared: &WorkerShared,
    outcome: &JobOutcome,
) -> Result<jetstream::context::PublishAckFuture, ()> {
    let body = outcome.to_bytes().map_err(drop)?;
    let headers = message_id(&attempt_id(outcome.id, outcome.attempt, "/outcome"));
    let subject = shared
        .config
        .returns_subject(outcome.id.node.as_u64(), "outcome");
    shared
        .js
        .publish_with_headers(subject, headers, Bytes::from(body))
        .await
        .map_err(drop)
}

/// Acknowledges a finished job if its outcome is `stored` (or it had none to store), or hands
/// it back; then frees its slot.
async fn acknowledge(shared: &WorkerShared, mut job: Finished, stored: bool) {
    if stored {
        if job.ran {
            add(&shared.counters.completed);
        }
        if let Some(message) = job.message.message.take() {
            let _ = message.ack_with(job.kind).await;
        }
    }
    // Otherwise the message drops here, unacknowledged: handed back to the server.
    drop(job);
    shared.finishing.fetch_sub(1, Ordering::SeqCst);
}

/// Tells the server, every third of the ack wait, that the worker is still running each of
/// its running jobs, so that none is handed to another worker meanwhile.
pub(super) async fn heartbeats(shared: Arc<WorkerShared>) {
    let beat = (shared.config.ack_wait / 3).max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval(beat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let replies: Vec<_> = shared
            .running()
            .values()
            .filter_map(|running| running.reply.clone())
            .collect();
        for reply in replies {
            let _ = shared
                .client
                .publish(reply, Bytes::from_static(b"+WPI"))
                .await;
        }
    }
}

/// Hands a message back if it is dropped before it is acknowledged: to `Worker::stop` (which
/// republishes it, see [`hand_back`]), or else to the server directly.
pub(super) struct HandBack {
    pub(super) message: Option<Box<jetstream::Message>>,
    pub(super) shared: Arc<WorkerShared>,
}

impl Drop for HandBack {
    fn drop(&mut self) {
        if let Some(message) = self.message.take() {
            add(&self.shared.counters.handed_back);
            if self.shared.stopping.load(Ordering::SeqCst) {
                self.shared.handed_back().push(*message);
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
pub(super) async fn hand_back(shared: &WorkerShared, message: jetstream::Message) {
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
