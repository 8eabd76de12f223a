//! Retry policies: how many attempts, how long to wait between them, which errors to retry.

use alloc::boxed::Box;
use core::error::Error;
use core::fmt;
use core::time::Duration;

use crate::sync::Arc;

type Predicate = dyn Fn(&(dyn Error + 'static), u32) -> bool + Send + Sync;

/// When and how often a failed job is tried again.
///
/// A job with a [`RetryPolicy`] runs at most `max_retries + 1` attempts. Before retry `n`
/// (0-based) the pipeline sleeps `base_delay * multiplier^n`, capped at `max_delay`, then
/// shortened by up to `jitter` of itself. The arithmetic saturates: retry 50 or `u32::MAX`
/// gives `max_delay`, never an overflow or a panic. The sleeps count against the job's total
/// timeout. Cancellation and the total timeout are never retried; a per-attempt timeout and an
/// executor error are, subject to [`RetryPolicy::retry_if`]. Panics are never retried.
///
/// Policies are validated when they are built: [`RetryPolicy::fixed`] and
/// [`RetryPolicy::exponential`] are valid by construction, [`RetryPolicy::builder`] checks its
/// inputs in [`build`](RetryPolicyBuilder::build).
///
/// ```
/// use core::time::Duration;
/// use orchestrator_core::RetryPolicy;
///
/// let policy = RetryPolicy::builder()
///     .max_retries(5)
///     .base_delay(Duration::from_millis(100))
///     .multiplier(2.0)
///     .max_delay(Duration::from_secs(1))
///     .build()
///     .unwrap();
/// assert_eq!(policy.max_attempts(), 6);
/// assert_eq!(policy.delay(0), Duration::from_millis(100));
/// assert_eq!(policy.delay(2), Duration::from_millis(400));
/// assert_eq!(policy.delay(u32::MAX), Duration::from_secs(1)); // capped, no overflow
///
/// assert!(RetryPolicy::builder().multiplier(f64::NAN).build().is_err());
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    max_retries: u32,
    base_delay: Duration,
    multiplier: f64,
    max_delay: Duration,
    jitter: f64,
    retry_if: Option<Arc<Predicate>>,
}

impl RetryPolicy {
    /// Retries up to `max_retries` times, waiting `delay` before each retry.
    ///
    /// Every input is valid (unlike the [`builder`](Self::builder)'s, these cannot
    /// contradict each other): waits saturate, so `Duration::MAX` waits until the job's total
    /// budget or a cancellation ends it, and `u32::MAX` retries never overflow.
    pub fn fixed(max_retries: u32, delay: Duration) -> Self {
        Self {
            max_retries,
            base_delay: delay,
            multiplier: 1.0,
            max_delay: delay,
            jitter: 0.0,
            retry_if: None,
        }
    }

    /// Retries up to `max_retries` times, doubling the wait from `base_delay`, without cap.
    ///
    /// Every input is valid: waits saturate at `Duration::MAX` (see [`fixed`](Self::fixed)).
    pub fn exponential(max_retries: u32, base_delay: Duration) -> Self {
        Self {
            max_retries,
            base_delay,
            multiplier: 2.0,
            max_delay: Duration::MAX,
            jitter: 0.0,
            retry_if: None,
        }
    }

    /// Starts a validated policy; see [`RetryPolicyBuilder`].
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::default()
    }

    /// Only retries when `predicate(error, attempt)` returns `true`.
    ///
    /// `attempt` is the 1-based number of the attempt that just failed. `error` is the
    /// executor's error (downcast it with `error.downcast_ref::<MyError>()`) or an
    /// [`AttemptTimedOut`](crate::AttemptTimedOut).
    pub fn retry_if(
        mut self,
        predicate: impl Fn(&(dyn Error + 'static), u32) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_if = Some(Arc::from(Box::new(predicate) as Box<Predicate>));
        self
    }

    /// Returns the number of retries after the first attempt.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// Returns the wait before the first retry.
    pub fn base_delay(&self) -> Duration {
        self.base_delay
    }

    /// Returns the factor each wait is multiplied by.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// Returns the longest wait.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// Returns the jitter, a fraction of each wait in `0.0..=1.0`.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Returns `true` if a predicate ([`retry_if`](Self::retry_if)) decides which errors are
    /// retried (a predicate is code: a durable store keeps the numbers of a policy, not it).
    pub fn has_predicate(&self) -> bool {
        self.retry_if.is_some()
    }

    /// Returns the total number of attempts, `max_retries + 1` (saturating).
    pub fn max_attempts(&self) -> u32 {
        self.max_retries.saturating_add(1)
    }

    /// Returns the wait before retry `retry` (0-based), without jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let cap = self.max_delay;
        if self.multiplier == 1.0 || retry == 0 {
            return self.base_delay.min(cap);
        }
        let secs = self.base_delay.as_secs_f64() * saturating_powi(self.multiplier, retry);
        if !secs.is_finite() || secs >= cap.as_secs_f64() {
            return cap;
        }
        Duration::try_from_secs_f64(secs).map_or(cap, |d| d.min(cap))
    }

    /// Returns the wait before retry `retry`, shortened by the policy's jitter.
    ///
    /// The jitter is drawn from a small deterministic generator seeded with `seed` (the
    /// pipeline uses the job id), so a job's schedule is reproducible in tests.
    pub fn jittered_delay(&self, retry: u32, seed: u64) -> Duration {
        let delay = self.delay(retry);
        if self.jitter == 0.0 {
            return delay;
        }
        let r = unit_random(seed ^ u64::from(retry).rotate_left(32));
        let secs = delay.as_secs_f64() * (1.0 - self.jitter * r);
        // Near `Duration::MAX` the f64 round trip may overflow: keep the unjittered wait.
        Duration::try_from_secs_f64(secs).map_or(delay, |d| d.min(delay))
    }

    /// Returns whether another attempt should follow failed attempt `attempt` (1-based).
    pub fn should_retry(&self, error: &(dyn Error + 'static), attempt: u32) -> bool {
        attempt < self.max_attempts() && self.retry_if.as_ref().is_none_or(|p| p(error, attempt))
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_retries", &self.max_retries)
            .field("base_delay", &self.base_delay)
            .field("multiplier", &self.multiplier)
            .field("max_delay", &self.max_delay)
            .field("jitter", &self.jitter)
            .field("retry_if", &self.retry_if.is_some())
            .finish()
    }
}

/// `base^exp` by squaring, saturating to infinity; `base` is finite and at least 1.
fn saturating_powi(mut base: f64, mut exp: u32) -> f64 {
    let mut acc = 1.0_f64;
    while exp > 0 {
        if exp & 1 == 1 {
            acc *= base;
        }
        exp >>= 1;
        if exp > 0 {
            base *= base;
        }
        if acc.is_infinite() || base.is_infinite() && exp > 0 {
            return f64::INFINITY;
        }
    }
    acc
}

/// A value in `[0, 1)` from splitmix64.
fn unit_random(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Builds a [`RetryPolicy`], checking its inputs.
///
/// Defaults: 3 retries, 100 ms base delay, multiplier 2.0, no cap, no jitter.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct RetryPolicyBuilder {
    max_retries: u32,
    base_delay: Duration,
    multiplier: f64,
    max_delay: Duration,
    jitter: f64,
}

impl Default for RetryPolicyBuilder {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::MAX,
            jitter: 0.0,
        }
    }
}

impl RetryPolicyBuilder {
    /// Sets how many retries may follow the first attempt.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Sets the wait before the first retry.
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// Sets the factor applied to the wait after each retry; must be finite and at least 1.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Caps every wait; must not be below the base delay.
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Shortens each wait by a random fraction of up to `jitter` (in `0.0..=1.0`).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Checks the inputs and builds the policy.
    ///
    /// # Errors
    ///
    /// Returns [`InvalidRetryPolicy`] if the multiplier is NaN, infinite or below 1, the
    /// jitter is outside `0.0..=1.0`, or the cap is below the base delay.
    pub fn build(self) -> Result<RetryPolicy, InvalidRetryPolicy> {
        let kind = if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            Some(InvalidKind::Multiplier)
        } else if !(0.0..=1.0).contains(&self.jitter) {
            Some(InvalidKind::Jitter)
        } else if self.max_delay < self.base_delay {
            Some(InvalidKind::MaxDelay)
        } else {
            None
        };
        match kind {
            Some(kind) => Err(InvalidRetryPolicy { kind }),
            None => Ok(RetryPolicy {
                max_retries: self.max_retries,
                base_delay: self.base_delay,
                multiplier: self.multiplier,
                max_delay: self.max_delay,
                jitter: self.jitter,
                retry_if: None,
            }),
        }
    }
}

/// The error returned by [`RetryPolicyBuilder::build`] for inconsistent inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidRetryPolicy {
    kind: InvalidKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvalidKind {
    Multiplier,
    Jitter,
    MaxDelay,
}

impl InvalidRetryPolicy {
    /// Returns `true` if the multiplier was NaN, infinite or below 1.
    pub fn is_multiplier(&self) -> bool {
        self.kind == InvalidKind::Multiplier
    }

    /// Returns `true` if the jitter was outside `0.0..=1.0`.
    pub fn is_jitter(&self) -> bool {
        self.kind == InvalidKind::Jitter
    }

    /// Returns `true` if the cap was below the base delay.
    pub fn is_max_delay(&self) -> bool {
        self.kind == InvalidKind::MaxDelay
    }
}

impl fmt::Display for InvalidRetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            InvalidKind::Multiplier => "retry multiplier must be finite and at least 1.0",
            InvalidKind::Jitter => "retry jitter must be between 0.0 and 1.0",
            InvalidKind::MaxDelay => "retry max delay must not be below the base delay",
        })
    }
}

impl core::error::Error for InvalidRetryPolicy {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn delays_grow_and_saturate() {
        let p = RetryPolicy::exponential(u32::MAX, Duration::from_millis(10));
        assert_eq!(p.delay(0), Duration::from_millis(10));
        assert_eq!(p.delay(1), Duration::from_millis(20));
        assert_eq!(p.delay(3), Duration::from_millis(80));
        assert!(p.delay(50) > p.delay(49) && p.delay(50) < Duration::MAX);
        assert_eq!(p.delay(200), Duration::MAX);
        assert_eq!(p.delay(u32::MAX), Duration::MAX);
        assert_eq!(p.max_attempts(), u32::MAX);
    }

    #[test]
    fn tiny_multiplier_above_one_with_huge_exponent_is_fast_and_capped() {
        let p = RetryPolicy::builder()
            .multiplier(1.000_000_1)
            .max_delay(Duration::from_secs(5))
            .build()
            .unwrap();
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(5));
        assert!(p.delay(1) > Duration::from_millis(100));
    }

    #[test]
    fn invalid_inputs_are_rejected() {
        let b = RetryPolicy::builder;
        assert!(
            b().multiplier(f64::NAN)
                .build()
                .unwrap_err()
                .is_multiplier()
        );
        assert!(b().multiplier(-1.0).build().unwrap_err().is_multiplier());
        assert!(b().multiplier(0.5).build().unwrap_err().is_multiplier());
        assert!(
            b().multiplier(f64::INFINITY)
                .build()
                .unwrap_err()
                .is_multiplier()
        );
        assert!(b().jitter(1.5).build().unwrap_err().is_jitter());
        assert!(b().jitter(f64::NAN).build().unwrap_err().is_jitter());
        let e = b()
            .base_delay(Duration::from_secs(2))
            .max_delay(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert!(e.is_max_delay());
        assert_eq!(
            e.to_string(),
            "retry max delay must not be below the base delay"
        );
    }

    #[test]
    fn jitter_stays_within_bounds_and_is_deterministic() {
        let p = RetryPolicy::builder()
            .base_delay(Duration::from_secs(1))
            .multiplier(1.0)
            .jitter(0.5)
            .build()
            .unwrap();
        let mut distinct = 0;
        for seed in 0..100u64 {
            let d = p.jittered_delay(0, seed);
            assert!(
                d <= Duration::from_secs(1) && d >= Duration::from_millis(500),
                "{d:?}"
            );
            assert_eq!(d, p.jittered_delay(0, seed));
            if d != p.jittered_delay(0, seed + 1) {
                distinct += 1;
            }
        }
        assert!(distinct > 90);
    }

    #[test]
    fn jitter_near_the_largest_duration_never_panics() {
        let p = RetryPolicy::builder().jitter(1.0).build().unwrap();
        for seed in 0..1000 {
            assert!(p.jittered_delay(u32::MAX, seed) <= Duration::MAX);
            assert!(p.jittered_delay(200, seed) <= p.delay(200));
        }
    }

    #[test]
    fn should_retry_counts_attempts_and_consults_predicate() {
        let p = RetryPolicy::fixed(2, Duration::ZERO);
        let e = crate::AttemptTimedOut {
            limit: Duration::ZERO,
        };
        assert!(p.should_retry(&e, 1));
        assert!(p.should_retry(&e, 2));
        assert!(!p.should_retry(&e, 3));
        let p = p.retry_if(|err, attempt| err.is::<crate::AttemptTimedOut>() && attempt < 2);
        assert!(p.should_retry(&e, 1));
        assert!(!p.should_retry(&e, 2));
    }
}
