//! Undo and redo of reversible jobs: the [`UndoStack`] and the [`Reversible`] trait; the
//! stack's docs are the guide.

mod builder;
mod error;
mod payload;
mod stack;
mod view;

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::dispatch::builder::Dispatch;
use crate::dispatch::dispatcher::Dispatcher;
use crate::event::Event;
use crate::job::{Job, JobType};
use crate::runtime::Runtime;
use crate::sync::{Arc, Mutex};
use crate::watch::{StateStream, Watch};

pub use error::{
    EntryFailure, FailureReason, InvalidHistoryLimit, RecordError, RedoError, RunError, UndoError,
    UndoStrategy, UndoToError, UndoToReport,
};
pub use view::{
    EntryId, EntryState, History, HistoryAction, HistoryEntry, HistoryStep, HookDecision,
};

pub use builder::UndoStackBuilder;

use builder::Hooks;
use payload::{Payload, Record};
use stack::{NewEntry, Stack};

/// How many entries an [`UndoStack`] keeps unless told otherwise.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

/// A job whose effect can be undone by another job, made from the job and its output.
///
/// `Clone` because a redo dispatches the job again: a clone, with a new job id.
/// [`inverse`](Self::inverse) must be a pure function of the job and its output; it is called
/// when the entry is undone, not when it is recorded.
///
/// ```
/// use orchestrator_core::{Job, Reversible};
///
/// /// Sets the volume; its output is the volume before.
/// #[derive(Clone)]
/// struct SetVolume(u8);
/// impl Job for SetVolume {
///     type Output = u8;
/// }
/// impl Reversible for SetVolume {
///     type Inverse = SetVolume;
///     fn inverse(&self, before: &u8) -> SetVolume {
///         SetVolume(*before)
///     }
///     fn coalesce_key(&self) -> Option<u64> {
///         Some(0) // a slider's steps merge into one entry
///     }
/// }
/// assert_eq!(SetVolume(7).inverse(&3).0, 3);
/// ```
pub trait Reversible: Job + Clone {
    /// The job that undoes this one.
    type Inverse: Job;

    /// Makes the job that undoes this completed job, from the output it produced.
    fn inverse(&self, output: &Self::Output) -> Self::Inverse;

    /// Returns the key under which this job may be merged with the previous entry when the
    /// stack coalesces (see [Coalescing](UndoStack#coalescing)); `None` (the default) never merges.
    ///
    /// Give a key only to jobs that set a value: a merged entry undoes with its first job's
    /// inverse and redoes with its last job. Jobs with different keys (two different fields)
    /// never merge.
    fn coalesce_key(&self) -> Option<u64> {
        None
    }
}

/// A history of completed reversible jobs, and the cursor that undo and redo move: undo
/// dispatches the inverse of a completed job, redo dispatches the job again.
///
/// Cheap to clone: clones share the history. The stack dispatches on the dispatcher it was
/// built with and publishes its [`HistoryStep`]s on that dispatcher's bus.
///
/// A job type is [`Reversible`] when the inverse of a completed job can be made from the job
/// and its output (an added cart line is removed by its line id; a deleted text range is
/// inserted again from the text the deletion returned). An [`UndoStack`] records completed
/// reversible jobs, each with a description and a source, and moves a cursor through them:
///
/// - [`undo`](UndoStack::undo) dispatches the inverse of the newest done entry through the
///   dispatcher and, once it succeeded, marks the entry undone;
/// - [`redo`](UndoStack::redo) dispatches the oldest undone entry's job again (a clone: a new
///   job id, the same payload) and, once it succeeded, marks it done; the next undo inverts
///   that new run's output;
/// - [`undo_to`](UndoStack::undo_to) undoes entries down to a position, with an
///   [`UndoStrategy`] for an entry that cannot be undone.
///
/// ```
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatcher, Executor, Job, JobContext, Reversible, UndoStack};
/// use std::sync::{Arc, Mutex};
///
/// /// Appends text to a document; its output is where the text starts.
/// #[derive(Clone)]
/// struct Append(String);
/// impl Job for Append {
///     type Output = usize;
/// }
/// /// Cuts the document at a length.
/// struct Truncate(usize);
/// impl Job for Truncate {
///     type Output = ();
/// }
/// impl Reversible for Append {
///     type Inverse = Truncate;
///     fn inverse(&self, start: &usize) -> Truncate {
///         Truncate(*start)
///     }
/// }
///
/// #[derive(Clone, Default)]
/// struct Doc(Arc<Mutex<String>>);
/// impl Executor<Append> for Doc {
///     type Error = core::convert::Infallible;
///     async fn execute(&self, job: &Append, _: JobContext) -> Result<usize, Self::Error> {
///         let mut text = self.0.lock().unwrap();
///         let start = text.len();
///         text.push_str(&job.0);
///         Ok(start)
///     }
/// }
/// impl Executor<Truncate> for Doc {
///     type Error = core::convert::Infallible;
///     async fn execute(&self, job: &Truncate, _: JobContext) -> Result<(), Self::Error> {
///         self.0.lock().unwrap().truncate(job.0);
///         Ok(())
///     }
/// }
///
/// let rt = VirtualRuntime::new();
/// let dispatcher = Dispatcher::new(rt.clone());
/// let doc = Doc::default();
/// dispatcher.register::<Append, _>(doc.clone());
/// dispatcher.register::<Truncate, _>(doc.clone());
/// let stack = UndoStack::new(&dispatcher);
///
/// rt.block_on(async {
///     stack.run(Append("hello".into()), "type `hello`", "keyboard").await.unwrap();
///     stack.run(Append(" world".into()), "type ` world`", "keyboard").await.unwrap();
///     assert_eq!(*doc.0.lock().unwrap(), "hello world");
///
///     let step = stack.undo().await.unwrap();
///     assert_eq!(step.entry.description, "type ` world`");
///     assert_eq!(*doc.0.lock().unwrap(), "hello");
///
///     stack.redo().await.unwrap();
///     assert_eq!(*doc.0.lock().unwrap(), "hello world");
///     assert!(stack.redo().await.unwrap_err().is_nothing_to_redo());
/// });
/// assert_eq!(stack.history().position, 2);
/// ```
///
/// ## A new record discards the redo branch
///
/// Recording a job after some undos discards the undone entries (they are counted in
/// [`History::truncated`]): redo then has nothing to redo, as in every editor. Keeping them
/// and reviving them later would let an entry be undone (or redone) twice for one change.
///
/// ## One operation at a time
///
/// An undo, a redo or an `undo_to` holds the stack until it ends. Another one started
/// meanwhile fails at once with a busy error (nothing waits in a queue: a second Ctrl+Z aimed
/// at what the screen showed must not run against a history that changed under it), and so
/// does a [`record`](UndoStack::record) (the error gives the job and its output back).
/// [`History::busy`] tells a UI to disable its buttons meanwhile.
///
/// ## Failures
///
/// Nothing here panics on bad input; every refusal is an error value, and the history is
/// consistent after each one:
///
/// - nothing to undo or redo: [`UndoError::NothingToUndo`], [`RedoError::NothingToRedo`];
/// - a before-hook vetoes: nothing is dispatched, the history is unchanged, and the error
///   [`is_vetoed`](UndoError::is_vetoed) with the hook's reason;
/// - the inverse (or the job again) does not succeed: the entry stays where it was, and the
///   error names the entry and carries the [`JobError`](crate::JobError) as its source:
///   ``undo of entry 3 (`add milk`) failed``, or with `{:#}`,
///   ``undo of entry 3 (`add milk`) failed: job failed after 1 attempt: out of stock``;
/// - a history limit of 0: [`UndoStackBuilder::build`] returns [`InvalidHistoryLimit`].
///
/// ## Coalescing
///
/// With a window ([`UndoStackBuilder::coalesce_window`]), a job recorded no longer than the
/// window after the previous record (on the dispatcher's clock) merges into that entry when
/// both have the same job type, the same source and the same
/// [`coalesce_key`](Reversible::coalesce_key) (which is `None`, never merging, unless the job
/// type says otherwise), and no undo or redo came in between. Each merge restarts the window.
/// The merged entry undoes to the state from before its **first** job (it keeps the first
/// job's inverse) and redoes by dispatching its **last** job again: right for jobs that set a
/// value (a volume, a title, a position), which is what a key should be given for. Jobs that
/// add to what is there (append a character) keep `None` and stay separate entries.
///
/// ## Limit
///
/// The history keeps at most [`limit`](UndoStackBuilder::limit) entries
/// ([`DEFAULT_HISTORY_LIMIT`] by default); a record past it drops the oldest entry, counted
/// in [`History::dropped`].
///
/// ## Observing
///
/// - Each successful undo or redo publishes a [`HistoryStep`] on the dispatcher's bus, after
///   the history changed (an event the bus refuses, once it is closed, is counted in
///   [`History::undelivered_events`]).
/// - [`history`](UndoStack::history) is a snapshot of the entries, their state and the
///   cursor; [`states`](UndoStack::states) is a stream of those snapshots, the current one
///   first, then one per change, for a UI to re-render.
/// - Hooks run before and after each undo and redo ([`UndoStackBuilder::before_undo`] and
///   the others), in the task that runs the operation, with no lock held.
///
/// ## Cancel safety
///
/// Dropping an undo, redo or `undo_to` future before it ends cancels the job it waits for
/// (see [`JobHandle::cancel`](crate::JobHandle::cancel)), keeps the entry where it was and
/// frees the stack. An executor that already made its change before the cancellation reached
/// it leaves the change in place while the history says it was not made: do not drop these
/// futures when that matters.

#[derive(Clone)]
pub struct UndoStack {
    inner: Arc<Inner>,
}

struct Inner {
    dispatcher: Dispatcher,
    state: Mutex<Stack<Box<dyn Payload>>>,
    /// The history's view, updated under `state`'s lock after each change.
    watch: Arc<Watch<History>>,
    hooks: Hooks,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.watch.close();
    }
}

impl Inner {
    /// Runs `f` on the history and publishes the new view if it returns `Some`.
    fn update<R>(&self, f: impl FnOnce(&mut Stack<Box<dyn Payload>>) -> Option<R>) -> Option<R> {
        self.state.with(|s| {
            let out = f(s)?;
            let view = s.view();
            self.watch.update(|h| *h = view);
            Some(out)
        })
    }

    /// Starts an operation, unless one runs or `check` refuses.
    fn begin<E>(
        &self,
        action: HistoryAction,
        busy: E,
        check: impl FnOnce(&Stack<Box<dyn Payload>>) -> Result<(), E>,
    ) -> Result<Operation<'_>, E> {
        let started = self.state.with(|s| {
            if s.is_busy() {
                return Err(busy);
            }
            check(s)?;
            s.begin(action);
            let view = s.view();
            self.watch.update(|h| *h = view);
            Ok(())
        });
        started.map(|()| Operation {
            inner: self,
            held: None,
        })
    }

    /// Publishes `step` on the bus and runs the after-hooks.
    fn applied(&self, step: &HistoryStep) {
        let now = self.dispatcher.runtime().now();
        if self
            .dispatcher
            .bus()
            .publish(Event::at(step.clone(), now))
            .is_err()
        {
            self.update(|s| {
                s.undelivered();
                Some(())
            });
        }
        for hook in self.hooks.after(step.action) {
            hook(step);
        }
    }
}

/// Why one step of an operation did not happen.
enum StepError {
    /// The entry was not there to take (cannot happen while the operation holds the stack).
    Missing,
    Entry(Box<EntryFailure>),
}

/// A running undo, redo or `undo_to`: holds the stack (invariant 3 of `stack`) and the
/// payload it works on, and gives both back however it ends.
struct Operation<'a> {
    inner: &'a Inner,
    held: Option<(usize, Box<dyn Payload>)>,
}

impl Drop for Operation<'_> {
    fn drop(&mut self) {
        let held = self.held.take();
        self.inner.update(|s| {
            if let Some((index, payload)) = held {
                s.put(index, payload);
            }
            s.end();
            Some(())
        });
    }
}

impl Operation<'_> {
    fn position(&self) -> usize {
        self.inner.state.with(|s| s.position())
    }

    fn put_back(&mut self) {
        if let Some((index, payload)) = self.held.take() {
            self.inner.state.with(|s| s.put(index, payload));
        }
    }

    /// Undoes entry `index` (the newest done entry, or one below skipped entries), asking the
    /// before-undo hooks first.
    async fn undo(&mut self, index: usize) -> Result<HistoryStep, StepError> {
        let action = HistoryAction::Undo;
        let entry = self.take(index)?;
        self.ask_hooks(action, &entry)?;
        let Some((_, payload)) = &self.held else {
            return Err(StepError::Missing);
        };
        let in_flight = payload.undo(&self.inner.dispatcher);
        if let Err(error) = in_flight.outcome.await {
            return Err(self.failed(action, entry, error));
        }
        let held = self.held.take();
        let step = self.inner.update(|s| {
            if let Some((index, payload)) = held {
                s.put(index, payload);
            }
            let entry = s.undone(index)?;
            Some(HistoryStep {
                action,
                entry,
                job_id: in_flight.job_id,
                position: s.position(),
            })
        });
        let step = step.ok_or(StepError::Missing)?;
        self.inner.applied(&step);
        Ok(step)
    }

    /// Redoes the entry at the cursor; a rollback's re-apply does not ask the hooks (it
    /// restores what the call undid).
    async fn redo(&mut self, ask_hooks: bool) -> Result<HistoryStep, StepError> {
        let action = HistoryAction::Redo;
        let entry = self.take(self.position())?;
        if ask_hooks {
            self.ask_hooks(action, &entry)?;
        }
        let Some((_, payload)) = &self.held else {
            return Err(StepError::Missing);
        };
        let in_flight = payload.redo(&self.inner.dispatcher);
        let output = match in_flight.outcome.await {
            Ok(output) => output,
            Err(error) => return Err(self.failed(action, entry, error)),
        };
        let mut held = self.held.take();
        if let Some((_, payload)) = &mut held {
            payload.redone(output);
        }
        let step = self.inner.update(|s| {
            if let Some((index, payload)) = held {
                s.put(index, payload);
            }
            let entry = s.redone()?;
            Some(HistoryStep {
                action,
                entry,
                job_id: in_flight.job_id,
                position: s.position(),
            })
        });
        let step = step.ok_or(StepError::Missing)?;
        self.inner.applied(&step);
        Ok(step)
    }

    fn take(&mut self, index: usize) -> Result<HistoryEntry, StepError> {
        let (payload, entry) = self
            .inner
            .state
            .with(|s| s.take(index))
            .ok_or(StepError::Missing)?;
        self.held = Some((index, payload));
        Ok(entry)
    }

    fn ask_hooks(&mut self, action: HistoryAction, entry: &HistoryEntry) -> Result<(), StepError> {
        for hook in self.inner.hooks.before(action) {
            if let HookDecision::Veto(reason) = hook(entry) {
                self.put_back();
                return Err(StepError::Entry(Box::new(EntryFailure {
                    action,
                    entry: entry.clone(),
                    reason: FailureReason::Vetoed(reason),
                })));
            }
        }
        Ok(())
    }

    fn failed(
        &mut self,
        action: HistoryAction,
        entry: HistoryEntry,
        error: crate::outcome::JobError,
    ) -> StepError {
        self.put_back();
        StepError::Entry(Box::new(EntryFailure {
            action,
            entry,
            reason: FailureReason::Job(error),
        }))
    }
}

impl UndoStack {
    /// Creates an empty history on `dispatcher`, keeping [`DEFAULT_HISTORY_LIMIT`] entries,
    /// with no coalescing and no hooks.
    ///
    /// ```
    /// use orchestrator_core::testing::VirtualRuntime;
    /// use orchestrator_core::{DEFAULT_HISTORY_LIMIT, Dispatcher, UndoStack};
    ///
    /// let stack = UndoStack::new(&Dispatcher::new(VirtualRuntime::new()));
    /// assert_eq!(stack.history().limit, DEFAULT_HISTORY_LIMIT);
    /// ```
    pub fn new<R: Runtime>(dispatcher: &Dispatcher<R>) -> Self {
        Self::from_builder(Self::builder(dispatcher))
    }

    /// Starts an undo stack with options: its limit, coalescing and hooks.
    ///
    /// ```
    /// use orchestrator_core::testing::VirtualRuntime;
    /// use orchestrator_core::{Dispatcher, UndoStack};
    ///
    /// let dispatcher = Dispatcher::new(VirtualRuntime::new());
    /// let stack = UndoStack::builder(&dispatcher).limit(20).build().unwrap();
    /// assert_eq!(stack.history().limit, 20);
    /// assert!(UndoStack::builder(&dispatcher).limit(0).build().is_err());
    /// ```
    pub fn builder<R: Runtime>(dispatcher: &Dispatcher<R>) -> UndoStackBuilder {
        UndoStackBuilder {
            dispatcher: dispatcher.erase(),
            limit: DEFAULT_HISTORY_LIMIT,
            window: None,
            hooks: Hooks::default(),
        }
    }

    fn from_builder(builder: UndoStackBuilder) -> Self {
        let stack = Stack::new(builder.limit, builder.window);
        let view = stack.view();
        Self {
            inner: Arc::new(Inner {
                dispatcher: builder.dispatcher,
                state: Mutex::new(stack),
                watch: Arc::new(Watch::new(view)),
                hooks: builder.hooks,
            }),
        }
    }

    /// Records a completed job and its output as the newest done entry, and returns the
    /// entry's id (an existing entry's if the job was merged into it; see
    /// [Coalescing](UndoStack#coalescing)).
    ///
    /// Undone entries are discarded first (see
    /// [the redo branch](UndoStack#a-new-record-discards-the-redo-branch)); past the limit the
    /// oldest entry is dropped.
    ///
    /// # Errors
    ///
    /// While an undo or redo runs, nothing is recorded: the [`RecordError`] gives the job and
    /// its output back.
    ///
    /// ```
    /// # use orchestrator_core::testing::VirtualRuntime;
    /// # use orchestrator_core::{Dispatcher, Job, Reversible, UndoStack};
    /// #[derive(Clone)]
    /// struct Rename(String);
    /// impl Job for Rename {
    ///     type Output = String; // the old name
    /// }
    /// impl Reversible for Rename {
    ///     type Inverse = Rename;
    ///     fn inverse(&self, old: &String) -> Rename {
    ///         Rename(old.clone())
    ///     }
    /// }
    ///
    /// let stack = UndoStack::new(&Dispatcher::new(VirtualRuntime::new()));
    /// let id = stack.record(Rename("b".into()), "a".into(), "rename to b", "menu").unwrap();
    /// let history = stack.history();
    /// assert_eq!(history.next_undo().unwrap().id, id);
    /// assert_eq!(history.next_undo().unwrap().source, "menu");
    /// ```
    pub fn record<J: Reversible>(
        &self,
        job: J,
        output: J::Output,
        description: impl Into<Cow<'static, str>>,
        source: impl Into<Cow<'static, str>>,
    ) -> Result<EntryId, RecordError<J>> {
        let key = job.coalesce_key();
        let now = self.inner.dispatcher.runtime().now();
        let (description, source) = (description.into(), source.into());
        let mut record = Some(Record::new(job, output));
        let recorded = self.inner.update(|s| {
            if s.is_busy() {
                return None;
            }
            let payload: Box<dyn Payload> = Box::new(record.take()?);
            let new = NewEntry {
                description,
                source,
                job_type: JobType::of::<J>(),
                key,
                payload,
            };
            Some(s.record(new, now))
        });
        match (recorded, record) {
            (Some(recorded), _) => Ok(recorded.id),
            (None, Some(record)) => {
                let (job, output) = record.into_parts();
                Err(RecordError::new(job, output))
            }
            // Unreachable: the record is only taken when it is recorded.
            (None, None) => Ok(EntryId::new(0)),
        }
    }

    /// Dispatches `job` and, once it succeeded, records it; returns its output.
    ///
    /// ```
    /// # use orchestrator_core::testing::VirtualRuntime;
    /// # use orchestrator_core::{Dispatcher, Executor, Job, JobContext, Reversible, UndoStack};
    /// #[derive(Clone)]
    /// struct Toggle;
    /// impl Job for Toggle {
    ///     type Output = bool;
    /// }
    /// impl Reversible for Toggle {
    ///     type Inverse = Toggle;
    ///     fn inverse(&self, _: &bool) -> Toggle {
    ///         Toggle
    ///     }
    /// }
    /// struct Switch;
    /// impl Executor<Toggle> for Switch {
    ///     type Error = core::convert::Infallible;
    ///     async fn execute(&self, _: &Toggle, _: JobContext) -> Result<bool, Self::Error> {
    ///         Ok(true)
    ///     }
    /// }
    ///
    /// let rt = VirtualRuntime::new();
    /// let dispatcher = Dispatcher::new(rt.clone());
    /// dispatcher.register(Switch);
    /// let stack = UndoStack::new(&dispatcher);
    /// assert!(rt.block_on(stack.run(Toggle, "toggle", "keyboard")).unwrap());
    /// assert!(stack.history().can_undo());
    /// ```
    ///
    /// # Errors
    ///
    /// [`RunError::Busy`] (nothing dispatched) if an undo or redo runs; [`RunError::Job`]
    /// (nothing recorded) if the job does not succeed; [`RunError::NotRecorded`] if it
    /// succeeded but an undo or redo started meanwhile.
    ///
    /// # Cancel safety
    ///
    /// Dropped before the job ends, nothing is recorded and the job runs on (dropping a
    /// [`JobHandle`](crate::JobHandle) does not cancel it).
    pub async fn run<J: Reversible>(
        &self,
        job: J,
        description: impl Into<Cow<'static, str>>,
        source: impl Into<Cow<'static, str>>,
    ) -> Result<J::Output, RunError<J>>
    where
        J::Output: Clone,
    {
        if self.inner.state.with(|s| s.is_busy()) {
            return Err(RunError::Busy);
        }
        let output = match self.inner.dispatcher.dispatch(job.clone()).await {
            Ok(success) => success.value,
            Err(error) => return Err(RunError::Job(error)),
        };
        match self.record(job, output.clone(), description, source) {
            Ok(_) => Ok(output),
            Err(error) => Err(RunError::NotRecorded(error)),
        }
    }

    /// Undoes the newest done entry: asks the before-undo hooks, dispatches the entry's
    /// inverse and, once it succeeded, marks the entry undone, publishes a [`HistoryStep`]
    /// and runs the after-undo hooks.
    ///
    /// # Errors
    ///
    /// [`UndoError::NothingToUndo`], [`UndoError::Busy`], or [`UndoError::Entry`] when a hook
    /// vetoed or the inverse did not succeed. In each case the history is as before.
    ///
    /// # Cancel safety
    ///
    /// See [Cancel safety](UndoStack#cancel-safety): dropped, the inverse is cancelled and the
    /// entry stays done.
    ///
    /// ```
    /// use orchestrator_core::testing::VirtualRuntime;
    /// use orchestrator_core::{Dispatcher, UndoStack};
    ///
    /// let rt = VirtualRuntime::new();
    /// let stack = UndoStack::new(&Dispatcher::new(rt.clone()));
    /// assert!(rt.block_on(stack.undo()).unwrap_err().is_nothing_to_undo());
    /// ```
    pub async fn undo(&self) -> Result<HistoryStep, UndoError> {
        let mut op = self
            .inner
            .begin(HistoryAction::Undo, UndoError::Busy, |s| {
                match s.position() {
                    0 => Err(UndoError::NothingToUndo),
                    _ => Ok(()),
                }
            })?;
        let index = op.position().saturating_sub(1);
        op.undo(index).await.map_err(|e| match e {
            StepError::Missing => UndoError::Busy,
            StepError::Entry(failure) => UndoError::Entry(failure),
        })
    }

    /// Redoes the oldest undone entry: asks the before-redo hooks, dispatches the entry's job
    /// again (a clone, with a new job id) and, once it succeeded, marks the entry done (the
    /// next undo inverts this run's output), publishes a [`HistoryStep`] and runs the
    /// after-redo hooks.
    ///
    /// # Errors
    ///
    /// [`RedoError::NothingToRedo`] (also right after a record, which discards undone
    /// entries), [`RedoError::Busy`], or [`RedoError::Entry`] when a hook vetoed or the job
    /// did not succeed. In each case the history is as before.
    ///
    /// # Cancel safety
    ///
    /// See [Cancel safety](UndoStack#cancel-safety): dropped, the job is cancelled and the entry
    /// stays undone.
    ///
    /// ```
    /// use orchestrator_core::testing::VirtualRuntime;
    /// use orchestrator_core::{Dispatcher, UndoStack};
    ///
    /// let rt = VirtualRuntime::new();
    /// let stack = UndoStack::new(&Dispatcher::new(rt.clone()));
    /// assert!(rt.block_on(stack.redo()).unwrap_err().is_nothing_to_redo());
    /// ```
    pub async fn redo(&self) -> Result<HistoryStep, RedoError> {
        let mut op = self
            .inner
            .begin(HistoryAction::Redo, RedoError::Busy, |s| {
                match s.position() < s.len() {
                    true => Ok(()),
                    false => Err(RedoError::NothingToRedo),
                }
            })?;
        op.redo(true).await.map_err(|e| match e {
            StepError::Missing => RedoError::Busy,
            StepError::Entry(failure) => RedoError::Entry(failure),
        })
    }

    /// Undoes every done entry above `position` (so that `position` entries stay done),
    /// newest first, one at a time, each as [`undo`](Self::undo) does (hooks, events);
    /// `strategy` says what happens when one cannot be undone.
    ///
    /// A `position` equal to the cursor undoes nothing and succeeds.
    ///
    /// # Errors
    ///
    /// [`UndoToError::Busy`] and [`UndoToError::AheadOfCursor`] before anything is done;
    /// [`UndoToError::Failed`] with the [`UndoToReport`] if any entry could not be undone.
    ///
    /// # Cancel safety
    ///
    /// As [`undo`](Self::undo): the entries undone before the drop stay undone.
    ///
    /// ```
    /// use orchestrator_core::testing::VirtualRuntime;
    /// use orchestrator_core::{Dispatcher, UndoStack, UndoStrategy};
    ///
    /// let rt = VirtualRuntime::new();
    /// let stack = UndoStack::new(&Dispatcher::new(rt.clone()));
    /// let report = rt.block_on(stack.undo_to(0, UndoStrategy::RollBack)).unwrap();
    /// assert!(report.is_complete() && report.undone.is_empty());
    /// let err = rt.block_on(stack.undo_to(1, UndoStrategy::SkipFailed)).unwrap_err();
    /// assert_eq!(err.to_string(), "cannot undo to position 1: the cursor is at 0");
    /// ```
    pub async fn undo_to(
        &self,
        position: usize,
        strategy: UndoStrategy,
    ) -> Result<UndoToReport, UndoToError> {
        let mut op = self
            .inner
            .begin(HistoryAction::Undo, UndoToError::Busy, |s| {
                match position <= s.position() {
                    true => Ok(()),
                    false => Err(UndoToError::AheadOfCursor {
                        target: position,
                        position: s.position(),
                    }),
                }
            })?;
        let mut report = UndoToReport {
            target: position,
            position: op.position(),
            undone: Vec::new(),
            failures: Vec::new(),
            reapplied: Vec::new(),
            reapply_failure: None,
        };
        // The newest entries that stayed done (SkipFailed) sit right below the cursor.
        let mut skipped = 0;
        while op.position() - skipped > position {
            let index = op.position() - skipped - 1;
            let failure = match op.undo(index).await {
                Ok(step) => {
                    report.undone.push(step);
                    continue;
                }
                Err(StepError::Missing) => return Err(UndoToError::Busy),
                Err(StepError::Entry(failure)) => failure,
            };
            report.failures.push(*failure);
            match strategy {
                UndoStrategy::StopAtFirstError => break,
                UndoStrategy::SkipFailed => skipped += 1,
                UndoStrategy::RollBack => {
                    for _ in 0..report.undone.len() {
                        match op.redo(false).await {
                            Ok(step) => report.reapplied.push(step),
                            Err(StepError::Missing) => break,
                            Err(StepError::Entry(failure)) => {
                                report.reapply_failure = Some(*failure);
                                break;
                            }
                        }
                    }
                    break;
                }
            }
        }
        report.position = op.position();
        match report.failures.is_empty() {
            true => Ok(report),
            false => Err(UndoToError::Failed(Box::new(report))),
        }
    }

    /// Returns a snapshot of the history: entries, their state, the cursor, the counters.
    ///
    /// ```
    /// use orchestrator_core::testing::VirtualRuntime;
    /// use orchestrator_core::{Dispatcher, UndoStack};
    ///
    /// let history = UndoStack::new(&Dispatcher::new(VirtualRuntime::new())).history();
    /// assert_eq!((history.dropped, history.truncated), (0, 0));
    /// ```
    pub fn history(&self) -> History {
        self.inner.watch.get()
    }

    /// Returns a stream of the history's snapshots: the current one first, then the latest
    /// after each change (a slow reader skips snapshots replaced before it looked). It ends
    /// when every clone of the stack is dropped.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use orchestrator_core::testing::VirtualRuntime;
    /// use orchestrator_core::{Dispatcher, UndoStack};
    ///
    /// let rt = VirtualRuntime::new();
    /// let stack = UndoStack::new(&Dispatcher::new(rt.clone()));
    /// let mut states = stack.states();
    /// assert_eq!(rt.block_on(states.next()).unwrap().position, 0);
    /// drop(stack);
    /// assert!(rt.block_on(states.next()).is_none());
    /// ```
    pub fn states(&self) -> StateStream<History> {
        StateStream::new(self.inner.watch.clone())
    }

    /// Returns `true` if an entry is done (nothing guarantees it still is when an undo
    /// starts).
    ///
    /// ```
    /// use orchestrator_core::testing::VirtualRuntime;
    /// use orchestrator_core::{Dispatcher, UndoStack};
    ///
    /// let stack = UndoStack::new(&Dispatcher::new(VirtualRuntime::new()));
    /// assert!(!stack.can_undo() && !stack.can_redo());
    /// ```
    pub fn can_undo(&self) -> bool {
        self.inner.state.with(|s| s.position() > 0)
    }

    /// Returns `true` if an entry is undone.
    pub fn can_redo(&self) -> bool {
        self.inner.state.with(|s| s.position() < s.len())
    }
}

impl fmt::Debug for UndoStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let history = self.history();
        f.debug_struct("UndoStack")
            .field("entries", &history.entries.len())
            .field("position", &history.position)
            .field("busy", &history.busy)
            .finish_non_exhaustive()
    }
}
