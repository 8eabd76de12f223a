//! Cooperative and forced cancellation.
//!
//! A [`CancellationToken`] is a shared flag with wake-ups. Cancelling is idempotent; the first
//! reason wins. A job dispatched with a token is cancelled when the token is: its work future
//! is dropped at once (the executor need not check the token), and its handle resolves as
//! cancelled. One token may be shared by many jobs; a job that finishes never detaches the
//! others. [`CancellationToken::child_token`] makes a token that is cancelled with its parent
//! (and with every further ancestor, even once the tokens in between are dropped) but can also
//! be cancelled alone.
//!
//! # The token tree
//!
//! Each token is a node; [`CancellationToken`] values are handles to it, counted apart from the
//! node's `Arc` (work in flight may hold the node without being a handle). A node's links (its
//! reason, parent and children) change only under its own lock; its `cancelled` flag is written
//! under that lock and read with or without it. These invariants hold between operations:
//!
//! - **Links.** A child holds its parent strongly and the parent holds its live children
//!   strongly, in a map keyed by node address. A node that is not cancelled and still has a
//!   handle is in the map of the node its `parent` names. These cycles are broken by the
//!   operations below, never left to the last `Arc`.
//! - **Release.** When a node's last handle goes, the node leaves its parent's map and hands its
//!   children to that parent (re-parenting), so every live token keeps a path to each live
//!   ancestor however many tokens in between were dropped. A node without a parent (a root)
//!   instead detaches its children: no handle can cancel them through it any more.
//! - **Cancelled nodes have no children.** Cancelling empties a node's map in the critical
//!   section that sets its flag, a child of a cancelled token is created cancelled and detached,
//!   and nothing is ever re-parented onto a cancelled node.
//! - **Cancelling walks a work list.** The children taken from a cancelled node are later
//!   locked one at a time, detached and cancelled in turn (no recursion, so depth costs no
//!   stack, and never two locks at once). So a node whose `parent` names a cancelled node is in
//!   the work list of the thread cancelling that parent; when such a node loses its last handle
//!   it leaves its children for that thread to reach.
//! - **Lock order.** Nested locks are taken parent first, then child (and grandchild).
//!   A parent, current or former, is always older than its child, so the order is acyclic and
//!   there is no deadlock.
//! - **Bounded memory.** A map holds live children only: a dropped child leaves it at once and
//!   the map shrinks when mostly empty, so a long-lived parent that makes and drops any number
//!   of children stays as small as its live ones. A dropped token's node is freed once no
//!   operation in flight holds it.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use event_listener::{Event, EventListener};
use hashbrown::HashMap;

use crate::sync::{Arc, AtomicBool, AtomicUsize, Mutex, Ordering, poll_notified};

/// A cloneable handle to a shared cancellation flag.
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
///
/// A grandchild is cancelled with its grandparent even when the token between them is gone:
///
/// ```
/// use orchestrator_core::CancellationToken;
///
/// let root = CancellationToken::new();
/// let middle = root.child_token();
/// let leaf = middle.child_token();
/// drop(middle);
/// root.cancel();
/// assert!(leaf.is_cancelled());
/// ```
///
/// Its `Debug` output shows whether it is cancelled and how many live child tokens it tracks.
pub struct CancellationToken {
    node: Arc<Node>,
}

/// One token of the tree; see the module docs for the invariants.
struct Node {
    /// The number of [`CancellationToken`] handles to this node.
    handles: AtomicUsize,
    cancelled: AtomicBool,
    links: Mutex<Links>,
    event: Event,
}

#[derive(Default)]
struct Links {
    reason: Option<Cow<'static, str>>,
    parent: Option<Arc<Node>>,
    children: HashMap<usize, Arc<Node>>,
}

/// The key of `node` in its parent's map: its address, unique while it is alive (and it is
/// alive while in the map).
fn key(node: &Arc<Node>) -> usize {
    Arc::as_ptr(node).addr()
}

impl Node {
    fn new(links: Links, cancelled: bool) -> Arc<Node> {
        Arc::new(Node {
            handles: AtomicUsize::new(1),
            cancelled: AtomicBool::new(cancelled),
            links: Mutex::new(links),
            event: Event::new(),
        })
    }

    /// Marks the node cancelled with `reason` and moves its children to `pending`; returns
    /// `false` if it was already cancelled. Called with the node's lock held (`links`).
    fn mark_cancelled(
        &self,
        links: &mut Links,
        reason: &Option<Cow<'static, str>>,
        pending: &mut Vec<Arc<Node>>,
    ) -> bool {
        if self.cancelled.load(Ordering::Acquire) {
            return false;
        }
        links.reason.clone_from(reason);
        self.cancelled.store(true, Ordering::Release);
        pending.extend(core::mem::take(&mut links.children).into_values());
        true
    }

    /// Cancels the node and, through a work list, all its descendants.
    fn cancel(&self, reason: Option<Cow<'static, str>>) {
        let mut pending = Vec::new();
        if !self
            .links
            .with(|links| self.mark_cancelled(links, &reason, &mut pending))
        {
            return;
        }
        self.event.notify(usize::MAX);
        while let Some(child) = pending.pop() {
            let fired = child.links.with(|links| {
                links.parent = None;
                child.mark_cancelled(links, &reason, &mut pending)
            });
            if fired {
                child.event.notify(usize::MAX);
            }
        }
    }

    /// Unlinks the node once its last handle is gone: it leaves its parent's map and hands its
    /// children to the parent, or, without a parent, detaches them.
    fn release(self: &Arc<Self>) {
        loop {
            let Some(parent) = self.links.with(|links| links.parent.clone()) else {
                // A parent never comes back once gone, and no handle is left to add children,
                // so this one critical section detaches every child for good.
                self.links.with(|links| {
                    for child in core::mem::take(&mut links.children).into_values() {
                        child.links.with(|child_links| child_links.parent = None);
                    }
                });
                return;
            };
            let done = parent.links.with(|parent_links| {
                self.links.with(|links| {
                    if !links
                        .parent
                        .as_ref()
                        .is_some_and(|current| Arc::ptr_eq(current, &parent))
                    {
                        // Re-parented meanwhile: try again with the new parent.
                        return false;
                    }
                    if parent.cancelled.load(Ordering::Acquire)
                        && !self.cancelled.load(Ordering::Acquire)
                    {
                        // The thread cancelling the parent holds this node and will detach and
                        // cancel it and its children.
                        return true;
                    }
                    parent_links.children.remove(&key(self));
                    links.parent = None;
                    for (child_key, child) in core::mem::take(&mut links.children) {
                        child
                            .links
                            .with(|child_links| child_links.parent = Some(Arc::clone(&parent)));
                        parent_links.children.insert(child_key, child);
                    }
                    let children = &mut parent_links.children;
                    if children.capacity() > 64 && children.len() * 4 < children.capacity() {
                        children.shrink_to(children.len() * 2);
                    }
                    true
                })
            });
            if done {
                return;
            }
        }
    }
}

impl CancellationToken {
    /// Creates a token that is not cancelled.
    pub fn new() -> Self {
        Self {
            node: Node::new(Links::default(), false),
        }
    }

    /// Creates a token that is cancelled whenever `self` or any of its ancestors is (with the
    /// same reason), and that can also be cancelled on its own without affecting `self`.
    ///
    /// Dropping `self` does not detach the child from `self`'s ancestors.
    pub fn child_token(&self) -> CancellationToken {
        let parent = &self.node;
        let node = parent.links.with(|links| {
            if parent.cancelled.load(Ordering::Acquire) {
                let inherited = Links {
                    reason: links.reason.clone(),
                    ..Links::default()
                };
                return Node::new(inherited, true);
            }
            let child = Node::new(
                Links {
                    parent: Some(Arc::clone(parent)),
                    ..Links::default()
                },
                false,
            );
            links.children.insert(key(&child), Arc::clone(&child));
            child
        });
        CancellationToken { node }
    }

    /// Cancels the token (and its children) without a reason. Does nothing if already cancelled.
    pub fn cancel(&self) {
        self.node.cancel(None);
    }

    /// Cancels the token (and its children) with `reason`. Does nothing if already cancelled.
    pub fn cancel_with(&self, reason: impl Into<Cow<'static, str>>) {
        self.node.cancel(Some(reason.into()));
    }

    /// Returns `true` once the token is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.node.cancelled.load(Ordering::Acquire)
    }

    /// Returns the reason given to the first cancel call, if any.
    pub fn reason(&self) -> Option<Cow<'static, str>> {
        self.node.links.with(|links| links.reason.clone())
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
        poll_notified(&self.node.event, listener, cx, || {
            self.is_cancelled().then_some(())
        })
    }

    /// Returns `true` if both handles point to the same token.
    pub fn same_token(&self, other: &CancellationToken) -> bool {
        Arc::ptr_eq(&self.node, &other.node)
    }
}

impl Default for CancellationToken {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for CancellationToken {
    fn clone(&self) -> Self {
        self.node.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            node: Arc::clone(&self.node),
        }
    }
}

impl Drop for CancellationToken {
    fn drop(&mut self) {
        if self.node.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.node.release();
        }
    }
}

impl fmt::Debug for CancellationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let children = self.node.links.with(|links| links.children.len());
        f.debug_struct("CancellationToken")
            .field("cancelled", &self.is_cancelled())
            .field("children", &children)
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
