//! The same program on whichever runtime the features chose: CI runs this file with
//! `--features tokio` (the default), `smol` and `async-std`.

use std::time::Duration;

use orchestrator::{
    DefaultRuntime, Dispatch, Dispatcher, Event, Executor, Job, JobContext, JobError, Orchestrator,
    OrchestratorContext, Origin, RetryPolicy,
};

struct Fetch(u32);
impl Job for Fetch {
    type Output = u32;
    fn output_event(&self, value: &u32) -> Option<impl Send + Sync + 'static> {
        Some(*value)
    }
}

#[derive(Debug)]
struct Flaky;
impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("flaky")
    }
}
impl std::error::Error for Flaky {}

struct Fetcher;
impl Executor<Fetch> for Fetcher {
    type Error = Flaky;
    async fn execute(&self, job: &Fetch, cx: JobContext) -> Result<u32, Flaky> {
        cx.sleep(Duration::from_millis(1)).await;
        if cx.attempt() < 2 {
            return Err(Flaky);
        }
        Ok(job.0 * 2)
    }
}

#[derive(Debug, Clone, Default)]
struct Total(u32);

struct Summer;
impl Orchestrator for Summer {
    type State = Total;
    fn on_event(&mut self, event: &Event, origin: Origin, cx: &mut OrchestratorContext<'_, Total>) {
        if let (Some(v), true) = (event.downcast_ref::<u32>(), origin.is_active()) {
            let v = *v;
            cx.update(|t| t.0 += v);
        }
    }
}

#[test]
fn the_same_program_runs_on_the_chosen_runtime() {
    orchestrator::block_on(async {
        let dispatcher = Dispatcher::new(DefaultRuntime::default());
        dispatcher.register(Fetcher);
        let summer = Summer.builder(Total::default(), &dispatcher).build();
        summer.start().unwrap();
        let handle = summer
            .job(Fetch(21))
            .retry(RetryPolicy::fixed(2, Duration::from_millis(1)))
            .timeout(Duration::from_secs(30))
            .dispatch();
        let id = handle.id();
        assert_eq!(handle.await.unwrap().value, 42);
        summer.handled(id).await.unwrap();
        assert_eq!(summer.state().0, 42);
        // Without retries the flaky executor's error comes back, with its cause.
        let error = dispatcher.dispatch(Fetch(1)).await.unwrap_err();
        assert!(matches!(error, JobError::Failed(_)), "{error}");
    });
}
