//! The journal of each durable job type ([`TypeJournal`]) and what the journals share
//! ([`Shared`]): the writes of a job's acceptance, attempts and end, and its dispatch again
//! after a restart ([`redispatch`]).

use std::any::Any;
use std::collections::HashMap;
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orchestrator_core::{
    Accepting, Dispatch, Dispatcher, Ending, Job, JobContext, JobHandle, JobId, Journal,
    JournalError, JournalFuture, Receipt, StoredAlready,
};
use orchestrator_remote::{Registry, WireJobId};
use orchestrator_store::{Op, Store, Table};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::DurableError;
use crate::gate::Gate;
use crate::record::{
    Clock, Counters, DeadLettered, DeadRecord, End, JobRecord, RECORD_VERSION, RetryRecord,
    StoredOutcome, encode, expiry_key, hex, key, ms, parse_hex, unix_ms,
};
use crate::writer::{Ticket, Writer};

use crate::durable::DURABLE_ID;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A durable job running in this process.
pub(crate) struct Flight {
    pub(crate) id: WireJobId,
    pub(crate) counters: Counters,
    pub(crate) placeholder: Option<serde_json::Value>,
    /// Its place in the order of acceptance (a network-bound job waits for its turn by it).
    pub(crate) seq: u64,
}

/// A stored job to run again.
pub(crate) struct Pending {
    pub(crate) id: WireJobId,
    pub(crate) record: JobRecord,
    pub(crate) counters: Counters,
}

/// Dispatches a pending job of one type on the dispatcher.
pub(crate) type Resume =
    dyn Fn(&Arc<Shared>, &Dispatcher, Pending) -> Result<JobId, DurableError> + Send + Sync;

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) accepted: AtomicU64,
    pub(crate) recovered: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) unknown: AtomicU64,
    pub(crate) interrupted: AtomicU64,
}

/// What the journals of the durable job types share. It holds no dispatcher (the dispatcher
/// holds the journals, which hold this: a dispatcher here would make a cycle that keeps the
/// store, and its file, open forever).
pub(crate) struct Shared {
    /// `None` once closed: the file is let go of.
    pub(crate) store: Mutex<Option<Arc<dyn Store>>>,
    pub(crate) registry: Arc<Registry>,
    /// The dispatcher's bus, for the dead letters found at start-up.
    pub(crate) bus: orchestrator_core::SignalBus,
    pub(crate) writer: Writer,
    pub(crate) poison_after: u32,
    pub(crate) retention: Duration,
    pub(crate) clock: Clock,
    pub(crate) inflight: Mutex<HashMap<JobId, Flight>>,
    /// The next acceptance's place in the order.
    pub(crate) next_seq: AtomicU64,
    /// The network-bound job types' gates.
    pub(crate) gates: Mutex<Vec<Arc<Gate>>>,
    /// Recovered jobs being dispatched: their counters, until their dispatch is accepted.
    pub(crate) recovering: Mutex<HashMap<WireJobId, Counters>>,
    pub(crate) types: Mutex<HashMap<String, Arc<Resume>>>,
    /// Handles of recovered jobs, until taken or until the job ends.
    pub(crate) handles: Mutex<HashMap<WireJobId, Box<dyn Any + Send>>>,
    pub(crate) stats: Stats,
}

impl Shared {
    /// The wall clock, in milliseconds since the Unix epoch.
    pub(crate) fn now(&self) -> u64 {
        unix_ms((self.clock)())
    }

    /// Publishes a dead letter's event on the dispatcher's bus.
    pub(crate) fn announce(&self, event: DeadLettered) {
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        let _ = self.bus.emit(event);
    }

    /// Changes the counters of job `local` (of this process) and writes them.
    pub(crate) fn bump(
        &self,
        local: JobId,
        change: impl FnOnce(&mut Counters),
    ) -> Option<Arc<Ticket>> {
        let (id, counters) = {
            let mut inflight = lock(&self.inflight);
            let flight = inflight.get_mut(&local)?;
            change(&mut flight.counters);
            (flight.id, flight.counters)
        };
        Some(
            self.writer
                .submit(vec![Op::put(Table::Attempts, key(id), counters.to_bytes())]),
        )
    }

    /// The store, unless closed.
    pub(crate) fn store(&self) -> Result<Arc<dyn Store>, DurableError> {
        lock(&self.store)
            .clone()
            .ok_or(DurableError::Store(orchestrator_store::StoreError::Closed))
    }

    /// Moves a stored job to the dead-letter list (it stays in the jobs table); its event is
    /// published once the write has ended, so that whoever it reaches finds the job on the
    /// list. Returns the write's ticket.
    pub(crate) fn dead_letter(
        self: &Arc<Self>,
        id: WireJobId,
        record: &JobRecord,
        counters: Counters,
        reason: String,
    ) -> Arc<Ticket> {
        let dead = DeadRecord {
            reason: reason.clone(),
            dead_unix_ms: self.now(),
        };
        let ticket = match encode(&dead) {
            Ok(bytes) => self.writer.submit(vec![
                Op::put(Table::Dead, key(id), bytes),
                Op::put(Table::Attempts, key(id), counters.to_bytes()),
            ]),
            Err(error) => Ticket::done(Err(JournalError::new(error))),
        };
        let event = DeadLettered {
            id,
            job_type: record.request.job_type.clone(),
            reason,
            placeholder: record.placeholder.clone(),
        };
        let shared = self.clone();
        ticket.then(move |written| shared.announce(unrecorded(event, written)));
        ticket
    }
}

/// A dead letter's event, saying so if its write failed (the job is then still stored as it
/// was, and is judged again at the next start).
fn unrecorded(mut event: DeadLettered, written: &Result<(), JournalError>) -> DeadLettered {
    if let Err(error) = written {
        event.reason = format!(
            "{} (not recorded on the dead-letter list: {error}; it is judged again at the next \
             start)",
            event.reason
        );
    }
    event
}

/// The journal of one durable job type.
pub(crate) struct TypeJournal<J> {
    pub(crate) shared: Arc<Shared>,
    /// A network-bound type's turns, and after how many failed attempts a job is poisoned.
    pub(crate) online: Option<(Arc<Gate>, u32)>,
    pub(crate) _job: std::marker::PhantomData<fn(J)>,
}

impl<J> TypeJournal<J>
where
    J: Job + Serialize + DeserializeOwned,
    J::Output: Serialize + DeserializeOwned,
{
    fn record(&self, job: &J, dispatch: &Accepting<'_, J>) -> Result<JobRecord, String> {
        let registry = &self.shared.registry;
        let request = registry
            .encode_job(dispatch.id(), job, dispatch.first_attempt(), None)
            .map_err(|e| e.to_string())?;
        let accepted = self.shared.now();
        let placeholder = match dispatch.placeholder() {
            Some(value) => Some(serde_json::to_value(value).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(JobRecord {
            version: RECORD_VERSION,
            request,
            accepted_unix_ms: accepted,
            due_unix_ms: accepted.saturating_add(dispatch.delay().map_or(0, ms)),
            timeout_ms: dispatch.timeout().map(ms),
            attempt_timeout_ms: dispatch.attempt_timeout().map(ms),
            retry: dispatch.retry().map(RetryRecord::of),
            placeholder,
            metadata: dispatch
                .metadata()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dedup: dispatch.dedup_key().map(str::to_owned),
        })
    }
}

impl<J> Journal<J> for TypeJournal<J>
where
    J: Job + Serialize + DeserializeOwned,
    J::Output: Serialize + DeserializeOwned,
{
    fn accept(
        &self,
        job: &J,
        dispatch: &Accepting<'_, J>,
    ) -> Result<Arc<dyn Receipt>, JournalError> {
        let shared = &self.shared;
        if let Some(id) = dispatch.metadata_value(DURABLE_ID).and_then(parse_hex) {
            if let Some(counters) = lock(&shared.recovering).remove(&id) {
                // A recovered job: stored already, under its first dispatch's id.
                let placeholder = match dispatch.placeholder() {
                    Some(value) => serde_json::to_value(value).ok(),
                    None => None,
                };
                let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
                lock(&shared.inflight).insert(
                    dispatch.id(),
                    Flight {
                        id,
                        counters,
                        placeholder,
                        seq,
                    },
                );
                return Ok(Arc::new(StoredAlready));
            }
        }
        let record = self.record(job, dispatch).map_err(JournalError::new)?;
        let bytes = encode(&record).map_err(JournalError::new)?;
        let id = record.request.id;
        let counters = Counters {
            failures: dispatch.first_attempt().saturating_sub(1),
            ..Counters::default()
        };
        let mut ops = vec![Op::put(Table::Jobs, key(id), bytes)];
        if counters != Counters::default() {
            ops.push(Op::put(Table::Attempts, key(id), counters.to_bytes()));
        }
        let ticket = shared.writer.submit(ops);
        shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
        lock(&shared.inflight).insert(
            dispatch.id(),
            Flight {
                id,
                counters,
                placeholder: record.placeholder,
                seq,
            },
        );
        Ok(ticket)
    }

    fn attempt(&self, id: JobId, _attempt: u32) -> JournalFuture {
        let start = move |shared: &Shared| match shared
            .bump(id, |c| c.starts = c.starts.saturating_add(1))
        {
            Some(ticket) => ticket.wait(),
            None => Ticket::done(Ok(())).wait(),
        };
        let Some((gate, max_failures)) = &self.online else {
            return start(&self.shared);
        };
        let (seq, failures) = match lock(&self.shared.inflight).get(&id) {
            Some(flight) => (flight.seq, flight.counters.failures),
            None => return Ticket::done(Ok(())).wait(),
        };
        if failures >= *max_failures {
            let poisoned = JournalError::fatal(format!(
                "poisoned: it failed {failures} times (the limit of its job type)"
            ));
            return Box::pin(std::future::ready(Err(poisoned)));
        }
        // Sent when the network is up and its turn comes: first accepted, first sent.
        let turn = gate.turn(id, seq);
        let shared = self.shared.clone();
        Box::pin(async move {
            turn.await;
            start(&shared).await
        })
    }

    fn retrying(&self, id: JobId, attempt: u32, _error: &(dyn Error + 'static)) -> JournalFuture {
        match self
            .shared
            .bump(id, |c| c.failures = c.failures.max(attempt))
        {
            Some(ticket) => ticket.wait(),
            None => Ticket::done(Ok(())).wait(),
        }
    }

    fn finish(
        &self,
        local: JobId,
        ending: Ending<'_, J::Output>,
        cx: &JobContext,
    ) -> JournalFuture {
        let shared = &self.shared;
        if let Some((gate, _)) = &self.online {
            gate.release(local);
        }
        let Some(flight) = lock(&shared.inflight).remove(&local) else {
            return Ticket::done(Ok(())).wait();
        };
        let k = key(flight.id);
        let outcome = match ending {
            Ending::Interrupted => {
                shared.stats.interrupted.fetch_add(1, Ordering::Relaxed);
                let mut counters = flight.counters;
                counters.released = counters.released.saturating_add(1);
                let ticket =
                    shared
                        .writer
                        .submit(vec![Op::put(Table::Attempts, k, counters.to_bytes())]);
                return forget_handle_after(shared.clone(), flight.id, ticket, None);
            }
            Ending::Outcome(outcome) => outcome,
        };
        let end = match End::of(outcome) {
            Ok(end) => end,
            Err(error) => End::Rejected {
                reason: format!("the output could not be encoded: {error}"),
            },
        };
        let mut ops = Vec::with_capacity(4);
        let mut dead_event = None;
        let job_type = shared
            .registry
            .job_name::<J>()
            .unwrap_or_default()
            .to_owned();
        if let End::Failed { error, attempts } = &end {
            // Out of attempts: the job goes to the dead-letter list instead of away.
            let counters = Counters {
                failures: flight.counters.failures.max(*attempts),
                ..flight.counters
            };
            let dead = DeadRecord {
                reason: error.clone(),
                dead_unix_ms: shared.now(),
            };
            if let Ok(bytes) = encode(&dead) {
                ops.push(Op::put(Table::Dead, k.clone(), bytes));
                ops.push(Op::put(Table::Attempts, k.clone(), counters.to_bytes()));
            }
            dead_event = Some(DeadLettered {
                id: flight.id,
                job_type: job_type.clone(),
                reason: error.clone(),
                placeholder: flight.placeholder.clone(),
            });
        } else {
            ops.push(Op::delete(Table::Jobs, k.clone()));
            ops.push(Op::delete(Table::Attempts, k.clone()));
        }
        if !shared.retention.is_zero() {
            let finished = shared.now();
            let stored = StoredOutcome {
                id: flight.id,
                job_type,
                finished_unix_ms: finished,
                end,
            };
            if let Ok(bytes) = encode(&stored) {
                ops.push(Op::put(Table::Outcomes, k, bytes));
                ops.push(Op::put(
                    Table::Expiry,
                    expiry_key(finished, flight.id),
                    Vec::new(),
                ));
            }
        }
        let ticket = shared.writer.submit(ops);
        let announce = dead_event.map(|event| (cx.clone(), event));
        forget_handle_after(shared.clone(), flight.id, ticket, announce)
    }
}

/// Waits for the end's write, then publishes the job's dead letter (if it has one: whoever
/// it reaches finds the job on the list), and lets go of the kept handle of recovered job
/// `id` (an untaken handle is taken until then: its outcome is readable as soon as it is
/// gone).
pub(crate) fn forget_handle_after(
    shared: Arc<Shared>,
    id: WireJobId,
    ticket: Arc<Ticket>,
    announce: Option<(JobContext, DeadLettered)>,
) -> JournalFuture {
    Box::pin(async move {
        let written = ticket.wait().await;
        if let Some((cx, event)) = announce {
            shared.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            // Before the job's terminal event: the handle resolves after this future.
            let _ = cx.emit(unrecorded(event, &written));
        }
        drop(lock(&shared.handles).remove(&id));
        written
    })
}

/// Dispatches `pending` (a job of type `J`) through `via`, with what is left of its budget,
/// its retry policy continued and its due time kept.
pub(crate) fn redispatch<J>(
    shared: &Arc<Shared>,
    via: &impl Dispatch,
    pending: Pending,
) -> Result<JobId, DurableError>
where
    J: Job + Serialize + DeserializeOwned,
    J::Output: Serialize + DeserializeOwned + Send,
{
    let Pending {
        id,
        record,
        counters,
    } = pending;
    let job: J = match shared.registry.decode_job::<J>(&record.request) {
        Ok(job) => job,
        Err(error) => {
            let reason = format!("the stored job no longer decodes: {error}");
            let ticket = shared.dead_letter(id, &record, counters, reason.clone());
            shared.writer.settle(&ticket);
            return Err(DurableError::Codec(reason));
        }
    };
    lock(&shared.recovering).insert(id, counters);
    let now = shared.now();
    let mut builder = via
        .job(job)
        .first_attempt(counters.failures.saturating_add(1))
        .metadata(DURABLE_ID, hex(id));
    // Its optimistic value is announced again: the state that showed it was lost with the
    // process too.
    if let Some(value) = record.placeholder.as_ref() {
        if let Ok(value) = serde_json::from_value::<J::Output>(value.clone()) {
            builder = builder.placeholder(value);
        }
    }
    for (k, v) in record.metadata.iter().filter(|(k, _)| k != DURABLE_ID) {
        builder = builder.metadata(k.clone(), v.clone());
    }
    if record.due_unix_ms > now {
        builder = builder.delay(Duration::from_millis(record.due_unix_ms - now));
    }
    if let Some(timeout) = record.timeout_ms {
        // The budget counts from when the job was first due: a job past its deadline ends
        // timed out instead of running.
        let deadline = record.due_unix_ms.saturating_add(timeout);
        let left = deadline.saturating_sub(now.max(record.due_unix_ms));
        builder = builder.timeout(Duration::from_millis(left));
    }
    if let Some(limit) = record.attempt_timeout_ms {
        builder = builder.attempt_timeout(Duration::from_millis(limit));
    }
    if let Some(policy) = record.retry.as_ref().and_then(RetryRecord::policy) {
        builder = builder.retry(policy);
    }
    if let Some(key) = record.dedup.clone() {
        // It leads its key again: a dispatch with the same key joins it instead of running
        // the job a second time.
        builder = builder.dedup_lead(key);
    }
    let handle: JobHandle<J::Output> = builder.dispatch();
    let local = handle.id();
    if lock(&shared.recovering).remove(&id).is_some() {
        // Refused before its journal saw it (a closed dispatcher, a disposed orchestrator):
        // it stays stored and runs at the next start.
        return Err(DurableError::NotDispatched(id));
    }
    shared.stats.recovered.fetch_add(1, Ordering::Relaxed);
    if !handle.is_finished() {
        let mut handles = lock(&shared.handles);
        handles.insert(id, Box::new(handle));
        // Its end may have come between the check and the insert (its journal's `finish`
        // removes the handle): then it must not stay here for ever.
        let ended = handles
            .get(&id)
            .and_then(|h| h.downcast_ref::<JobHandle<J::Output>>())
            .is_some_and(JobHandle::is_finished);
        if ended {
            handles.remove(&id);
        }
    }
    Ok(local)
}
