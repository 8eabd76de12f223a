//! The history's state machine: entries, the cursor, the limit, coalescing and the one
//! operation at a time. Pure logic (no dispatching, no clock of its own), generic over what an
//! entry carries so that it is unit-tested on plain values.
//!
//! # Invariants
//!
//! 1. `entries[..position]` are done and `entries[position..]` are undone: the history is
//!    always "what is applied, oldest first" followed by "what can be redone, next first".
//! 2. `entries.len() <= limit`, and `limit >= 1`.
//! 3. While `busy` is set, only the operation that set it changes `entries` or `position`;
//!    a record, an undo or a redo started meanwhile is refused. So an index taken by the
//!    operation stays valid until it ends.
//! 4. Every slot holds its payload, except the one slot an operation is working on (its
//!    payload is held by the operation, which puts it back however it ends).
//! 5. `open` names the top entry only while nothing but records happened since it was
//!    recorded: only then may a new record merge into it.

use alloc::borrow::Cow;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use crate::job::JobType;
use crate::runtime::Instant;
use crate::sync::Arc;

use super::view::{EntryId, EntryState, History, HistoryAction, HistoryEntry};

/// What an entry's payload must do for the state machine: take in a later payload of the
/// same entry when records coalesce.
pub(super) trait Absorb: Sized {
    /// Merges `later` into `self`; gives `later` back if it cannot be merged.
    fn absorb(&mut self, later: Self) -> Result<(), Self>;
}

/// One entry of the history.
pub(super) struct Slot<P> {
    id: EntryId,
    description: Cow<'static, str>,
    source: Cow<'static, str>,
    job_type: JobType,
    /// The job's coalescing key; `None` never merges.
    key: Option<u64>,
    /// When the entry's latest job was recorded (merging moves it).
    recorded_at: Instant,
    /// How many recorded jobs this entry stands for (more than one once merged).
    jobs: u32,
    /// `None` only while an operation holds it (invariant 4).
    payload: Option<P>,
}

/// A completed job to record.
pub(super) struct NewEntry<P> {
    pub(super) description: Cow<'static, str>,
    pub(super) source: Cow<'static, str>,
    pub(super) job_type: JobType,
    pub(super) key: Option<u64>,
    pub(super) payload: P,
}

/// What a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recorded {
    /// The entry that holds the job (an existing one if it was merged).
    pub(super) id: EntryId,
    /// `true` if the job was merged into the previous entry.
    pub(super) merged: bool,
}

/// The history of one undo stack.
pub(super) struct Stack<P> {
    entries: VecDeque<Slot<P>>,
    position: usize,
    limit: usize,
    window: Option<Duration>,
    dropped: u64,
    truncated: u64,
    undelivered: u64,
    next_id: u64,
    busy: Option<HistoryAction>,
    open: Option<EntryId>,
}

impl<P: Absorb> Stack<P> {
    /// An empty history; `limit` must be at least 1 (the builder checks it).
    pub(super) fn new(limit: usize, window: Option<Duration>) -> Self {
        Self {
            entries: VecDeque::new(),
            position: 0,
            limit: limit.max(1),
            window,
            dropped: 0,
            truncated: 0,
            undelivered: 0,
            next_id: 1,
            busy: None,
            open: None,
        }
    }

    /// Records a completed job at the cursor: the redo branch is discarded, the job merges
    /// into the top entry if it may (see [`may_merge`](Self::may_merge)) or becomes a new
    /// entry, and the oldest entry is dropped if the history is over its limit.
    ///
    /// The caller checks [`is_busy`](Self::is_busy) first: nothing is recorded while an
    /// operation runs (invariant 3).
    pub(super) fn record(&mut self, new: NewEntry<P>, now: Instant) -> Recorded {
        let discarded = self.entries.len() - self.position;
        if discarded > 0 {
            self.entries.truncate(self.position);
            self.truncated += discarded as u64;
            self.open = None;
        }
        let new = match self.may_merge(&new, now) {
            true => match self.merge(new, now) {
                Ok(recorded) => return recorded,
                Err(new) => new,
            },
            false => new,
        };
        let id = EntryId::new(self.next_id);
        self.next_id += 1;
        self.entries.push_back(Slot {
            id,
            description: new.description,
            source: new.source,
            job_type: new.job_type,
            key: new.key,
            recorded_at: now,
            jobs: 1,
            payload: Some(new.payload),
        });
        while self.entries.len() > self.limit {
            // Every entry is done after a record: the oldest is below the cursor.
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.position = self.entries.len();
        self.open = Some(id);
        Recorded { id, merged: false }
    }

    /// Whether `new` may merge into the top entry: coalescing is on, the top entry was the
    /// last thing recorded (no undo or redo since), and it has the same job type, the same
    /// key (not `None`) and the same source, recorded no longer than the window ago.
    fn may_merge(&self, new: &NewEntry<P>, now: Instant) -> bool {
        let (Some(window), Some(top)) = (self.window, self.entries.back()) else {
            return false;
        };
        self.open == Some(top.id)
            && new.key.is_some()
            && top.key == new.key
            && top.job_type == new.job_type
            && top.source == new.source
            && now.saturating_duration_since(top.recorded_at) <= window
    }

    fn merge(&mut self, new: NewEntry<P>, now: Instant) -> Result<Recorded, NewEntry<P>> {
        let Some(top) = self.entries.back_mut() else {
            return Err(new);
        };
        let Some(payload) = top.payload.as_mut() else {
            return Err(new);
        };
        let NewEntry {
            description,
            source,
            job_type,
            key,
            payload: later,
        } = new;
        match payload.absorb(later) {
            Ok(()) => {
                top.description = description;
                top.recorded_at = now;
                top.jobs = top.jobs.saturating_add(1);
                Ok(Recorded {
                    id: top.id,
                    merged: true,
                })
            }
            Err(later) => Err(NewEntry {
                description,
                source,
                job_type,
                key,
                payload: later,
            }),
        }
    }

    /// Marks an operation as running; `false` if one already is (invariant 3).
    pub(super) fn begin(&mut self, action: HistoryAction) -> bool {
        if self.busy.is_some() {
            return false;
        }
        self.busy = Some(action);
        self.open = None;
        true
    }

    /// Returns `true` while an operation runs.
    pub(super) fn is_busy(&self) -> bool {
        self.busy.is_some()
    }

    /// Ends the running operation.
    pub(super) fn end(&mut self) {
        self.busy = None;
    }

    /// Returns the cursor: how many entries are done.
    pub(super) fn position(&self) -> usize {
        self.position
    }

    /// Returns how many entries there are.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Takes the payload of entry `index` out of its slot, with a view of the entry.
    pub(super) fn take(&mut self, index: usize) -> Option<(P, HistoryEntry)> {
        let view = self.entry_view(index)?;
        let payload = self.entries.get_mut(index)?.payload.take()?;
        Some((payload, view))
    }

    /// Puts a payload taken with [`take`](Self::take) back.
    pub(super) fn put(&mut self, index: usize, payload: P) {
        if let Some(slot) = self.entries.get_mut(index) {
            slot.payload = Some(payload);
        }
    }

    /// Entry `index` (done) was undone: it becomes the first undone entry. Entries above it
    /// that stayed done (skipped by an `undo_to`) move below it, so invariant 1 holds.
    /// Returns the entry's new view.
    pub(super) fn undone(&mut self, index: usize) -> Option<HistoryEntry> {
        if index >= self.position {
            return None;
        }
        let slot = self.entries.remove(index)?;
        self.position -= 1;
        self.entries.insert(self.position, slot);
        self.entry_view(self.position)
    }

    /// The entry at the cursor was redone: the cursor moves past it. Returns its new view.
    pub(super) fn redone(&mut self) -> Option<HistoryEntry> {
        if self.position >= self.entries.len() {
            return None;
        }
        self.position += 1;
        self.entry_view(self.position - 1)
    }

    /// Counts an undo or redo event the bus did not take.
    pub(super) fn undelivered(&mut self) {
        self.undelivered += 1;
    }

    fn entry_view(&self, index: usize) -> Option<HistoryEntry> {
        let slot = self.entries.get(index)?;
        Some(HistoryEntry {
            id: slot.id,
            description: slot.description.clone(),
            source: slot.source.clone(),
            job_type: slot.job_type,
            state: if index < self.position {
                EntryState::Done
            } else {
                EntryState::Undone
            },
            jobs: slot.jobs,
            recorded_at: slot.recorded_at,
        })
    }

    /// Returns the view of the whole history.
    pub(super) fn view(&self) -> History {
        let entries: Vec<HistoryEntry> = (0..self.entries.len())
            .filter_map(|i| self.entry_view(i))
            .collect();
        History {
            entries: Arc::from(entries),
            position: self.position,
            limit: self.limit,
            dropped: self.dropped,
            truncated: self.truncated,
            undelivered_events: self.undelivered,
            busy: self.busy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A payload that lists the jobs merged into it.
    #[derive(Debug, PartialEq)]
    struct Jobs(Vec<u32>);

    impl Absorb for Jobs {
        fn absorb(&mut self, later: Self) -> Result<(), Self> {
            if later.0.contains(&0) {
                return Err(later); // 0 refuses to merge
            }
            self.0.extend(later.0);
            Ok(())
        }
    }

    struct A;
    impl crate::job::Job for A {
        type Output = ();
    }
    struct B;
    impl crate::job::Job for B {
        type Output = ();
    }

    fn new(job: u32, key: Option<u64>) -> NewEntry<Jobs> {
        NewEntry {
            description: alloc::format!("job {job}").into(),
            source: "test".into(),
            job_type: JobType::of::<A>(),
            key,
            payload: Jobs(vec![job]),
        }
    }

    fn at(ms: u64) -> Instant {
        Instant::from_elapsed(Duration::from_millis(ms))
    }

    fn descriptions(stack: &Stack<Jobs>) -> Vec<(alloc::string::String, EntryState)> {
        stack
            .view()
            .entries
            .iter()
            .map(|e| (e.description.clone().into_owned(), e.state))
            .collect()
    }

    fn record(stack: &mut Stack<Jobs>, job: u32) -> Recorded {
        stack.record(new(job, None), at(0))
    }

    #[test]
    fn records_move_the_cursor_and_ids_increase() {
        let mut stack = Stack::new(10, None);
        let a = record(&mut stack, 1);
        let b = record(&mut stack, 2);
        assert!(a.id < b.id);
        assert!(!a.merged && !b.merged);
        assert_eq!((stack.position(), stack.len()), (2, 2));
    }

    #[test]
    fn a_record_after_undos_truncates_the_redo_branch() {
        let mut stack = Stack::new(10, None);
        for job in 1..=3 {
            record(&mut stack, job);
        }
        assert!(stack.begin(HistoryAction::Undo));
        stack.undone(2).unwrap();
        stack.undone(1).unwrap();
        stack.end();
        assert_eq!(stack.position(), 1);
        record(&mut stack, 4);
        assert_eq!(
            descriptions(&stack),
            [
                ("job 1".into(), EntryState::Done),
                ("job 4".into(), EntryState::Done)
            ]
        );
        let view = stack.view();
        assert_eq!(
            (view.truncated, view.position, view.can_redo()),
            (2, 2, false)
        );
    }

    #[test]
    fn the_oldest_entry_is_dropped_past_the_limit_and_counted() {
        let mut stack = Stack::new(2, None);
        for job in 1..=5 {
            record(&mut stack, job);
        }
        let view = stack.view();
        assert_eq!(view.dropped, 3);
        assert_eq!(view.position, 2);
        assert_eq!(descriptions(&stack)[0].0, "job 4");
    }

    #[test]
    fn a_limit_of_zero_is_held_at_one() {
        // The builder refuses 0; the state machine never trusts it either.
        let mut stack = Stack::new(0, None);
        record(&mut stack, 1);
        record(&mut stack, 2);
        assert_eq!((stack.len(), stack.view().limit), (1, 1));
    }

    #[test]
    fn records_merge_within_the_window_with_the_same_type_key_and_source() {
        let mut stack = Stack::new(10, Some(Duration::from_millis(100)));
        let first = stack.record(new(1, Some(7)), at(0));
        let second = stack.record(new(2, Some(7)), at(100));
        assert_eq!(
            second,
            Recorded {
                id: first.id,
                merged: true
            }
        );
        // The window slides: measured from the latest merged record.
        assert!(stack.record(new(3, Some(7)), at(200)).merged);
        assert_eq!(stack.len(), 1);
        let entry = &stack.view().entries[0];
        assert_eq!((entry.jobs, &*entry.description), (3, "job 3"));
        let (payload, _) = stack.take(0).unwrap();
        assert_eq!(payload, Jobs(vec![1, 2, 3]));
    }

    #[test]
    fn records_do_not_merge_past_the_window_or_across_keys_types_sources_or_undos() {
        let window = Some(Duration::from_millis(100));
        let mut stack = Stack::new(20, window);
        stack.record(new(1, Some(7)), at(0));
        // Too late.
        assert!(!stack.record(new(2, Some(7)), at(101)).merged);
        // Another key, no key.
        assert!(!stack.record(new(3, Some(8)), at(101)).merged);
        assert!(!stack.record(new(4, None), at(101)).merged);
        assert!(!stack.record(new(5, None), at(101)).merged);
        // Another type.
        stack.record(new(6, Some(9)), at(101));
        let other_type = NewEntry {
            job_type: JobType::of::<B>(),
            ..new(7, Some(9))
        };
        assert!(!stack.record(other_type, at(101)).merged);
        // Another source.
        stack.record(new(8, Some(10)), at(101));
        let other_source = NewEntry {
            source: "remote".into(),
            ..new(9, Some(10))
        };
        assert!(!stack.record(other_source, at(101)).merged);
        // An undo in between.
        stack.record(new(10, Some(11)), at(101));
        assert!(stack.begin(HistoryAction::Undo));
        stack.end();
        assert!(!stack.record(new(11, Some(11)), at(101)).merged);
        // A payload that refuses.
        assert!(!stack.record(new(0, Some(11)), at(101)).merged);
        assert_eq!(stack.len(), 12, "one entry per record: nothing merged");
    }

    #[test]
    fn one_operation_at_a_time() {
        let mut stack = Stack::new(10, None);
        record(&mut stack, 1);
        assert!(stack.begin(HistoryAction::Undo));
        assert!(!stack.begin(HistoryAction::Redo));
        assert_eq!(stack.view().busy, Some(HistoryAction::Undo));
        assert!(stack.is_busy());
        stack.end();
        assert!(!stack.is_busy());
        assert!(stack.begin(HistoryAction::Redo));
    }

    #[test]
    fn an_undo_below_skipped_entries_moves_them_below_the_cursor() {
        let mut stack = Stack::new(10, None);
        for job in 1..=4 {
            record(&mut stack, job);
        }
        // job 4 could not be undone (skipped); job 3 then is.
        assert!(stack.begin(HistoryAction::Undo));
        let view = stack.undone(2).unwrap();
        assert_eq!(
            (&*view.description, view.state),
            ("job 3", EntryState::Undone)
        );
        assert_eq!(stack.position(), 3);
        assert_eq!(
            descriptions(&stack),
            [
                ("job 1".into(), EntryState::Done),
                ("job 2".into(), EntryState::Done),
                ("job 4".into(), EntryState::Done),
                ("job 3".into(), EntryState::Undone),
            ]
        );
        // Redo takes the entry at the cursor.
        assert_eq!(&*stack.redone().unwrap().description, "job 3");
        assert!(stack.redone().is_none(), "nothing left to redo");
        assert!(stack.undone(4).is_none(), "only done entries are undone");
    }

    #[test]
    fn take_and_put_hold_a_payload_out_of_its_slot() {
        let mut stack = Stack::new(10, Some(Duration::from_secs(1)));
        stack.record(new(1, Some(1)), at(0));
        let (payload, view) = stack.take(0).unwrap();
        assert_eq!(view.state, EntryState::Done);
        assert!(stack.take(0).is_none());
        stack.put(0, payload);
        assert!(stack.take(0).is_some());
        assert!(stack.take(5).is_none());
    }
}
