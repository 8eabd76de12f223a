//! [`JobHandle`]: a dispatched job's outcome, id, progress and cancel; [`ProgressStream`].

use alloc::borrow::Cow;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use event_listener::EventListener;
use futures_core::{FusedFuture, Stream};

use crate::id::JobId;
use crate::outcome::{JobError, Success};
use crate::progress::Progress;
use crate::sync::Arc;

use super::control::JobControl;
use super::control::ProgressWatch;
use super::journal::Stored;
use super::shared::JobShared;

/// A dispatched job: a future of its outcome, its id, its progress, and a way to cancel it.
///
/// Awaiting the handle yields `Ok(Success { value, data_source })` or a [`JobError`]. Dropping the
/// handle does **not** cancel the job (fire-and-forget is the default); call
/// [`cancel`](Self::cancel) for that. The handle is a [`FusedFuture`]: once it has yielded its
/// outcome, `is_terminated` is `true` and further polls stay pending.
#[must_use = "a job runs without its handle, but its outcome is lost; `drop` the handle to let it run unobserved"]
pub struct JobHandle<T> {
    shared: Arc<JobShared<T>>,
    taken: bool,
}

impl<T: Send + 'static> JobHandle<T> {
    pub(crate) fn new(shared: Arc<JobShared<T>>) -> Self {
        Self {
            shared,
            taken: false,
        }
    }

    /// The job's state, shared with its task.
    pub(crate) fn shared(&self) -> &JobShared<T> {
        &self.shared
    }

    /// Returns the job's id (its correlation id).
    pub fn id(&self) -> JobId {
        self.shared.id
    }

    /// Cancels the job; its work is dropped and the handle resolves as cancelled.
    ///
    /// Does nothing if the job has already ended. Idempotent.
    pub fn cancel(&self) {
        self.shared.request_cancel(None);
    }

    /// Cancels the job with a reason that the outcome carries.
    pub fn cancel_with(&self, reason: impl Into<Cow<'static, str>>) {
        self.shared.request_cancel(Some(reason.into()));
    }

    /// Returns a future that resolves once this dispatch is durable: `Ok(())` once its
    /// job type's [`Journal`](crate::Journal) has stored it (at once for a job recovered from
    /// a store), an error if the write failed or if nothing was to be stored (a job type
    /// without a journal, a dispatch rejected, answered from the cache, or joined to another).
    ///
    /// It says nothing about the outcome: await the handle for that. A service that must
    /// not answer "accepted" before the job would survive a crash awaits this first.
    pub fn stored(&self) -> Stored {
        Stored {
            receipt: self.shared.receipt(),
            job_type: self.shared.info().job_type.name(),
        }
    }

    /// Returns `true` once the job has reached its outcome (whether or not it was awaited).
    pub fn is_finished(&self) -> bool {
        self.shared.is_finished()
    }

    /// Returns the latest progress report, if any.
    pub fn current_progress(&self) -> Option<Progress> {
        self.shared.current_progress()
    }

    /// Returns a stream of progress reports.
    ///
    /// It first yields the latest report (if any), then newer ones in order; reports
    /// overwritten before the stream looked are skipped. It ends when the job ends, after
    /// yielding the job's last report. Several streams may exist at once.
    pub fn progress(&self) -> ProgressStream {
        ProgressStream {
            job_id: self.shared.id,
            watch: JobControl::progress_watch(&*self.shared),
            seen: 0,
            listener: None,
            done: false,
        }
    }
}

impl<T> Future for JobHandle<T> {
    type Output = Result<Success<T>, JobError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.taken {
            return Poll::Pending;
        }
        let out = self.shared.poll_outcome(cx);
        if out.is_ready() {
            self.taken = true;
        }
        out
    }
}

impl<T> FusedFuture for JobHandle<T> {
    fn is_terminated(&self) -> bool {
        self.taken
    }
}

impl<T> Unpin for JobHandle<T> {}

impl<T> fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("id", &self.shared.id)
            .field("finished", &self.shared.is_finished())
            .finish()
    }
}

/// A stream of a job's progress reports; see [`JobHandle::progress`].
#[must_use = "streams do nothing unless polled"]
pub struct ProgressStream {
    job_id: JobId,
    watch: Arc<ProgressWatch>,
    seen: u64,
    listener: Option<EventListener>,
    done: bool,
}

impl Stream for ProgressStream {
    type Item = Progress;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Progress>> {
        if self.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        loop {
            match core::task::ready!(this.watch.poll_changed(
                &mut this.seen,
                &mut this.listener,
                cx
            )) {
                // The watch starts without a report: nothing to yield yet.
                Some(None) => continue,
                Some(Some(progress)) => return Poll::Ready(Some(progress)),
                None => {
                    this.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl fmt::Debug for ProgressStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProgressStream")
            .field("job_id", &self.job_id)
            .field("done", &self.done)
            .finish()
    }
}
