//! The writer thread on a real runtime: concurrent dispatches share commits.

use std::sync::{Arc, Condvar, Mutex};

use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext};
use orchestrator_durable::{Commit, Durable, Entry, MemoryStore, Op, Store, StoreError, Table};
use orchestrator_remote::{NodeId, Registry};
use orchestrator_tokio::TokioRuntime;
use serde::{Deserialize, Serialize};

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
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn scan(&self, table: Table) -> Result<Vec<Entry>, StoreError> {
        self.inner.scan(table)
    }
    fn scan_below(&self, table: Table, end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.inner.scan_below(table, end, limit)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_dispatches_share_one_commit() {
    let store = Gated::default();
    let dispatcher = Dispatcher::new(TokioRuntime::new());
    let mut registry = Registry::new(NodeId::new(1));
    registry.register_job::<Noop>("test.noop").unwrap();
    let (durable, recovery) = Durable::builder(store.clone(), Arc::new(registry))
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
    let mut registry = Registry::new(NodeId::new(1));
    registry.register_job::<Noop>("test.noop").unwrap();
    let (durable, recovery) = Durable::builder(store.clone(), Arc::new(registry))
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
                std::thread::spawn(move || {
                    for (ops, full, slot) in rx {
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
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn scan(&self, table: Table) -> Result<Vec<Entry>, StoreError> {
        self.inner.scan(table)
    }
    fn scan_below(&self, table: Table, end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.inner.scan_below(table, end, limit)
    }
}

/// Commits that end later, through the inline writer (as in a browser): a job runs once its
/// acceptance has ended, and a refused acceptance rejects the dispatch; nothing runs unstored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_that_end_later_are_awaited_and_a_refused_one_rejects_the_dispatch() {
    use orchestrator_core::{JobError, Rejection};
    let store = Later::default();
    let dispatcher = Dispatcher::new(TokioRuntime::new());
    let mut registry = Registry::new(NodeId::new(1));
    registry.register_job::<Noop>("test.noop").unwrap();
    let (durable, recovery) = Durable::builder(store.clone(), Arc::new(registry))
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
