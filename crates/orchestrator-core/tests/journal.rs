//! Journaled job types: what a journal is told and when, `JobHandle::stored`, `delay` and
//! `first_attempt`, on virtual time.

use core::time::Duration;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    Accepting, CachePolicy, CancellationToken, Dispatch, Dispatcher, Ending, Executor, Job,
    JobContext, JobError, JobId, Journal, JournalError, JournalFuture, Receipt, Rejection,
    RetryPolicy,
};

#[derive(Debug, Clone)]
struct Charge(u32);
impl Job for Charge {
    type Output = u32;
    fn output_event(&self, value: &u32) -> Option<impl Send + Sync + 'static> {
        Some(*value)
    }
}

/// Fails its first `fail` attempts, then doubles.
struct Charger {
    fail: u32,
    runs: Arc<Mutex<Vec<u32>>>,
}

#[derive(Debug)]
struct Declined;
impl core::fmt::Display for Declined {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("declined")
    }
}
impl Error for Declined {}

impl Executor<Charge> for Charger {
    type Error = Declined;
    async fn execute(&self, job: &Charge, cx: JobContext) -> Result<u32, Declined> {
        self.runs.lock().unwrap().push(cx.attempt());
        if cx.attempt() <= self.fail {
            return Err(Declined);
        }
        Ok(job.0 * 2)
    }
}

type Commit = Option<Result<(), JournalError>>;

/// A receipt the test commits by hand.
#[derive(Default)]
struct Manual {
    state: Mutex<(Commit, Vec<Waker>)>,
}

impl Manual {
    fn commit(&self, result: Result<(), JournalError>) {
        let wakers = {
            let mut state = self.state.lock().unwrap();
            state.0 = Some(result);
            std::mem::take(&mut state.1)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Receipt for Manual {
    fn poll_stored(&self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        let mut state = self.state.lock().unwrap();
        match &state.0 {
            Some(result) => Poll::Ready(result.clone()),
            None => {
                state.1.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Records every hook call as a line.
#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<String>>,
    refuse: Mutex<bool>,
    /// Receipts stay pending until the test commits them.
    hold: Mutex<bool>,
    receipts: Mutex<Vec<Arc<Manual>>>,
}

impl Recorder {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn push(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }
}

impl Journal<Charge> for Recorder {
    fn accept(
        &self,
        job: &Charge,
        dispatch: &Accepting<'_, Charge>,
    ) -> Result<Arc<dyn Receipt>, JournalError> {
        if *self.refuse.lock().unwrap() {
            return Err(JournalError::new("disk full"));
        }
        self.push(format!(
            "accept {} first={} delay={:?} timeout={:?} retries={:?} placeholder={:?} meta={:?}",
            job.0,
            dispatch.first_attempt(),
            dispatch.delay(),
            dispatch.timeout(),
            dispatch.retry().map(RetryPolicy::max_retries),
            dispatch.placeholder(),
            dispatch.metadata_value("key"),
        ));
        let receipt = Arc::new(Manual::default());
        if !*self.hold.lock().unwrap() {
            receipt.commit(Ok(()));
        }
        self.receipts.lock().unwrap().push(receipt.clone());
        Ok(receipt)
    }

    fn attempt(&self, _: JobId, attempt: u32) -> JournalFuture {
        self.push(format!("attempt {attempt}"));
        Box::pin(async { Ok(()) })
    }

    fn retrying(&self, _: JobId, attempt: u32, error: &(dyn Error + 'static)) -> JournalFuture {
        self.push(format!("retrying {attempt}: {error}"));
        Box::pin(async { Ok(()) })
    }

    fn finish(&self, _: JobId, ending: Ending<'_, u32>, cx: &JobContext) -> JournalFuture {
        let line = match ending {
            Ending::Outcome(Ok(success)) => format!("finish ok {}", success.value),
            Ending::Outcome(Err(error)) => format!("finish err {error}"),
            Ending::Interrupted => "finish interrupted".to_owned(),
        };
        let _ = cx.emit(line.clone());
        self.push(line);
        Box::pin(async { Ok(()) })
    }
}

type Setup = (
    VirtualRuntime,
    Dispatcher<VirtualRuntime>,
    Arc<Recorder>,
    Arc<Mutex<Vec<u32>>>,
);

fn setup(fail: u32) -> Setup {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let journal = Arc::new(Recorder::default());
    let runs = Arc::new(Mutex::new(Vec::new()));
    dispatcher.register_journaled(
        Charger {
            fail,
            runs: runs.clone(),
        },
        journal.clone(),
    );
    (rt, dispatcher, journal, runs)
}

#[test]
fn a_journal_hears_of_the_dispatch_before_its_handle_and_of_the_end_before_the_outcome() {
    let (rt, dispatcher, journal, runs) = setup(1);
    let handle = dispatcher
        .job(Charge(21))
        .retry(RetryPolicy::fixed(2, Duration::from_secs(1)))
        .metadata("key", "v")
        .placeholder(0)
        .dispatch();
    // Accepted before the handle was returned, with every option it must keep.
    assert_eq!(
        journal.log(),
        [
            "accept 21 first=1 delay=None timeout=None retries=Some(2) placeholder=Some(0) meta=Some(\"v\")"
        ]
    );
    let mut events = dispatcher.bus().subscribe();
    assert_eq!(rt.block_on(handle).unwrap().value, 42);
    assert_eq!(
        journal.log()[1..],
        [
            "attempt 1",
            "retrying 1: declined",
            "attempt 2",
            "finish ok 42"
        ]
    );
    assert_eq!(*runs.lock().unwrap(), [1, 2]);
    // The journal's event is the job's, published before the handle resolved.
    let first = rt.block_on(futures_next(&mut events)).unwrap();
    assert_eq!(
        first.downcast_ref::<String>().map(String::as_str),
        Some("finish ok 42")
    );
}

async fn futures_next<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    core::future::poll_fn(|cx| core::pin::Pin::new(&mut *s).poll_next(cx)).await
}

#[test]
fn stored_waits_for_the_receipt_and_a_plain_type_says_it_stores_nothing() {
    let (rt, dispatcher, journal, _) = setup(0);
    *journal.hold.lock().unwrap() = true;
    let handle = dispatcher.dispatch(Charge(1));
    let mut stored = Box::pin(handle.stored());
    assert!(
        rt.try_block_on(stored.as_mut()).is_err(),
        "stalls until committed"
    );
    journal.receipts.lock().unwrap()[0].commit(Ok(()));
    assert_eq!(rt.block_on(stored), Ok(()));
    // Awaited again: the same answer.
    assert_eq!(rt.block_on(handle.stored()), Ok(()));

    struct Plain;
    impl Job for Plain {
        type Output = ();
    }
    struct Noop;
    impl Executor<Plain> for Noop {
        type Error = core::convert::Infallible;
        async fn execute(&self, _: &Plain, _: JobContext) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    dispatcher.register(Noop);
    let error = rt
        .block_on(dispatcher.dispatch(Plain).stored())
        .unwrap_err();
    assert!(error.message().contains("was not stored"), "{error}");
}

#[test]
fn a_journal_that_refuses_rejects_the_dispatch_and_nothing_runs() {
    let (rt, dispatcher, journal, runs) = setup(0);
    *journal.refuse.lock().unwrap() = true;
    let handle = dispatcher.dispatch(Charge(1));
    let error = rt.block_on(handle).unwrap_err();
    match &error {
        JobError::Rejected(Rejection::NotStored { reason, .. }) => assert_eq!(reason, "disk full"),
        other => panic!("{other:?}"),
    }
    assert!(
        error.to_string().contains("could not be stored: disk full"),
        "{error}"
    );
    assert!(runs.lock().unwrap().is_empty());
}

#[test]
fn a_job_cancelled_by_shutdown_is_interrupted_but_one_cancelled_by_its_token_has_ended() {
    let (rt, dispatcher, journal, _) = setup(u32::MAX);
    let token = CancellationToken::new();
    let cancelled = dispatcher
        .job(Charge(1))
        .cancellation(token.clone())
        .retry(RetryPolicy::fixed(u32::MAX, Duration::from_secs(1)))
        .dispatch();
    rt.run_until_stalled();
    token.cancel();
    assert!(matches!(
        rt.block_on(cancelled),
        Err(JobError::Cancelled { .. })
    ));
    assert_eq!(journal.log().last().unwrap(), "finish err job cancelled");

    let running = dispatcher
        .job(Charge(2))
        .retry(RetryPolicy::fixed(u32::MAX, Duration::from_secs(1)))
        .dispatch();
    rt.run_until_stalled();
    let report = rt.block_on(dispatcher.shutdown(Duration::from_secs(5)));
    assert_eq!(report.cancelled, 1);
    assert!(rt.block_on(running).is_err());
    assert_eq!(journal.log().last().unwrap(), "finish interrupted");
}

#[test]
fn first_attempt_continues_the_retry_policy() {
    let (rt, dispatcher, journal, runs) = setup(u32::MAX);
    let handle = dispatcher
        .job(Charge(1))
        .retry(RetryPolicy::fixed(3, Duration::from_secs(1)))
        .first_attempt(3)
        .dispatch();
    let error = rt.block_on(handle).unwrap_err();
    // Attempts 3 and 4 of 4: the policy continued where it stopped.
    assert_eq!(*runs.lock().unwrap(), [3, 4]);
    assert!(error.to_string().contains("4 attempts"), "{error}");
    assert!(journal.log()[0].contains("first=3"));
}

#[test]
fn a_delayed_job_runs_when_due_and_its_budget_starts_then() {
    let (rt, dispatcher, journal, runs) = setup(0);
    let handle = dispatcher
        .job(Charge(5))
        .delay(Duration::from_secs(60))
        .timeout(Duration::from_secs(1))
        .dispatch();
    rt.run_until_stalled();
    rt.advance(Duration::from_secs(59));
    assert!(runs.lock().unwrap().is_empty(), "not due yet");
    assert!(!handle.is_finished());
    rt.advance(Duration::from_secs(1));
    assert_eq!(rt.block_on(handle).unwrap().value, 10);
    assert!(journal.log()[0].contains("delay=Some(60s) timeout=Some(1s)"));

    // Cancelled while waiting: ends at once, never runs.
    let token = CancellationToken::new();
    let waiting = dispatcher
        .job(Charge(6))
        .delay(Duration::from_secs(3600))
        .cancellation(token.clone())
        .dispatch();
    rt.run_until_stalled();
    token.cancel();
    assert!(matches!(
        rt.block_on(waiting),
        Err(JobError::Cancelled { .. })
    ));
    assert_eq!(runs.lock().unwrap().len(), 1);
}

#[test]
fn a_delay_with_the_cache_is_rejected() {
    let (rt, dispatcher, _, _) = setup(0);
    let handle = dispatcher
        .job(Charge(5))
        .delay(Duration::from_secs(1))
        .cache(CachePolicy::new("k"))
        .dispatch();
    assert!(matches!(
        rt.block_on(handle),
        Err(JobError::Rejected(Rejection::Invalid { .. }))
    ));
}

#[test]
fn a_dispatch_whose_write_fails_is_rejected_and_never_runs() {
    let (rt, dispatcher, journal, runs) = setup(0);
    *journal.hold.lock().unwrap() = true;
    let handle = dispatcher.dispatch(Charge(1));
    rt.run_until_stalled();
    assert!(runs.lock().unwrap().is_empty(), "it waits to be stored");
    journal.receipts.lock().unwrap()[0].commit(Err(JournalError::new("disk full")));
    assert_eq!(
        rt.block_on(handle.stored()),
        Err(JournalError::new("disk full"))
    );
    match rt.block_on(handle) {
        Err(JobError::Rejected(Rejection::NotStored { reason, .. })) => {
            assert_eq!(reason, "disk full");
        }
        other => panic!("{other:?}"),
    }
    assert!(runs.lock().unwrap().is_empty());
    // Its journal was told how it ended (rejected), so it is not run after a restart either.
    assert!(
        journal
            .log()
            .last()
            .unwrap()
            .contains("could not be stored"),
        "{:?}",
        journal.log()
    );
}
