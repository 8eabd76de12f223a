//! [`Commit`]: the end of one batch of writes, a future.

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::StoreError;

/// A boxed future of a commit's result, for stores whose writes end later (IndexedDB).
pub type PendingCommit = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'static>>;

/// The result of [`Store::commit`](crate::Store::commit): a future that resolves when the
/// batch is durable (`Ok`) or refused (`Err`, none of it applied).
///
/// A store that writes in the calling thread (a file, memory) returns a commit that is
/// already resolved ([`Commit::ready`]); a store whose writes end in a callback (IndexedDB)
/// returns one that resolves then ([`Commit::pending`]). Either way, the writes are ordered:
/// a batch committed after another is applied after it, whether or not anyone awaits the
/// first.
///
/// ```
/// use orchestrator_store::{Commit, StoreError};
///
/// let mut done = Commit::ready(Ok(()));
/// assert!(done.is_ready());
/// assert_eq!(done.try_result(), Some(Ok(())));
///
/// let refused = Commit::ready(Err(StoreError::Closed));
/// assert_eq!(refused.wait(), Err(StoreError::Closed)); // on a thread that may block
/// ```
#[must_use = "a commit says whether the writes are durable: await it (or `wait` on a thread)"]
pub struct Commit {
    state: State,
}

enum State {
    Ready(Option<Result<(), StoreError>>),
    Pending(PendingCommit),
}

impl Commit {
    /// A commit that has already ended with `result`.
    pub fn ready(result: Result<(), StoreError>) -> Self {
        Self {
            state: State::Ready(Some(result)),
        }
    }

    /// A commit that ends when `future` does.
    pub fn pending(future: impl Future<Output = Result<(), StoreError>> + Send + 'static) -> Self {
        Self {
            state: State::Pending(Box::pin(future)),
        }
    }

    /// Whether the result is known without waiting (a store that writes in the calling
    /// thread). A pending commit that has since ended still says `false` until polled.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready(Some(_)))
    }

    /// Takes the result if it is known without waiting; `None` if the commit is still
    /// pending (or its result was taken).
    pub fn try_result(&mut self) -> Option<Result<(), StoreError>> {
        match &mut self.state {
            State::Ready(result) => result.take(),
            State::Pending(_) => None,
        }
    }

    /// Blocks the calling thread until the commit ends, and returns its result.
    ///
    /// For threads that may block (a writer thread, a test). Never call it on a browser's
    /// main thread: a pending commit there ends in a callback of the page's event loop,
    /// which a blocked thread never runs. Await the commit instead.
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn wait(mut self) -> Result<(), StoreError> {
        if let Some(result) = self.try_result() {
            return result;
        }
        // Without threads a thread cannot park: waiting would spin forever. Loud instead.
        #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
        {
            Err(StoreError::Other(
                "a pending commit was waited for on a thread that cannot block (a browser's): \
                 await it instead"
                    .into(),
            ))
        }
        #[cfg(not(all(target_arch = "wasm32", not(target_feature = "atomics"))))]
        {
            block_on(self)
        }
    }
}

impl Future for Commit {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Ready(result) => Poll::Ready(result.take().unwrap_or(Err(StoreError::Other(
                "the commit's result was already taken".into(),
            )))),
            State::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for Commit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Ready(Some(result)) => f.debug_tuple("Commit::Ready").field(result).finish(),
            State::Ready(None) => f.write_str("Commit::Taken"),
            State::Pending(_) => f.write_str("Commit::Pending"),
        }
    }
}

/// Polls `future` on this thread until it ends, parking between wake-ups.
///
/// # Panics
///
/// In a browser (no threads), if `future` does not end on its first poll.
#[cfg(feature = "std")]
#[cfg_attr(
    all(target_arch = "wasm32", not(target_feature = "atomics")),
    allow(dead_code)
)]
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    use alloc::sync::Arc;
    use std::task::Wake;

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }

    let mut future = core::pin::pin!(future);
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    // Without threads, parking returns at once and a loop would spin forever.
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => {
            panic!("a pending future was blocked on in a browser, which cannot block: await it")
        }
    }
    #[cfg(not(all(target_arch = "wasm32", not(target_feature = "atomics"))))]
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
