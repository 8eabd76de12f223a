//! A value that changes over time, and streams of its changes: the one primitive behind an
//! orchestrator's states and a job's progress.
//!
//! Like `tokio::sync::watch`: readers see the latest value; a stream yields the value current
//! when it is first polled, then each newer value it has not seen (values overwritten before
//! it looked are skipped). Closing ends every stream, and refuses later values.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use event_listener::{Event as Notify, EventListener};
use futures_core::{FusedStream, Stream};

use crate::sync::{Arc, Mutex, poll_notified};

pub(crate) struct Watch<T> {
    state: Mutex<WatchState<T>>,
    notify: Notify,
    /// Streams yield the last value they have not seen before they end (a job's progress);
    /// otherwise closing ends them at once (an orchestrator's states).
    drain_on_close: bool,
}

struct WatchState<T> {
    value: T,
    /// Starts at 1, so a new stream (which has seen 0) yields the current value first.
    version: u64,
    closed: bool,
    /// A reader found nothing new since the last notification and may be waiting: the next
    /// change notifies. Set under the lock by the failed check of a reader, which registers
    /// its listener before that check; cleared by the change that notifies (a notification
    /// wakes every registered listener). While it is clear, a change skips `notify` and its
    /// lock.
    waiting: bool,
}

impl<T: Clone> Watch<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            state: Mutex::new(WatchState {
                value,
                version: 1,
                closed: false,
                waiting: false,
            }),
            notify: Notify::new(),
            drain_on_close: false,
        }
    }

    /// A watch whose streams, once it is closed, still yield the last value they have not
    /// seen before they end.
    pub(crate) fn draining(value: T) -> Self {
        Self {
            drain_on_close: true,
            ..Self::new(value)
        }
    }

    pub(crate) fn get(&self) -> T {
        self.state.with(|s| s.value.clone())
    }

    /// Returns the value and marks it as seen, whether or not the watch is closed.
    fn get_seen(&self, seen: &mut u64) -> T {
        self.state.with(|s| {
            *seen = s.version;
            s.value.clone()
        })
    }

    /// Changes the value with `f`; returns `false` (and does not call `f`) once closed.
    pub(crate) fn update(&self, f: impl FnOnce(&mut T)) -> bool {
        let changed = self.state.with(|s| {
            if s.closed {
                return None;
            }
            f(&mut s.value);
            s.version += 1;
            Some(core::mem::replace(&mut s.waiting, false))
        });
        if changed == Some(true) {
            self.notify.notify(usize::MAX);
        }
        changed.is_some()
    }

    pub(crate) fn close(&self) {
        let was_open = self
            .state
            .with(|s| !core::mem::replace(&mut s.closed, true));
        if was_open {
            self.notify.notify(usize::MAX);
        }
    }

    pub(crate) fn poll_changed(
        &self,
        seen: &mut u64,
        listener: &mut Option<EventListener>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<T>> {
        poll_notified(&self.notify, listener, cx, || {
            self.state.with(|s| {
                if s.closed && (!self.drain_on_close || s.version <= *seen) {
                    Some(None)
                } else if s.version > *seen {
                    *seen = s.version;
                    Some(Some(s.value.clone()))
                } else {
                    s.waiting = true;
                    None
                }
            })
        })
    }
}

/// A stream of an orchestrator's states: the current one first, then each change.
///
/// States are values, not a log: a slow reader skips states that were replaced before it
/// looked, and always gets the latest. The stream ends when the orchestrator is disposed; it
/// yields nothing after that.
#[must_use = "streams do nothing unless polled"]
pub struct StateStream<S> {
    watch: Arc<Watch<S>>,
    seen: u64,
    listener: Option<EventListener>,
    ended: bool,
}

impl<S: Clone> StateStream<S> {
    pub(crate) fn new(watch: Arc<Watch<S>>) -> Self {
        Self {
            watch,
            seen: 0,
            listener: None,
            ended: false,
        }
    }

    /// Waits for a state that satisfies `predicate`, like tokio's `watch::Receiver::wait_for`.
    ///
    /// The returned future checks the current state first, then each change, and resolves with
    /// the first state for which `predicate` returns `true`. States are values, not a log: a
    /// state replaced before the future looked is never checked, but the latest one always is.
    /// It resolves with [`StateClosed`] if the orchestrator is disposed before any state
    /// satisfies `predicate`. The current state is checked even after disposal (it stays
    /// readable, like [`OrchestratorHandle::state`](crate::OrchestratorHandle::state)); later
    /// changes are never made.
    ///
    /// Every state given to `predicate` counts as seen by this stream: the stream does not
    /// yield it again. `predicate` runs in the task that polls the future, with no lock held.
    ///
    /// # Cancel safety
    ///
    /// The future is cancel safe: dropping it before it completes loses no state. A new
    /// `wait_for` checks the current state again, so a state that became current while nobody
    /// was waiting is still found.
    ///
    /// ```
    /// use orchestrator_core::testing::VirtualRuntime;
    /// use orchestrator_core::{Dispatcher, Event, Orchestrator, OrchestratorContext, Origin};
    ///
    /// struct Clicked;
    /// struct Counter;
    /// impl Orchestrator for Counter {
    ///     type State = u32;
    ///     fn on_event(&mut self, event: &Event, _: Origin, cx: &mut OrchestratorContext<'_, u32>) {
    ///         if event.is::<Clicked>() {
    ///             cx.update(|n| *n += 1);
    ///         }
    ///     }
    /// }
    ///
    /// let rt = VirtualRuntime::new();
    /// let dispatcher = Dispatcher::new(rt.clone());
    /// let counter = Counter.builder(0, &dispatcher).start().unwrap();
    /// let mut states = counter.states();
    /// for _ in 0..3 {
    ///     dispatcher.bus().emit(Clicked).unwrap();
    /// }
    /// assert_eq!(rt.block_on(states.wait_for(|n| *n >= 3)), Ok(3));
    ///
    /// counter.dispose();
    /// let never = rt.block_on(states.wait_for(|n| *n > 10)).unwrap_err();
    /// assert_eq!(never.to_string(), "the state stream ended: the orchestrator was disposed");
    /// ```
    pub fn wait_for<F: FnMut(&S) -> bool>(&mut self, predicate: F) -> WaitForState<'_, S, F> {
        WaitForState {
            stream: self,
            predicate,
            checked_current: false,
        }
    }
}

/// The future returned by [`StateStream::wait_for`]: the first state that satisfies a
/// predicate, or [`StateClosed`].
///
/// ```
/// use core::future::Future;
/// use core::pin::pin;
/// use core::task::{Context, Poll, Waker};
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatcher, Event, Orchestrator, OrchestratorContext, Origin};
///
/// struct Idle;
/// impl Orchestrator for Idle {
///     type State = &'static str;
///     fn on_event(&mut self, _: &Event, _: Origin, _: &mut OrchestratorContext<'_, Self::State>) {}
/// }
///
/// let rt = VirtualRuntime::new();
/// let dispatcher = Dispatcher::new(rt.clone());
/// let idle = Idle.builder("ready", &dispatcher).start().unwrap();
/// let mut states = idle.states();
/// let cx = &mut Context::from_waker(Waker::noop());
/// // The current state counts: ready on the first poll.
/// assert_eq!(pin!(states.wait_for(|s| *s == "ready")).poll(cx), Poll::Ready(Ok("ready")));
/// let mut waiting = pin!(states.wait_for(|s| *s == "done"));
/// assert!(waiting.as_mut().poll(cx).is_pending());
/// idle.dispose();
/// assert!(matches!(waiting.poll(cx), Poll::Ready(Err(_))));
/// ```
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct WaitForState<'a, S, F> {
    stream: &'a mut StateStream<S>,
    predicate: F,
    /// Set once the current state was checked; from then on only changes are.
    checked_current: bool,
}

// The predicate is only ever called through `&mut F`; it is never pinned.
impl<S, F> Unpin for WaitForState<'_, S, F> {}

impl<S: Clone, F: FnMut(&S) -> bool> Future for WaitForState<'_, S, F> {
    type Output = Result<S, StateClosed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<S, StateClosed>> {
        let this = self.get_mut();
        let stream = &mut *this.stream;
        if !this.checked_current {
            this.checked_current = true;
            let current = stream.watch.get_seen(&mut stream.seen);
            if (this.predicate)(&current) {
                return Poll::Ready(Ok(current));
            }
        }
        loop {
            if stream.ended {
                return Poll::Ready(Err(StateClosed));
            }
            match core::task::ready!(stream.watch.poll_changed(
                &mut stream.seen,
                &mut stream.listener,
                cx
            )) {
                Some(state) if (this.predicate)(&state) => return Poll::Ready(Ok(state)),
                Some(_) => {}
                None => stream.ended = true,
            }
        }
    }
}

impl<S, F> fmt::Debug for WaitForState<'_, S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForState")
            .field("stream", &self.stream)
            .field("checked_current", &self.checked_current)
            .finish_non_exhaustive()
    }
}

/// The error of [`StateStream::wait_for`]: the orchestrator was disposed before any of its
/// states satisfied the predicate.
///
/// ```
/// use orchestrator_core::StateClosed;
/// assert_eq!(
///     StateClosed.to_string(),
///     "the state stream ended: the orchestrator was disposed"
/// );
/// let _: &dyn core::error::Error = &StateClosed;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateClosed;

impl fmt::Display for StateClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the state stream ended: the orchestrator was disposed")
    }
}

impl core::error::Error for StateClosed {}

impl<S: Clone> Stream for StateStream<S> {
    type Item = S;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let next = core::task::ready!(this.watch.poll_changed(
            &mut this.seen,
            &mut this.listener,
            cx
        ));
        this.ended = next.is_none();
        Poll::Ready(next)
    }
}

impl<S: Clone> FusedStream for StateStream<S> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl<S> fmt::Debug for StateStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStream")
            .field("seen", &self.seen)
            .field("ended", &self.ended)
            .finish()
    }
}
