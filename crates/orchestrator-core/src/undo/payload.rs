//! An entry's typed content behind one object-safe trait: the recorded job, what its inverse
//! is computed from, and how both are dispatched.

use alloc::boxed::Box;
use core::any::Any;
use core::future::Future;
use core::pin::Pin;

use crate::dispatch::builder::Dispatch;
use crate::dispatch::dispatcher::Dispatcher;
use crate::dispatch::handle::JobHandle;
use crate::id::JobId;
use crate::outcome::JobError;

use super::Reversible;
use super::stack::Absorb;

/// The outcome of a dispatched inverse or redo: the job's output, boxed.
pub(super) type Outcome =
    Pin<Box<dyn Future<Output = Result<Box<dyn Any + Send>, JobError>> + Send>>;

/// A job dispatched for an entry: its id and its outcome. Dropping the outcome cancels the
/// job if it has not ended.
pub(super) struct InFlight {
    pub(super) job_id: JobId,
    pub(super) outcome: Outcome,
}

/// An entry's content, whatever its job type.
pub(super) trait Payload: Send {
    /// Computes the inverse (the user's `inverse`, called with no lock held) and dispatches it.
    fn undo(&self, dispatcher: &Dispatcher) -> InFlight;
    /// Dispatches the job again (a clone: a new job id, the same payload).
    fn redo(&self, dispatcher: &Dispatcher) -> InFlight;
    /// Takes the output of a successful redo: the next undo inverts that run.
    fn redone(&mut self, output: Box<dyn Any + Send>);
    /// Merges a later payload of the same job type (coalescing).
    fn absorb_boxed(&mut self, later: Box<dyn Payload>) -> Result<(), Box<dyn Payload>>;
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

/// A recorded job of type `J`.
pub(super) struct Record<J: Reversible> {
    /// The job a redo dispatches again: the latest of a coalesced entry.
    job: J,
    /// The job whose inverse an undo dispatches, when it is not `job`: the earliest of a
    /// coalesced entry (undoing goes back to before it). Cleared by a redo.
    first: Option<J>,
    /// The output of the job the inverse is computed from (`first`, else `job`).
    output: J::Output,
}

impl<J: Reversible> Record<J> {
    pub(super) fn new(job: J, output: J::Output) -> Self {
        Self {
            job,
            first: None,
            output,
        }
    }

    /// Returns the job and its output (the latest job's, for a record never merged).
    pub(super) fn into_parts(self) -> (J, J::Output) {
        (self.job, self.output)
    }
}

/// Awaits `handle`, cancelling its job if dropped before it ends.
fn outcome<T: Send + 'static>(handle: JobHandle<T>) -> InFlight {
    struct CancelOnDrop<T: Send + 'static>(JobHandle<T>);
    impl<T: Send + 'static> Drop for CancelOnDrop<T> {
        fn drop(&mut self) {
            if !self.0.is_finished() {
                self.0.cancel_with("the undo stack's operation was dropped");
            }
        }
    }
    let job_id = handle.id();
    let mut guard = CancelOnDrop(handle);
    InFlight {
        job_id,
        outcome: Box::pin(async move {
            let success = (&mut guard.0).await?;
            Ok(Box::new(success.value) as Box<dyn Any + Send>)
        }),
    }
}

impl<J: Reversible> Payload for Record<J> {
    fn undo(&self, dispatcher: &Dispatcher) -> InFlight {
        let inverse = self
            .first
            .as_ref()
            .unwrap_or(&self.job)
            .inverse(&self.output);
        outcome(dispatcher.dispatch(inverse))
    }

    fn redo(&self, dispatcher: &Dispatcher) -> InFlight {
        outcome(dispatcher.dispatch(self.job.clone()))
    }

    fn redone(&mut self, output: Box<dyn Any + Send>) {
        // The output is always a `J::Output`: it comes from `redo` above.
        if let Ok(output) = output.downcast::<J::Output>() {
            self.output = *output;
            self.first = None;
        }
    }

    fn absorb_boxed(&mut self, later: Box<dyn Payload>) -> Result<(), Box<dyn Payload>> {
        if !later.as_any().is::<Self>() {
            return Err(later);
        }
        match later.into_any().downcast::<Self>() {
            Ok(later) => {
                // Undo goes back to before the earliest job; redo dispatches the latest.
                let previous = core::mem::replace(&mut self.job, later.job);
                if self.first.is_none() {
                    self.first = Some(previous);
                }
                Ok(())
            }
            // Unreachable: the type was checked above.
            Err(_) => Ok(()),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

impl Absorb for Box<dyn Payload> {
    fn absorb(&mut self, later: Self) -> Result<(), Self> {
        self.absorb_boxed(later)
    }
}
