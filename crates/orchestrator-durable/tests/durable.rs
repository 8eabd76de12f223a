//! Durable jobs on virtual time: a "crash" drops a runtime with jobs unfinished (their tasks
//! are dropped, their journal hears nothing), and a new dispatcher opens the same store.
//! Commits are inline and the wall clock is the test's, so every step is deterministic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    Dispatch, Dispatcher, Event, Executor, Job, JobContext, JobError, Orchestrator,
    OrchestratorContext, Origin, Rejection, RetryPolicy,
};
use orchestrator_durable::{
    DeadLettered, Durable, DurableError, End, MemoryStore, Recovery, ScheduleExt, Table,
};
use orchestrator_remote::{NodeId, Registry, WireJobId};
use serde::{Deserialize, Serialize};

/// A job: what to do in its run (`fail` attempts fail first; `hang` never finishes).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Work {
    n: u32,
    fail: u32,
    hang: bool,
    /// Hangs in its first run only.
    #[serde(default)]
    hang_once: bool,
}

impl Job for Work {
    type Output = u32;
    fn output_event(&self, value: &u32) -> Option<impl Send + Sync + 'static> {
        Some(*value)
    }
}

fn work(n: u32) -> Work {
    Work {
        n,
        fail: 0,
        hang: false,
        hang_once: false,
    }
}

#[derive(Debug)]
struct Failed(u32);
impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attempt {} failed", self.0)
    }
}
impl std::error::Error for Failed {}

/// Every run seen, in every "process": (job, attempt, durable id).
type Runs = Arc<Mutex<Vec<(u32, u32, WireJobId)>>>;

struct Worker {
    runs: Runs,
    durable: Arc<Mutex<Option<Durable>>>,
}

impl Executor<Work> for Worker {
    type Error = Failed;
    async fn execute(&self, job: &Work, cx: JobContext) -> Result<u32, Failed> {
        let id = self.durable.lock().unwrap().as_ref().unwrap().job_id(&cx);
        let first_run = {
            let mut runs = self.runs.lock().unwrap();
            runs.push((job.n, cx.attempt(), id));
            runs.iter().filter(|r| r.0 == job.n).count() == 1
        };
        if job.hang || (job.hang_once && first_run) {
            std::future::pending::<()>().await;
        }
        if cx.attempt() <= job.fail {
            return Err(Failed(cx.attempt()));
        }
        Ok(job.n * 10)
    }
}

/// The test's wall clock (milliseconds since the epoch), moved by hand.
#[derive(Clone)]
struct Clock(Arc<AtomicU64>);

impl Clock {
    fn new() -> Self {
        Self(Arc::new(AtomicU64::new(1_800_000_000_000)))
    }
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

/// One "process": a runtime, a dispatcher and a durable engine on the shared store.
struct Process {
    rt: VirtualRuntime,
    dispatcher: Dispatcher<VirtualRuntime>,
    durable: Durable,
}

struct World {
    store: MemoryStore,
    clock: Clock,
    runs: Runs,
    node: u64,
}

impl World {
    fn new() -> Self {
        Self {
            store: MemoryStore::new(),
            clock: Clock::new(),
            runs: Arc::new(Mutex::new(Vec::new())),
            node: 1,
        }
    }

    /// Starts a process on the store; returns it with its recovery (not resumed).
    fn start(&self, poison_after: u32) -> (Process, Recovery) {
        let rt = VirtualRuntime::new();
        let dispatcher = Dispatcher::new(rt.clone());
        let mut registry = Registry::new(NodeId::new(self.node));
        registry.register_job::<Work>("test.work").unwrap();
        let slot = Arc::new(Mutex::new(None));
        let clock = self.clock.clone();
        let (durable, recovery) = Durable::builder(self.store.clone(), Arc::new(registry))
            .register::<Work, _>(Worker {
                runs: self.runs.clone(),
                durable: slot.clone(),
            })
            .poison_after(poison_after)
            .inline_commits()
            .wall_clock(move || clock.now())
            .retention(Duration::from_secs(3600))
            .open(&dispatcher)
            .unwrap();
        *slot.lock().unwrap() = Some(durable.clone());
        (
            Process {
                rt,
                dispatcher,
                durable,
            },
            recovery,
        )
    }

    /// Runs of job `n`: (attempt, durable id).
    fn runs_of(&self, n: u32) -> Vec<(u32, WireJobId)> {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.0 == n)
            .map(|r| (r.1, r.2))
            .collect()
    }
}

/// Kills a process: its runtime's tasks are dropped mid-run, its journal hears nothing.
fn crash(process: Process) {
    process.rt.shutdown();
    drop(process);
}

#[test]
fn accepted_jobs_run_again_after_a_crash_under_the_same_id_and_their_outcome_is_kept() {
    let world = World::new();
    let (first, recovery) = world.start(3);
    assert!(recovery.is_empty());
    drop(recovery);
    let done = first.dispatcher.dispatch(work(1));
    let hanging = first.dispatcher.dispatch(Work {
        hang: true,
        ..work(2)
    });
    let queued = first
        .dispatcher
        .job(work(3))
        .delay(Duration::from_secs(60))
        .dispatch();
    first.rt.block_on(hanging.stored()).unwrap();
    first.rt.block_on(queued.stored()).unwrap();
    assert_eq!(first.rt.block_on(done).unwrap().value, 10);
    first.rt.run_until_stalled();
    let ids = [hanging.id(), queued.id()].map(|id| first.durable.wire_id(id));
    crash(first);

    // Job 2 was running, job 3 was waiting: both run in the next process, job 1 does not.
    world.clock.advance(Duration::from_secs(120)); // job 3 is overdue: it runs at once
    let (second, recovery) = world.start(3);
    assert_eq!(recovery.ids(), ids);
    assert!(recovery.resume().is_empty());
    second.rt.run_until_stalled();
    assert_eq!(world.runs_of(1).len(), 1, "a finished job never runs again");
    assert_eq!(world.runs_of(2).len(), 2, "the running job ran again");
    assert_eq!(
        world.runs_of(3).len(),
        1,
        "the queued job ran once, when recovered"
    );
    // The same durable id in both runs (what an idempotent executor keys its effects by).
    assert_eq!(world.runs_of(2)[0].1, world.runs_of(2)[1].1);
    assert_eq!(world.runs_of(2)[0].1, ids[0]);
    // Its handle, by its id; its outcome, by its id.
    let handle = second.durable.take_handle::<u32>(ids[1]);
    assert!(
        handle.is_none(),
        "a job that has ended has no handle to take"
    );
    let outcome = second.durable.outcome(ids[1]).unwrap().unwrap();
    assert_eq!(outcome.output::<u32>().unwrap().unwrap(), 30);
    assert_eq!(second.durable.stats().recovered, 2);
}

#[test]
fn a_recovered_jobs_handle_is_taken_by_its_id_and_resolves_once() {
    let world = World::new();
    let (first, _) = world.start(3);
    let hanging = first.dispatcher.dispatch(Work {
        hang: true,
        ..work(1)
    });
    first.rt.run_until_stalled();
    let id = first.durable.wire_id(hanging.id());
    crash(first);

    let (second, recovery) = world.start(3);
    recovery.resume();
    let handle = second
        .durable
        .take_handle::<u32>(id)
        .expect("recovered and running");
    assert!(
        second.durable.take_handle::<u32>(id).is_none(),
        "taken once"
    );
    handle.cancel();
    assert!(matches!(
        second.rt.block_on(handle),
        Err(JobError::Cancelled { .. })
    ));
    let outcome = second.durable.outcome(id).unwrap().unwrap();
    assert!(matches!(outcome.end, End::Cancelled { .. }), "{outcome:?}");
    // Cancelled by the user: it has ended, so a third process runs nothing.
    crash(second);
    let (_third, recovery) = world.start(3);
    assert!(recovery.is_empty());
}

#[test]
fn a_recovered_job_keeps_its_dedup_key_so_a_new_dispatch_with_it_joins_instead_of_running_again() {
    let world = World::new();
    let (first, _) = world.start(3);
    let order = first
        .dispatcher
        .job(Work {
            hang: true,
            ..work(1)
        })
        .dedup("order-1")
        .dispatch();
    first.rt.run_until_stalled();
    let id = first.durable.wire_id(order.id());
    crash(first);

    let (second, recovery) = world.start(3);
    recovery.resume();
    second.rt.run_until_stalled();
    assert_eq!(world.runs_of(1).len(), 2, "recovered and running again");
    let recovered = second.durable.take_handle::<u32>(id).expect("running");
    // The client sends the same order again after the restart: it joins the stored job.
    let again = second
        .dispatcher
        .job(Work {
            hang: true,
            ..work(1)
        })
        .dedup("order-1")
        .dispatch();
    second.rt.run_until_stalled();
    assert_eq!(again.id(), recovered.id(), "joined the recovered job");
    assert_eq!(world.runs_of(1).len(), 2, "not run a third time");
    assert!(
        second.rt.block_on(again.stored()).is_err(),
        "a joined dispatch is not stored again"
    );
    // Another key runs on its own.
    let other = second.dispatcher.job(work(2)).dedup("order-2").dispatch();
    assert_eq!(second.rt.block_on(other).unwrap().value, 20);
    recovered.cancel();
    assert!(matches!(
        second.rt.block_on(again),
        Err(JobError::Cancelled { .. })
    ));
    // Once it has ended the key is free again.
    let later = second.dispatcher.job(work(1)).dedup("order-1").dispatch();
    assert_eq!(second.rt.block_on(later).unwrap().value, 10);
    assert_eq!(world.runs_of(1).len(), 3);
}

#[test]
fn each_attempt_runs_only_after_its_own_start_is_written_not_with_the_acceptance() {
    // The start has a commit of its own, after the acceptance's: a process killed between
    // the two never counts a death against a job that had not started (a job that kills the
    // process every time it runs is dead-lettered after exactly `poison_after` runs).
    let world = World::new();
    let (process, _) = world.start(3);
    let commits = || process.durable.stats().commits;

    let before = commits();
    let job = process.dispatcher.dispatch(work(1));
    assert_eq!(process.rt.block_on(job).unwrap().value, 10);
    assert_eq!(
        commits() - before,
        3,
        "the acceptance, the start, the outcome"
    );

    let before = commits();
    let job = process
        .dispatcher
        .job(work(2))
        .delay(Duration::from_secs(60))
        .dispatch();
    process.rt.block_on(job.stored()).unwrap();
    assert_eq!(commits() - before, 1, "accepted, not started");
    process.rt.advance(Duration::from_secs(60));
    assert_eq!(process.rt.block_on(job).unwrap().value, 20);
    assert_eq!(commits() - before, 3, "its start is written when it is due");

    let before = commits();
    let job = process
        .dispatcher
        .job(Work { fail: 1, ..work(3) })
        .retry(RetryPolicy::fixed(1, Duration::from_millis(10)))
        .dispatch();
    process.rt.run_until_stalled();
    process.rt.advance(Duration::from_millis(10));
    assert_eq!(process.rt.block_on(job).unwrap().value, 30);
    assert_eq!(
        commits() - before,
        5,
        "the acceptance, a start, the failure, a start, the outcome"
    );
    assert_eq!(world.runs_of(3).len(), 2);
}

#[test]
fn the_retry_policy_continues_where_the_crash_stopped_it() {
    let world = World::new();
    let (first, _) = world.start(5);
    // Fails attempts 1 and 2, then hangs in attempt 3 until the crash.
    let job = first
        .dispatcher
        .job(Work { fail: 4, ..work(7) })
        .retry(RetryPolicy::fixed(4, Duration::from_secs(1)))
        .dispatch();
    let id = first.durable.wire_id(job.id());
    first.rt.run_until_stalled();
    first.rt.advance(Duration::from_secs(1));
    first.rt.advance(Duration::from_secs(1));
    first.rt.run_until_stalled();
    assert_eq!(
        world.runs_of(7).iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    crash(first); // during the backoff before attempt 4: attempts 1-3 failed
    let (second, recovery) = world.start(5);
    recovery.resume();
    second.rt.run_until_stalled();
    second.rt.advance(Duration::from_secs(1));
    let handle = second.durable.take_handle::<u32>(id);
    if let Some(handle) = handle {
        assert_eq!(second.rt.block_on(handle).unwrap().value, 70);
    }
    // Attempts 4 and 5 of 5: never more than the policy allows, never restarted at 1.
    assert_eq!(
        world.runs_of(7).iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let outcome = second.durable.outcome(id).unwrap().unwrap();
    assert_eq!(outcome.output::<u32>().unwrap().unwrap(), 70);
}

#[test]
fn a_total_timeout_counts_from_the_first_acceptance_across_restarts() {
    let world = World::new();
    let (first, _) = world.start(3);
    let job = first
        .dispatcher
        .job(Work {
            hang: true,
            ..work(1)
        })
        .timeout(Duration::from_secs(60))
        .dispatch();
    let id = first.durable.wire_id(job.id());
    first.rt.run_until_stalled();
    crash(first);
    world.clock.advance(Duration::from_secs(61)); // past its deadline while down
    let (second, recovery) = world.start(3);
    recovery.resume();
    let handle = second.durable.take_handle::<u32>(id);
    if let Some(handle) = handle {
        assert!(matches!(
            second.rt.block_on(handle),
            Err(JobError::TimedOut { .. })
        ));
    }
    second.rt.run_until_stalled();
    assert_eq!(
        world.runs_of(1).len(),
        1,
        "past its deadline: it did not run again"
    );
    let outcome = second.durable.outcome(id).unwrap().unwrap();
    assert!(matches!(outcome.end, End::TimedOut { .. }), "{outcome:?}");
}

#[test]
fn a_job_that_kills_every_process_it_runs_in_is_dead_lettered_with_its_placeholder() {
    let world = World::new();
    let (process, _) = world.start(3);
    let poison = process
        .dispatcher
        .job(Work {
            hang: true,
            ..work(9)
        })
        .placeholder(99)
        .dispatch();
    let id = process.durable.wire_id(poison.id());
    process.rt.run_until_stalled();
    crash(process);
    for _ in 0..2 {
        let (process, recovery) = world.start(3);
        recovery.resume();
        process.rt.run_until_stalled();
        crash(process);
    }
    assert_eq!(world.runs_of(9).len(), 3);
    // The fourth start does not run it: it is dead-lettered, and an event says so.
    let (process, recovery) = world.start(3);
    assert_eq!(recovery.dead_lettered(), [id]);
    assert!(recovery.is_empty());
    drop(recovery);
    process.rt.run_until_stalled();
    assert_eq!(world.runs_of(9).len(), 3, "never run again");
    let letters = process.durable.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].id, letters[0].starts), (id, 3));
    assert!(
        letters[0].reason.contains("died in 3 of its runs"),
        "{}",
        letters[0].reason
    );
    // Retried by hand, it runs again (and is poison again: it hangs here too).
    let retried = process.rt.block_on(process.durable.retry_dead(id)).unwrap();
    process.rt.run_until_stalled();
    assert_eq!(world.runs_of(9).len(), 4);
    assert!(process.durable.dead_letters().unwrap().is_empty());
    let handle = process.durable.take_handle::<u32>(id).unwrap();
    assert_eq!(handle.id(), retried);
    handle.cancel();
    let _ = process.rt.block_on(handle);
    assert!(
        !process.rt.block_on(process.durable.discard(id)).unwrap(),
        "not dead now"
    );
}

/// Everything published on a bus, as it comes.
fn recorded(dispatcher: &Dispatcher<VirtualRuntime>) -> Arc<Mutex<Vec<Event>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut sub = dispatcher.bus().subscribe();
    dispatcher
        .runtime()
        .spawn(orchestrator_core::runtime::Task::new(async move {
            while let Some(event) = std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut sub), cx)
            })
            .await
            {
                sink.lock().unwrap().push(event);
            }
        }))
        .unwrap();
    seen
}

#[test]
fn a_job_out_of_retries_goes_to_the_dead_letter_list_with_an_event_before_its_end() {
    let world = World::new();
    let (process, _) = world.start(3);
    let seen = recorded(&process.dispatcher);
    let job = process
        .dispatcher
        .job(Work {
            fail: 10,
            ..work(4)
        })
        .retry(RetryPolicy::fixed(1, Duration::from_secs(1)))
        .placeholder(40)
        .lifecycle_events(true)
        .dispatch();
    let id = process.durable.wire_id(job.id());
    let error = process.rt.block_on(job).unwrap_err();
    assert!(error.to_string().contains("2 attempts"), "{error}");
    process.rt.run_until_stalled();
    let seen = seen.lock().unwrap();
    let dead = seen
        .iter()
        .position(|e| e.is::<DeadLettered>())
        .expect("a DeadLettered event");
    let event = seen[dead].downcast_ref::<DeadLettered>().unwrap();
    assert_eq!(event.id, id);
    assert_eq!(event.placeholder_as::<u32>().unwrap().unwrap(), 40);
    assert!(
        event.reason.contains("attempt 2 failed"),
        "{}",
        event.reason
    );
    let terminal = seen
        .iter()
        .position(|e| {
            e.downcast_ref::<orchestrator_core::JobLifecycle>()
                .is_some_and(|l| matches!(l, orchestrator_core::JobLifecycle::Failed { .. }))
        })
        .expect("the terminal lifecycle event");
    assert!(dead < terminal, "no event of a job after its terminal one");
    drop(seen);
    let letters = process.durable.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].failures, 2);
    let outcome = process.durable.outcome(id).unwrap().unwrap();
    assert!(
        matches!(outcome.end, End::Failed { attempts: 2, .. }),
        "{outcome:?}"
    );
    // Discarded: gone for good, and not recovered by the next process.
    assert!(process.rt.block_on(process.durable.discard(id)).unwrap());
    crash(process);
    let (_next, recovery) = world.start(3);
    assert!(recovery.is_empty());
    assert_eq!(world.store.len(Table::Jobs), 0);
}

#[test]
fn a_shutdown_hands_running_jobs_back_without_counting_them_as_crashes() {
    let world = World::new();
    let (process, _) = world.start(1); // one crash would dead-letter it
    let job = process.dispatcher.dispatch(Work {
        hang: true,
        ..work(5)
    });
    let id = process.durable.wire_id(job.id());
    process.rt.run_until_stalled();
    let report = process
        .rt
        .block_on(process.dispatcher.shutdown(Duration::from_secs(1)));
    assert_eq!(report.cancelled, 1);
    assert!(process.rt.block_on(job).is_err());
    assert_eq!(process.durable.stats().interrupted, 1);
    drop(process);
    let (second, recovery) = world.start(1);
    assert_eq!(recovery.ids(), [id], "handed back, not poisoned");
    recovery.resume();
    second.rt.run_until_stalled();
    assert_eq!(world.runs_of(5).len(), 2);
}

#[test]
fn a_delayed_job_keeps_its_due_time_across_a_restart() {
    let world = World::new();
    let (first, _) = world.start(3);
    // (`run_at` reads the system clock; this test's engine reads the test's clock.)
    let job = first
        .dispatcher
        .job(work(6))
        .delay(Duration::from_secs(3600))
        .dispatch();
    first.rt.block_on(job.stored()).unwrap();
    let id = first.durable.wire_id(job.id());
    first.rt.advance(Duration::from_secs(1800));
    crash(first);
    world.clock.advance(Duration::from_secs(1800 + 600)); // down for 40 minutes: 20 left
    let (second, recovery) = world.start(3);
    recovery.resume();
    second.rt.run_until_stalled();
    second.rt.advance(Duration::from_secs(1199));
    assert!(world.runs_of(6).is_empty(), "not due yet");
    second.rt.advance(Duration::from_secs(1));
    assert_eq!(world.runs_of(6).len(), 1);
    let outcome = second.durable.outcome(id).unwrap().unwrap();
    assert_eq!(outcome.output::<u32>().unwrap().unwrap(), 60);
}

#[test]
fn a_full_disk_rejects_the_dispatch_with_a_clear_error_and_keeps_what_was_accepted() {
    let world = World::new();
    let (process, _) = world.start(3);
    let before = process.dispatcher.dispatch(Work {
        hang: true,
        ..work(1)
    });
    process.rt.run_until_stalled();
    let kept = process.durable.wire_id(before.id());
    world.store.fail_after(Some(0));
    let refused = process.dispatcher.dispatch(work(2));
    let stored = process.rt.block_on(refused.stored()).unwrap_err();
    assert!(stored.message().contains("disk is full"), "{stored}");
    match process.rt.block_on(refused) {
        Err(JobError::Rejected(Rejection::NotStored { reason, .. })) => {
            assert!(reason.contains("disk is full"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(world.runs_of(2).is_empty(), "not stored, not run");
    world.store.fail_after(None);
    crash(process);
    let (_second, recovery) = world.start(3);
    assert_eq!(recovery.ids(), [kept], "what was accepted before is intact");
}

#[test]
fn a_job_type_unknown_here_is_kept_and_reported_and_a_payload_that_no_longer_decodes_is_dead_lettered()
 {
    let world = World::new();
    let (first, _) = world.start(3);
    let job = first.dispatcher.dispatch(Work {
        hang: true,
        ..work(1)
    });
    first.rt.run_until_stalled();
    let id = first.durable.wire_id(job.id());
    crash(first);

    // A process that does not know the type: kept, reported, never dropped.
    {
        let rt = VirtualRuntime::new();
        let dispatcher = Dispatcher::new(rt.clone());
        let registry = Registry::new(NodeId::new(1));
        let (durable, recovery) = Durable::builder(world.store.clone(), Arc::new(registry))
            .inline_commits()
            .open(&dispatcher)
            .unwrap();
        let unknown = recovery.resume();
        assert_eq!(unknown.len(), 1);
        assert_eq!(
            (unknown[0].id, unknown[0].job_type.as_str()),
            (id, "test.work")
        );
        assert_eq!(durable.stats().unknown_types, 1);
    }
    assert_eq!(world.store.len(Table::Jobs), 1);

    // A process whose `test.work` is another shape: the payload no longer decodes.
    #[derive(Serialize, Deserialize)]
    struct Reshaped {
        id: String,
    }
    impl Job for Reshaped {
        type Output = ();
    }
    struct Nothing;
    impl Executor<Reshaped> for Nothing {
        type Error = std::convert::Infallible;
        async fn execute(&self, _: &Reshaped, _: JobContext) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let mut registry = Registry::new(NodeId::new(1));
    registry.register_job::<Reshaped>("test.work").unwrap();
    let (durable, recovery) = Durable::builder(world.store.clone(), Arc::new(registry))
        .register::<Reshaped, _>(Nothing)
        .inline_commits()
        .open(&dispatcher)
        .unwrap();
    assert!(recovery.resume().is_empty());
    let letters = durable.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].reason.contains("no longer decodes"),
        "{}",
        letters[0].reason
    );
}

#[test]
fn run_at_is_a_delay_until_a_wall_clock_time() {
    let world = World::new();
    let (process, _) = world.start(3);
    let job = process
        .dispatcher
        .job(work(8))
        .run_at(SystemTime::now() + Duration::from_secs(600))
        .dispatch();
    process.rt.run_until_stalled();
    process.rt.advance(Duration::from_secs(598));
    assert!(world.runs_of(8).is_empty(), "not due yet");
    process.rt.advance(Duration::from_secs(2));
    assert_eq!(process.rt.block_on(job).unwrap().value, 80);
    // A time in the past runs at once.
    let late = process
        .dispatcher
        .job(work(9))
        .run_at(SystemTime::now() - Duration::from_secs(600))
        .dispatch();
    assert_eq!(process.rt.block_on(late).unwrap().value, 90);
}

#[test]
fn a_job_type_without_a_wire_name_is_refused_at_open() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let registry = Registry::new(NodeId::new(1));
    let error = Durable::builder(MemoryStore::new(), Arc::new(registry))
        .register::<Work, _>(Worker {
            runs: Runs::default(),
            durable: Arc::default(),
        })
        .inline_commits()
        .open(&dispatcher)
        .unwrap_err();
    assert!(matches!(error, DurableError::Unregistered(_)));
    assert!(
        error.to_string().contains("register it in the registry"),
        "{error}"
    );
}

#[test]
fn outcomes_are_compacted_after_their_retention() {
    let world = World::new();
    let (process, _) = world.start(3);
    let handles: Vec<_> = (0..5)
        .map(|n| process.dispatcher.dispatch(work(n)))
        .collect();
    let ids: Vec<WireJobId> = handles
        .iter()
        .map(|h| process.durable.wire_id(h.id()))
        .collect();
    for handle in handles {
        process.rt.block_on(handle).unwrap();
    }
    assert_eq!(world.store.len(Table::Outcomes), 5);
    assert_eq!(
        world.store.len(Table::Jobs),
        0,
        "finished jobs leave the jobs table"
    );
    world.clock.advance(Duration::from_secs(3601));
    // Compaction runs with the next commit.
    process
        .rt
        .block_on(process.dispatcher.dispatch(work(9)))
        .unwrap();
    assert_eq!(
        world.store.len(Table::Outcomes),
        1,
        "only the newest is kept"
    );
    assert_eq!(world.store.len(Table::Expiry), 1);
    assert!(process.durable.outcome(ids[0]).unwrap().is_none());
    assert_eq!(process.durable.stats().compacted, 5);
}

/// Counts the outcomes of its own jobs.
#[derive(Debug, Clone, Default, PartialEq)]
struct Tally {
    active: Vec<u32>,
}

struct Tallier;
impl Orchestrator for Tallier {
    type State = Tally;
    fn on_event(&mut self, event: &Event, origin: Origin, cx: &mut OrchestratorContext<'_, Tally>) {
        if let (Some(value), Origin::Active) = (event.downcast_ref::<u32>(), origin) {
            let value = *value;
            cx.update(|t| t.active.push(value));
        }
    }
}

#[test]
fn an_orchestrator_adopts_recovered_jobs_and_sees_their_outcomes_as_its_own() {
    let world = World::new();
    let (first, _) = world.start(3);
    for n in [1, 2] {
        drop(first.dispatcher.dispatch(Work {
            hang_once: true,
            ..work(n)
        }));
    }
    first.rt.run_until_stalled();
    crash(first);

    // Recovered, they no longer hang.
    let (second, mut recovery) = world.start(3);
    let tally = Tallier
        .builder(Tally::default(), &second.dispatcher)
        .build();
    tally.start().unwrap();
    let adopted = recovery.adopt::<Work>(&tally);
    assert_eq!(adopted.len(), 2);
    assert!(recovery.is_empty());
    drop(recovery);
    for id in &adopted {
        assert!(
            tally.is_job_running(*id),
            "tracked before any of its events"
        );
    }
    for id in adopted {
        second.rt.block_on(tally.handled(id)).unwrap();
    }
    let mut seen = tally.state().active;
    seen.sort_unstable();
    assert_eq!(
        seen,
        [10, 20],
        "their outcomes arrive as the orchestrator's own"
    );
    assert_eq!(tally.running_jobs(), 0);
}

/// A memory store that says when it is dropped.
#[derive(Clone)]
struct Tracked(MemoryStore, Arc<AtomicU64>);
impl Drop for Tracked {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}
impl orchestrator_durable::Store for Tracked {
    fn commit(&self, ops: &[orchestrator_durable::Op]) -> orchestrator_durable::Commit {
        self.0.commit(ops)
    }
    fn get(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, orchestrator_durable::StoreError> {
        self.0.get(table, key)
    }
    fn scan(
        &self,
        table: Table,
    ) -> Result<Vec<orchestrator_durable::Entry>, orchestrator_durable::StoreError> {
        self.0.scan(table)
    }
    fn scan_below(
        &self,
        table: Table,
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<orchestrator_durable::Entry>, orchestrator_durable::StoreError> {
        self.0.scan_below(table, end, limit)
    }
}

/// Runs a job with nothing of the engine in it.
struct Plain;
impl Executor<Work> for Plain {
    type Error = Failed;
    async fn execute(&self, job: &Work, _: JobContext) -> Result<u32, Failed> {
        Ok(job.n)
    }
}

#[test]
fn close_lets_go_of_the_store_and_dropping_everything_frees_it() {
    for close in [true, false] {
        let drops = Arc::new(AtomicU64::new(0));
        let rt = VirtualRuntime::new();
        let dispatcher = Dispatcher::new(rt.clone());
        let mut registry = Registry::new(NodeId::new(1));
        registry.register_job::<Work>("test.work").unwrap();
        let (durable, recovery) = Durable::builder(
            Tracked(MemoryStore::new(), drops.clone()),
            Arc::new(registry),
        )
        .register::<Work, _>(Plain)
        .inline_commits()
        .open(&dispatcher)
        .unwrap();
        recovery.resume();
        rt.block_on(dispatcher.dispatch(work(1))).unwrap();
        if close {
            durable.close();
            assert_eq!(drops.load(Ordering::SeqCst), 1, "close let go of the store");
            let refused = rt.block_on(dispatcher.dispatch(work(2)));
            assert!(matches!(
                refused,
                Err(JobError::Rejected(Rejection::NotStored { .. }))
            ));
            assert!(matches!(
                durable.outcome(WireJobId {
                    node: NodeId::new(1),
                    incarnation: 0,
                    job: 1
                }),
                Err(DurableError::Store(_))
            ));
        } else {
            drop(durable);
            drop(dispatcher);
            drop(rt);
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "nothing keeps the store alive"
            );
        }
    }
}

#[test]
fn compaction_keeps_up_with_any_number_of_expired_outcomes() {
    let world = World::new();
    let (process, _) = world.start(3);
    let handles: Vec<_> = (0..10_000)
        .map(|n| process.dispatcher.dispatch(work(n)))
        .collect();
    for handle in handles {
        process.rt.block_on(handle).unwrap();
    }
    assert_eq!(world.store.len(Table::Outcomes), 10_000);
    world.clock.advance(Duration::from_secs(3601));
    // Expired outcomes read as gone at once, deleted or not.
    assert!(
        process
            .durable
            .outcome(WireJobId {
                node: NodeId::new(1),
                incarnation: 0,
                job: 1
            })
            .unwrap()
            .is_none()
    );
    // Each commit deletes a bounded batch, and the next commit goes on while some are left.
    for n in 0..3 {
        process
            .rt
            .block_on(process.dispatcher.dispatch(work(n)))
            .unwrap();
    }
    assert_eq!(process.durable.stats().compacted, 10_000);
    assert_eq!(
        world.store.len(Table::Outcomes),
        3,
        "only the three new outcomes"
    );
    assert_eq!(world.store.len(Table::Expiry), 3);
}
