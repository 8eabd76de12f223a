//! A full job pool rejects the dispatch (a `Spawn(Full)` rejection on its handle) instead of
//! panicking, and a finished job frees its slot.

mod support;

use std::sync::Arc;

use orchestrator_core::conformance::Gate;
use orchestrator_core::runtime::SpawnErrorKind;
use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext, JobError, Rejection};
use orchestrator_embassy::{EmbassyRuntime, job_pool};

job_pool!(static TWO_JOBS: 2;);
job_pool!(static HARNESS: 1;);

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
