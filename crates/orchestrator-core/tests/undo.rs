//! Undo and redo of reversible jobs (`UndoStack`), on the virtual runtime: undo, redo, the
//! redo branch, failures of each kind, one operation at a time, coalescing on the virtual
//! clock, the limit, hooks, bus events, the history view and its stream, and `undo_to` with
//! each strategy.

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::task::noop_waker_ref;
use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    Dispatcher, EntryState, Executor, HistoryAction, HistoryStep, HookDecision, Job, JobContext,
    JobId, Reversible, UndoStack, UndoStrategy, UndoToError,
};

// ---------------------------------------------------------------------------------------------
// The domain: a list of items with server-made ids, and numbered fields.

#[derive(Debug, Default)]
struct Model {
    /// (id, text), in order.
    items: Vec<(u32, String)>,
    next_id: u32,
    fields: [i64; 4],
    /// Items whose removal fails.
    stuck: HashSet<String>,
    /// Adding fails (so redoing an add fails).
    adds_fail: bool,
    /// Every job run, in order, with its job id: `add milk #12`.
    log: Vec<(String, JobId)>,
}

#[derive(Debug, PartialEq)]
struct ModelError(&'static str);
impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for ModelError {}

/// Adds an item; the output is the id the model gave it.
#[derive(Debug, Clone)]
struct AddItem(&'static str);
impl Job for AddItem {
    type Output = u32;
}
/// Removes an item by id.
struct RemoveItem(u32);
impl Job for RemoveItem {
    type Output = ();
}
impl Reversible for AddItem {
    type Inverse = RemoveItem;
    fn inverse(&self, id: &u32) -> RemoveItem {
        RemoveItem(*id)
    }
}

/// Sets field `0` to `1`; the output is the value before. Steps of one field coalesce.
#[derive(Debug, Clone)]
struct SetField(usize, i64);
impl Job for SetField {
    type Output = i64;
}
impl Reversible for SetField {
    type Inverse = SetField;
    fn inverse(&self, before: &i64) -> SetField {
        SetField(self.0, *before)
    }
    fn coalesce_key(&self) -> Option<u64> {
        Some(self.0 as u64)
    }
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Model>>);

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&mut Model) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }
    fn texts(&self) -> Vec<String> {
        self.with(|m| m.items.iter().map(|(_, t)| t.clone()).collect())
    }
    fn log(&self) -> Vec<String> {
        self.with(|m| m.log.iter().map(|(l, _)| l.clone()).collect())
    }
    fn field(&self, i: usize) -> i64 {
        self.with(|m| m.fields[i])
    }
}

impl Executor<AddItem> for Shared {
    type Error = ModelError;
    async fn execute(&self, job: &AddItem, cx: JobContext) -> Result<u32, ModelError> {
        self.with(|m| {
            if m.adds_fail {
                return Err(ModelError("the list is read-only"));
            }
            m.next_id += 1;
            let id = m.next_id;
            m.items.push((id, job.0.to_string()));
            m.log.push((format!("add {} #{id}", job.0), cx.job_id()));
            Ok(id)
        })
    }
}

impl Executor<RemoveItem> for Shared {
    type Error = ModelError;
    async fn execute(&self, job: &RemoveItem, cx: JobContext) -> Result<(), ModelError> {
        self.with(|m| {
            let at = m
                .items
                .iter()
                .position(|(id, _)| *id == job.0)
                .ok_or(ModelError("no such item"))?;
            if m.stuck.contains(&m.items[at].1) {
                return Err(ModelError("the item is locked"));
            }
            let (id, text) = m.items.remove(at);
            m.log.push((format!("remove {text} #{id}"), cx.job_id()));
            Ok(())
        })
    }
}

impl Executor<SetField> for Shared {
    type Error = ModelError;
    async fn execute(&self, job: &SetField, cx: JobContext) -> Result<i64, ModelError> {
        self.with(|m| {
            let before = std::mem::replace(&mut m.fields[job.0], job.1);
            m.log
                .push((format!("set {} = {}", job.0, job.1), cx.job_id()));
            Ok(before)
        })
    }
}

struct World {
    rt: VirtualRuntime,
    dispatcher: Dispatcher<VirtualRuntime>,
    model: Shared,
}

fn world() -> World {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let model = Shared::default();
    dispatcher.register::<AddItem, _>(model.clone());
    dispatcher.register::<RemoveItem, _>(model.clone());
    dispatcher.register::<SetField, _>(model.clone());
    World {
        rt,
        dispatcher,
        model,
    }
}

impl World {
    fn stack(&self) -> UndoStack {
        UndoStack::new(&self.dispatcher)
    }

    /// Adds each item through `stack.run`.
    fn add(&self, stack: &UndoStack, items: &[&'static str]) {
        for item in items {
            let description = format!("add {item}");
            self.rt
                .block_on(stack.run(AddItem(item), description, "test"))
                .unwrap();
        }
    }
}

fn states(stack: &UndoStack) -> Vec<(String, EntryState)> {
    stack
        .history()
        .entries
        .iter()
        .map(|e| (e.description.to_string(), e.state))
        .collect()
}

fn cx() -> Context<'static> {
    Context::from_waker(noop_waker_ref())
}

// ---------------------------------------------------------------------------------------------
// Undo and redo

#[test]
fn undo_dispatches_the_inverse_and_redo_dispatches_the_job_again_with_a_new_id() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["milk", "eggs"]);
    assert_eq!(w.model.texts(), ["milk", "eggs"]);

    let undone = w.rt.block_on(stack.undo()).unwrap();
    assert_eq!(undone.action, HistoryAction::Undo);
    assert_eq!(undone.entry.description, "add eggs");
    assert_eq!(undone.entry.state, EntryState::Undone);
    assert_eq!(undone.position, 1);
    assert_eq!(w.model.texts(), ["milk"]);

    let redone = w.rt.block_on(stack.redo()).unwrap();
    assert_eq!(redone.action, HistoryAction::Redo);
    assert_eq!(redone.entry.id, undone.entry.id, "the same entry");
    assert_eq!(redone.entry.state, EntryState::Done);
    assert_eq!(w.model.texts(), ["milk", "eggs"]);

    let runs: Vec<(String, JobId)> = w.model.with(|m| m.log.clone());
    assert_eq!(
        runs.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(),
        [
            "add milk #1",
            "add eggs #2",
            "remove eggs #2",
            "add eggs #3"
        ]
    );
    assert_ne!(
        runs[1].1, runs[3].1,
        "a redo is a new dispatch with a new job id"
    );
    assert_eq!((undone.job_id, redone.job_id), (runs[2].1, runs[3].1));
}

#[test]
fn the_next_undo_inverts_the_output_of_the_redo() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["milk"]);
    w.rt.block_on(stack.undo()).unwrap();
    w.rt.block_on(stack.redo()).unwrap(); // the model gives it id 2 this time
    w.rt.block_on(stack.undo()).unwrap();
    assert_eq!(
        w.model.log(),
        [
            "add milk #1",
            "remove milk #1",
            "add milk #2",
            "remove milk #2"
        ]
    );
    assert!(w.model.texts().is_empty());
}

#[test]
fn nothing_to_undo_and_nothing_to_redo_are_errors_that_change_nothing() {
    let w = world();
    let stack = w.stack();
    let err = w.rt.block_on(stack.undo()).unwrap_err();
    assert!(err.is_nothing_to_undo() && !err.is_busy() && !err.is_failed());
    assert_eq!(err.to_string(), "nothing to undo");
    let err = w.rt.block_on(stack.redo()).unwrap_err();
    assert!(err.is_nothing_to_redo());
    assert_eq!(err.to_string(), "nothing to redo");

    w.add(&stack, &["milk"]);
    assert!(
        w.rt.block_on(stack.redo())
            .unwrap_err()
            .is_nothing_to_redo()
    );
    w.rt.block_on(stack.undo()).unwrap();
    assert!(
        w.rt.block_on(stack.undo())
            .unwrap_err()
            .is_nothing_to_undo()
    );
    assert_eq!(w.model.log(), ["add milk #1", "remove milk #1"]);
    assert_eq!(stack.history().position, 0);
}

// ---------------------------------------------------------------------------------------------
// The redo branch

#[test]
fn a_record_after_undos_truncates_the_redo_branch_and_nothing_runs_twice() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["a", "b", "c"]);
    w.rt.block_on(stack.undo()).unwrap(); // c
    w.rt.block_on(stack.undo()).unwrap(); // b
    w.add(&stack, &["d"]);

    assert_eq!(
        states(&stack),
        [
            ("add a".to_string(), EntryState::Done),
            ("add d".to_string(), EntryState::Done)
        ]
    );
    let history = stack.history();
    assert_eq!((history.truncated, history.position), (2, 2));
    assert!(
        w.rt.block_on(stack.redo())
            .unwrap_err()
            .is_nothing_to_redo()
    );

    // Undoing everything runs each inverse once: b and c are not brought back.
    w.rt.block_on(stack.undo()).unwrap();
    w.rt.block_on(stack.undo()).unwrap();
    assert!(
        w.rt.block_on(stack.undo())
            .unwrap_err()
            .is_nothing_to_undo()
    );
    assert_eq!(
        w.model.log(),
        [
            "add a #1",
            "add b #2",
            "add c #3",
            "remove c #3",
            "remove b #2",
            "add d #4",
            "remove d #4",
            "remove a #1"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Failures

#[test]
fn a_failing_inverse_leaves_the_entry_done_and_names_it_and_why() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["milk", "eggs"]);
    w.model.with(|m| m.stuck.insert("eggs".into()));
    let before = stack.history();

    let err = w.rt.block_on(stack.undo()).unwrap_err();
    assert!(err.is_failed() && !err.is_vetoed());
    assert_eq!(err.to_string(), "undo of entry 2 (`add eggs`) failed");
    assert_eq!(
        format!("{err:#}"),
        "undo of entry 2 (`add eggs`) failed: job failed after 1 attempt: the item is locked"
    );
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.to_string(), "job failed after 1 attempt");
    let failure = err.entry_failure().unwrap();
    assert_eq!(failure.action, HistoryAction::Undo);
    assert_eq!(failure.entry.description, "add eggs");
    assert_eq!(failure.entry.state, EntryState::Done);
    assert!(err.job_error().unwrap().is_failed());

    assert_eq!(stack.history(), before, "the history is unchanged");
    assert_eq!(w.model.texts(), ["milk", "eggs"]);

    // Once the cause is gone, the same entry undoes.
    w.model.with(|m| m.stuck.clear());
    let step = w.rt.block_on(stack.undo()).unwrap();
    assert_eq!(step.entry.description, "add eggs");
    assert_eq!(w.model.texts(), ["milk"]);
}

#[test]
fn a_failing_redo_leaves_the_entry_undone() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["milk"]);
    w.rt.block_on(stack.undo()).unwrap();
    w.model.with(|m| m.adds_fail = true);
    let before = stack.history();

    let err = w.rt.block_on(stack.redo()).unwrap_err();
    assert!(err.is_failed());
    assert_eq!(
        format!("{err:#}"),
        "redo of entry 1 (`add milk`) failed: job failed after 1 attempt: the list is read-only"
    );
    assert_eq!(stack.history(), before);
    assert_eq!(stack.history().next_redo().unwrap().description, "add milk");

    w.model.with(|m| m.adds_fail = false);
    w.rt.block_on(stack.redo()).unwrap();
    assert_eq!(w.model.texts(), ["milk"]);
}

#[test]
fn an_inverse_without_an_executor_fails_as_rejected_and_the_entry_stays() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["milk"]);
    w.dispatcher.unregister::<RemoveItem>();
    let err = w.rt.block_on(stack.undo()).unwrap_err();
    assert!(err.job_error().unwrap().is_rejected());
    assert!(stack.can_undo());
}

#[test]
fn a_history_limit_of_zero_is_refused_when_the_stack_is_built() {
    let w = world();
    let err = UndoStack::builder(&w.dispatcher)
        .limit(0)
        .build()
        .unwrap_err();
    assert_eq!(err.to_string(), "the undo history limit must be at least 1");
    assert!(UndoStack::builder(&w.dispatcher).limit(1).build().is_ok());
}

// ---------------------------------------------------------------------------------------------
// One operation at a time

#[test]
fn a_second_operation_while_one_runs_is_busy_and_a_record_is_refused_with_its_job_back() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["milk", "eggs"]);
    w.rt.block_on(stack.undo()).unwrap(); // something to redo

    let mut first = pin!(stack.undo());
    // Dispatched, not run: the virtual runtime runs the job only when driven.
    assert!(first.as_mut().poll(&mut cx()).is_pending());
    assert_eq!(stack.history().busy, Some(HistoryAction::Undo));

    let mut second = pin!(stack.undo());
    match second.as_mut().poll(&mut cx()) {
        Poll::Ready(Err(err)) => {
            assert!(err.is_busy());
            assert_eq!(err.to_string(), "another undo or redo is running");
        }
        other => panic!("expected busy, got {other:?}"),
    }
    let mut redo = pin!(stack.redo());
    assert!(matches!(redo.as_mut().poll(&mut cx()), Poll::Ready(Err(e)) if e.is_busy()));
    let mut undo_to = pin!(stack.undo_to(0, UndoStrategy::StopAtFirstError));
    assert!(matches!(
        undo_to.as_mut().poll(&mut cx()),
        Poll::Ready(Err(UndoToError::Busy))
    ));
    let refused = stack
        .record(AddItem("tea"), 99, "add tea", "test")
        .unwrap_err();
    assert!(refused.is_busy());
    assert_eq!(
        refused.to_string(),
        "another undo or redo is running: the job was not recorded"
    );
    let (job, output) = refused.into_inner();
    assert_eq!((job.0, output), ("tea", 99));
    let mut run = pin!(stack.run(AddItem("tea"), "add tea", "test"));
    assert!(matches!(run.as_mut().poll(&mut cx()), Poll::Ready(Err(e)) if e.is_busy()));

    let step = w.rt.block_on(first).unwrap();
    assert_eq!(step.entry.description, "add milk");
    assert_eq!(stack.history().busy, None);
    assert!(w.model.texts().is_empty());
    // Free again.
    w.rt.block_on(stack.redo()).unwrap();
    assert_eq!(w.model.texts(), ["milk"]);
}

#[test]
fn dropping_an_undo_cancels_its_inverse_and_frees_the_stack() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["milk"]);
    {
        let mut undo = pin!(stack.undo());
        assert!(undo.as_mut().poll(&mut cx()).is_pending());
    }
    w.rt.run_until_stalled();
    assert_eq!(
        w.model.texts(),
        ["milk"],
        "the inverse was cancelled before it ran"
    );
    let history = stack.history();
    assert_eq!((history.busy, history.position), (None, 1));
    w.rt.block_on(stack.undo()).unwrap();
    assert!(w.model.texts().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Limit and coalescing

#[test]
fn the_oldest_entries_are_dropped_past_the_limit_and_counted() {
    let w = world();
    let stack = UndoStack::builder(&w.dispatcher).limit(2).build().unwrap();
    w.add(&stack, &["a", "b", "c", "d"]);
    let history = stack.history();
    assert_eq!(
        (history.dropped, history.position, history.limit),
        (2, 2, 2)
    );
    assert_eq!(
        states(&stack),
        [
            ("add c".to_string(), EntryState::Done),
            ("add d".to_string(), EntryState::Done)
        ]
    );
    w.rt.block_on(stack.undo()).unwrap();
    w.rt.block_on(stack.undo()).unwrap();
    assert!(
        w.rt.block_on(stack.undo())
            .unwrap_err()
            .is_nothing_to_undo()
    );
    assert_eq!(
        w.model.texts(),
        ["a", "b"],
        "dropped entries are not undone"
    );
}

#[test]
fn records_within_the_window_merge_on_the_dispatchers_clock() {
    let w = world();
    let stack = UndoStack::builder(&w.dispatcher)
        .coalesce_window(Duration::from_millis(500))
        .build()
        .unwrap();
    let set = |value: i64| {
        w.rt.block_on(stack.run(SetField(0, value), format!("set to {value}"), "slider"))
            .unwrap()
    };
    set(10);
    w.rt.advance(Duration::from_millis(400));
    set(20);
    w.rt.advance(Duration::from_millis(400)); // the window restarts at each merge
    set(30);
    w.rt.advance(Duration::from_millis(501));
    set(40); // too late: a new entry

    let history = stack.history();
    assert_eq!(history.entries.len(), 2);
    let merged = &history.entries[0];
    assert_eq!((merged.jobs, &*merged.description), (3, "set to 30"));
    assert_eq!(history.entries[1].jobs, 1);

    w.rt.block_on(stack.undo()).unwrap();
    assert_eq!(w.model.field(0), 30);
    // The merged entry undoes to before its first job...
    w.rt.block_on(stack.undo()).unwrap();
    assert_eq!(w.model.field(0), 0);
    // ...and redoes with its last job.
    w.rt.block_on(stack.redo()).unwrap();
    assert_eq!(w.model.field(0), 30);
    // The redo's output (0, the value before) is what the next undo restores.
    w.rt.block_on(stack.undo()).unwrap();
    assert_eq!(w.model.field(0), 0);
}

#[test]
fn records_merge_only_with_the_same_type_key_and_source_and_no_undo_in_between() {
    let w = world();
    let stack = UndoStack::builder(&w.dispatcher)
        .coalesce_window(Duration::from_secs(60))
        .build()
        .unwrap();
    let run = |job: SetField, source: &'static str| {
        w.rt.block_on(stack.run(job, "set", source)).unwrap();
    };
    run(SetField(0, 1), "slider");
    run(SetField(1, 1), "slider"); // another field (key)
    run(SetField(1, 2), "keyboard"); // another source
    w.add(&stack, &["milk"]); // another type (and no key)
    w.add(&stack, &["eggs"]); // no key: never merged
    run(SetField(2, 1), "slider");
    w.rt.block_on(stack.undo()).unwrap();
    w.rt.block_on(stack.redo()).unwrap();
    run(SetField(2, 2), "slider"); // an undo and a redo came in between
    assert_eq!(stack.history().entries.len(), 7);
    assert!(stack.history().entries.iter().all(|e| e.jobs == 1));
    run(SetField(2, 3), "slider"); // merges
    assert_eq!(stack.history().entries.len(), 7);
}

// ---------------------------------------------------------------------------------------------
// Hooks

#[test]
fn a_before_hook_vetoes_with_a_reason_and_the_history_is_unchanged() {
    let w = world();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let stack = UndoStack::builder(&w.dispatcher)
        .before_undo(move |entry| {
            seen.lock().unwrap().push(entry.description.to_string());
            match entry.source.as_ref() {
                "sync" => HookDecision::veto("made on another device"),
                _ => HookDecision::Proceed,
            }
        })
        .before_redo(|entry| match entry.description.as_ref() {
            "add milk" => HookDecision::veto("milk is sold out"),
            _ => HookDecision::Proceed,
        })
        .build()
        .unwrap();
    w.add(&stack, &["milk"]);
    w.rt.block_on(stack.run(AddItem("eggs"), "add eggs", "sync"))
        .unwrap();
    let before = stack.history();

    let err = w.rt.block_on(stack.undo()).unwrap_err();
    assert!(err.is_vetoed() && !err.is_failed());
    assert_eq!(
        err.to_string(),
        "undo of entry 2 (`add eggs`) vetoed: made on another device"
    );
    assert_eq!(
        err.entry_failure().unwrap().veto_reason(),
        Some("made on another device")
    );
    assert!(std::error::Error::source(&err).is_none());
    assert_eq!(stack.history(), before);
    assert_eq!(
        w.model.log(),
        ["add milk #1", "add eggs #2"],
        "nothing dispatched"
    );

    // A redo veto.
    let stack = UndoStack::builder(&w.dispatcher)
        .before_redo(|entry| match entry.description.as_ref() {
            "add milk" => HookDecision::veto("milk is sold out"),
            _ => HookDecision::Proceed,
        })
        .build()
        .unwrap();
    w.add(&stack, &["milk"]);
    w.rt.block_on(stack.undo()).unwrap();
    let err = w.rt.block_on(stack.redo()).unwrap_err();
    assert!(err.is_vetoed());
    assert_eq!(
        err.to_string(),
        "redo of entry 1 (`add milk`) vetoed: milk is sold out"
    );
    assert_eq!(stack.history().position, 0);
    assert_eq!(*asked.lock().unwrap(), ["add eggs"]);
}

#[test]
fn after_hooks_see_each_successful_step_in_order() {
    let w = world();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (undos, redos) = (seen.clone(), seen.clone());
    let stack = UndoStack::builder(&w.dispatcher)
        .after_undo(move |step| {
            undos.lock().unwrap().push(format!(
                "undid {} -> {}",
                step.entry.description, step.position
            ))
        })
        .after_redo(move |step| {
            redos.lock().unwrap().push(format!(
                "redid {} -> {}",
                step.entry.description, step.position
            ))
        })
        .build()
        .unwrap();
    w.add(&stack, &["milk", "eggs"]);
    w.model.with(|m| m.stuck.insert("eggs".into()));
    w.rt.block_on(stack.undo()).unwrap_err(); // no after-hook for a failure
    w.model.with(|m| m.stuck.clear());
    w.rt.block_on(stack.undo()).unwrap();
    w.rt.block_on(stack.redo()).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["undid add eggs -> 1", "redid add eggs -> 2"]
    );
}

// ---------------------------------------------------------------------------------------------
// Events, the history view and its stream

#[test]
fn each_undo_and_redo_publishes_a_history_step_on_the_dispatchers_bus() {
    let w = world();
    let stack = w.stack();
    let mut steps = w.dispatcher.bus().subscribe_to::<HistoryStep>();
    w.add(&stack, &["milk"]);
    assert!(steps.try_next().is_none(), "recording publishes nothing");
    w.rt.advance(Duration::from_secs(3));
    let undone = w.rt.block_on(stack.undo()).unwrap();
    let redone = w.rt.block_on(stack.redo()).unwrap();
    w.model.with(|m| m.stuck.insert("milk".into()));
    w.rt.block_on(stack.undo()).unwrap_err();

    let first = steps.try_next().unwrap();
    assert_eq!(*first, undone);
    assert_eq!(
        first.event().timestamp().elapsed_since_epoch(),
        Duration::from_secs(3)
    );
    assert_eq!(*steps.try_next().unwrap(), redone);
    assert!(steps.try_next().is_none(), "a failure publishes nothing");
}

#[test]
fn steps_the_bus_refuses_are_counted_in_the_history() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["milk"]);
    w.dispatcher.bus().close();
    w.rt.block_on(stack.undo()).unwrap();
    assert_eq!(stack.history().undelivered_events, 1);
}

#[test]
fn the_history_view_shows_entries_their_state_source_and_the_cursor() {
    let w = world();
    let stack = w.stack();
    w.rt.block_on(stack.run(AddItem("milk"), "add milk", "keyboard"))
        .unwrap();
    w.rt.advance(Duration::from_secs(1));
    w.rt.block_on(stack.run(AddItem("eggs"), "add eggs", "menu"))
        .unwrap();
    w.rt.block_on(stack.undo()).unwrap();

    let history = stack.history();
    assert_eq!(history.position, 1);
    assert!(history.can_undo() && history.can_redo());
    assert_eq!(history.next_undo().unwrap().description, "add milk");
    assert_eq!(history.next_redo().unwrap().description, "add eggs");
    let [milk, eggs] = &history.entries[..] else {
        panic!("two entries");
    };
    assert_eq!((&*milk.source, milk.state), ("keyboard", EntryState::Done));
    assert_eq!((&*eggs.source, eggs.state), ("menu", EntryState::Undone));
    assert!(milk.id < eggs.id);
    assert!(milk.job_type.is::<AddItem>());
    assert_eq!(
        eggs.recorded_at.elapsed_since_epoch(),
        Duration::from_secs(1)
    );
}

#[test]
fn the_state_stream_yields_the_current_history_then_each_change() {
    let w = world();
    let stack = w.stack();
    let mut states = stack.states();
    assert_eq!(w.rt.block_on(states.next()).unwrap().position, 0);

    w.add(&stack, &["milk"]);
    assert_eq!(w.rt.block_on(states.next()).unwrap().position, 1);

    {
        let mut undo = pin!(stack.undo());
        assert!(undo.as_mut().poll(&mut cx()).is_pending());
        let busy = w.rt.block_on(states.next()).unwrap();
        assert_eq!((busy.busy, busy.position), (Some(HistoryAction::Undo), 1));
        w.rt.block_on(undo).unwrap();
    }
    let done =
        w.rt.block_on(states.wait_for(|h| h.busy.is_none()))
            .unwrap();
    assert_eq!(done.position, 0);
    assert_eq!(done.entries[0].state, EntryState::Undone);

    drop(stack);
    assert!(
        w.rt.block_on(states.next()).is_none(),
        "ends with the stack"
    );
}

// ---------------------------------------------------------------------------------------------
// undo_to

#[test]
fn undo_to_undoes_every_entry_above_the_position_newest_first() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["a", "b", "c", "d"]);
    let report =
        w.rt.block_on(stack.undo_to(1, UndoStrategy::StopAtFirstError))
            .unwrap();
    assert!(report.is_complete());
    assert_eq!(report.position, 1);
    assert_eq!(
        report
            .undone
            .iter()
            .map(|s| s.entry.description.to_string())
            .collect::<Vec<_>>(),
        ["add d", "add c", "add b"]
    );
    assert_eq!(w.model.texts(), ["a"]);
    // The current position: nothing to do.
    let report =
        w.rt.block_on(stack.undo_to(1, UndoStrategy::RollBack))
            .unwrap();
    assert!(report.undone.is_empty() && report.is_complete());
}

#[test]
fn undo_to_above_the_cursor_is_an_error_and_does_nothing() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["a"]);
    let err =
        w.rt.block_on(stack.undo_to(2, UndoStrategy::SkipFailed))
            .unwrap_err();
    assert!(matches!(
        err,
        UndoToError::AheadOfCursor {
            target: 2,
            position: 1
        }
    ));
    assert_eq!(w.model.texts(), ["a"]);
}

#[test]
fn undo_to_stop_at_first_error_keeps_what_it_undid_before_the_failure() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["a", "b", "c", "d"]);
    w.model.with(|m| m.stuck.insert("b".into()));
    let err =
        w.rt.block_on(stack.undo_to(0, UndoStrategy::StopAtFirstError))
            .unwrap_err();
    assert!(err.is_failed());
    assert_eq!(
        err.to_string(),
        "undo to position 0 stopped at position 2: 1 entry could not be undone"
    );
    let report = err.report().unwrap();
    assert_eq!(report.undone.len(), 2);
    assert_eq!(report.failures[0].entry.description, "add b");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "undo of entry 2 (`add b`) failed"
    );
    assert!(!report.is_complete());
    assert_eq!(w.model.texts(), ["a", "b"]);
    assert_eq!(stack.history().position, 2);
}

#[test]
fn undo_to_skip_failed_goes_on_and_keeps_the_failed_entry_done_below_the_cursor() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["a", "b", "c", "d"]);
    w.model.with(|m| m.stuck.insert("c".into()));
    let err =
        w.rt.block_on(stack.undo_to(1, UndoStrategy::SkipFailed))
            .unwrap_err();
    let report = err.report().unwrap();
    assert_eq!(
        report
            .undone
            .iter()
            .map(|s| s.entry.description.to_string())
            .collect::<Vec<_>>(),
        ["add d", "add b"]
    );
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.position, 2);
    assert_eq!(w.model.texts(), ["a", "c"]);
    // The history reads: applied (a, c), then undone (b, d) in redo order.
    assert_eq!(
        states(&stack),
        [
            ("add a".to_string(), EntryState::Done),
            ("add c".to_string(), EntryState::Done),
            ("add b".to_string(), EntryState::Undone),
            ("add d".to_string(), EntryState::Undone),
        ]
    );
    w.rt.block_on(stack.redo()).unwrap();
    w.rt.block_on(stack.redo()).unwrap();
    assert_eq!(w.model.texts(), ["a", "c", "b", "d"]);
}

#[test]
fn undo_to_roll_back_reapplies_what_it_undid_when_one_fails() {
    let w = world();
    let seen = Arc::new(Mutex::new(0));
    let vetoes = seen.clone();
    let stack = UndoStack::builder(&w.dispatcher)
        .before_redo(move |_| {
            *vetoes.lock().unwrap() += 1;
            HookDecision::veto("never asked by a rollback")
        })
        .build()
        .unwrap();
    w.add(&stack, &["a", "b", "c", "d"]);
    w.model.with(|m| m.stuck.insert("b".into()));
    let mut steps = w.dispatcher.bus().subscribe_to::<HistoryStep>();
    let err =
        w.rt.block_on(stack.undo_to(0, UndoStrategy::RollBack))
            .unwrap_err();
    let report = err.report().unwrap();
    assert_eq!(report.undone.len(), 2);
    assert_eq!(
        report
            .reapplied
            .iter()
            .map(|s| s.entry.description.to_string())
            .collect::<Vec<_>>(),
        ["add c", "add d"]
    );
    assert!(report.reapply_failure.is_none());
    assert_eq!(report.position, 4);
    assert_eq!(
        err.to_string(),
        "undo to position 0 stopped at position 4: 1 entry could not be undone, 2 re-applied"
    );
    assert_eq!(w.model.texts(), ["a", "b", "c", "d"]);
    assert_eq!(stack.history().position, 4);
    assert!(states(&stack).iter().all(|(_, s)| *s == EntryState::Done));
    assert_eq!(
        *seen.lock().unwrap(),
        0,
        "a rollback's re-apply asks no hook"
    );
    let actions: Vec<HistoryAction> = std::iter::from_fn(|| steps.try_next())
        .map(|s| s.action)
        .collect();
    use HistoryAction::{Redo, Undo};
    assert_eq!(actions, [Undo, Undo, Redo, Redo], "an event per step");
}

#[test]
fn a_failing_reapply_stops_the_rollback_and_is_reported() {
    let w = world();
    let stack = w.stack();
    w.add(&stack, &["a", "b", "c"]);
    let after_failure = w.model.clone();
    // Undoing b fails; by then c is undone, and adding (re-applying c) fails too.
    w.model.with(|m| {
        m.stuck.insert("b".into());
    });
    let stack2 = stack.clone();
    let mut undo_to = pin!(stack2.undo_to(0, UndoStrategy::RollBack));
    // Drive until c's inverse ran, then make adds fail before the rollback.
    assert!(undo_to.as_mut().poll(&mut cx()).is_pending());
    w.rt.run_until_stalled();
    after_failure.with(|m| m.adds_fail = true);
    let err = w.rt.block_on(undo_to).unwrap_err();
    let report = err.report().unwrap();
    assert_eq!(report.undone.len(), 1);
    assert!(report.reapplied.is_empty());
    let failure = report.reapply_failure.as_ref().unwrap();
    assert_eq!(failure.action, HistoryAction::Redo);
    assert_eq!(failure.entry.description, "add c");
    assert!(
        err.to_string()
            .ends_with(", 0 re-applied, a re-apply failed")
    );
    // Consistent: c stays undone at the cursor.
    assert_eq!(stack.history().position, 2);
    assert_eq!(stack.history().next_redo().unwrap().description, "add c");
    assert_eq!(w.model.texts(), ["a", "b"]);
}

// ---------------------------------------------------------------------------------------------
// run

#[test]
fn run_records_only_a_job_that_succeeded() {
    let w = world();
    let stack = w.stack();
    w.model.with(|m| m.adds_fail = true);
    let err =
        w.rt.block_on(stack.run(AddItem("milk"), "add milk", "test"))
            .unwrap_err();
    assert!(err.job_error().unwrap().is_failed() && !err.is_busy());
    assert_eq!(
        format!("{err:#}"),
        "the job did not succeed: job failed after 1 attempt: the list is read-only"
    );
    assert!(stack.history().entries.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Threads

#[test]
fn the_stack_and_its_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let w = world();
    let stack = w.stack();
    send_sync(&stack);
    send_sync(&stack.history());
    send(&stack.states());
    send(&stack.undo());
    send(&stack.redo());
    send(&stack.undo_to(0, UndoStrategy::RollBack));
    send(&stack.run(AddItem("milk"), "add milk", "test"));
    assert!(format!("{stack:?}").starts_with("UndoStack { entries: 0, position: 0"));
}
