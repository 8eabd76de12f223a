//! [`UndoStackBuilder`]: an undo stack's limit, coalescing window and hooks.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::dispatch::dispatcher::Dispatcher;

use super::UndoStack;
use super::error::InvalidHistoryLimit;
use super::view::{HistoryAction, HistoryEntry, HistoryStep, HookDecision};

type BeforeHook = Box<dyn Fn(&HistoryEntry) -> HookDecision + Send + Sync>;
type AfterHook = Box<dyn Fn(&HistoryStep) + Send + Sync>;

#[derive(Default)]
pub(super) struct Hooks {
    pub(super) before_undo: Vec<BeforeHook>,
    pub(super) before_redo: Vec<BeforeHook>,
    pub(super) after_undo: Vec<AfterHook>,
    pub(super) after_redo: Vec<AfterHook>,
}

impl Hooks {
    pub(super) fn before(&self, action: HistoryAction) -> &[BeforeHook] {
        match action {
            HistoryAction::Undo => &self.before_undo,
            HistoryAction::Redo => &self.before_redo,
        }
    }

    pub(super) fn after(&self, action: HistoryAction) -> &[AfterHook] {
        match action {
            HistoryAction::Undo => &self.after_undo,
            HistoryAction::Redo => &self.after_redo,
        }
    }
}

/// Options of an [`UndoStack`]: its limit, coalescing and hooks. Made by
/// [`UndoStack::builder`].
///
/// ```
/// use core::time::Duration;
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatcher, HookDecision, UndoStack};
///
/// let dispatcher = Dispatcher::new(VirtualRuntime::new());
/// let stack = UndoStack::builder(&dispatcher)
///     .limit(50)
///     .coalesce_window(Duration::from_millis(500))
///     .before_undo(|entry| match entry.source.as_ref() {
///         "sync" => HookDecision::veto("changes from other devices are undone there"),
///         _ => HookDecision::Proceed,
///     })
///     .after_undo(|step| println!("undid {}", step.entry.description))
///     .build()
///     .unwrap();
/// assert_eq!(stack.history().limit, 50);
/// ```
pub struct UndoStackBuilder {
    pub(super) dispatcher: Dispatcher,
    pub(super) limit: usize,
    pub(super) window: Option<Duration>,
    pub(super) hooks: Hooks,
}

impl UndoStackBuilder {
    /// Keeps at most `limit` entries (default [`DEFAULT_HISTORY_LIMIT`](super::DEFAULT_HISTORY_LIMIT)); 0 is refused by
    /// [`build`](Self::build).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Merges jobs recorded within `window` of the previous record into its entry (see
    /// [Coalescing](UndoStack#coalescing)); off by default.
    pub fn coalesce_window(mut self, window: Duration) -> Self {
        self.window = Some(window);
        self
    }

    /// Adds a hook asked before each undo; a [`HookDecision::Veto`] stops the undo.
    pub fn before_undo(
        mut self,
        hook: impl Fn(&HistoryEntry) -> HookDecision + Send + Sync + 'static,
    ) -> Self {
        self.hooks.before_undo.push(Box::new(hook));
        self
    }

    /// Adds a hook asked before each redo; a [`HookDecision::Veto`] stops the redo.
    pub fn before_redo(
        mut self,
        hook: impl Fn(&HistoryEntry) -> HookDecision + Send + Sync + 'static,
    ) -> Self {
        self.hooks.before_redo.push(Box::new(hook));
        self
    }

    /// Adds a hook run after each successful undo (after its event is published).
    pub fn after_undo(mut self, hook: impl Fn(&HistoryStep) + Send + Sync + 'static) -> Self {
        self.hooks.after_undo.push(Box::new(hook));
        self
    }

    /// Adds a hook run after each successful redo, a rollback's re-applies included.
    pub fn after_redo(mut self, hook: impl Fn(&HistoryStep) + Send + Sync + 'static) -> Self {
        self.hooks.after_redo.push(Box::new(hook));
        self
    }

    /// Builds the stack.
    ///
    /// # Errors
    ///
    /// [`InvalidHistoryLimit`] if the limit is 0.
    pub fn build(self) -> Result<UndoStack, InvalidHistoryLimit> {
        match self.limit {
            0 => Err(InvalidHistoryLimit),
            _ => Ok(UndoStack::from_builder(self)),
        }
    }
}

impl fmt::Debug for UndoStackBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UndoStackBuilder")
            .field("limit", &self.limit)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}
