//! A core [`CancellationToken`] and a `tokio_util` one, cancelled together (feature
//! `tokio-util`).

use orchestrator_core::CancellationToken;
use orchestrator_core::runtime::SpawnErrorKind;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// The task that links two tokens; see [`link_tokens`].
#[derive(Debug)]
#[must_use = "dropping the link keeps it; `unlink` ends it"]
pub struct TokenLink(JoinHandle<()>);

impl TokenLink {
    /// Ends the link without cancelling either token.
    pub fn unlink(self) {
        self.0.abort();
    }

    /// Returns `true` once the link has done its work (one token was cancelled, and so the
    /// other) or was ended.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// Links `core` and `util`: cancelling either cancels the other (a core token keeps the
/// reason it was given; a cancellation coming from `util` has none). The link is a small task
/// on the current tokio runtime that ends as soon as one of them is cancelled; two tokens that
/// are never cancelled keep it until [`TokenLink::unlink`] or the runtime's end.
///
/// # Errors
///
/// [`SpawnErrorKind::NoRuntime`] outside a tokio runtime (nothing is linked).
///
/// ```
/// use orchestrator_core::CancellationToken;
/// use orchestrator_tokio::link_tokens;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let ours = CancellationToken::new();
/// let theirs = tokio_util::sync::CancellationToken::new();
/// let link = link_tokens(&ours, &theirs).unwrap();
/// theirs.cancel(); // an axum handler's shutdown token, say
/// ours.cancelled().await; // the jobs dispatched with `ours` are cancelled
/// tokio::task::yield_now().await;
/// assert!(link.is_finished());
/// # });
/// assert!(link_tokens(&CancellationToken::new(), &Default::default()).unwrap_err().is_no_runtime());
/// ```
pub fn link_tokens(
    core: &CancellationToken,
    util: &tokio_util::sync::CancellationToken,
) -> Result<TokenLink, SpawnErrorKind> {
    let handle = Handle::try_current().map_err(|_| SpawnErrorKind::NoRuntime)?;
    let (core, util) = (core.clone(), util.clone());
    Ok(TokenLink(handle.spawn(async move {
        tokio::select! {
            () = core.cancelled() => util.cancel(),
            () = util.cancelled() => core.cancel(),
        }
    })))
}
