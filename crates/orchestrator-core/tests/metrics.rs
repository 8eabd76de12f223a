//! `MetricsObserver` (feature `metrics`): every outcome, retry, cache hit, loop-guard drop and
//! breaker transition is counted with its labels, durations are recorded, and nothing is kept
//! after the jobs end.

#![cfg(feature = "metrics")]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    BreakerConfig, CachePolicy, CancellationToken, Dispatch, Dispatcher, Event, Executor, Job,
    JobContext, LoopGuard, MetricsObserver, Observer, Orchestrator, OrchestratorContext, Origin,
    RetryPolicy,
};

#[derive(Clone)]
struct Work {
    fail: bool,
    hang: bool,
}
impl Job for Work {
    type Output = u32;
}

#[derive(Debug)]
struct Broken;
impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("broken")
    }
}
impl std::error::Error for Broken {}

struct Worker;
impl Executor<Work> for Worker {
    type Error = Broken;
    async fn execute(&self, job: &Work, _cx: JobContext) -> Result<u32, Broken> {
        if job.hang {
            std::future::pending::<()>().await;
        }
        if job.fail { Err(Broken) } else { Ok(7) }
    }
}

struct Unregistered;
impl Job for Unregistered {
    type Output = ();
}

struct Ping(u32);

/// Re-emits every `Ping` one level deeper: a loop the guard cuts.
struct Echo;
impl Orchestrator for Echo {
    type State = ();
    fn on_event(&mut self, event: &Event, _: Origin, cx: &mut OrchestratorContext<'_, ()>) {
        if let Some(Ping(n)) = event.downcast_ref::<Ping>() {
            let _ = cx.emit(Ping(n + 1));
        }
    }
}

/// The snapshot as `(name, sorted labels) -> value`.
fn snapshot(recorder: &DebuggingRecorder) -> HashMap<(String, Vec<String>), DebugValue> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let mut labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            ((key.key().name().to_owned(), labels), value)
        })
        .collect()
}

fn counter(
    values: &HashMap<(String, Vec<String>), DebugValue>,
    name: &str,
    labels: &[&str],
) -> u64 {
    let mut labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
    labels.sort();
    let key = (name.to_owned(), labels);
    match values.get(&key) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{key:?}: {other:?}"),
    }
}

#[test]
fn outcomes_retries_cache_drops_and_breaker_are_counted_and_nothing_is_kept() {
    let recorder = DebuggingRecorder::new();
    let observer = Arc::new(MetricsObserver::new());
    metrics::with_local_recorder(&recorder, || {
        let rt = VirtualRuntime::new();
        let dispatcher = Dispatcher::builder(rt.clone())
            .observer(ArcObserver(observer.clone()))
            .build();
        dispatcher.register(Worker);
        let ok = Work {
            fail: false,
            hang: false,
        };
        let bad = Work {
            fail: true,
            hang: false,
        };
        let stuck = Work {
            fail: false,
            hang: true,
        };

        rt.block_on(dispatcher.dispatch(ok.clone())).unwrap();
        let retried = dispatcher
            .job(bad.clone())
            .retry(RetryPolicy::fixed(2, Duration::from_millis(10)))
            .dispatch();
        rt.block_on(retried).unwrap_err();
        let cached = || {
            dispatcher
                .job(ok.clone())
                .cache(CachePolicy::new("k"))
                .dispatch()
        };
        rt.block_on(cached()).unwrap();
        rt.block_on(cached()).unwrap(); // a hit
        let token = CancellationToken::new();
        let cancelled = dispatcher
            .job(stuck.clone())
            .cancellation(token.clone())
            .dispatch();
        rt.run_until_stalled();
        token.cancel();
        rt.block_on(cancelled).unwrap_err();
        let timed = dispatcher
            .job(stuck)
            .timeout(Duration::from_secs(1))
            .dispatch();
        rt.block_on(timed).unwrap_err();
        rt.block_on(dispatcher.dispatch(Unregistered)).unwrap_err();

        // A loop the guard cuts at depth 2.
        let echo = Echo
            .builder((), &dispatcher)
            .guard(LoopGuard::new().max_depth(2))
            .start()
            .unwrap();
        dispatcher.bus().emit(Ping(0)).unwrap();
        rt.run_until_stalled();
        echo.dispose();

        // The breaker opens after two failures.
        dispatcher.set_circuit_breaker::<Work>(
            BreakerConfig::new(2, Duration::from_secs(60), Duration::from_secs(60)).unwrap(),
        );
        for _ in 0..2 {
            rt.block_on(dispatcher.dispatch(bad.clone())).unwrap_err();
        }
        rt.block_on(dispatcher.dispatch(bad.clone())).unwrap_err(); // rejected: open
    });
    let values = snapshot(&recorder);
    let work = format!("job_type={}", std::any::type_name::<Work>());
    let unregistered = format!("job_type={}", std::any::type_name::<Unregistered>());
    let w = work.as_str();
    assert_eq!(
        counter(
            &values,
            "orchestrator_jobs_succeeded_total",
            &["data_source=fresh", w]
        ),
        2
    );
    assert_eq!(
        counter(
            &values,
            "orchestrator_jobs_succeeded_total",
            &["data_source=cached", w]
        ),
        1
    );
    assert_eq!(counter(&values, "orchestrator_cache_hits_total", &[w]), 1);
    assert_eq!(counter(&values, "orchestrator_jobs_failed_total", &[w]), 3);
    assert_eq!(counter(&values, "orchestrator_jobs_retried_total", &[w]), 2);
    assert_eq!(
        counter(&values, "orchestrator_jobs_cancelled_total", &[w]),
        1
    );
    assert_eq!(
        counter(&values, "orchestrator_jobs_timed_out_total", &[w]),
        1
    );
    assert_eq!(
        counter(&values, "orchestrator_jobs_rejected_total", &[w]),
        1
    );
    assert_eq!(
        counter(
            &values,
            "orchestrator_jobs_rejected_total",
            &[unregistered.as_str()]
        ),
        1
    );
    // Started or rejected: 3 successes, 3 failures, 1 cancelled, 1 timed out, 1 rejected by
    // the open breaker.
    assert_eq!(
        counter(&values, "orchestrator_jobs_dispatched_total", &[w]),
        9
    );
    assert_eq!(
        counter(
            &values,
            "orchestrator_jobs_dispatched_total",
            &[unregistered.as_str()]
        ),
        1
    );
    let echo = format!("orchestrator={}", std::any::type_name::<Echo>());
    assert_eq!(
        counter(
            &values,
            "orchestrator_events_dropped_total",
            &[echo.as_str(), "reason=too_deep"]
        ),
        1
    );
    assert_eq!(
        counter(
            &values,
            "orchestrator_breaker_transitions_total",
            &["state=open", w]
        ),
        1
    );
    let durations = values
        .iter()
        .filter(|((name, _), _)| name == "orchestrator_job_duration_seconds")
        .map(|(_, value)| match value {
            DebugValue::Histogram(samples) => samples.len(),
            other => panic!("a histogram, not {other:?}"),
        })
        .sum::<usize>();
    // Every dispatch of `Work` but the one the open breaker rejected started.
    assert_eq!(durations, 8, "one per job that started");
    assert_eq!(observer.tracked(), 0, "nothing kept after the jobs ended");
}

/// An observer shared with the test, to read `tracked` at the end.
struct ArcObserver(Arc<MetricsObserver>);
impl Observer for ArcObserver {
    fn on_job_start(&self, job: &orchestrator_core::JobInfo) {
        self.0.on_job_start(job);
    }
    fn on_job_success(
        &self,
        job: &orchestrator_core::JobInfo,
        source: orchestrator_core::DataSource,
    ) {
        self.0.on_job_success(job, source);
    }
    fn on_job_error(&self, job: &orchestrator_core::JobInfo, error: &orchestrator_core::JobError) {
        self.0.on_job_error(job, error);
    }
    fn on_job_retry(
        &self,
        job: &orchestrator_core::JobInfo,
        attempt: u32,
        delay: Duration,
        error: &(dyn std::error::Error + 'static),
    ) {
        self.0.on_job_retry(job, attempt, delay, error);
    }
    fn on_event_dropped(&self, dropped: &orchestrator_core::DroppedEvent<'_>) {
        self.0.on_event_dropped(dropped);
    }
    fn on_breaker_transition(
        &self,
        job_type: &'static str,
        state: orchestrator_core::BreakerState,
    ) {
        self.0.on_breaker_transition(job_type, state);
    }
}
