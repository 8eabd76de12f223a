//! Cancellation token trees: propagation through dropped intermediate tokens, races between
//! cancelling and building the tree, and bounded bookkeeping.

use std::sync::{Arc, Barrier};
use std::thread;

use orchestrator_core::CancellationToken;

/// The `Debug` text of a token that is not cancelled and has `children` live children.
fn live(children: usize) -> String {
    format!("CancellationToken {{ cancelled: false, children: {children} }}")
}

#[test]
fn grandchild_is_cancelled_after_the_middle_token_is_dropped() {
    let a = CancellationToken::new();
    let b = a.child_token();
    let c = b.child_token();
    drop(b);
    assert!(!c.is_cancelled());
    a.cancel_with("stop");
    assert!(c.is_cancelled());
    assert_eq!(c.reason().as_deref(), Some("stop"));
    futures::executor::block_on(c.cancelled());
}

#[test]
fn a_clone_keeps_the_middle_token_in_the_tree() {
    let a = CancellationToken::new();
    let b = a.child_token();
    let b2 = b.clone();
    let c = b.child_token();
    drop(b);
    assert_eq!(format!("{a:?}"), live(1));
    assert_eq!(format!("{b2:?}"), live(1));
    a.cancel();
    assert!(b2.is_cancelled() && c.is_cancelled());
}

#[test]
fn cancelling_a_child_leaves_parent_and_siblings_alone() {
    let a = CancellationToken::new();
    let b = a.child_token();
    let sibling = a.child_token();
    let c = b.child_token();
    b.cancel();
    assert!(c.is_cancelled());
    assert!(!a.is_cancelled() && !sibling.is_cancelled());
    drop(b);
    assert_eq!(format!("{a:?}"), live(1));
}

#[test]
fn children_of_a_dropped_root_are_independent_tokens() {
    let a = CancellationToken::new();
    let b = a.child_token();
    let c = b.child_token();
    drop(a);
    assert!(!b.is_cancelled());
    b.cancel();
    assert!(c.is_cancelled());
}

#[test]
fn deep_chain_is_cancelled_whichever_order_the_middles_are_dropped_in() {
    const DEPTH: usize = if cfg!(miri) { 100 } else { 1_000 };
    // Drop orders for the middle tokens: leaf side first, root side first, interleaved.
    let orders: [fn(usize) -> Vec<usize>; 3] = [
        |n| (1..n - 1).rev().collect(),
        |n| (1..n - 1).collect(),
        |n| (1..n - 1).step_by(2).chain((2..n - 1).step_by(2)).collect(),
    ];
    for order in orders {
        let mut chain = vec![CancellationToken::new()];
        for _ in 1..DEPTH {
            let next = chain.last().unwrap().child_token();
            chain.push(next);
        }
        let mut chain: Vec<Option<CancellationToken>> = chain.into_iter().map(Some).collect();
        for index in order(DEPTH) {
            chain[index] = None;
        }
        let root = chain[0].take().unwrap();
        let leaf = chain[DEPTH - 1].take().unwrap();
        let shape = format!("{root:?}");
        assert!(!leaf.is_cancelled());
        root.cancel_with("deep");
        assert!(leaf.is_cancelled());
        assert_eq!(leaf.reason().as_deref(), Some("deep"));
        // The leaf was re-attached to the root: the dropped middles are gone.
        assert_eq!(shape, live(1));
    }
}

#[test]
fn deep_chain_without_drops_is_cancelled_without_recursion() {
    // Deep enough to overflow a test thread's stack if cancelling recursed per level.
    // (Miri runs a shorter chain: it checks the memory, not the stack depth.)
    const DEPTH: usize = if cfg!(miri) { 300 } else { 100_000 };
    let root = CancellationToken::new();
    let mut chain = Vec::with_capacity(DEPTH);
    let mut last = root.child_token();
    for _ in 0..DEPTH {
        let next = last.child_token();
        chain.push(core::mem::replace(&mut last, next));
    }
    root.cancel();
    assert!(last.is_cancelled());
    assert!(chain.iter().all(CancellationToken::is_cancelled));
    // Dropping the chain from the root side must not recurse either.
    drop(chain);
    drop(last);
}

#[test]
fn cancel_racing_child_creation_never_misses_a_child() {
    const ROUNDS: usize = if cfg!(miri) { 4 } else { 200 };
    const CHILDREN: usize = if cfg!(miri) { 20 } else { 200 };
    for _ in 0..ROUNDS {
        let root = CancellationToken::new();
        let middle = root.child_token();
        let barrier = Arc::new(Barrier::new(2));
        let canceller = {
            let barrier = Arc::clone(&barrier);
            let root = root.clone();
            thread::spawn(move || {
                barrier.wait();
                root.cancel_with("race");
            })
        };
        let builder = {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let mut made = Vec::with_capacity(2 * CHILDREN);
                for _ in 0..CHILDREN {
                    // A grandchild of the root whose parent goes away at once, and a
                    // great-grandchild under a parent that lives on.
                    let parent = middle.child_token();
                    made.push(parent.child_token());
                    made.push(parent.child_token().child_token());
                    made.push(parent);
                }
                made
            })
        };
        canceller.join().unwrap();
        let made = builder.join().unwrap();
        assert!(root.is_cancelled());
        for token in &made {
            assert!(token.is_cancelled());
            assert_eq!(token.reason().as_deref(), Some("race"));
        }
    }
}

#[test]
fn dropping_tokens_while_an_ancestor_is_cancelled_never_misses_a_descendant() {
    const ROUNDS: usize = if cfg!(miri) { 4 } else { 200 };
    const WIDTH: usize = if cfg!(miri) { 20 } else { 100 };
    for _ in 0..ROUNDS {
        let root = CancellationToken::new();
        // Each entry: a middle token (to be dropped during the cancel) and its grandchild.
        let pairs: Vec<(CancellationToken, CancellationToken)> = (0..WIDTH)
            .map(|_| {
                let middle = root.child_token().child_token();
                let leaf = middle.child_token().child_token();
                (middle, leaf)
            })
            .collect();
        let (middles, leaves): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
        let barrier = Arc::new(Barrier::new(2));
        let canceller = {
            let barrier = Arc::clone(&barrier);
            let root = root.clone();
            thread::spawn(move || {
                barrier.wait();
                root.cancel();
            })
        };
        let dropper = {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                drop(middles);
            })
        };
        canceller.join().unwrap();
        dropper.join().unwrap();
        assert!(leaves.iter().all(CancellationToken::is_cancelled));
    }
}

#[test]
fn concurrent_drops_of_neighbouring_tokens_reparent_every_survivor() {
    const ROUNDS: usize = if cfg!(miri) { 4 } else { 100 };
    const WIDTH: usize = if cfg!(miri) { 20 } else { 100 };
    for _ in 0..ROUNDS {
        let root = CancellationToken::new();
        let mut uppers = Vec::with_capacity(WIDTH);
        let mut lowers = Vec::with_capacity(WIDTH);
        let mut leaves = Vec::with_capacity(WIDTH);
        for _ in 0..WIDTH {
            let upper = root.child_token();
            let lower = upper.child_token();
            leaves.push(lower.child_token());
            uppers.push(upper);
            lowers.push(lower);
        }
        let barrier = Arc::new(Barrier::new(2));
        let threads = [uppers, lowers].map(|tokens| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                drop(tokens);
            })
        });
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(format!("{root:?}"), live(WIDTH));
        leaves.truncate(WIDTH / 2);
        assert_eq!(format!("{root:?}"), live(WIDTH / 2));
        root.cancel();
        assert!(leaves.iter().all(CancellationToken::is_cancelled));
    }
}

#[test]
fn a_long_lived_parent_forgets_dropped_children() {
    const ROUNDS: usize = if cfg!(miri) { 200 } else { 100_000 };
    let root = CancellationToken::new();
    let keep = root.child_token();
    for _ in 0..ROUNDS {
        let child = root.child_token();
        let grandchild = child.child_token();
        drop(child);
        drop(grandchild);
    }
    assert_eq!(format!("{root:?}"), live(1));
    // Replacing a token with its own child keeps one live descendant, not a growing chain.
    let mut current = root.child_token();
    for _ in 0..ROUNDS {
        current = current.child_token();
    }
    assert_eq!(format!("{root:?}"), live(2));
    drop(current);
    drop(keep);
    assert_eq!(format!("{root:?}"), live(0));
}

#[test]
fn a_child_of_a_cancelled_token_starts_cancelled_and_is_not_tracked() {
    let root = CancellationToken::new();
    root.cancel_with("early");
    let child = root.child_token();
    assert!(child.is_cancelled());
    assert_eq!(child.reason().as_deref(), Some("early"));
    assert_eq!(
        format!("{root:?}"),
        "CancellationToken { cancelled: true, children: 0 }"
    );
}
