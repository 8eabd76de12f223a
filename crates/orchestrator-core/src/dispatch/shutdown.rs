//! [`Shutdown`]: the future of a dispatcher's graceful shutdown, and its report.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use event_listener::EventListener;

use crate::runtime::Sleep;
use crate::sync::{Arc, poll_notified};

use super::env::JobEnv;

/// What [`Dispatcher::shutdown`](crate::Dispatcher::shutdown) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Jobs still running at the end of the grace period, which were cancelled.
    pub cancelled: usize,
}

/// The future returned by [`Dispatcher::shutdown`](crate::Dispatcher::shutdown).
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct Shutdown {
    env: Arc<JobEnv>,
    /// The grace period, until it has run out.
    grace: Option<Sleep>,
    listener: Option<EventListener>,
    cancelled: usize,
}

impl Shutdown {
    /// Waits up to `grace` for the jobs of `env` to end, then cancels the rest.
    pub(super) fn new(env: Arc<JobEnv>, grace: Sleep) -> Self {
        Self {
            env,
            grace: Some(grace),
            listener: None,
            cancelled: 0,
        }
    }
}

impl Future for Shutdown {
    type Output = ShutdownReport;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ShutdownReport> {
        let this = &mut *self;
        loop {
            let env = &this.env;
            if poll_notified(env.jobs.drained(), &mut this.listener, cx, || {
                (env.in_flight() == 0).then_some(())
            })
            .is_ready()
            {
                return Poll::Ready(ShutdownReport {
                    cancelled: this.cancelled,
                });
            }
            let Some(grace) = this.grace.as_mut() else {
                return Poll::Pending;
            };
            if Pin::new(grace).poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.grace = None;
            this.cancelled = env.jobs.cancel_all();
        }
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("in_flight", &self.env.in_flight())
            .field("grace_over", &self.grace.is_none())
            .finish()
    }
}
