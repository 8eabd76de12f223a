//! Sagas: LIFO rollback, rollback past failing compensations, commit, automatic rollback on a
//! failing step, cancel safety, and sagas whose steps are dispatched jobs.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::executor::block_on;
use futures::task::noop_waker_ref;
use orchestrator_core::testing::{FakeError, FakeExecutor, VirtualRuntime};
use orchestrator_core::{
    CompensationFailure, Dispatch, Dispatcher, Job, JobError, Saga, StepError,
};

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::default()
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// A compensation that records `undo <name>` and then succeeds or fails with `error`.
fn undo(
    log: &Log,
    name: &'static str,
    error: Option<&'static str>,
) -> impl Future<Output = Result<(), &'static str>> + Send + 'static {
    let log = log.clone();
    async move {
        log.lock().unwrap().push(format!("undo {name}"));
        error.map_or(Ok(()), Err)
    }
}

/// An action that records `do <name>` and returns `value`.
fn act<T>(
    log: &Log,
    name: &'static str,
    value: T,
) -> impl Future<Output = Result<T, &'static str>> {
    let log = log.clone();
    async move {
        log.lock().unwrap().push(format!("do {name}"));
        Ok(value)
    }
}

#[test]
fn rollback_runs_compensations_last_in_first_out() {
    let log = log();
    block_on(async {
        let mut saga = Saga::new();
        for name in ["a", "b", "c"] {
            saga.step(name, act(&log, name, ()), |_| undo(&log, name, None))
                .await
                .unwrap();
        }
        assert_eq!(saga.len(), 3);
        assert_eq!(saga.steps().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(
            entries(&log),
            ["do a", "do b", "do c"],
            "no compensation ran yet"
        );

        let report = saga.rollback().await;
        assert!(report.is_clean());
        assert_eq!(report.ran(), 3);
        assert_eq!(report.compensated(), ["c", "b", "a"]);
        assert!(saga.is_empty());
    });
    assert_eq!(
        entries(&log),
        ["do a", "do b", "do c", "undo c", "undo b", "undo a"]
    );
}

#[test]
fn rollback_continues_past_failing_compensations_and_reports_each() {
    let log = log();
    let report = block_on(async {
        let mut saga = Saga::new();
        saga.step("a", act(&log, "a", ()), |_| {
            undo(&log, "a", Some("a broke"))
        })
        .await
        .unwrap();
        saga.step("b", act(&log, "b", ()), |_| undo(&log, "b", None))
            .await
            .unwrap();
        saga.step("c", act(&log, "c", ()), |_| {
            undo(&log, "c", Some("c broke"))
        })
        .await
        .unwrap();
        saga.rollback().await
    });
    assert_eq!(
        entries(&log)[3..],
        ["undo c", "undo b", "undo a"],
        "every compensation ran despite the failures"
    );
    assert_eq!(report.ran(), 3);
    assert!(!report.is_clean());
    assert_eq!(
        report.failures(),
        [
            CompensationFailure {
                step: "c".into(),
                error: "c broke"
            },
            CompensationFailure {
                step: "a".into(),
                error: "a broke"
            },
        ]
    );
    // The message names the step; the compensation's error is its own field (and `source`).
    assert_eq!(
        report.failures()[0].to_string(),
        "compensation of step `c` failed"
    );
}

#[test]
fn commit_clears_so_a_later_rollback_runs_nothing() {
    let log = log();
    block_on(async {
        let mut saga = Saga::new();
        saga.step("a", act(&log, "a", ()), |_| undo(&log, "a", None))
            .await
            .unwrap();
        saga.step("b", act(&log, "b", ()), |_| undo(&log, "b", None))
            .await
            .unwrap();
        saga.commit();
        assert!(saga.is_empty());
        let report = saga.rollback().await;
        assert_eq!(report.ran(), 0);
        assert!(report.compensated().is_empty());

        // The saga is reusable: steps after the commit are compensated on their own.
        saga.step("c", act(&log, "c", ()), |_| undo(&log, "c", None))
            .await
            .unwrap();
        assert_eq!(saga.rollback().await.compensated(), ["c"]);
    });
    assert_eq!(entries(&log), ["do a", "do b", "do c", "undo c"]);
}

#[test]
fn a_failing_step_rolls_back_the_completed_steps() {
    let log = log();
    let failing_compensation_built = Arc::new(Mutex::new(false));
    let err = block_on(async {
        let mut saga = Saga::new();
        saga.step("a", act(&log, "a", ()), |_| undo(&log, "a", None))
            .await
            .unwrap();
        saga.step("b", act(&log, "b", ()), |_| undo(&log, "b", None))
            .await
            .unwrap();
        let err = saga
            .step("c", async { Err::<(), _>("declined") }, |_| {
                *failing_compensation_built.lock().unwrap() = true;
                undo(&log, "c", None)
            })
            .await
            .unwrap_err();
        assert!(
            saga.is_empty(),
            "the automatic rollback consumed every compensation"
        );
        assert_eq!(
            saga.rollback().await.ran(),
            0,
            "nothing is rolled back twice"
        );
        err
    });
    assert_eq!(entries(&log), ["do a", "do b", "undo b", "undo a"]);
    assert!(!*failing_compensation_built.lock().unwrap());
    assert_eq!(err.step, "c");
    assert_eq!(err.error, "declined");
    assert_eq!(err.rollback.compensated(), ["b", "a"]);
    assert!(err.rollback.is_clean());
    assert_eq!(
        err.to_string(),
        "saga step `c` failed (rolled back 2 steps)"
    );
    assert_eq!(err.into_error(), "declined");
}

#[test]
fn a_failing_step_reports_failing_compensations_of_its_rollback() {
    let log = log();
    let err: StepError<&str> = block_on(async {
        let mut saga = Saga::new();
        saga.step("a", act(&log, "a", ()), |_| undo(&log, "a", None))
            .await
            .unwrap();
        saga.step("b", act(&log, "b", ()), |_| undo(&log, "b", Some("stuck")))
            .await
            .unwrap();
        saga.step("c", async { Err::<(), _>("declined") }, |_| async {
            Ok(())
        })
        .await
        .unwrap_err()
    });
    assert_eq!(entries(&log)[2..], ["undo b", "undo a"]);
    assert_eq!(err.rollback.ran(), 2);
    assert_eq!(err.rollback.failures().len(), 1);
    assert_eq!(err.rollback.failures()[0].step, "b");
    assert_eq!(err.rollback.failures()[0].error, "stuck");
    assert_eq!(err.error, "declined");
    assert_eq!(
        err.to_string(),
        "saga step `c` failed (rolled back 2 steps, 1 compensation failed)"
    );
}

#[test]
fn a_first_step_that_fails_rolls_back_nothing() {
    let err = block_on(async {
        let mut saga = Saga::<u8>::new();
        saga.step("only", async { Err::<(), _>(9) }, |_| async { Ok(()) })
            .await
            .unwrap_err()
    });
    assert_eq!(err.rollback.ran(), 0);
    assert_eq!(err.error, 9);
    assert_eq!(
        err.to_string(),
        "saga step `only` failed (rolled back 0 steps)"
    );
}

#[test]
fn the_compensation_is_built_from_the_action_value() {
    let log = log();
    block_on(async {
        let mut saga = Saga::new();
        let id = saga
            .step("create", act(&log, "create", 41u32), |&id| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(format!("delete {id}"));
                    Ok(())
                }
            })
            .await
            .unwrap();
        assert_eq!(id, 41);
        // Building the compensation does not run it.
        assert_eq!(entries(&log), ["do create"]);
        assert!(saga.rollback().await.is_clean());
    });
    assert_eq!(entries(&log), ["do create", "delete 41"]);
}

#[test]
fn compensations_may_borrow_local_state() {
    let undone = Mutex::new(Vec::new());
    block_on(async {
        let mut saga = Saga::<()>::new();
        for i in 0..3 {
            let undone = &undone;
            saga.step(format!("step {i}"), async { Ok(()) }, move |_| async move {
                undone.lock().unwrap().push(i);
                Ok(())
            })
            .await
            .unwrap();
        }
        assert!(saga.rollback().await.is_clean());
    });
    assert_eq!(*undone.lock().unwrap(), [2, 1, 0]);
}

#[test]
fn dropping_a_saga_runs_no_compensation_and_does_not_panic() {
    let log = log();
    block_on(async {
        let mut saga = Saga::new();
        saga.step("a", act(&log, "a", ()), |_| undo(&log, "a", None))
            .await
            .unwrap();
        saga.step("b", act(&log, "b", ()), |_| undo(&log, "b", None))
            .await
            .unwrap();
        drop(saga);
    });
    assert_eq!(entries(&log), ["do a", "do b"]);
}

/// A future that is pending until its flag is set.
fn gate(open: Arc<Mutex<bool>>) -> impl Future<Output = ()> {
    std::future::poll_fn(move |_| {
        if *open.lock().unwrap() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

#[test]
fn dropping_a_step_mid_action_records_nothing_for_it() {
    let log = log();
    let mut saga = Saga::new();
    block_on(saga.step("a", act(&log, "a", ()), |_| undo(&log, "a", None))).unwrap();
    {
        let never = Arc::new(Mutex::new(false));
        let mut step = pin!(saga.step(
            "b",
            async {
                gate(never).await;
                Ok(())
            },
            |_| undo(&log, "b", None),
        ));
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(step.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(saga.steps().collect::<Vec<_>>(), ["a"]);
    assert_eq!(block_on(saga.rollback()).compensated(), ["a"]);
    assert_eq!(entries(&log), ["do a", "undo a"]);
}

#[test]
fn dropping_a_rollback_keeps_the_compensations_it_did_not_reach() {
    let log = log();
    let open = Arc::new(Mutex::new(false));
    let mut saga = Saga::new();
    block_on(async {
        saga.step("a", act(&log, "a", ()), |_| undo(&log, "a", None))
            .await
            .unwrap();
        let open = open.clone();
        let log_b = log.clone();
        saga.step("b", act(&log, "b", ()), move |_| async move {
            log_b.lock().unwrap().push("undo b started".into());
            gate(open).await;
            Ok(())
        })
        .await
        .unwrap();
        saga.step("c", act(&log, "c", ()), |_| undo(&log, "c", None))
            .await
            .unwrap();
    });
    {
        let mut rollback = pin!(saga.rollback());
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(
            rollback.as_mut().poll(&mut cx).is_pending(),
            "stuck in b's compensation"
        );
    }
    assert_eq!(entries(&log)[3..], ["undo c", "undo b started"]);
    assert_eq!(
        saga.steps().collect::<Vec<_>>(),
        ["a"],
        "c ran, b was dropped, a remains"
    );
    *open.lock().unwrap() = true;
    assert_eq!(block_on(saga.rollback()).compensated(), ["a"]);
}

#[test]
fn saga_and_its_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let mut saga = Saga::<JobError>::new();
    send(&saga);
    let step = saga.step("a", async { Ok(()) }, |_| async { Ok(()) });
    send(&step);
    block_on(step).unwrap();
    assert_eq!(format!("{saga:?}"), r#"Saga { steps: ["a"] }"#);
    let rollback = saga.rollback();
    send(&rollback);
    assert_eq!(block_on(rollback).ran(), 1);
}

// ---------------------------------------------------------------------------------------------
// Steps that are dispatched jobs

/// The shop's books: stock per item and the money charged.
#[derive(Debug, Default, PartialEq)]
struct Books {
    stock: u32,
    charged: u32,
    undo_jobs: Vec<&'static str>,
}

/// The error of the declined charge and of shipping.
fn declined() -> FakeError {
    FakeError::new("card declined")
}

#[derive(Clone)]
struct Reserve(u32);
impl Job for Reserve {
    type Output = u32;
}
#[derive(Clone)]
struct Release(u32);
impl Job for Release {
    type Output = ();
}
#[derive(Clone)]
struct Charge(u32);
impl Job for Charge {
    type Output = u32;
}
#[derive(Clone)]
struct Refund(u32);
impl Job for Refund {
    type Output = ();
}
#[derive(Clone)]
struct Ship;
impl Job for Ship {
    type Output = ();
}

/// A fake that waits `latency_ms` (if any) on the virtual clock, then runs `f` on the books.
fn on_books<J: Job + Clone>(
    books: &Arc<Mutex<Books>>,
    latency_ms: u64,
    f: impl Fn(&J, &mut Books) -> Result<J::Output, FakeError> + Send + Sync + 'static,
) -> FakeExecutor<J> {
    let (books, f) = (books.clone(), Arc::new(f));
    FakeExecutor::from_fn(move |job: J, cx| {
        let (books, f) = (books.clone(), f.clone());
        async move {
            if latency_ms > 0 {
                cx.sleep(Duration::from_millis(latency_ms)).await;
            }
            f(&job, &mut books.lock().unwrap())
        }
    })
}

/// Runs every job against the books; charges above `limit` are declined, shipping fails.
fn shop(
    limit: u32,
) -> (
    VirtualRuntime,
    Dispatcher<VirtualRuntime>,
    Arc<Mutex<Books>>,
) {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let books = Arc::new(Mutex::new(Books {
        stock: 10,
        ..Books::default()
    }));
    dispatcher.register(on_books(&books, 5, |job: &Reserve, books| {
        books.stock -= job.0;
        Ok(job.0)
    }));
    dispatcher.register(on_books(&books, 5, |job: &Release, books| {
        books.stock += job.0;
        books.undo_jobs.push("release");
        Ok(())
    }));
    dispatcher.register(on_books(&books, 0, move |job: &Charge, books| {
        if job.0 > limit {
            return Err(declined());
        }
        books.charged += job.0;
        Ok(job.0)
    }));
    dispatcher.register(on_books(&books, 0, |job: &Refund, books| {
        books.charged -= job.0;
        books.undo_jobs.push("refund");
        Ok(())
    }));
    dispatcher.register(FakeExecutor::<Ship>::fail(declined()));
    (rt, dispatcher, books)
}

/// Reserve 3 items, charge `price`, ship; each step a dispatched job, each undo a job too.
async fn order(d: &Dispatcher<VirtualRuntime>, price: u32) -> Result<(), StepError<JobError>> {
    let mut saga = Saga::<JobError>::new();
    saga.step(
        "reserve",
        async { Ok(d.dispatch(Reserve(3)).await?.value) },
        |&n| {
            let d = d.clone();
            async move {
                d.dispatch(Release(n)).await?;
                Ok(())
            }
        },
    )
    .await?;
    saga.step(
        "charge",
        async { Ok(d.dispatch(Charge(price)).await?.value) },
        |&amount| {
            let d = d.clone();
            async move {
                d.dispatch(Refund(amount)).await?;
                Ok(())
            }
        },
    )
    .await?;
    saga.step(
        "ship",
        async {
            d.dispatch(Ship).await?;
            Ok(())
        },
        |_| async { Ok(()) },
    )
    .await?;
    saga.commit();
    Ok(())
}

#[test]
fn dispatched_jobs_roll_back_through_undo_jobs_when_a_later_step_fails() {
    let (rt, d, books) = shop(100);
    let err = rt.block_on(order(&d, 40)).unwrap_err();
    assert_eq!(err.step, "ship");
    assert_eq!(
        err.error
            .failure()
            .and_then(|f| f.downcast_ref::<FakeError>()),
        Some(&declined())
    );
    assert_eq!(err.rollback.compensated(), ["charge", "reserve"]);
    assert!(err.rollback.is_clean());
    assert_eq!(
        *books.lock().unwrap(),
        Books {
            stock: 10,
            charged: 0,
            undo_jobs: vec!["refund", "release"],
        },
        "the undo jobs ran last-in-first-out and restored the books"
    );
}

#[test]
fn dispatched_jobs_a_declined_charge_releases_the_reservation_only() {
    let (rt, d, books) = shop(10);
    let err = rt.block_on(order(&d, 40)).unwrap_err();
    assert_eq!(err.step, "charge");
    assert!(err.error.is_failed());
    assert_eq!(err.rollback.compensated(), ["reserve"]);
    assert_eq!(
        *books.lock().unwrap(),
        Books {
            stock: 10,
            charged: 0,
            undo_jobs: vec!["release"],
        }
    );
}

#[test]
fn dispatched_jobs_an_undo_job_without_executor_is_reported() {
    let (rt, d, books) = shop(100);
    d.unregister::<Release>();
    let err = rt.block_on(order(&d, 40)).unwrap_err();
    assert_eq!(err.rollback.compensated(), ["charge", "reserve"]);
    assert_eq!(err.rollback.failures().len(), 1);
    let failure = &err.rollback.failures()[0];
    assert_eq!(failure.step, "reserve");
    assert!(failure.error.is_rejected());
    let books = books.lock().unwrap();
    assert_eq!((books.stock, books.charged), (7, 0), "the refund still ran");
}
