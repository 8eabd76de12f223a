//! The event storm guard (the seeds' "circuit breaker"): loop protection per orchestrator.
//!
//! An orchestrator that dispatches a job whenever it sees that job's own event would loop
//! forever. The guard counts, per payload type, the events an orchestrator handles in
//! one-second windows of the runtime clock; past the limit, further events of that type are
//! dropped *for this orchestrator only* (other subscribers of the bus still get them), and the
//! first drop of each window is reported to the dispatcher's observers
//! ([`Observer::on_event_dropped`](crate::Observer::on_event_dropped)). A window starts at the
//! first event of its type after the previous window ended.
//!
//! [`JobLifecycle`](crate::JobLifecycle) events are counted per variant (`Started`,
//! `Progress`, `Retrying` and each terminal kind apart), so that a job reporting progress many
//! times a second cannot use up the budget of its own terminal event; a per-type limit for
//! `JobLifecycle` applies to each variant's window. Job bookkeeping is never dropped: a tracked
//! job's terminal event still ends its tracking even when the guard keeps it from the handler.

use core::any::TypeId;
use core::num::NonZeroU32;
use core::time::Duration;

use hashbrown::HashMap;

use crate::runtime::Instant;

/// The default limit: 50 events of one type per second.
pub const DEFAULT_LIMIT: NonZeroU32 = match NonZeroU32::new(50) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

const WINDOW: Duration = Duration::from_secs(1);

/// Per-type limits of events an orchestrator handles per one-second window.
///
/// A zero limit cannot be expressed (`NonZeroU32`); `u32::MAX` effectively turns the guard off
/// for a type, and [`StormGuard::disabled`] for all.
///
/// ```
/// use core::num::NonZeroU32;
/// use orchestrator_core::StormGuard;
///
/// struct Tick;
/// let guard = StormGuard::new()
///     .with_default_limit(NonZeroU32::new(100).unwrap())
///     .with_limit_for::<Tick>(NonZeroU32::new(1000).unwrap());
/// assert_eq!(guard.limit_for::<Tick>().get(), 1000);
/// assert_eq!(guard.limit_for::<String>().get(), 100);
/// ```
#[derive(Debug, Clone)]
pub struct StormGuard {
    default: NonZeroU32,
    overrides: HashMap<TypeId, NonZeroU32>,
    enabled: bool,
}

impl Default for StormGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl StormGuard {
    /// The default guard: 50 events per type per second.
    pub fn new() -> Self {
        Self {
            default: DEFAULT_LIMIT,
            overrides: HashMap::new(),
            enabled: true,
        }
    }

    /// A guard that never drops anything.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::new()
        }
    }

    /// Sets the limit for every type without its own.
    pub fn with_default_limit(mut self, limit: NonZeroU32) -> Self {
        self.default = limit;
        self
    }

    /// Sets the limit for events whose payload is a `P`.
    pub fn with_limit_for<P: 'static>(mut self, limit: NonZeroU32) -> Self {
        self.overrides.insert(TypeId::of::<P>(), limit);
        self
    }

    /// Returns the limit that applies to payload type `P`.
    pub fn limit_for<P: 'static>(&self) -> NonZeroU32 {
        self.limit(TypeId::of::<P>())
    }

    /// Returns `true` unless the guard was disabled.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    fn limit(&self, type_id: TypeId) -> NonZeroU32 {
        self.overrides
            .get(&type_id)
            .copied()
            .unwrap_or(self.default)
    }
}

/// What the guard decided for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Admit,
    /// Dropped; `report` on the first drop of the window; `limit` is the limit exceeded.
    Drop {
        report: bool,
        limit: u32,
    },
}

/// The counting state of one orchestrator's guard (owned by its event loop: no lock).
#[derive(Debug)]
pub(crate) struct GuardState {
    config: StormGuard,
    windows: HashMap<(TypeId, u8), Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
    reported: bool,
}

impl GuardState {
    pub(crate) fn new(config: StormGuard) -> Self {
        Self {
            config,
            windows: HashMap::new(),
        }
    }

    /// Counts one event of payload type `type_id` (and sub-kind `kind`, for payload types
    /// whose variants are counted apart) at `now`.
    pub(crate) fn check(
        &mut self,
        type_id: TypeId,
        kind: u8,
        now: impl FnOnce() -> Instant,
    ) -> Verdict {
        if !self.config.enabled {
            return Verdict::Admit;
        }
        let now = now();
        let limit = self.config.limit(type_id).get();
        let window = self.windows.entry((type_id, kind)).or_insert(Window {
            start: now,
            count: 0,
            reported: false,
        });
        if now.saturating_duration_since(window.start) >= WINDOW {
            *window = Window {
                start: now,
                count: 0,
                reported: false,
            };
        }
        window.count = window.count.saturating_add(1);
        if window.count <= limit {
            return Verdict::Admit;
        }
        let report = !window.reported;
        window.reported = true;
        Verdict::Drop { report, limit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_elapsed(Duration::from_millis(ms))
    }

    #[test]
    fn admits_up_to_the_limit_per_window_and_reports_once() {
        struct A;
        struct B;
        let mut g = GuardState::new(
            StormGuard::new()
                .with_default_limit(NonZeroU32::new(3).unwrap())
                .with_limit_for::<B>(NonZeroU32::new(1).unwrap()),
        );
        let a = TypeId::of::<A>();
        let b = TypeId::of::<B>();
        let verdicts: alloc::vec::Vec<_> = (0..6).map(|i| g.check(a, 0, || at(i * 10))).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Admit,
                Verdict::Admit,
                Verdict::Admit,
                Verdict::Drop {
                    report: true,
                    limit: 3
                },
                Verdict::Drop {
                    report: false,
                    limit: 3
                },
                Verdict::Drop {
                    report: false,
                    limit: 3
                },
            ]
        );
        assert_eq!(
            g.check(b, 0, || at(60)),
            Verdict::Admit,
            "types are counted apart"
        );
        assert_eq!(
            g.check(b, 0, || at(70)),
            Verdict::Drop {
                report: true,
                limit: 1
            }
        );
        assert_eq!(
            g.check(a, 0, || at(999)),
            Verdict::Drop {
                report: false,
                limit: 3
            }
        );
        assert_eq!(g.check(a, 0, || at(1000)), Verdict::Admit, "a new window");
        assert_eq!(
            g.check(b, 0, || at(1059)),
            Verdict::Drop {
                report: false,
                limit: 1
            },
            "B's window started at 60"
        );
        assert_eq!(g.check(b, 0, || at(1060)), Verdict::Admit);
    }

    #[test]
    fn kinds_of_one_type_have_their_own_windows() {
        let mut g = GuardState::new(StormGuard::new().with_default_limit(NonZeroU32::MIN));
        let t = TypeId::of::<u8>();
        assert_eq!(g.check(t, 1, || at(0)), Verdict::Admit);
        assert_eq!(
            g.check(t, 1, || at(1)),
            Verdict::Drop {
                report: true,
                limit: 1
            }
        );
        assert_eq!(
            g.check(t, 2, || at(2)),
            Verdict::Admit,
            "another kind, another window"
        );
    }

    #[test]
    fn disabled_guard_admits_everything() {
        let mut g = GuardState::new(StormGuard::disabled());
        for i in 0..10_000 {
            assert_eq!(g.check(TypeId::of::<u8>(), 0, || at(i % 5)), Verdict::Admit);
        }
    }
}
