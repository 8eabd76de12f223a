//! A value that changes over time, and streams of its changes (internal).
//!
//! Like `tokio::sync::watch`: readers see the latest value; a stream yields the value current
//! when it is first polled, then each newer value it has not seen (values overwritten before
//! it looked are skipped). Closing ends every stream, and refuses later values.

use core::fmt;
use core::pin::Pin;
use core::task::{Context, Poll};

use event_listener::{Event as Notify, EventListener};
use futures_core::{FusedStream, Stream};

use crate::sync::{Arc, Mutex, poll_notified};

pub(crate) struct Watch<T> {
    state: Mutex<WatchState<T>>,
    notify: Notify,
}

struct WatchState<T> {
    value: T,
    /// Starts at 1, so a new stream (which has seen 0) yields the current value first.
    version: u64,
    closed: bool,
}

impl<T: Clone> Watch<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            state: Mutex::new(WatchState {
                value,
                version: 1,
                closed: false,
            }),
            notify: Notify::new(),
        }
    }

    pub(crate) fn get(&self) -> T {
        self.state.with(|s| s.value.clone())
    }

    /// Changes the value with `f`; returns `false` (and does not call `f`) once closed.
    pub(crate) fn update(&self, f: impl FnOnce(&mut T)) -> bool {
        let changed = self.state.with(|s| {
            if s.closed {
                return false;
            }
            f(&mut s.value);
            s.version += 1;
            true
        });
        if changed {
            self.notify.notify(usize::MAX);
        }
        changed
    }

    pub(crate) fn close(&self) {
        let was_open = self
            .state
            .with(|s| !core::mem::replace(&mut s.closed, true));
        if was_open {
            self.notify.notify(usize::MAX);
        }
    }

    fn poll_changed(
        &self,
        seen: &mut u64,
        listener: &mut Option<EventListener>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<T>> {
        poll_notified(&self.notify, listener, cx, || {
            self.state.with(|s| {
                if s.closed {
                    Some(None)
                } else if s.version > *seen {
                    *seen = s.version;
                    Some(Some(s.value.clone()))
                } else {
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
}

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
