//! The failure circuit breaker per job type.

use alloc::collections::VecDeque;
use core::fmt;
use core::time::Duration;

use crate::runtime::Instant;

/// When a job type's breaker opens, and for how long.
///
/// ```text
///  Closed ──(threshold failures within `window`)──▶ Open ──(cooldown elapsed, next dispatch)──▶ HalfOpen
///    ▲                                                ▲                                              │
///    └────────────── trial succeeds ──────────────────┼──────────── trial fails ─────────────────────┘
/// ```
///
/// While open, dispatches of the job type are rejected at once with
/// [`Rejection::CircuitOpen`](crate::Rejection::CircuitOpen), without running anything. After
/// the cooldown, the next dispatch is the one trial (others are still rejected while it runs);
/// its success closes the breaker, its failure opens it again. Failed and timed-out jobs count
/// as failures; cancelled and rejected ones do not. Off by default; configured per job type on
/// the dispatcher; every transition is reported to the observers
/// ([`Observer::on_breaker_transition`](crate::Observer::on_breaker_transition)).
///
/// ```
/// use core::time::Duration;
/// use orchestrator_core::BreakerConfig;
///
/// let config = BreakerConfig::new(5, Duration::from_secs(10), Duration::from_secs(30)).unwrap();
/// assert_eq!(config.threshold(), 5);
/// assert!(BreakerConfig::new(0, Duration::from_secs(10), Duration::from_secs(30)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    threshold: u32,
    window: Duration,
    cooldown: Duration,
}

impl BreakerConfig {
    /// Opens after `threshold` failures within `window`; stays open for `cooldown`.
    ///
    /// # Errors
    ///
    /// [`InvalidBreakerConfig`] if the threshold, the window or the cooldown is zero.
    pub fn new(
        threshold: u32,
        window: Duration,
        cooldown: Duration,
    ) -> Result<Self, InvalidBreakerConfig> {
        if threshold == 0 || window.is_zero() || cooldown.is_zero() {
            return Err(InvalidBreakerConfig);
        }
        Ok(Self {
            threshold,
            window,
            cooldown,
        })
    }

    /// Returns the failure threshold.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Returns the window in which failures are counted.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Returns how long the breaker stays open.
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }
}

/// The error returned by [`BreakerConfig::new`] for a zero threshold, window or cooldown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBreakerConfig;

impl fmt::Display for InvalidBreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("breaker threshold, window and cooldown must all be non-zero")
    }
}

impl core::error::Error for InvalidBreakerConfig {}

/// A breaker's state, as reported to observers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Dispatches run.
    Closed,
    /// Dispatches are rejected.
    Open,
    /// One trial dispatch runs; the others are rejected.
    HalfOpen,
}

/// The breaker of one job type.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    state: Phase,
    failures: VecDeque<Instant>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { trial_running: bool },
}

/// What a dispatch may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Run, and report the outcome.
    Run { transition: Option<BreakerState> },
    /// Rejected: the breaker is open.
    Reject,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Phase::Closed,
            failures: VecDeque::new(),
        }
    }

    pub(crate) fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            Phase::Closed => Admission::Run { transition: None },
            Phase::Open { until } if now >= until => {
                self.state = Phase::HalfOpen {
                    trial_running: true,
                };
                Admission::Run {
                    transition: Some(BreakerState::HalfOpen),
                }
            }
            Phase::Open { .. }
            | Phase::HalfOpen {
                trial_running: true,
            } => Admission::Reject,
            Phase::HalfOpen {
                trial_running: false,
            } => {
                self.state = Phase::HalfOpen {
                    trial_running: true,
                };
                Admission::Run { transition: None }
            }
        }
    }

    /// Records a finished dispatch (`failed`: it counts as a failure; `None`: neutral, e.g.
    /// cancelled); returns the transition it caused.
    pub(crate) fn record(&mut self, failed: Option<bool>, now: Instant) -> Option<BreakerState> {
        match (self.state, failed) {
            (Phase::HalfOpen { .. }, Some(false)) => {
                self.state = Phase::Closed;
                self.failures.clear();
                Some(BreakerState::Closed)
            }
            (Phase::HalfOpen { .. }, Some(true)) => {
                self.open(now);
                Some(BreakerState::Open)
            }
            (Phase::HalfOpen { .. }, None) => {
                // The trial said nothing (cancelled): let the next dispatch try.
                self.state = Phase::HalfOpen {
                    trial_running: false,
                };
                None
            }
            (Phase::Closed, Some(true)) => {
                self.failures.push_back(now);
                while self
                    .failures
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) >= self.config.window)
                {
                    self.failures.pop_front();
                }
                if self.failures.len() >= self.config.threshold as usize {
                    self.open(now);
                    Some(BreakerState::Open)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn open(&mut self, now: Instant) {
        self.failures.clear();
        self.state = Phase::Open {
            until: now.saturating_add(self.config.cooldown),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_elapsed(Duration::from_millis(ms))
    }

    #[test]
    fn opens_after_threshold_failures_in_the_window_then_half_opens_after_cooldown() {
        let config = BreakerConfig::new(2, Duration::from_secs(1), Duration::from_secs(5)).unwrap();
        let mut b = Breaker::new(config);
        assert_eq!(b.admit(at(0)), Admission::Run { transition: None });
        assert_eq!(b.record(Some(true), at(0)), None);
        // Outside the window: the first failure no longer counts.
        assert_eq!(b.record(Some(true), at(1500)), None);
        assert_eq!(b.record(Some(true), at(1600)), Some(BreakerState::Open));
        assert_eq!(b.admit(at(2000)), Admission::Reject);
        assert_eq!(
            b.admit(at(6600)),
            Admission::Run {
                transition: Some(BreakerState::HalfOpen)
            }
        );
        assert_eq!(b.admit(at(6601)), Admission::Reject, "one trial at a time");
        assert_eq!(b.record(Some(true), at(6700)), Some(BreakerState::Open));
        assert_eq!(b.admit(at(11_699)), Admission::Reject);
        assert!(matches!(b.admit(at(11_700)), Admission::Run { .. }));
        assert_eq!(
            b.record(Some(false), at(11_800)),
            Some(BreakerState::Closed)
        );
        assert_eq!(b.admit(at(11_801)), Admission::Run { transition: None });
    }

    #[test]
    fn a_cancelled_trial_lets_the_next_dispatch_try() {
        let config = BreakerConfig::new(1, Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        let mut b = Breaker::new(config);
        b.record(Some(true), at(0));
        assert!(matches!(b.admit(at(1000)), Admission::Run { .. }));
        assert_eq!(b.record(None, at(1001)), None);
        assert_eq!(b.admit(at(1002)), Admission::Run { transition: None });
    }

    #[test]
    fn zero_settings_are_rejected() {
        let s = Duration::from_secs(1);
        assert!(BreakerConfig::new(0, s, s).is_err());
        assert!(BreakerConfig::new(1, Duration::ZERO, s).is_err());
        assert!(BreakerConfig::new(1, s, Duration::ZERO).is_err());
    }
}
