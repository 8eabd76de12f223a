//! The ambient cause: what an orchestrator's handler produces carries the cause of the event it
//! handles, whichever way it is produced.
//!
//! With `std`, the handler running on a thread is recorded in a thread-local while it runs, so
//! that an event published or a job dispatched through anything (a kept bus or dispatcher
//! clone, another orchestrator's handle) gets that handler's cause. Without `std` there is no
//! thread-local state: only the handler's context carries a cause.

use super::Event;
use crate::cause::Cause;

/// An orchestrator handling an event: what the cause of everything it produces is built from,
/// only when something is produced (most handled events produce nothing).
///
/// Cloning one is a reference count (the event's).
/// Without `std` nothing reads it back: only the handler's context carries a cause.
#[derive(Clone)]
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) struct Reaction {
    orchestrator: &'static str,
    event: Event,
}

impl Reaction {
    /// Orchestrator `orchestrator` handling `event`.
    pub(crate) fn new(orchestrator: &'static str, event: &Event) -> Self {
        Self {
            orchestrator,
            event: event.clone(),
        }
    }

    /// The cause of what this reaction produces: one step deeper than the event.
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    pub(crate) fn cause(&self) -> Cause {
        Self::cause_of(self.orchestrator, &self.event)
    }

    /// The cause of what orchestrator `orchestrator` produces while it handles `event`.
    pub(crate) fn cause_of(orchestrator: &'static str, event: &Event) -> Cause {
        Cause::reaction(
            orchestrator,
            event.payload_type_name(),
            event.correlation_id(),
            event.job_type(),
            event.cause_ref(),
        )
    }
}

impl Cause {
    /// The cause of whatever is produced in the calling thread's running handler, if any
    /// (with `std`); the root cause otherwise.
    #[inline]
    pub(crate) fn ambient() -> Cause {
        current().unwrap_or(Cause::ROOT)
    }
}

#[cfg(feature = "std")]
pub(crate) use with_std::{current, enter};

#[cfg(not(feature = "std"))]
pub(crate) use without_std::{current, enter};

/// The handler running on this thread: what it produces carries its cause.
#[cfg(feature = "std")]
mod with_std {
    use core::cell::Cell;

    use super::{Cause, Reaction};
    use crate::cause::CauseStep;
    use crate::sync::{Arc, Ordering, StaticAtomicUsize};

    /// Kept small (32 bytes): it is moved in and out of the thread-local for every handled
    /// event.
    struct Current {
        reaction: Reaction,
        /// The step of the cause, once built (its depth is the event's plus one).
        step: Option<Arc<CauseStep>>,
    }

    std::thread_local! {
        static CURRENT: Cell<Option<Current>> = const { Cell::new(None) };
    }

    /// Handlers running now, on any thread: while there are none (most dispatches and
    /// publishes), nothing reads the thread-local state.
    static RUNNING: StaticAtomicUsize = StaticAtomicUsize::new(0);

    /// Marks `reaction` as the running handler's until the guard is dropped.
    #[inline]
    pub(crate) fn enter(reaction: Reaction) -> Guard {
        RUNNING.fetch_add(1, Ordering::Relaxed);
        let previous = CURRENT.with(|c| {
            c.replace(Some(Current {
                reaction,
                step: None,
            }))
        });
        Guard { previous }
    }

    /// Returns the running handler's cause (built on first use), if a handler runs.
    #[inline]
    pub(crate) fn current() -> Option<Cause> {
        if RUNNING.load(Ordering::Relaxed) == 0 {
            return None;
        }
        current_slow()
    }

    fn current_slow() -> Option<Cause> {
        CURRENT
            .try_with(|c| {
                // Taken out and put back: building the cause runs no code that reads it.
                let mut current = c.take()?;
                let cause = match &current.step {
                    Some(step) => Cause {
                        depth: current.reaction.event.causal_depth().saturating_add(1),
                        step: Some(step.clone()),
                    },
                    None => {
                        let cause = current.reaction.cause();
                        current.step.clone_from(&cause.step);
                        cause
                    }
                };
                c.set(Some(current));
                Some(cause)
            })
            .ok()
            .flatten()
    }

    /// Restores the previous handler's cause (handlers may nest through inline work).
    pub(crate) struct Guard {
        previous: Option<Current>,
    }

    impl Guard {
        /// Makes `reaction` the running handler's, in place of the one it was entered with
        /// (the next event of a batch): cheaper than leaving and entering again.
        #[inline]
        pub(crate) fn switch(&mut self, reaction: Reaction) {
            let replaced = CURRENT.try_with(|c| {
                c.replace(Some(Current {
                    reaction,
                    step: None,
                }))
            });
            drop(replaced); // the previous event's reaction, outside the thread-local access
        }
    }

    impl Drop for Guard {
        #[inline]
        fn drop(&mut self) {
            let previous = self.previous.take();
            let _ = CURRENT.try_with(|c| c.set(previous));
            RUNNING.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Without `std`: nothing is recorded.
#[cfg(not(feature = "std"))]
mod without_std {
    use super::{Cause, Reaction};

    pub(crate) struct Guard;

    impl Guard {
        pub(crate) fn switch(&mut self, _reaction: Reaction) {}
    }

    pub(crate) fn enter(_reaction: Reaction) -> Guard {
        Guard
    }

    pub(crate) fn current() -> Option<Cause> {
        None
    }
}
