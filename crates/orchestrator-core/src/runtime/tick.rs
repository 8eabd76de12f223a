//! A [`Timer`] driven by a tick count the host advances: all a bare-metal host supplies.

use core::fmt;
use core::time::Duration;

use super::deadlines::{Deadlines, SleepUntil};
use super::{Instant, Sleep, Timer};
use crate::sync::{Arc, Mutex};

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A [`Timer`] whose clock is a tick count that the host moves through [`Ticks`].
///
/// This is the timer for hosts that have a periodic interrupt or a hardware counter but no
/// async timer of their own: give it to a [`PoolRuntime`](super::PoolRuntime), call
/// [`Ticks::advance`] (or [`Ticks::set_now`]) from the timer interrupt or the main loop, and
/// keep polling the pool. Its clock reads `tick count × tick duration` since tick zero, and a
/// sleep completes, waking its task, on the first tick at or after its deadline (sleeps round
/// up to whole ticks, so they never end early).
///
/// # Costs
///
/// Pending sleeps are kept in a deadline-ordered map (a `BTreeMap` keyed by deadline tick and
/// registration order). With `n` pending sleeps, registering or dropping a sleep is
/// `O(log n)`; a tick that completes nothing is `O(log n)`; a tick that completes `k` sleeps
/// is `O(k log n)`. A sleep dropped before its deadline is removed from the map at once: it is
/// never woken and holds no memory. Advancing does not allocate.
///
/// # Overflow
///
/// Nothing panics. The tick count saturates at `u64::MAX` (584,942 years of 1 MHz ticks); a
/// deadline past it is `u64::MAX`; the clock saturates at the largest [`Instant`]. A hardware
/// counter narrower than 64 bits is extended by the host: pass the wrapping difference of two
/// readings to [`advance`](Ticks::advance).
///
/// ```
/// use core::future::Future;
/// use core::pin::pin;
/// use core::task::{Context, Waker};
/// use core::time::Duration;
/// use orchestrator_core::runtime::{Instant, TickTimer, Timer};
///
/// let timer = TickTimer::new(Duration::from_millis(1)); // a 1 kHz tick
/// let ticks = timer.ticks(); // what the interrupt handler keeps
/// let mut sleep = pin!(timer.sleep(Duration::from_micros(2_500))); // 3 ticks, rounded up
/// let cx = &mut Context::from_waker(Waker::noop());
/// assert!(sleep.as_mut().poll(cx).is_pending());
/// assert_eq!(ticks.advance(2), 0);
/// assert!(sleep.as_mut().poll(cx).is_pending());
/// assert_eq!(ticks.advance(1), 1); // the third tick completes the sleep
/// assert!(sleep.as_mut().poll(cx).is_ready());
/// assert_eq!(timer.now(), Instant::from_elapsed(Duration::from_millis(3)));
/// ```
pub struct TickTimer {
    clock: Arc<Mutex<Deadlines<u64>>>,
    rate: TickRate,
}

/// The length of one tick, as `nanos` nanoseconds per `per` ticks (exact for any frequency
/// in hertz, such as a 32,768 Hz crystal).
#[derive(Debug, Clone, Copy)]
struct TickRate {
    nanos: u128,
    per: u128,
}

impl TickRate {
    /// The time since tick zero at `ticks`, saturating.
    fn instant(self, ticks: u64) -> Instant {
        let nanos = u128::from(ticks)
            .checked_mul(self.nanos)
            .map_or(u128::MAX, |n| n / self.per);
        let secs = u64::try_from(nanos / NANOS_PER_SEC);
        Instant::from_elapsed(match secs {
            // The remainder is below 10^9, so it fits in a u32.
            Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
            Err(_) => Duration::MAX,
        })
    }

    /// The number of whole ticks that last at least `duration`, saturating.
    fn ticks_for(self, duration: Duration) -> u64 {
        let ticks = duration
            .as_nanos()
            .checked_mul(self.per)
            .map_or(u128::MAX, |n| n.div_ceil(self.nanos));
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }
}

impl TickTimer {
    /// Creates a timer at tick zero whose ticks each last `tick` (a zero duration is taken as
    /// one nanosecond).
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::{Instant, TickTimer, Timer};
    /// let timer = TickTimer::new(Duration::from_micros(100));
    /// timer.ticks().advance(25);
    /// assert_eq!(timer.now(), Instant::from_elapsed(Duration::from_micros(2_500)));
    /// ```
    pub fn new(tick: Duration) -> Self {
        Self::with_rate(TickRate {
            nanos: tick.as_nanos().max(1),
            per: 1,
        })
    }

    /// Creates a timer at tick zero that ticks `hz` times a second (zero is taken as 1 Hz).
    /// The clock is exact even when a tick is not a whole number of nanoseconds.
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::{Instant, TickTimer, Timer};
    /// let timer = TickTimer::from_hz(32_768); // a watch crystal
    /// timer.ticks().advance(32_768 * 60);
    /// assert_eq!(timer.now(), Instant::from_elapsed(Duration::from_secs(60)));
    /// ```
    pub fn from_hz(hz: u32) -> Self {
        Self::with_rate(TickRate {
            nanos: NANOS_PER_SEC,
            per: u128::from(hz.max(1)),
        })
    }

    fn with_rate(rate: TickRate) -> Self {
        Self {
            clock: Arc::new(Mutex::new(Deadlines::new(0))),
            rate,
        }
    }

    /// Returns a handle that moves this timer's clock, for the interrupt handler or the main
    /// loop. Handles are cheap to clone and `Send + Sync`.
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::TickTimer;
    /// let timer = TickTimer::new(Duration::from_millis(1));
    /// let ticks = timer.ticks();
    /// ticks.clone().advance(7);
    /// assert_eq!(ticks.now(), 7);
    /// ```
    pub fn ticks(&self) -> Ticks {
        Ticks {
            clock: self.clock.clone(),
            rate: self.rate,
        }
    }
}

impl Timer for TickTimer {
    fn sleep(&self, duration: Duration) -> Sleep {
        let ticks = self.rate.ticks_for(duration);
        let deadline = self.clock.with(|c| c.now.saturating_add(ticks));
        Sleep::new(SleepUntil::new(self.clock.clone(), deadline))
    }

    fn now(&self) -> Instant {
        self.rate.instant(self.clock.with(|c| c.now))
    }
}

impl fmt::Debug for TickTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.ticks(), f)
    }
}

/// The handle that moves a [`TickTimer`]'s clock; see [`TickTimer::ticks`].
///
/// Call [`advance`](Self::advance) from a periodic interrupt, or [`set_now`](Self::set_now)
/// with a free-running counter, then let the pool run: the woken tasks are ready in it. For a
/// tickless idle, program the hardware timer for [`next_deadline`](Self::next_deadline).
///
/// ```
/// use core::future::Future;
/// use core::pin::pin;
/// use core::task::{Context, Waker};
/// use core::time::Duration;
/// use orchestrator_core::runtime::{TickTimer, Timer};
///
/// let timer = TickTimer::new(Duration::from_millis(10));
/// let ticks = timer.ticks();
/// let cx = &mut Context::from_waker(Waker::noop());
/// let mut late = pin!(timer.sleep(Duration::from_millis(50)));
/// let mut soon = pin!(timer.sleep(Duration::from_millis(20)));
/// assert!(late.as_mut().poll(cx).is_pending() && soon.as_mut().poll(cx).is_pending());
/// assert_eq!(ticks.next_deadline(), Some(2)); // sleep until tick 2
/// assert_eq!(ticks.set_now(2), 1);
/// assert!(soon.as_mut().poll(cx).is_ready());
/// assert_eq!(ticks.next_deadline(), Some(5));
/// ```
#[derive(Clone)]
pub struct Ticks {
    clock: Arc<Mutex<Deadlines<u64>>>,
    rate: TickRate,
}

impl Ticks {
    /// Moves the clock `n` ticks forward (saturating) and wakes every sleep that is now due,
    /// in deadline order; returns how many it woke.
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::TickTimer;
    /// let ticks = TickTimer::new(Duration::from_millis(1)).ticks();
    /// assert_eq!(ticks.advance(u64::MAX), 0);
    /// ticks.advance(1); // saturates, no overflow
    /// assert_eq!(ticks.now(), u64::MAX);
    /// ```
    pub fn advance(&self, n: u64) -> usize {
        let target = self.clock.with(|c| c.now.saturating_add(n));
        self.set_now(target)
    }

    /// Moves the clock to tick `tick` and wakes every sleep that is now due, in deadline
    /// order; returns how many it woke. A tick earlier than the current one is ignored: the
    /// clock is monotonic.
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::TickTimer;
    /// let ticks = TickTimer::new(Duration::from_millis(1)).ticks();
    /// ticks.set_now(100);
    /// ticks.set_now(40); // ignored
    /// assert_eq!(ticks.now(), 100);
    /// ```
    pub fn set_now(&self, tick: u64) -> usize {
        self.clock.with(|c| c.now = c.now.max(tick));
        let mut woken = 0;
        // One sleep per lock: the wake runs outside it, and no allocation is needed.
        while let Some((_, waker)) = self.clock.with(|c| {
            let now = c.now;
            c.pop_due(now)
        }) {
            waker.wake();
            woken += 1;
        }
        woken
    }

    /// Returns the current tick count.
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::TickTimer;
    /// let ticks = TickTimer::new(Duration::from_millis(1)).ticks();
    /// assert_eq!(ticks.now(), 0);
    /// ```
    pub fn now(&self) -> u64 {
        self.clock.with(|c| c.now)
    }

    /// Returns the clock at the current tick count: `now() × tick duration` since tick zero.
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::{Instant, TickTimer};
    /// let ticks = TickTimer::from_hz(1_000).ticks();
    /// ticks.advance(1_500);
    /// assert_eq!(ticks.instant(), Instant::from_elapsed(Duration::from_millis(1_500)));
    /// ```
    pub fn instant(&self) -> Instant {
        self.rate.instant(self.now())
    }

    /// Returns the tick of the earliest pending sleep, if any: the host may sleep (or
    /// program its timer) until then.
    ///
    /// ```
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::TickTimer;
    /// let ticks = TickTimer::new(Duration::from_millis(1)).ticks();
    /// assert_eq!(ticks.next_deadline(), None); // nothing to wake
    /// ```
    pub fn next_deadline(&self) -> Option<u64> {
        self.clock.with(|c| c.next_deadline())
    }

    /// Returns the number of pending sleeps (polled, not yet due, not dropped).
    ///
    /// ```
    /// use core::future::Future;
    /// use core::pin::pin;
    /// use core::task::{Context, Waker};
    /// use core::time::Duration;
    /// use orchestrator_core::runtime::{TickTimer, Timer};
    /// let timer = TickTimer::new(Duration::from_millis(1));
    /// let mut sleep = Box::pin(timer.sleep(Duration::from_secs(1)));
    /// let _ = sleep.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    /// assert_eq!(timer.ticks().pending(), 1);
    /// drop(sleep); // dropped early: deregistered, never woken
    /// assert_eq!(timer.ticks().pending(), 0);
    /// ```
    pub fn pending(&self) -> usize {
        self.clock.with(|c| c.len())
    }
}

impl fmt::Debug for Ticks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (now, pending) = self.clock.with(|c| (c.now, c.len()));
        f.debug_struct("TickTimer")
            .field("now", &now)
            .field("pending", &pending)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{AtomicUsize, Ordering};
    use alloc::task::Wake;
    use alloc::vec::Vec;
    use core::future::Future;
    use core::pin::Pin;
    use core::task::{Context, Poll, Waker};

    /// Counts its wakes.
    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    fn poll(sleep: &mut Sleep, waker: &Waker) -> Poll<()> {
        Pin::new(sleep).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn sleeps_complete_in_deadline_order_whatever_the_registration_order() {
        let timer = TickTimer::new(Duration::from_millis(1));
        let ticks = timer.ticks();
        let mut sleeps: Vec<(u64, Sleep, Arc<Counter>, Waker)> = [5u64, 1, 3, 3, 8]
            .into_iter()
            .map(|ms| {
                let (c, w) = counter();
                (ms, timer.sleep(Duration::from_millis(ms)), c, w)
            })
            .collect();
        for (_, s, _, w) in &mut sleeps {
            assert!(poll(s, w).is_pending());
        }
        assert_eq!(ticks.pending(), 5);
        for tick in 1..=8u64 {
            let due = sleeps.iter().filter(|(ms, ..)| *ms == tick).count();
            assert_eq!(ticks.advance(1), due, "tick {tick}");
            for (ms, s, c, w) in &mut sleeps {
                let fired = *ms <= tick;
                assert_eq!(c.0.load(Ordering::SeqCst), usize::from(fired));
                assert_eq!(poll(s, w).is_ready(), fired);
            }
        }
        assert_eq!(ticks.pending(), 0);
    }

    #[test]
    fn a_sleep_dropped_early_is_deregistered_and_never_woken() {
        let timer = TickTimer::new(Duration::from_millis(1));
        let ticks = timer.ticks();
        let (kept_count, kept_waker) = counter();
        let (dropped_count, dropped_waker) = counter();
        let mut kept = timer.sleep(Duration::from_millis(2));
        let mut dropped = timer.sleep(Duration::from_millis(2));
        assert!(poll(&mut kept, &kept_waker).is_pending());
        assert!(poll(&mut dropped, &dropped_waker).is_pending());
        drop(dropped);
        assert_eq!(ticks.pending(), 1);
        // The registry held the only other clone of the dropped sleep's waker.
        assert_eq!(Arc::strong_count(&dropped_count), 2);
        assert_eq!(ticks.advance(5), 1);
        assert_eq!(dropped_count.0.load(Ordering::SeqCst), 0);
        assert_eq!(kept_count.0.load(Ordering::SeqCst), 1);
        assert!(poll(&mut kept, &kept_waker).is_ready());
        drop(kept_waker);
        assert_eq!(
            Arc::strong_count(&kept_count),
            1,
            "the fired waker was released"
        );
    }

    #[test]
    fn a_repolled_sleep_registers_once_and_wakes_the_latest_waker() {
        let timer = TickTimer::new(Duration::from_millis(1));
        let ticks = timer.ticks();
        let (first, first_waker) = counter();
        let (second, second_waker) = counter();
        let mut sleep = timer.sleep(Duration::from_millis(3));
        assert!(poll(&mut sleep, &first_waker).is_pending());
        assert!(poll(&mut sleep, &first_waker).is_pending());
        assert!(poll(&mut sleep, &second_waker).is_pending());
        assert_eq!(ticks.pending(), 1);
        assert_eq!(ticks.advance(3), 1);
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn zero_and_sub_tick_sleeps() {
        let timer = TickTimer::new(Duration::from_millis(10));
        let ticks = timer.ticks();
        let (_, w) = counter();
        assert!(poll(&mut timer.sleep(Duration::ZERO), &w).is_ready());
        let mut short = timer.sleep(Duration::from_nanos(1)); // rounds up to one tick
        assert!(poll(&mut short, &w).is_pending());
        assert_eq!(ticks.next_deadline(), Some(1));
        ticks.advance(1);
        assert!(poll(&mut short, &w).is_ready());
    }

    #[test]
    fn a_sleep_created_before_a_tick_counts_from_its_creation() {
        let timer = TickTimer::new(Duration::from_millis(1));
        let ticks = timer.ticks();
        let (_, w) = counter();
        let mut sleep = timer.sleep(Duration::from_millis(2)); // deadline tick 2
        ticks.advance(2); // not polled yet: nothing registered, nothing woken
        assert!(poll(&mut sleep, &w).is_ready());
        assert_eq!(ticks.pending(), 0);
    }

    #[test]
    fn set_now_jumps_and_never_goes_back() {
        let timer = TickTimer::new(Duration::from_millis(1));
        let ticks = timer.ticks();
        let sleeps: Vec<(Sleep, Waker)> = (1..=100u64)
            .map(|ms| (timer.sleep(Duration::from_millis(ms)), counter().1))
            .collect();
        let mut sleeps = sleeps;
        for (s, w) in &mut sleeps {
            assert!(poll(s, w).is_pending());
        }
        assert_eq!(ticks.set_now(60), 60);
        assert_eq!(ticks.set_now(10), 0);
        assert_eq!(ticks.now(), 60);
        assert_eq!(ticks.next_deadline(), Some(61));
        assert_eq!(ticks.set_now(1_000), 40);
    }

    #[test]
    fn overflow_saturates_instead_of_panicking() {
        let timer = TickTimer::new(Duration::MAX);
        let ticks = timer.ticks();
        ticks.advance(3);
        assert_eq!(timer.now(), Instant::from_elapsed(Duration::MAX));
        let (_, w) = counter();
        // Past the largest tick: the deadline saturates at u64::MAX.
        let fine = TickTimer::new(Duration::from_nanos(1));
        let fine_ticks = fine.ticks();
        let mut far = fine.sleep(Duration::MAX);
        assert!(poll(&mut far, &w).is_pending());
        assert_eq!(fine_ticks.next_deadline(), Some(u64::MAX));
        fine_ticks.advance(u64::MAX);
        fine_ticks.advance(u64::MAX);
        assert!(poll(&mut far, &w).is_ready());
        assert_eq!(
            fine.now(),
            Instant::from_elapsed(Duration::from_nanos(u64::MAX))
        );
        // A sleep made at the last tick is due at once.
        assert!(poll(&mut fine.sleep(Duration::from_secs(1)), &w).is_ready());
    }

    #[test]
    fn zero_rates_are_clamped() {
        let per_ns = TickTimer::new(Duration::ZERO);
        per_ns.ticks().advance(5);
        assert_eq!(per_ns.now(), Instant::from_elapsed(Duration::from_nanos(5)));
        let one_hz = TickTimer::from_hz(0);
        one_hz.ticks().advance(2);
        assert_eq!(one_hz.now(), Instant::from_elapsed(Duration::from_secs(2)));
    }

    #[test]
    fn fractional_ticks_round_sleeps_up_and_keep_the_clock_exact() {
        let timer = TickTimer::from_hz(3); // 333,333,333.3 ns per tick
        let ticks = timer.ticks();
        let (_, w) = counter();
        let mut sleep = timer.sleep(Duration::from_secs(1));
        assert!(poll(&mut sleep, &w).is_pending());
        assert_eq!(ticks.next_deadline(), Some(3));
        let mut longer = timer.sleep(Duration::from_nanos(1_000_000_001));
        assert!(poll(&mut longer, &w).is_pending());
        assert_eq!(ticks.next_deadline(), Some(3));
        ticks.advance(3);
        assert!(poll(&mut sleep, &w).is_ready());
        assert!(poll(&mut longer, &w).is_pending(), "never early");
        assert_eq!(timer.now(), Instant::from_elapsed(Duration::from_secs(1)));
        ticks.advance(1);
        assert_eq!(
            timer.now(),
            Instant::from_elapsed(Duration::from_nanos(1_333_333_333))
        );
    }

    #[test]
    fn many_sleeps_fire_only_when_due() {
        let timer = TickTimer::new(Duration::from_micros(1));
        let ticks = timer.ticks();
        let (count, w) = counter();
        // Fewer under Miri, which runs these tests too.
        let (n, span) = if cfg!(miri) {
            (300, 30)
        } else {
            (10_000, 1_000)
        };
        let mut sleeps: Vec<Sleep> = (0..n)
            .map(|i| timer.sleep(Duration::from_micros(1 + (i * 7919) % span)))
            .collect();
        for s in &mut sleeps {
            assert!(poll(s, &w).is_pending());
        }
        let mut woken = 0;
        for _ in 0..span {
            woken += ticks.advance(1);
            assert_eq!(count.0.load(Ordering::SeqCst), woken);
        }
        assert_eq!(woken as u64, n);
        assert_eq!(ticks.pending(), 0);
    }

    #[test]
    fn debug_shows_the_tick_and_the_pending_sleeps() {
        let timer = TickTimer::new(Duration::from_millis(1));
        timer.ticks().advance(4);
        let text = alloc::format!("{timer:?}");
        assert!(
            text.contains("now: 4") && text.contains("pending: 0"),
            "{text}"
        );
    }
}
