//! [`Durable`] (durable jobs' handles, outcomes and dead letters), [`DurableBuilder`] and
//! what opening a store reads (`load`).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::{
    AlwaysOnline, Connectivity, Dispatcher, Executor, Job, JobContext, JobHandle, JobId,
};
use orchestrator_remote::{Registry, WireJobId};
use orchestrator_store::{Op, Store, Table};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::DurableError;
use crate::gate::Gate;
use crate::record::{
    Clock, Counters, DeadLetter, DeadRecord, JobRecord, RECORD_VERSION, StoredOutcome, decode,
    id_of, key, ms, parse_hex,
};
use crate::writer::Writer;

use crate::journal::{Pending, Resume, Shared, Stats, TypeJournal, lock, redispatch};
use crate::recovery::Recovery;

/// The metadata key under which a recovered job carries its durable id (see
/// [`Durable::job_id`]).
pub const DURABLE_ID: &str = "orchestrator.durable.id";

/// How many runs may die in a job before it is dead-lettered, by default.
pub const DEFAULT_POISON_AFTER: u32 = 3;

/// How long finished jobs' outcomes are kept, by default (a day).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Durable jobs on a [`Store`]: the journal of every durable job type, their recovery, the
/// dead-letter list and the outcomes of finished jobs.
///
/// Made by [`Durable::builder`], which registers the durable job types on a dispatcher and
/// returns the jobs that a previous run left unfinished ([`Recovery`]). Jobs are then
/// dispatched as any other, through the dispatcher, an orchestrator or a job's context:
///
/// - A dispatch is written before [`JobHandle::stored`](orchestrator_core::JobHandle::stored) resolves (the writes of concurrent
///   dispatches share one commit). Each attempt's start is written before it runs, and the
///   outcome before the handle resolves.
/// - At the next start, every accepted job without an outcome runs again, with its attempt
///   count (its retry policy continues), its deadline (a total timeout counts from when it was
///   first due) and its due time (a delayed job waits what is left, an overdue one runs at
///   once). Execution is at least once: make executors idempotent with [`Durable::job_id`].
/// - A job whose runs the process died in `poison_after` times, or whose last attempt failed,
///   goes to the dead-letter list ([`dead_letters`](Self::dead_letters)) and a
///   [`DeadLettered`](crate::DeadLettered) event says so.
/// - Outcomes are kept for the retention ([`outcome`](Self::outcome)), then compacted away.
#[derive(Clone)]
pub struct Durable {
    shared: Arc<Shared>,
    dispatcher: Dispatcher,
}

type Registration =
    Box<dyn FnOnce(&Arc<Shared>, &Dispatcher, &Arc<dyn Connectivity>) -> Result<(), DurableError>>;

/// How a network-bound job type is sent (see [`DurableBuilder::register_online`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Online {
    /// How many of its jobs may be sent at once (at least 1; default 1, one at a time).
    pub concurrency: usize,
    /// After how many failed attempts a job is poisoned: dead-lettered, with its
    /// [`DeadLettered`](crate::DeadLettered) event (default 5).
    pub max_failures: u32,
}

impl Default for Online {
    fn default() -> Self {
        Self {
            concurrency: 1,
            max_failures: 5,
        }
    }
}

/// Configures a [`Durable`]: its job types, poison limit and retention.
#[must_use = "a builder does nothing until `open` is called"]
pub struct DurableBuilder {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    poison_after: u32,
    retention: Duration,
    inline: bool,
    clock: Clock,
    connectivity: Arc<dyn Connectivity>,
    registrations: Vec<Registration>,
}

impl fmt::Debug for DurableBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableBuilder")
            .field("poison_after", &self.poison_after)
            .field("retention", &self.retention)
            .field("job_types", &self.registrations.len())
            .finish_non_exhaustive()
    }
}

impl Durable {
    /// Starts configuring durable jobs on `store`, named by `registry` (the wire names that
    /// remote execution uses too: the same job types move to NATS unchanged).
    pub fn builder(store: impl Store, registry: Arc<Registry>) -> DurableBuilder {
        DurableBuilder {
            store: Arc::new(store),
            registry,
            poison_after: DEFAULT_POISON_AFTER,
            retention: DEFAULT_RETENTION,
            // A browser has no threads to write on: its commits are made where they are asked.
            inline: cfg!(target_arch = "wasm32"),
            clock: Arc::new(crate::record::wall_now),
            connectivity: Arc::new(AlwaysOnline::new()),
            registrations: Vec::new(),
        }
    }
}

impl DurableBuilder {
    /// Makes job type `J` durable, run by `executor` (registered on the dispatcher given to
    /// [`open`](Self::open), replacing any executor of `J` there). `J` must have a wire name
    /// in the registry.
    pub fn register<J, E>(self, executor: E) -> Self
    where
        J: Job + Serialize + DeserializeOwned,
        J::Output: Serialize + DeserializeOwned,
        E: Executor<J>,
    {
        self.add::<J, E>(executor, None)
    }

    /// Makes job type `J` durable and network-bound: before each attempt, its jobs wait until
    /// the [`connectivity`](Self::connectivity) says online, then for their turn (first
    /// accepted, first sent; `online.concurrency` at a time). While offline a dispatch is
    /// stored (`JobHandle::stored` resolves: it is queued) and its placeholder, if it has one,
    /// is published at once; its handle resolves when it has been sent and answered. A job
    /// that failed `online.max_failures` attempts is poisoned: dead-lettered with a
    /// [`DeadLettered`](crate::DeadLettered) event that carries its placeholder, so an optimistic state can roll
    /// back.
    pub fn register_online<J, E>(self, executor: E, online: Online) -> Self
    where
        J: Job + Serialize + DeserializeOwned,
        J::Output: Serialize + DeserializeOwned,
        E: Executor<J>,
    {
        self.add::<J, E>(executor, Some(online))
    }

    /// Tells network-bound job types whether the network can be reached (default
    /// [`AlwaysOnline`]).
    pub fn connectivity(mut self, connectivity: impl Connectivity) -> Self {
        self.connectivity = Arc::new(connectivity);
        self
    }

    fn add<J, E>(mut self, executor: E, online: Option<Online>) -> Self
    where
        J: Job + Serialize + DeserializeOwned,
        J::Output: Serialize + DeserializeOwned,
        E: Executor<J>,
    {
        self.registrations.push(Box::new(
            move |shared: &Arc<Shared>,
                  dispatcher: &Dispatcher,
                  connectivity: &Arc<dyn Connectivity>| {
                let name = shared
                    .registry
                    .job_name::<J>()
                    .ok_or(DurableError::Unregistered(std::any::type_name::<J>()))?
                    .to_owned();
                let online = online.map(|o: Online| {
                    let gate = Arc::new(Gate::new(connectivity.clone(), o.concurrency));
                    lock(&shared.gates).push(gate.clone());
                    (gate, o.max_failures)
                });
                let journal = Arc::new(TypeJournal::<J> {
                    shared: shared.clone(),
                    online,
                    _job: std::marker::PhantomData,
                });
                dispatcher.register_journaled(executor, journal);
                let resume: Arc<Resume> = Arc::new(
                    |shared: &Arc<Shared>, dispatcher: &Dispatcher, pending: Pending| {
                        redispatch::<J>(shared, dispatcher, pending)
                    },
                );
                lock(&shared.types).insert(name, resume);
                Ok(())
            },
        ));
        self
    }

    /// Dead-letters a job once the process has died in `runs` of its runs (at least 1;
    /// default [`DEFAULT_POISON_AFTER`]).
    pub fn poison_after(mut self, runs: u32) -> Self {
        self.poison_after = runs.max(1);
        self
    }

    /// Keeps finished jobs' outcomes for `retention` (default [`DEFAULT_RETENTION`]); zero
    /// keeps none.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Commits each write at once in the thread that makes it, instead of on a writer
    /// thread that puts the writes of concurrent jobs in one commit. Slower under load (one
    /// commit per write), but needs no thread: for tests on virtual time
    /// (`orchestrator_core::testing::VirtualRuntime` cannot see a thread's
    /// progress) and for hosts without threads. In a browser (`wasm32`) commits are always
    /// inline; a store whose commits end later (IndexedDB) has them started in order there,
    /// and the page's event loop waits for each (natively, a short-lived thread does), so a
    /// write that no job waits for, such as a dead letter's, still ends and is counted.
    pub fn inline_commits(mut self) -> Self {
        self.inline = true;
        self
    }

    /// Reads the wall clock from `clock` instead of the system (for tests: due times,
    /// deadlines and retention across a simulated restart).
    pub fn wall_clock(
        mut self,
        clock: impl Fn() -> std::time::SystemTime + Send + Sync + 'static,
    ) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Registers the job types on `dispatcher`, starts the writer, and reads what a previous
    /// run left: returns the [`Durable`] and the [`Recovery`] of the unfinished jobs (which
    /// run once it is resumed or dropped).
    ///
    /// Jobs that the process died in `poison_after` times are dead-lettered here.
    ///
    /// # Errors
    ///
    /// [`DurableError::Unregistered`] for a job type without a wire name; the store's error if
    /// it cannot be read or a record is damaged (nothing is changed then).
    pub fn open<R>(self, dispatcher: &Dispatcher<R>) -> Result<(Durable, Recovery), DurableError> {
        let writer = if self.inline {
            Writer::inline(self.store.clone(), self.retention, self.clock.clone())
        } else {
            Writer::start(self.store.clone(), self.retention, self.clock.clone())?
        };
        let dispatcher = dispatcher.erase();
        let shared = Arc::new(Shared {
            store: Mutex::new(Some(self.store)),
            registry: self.registry,
            bus: dispatcher.bus().clone(),
            writer,
            poison_after: self.poison_after,
            retention: self.retention,
            clock: self.clock,
            inflight: Mutex::new(HashMap::new()),
            next_seq: AtomicU64::new(0),
            gates: Mutex::new(Vec::new()),
            recovering: Mutex::new(HashMap::new()),
            types: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        });
        let result = (|| {
            for registration in self.registrations {
                registration(&shared, &dispatcher, &self.connectivity)?;
            }
            load(&shared, &dispatcher)
        })();
        match result {
            Ok(recovery) => Ok((
                Durable {
                    shared: shared.clone(),
                    dispatcher,
                },
                recovery,
            )),
            Err(error) => {
                shared.writer.close();
                Err(error)
            }
        }
    }
}

/// Reads the stored jobs: the dead ones stay, the poisoned ones become dead, the rest are
/// pending.
fn load(shared: &Arc<Shared>, dispatcher: &Dispatcher) -> Result<Recovery, DurableError> {
    let store = shared.store()?;
    let damaged = |what: &str, detail: String| DurableError::Damaged(format!("{what}: {detail}"));
    let mut counters: HashMap<Vec<u8>, Counters> = HashMap::new();
    for (k, v) in store.scan(Table::Attempts)? {
        let c = Counters::from_bytes(&v)
            .ok_or_else(|| damaged("an attempt counter", format!("{} bytes", v.len())))?;
        counters.insert(k, c);
    }
    let dead: std::collections::HashSet<Vec<u8>> = store
        .scan(Table::Dead)?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut pending = Vec::new();
    let mut dead_lettered = Vec::new();
    let mut dead_writes = Vec::new();
    for (k, v) in store.scan(Table::Jobs)? {
        if dead.contains(&k) {
            continue;
        }
        let id = id_of(&k).ok_or_else(|| damaged("a job key", format!("{k:?}")))?;
        let record: JobRecord = decode(&v).map_err(|e| damaged("a job record", e))?;
        if record.version > RECORD_VERSION {
            return Err(DurableError::Damaged(format!(
                "job {id} was written by a newer version (record version {}, this build reads \
                 up to {RECORD_VERSION})",
                record.version
            )));
        }
        let c = counters.get(&k).copied().unwrap_or_default();
        if c.crashed() >= shared.poison_after {
            let reason = format!(
                "the process died in {} of its runs (the poison limit is {})",
                c.crashed(),
                shared.poison_after
            );
            dead_writes.push(shared.dead_letter(id, &record, c, reason));
            dead_lettered.push(id);
            continue;
        }
        pending.push(Pending {
            id,
            record,
            counters: c,
        });
    }
    // On the list (and announced) before `open` returns.
    for written in &dead_writes {
        shared.writer.settle(written);
    }
    // In the order they were accepted.
    pending.sort_by_key(|p| (p.record.accepted_unix_ms, p.id));
    Ok(Recovery {
        shared: shared.clone(),
        dispatcher: dispatcher.clone(),
        pending,
        unknown: Vec::new(),
        dead_lettered,
    })
}

impl Durable {
    /// Returns the durable id of the job an executor runs: the same in every run of the job,
    /// so an executor can make its effects idempotent (a payment keyed by it is made once).
    pub fn job_id(&self, cx: &JobContext) -> WireJobId {
        cx.metadata(DURABLE_ID)
            .and_then(parse_hex)
            .unwrap_or_else(|| self.wire_id(cx.job_id()))
    }

    /// Returns the durable id of the job with local id `local` (a handle's
    /// [`id`](JobHandle::id)): for a job dispatched by this process, at any time; for a
    /// recovered job, while it runs (its durable id is the one
    /// [`take_handle`](Self::take_handle) was given).
    pub fn wire_id(&self, local: JobId) -> WireJobId {
        match lock(&self.shared.inflight).get(&local) {
            Some(flight) => flight.id,
            None => self.shared.registry.wire_id(local),
        }
    }

    /// Takes the handle of recovered job `id` (once; `None` if it was taken, has ended, or
    /// was not recovered here).
    pub fn take_handle<T: Send + 'static>(&self, id: WireJobId) -> Option<JobHandle<T>> {
        let mut handles = lock(&self.shared.handles);
        let boxed = handles.remove(&id)?;
        match boxed.downcast::<JobHandle<T>>() {
            Ok(handle) => Some(*handle),
            Err(boxed) => {
                handles.insert(id, boxed);
                None
            }
        }
    }

    /// Returns the outcome of finished job `id`, if it is kept (see
    /// [`retention`](DurableBuilder::retention)).
    ///
    /// # Errors
    ///
    /// The store's error, or [`DurableError::Damaged`].
    pub fn outcome(&self, id: WireJobId) -> Result<Option<StoredOutcome>, DurableError> {
        let Some(bytes) = self.shared.store()?.get(Table::Outcomes, &key(id))? else {
            return Ok(None);
        };
        let outcome: StoredOutcome =
            decode(&bytes).map_err(|e| DurableError::Damaged(format!("outcome of {id}: {e}")))?;
        // Expired but not deleted yet: as good as gone.
        let expires = outcome
            .finished_unix_ms
            .saturating_add(ms(self.shared.retention));
        if expires <= self.shared.now() {
            return Ok(None);
        }
        Ok(Some(outcome))
    }

    /// Returns the dead-letter list, oldest job first.
    ///
    /// # Errors
    ///
    /// The store's error, or [`DurableError::Damaged`].
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, DurableError> {
        let store = self.shared.store()?;
        let mut letters = Vec::new();
        for (k, v) in store.scan(Table::Dead)? {
            let id = id_of(&k)
                .ok_or_else(|| DurableError::Damaged(format!("a dead-letter key {k:?}")))?;
            letters.push(self.letter(id, &v)?);
        }
        letters.sort_by_key(|l| (l.accepted_unix_ms, l.id));
        Ok(letters)
    }

    /// Returns dead letter `id`, if the job is on the list.
    ///
    /// # Errors
    ///
    /// The store's error, or [`DurableError::Damaged`].
    pub fn dead_letter(&self, id: WireJobId) -> Result<Option<DeadLetter>, DurableError> {
        match self.shared.store()?.get(Table::Dead, &key(id))? {
            None => Ok(None),
            Some(v) => self.letter(id, &v).map(Some),
        }
    }

    fn letter(&self, id: WireJobId, dead: &[u8]) -> Result<DeadLetter, DurableError> {
        let store = self.shared.store()?;
        let damaged = |e: String| DurableError::Damaged(format!("dead letter {id}: {e}"));
        let dead: DeadRecord = decode(dead).map_err(damaged)?;
        let record: JobRecord = decode(
            &store
                .get(Table::Jobs, &key(id))?
                .ok_or_else(|| damaged("its job is missing".into()))?,
        )
        .map_err(damaged)?;
        let counters = store
            .get(Table::Attempts, &key(id))?
            .and_then(|b| Counters::from_bytes(&b))
            .unwrap_or_default();
        Ok(DeadLetter {
            id,
            job_type: record.request.job_type,
            reason: dead.reason,
            dead_unix_ms: dead.dead_unix_ms,
            accepted_unix_ms: record.accepted_unix_ms,
            starts: counters.starts,
            failures: counters.failures,
            payload: record.request.payload,
            placeholder: record.placeholder,
        })
    }

    /// Takes dead letter `id` off the list and dispatches its job again, with a fresh attempt
    /// count (its handle: [`take_handle`](Self::take_handle)); returns its local id.
    ///
    /// # Errors
    ///
    /// [`DurableError::NotDead`] if it is not on the list, [`DurableError::UnknownType`] if
    /// its type is not durable here, the store's error.
    pub async fn retry_dead(&self, id: WireJobId) -> Result<JobId, DurableError> {
        let shared = &self.shared;
        let store = shared.store()?;
        if store.get(Table::Dead, &key(id))?.is_none() {
            return Err(DurableError::NotDead(id));
        }
        let bytes = store
            .get(Table::Jobs, &key(id))?
            .ok_or(DurableError::NotDead(id))?;
        let record: JobRecord =
            decode(&bytes).map_err(|e| DurableError::Damaged(format!("job {id}: {e}")))?;
        let resume = lock(&shared.types)
            .get(&record.request.job_type)
            .cloned()
            .ok_or_else(|| DurableError::UnknownType(record.request.job_type.clone()))?;
        shared
            .writer
            .submit(vec![
                Op::delete(Table::Dead, key(id)),
                Op::delete(Table::Attempts, key(id)),
            ])
            .wait()
            .await
            .map_err(DurableError::Write)?;
        resume(
            shared,
            &self.dispatcher,
            Pending {
                id,
                record,
                counters: Counters::default(),
            },
        )
    }

    /// Deletes dead letter `id` and its job for good; returns `false` if it was not on the
    /// list.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn discard(&self, id: WireJobId) -> Result<bool, DurableError> {
        let shared = &self.shared;
        if shared.store()?.get(Table::Dead, &key(id))?.is_none() {
            return Ok(false);
        }
        shared
            .writer
            .submit(vec![
                Op::delete(Table::Dead, key(id)),
                Op::delete(Table::Jobs, key(id)),
                Op::delete(Table::Attempts, key(id)),
            ])
            .wait()
            .await
            .map_err(DurableError::Write)?;
        Ok(true)
    }

    /// Returns what happened so far.
    pub fn stats(&self) -> DurableStats {
        let s = &self.shared.stats;
        let w = &self.shared.writer.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DurableStats {
            accepted: get(&s.accepted),
            recovered: get(&s.recovered),
            dead_lettered: get(&s.dead_lettered),
            unknown_types: get(&s.unknown),
            interrupted: get(&s.interrupted),
            commits: get(&w.commits),
            writes: get(&w.writes),
            failed_commits: get(&w.failed_commits),
            compacted: get(&w.compacted),
            in_flight: lock(&self.shared.inflight).len(),
            waiting_for_network: lock(&self.shared.gates).iter().map(|g| g.waiting()).sum(),
        }
    }

    /// Writes what is queued and stops the writer, letting go of the store (a file can then
    /// be opened again). Later writes fail with [`StoreError::Closed`](orchestrator_store::StoreError::Closed). Blocks
    /// until the last commit is done.
    pub fn close(&self) {
        self.shared.writer.close();
        drop(lock(&self.shared.store).take());
    }
}

impl fmt::Debug for Durable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Durable")
            .field("poison_after", &self.shared.poison_after)
            .field("retention", &self.shared.retention)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Counters of a [`Durable`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurableStats {
    /// Dispatches written.
    pub accepted: u64,
    /// Stored jobs dispatched again after a restart (or a retry of a dead letter).
    pub recovered: u64,
    /// Jobs that went to the dead-letter list.
    pub dead_lettered: u64,
    /// Stored jobs whose type is not durable in this process (kept, not run).
    pub unknown_types: u64,
    /// Jobs a shutdown handed back (they run at the next start).
    pub interrupted: u64,
    /// Commits made.
    pub commits: u64,
    /// Writes committed (several per commit: group commit).
    pub writes: u64,
    /// Commits that failed (each failed every write in it).
    pub failed_commits: u64,
    /// Expired outcomes deleted.
    pub compacted: u64,
    /// Durable jobs running now (waiting for the network included).
    pub in_flight: usize,
    /// Network-bound jobs waiting for the network or for their turn.
    pub waiting_for_network: usize,
}
