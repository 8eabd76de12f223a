//! The adapter's own edges: a full job pool rejects the dispatch (a `Spawn(Full)` rejection on
//! its handle) instead of panicking, and a finished job frees its slot; sleeps past the end of
//! embassy's clock neither panic nor complete.

mod support;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use orchestrator_core::conformance::Gate;
use orchestrator_core::runtime::{SpawnErrorKind, Timer};
use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext, JobError, Rejection};
use orchestrator_embassy::{EmbassyRuntime, job_pool};

job_pool!(static TWO_JOBS: 2;);
job_pool!(static HARNESS: 2;);

struct Wait(u32);
impl Job for Wait {
    type Output = u32;
}
struct Waiter(Arc<Gate>);
impl Executor<Wait> for Waiter {
    type Error = std::convert::Infallible;
    async fn execute(&self, job: &Wait, _cx: JobContext) -> Result<u32, Self::Error> {
        self.0.wait().await;
        Ok(job.0)
    }
}

#[test]
fn a_full_pool_rejects_the_dispatch_and_a_finished_job_frees_its_slot() {
    let jobs = EmbassyRuntime::with_pool(support::spawner(), TWO_JOBS);
    let harness = EmbassyRuntime::with_pool(support::spawner(), HARNESS);
    let gate = Arc::new(Gate::new());
    let dispatcher = Dispatcher::new(jobs);
    dispatcher.register(Waiter(gate.clone()));

    support::run_on_executor(&harness, async move {
        let first = dispatcher.dispatch(Wait(1));
        let second = dispatcher.dispatch(Wait(2));
        let third = dispatcher.dispatch(Wait(3)).await;
        match third {
            Err(JobError::Rejected(Rejection::Spawn(kind))) => {
                assert_eq!(kind, SpawnErrorKind::Full)
            }
            other => panic!("expected a Spawn(Full) rejection, got {other:?}"),
        }
        assert_eq!(dispatcher.in_flight(), 2, "the rejected job is not counted");

        gate.open();
        assert_eq!(first.await.map(|s| s.value).ok(), Some(1));
        assert_eq!(second.await.map(|s| s.value).ok(), Some(2));
        // Both slots are free again.
        let again = dispatcher.dispatch(Wait(4)).await;
        assert_eq!(again.map(|s| s.value).ok(), Some(4));
    });
}

#[test]
fn sleeps_past_the_end_of_the_clock_stay_pending_without_panicking() {
    let rt = EmbassyRuntime::with_pool(support::spawner(), HARNESS);
    support::run_on_executor(&rt, async move {
        // u64::MAX microseconds and more: not representable as embassy ticks after `now`.
        for huge in [Duration::MAX, Duration::from_secs(u64::MAX / 1_000)] {
            let mut sleep = pin!(rt.sleep(huge));
            let first = std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx))).await;
            assert!(first.is_pending(), "{huge:?}");
        }
        // A zero sleep completes (embassy's timer yields once, then is due).
        rt.sleep(Duration::ZERO).await;
        let before = rt.now();
        rt.sleep(Duration::from_millis(1)).await;
        assert!(rt.now().saturating_duration_since(before) >= Duration::from_millis(1));
    });
}
