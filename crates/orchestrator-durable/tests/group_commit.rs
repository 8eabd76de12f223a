//! The writer thread on a real runtime: concurrent dispatches share commits.

use std::sync::{Arc, Condvar, Mutex};

use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext};
use orchestrator_durable::{Commit, Durable, Entry, MemoryStore, Op, Store, StoreError, Table};
use orchestrator_remote::{NodeId, Registry};
use orchestrator_tokio::TokioRuntime;
use serde::{Deserialize, Serialize};

/// The reads of a test store: its `inner` memory store's.
macro_rules! reads_from_inner {
    () => {
        fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(table, key)
        }
        fn scan(&self, table: Table) -> Result<Vec<Entry>, StoreError> {
            self.inner.scan(table)
        }
        fn scan_below(
            &self,
            table: Table,
            end: &[u8],
            limit: usize,
        ) -> Result<Vec<Entry>, StoreError> {
            self.inner.scan_below(table, end, limit)
        }
    };
}

/// A registry naming job type `J` `name`.
fn registry_of<J: Job + Serialize + serde::de::DeserializeOwned>(
    name: &'static str,
) -> Arc<Registry>
where
    J::Output: Serialize + serde::de::DeserializeOwned,
{
    let mut registry = Registry::new(NodeId::new(1));
    registry.register_job::<J>(name).unwrap();
    Arc::new(registry)
}

#[derive(Serialize, Deserialize)]
struct Noop(u32);
impl Job for Noop {
    type Output = u32;
}
struct Run;
impl Executor<Noop> for Run {
    type Error = std::convert::Infallible;
    async fn execute(&self, job: &Noop, _: JobContext) -> Result<u32, Self::Error> {
        Ok(job.0)
    }
}

/// A memory store whose first commit waits until the test opens the gate, and which records
/// in which commit each job's acceptance was written.
#[derive(Clone, Default)]
struct Gated {
    inner: MemoryStore,
    open: Arc<(Mutex<bool>, Condvar)>,
    commits: Arc<Mutex<Vec<usize>>>, // per commit: how many acceptances it held
}

impl Gated {
    fn release(&self) {
        *self.open.0.lock().unwrap() = true;
        self.open.1.notify_all();
    }
}

impl Store for Gated {
    fn commit(&self, ops: &[Op]) -> Commit {
        let (lock, cvar) = &*self.open;
        let _open = cvar
            .wait_while(lock.lock().unwrap(), |open| !*open)
            .unwrap();
        let accepts = ops
            .iter()
            .filter(|op| {
                matches!(
                    op,
                    Op::Put {
                        table: Table::Jobs,
                        ..
                    }
                )
            })
            .count();
        self.commits.lock().unwrap().push(accepts);
        self.inner.commit(ops)
    }
    reads_from_inner!();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_dispatches_share_one_commit() {
    let store = Gated::default();
    let dispatcher = Dispatcher::new(TokioRuntime::new());
    let (durable, recovery) = Durable::builder(store.clone(), registry_of::<Noop>("test.noop"))
        .register::<Noop, _>(Run)
        .open(&dispatcher)
        .unwrap();
    recovery.resume();
    // The writer takes what is queued and waits at the gate with it; the rest queue.
    let handles: Vec<_> = (0..1000).map(|n| dispatcher.dispatch(Noop(n))).collect();
    store.release();
    for handle in &handles {
        handle.stored().await.unwrap();
    }
    let mut sum = 0u64;
    for handle in handles {
        sum += u64::from(handle.await.unwrap().value);
    }
    assert_eq!(sum, 999 * 1000 / 2);
    let commits = store.commits.lock().unwrap().clone();
    let accepted: Vec<usize> = commits.iter().copied().filter(|&n| n > 0).collect();
    // The first commit holds what was queued when the writer woke (at least one, perhaps
    // all), and waits at the gate until all 1,000 are dispatched; every other acceptance was
    // queued behind it by then, so the next commit holds all of them: at most two commits.
    assert!(
        (1..=2).contains(&accepted.len()),
        "acceptances per commit: {commits:?}"
    );
    assert_eq!(accepted.iter().sum::<usize>(), 1000);
    let stats = durable.stats();
    assert_eq!(stats.accepted, 1000);
    println!(
        "{} writes of 1,000 jobs in {} commits",
        stats.writes, stats.commits
    );
    durable.close();
    assert_eq!(store.inner.len(Table::Jobs), 0);
    assert_eq!(store.inner.len(Table::Outcomes), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_writer_deletes_expired_outcomes_too() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, UNIX_EPOCH};
    let store = MemoryStore::new();
    let now = Arc::new(AtomicU64::new(1_800_000_000_000));
    let clock = now.clone();
    let dispatcher = Dispatcher::new(TokioRuntime::new());
    let (durable, recovery) = Durable::builder(store.clone(), registry_of::<Noop>("test.noop"))
        .register::<Noop, _>(Run)
        .retention(Duration::from_secs(60))
        .wall_clock(move || UNIX_EPOCH + Duration::from_millis(clock.load(Ordering::SeqCst)))
        .open(&dispatcher)
        .unwrap();
    recovery.resume();
    for n in 0..100 {
        dispatcher.dispatch(Noop(n)).await.unwrap();
    }
    assert_eq!(store.len(Table::Outcomes), 100);
    now.fetch_add(61_000, Ordering::SeqCst);
    // No more writes: the writer wakes by itself to delete them (a hang guard, not a timing
    // assertion: it polls until they are gone or a minute has passed).
    let guard = std::time::Instant::now();
    while store.len(Table::Outcomes) > 0 {
        assert!(
            guard.elapsed() < Duration::from_secs(60),
            "expired outcomes were never deleted on an idle writer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(durable.stats().compacted, 100);
    durable.close();
}

/// A store whose commits end later, on a thread of its own, in call order (as IndexedDB's end
/// in a callback), and that refuses every batch while `full` is set.
#[derive(Clone, Default)]
struct Later {
    inner: MemoryStore,
    full: Arc<std::sync::atomic::AtomicBool>,
    queue: Arc<Mutex<Option<std::sync::mpsc::Sender<LaterBatch>>>>,
    /// While armed, a batch with a dead letter in it waits until released.
    hold: Hold,
}

/// A gate for the batches that hold a dead letter: (armed, a batch waits at it), and its
/// condition.
#[derive(Clone, Default)]
struct Hold(Arc<(Mutex<(bool, bool)>, Condvar)>);

impl Hold {
    fn arm(&self) {
        self.0.0.lock().unwrap().0 = true;
    }
    /// Waits at the gate if `ops` write a dead letter and the gate is armed.
    fn pass(&self, ops: &[Op]) {
        let dead = ops.iter().any(|op| {
            matches!(
                op,
                Op::Put {
                    table: Table::Dead,
                    ..
                }
            )
        });
        let (lock, cvar) = &*self.0;
        let mut state = lock.lock().unwrap();
        if dead && state.0 {
            state.1 = true;
            cvar.notify_all();
            drop(cvar.wait_while(state, |s| s.0).unwrap());
        }
    }
    /// Waits until a dead letter's batch waits at the gate.
    fn arrived(&self) {
        let (lock, cvar) = &*self.0;
        drop(cvar.wait_while(lock.lock().unwrap(), |s| !s.1).unwrap());
    }
    fn release(&self) {
        self.0.0.lock().unwrap().0 = false;
        self.0.1.notify_all();
    }
}

type LaterSlot = Arc<Mutex<(Option<Result<(), StoreError>>, Option<std::task::Waker>)>>;
type LaterBatch = (Vec<Op>, bool, LaterSlot);

impl Store for Later {
    fn commit(&self, ops: &[Op]) -> Commit {
        let slot = LaterSlot::default();
        let full = self.full.load(std::sync::atomic::Ordering::SeqCst);
        let tx = self
            .queue
            .lock()
            .unwrap()
            .get_or_insert_with(|| {
                let (tx, rx) = std::sync::mpsc::channel::<LaterBatch>();
                let store = self.inner.clone();
                let hold = self.hold.clone();
                std::thread::spawn(move || {
                    for (ops, full, slot) in rx {
                        hold.pass(&ops);
                        let result = if full {
                            Err(StoreError::Full {
                                detail: "the quota is exceeded".into(),
                            })
                        } else {
                            store.commit(&ops).wait()
                        };
                        let mut slot = slot.lock().unwrap();
                        slot.0 = Some(result);
                        if let Some(waker) = slot.1.take() {
                            waker.wake();
                        }
                    }
                });
                tx
            })
            .clone();
        tx.send((ops.to_vec(), full, slot.clone())).unwrap();
        Commit::pending(std::future::poll_fn(move |cx| {
            let mut slot = slot.lock().unwrap();
            match slot.0.take() {
                Some(result) => std::task::Poll::Ready(result),
                None => {
                    slot.1 = Some(cx.waker().clone());
                    std::task::Poll::Pending
                }
            }
        }))
    }
    reads_from_inner!();
}

/// Commits that end later, through the inline writer (as in a browser): a job runs once its
/// acceptance has ended, and a refused acceptance rejects the dispatch; nothing runs unstored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_that_end_later_are_awaited_and_a_refused_one_rejects_the_dispatch() {
    use orchestrator_core::{JobError, Rejection};
    let store = Later::default();
    let dispatcher = Dispatcher::new(TokioRuntime::new());
    let (durable, recovery) = Durable::builder(store.clone(), registry_of::<Noop>("test.noop"))
        .register::<Noop, _>(Run)
        .inline_commits()
        .open(&dispatcher)
        .unwrap();
    recovery.resume();

    let handles: Vec<_> = (0..50).map(|n| dispatcher.dispatch(Noop(n))).collect();
    let mut sum = 0;
    for handle in handles {
        handle.stored().await.expect("stored once its commit ended");
        sum += handle.await.unwrap().value;
    }
    assert_eq!(sum, 49 * 50 / 2);
    assert_eq!(store.inner.len(Table::Outcomes), 50);

    store.full.store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = dispatcher.dispatch(Noop(7));
    let stored = refused.stored().await;
    assert!(stored.is_err(), "the acceptance was refused: {stored:?}");
    match refused.await {
        Err(JobError::Rejected(Rejection::NotStored { reason, .. })) => {
            assert!(reason.contains("quota"), "{reason}");
        }
        other => panic!("expected NotStored, got {other:?}"),
    }
    assert_eq!(store.inner.len(Table::Jobs), 0, "nothing of it was written");
    let stats = durable.stats();
    assert!(stats.failed_commits >= 1, "{stats:?}");
    durable.close();
}

#[derive(Serialize, Deserialize)]
struct Doomed;
impl Job for Doomed {
    type Output = u32;
}
struct Refuse;
impl Executor<Doomed> for Refuse {
    type Error = std::io::Error;
    async fn execute(&self, _: &Doomed, _: JobContext) -> Result<u32, Self::Error> {
        Err(std::io::Error::other("refused"))
    }
}

/// Takes every event already published on `sub`, without waiting.
fn published_now(sub: &mut orchestrator_core::Subscription) -> Vec<orchestrator_core::Event> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut events = Vec::new();
    while let std::task::Poll::Ready(Some(event)) =
        futures_core::Stream::poll_next(std::pin::Pin::new(&mut *sub), &mut cx)
    {
        events.push(event);
    }
    events
}

/// A job out of attempts is announced as dead-lettered only once its dead letter is written:
/// whoever the event reaches finds the job on the list (here the write ends later, on another
/// thread, and is held there until the test lets it go).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_announced_only_once_it_is_written() {
    use orchestrator_durable::DeadLettered;
    let store = Later::default();
    let dispatcher = Dispatcher::new(TokioRuntime::new());
    let (durable, recovery) = Durable::builder(store.clone(), registry_of::<Doomed>("test.doomed"))
        .register::<Doomed, _>(Refuse)
        .inline_commits()
        .open(&dispatcher)
        .unwrap();
    recovery.resume();
    let mut sub = dispatcher.bus().subscribe();
    store.hold.arm();
    let handle = dispatcher.dispatch(Doomed);
    let id = durable.wire_id(handle.id());
    let ended = tokio::spawn(handle);
    // The dead letter's write has been made and waits on the store's thread.
    tokio::task::spawn_blocking({
        let hold = store.hold.clone();
        move || hold.arrived()
    })
    .await
    .unwrap();
    let early = published_now(&mut sub);
    assert!(
        !early.iter().any(|e| e.is::<DeadLettered>()),
        "announced before its write ended"
    );
    assert!(durable.dead_letter(id).unwrap().is_none());
    store.hold.release();
    let error = ended.await.unwrap().unwrap_err();
    assert!(format!("{error:#}").contains("refused"), "{error:#}");
    let events = published_now(&mut sub);
    let event = events
        .iter()
        .find_map(|e| e.downcast_ref::<DeadLettered>())
        .expect("announced once written, before the handle resolved");
    assert_eq!(event.id, id);
    let letter = durable.dead_letter(id).unwrap().expect("on the list");
    assert!(letter.reason.contains("refused"), "{}", letter.reason);
    assert_eq!(durable.stats().dead_lettered, 1);
    durable.close();
}

/// A memory store on the writer thread whose dead letters wait at a gate.
#[derive(Clone, Default)]
struct HeldDead {
    inner: MemoryStore,
    hold: Hold,
}

impl Store for HeldDead {
    fn commit(&self, ops: &[Op]) -> Commit {
        self.hold.pass(ops);
        self.inner.commit(ops)
    }
    reads_from_inner!();
}

struct Hang(std::sync::mpsc::Sender<()>);
impl Executor<Doomed> for Hang {
    type Error = std::io::Error;
    async fn execute(&self, _: &Doomed, _: JobContext) -> Result<u32, Self::Error> {
        let _ = self.0.send(());
        std::future::pending().await
    }
}

/// A job the previous process died in is dead-lettered when the store is opened, on the
/// writer thread: `open` returns once the dead letter is written and announced, so the list
/// has it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_poisoned_at_open_is_on_the_list_when_open_returns() {
    use orchestrator_durable::DeadLettered;
    let store = HeldDead::default();
    let registry = || registry_of::<Doomed>("test.doomed");
    // The first process: the job starts, and the process "dies" in it (nothing is shut down).
    let first = Dispatcher::new(TokioRuntime::new());
    let (started, running) = std::sync::mpsc::channel();
    let (durable, recovery) = Durable::builder(store.clone(), registry())
        .register::<Doomed, _>(Hang(started))
        .poison_after(1)
        .open(&first)
        .unwrap();
    recovery.resume();
    let handle = first.dispatch(Doomed);
    let id = durable.wire_id(handle.id());
    tokio::task::spawn_blocking(move || running.recv().unwrap())
        .await
        .unwrap();
    std::mem::forget((handle, durable, first));

    // The second: its dead letter waits at the gate until a thread lets it go.
    store.hold.arm();
    let second = Dispatcher::new(TokioRuntime::new());
    let mut sub = second.bus().subscribe();
    let (returned, opened) = std::sync::mpsc::channel::<()>();
    let gatekeeper = std::thread::spawn({
        let hold = store.hold.clone();
        move || {
            hold.arrived();
            // `open` must still be waiting for the write. (Had it returned without waiting,
            // it says so here; waiting in vain a while is no assertion, only how long the
            // gate stays shut.)
            let early = opened
                .recv_timeout(std::time::Duration::from_millis(500))
                .is_ok();
            hold.release();
            early
        }
    });
    let (hung, _) = std::sync::mpsc::channel();
    let (durable, recovery) = Durable::builder(store.clone(), registry())
        .register::<Doomed, _>(Hang(hung))
        .poison_after(1)
        .open(&second)
        .unwrap();
    let _ = returned.send(());
    let early = gatekeeper.join().unwrap();
    assert!(!early, "open returned before the dead letter was written");
    assert_eq!(recovery.dead_lettered(), &[id]);
    assert!(recovery.is_empty());
    let letters = durable.dead_letters().unwrap();
    assert_eq!(letters.iter().map(|l| l.id).collect::<Vec<_>>(), vec![id]);
    assert!(letters[0].reason.contains("died"), "{}", letters[0].reason);
    let events = published_now(&mut sub);
    assert!(
        events
            .iter()
            .filter_map(|e| e.downcast_ref::<DeadLettered>())
            .any(|d| d.id == id),
        "announced by the time open returned"
    );
    drop(recovery);
    durable.close();
}
