//! [`Dispatcher::register_journaled`]: job types whose dispatches, attempts and ends are
//! written to a [`Journal`] as they happen.

use crate::job::Job;
use crate::outcome::{JobError, Rejection};
use crate::runtime::{Runtime, Spawn, Task};
use crate::sync::Arc;
use crate::trace;

use super::context::JobContext;
use super::dispatcher::{Dispatcher, Full, Refused, StartFn};
use super::executor::{Executor, Threaded};
use super::journal::{Accepting, Ending, Journal, not_stored};
use super::options::JobOptions;
use super::pipeline::full_task;

impl<R: Runtime> Dispatcher<R> {
    /// Registers `executor` for job type `J` with `journal`: every dispatch of `J` is
    /// written to the journal before its handle is returned, each attempt's start before the
    /// attempt runs, and the job's end before its handle resolves (see [`Journal`]). Replaces
    /// any previous executor of `J`; returns `self` for chaining.
    ///
    /// A journal that refuses a dispatch rejects it ([`Rejection::NotStored`]).
    /// [`JobHandle::stored`](crate::JobHandle::stored) waits for a dispatch's write. Everything else (options, events,
    /// orchestrators) is as for [`register`](Self::register). A dispatch answered from the
    /// cache, or one that joins another ([`JobBuilder::dedup`](crate::JobBuilder::dedup)), runs
    /// nothing and is not written.
    ///
    /// The `orchestrator-durable` crate gives journals on durable stores.
    pub fn register_journaled<J: Job, E: Executor<J>>(
        &self,
        executor: E,
        journal: Arc<dyn Journal<J>>,
    ) -> &Self {
        let executor = Arc::new(Threaded(executor));
        let runtime = self.runtime.clone();
        let start: Arc<StartFn<J>> = Arc::new(move |job, shared, full: Option<Full<J>>| {
            let Full {
                options,
                cache,
                placeholder,
                dedup,
            } = full.unwrap_or(Full {
                options: JobOptions::new(),
                cache: None,
                placeholder: None,
                dedup: None,
            });
            let receipt = {
                let accepting = Accepting {
                    id: shared.id(),
                    options: &options,
                    metadata: shared.metadata_entries(),
                    placeholder: placeholder.as_ref(),
                    dedup: dedup.as_deref(),
                };
                journal.accept(&job, &accepting)
            }
            .map_err(|error| {
                Refused::Rejected(Rejection::NotStored {
                    job_type: core::any::type_name::<J>(),
                    reason: not_stored(&error),
                })
            })?;
            shared.set_receipt(receipt);
            let which = shared.which();
            let kept = shared.clone();
            let future = full_task(
                executor.clone(),
                job,
                shared,
                options,
                cache,
                Some(journal.clone()),
            );
            runtime
                .spawn(Task::new(trace::job(future, which)))
                .map_err(|refused| {
                    // Stored, but it will not run: its journal records the rejection as its
                    // outcome, so that it is not run again after a restart either.
                    let outcome = Err(JobError::Rejected(Rejection::Spawn(refused.kind())));
                    let cx = JobContext::new(kept, 0);
                    drop(journal.finish(cx.job_id(), Ending::Outcome(&outcome), &cx));
                    Refused::Spawn(refused)
                })
        });
        self.inner.insert::<J>(start, false);
        self
    }
}
