//! `tracing` spans and events (feature `tracing`); without the feature, every function here
//! is a no-op the compiler removes.
//!
//! One span per job, named `job`, made at dispatch (so its parent is the caller's current
//! span) and entered whenever the job's task is polled, so what an executor logs is inside it.
//! Its fields: `job.id`, `job.type`, `job.attempt` (recorded at each attempt), `job.outcome`
//! (`succeeded`, `failed`, `cancelled`, `timed_out`, `rejected`) and `job.data_source`
//! (`fresh`, `cached`), recorded when the job ends. Events (target `orchestrator`): a retry
//! (`warn`), a job's end other than success (`info` for cancelled and timed out, `warn` for
//! failed), an event a loop guard dropped (`warn`), a circuit-breaker transition (`warn`).

#[cfg(feature = "tracing")]
mod on {
    use core::error::Error;
    use core::future::Future;
    use core::time::Duration;

    use tracing::Instrument;
    use tracing::instrument::Instrumented;

    use crate::breaker::BreakerState;
    use crate::id::JobId;
    use crate::job::JobType;
    use crate::outcome::{DataSource, JobError, Success};

    /// The job's task, inside its span (`job` says which job: called only with the feature).
    pub(crate) fn job<F: Future>(
        future: F,
        job: impl FnOnce() -> (JobId, JobType),
    ) -> Instrumented<F> {
        let (id, job_type) = job();
        let span = tracing::info_span!(
            target: "orchestrator",
            "job",
            job.id = id.as_u64(),
            job.r#type = job_type.name(),
            job.attempt = tracing::field::Empty,
            job.outcome = tracing::field::Empty,
            job.data_source = tracing::field::Empty,
        );
        future.instrument(span)
    }

    /// Attempt `n` starts (in the job's span).
    pub(crate) fn attempt(n: u32) {
        tracing::Span::current().record("job.attempt", n);
    }

    /// The job ends with `outcome` (in its span).
    pub(crate) fn outcome<T>(outcome: &Result<Success<T>, JobError>) {
        let span = tracing::Span::current();
        match outcome {
            Ok(success) => {
                span.record("job.outcome", "succeeded");
                let source = match success.data_source {
                    DataSource::Cached => "cached",
                    _ => "fresh",
                };
                span.record("job.data_source", source);
            }
            Err(error) => {
                let label = match error {
                    JobError::Failed(_) => "failed",
                    JobError::Cancelled { .. } => "cancelled",
                    JobError::TimedOut { .. } => "timed_out",
                    _ => "rejected",
                };
                span.record("job.outcome", label);
                match error {
                    JobError::Failed(failure) => {
                        tracing::warn!(target: "orchestrator", error = %failure, "job failed");
                    }
                    other => tracing::info!(target: "orchestrator", outcome = %other, "job ended"),
                }
            }
        }
    }

    /// Attempt `attempt` failed; the next starts after `delay`.
    pub(crate) fn retry(attempt: u32, delay: Duration, error: &(dyn Error + 'static)) {
        tracing::warn!(
            target: "orchestrator",
            attempt,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %error,
            "job attempt failed, retrying"
        );
    }

    /// A loop guard kept an event from an orchestrator's handler.
    pub(crate) fn dropped(orchestrator: &'static str, payload: &'static str, depth: u32) {
        tracing::warn!(
            target: "orchestrator",
            orchestrator,
            payload,
            causal_depth = depth,
            "event dropped by the loop guard"
        );
    }

    /// A job type's circuit breaker changed state.
    pub(crate) fn breaker(job_type: &'static str, state: BreakerState) {
        tracing::warn!(target: "orchestrator", job_type, state = ?state, "circuit breaker");
    }

    /// An executor was offered to a closed dispatcher.
    pub(crate) fn registration_refused(job_type: &'static str) {
        tracing::warn!(
            target: "orchestrator",
            job_type,
            "executor not registered: the dispatcher is closed"
        );
    }
}

#[cfg(not(feature = "tracing"))]
mod on {
    use core::error::Error;
    use core::time::Duration;

    use crate::breaker::BreakerState;
    use crate::id::JobId;
    use crate::job::JobType;
    use crate::outcome::{JobError, Success};

    #[inline(always)]
    pub(crate) fn job<F>(future: F, _: impl FnOnce() -> (JobId, JobType)) -> F {
        future
    }

    #[inline(always)]
    pub(crate) fn attempt(_: u32) {}

    #[inline(always)]
    pub(crate) fn outcome<T>(_: &Result<Success<T>, JobError>) {}

    #[inline(always)]
    pub(crate) fn retry(_: u32, _: Duration, _: &(dyn Error + 'static)) {}

    #[inline(always)]
    pub(crate) fn dropped(_: &'static str, _: &'static str, _: u32) {}

    #[inline(always)]
    pub(crate) fn breaker(_: &'static str, _: BreakerState) {}

    #[inline(always)]
    pub(crate) fn registration_refused(_: &'static str) {}
}

pub(crate) use on::{attempt, breaker, dropped, job, outcome, registration_refused, retry};
