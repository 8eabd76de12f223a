//! What the history looks like from outside: entries, the cursor, the steps taken and the
//! hooks' decisions.

use alloc::borrow::Cow;
use core::fmt;

use crate::id::JobId;
use crate::job::JobType;
use crate::runtime::Instant;
use crate::sync::Arc;

/// The id of one entry of an [`UndoStack`](crate::UndoStack)'s history, unique in that
/// stack (ids increase in recording order, from 1).
///
/// A coalesced entry keeps the id of the first job merged into it.
///
/// ```
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatcher, UndoStack};
///
/// let stack = UndoStack::new(&Dispatcher::new(VirtualRuntime::new()));
/// assert!(stack.history().entries.is_empty());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(u64);

impl EntryId {
    pub(super) fn new(id: u64) -> Self {
        Self(id)
    }

    /// Returns the id as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Whether an entry's job is applied ([`Done`](Self::Done)) or was undone and can be redone
/// ([`Undone`](Self::Undone)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryState {
    /// Applied: below the cursor, next candidates for undo.
    Done,
    /// Undone: above the cursor, candidates for redo.
    Undone,
}

/// An undo or a redo: what an operation, a hook, an event or a failure is about.
///
/// ```
/// use orchestrator_core::HistoryAction;
/// assert_eq!(HistoryAction::Undo.to_string(), "undo");
/// assert_eq!(HistoryAction::Redo.to_string(), "redo");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistoryAction {
    /// The inverse of an entry's job is dispatched.
    Undo,
    /// An entry's job is dispatched again.
    Redo,
}

impl fmt::Display for HistoryAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HistoryAction::Undo => "undo",
            HistoryAction::Redo => "redo",
        })
    }
}

/// One entry of the history, as a UI shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// The entry's id.
    pub id: EntryId,
    /// What the entry did, as given when it was recorded (the latest job's, once merged).
    pub description: Cow<'static, str>,
    /// Where the change came from, as given when it was recorded ("keyboard", "menu",
    /// "sync"...).
    pub source: Cow<'static, str>,
    /// The type of the recorded job.
    pub job_type: JobType,
    /// Applied or undone.
    pub state: EntryState,
    /// How many recorded jobs the entry stands for: 1, or more once jobs were coalesced.
    pub jobs: u32,
    /// When the entry's latest job was recorded, on the dispatcher's clock.
    pub recorded_at: Instant,
}

/// A snapshot of an [`UndoStack`](crate::UndoStack)'s history, for a UI to render.
///
/// `entries[..position]` are done (oldest first), `entries[position..]` are undone (the next
/// to redo first). Cheap to clone (the entries are shared).
///
/// ```
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatcher, UndoStack};
///
/// let history = UndoStack::new(&Dispatcher::new(VirtualRuntime::new())).history();
/// assert_eq!((history.position, history.limit), (0, 100));
/// assert!(!history.can_undo() && !history.can_redo());
/// assert!(history.next_undo().is_none() && history.busy.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct History {
    /// The entries, oldest first.
    pub entries: Arc<[HistoryEntry]>,
    /// The cursor: how many entries are done.
    pub position: usize,
    /// The most entries kept; the oldest is dropped past it.
    pub limit: usize,
    /// How many old entries were dropped because of the limit.
    pub dropped: u64,
    /// How many undone entries were discarded because a new job was recorded after them.
    pub truncated: u64,
    /// How many undo and redo events the dispatcher's bus did not take (it was closed).
    pub undelivered_events: u64,
    /// The operation running now, if any: a UI disables its buttons meanwhile.
    pub busy: Option<HistoryAction>,
}

impl History {
    /// Returns `true` if an entry is done (and so can be undone).
    pub fn can_undo(&self) -> bool {
        self.position > 0
    }

    /// Returns `true` if an entry is undone (and so can be redone).
    pub fn can_redo(&self) -> bool {
        self.position < self.entries.len()
    }

    /// Returns the entry the next undo would undo.
    pub fn next_undo(&self) -> Option<&HistoryEntry> {
        self.position
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
    }

    /// Returns the entry the next redo would redo.
    pub fn next_redo(&self) -> Option<&HistoryEntry> {
        self.entries.get(self.position)
    }
}

/// An undo or redo that succeeded: returned by the operation and published on the
/// dispatcher's bus (subscribe with `bus.subscribe_to::<HistoryStep>()`).
///
/// ```
/// use orchestrator_core::{HistoryAction, HistoryStep};
///
/// fn on_step(step: &HistoryStep) -> String {
///     format!("{} `{}`", step.action, step.entry.description)
/// }
/// # let _ = on_step;
/// # let _ = HistoryAction::Undo;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryStep {
    /// Undo or redo.
    pub action: HistoryAction,
    /// The entry, in its new state.
    pub entry: HistoryEntry,
    /// The id of the job dispatched for it (the inverse for an undo, the job again for a
    /// redo).
    pub job_id: JobId,
    /// The cursor after the step.
    pub position: usize,
}

/// What a before-undo or before-redo hook decides.
///
/// ```
/// use orchestrator_core::HookDecision;
/// assert_eq!(HookDecision::veto("saved to disk"), HookDecision::Veto("saved to disk".into()));
/// assert!(HookDecision::Proceed.is_proceed());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookDecision {
    /// Go on (the other hooks are asked too).
    Proceed,
    /// Stop: nothing is dispatched, the history stays as it was, and the operation fails
    /// with this reason.
    Veto(Cow<'static, str>),
}

impl HookDecision {
    /// A veto with `reason`.
    pub fn veto(reason: impl Into<Cow<'static, str>>) -> Self {
        HookDecision::Veto(reason.into())
    }

    /// Returns `true` for [`Proceed`](Self::Proceed).
    pub fn is_proceed(&self) -> bool {
        matches!(self, HookDecision::Proceed)
    }
}
