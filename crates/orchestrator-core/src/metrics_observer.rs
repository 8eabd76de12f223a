//! Job and event metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): [`MetricsObserver`].

use core::error::Error;
use core::time::Duration;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use metrics::{counter, histogram};

use crate::breaker::BreakerState;
use crate::event::Event;
use crate::id::JobId;
use crate::observer::{DropReason, DroppedEvent, JobInfo, Observer};
use crate::outcome::{DataSource, JobError};

/// Records what a dispatcher's jobs and orchestrators do as `metrics` counters and a
/// histogram, labelled by job type; install it with
/// [`DispatcherBuilder::observer`](crate::DispatcherBuilder::observer), and a recorder
/// (a Prometheus exporter, say) as the application does for every `metrics` user.
///
/// | metric | kind | labels | counts |
/// | --- | --- | --- | --- |
/// | `orchestrator_jobs_dispatched_total` | counter | `job_type` | jobs that started or were rejected |
/// | `orchestrator_jobs_succeeded_total` | counter | `job_type`, `data_source` (`fresh`, `cached`) | successes |
/// | `orchestrator_jobs_failed_total` | counter | `job_type` | failures (after the last attempt) |
/// | `orchestrator_jobs_cancelled_total` | counter | `job_type` | cancellations |
/// | `orchestrator_jobs_timed_out_total` | counter | `job_type` | total timeouts |
/// | `orchestrator_jobs_rejected_total` | counter | `job_type` | rejections (no executor, shut down, breaker open, ...) |
/// | `orchestrator_jobs_retried_total` | counter | `job_type` | retries |
/// | `orchestrator_cache_hits_total` | counter | `job_type` | successes served from the cache |
/// | `orchestrator_job_duration_seconds` | histogram | `job_type`, `outcome` | from a job's start to its end (wall clock) |
/// | `orchestrator_events_dropped_total` | counter | `orchestrator`, `reason` (`too_deep`, `rate_limited`) | events a loop guard kept from a handler |
/// | `orchestrator_events_undelivered_total` | counter | | job events a closed bus refused |
/// | `orchestrator_breaker_transitions_total` | counter | `job_type`, `state` | circuit-breaker transitions |
///
/// A job's start time is kept from its start to its end (every job ends once), so the observer
/// holds one entry per job in flight and nothing after.
///
/// ```
/// use metrics_util::debugging::{DebugValue, DebuggingRecorder};
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext, MetricsObserver};
///
/// struct Ping;
/// impl Job for Ping {
///     type Output = ();
/// }
/// struct Pong;
/// impl Executor<Ping> for Pong {
///     type Error = core::convert::Infallible;
///     async fn execute(&self, _: &Ping, _: JobContext) -> Result<(), Self::Error> {
///         Ok(())
///     }
/// }
///
/// let recorder = DebuggingRecorder::new();
/// let snapshot = recorder.snapshotter();
/// metrics::with_local_recorder(&recorder, || {
///     let rt = VirtualRuntime::new();
///     let dispatcher = Dispatcher::builder(rt.clone()).observer(MetricsObserver::new()).build();
///     dispatcher.register(Pong);
///     rt.block_on(dispatcher.dispatch(Ping)).unwrap();
/// });
/// let succeeded = snapshot.snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
///     (key.key().name() == "orchestrator_jobs_succeeded_total").then_some(value)
/// });
/// assert_eq!(succeeded, Some(DebugValue::Counter(1)));
/// ```
#[derive(Debug, Default)]
pub struct MetricsObserver {
    started: Mutex<HashMap<JobId, Instant>>,
}

impl MetricsObserver {
    /// Creates the observer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns how many jobs it keeps a start time for: the jobs in flight of the dispatchers
    /// it observes.
    pub fn tracked(&self) -> usize {
        self.starts().len()
    }

    fn starts(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Instant>> {
        self.started.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the job's duration, if it started.
    fn ended(&self, job: &JobInfo, outcome: &'static str) {
        let started = self.starts().remove(&job.id);
        if let Some(started) = started {
            histogram!(
                "orchestrator_job_duration_seconds",
                "job_type" => job.job_type.name(),
                "outcome" => outcome
            )
            .record(started.elapsed().as_secs_f64());
        }
    }
}

impl Observer for MetricsObserver {
    fn on_job_start(&self, job: &JobInfo) {
        counter!("orchestrator_jobs_dispatched_total", "job_type" => job.job_type.name())
            .increment(1);
        self.starts().insert(job.id, Instant::now());
    }

    fn on_job_success(&self, job: &JobInfo, data_source: DataSource) {
        let source = match data_source {
            DataSource::Cached => "cached",
            _ => "fresh",
        };
        counter!(
            "orchestrator_jobs_succeeded_total",
            "job_type" => job.job_type.name(),
            "data_source" => source
        )
        .increment(1);
        if data_source == DataSource::Cached {
            counter!("orchestrator_cache_hits_total", "job_type" => job.job_type.name())
                .increment(1);
        }
        self.ended(job, "succeeded");
    }

    fn on_job_error(&self, job: &JobInfo, error: &JobError) {
        let (name, outcome) = match error {
            JobError::Failed(_) => ("orchestrator_jobs_failed_total", "failed"),
            JobError::Cancelled { .. } => ("orchestrator_jobs_cancelled_total", "cancelled"),
            JobError::TimedOut { .. } => ("orchestrator_jobs_timed_out_total", "timed_out"),
            _ => ("orchestrator_jobs_rejected_total", "rejected"),
        };
        if outcome == "rejected" && !self.starts().contains_key(&job.id) {
            // Rejected before it started: dispatched all the same.
            counter!("orchestrator_jobs_dispatched_total", "job_type" => job.job_type.name())
                .increment(1);
        }
        counter!(name, "job_type" => job.job_type.name()).increment(1);
        self.ended(job, outcome);
    }

    fn on_job_retry(
        &self,
        job: &JobInfo,
        _attempt: u32,
        _delay: Duration,
        _error: &(dyn Error + 'static),
    ) {
        counter!("orchestrator_jobs_retried_total", "job_type" => job.job_type.name()).increment(1);
    }

    fn on_event_dropped(&self, dropped: &DroppedEvent<'_>) {
        let reason = match dropped.reason() {
            DropReason::TooDeep { .. } => "too_deep",
            _ => "rate_limited",
        };
        counter!(
            "orchestrator_events_dropped_total",
            "orchestrator" => dropped.orchestrator(),
            "reason" => reason
        )
        .increment(1);
    }

    fn on_event_undelivered(&self, _event: &Event) {
        counter!("orchestrator_events_undelivered_total").increment(1);
    }

    fn on_breaker_transition(&self, job_type: &'static str, state: BreakerState) {
        let state = match state {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        };
        counter!(
            "orchestrator_breaker_transitions_total",
            "job_type" => job_type,
            "state" => state
        )
        .increment(1);
    }
}
