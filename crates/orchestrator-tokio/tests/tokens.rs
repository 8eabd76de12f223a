//! `link_tokens` (feature `tokio-util`, on for the crate's tests): either side cancels the
//! other, the core side keeps its reason, and an unlinked pair stays apart.

use orchestrator_core::CancellationToken;
use orchestrator_tokio::link_tokens;
use tokio_util::sync::CancellationToken as UtilToken;

#[tokio::test]
async fn a_core_cancel_reaches_tokio_util_and_unlinking_keeps_them_apart() {
    let (ours, theirs) = (CancellationToken::new(), UtilToken::new());
    let link = link_tokens(&ours, &theirs).unwrap();
    ours.cancel_with("shutting down");
    theirs.cancelled().await;
    assert_eq!(ours.reason().as_deref(), Some("shutting down"));
    tokio::task::yield_now().await;
    assert!(link.is_finished());

    let (ours, theirs) = (CancellationToken::new(), UtilToken::new());
    let link = link_tokens(&ours, &theirs).unwrap();
    link.unlink();
    tokio::task::yield_now().await;
    theirs.cancel();
    tokio::task::yield_now().await;
    assert!(!ours.is_cancelled(), "unlinked");
}
