//! Cooperative and forced cancellation.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use event_listener::{Event, EventListener};

use crate::sync::{Arc, AtomicBool, Mutex, Ordering, Weak, poll_notified};

/// A cloneable handle to a shared cancellation flag.
///
/// A [`CancellationToken`] is a shared flag with wake-ups. Cancelling is idempotent; the first
/// reason wins. A job dispatched with a token is cancelled when the token is: its work future
/// is dropped at once (the executor need not check the token), and its handle resolves as
/// cancelled. One token may be shared by many jobs; a job that finishes never detaches the
/// others. [`CancellationToken::child_token`] makes a token that is cancelled with its parent
/// but can also be cancelled alone.
///
/// ```
/// use orchestrator_core::CancellationToken;
///
/// let token = CancellationToken::new();
/// let child = token.child_token();
/// assert!(!child.is_cancelled());
/// token.cancel_with("user pressed stop");
/// token.cancel(); // idempotent: the first reason stays
/// assert!(child.is_cancelled());
/// assert_eq!(child.reason().as_deref(), Some("user pressed stop"));
/// futures::executor::block_on(child.cancelled()); // completes at once
/// ```
#[derive(Clone, Default)]
pub struct CancellationToken {
    inner: Arc<TokenInner>,
}

#[derive(Default)]
struct TokenInner {
    cancelled: AtomicBool,
    state: Mutex<TokenState>,
    event: Event,
}

#[derive(Default)]
struct TokenState {
    reason: Option<Cow<'static, str>>,
    children: Vec<Weak<TokenInner>>,
}

impl CancellationToken {
    /// Creates a token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a token that is cancelled whenever `self` is (with the same reason), and that
    /// can also be cancelled on its own without affecting `self`.
    pub fn child_token(&self) -> CancellationToken {
        let child = CancellationToken::new();
        let inherited = self.inner.state.with(|s| {
            if self.inner.cancelled.load(Ordering::Acquire) {
                return Some(s.reason.clone());
            }
            // Forget children that are gone before growing the list.
            if s.children.len() == s.children.capacity() {
                s.children.retain(|c| c.strong_count() > 0);
            }
            s.children.push(Arc::downgrade(&child.inner));
            None
        });
        if let Some(reason) = inherited {
            child.inner.cancel(reason);
        }
        child
    }

    /// Cancels the token (and its children) without a reason. Does nothing if already cancelled.
    pub fn cancel(&self) {
        self.inner.cancel(None);
    }

    /// Cancels the token (and its children) with `reason`. Does nothing if already cancelled.
    pub fn cancel_with(&self, reason: impl Into<Cow<'static, str>>) {
        self.inner.cancel(Some(reason.into()));
    }

    /// Returns `true` once the token is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Returns the reason given to the first cancel call, if any.
    pub fn reason(&self) -> Option<Cow<'static, str>> {
        self.inner.state.with(|s| s.reason.clone())
    }

    /// Returns a future that completes once the token is cancelled.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future loses nothing; a new one completes at once if the token was
    /// cancelled meanwhile.
    pub fn cancelled(&self) -> WaitForCancellation<'_> {
        WaitForCancellation {
            token: self,
            listener: None,
        }
    }

    /// Returns a `'static` future that completes once the token is cancelled.
    pub fn cancelled_owned(&self) -> WaitForCancellationOwned {
        WaitForCancellationOwned {
            token: self.clone(),
            listener: None,
        }
    }

    /// Polls for cancellation, registering `listener` while not cancelled.
    pub(crate) fn poll_cancelled(
        &self,
        listener: &mut Option<EventListener>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        poll_notified(&self.inner.event, listener, cx, || {
            self.is_cancelled().then_some(())
        })
    }

    /// Returns `true` if both handles point to the same token.
    pub fn same_token(&self, other: &CancellationToken) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl TokenInner {
    fn cancel(&self, reason: Option<Cow<'static, str>>) {
        let children = self.state.with(|s| {
            if self.cancelled.load(Ordering::Acquire) {
                return None;
            }
            s.reason = reason;
            self.cancelled.store(true, Ordering::Release);
            Some((core::mem::take(&mut s.children), s.reason.clone()))
        });
        let Some((children, reason)) = children else {
            return;
        };
        self.event.notify(usize::MAX);
        for child in children.iter().filter_map(Weak::upgrade) {
            child.cancel(reason.clone());
        }
    }
}

impl fmt::Debug for CancellationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancellationToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// The future returned by [`CancellationToken::cancelled`].
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct WaitForCancellation<'a> {
    token: &'a CancellationToken,
    listener: Option<EventListener>,
}

impl Future for WaitForCancellation<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        this.token.poll_cancelled(&mut this.listener, cx)
    }
}

/// The future returned by [`CancellationToken::cancelled_owned`]: like
/// [`WaitForCancellation`], but it owns a clone of the token (it is `'static`).
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct WaitForCancellationOwned {
    token: CancellationToken,
    listener: Option<EventListener>,
}

impl Future for WaitForCancellationOwned {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        this.token.poll_cancelled(&mut this.listener, cx)
    }
}

impl fmt::Debug for WaitForCancellationOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForCancellationOwned")
            .field("token", &self.token)
            .finish()
    }
}

impl fmt::Debug for WaitForCancellation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForCancellation")
            .field("token", self.token)
            .finish()
    }
}
