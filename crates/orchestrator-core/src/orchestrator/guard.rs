//! Loop protection: the [`LoopGuard`] of an orchestrator.
//!
//! An orchestrator that dispatches a job whenever it sees that job's own event would loop
//! forever, and so would two orchestrators that answer each other's events. The guard works
//! by causation, not by rate: every event carries its causal depth (see
//! [`Event::causal_depth`](crate::Event::causal_depth)), which grows by one each time an
//! orchestrator reacts to an event by dispatching or publishing. An orchestrator does not
//! handle an event deeper than its guard's limit (default [`DEFAULT_MAX_DEPTH`]): the chain is
//! cut there, and nothing else is ever dropped, so a burst of independent events (a thousand
//! jobs dispatched at once) is delivered in full.
//!
//! # Rate limits (lossy, opt-in)
//!
//! [`LoopGuard::with_rate_limit`] and [`LoopGuard::with_rate_limit_for`] add per-type limits
//! of events handled per one-second window of the runtime clock. They are **lossy**: past the
//! limit, events of that type are not handled by this orchestrator, loop or not. Use them only
//! to shed load you can afford to lose. [`JobLifecycle`](crate::JobLifecycle) events are
//! counted per variant, so a job's progress cannot use up its terminal event's budget.
//!
//! # Every drop is visible
//!
//! A dropped event is counted per orchestrator and per payload type
//! ([`OrchestratorHandle::dropped_events`](crate::OrchestratorHandle::dropped_events)),
//! reported to the dispatcher's observers with its causal chain
//! ([`Observer::on_event_dropped`](crate::Observer::on_event_dropped)), and given to the
//! orchestrator itself ([`Orchestrator::on_dropped`](crate::Orchestrator::on_dropped)). Job
//! bookkeeping is never skipped: a tracked job's terminal event ends its tracking even when the
//! guard keeps it from the handler.

use core::any::TypeId;
use core::num::NonZeroU32;
use core::time::Duration;

use hashbrown::HashMap;

use crate::observer::DropReason;
use crate::runtime::Instant;
use crate::typemap::{TypeMap, type_map};

/// The default causal depth limit: an orchestrator handles events of depth 0 to 50.
pub const DEFAULT_MAX_DEPTH: u32 = 50;

const WINDOW: Duration = Duration::from_secs(1);

/// An orchestrator's loop protection: a causal depth limit, and optional (lossy) rate limits.
///
/// ```
/// use core::num::NonZeroU32;
/// use orchestrator_core::LoopGuard;
///
/// struct Tick;
/// let guard = LoopGuard::new().max_depth(10);
/// assert_eq!(guard.depth_limit(), Some(10));
/// assert_eq!(guard.rate_limit_for::<Tick>(), None); // no rate limit unless asked for
///
/// let lossy = LoopGuard::new().with_rate_limit_for::<Tick>(NonZeroU32::new(100).unwrap());
/// assert_eq!(lossy.rate_limit_for::<Tick>().map(|n| n.get()), Some(100));
/// assert_eq!(LoopGuard::unlimited().depth_limit(), None);
/// ```
#[derive(Debug, Clone)]
pub struct LoopGuard {
    max_depth: Option<u32>,
    default_rate: Option<NonZeroU32>,
    rates: TypeMap<NonZeroU32>,
}

impl Default for LoopGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl LoopGuard {
    /// The default guard: chains deeper than [`DEFAULT_MAX_DEPTH`] are cut; no rate limit.
    pub fn new() -> Self {
        Self {
            max_depth: Some(DEFAULT_MAX_DEPTH),
            default_rate: None,
            rates: type_map(),
        }
    }

    /// A guard that cuts nothing: no depth limit, no rate limit. A loop then runs forever.
    pub fn unlimited() -> Self {
        Self {
            max_depth: None,
            ..Self::new()
        }
    }

    /// Cuts chains deeper than `depth`: events of causal depth `0..=depth` are handled.
    pub fn max_depth(mut self, depth: u32) -> Self {
        self.max_depth = Some(depth);
        self
    }

    /// Returns the depth limit, if any.
    pub fn depth_limit(&self) -> Option<u32> {
        self.max_depth
    }

    /// Limits every payload type without its own limit to `per_second` handled events per
    /// one-second window. **Lossy**: events past the limit are dropped (counted and reported).
    pub fn with_rate_limit(mut self, per_second: NonZeroU32) -> Self {
        self.default_rate = Some(per_second);
        self
    }

    /// Limits payload type `P` to `per_second` handled events per one-second window.
    /// **Lossy**: events past the limit are dropped (counted and reported).
    pub fn with_rate_limit_for<P: 'static>(mut self, per_second: NonZeroU32) -> Self {
        self.rates.insert(TypeId::of::<P>(), per_second);
        self
    }

    /// Returns the rate limit that applies to payload type `P`, if any.
    pub fn rate_limit_for<P: 'static>(&self) -> Option<NonZeroU32> {
        self.rate(TypeId::of::<P>())
    }

    fn rate(&self, type_id: TypeId) -> Option<NonZeroU32> {
        self.rates.get(&type_id).copied().or(self.default_rate)
    }

    fn has_rates(&self) -> bool {
        self.default_rate.is_some() || !self.rates.is_empty()
    }
}

/// The counting state of one orchestrator's guard (owned by its event loop: no lock).
#[derive(Debug)]
pub(crate) struct GuardState {
    config: LoopGuard,
    windows: HashMap<(TypeId, u8), Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

impl GuardState {
    pub(crate) fn new(config: LoopGuard) -> Self {
        Self {
            config,
            windows: HashMap::new(),
        }
    }

    /// Decides whether to handle an event of causal depth `depth`, payload type `type_id`
    /// (and sub-kind `kind`, for payload types whose variants are counted apart) at `now`.
    /// The type and the time are only asked for when a rate limit applies.
    #[inline]
    pub(crate) fn check(
        &mut self,
        depth: u32,
        type_id: impl FnOnce() -> TypeId,
        kind: u8,
        now: impl FnOnce() -> Instant,
    ) -> Result<(), DropReason> {
        if let Some(limit) = self.config.max_depth {
            if depth > limit {
                return Err(DropReason::TooDeep { limit });
            }
        }
        if !self.config.has_rates() {
            return Ok(());
        }
        self.check_rate(type_id(), kind, now)
    }

    /// The rate-limit part of [`check`](Self::check).
    fn check_rate(
        &mut self,
        type_id: TypeId,
        kind: u8,
        now: impl FnOnce() -> Instant,
    ) -> Result<(), DropReason> {
        let Some(limit) = self.config.rate(type_id) else {
            return Ok(());
        };
        let now = now();
        let window = self.windows.entry((type_id, kind)).or_insert(Window {
            start: now,
            count: 0,
        });
        if now.saturating_duration_since(window.start) >= WINDOW {
            *window = Window {
                start: now,
                count: 0,
            };
        }
        window.count = window.count.saturating_add(1);
        if window.count <= limit.get() {
            Ok(())
        } else {
            Err(DropReason::RateLimited { limit: limit.get() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_elapsed(Duration::from_millis(ms))
    }

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    #[test]
    fn cuts_by_depth_only_by_default() {
        let mut g = GuardState::new(LoopGuard::new().max_depth(3));
        let t = TypeId::of::<u8>();
        for i in 0..10_000 {
            assert_eq!(
                g.check(i % 4, || t, 0, || at(0)),
                Ok(()),
                "a burst is never cut"
            );
        }
        assert_eq!(
            g.check(4, || t, 0, || at(0)),
            Err(DropReason::TooDeep { limit: 3 })
        );
        let mut unlimited = GuardState::new(LoopGuard::unlimited());
        assert_eq!(unlimited.check(u32::MAX, || t, 0, || at(0)), Ok(()));
    }

    #[test]
    fn rate_limits_are_opt_in_per_window() {
        struct A;
        struct B;
        let mut g = GuardState::new(
            LoopGuard::new()
                .with_rate_limit(n(3))
                .with_rate_limit_for::<B>(n(1)),
        );
        let a = TypeId::of::<A>();
        let b = TypeId::of::<B>();
        let verdicts: alloc::vec::Vec<_> =
            (0..5).map(|i| g.check(0, || a, 0, || at(i * 10))).collect();
        let limited = Err(DropReason::RateLimited { limit: 3 });
        assert_eq!(verdicts, [Ok(()), Ok(()), Ok(()), limited, limited]);
        assert_eq!(
            g.check(0, || b, 0, || at(60)),
            Ok(()),
            "types are counted apart"
        );
        assert_eq!(
            g.check(0, || b, 0, || at(70)),
            Err(DropReason::RateLimited { limit: 1 })
        );
        assert_eq!(g.check(0, || a, 0, || at(1000)), Ok(()), "a new window");
        assert_eq!(
            g.check(0, || b, 1, || at(71)),
            Ok(()),
            "another kind, another window"
        );
    }
}
