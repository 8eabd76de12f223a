//! A text editor's undo and redo, on tokio.
//!
//! The editor's operations are jobs: `Insert` puts text at a position, `Delete` removes a range
//! and returns the text it removed, `SetTitle` renames the document and returns the old title.
//! Each is `Reversible`: the inverse of an insert is a delete of the same length, the inverse
//! of a delete inserts the removed text again, the inverse of a rename restores the old title.
//! An `UndoStack` records them; the program undoes, redoes, types over an undone change (which
//! discards the redo branch), merges a burst of renames into one entry, shows a hook vetoing
//! an undo and a failing inverse leaving the history as it was, and prints the history a UI
//! would show. It checks the document after each step.
//!
//! Run it with `cargo run --example undo_editor`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::{
    Dispatcher, EntryState, Executor, HistoryStep, HookDecision, Job, JobContext, Reversible,
    UndoStack,
};
use orchestrator_tokio::TokioRuntime;

/// Inserts `text` at byte `at`; the output is the number of bytes inserted.
#[derive(Debug, Clone)]
struct Insert {
    at: usize,
    text: String,
}
impl Job for Insert {
    type Output = usize;
}
impl Reversible for Insert {
    type Inverse = Delete;
    fn inverse(&self, len: &usize) -> Delete {
        Delete {
            at: self.at,
            len: *len,
        }
    }
}

/// Deletes `len` bytes at `at`; the output is the text deleted.
#[derive(Debug, Clone)]
struct Delete {
    at: usize,
    len: usize,
}
impl Job for Delete {
    type Output = String;
}
impl Reversible for Delete {
    type Inverse = Insert;
    fn inverse(&self, removed: &String) -> Insert {
        Insert {
            at: self.at,
            text: removed.clone(),
        }
    }
}

/// Renames the document; the output is the old title. Renames in a burst merge.
#[derive(Debug, Clone)]
struct SetTitle(String);
impl Job for SetTitle {
    type Output = String;
}
impl Reversible for SetTitle {
    type Inverse = SetTitle;
    fn inverse(&self, old: &String) -> SetTitle {
        SetTitle(old.clone())
    }
    fn coalesce_key(&self) -> Option<u64> {
        Some(0) // one title: every rename has the same key
    }
}

#[derive(Debug)]
struct EditError(&'static str);
impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for EditError {}

/// The document and a switch that makes it read-only.
#[derive(Clone, Default)]
struct Document(Arc<Mutex<Doc>>);

#[derive(Default)]
struct Doc {
    title: String,
    text: String,
    read_only: bool,
}

impl Document {
    fn edit<T>(&self, f: impl FnOnce(&mut Doc) -> Result<T, EditError>) -> Result<T, EditError> {
        let mut doc = self
            .0
            .lock()
            .expect("no executor panics with the lock held");
        if doc.read_only {
            return Err(EditError("the document is read-only"));
        }
        f(&mut doc)
    }
    fn text(&self) -> String {
        self.0.lock().expect("not poisoned").text.clone()
    }
    fn title(&self) -> String {
        self.0.lock().expect("not poisoned").title.clone()
    }
}

impl Executor<Insert> for Document {
    type Error = EditError;
    async fn execute(&self, job: &Insert, _: JobContext) -> Result<usize, EditError> {
        self.edit(|doc| {
            if job.at > doc.text.len() || !doc.text.is_char_boundary(job.at) {
                return Err(EditError("no such position"));
            }
            doc.text.insert_str(job.at, &job.text);
            Ok(job.text.len())
        })
    }
}

impl Executor<Delete> for Document {
    type Error = EditError;
    async fn execute(&self, job: &Delete, _: JobContext) -> Result<String, EditError> {
        self.edit(|doc| {
            let end = job
                .at
                .checked_add(job.len)
                .ok_or(EditError("no such range"))?;
            if end > doc.text.len()
                || !doc.text.is_char_boundary(job.at)
                || !doc.text.is_char_boundary(end)
            {
                return Err(EditError("no such range"));
            }
            Ok(doc.text.drain(job.at..end).collect())
        })
    }
}

impl Executor<SetTitle> for Document {
    type Error = EditError;
    async fn execute(&self, job: &SetTitle, _: JobContext) -> Result<String, EditError> {
        self.edit(|doc| Ok(std::mem::replace(&mut doc.title, job.0.clone())))
    }
}

/// Prints the history as a UI would list it: done entries, the cursor, undone entries.
fn print_history(stack: &UndoStack) {
    let history = stack.history();
    println!(
        "  history ({} of {} done):",
        history.position,
        history.entries.len()
    );
    for (i, entry) in history.entries.iter().enumerate() {
        if i == history.position {
            println!("    ---- cursor ----");
        }
        let state = match entry.state {
            EntryState::Done => "done  ",
            EntryState::Undone => "undone",
        };
        let merged = match entry.jobs {
            1 => String::new(),
            n => format!(" ({n} jobs merged)"),
        };
        println!(
            "    #{} {state} {} [{}]{merged}",
            entry.id, entry.description, entry.source
        );
    }
    if history.position == history.entries.len() {
        println!("    ---- cursor ----");
    }
}

fn check(document: &Document, text: &str) {
    println!("  text: {:?}", document.text());
    assert_eq!(document.text(), text);
}

#[tokio::main]
async fn main() {
    let dispatcher = Dispatcher::new(TokioRuntime::default());
    let document = Document::default();
    dispatcher.register::<Insert, _>(document.clone());
    dispatcher.register::<Delete, _>(document.clone());
    dispatcher.register::<SetTitle, _>(document.clone());

    let stack = UndoStack::builder(&dispatcher)
        .limit(50)
        .coalesce_window(Duration::from_secs(5))
        .before_undo(|entry| match entry.source.as_ref() {
            "collaborator" => HookDecision::veto("a collaborator's change is undone on their side"),
            _ => HookDecision::Proceed,
        })
        .build()
        .expect("a limit of 50 is valid");
    // Every undo and redo is an event on the dispatcher's bus.
    let mut steps = dispatcher.bus().subscribe_to::<HistoryStep>();

    println!("typing:");
    let insert = |at: usize, text: &str| Insert {
        at,
        text: text.to_string(),
    };
    stack
        .run(insert(0, "Hello"), "type \"Hello\"", "keyboard")
        .await
        .unwrap();
    stack
        .run(insert(5, " world"), "type \" world\"", "keyboard")
        .await
        .unwrap();
    stack
        .run(Delete { at: 0, len: 5 }, "delete \"Hello\"", "keyboard")
        .await
        .unwrap();
    check(&document, " world");

    println!("undo twice:");
    stack.undo().await.unwrap(); // the delete: `Hello` comes back
    stack.undo().await.unwrap(); // ` world` goes
    check(&document, "Hello");

    println!("redo once:");
    stack.redo().await.unwrap();
    check(&document, "Hello world");
    print_history(&stack);

    println!("typing over the undone delete discards it:");
    stack
        .run(insert(11, "!"), "type \"!\"", "keyboard")
        .await
        .unwrap();
    check(&document, "Hello world!");
    let redo = stack.redo().await.unwrap_err();
    println!("  redo: {redo}");
    assert!(redo.is_nothing_to_redo());
    print_history(&stack);

    println!("a burst of renames is one entry:");
    for title in ["D", "Dr", "Draft"] {
        stack
            .run(
                SetTitle(title.into()),
                format!("rename to {title}"),
                "title bar",
            )
            .await
            .unwrap();
    }
    assert_eq!(document.title(), "Draft");
    stack.undo().await.unwrap();
    println!("  after one undo the title is {:?}", document.title());
    assert_eq!(document.title(), "");
    stack.redo().await.unwrap();
    assert_eq!(document.title(), "Draft");

    println!("a collaborator's edit cannot be undone here:");
    stack
        .run(insert(0, ">> "), "insert \">> \"", "collaborator")
        .await
        .unwrap();
    let vetoed = stack.undo().await.unwrap_err();
    println!("  undo: {vetoed}");
    assert!(vetoed.is_vetoed());
    check(&document, ">> Hello world!");

    println!("an inverse that fails leaves the history as it was:");
    stack
        .run(insert(15, " Bye."), "type \" Bye.\"", "keyboard")
        .await
        .unwrap();
    document.0.lock().expect("not poisoned").read_only = true;
    let before = stack.history();
    let failed = stack.undo().await.unwrap_err();
    println!("  undo: {failed:#}");
    assert!(failed.is_failed());
    assert_eq!(stack.history(), before);
    document.0.lock().expect("not poisoned").read_only = false;
    stack.undo().await.unwrap();
    check(&document, ">> Hello world!");
    print_history(&stack);

    let mut published = 0;
    while let Some(step) = steps.try_next() {
        published += 1;
        println!(
            "  event: {} #{} -> position {}",
            step.action, step.entry.id, step.position
        );
    }
    println!("{published} undo and redo events were published");
    assert_eq!(published, 6);
}
