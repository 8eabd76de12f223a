//! Group commit: one thread writes the batches of every job in one store commit, and tells
//! each job's [`Ticket`] when its writes are durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use orchestrator_core::{JournalError, JournalFuture, Receipt};
use orchestrator_store::{Commit, Op, Store, StoreError, Table};

use crate::record::{Clock, unix_ms};

/// At most this many writes go in one commit (a larger burst takes several).
const MAX_BATCH_OPS: usize = 16_384;

/// At most this many expired outcomes are deleted per commit. While a pass finds this many,
/// the next commit compacts again (without waiting for the interval), and an idle writer
/// wakes at each interval to compact: deletion keeps up with any rate of outcomes.
const COMPACT_PER_COMMIT: usize = 4_096;

/// What runs once a ticket's writes have ended (durable or failed).
type Then = Box<dyn FnOnce(&Result<(), JournalError>) + Send>;

/// A ticket's state: its result once known, and who waits for it.
#[derive(Default)]
struct Slot {
    result: Option<Result<(), JournalError>>,
    wakers: Vec<Waker>,
    then: Vec<Then>,
}

/// The promise of one request's writes: pending, then durable or failed.
#[derive(Default)]
pub(crate) struct Ticket {
    state: Mutex<Slot>,
}

impl Ticket {
    pub(crate) fn done(result: Result<(), JournalError>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(Slot {
                result: Some(result),
                ..Slot::default()
            }),
        })
    }

    /// A ticket that ends when the store's `commit` does: at once, or (a commit that ends
    /// later) when the store ends it, whether or not anyone waits for the ticket.
    fn of(mut commit: Commit, writes: usize, counts: &Arc<Counts>) -> Arc<Self> {
        if let Some(result) = commit.try_result() {
            return Self::done(count(result, writes, counts));
        }
        let ticket = Arc::new(Self::default());
        settle_later(commit, writes, counts.clone(), ticket.clone());
        ticket
    }

    fn complete(&self, result: Result<(), JournalError>) {
        let (wakers, then) = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.result = Some(result.clone());
            (
                std::mem::take(&mut state.wakers),
                std::mem::take(&mut state.then),
            )
        };
        then.into_iter().for_each(|then| then(&result));
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Runs `then` once the writes have ended: at once if they have, otherwise in the thread
    /// that ends them (the writer's, or the store's callback).
    pub(crate) fn then(&self, then: impl FnOnce(&Result<(), JournalError>) + Send + 'static) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.result.clone() {
            Some(result) => {
                drop(state);
                then(&result);
            }
            None => state.then.push(Box::new(then)),
        }
    }

    /// Blocks this thread until the writes have ended (for a writer with a thread of its own:
    /// it ends them without this thread's help).
    fn block(&self) {
        let (tx, rx) = mpsc::channel();
        self.then(move |_| {
            let _ = tx.send(());
        });
        let _ = rx.recv();
    }

    /// A future of the writes (for the journal's hooks).
    pub(crate) fn wait(self: Arc<Self>) -> JournalFuture {
        Box::pin(std::future::poll_fn(move |cx| self.poll_stored(cx)))
    }
}

impl Receipt for Ticket {
    fn poll_stored(&self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(result) = &state.result {
            return Poll::Ready(result.clone());
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Waits for a commit that ends later, and ends `ticket` with it: a write nobody waits for
/// (a dead letter's) still ends, is counted, and runs what follows it. In a browser the page's
/// event loop awaits it; elsewhere a thread waits (never the store's own waker: a store may
/// wake while holding a lock its commit's poll takes).
fn settle_later(commit: Commit, writes: usize, counts: Arc<Counts>, ticket: Arc<Ticket>) {
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_futures::spawn_local(async move {
        ticket.complete(count(commit.await, writes, &counts));
    });
    #[cfg(not(target_arch = "wasm32"))]
    {
        let spawned = std::thread::Builder::new()
            .name("orchestrator-durable-commit".into())
            .spawn({
                let ticket = ticket.clone();
                move || ticket.complete(count(commit.wait(), writes, &counts))
            });
        if let Err(error) = spawned {
            ticket.complete(Err(JournalError::new(format!(
                "cannot wait for the store's commit: {error}"
            ))));
        }
    }
}

/// What the writer counts.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) commits: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) failed_commits: AtomicU64,
    pub(crate) compacted: AtomicU64,
}

struct Request {
    ops: Vec<Op>,
    ticket: Arc<Ticket>,
}

/// Commits made in the caller's thread, one per request (no group commit): for tests on
/// virtual time and for hosts without threads. A store whose commits end later (IndexedDB)
/// has them started here, in order, and each ticket ends when its commit does.
struct Inline {
    /// `None` once closed.
    store: Mutex<Option<Arc<dyn Store>>>,
    retention: Duration,
    clock: Clock,
    /// When it last compacted, and whether that pass left expired outcomes behind.
    last_compaction: Mutex<(Option<u64>, bool)>,
    closed: std::sync::atomic::AtomicBool,
}

/// The writer thread's end of things (or the inline writer).
pub(crate) struct Writer {
    tx: Mutex<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    inline: Option<Inline>,
    pub(crate) counts: Arc<Counts>,
}

impl Writer {
    /// A writer that commits each request at once, in the caller's thread.
    pub(crate) fn inline(store: Arc<dyn Store>, retention: Duration, clock: Clock) -> Self {
        Self {
            tx: Mutex::new(None),
            thread: Mutex::new(None),
            inline: Some(Inline {
                store: Mutex::new(Some(store)),
                retention,
                clock,
                last_compaction: Mutex::new((None, false)),
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
            counts: Arc::new(Counts::default()),
        }
    }

    /// Starts the thread that writes to `store`; outcomes older than `retention` are deleted
    /// as it goes.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        retention: Duration,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel();
        let counts = Arc::new(Counts::default());
        let thread = std::thread::Builder::new()
            .name("orchestrator-durable-writer".into())
            .spawn({
                let counts = counts.clone();
                move || run(&*store, &rx, retention, &clock, &counts)
            })
            .map_err(|e| StoreError::Other(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            inline: None,
            counts,
        })
    }

    /// Queues `ops` for the next commit.
    pub(crate) fn submit(&self, mut ops: Vec<Op>) -> Arc<Ticket> {
        if let Some(inline) = &self.inline {
            let store = inline
                .store
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let Some(store) = store.filter(|_| !inline.closed.load(Ordering::Acquire)) else {
                return Ticket::done(Err(JournalError::new(StoreError::Closed.to_string())));
            };
            let mut last = inline
                .last_compaction
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = unix_ms((inline.clock)());
            let every = crate::record::ms(compact_interval(inline.retention));
            if last.1 || last.0.is_none_or(|at| now.saturating_sub(at) >= every) {
                let backlog = compact(
                    &*store,
                    inline.retention,
                    &inline.clock,
                    &mut ops,
                    &self.counts,
                );
                *last = (Some(now), backlog);
            }
            drop(last);
            let writes = ops.len();
            return Ticket::of(store.commit(&ops), writes, &self.counts);
        }
        let ticket = Arc::new(Ticket::default());
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let sent = tx.as_ref().is_some_and(|tx| {
            tx.send(Request {
                ops,
                ticket: ticket.clone(),
            })
            .is_ok()
        });
        if !sent {
            ticket.complete(Err(JournalError::new(StoreError::Closed.to_string())));
        }
        ticket
    }

    /// Waits in this thread for `ticket`'s writes if this writer has a thread of its own
    /// (which ends them without this thread's help). An inline writer's writes have ended
    /// already, unless its store's commits end later: those end on their own, and what
    /// follows them ([`Ticket::then`]) runs then.
    pub(crate) fn settle(&self, ticket: &Ticket) {
        if self.inline.is_none() {
            ticket.block();
        }
    }

    /// Writes what is queued, then stops the thread (and lets go of the store).
    pub(crate) fn close(&self) {
        if let Some(inline) = &self.inline {
            inline.closed.store(true, Ordering::Release);
            drop(
                inline
                    .store
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(),
            );
        }
        drop(
            self.tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn run(
    store: &dyn Store,
    rx: &Receiver<Request>,
    retention: Duration,
    clock: &Clock,
    counts: &Counts,
) {
    let mut last_compaction: Option<Instant> = None;
    let mut backlog = false;
    let compact_every = compact_interval(retention);
    loop {
        let first = match rx.recv_timeout(compact_every) {
            Ok(first) => first,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                // Idle: expired outcomes are deleted all the same.
                if retention.is_zero() {
                    continue;
                }
                let mut ops = Vec::new();
                backlog = compact(store, retention, clock, &mut ops, counts);
                last_compaction = Some(Instant::now());
                if !ops.is_empty() {
                    let _ = commit(store, &ops, counts);
                }
                continue;
            }
        };
        let mut ops = first.ops;
        let mut tickets = vec![first.ticket];
        while ops.len() < MAX_BATCH_OPS {
            match rx.try_recv() {
                Ok(request) => {
                    ops.extend(request.ops);
                    tickets.push(request.ticket);
                }
                Err(_) => break,
            }
        }
        if backlog || last_compaction.is_none_or(|at| at.elapsed() >= compact_every) {
            last_compaction = Some(Instant::now());
            backlog = compact(store, retention, clock, &mut ops, counts);
        }
        let result = commit(store, &ops, counts);
        for ticket in tickets {
            ticket.complete(result.clone());
        }
    }
}

/// How often expired outcomes are looked for.
fn compact_interval(retention: Duration) -> Duration {
    (retention / 16).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// Commits `ops`, waiting in this thread until they are durable, and counts it.
fn commit(store: &dyn Store, ops: &[Op], counts: &Counts) -> Result<(), JournalError> {
    count(store.commit(ops).wait(), ops.len(), counts)
}

/// Counts a commit of `writes` writes that ended with `result`.
fn count(
    result: Result<(), StoreError>,
    writes: usize,
    counts: &Counts,
) -> Result<(), JournalError> {
    match &result {
        Ok(()) => {
            counts.commits.fetch_add(1, Ordering::Relaxed);
            counts.writes.fetch_add(writes as u64, Ordering::Relaxed);
        }
        Err(_) => {
            counts.failed_commits.fetch_add(1, Ordering::Relaxed);
        }
    }
    result.map_err(|e| JournalError::new(e.to_string()))
}

/// Adds the deletes of outcomes whose retention has ended (an expiry key starts with the
/// outcome's end time, big-endian, then its job's key); returns `true` if more may be left.
fn compact(
    store: &dyn Store,
    retention: Duration,
    clock: &Clock,
    ops: &mut Vec<Op>,
    counts: &Counts,
) -> bool {
    if retention.is_zero() {
        return false;
    }
    let cutoff = unix_ms(clock()).saturating_sub(crate::record::ms(retention));
    let end = cutoff.to_be_bytes();
    let Ok(expired) = store.scan_below(Table::Expiry, &end, COMPACT_PER_COMMIT) else {
        return false;
    };
    let full = expired.len() == COMPACT_PER_COMMIT;
    for (k, _) in expired {
        if let Some(id) = k.get(8..) {
            ops.push(Op::delete(Table::Outcomes, id.to_vec()));
        }
        ops.push(Op::delete(Table::Expiry, k));
        counts.compacted.fetch_add(1, Ordering::Relaxed);
    }
    full
}
