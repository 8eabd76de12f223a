//! A [`tower::Service`](tower_service::Service) as an [`orchestrator-core`](orchestrator_core)
//! executor: [`ServiceExecutor`]. The work of a job type becomes a service, so tower's
//! middleware (concurrency and rate limits, load shedding, your own layers) wraps it, while the
//! dispatcher keeps its timeouts, retries, cancellation, progress and events.
//!
//! Each attempt clones the service, waits until it is ready (`poll_ready`), and calls it with
//! a [`ServiceRequest`]: the job (cloned, since an attempt may be retried) and the attempt's
//! [`JobContext`]. A service that is not ready keeps the attempt waiting, and the attempt's
//! timeout and cancellation apply to that wait too.
//!
//! ```
//! use std::convert::Infallible;
//! use orchestrator_core::testing::VirtualRuntime;
//! use orchestrator_core::{Dispatch, Dispatcher, Job};
//! use orchestrator_tower::{ServiceExecutor, ServiceRequest};
//! use tower::ServiceBuilder;
//!
//! #[derive(Clone)]
//! struct Resize(u32);
//! impl Job for Resize {
//!     type Output = u32;
//! }
//!
//! let service = ServiceBuilder::new()
//!     .concurrency_limit(4) // tower middleware around the work
//!     .service_fn(|request: ServiceRequest<Resize>| async move {
//!         request.cx.report_progress(0.5);
//!         Ok::<_, Infallible>(request.job.0 / 2)
//!     });
//!
//! let rt = VirtualRuntime::new();
//! let dispatcher = Dispatcher::new(rt.clone());
//! dispatcher.register(ServiceExecutor::new(service));
//! assert_eq!(rt.block_on(dispatcher.dispatch(Resize(640))).unwrap().value, 320);
//! ```

#![forbid(unsafe_code)]

use core::future::{Future, poll_fn};
use core::marker::PhantomData;

use orchestrator_core::{Executor, Job, JobContext};
use tower_service::Service;

/// What a [`ServiceExecutor`]'s service is called with: the job and the attempt's context.
#[derive(Debug)]
#[non_exhaustive]
pub struct ServiceRequest<J> {
    /// The job (a clone: the dispatcher keeps the original for retries).
    pub job: J,
    /// The attempt's context: progress, events, cancellation, sleeping.
    pub cx: JobContext,
}

/// Runs job type `J` by calling a tower service with a [`ServiceRequest`]; register it like
/// any executor. See the [crate documentation](crate).
pub struct ServiceExecutor<S, J> {
    service: S,
    _job: PhantomData<fn(J)>,
}

impl<S, J> ServiceExecutor<S, J> {
    /// Wraps `service`.
    pub fn new(service: S) -> Self {
        Self {
            service,
            _job: PhantomData,
        }
    }

    /// Returns the service.
    pub fn service(&self) -> &S {
        &self.service
    }
}

impl<S: core::fmt::Debug, J> core::fmt::Debug for ServiceExecutor<S, J> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServiceExecutor")
            .field("service", &self.service)
            .finish()
    }
}

impl<S, J> Executor<J> for ServiceExecutor<S, J>
where
    J: Job + Clone + Sync,
    S: Service<ServiceRequest<J>, Response = J::Output> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: core::error::Error + Send + Sync + 'static,
{
    type Error = S::Error;

    fn execute(
        &self,
        job: &J,
        cx: JobContext,
    ) -> impl Future<Output = Result<J::Output, S::Error>> + Send {
        let mut service = self.service.clone();
        let request = ServiceRequest {
            job: job.clone(),
            cx,
        };
        async move {
            poll_fn(|task| service.poll_ready(task)).await?;
            service.call(request).await
        }
    }
}
