//! `StateStream::wait_for`: the first state (the current one included) that satisfies a
//! predicate, or `StateClosed` once the orchestrator is disposed.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FusedStream;
use orchestrator_core::runtime::{Spawn, Task, Timer};
use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    Dispatcher, Event, Orchestrator, OrchestratorContext, OrchestratorHandle, Origin, StateClosed,
};

/// Adds each `Add` event's value to its state.
struct Add(u32);
struct Sum;
impl Orchestrator for Sum {
    type State = u32;
    fn on_event(&mut self, event: &Event, _: Origin, cx: &mut OrchestratorContext<'_, u32>) {
        if let Some(Add(n)) = event.downcast_ref::<Add>() {
            cx.update(|total| *total += n);
        }
    }
}

fn setup() -> (
    VirtualRuntime,
    Dispatcher<VirtualRuntime>,
    OrchestratorHandle<u32>,
) {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    let sum = Sum.builder(0, &d).start().unwrap();
    (rt, d, sum)
}

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// A predicate that records every state it is given.
fn recording(accept: impl Fn(u32) -> bool) -> (Arc<Mutex<Vec<u32>>>, impl FnMut(&u32) -> bool) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    (log, move |n: &u32| {
        seen.lock().unwrap().push(*n);
        accept(*n)
    })
}

#[test]
fn a_predicate_true_for_the_current_state_resolves_on_the_first_poll() {
    let (rt, d, sum) = setup();
    let mut states = sum.states();
    assert_eq!(
        poll_once(pin!(states.wait_for(|n| *n == 0))),
        Poll::Ready(Ok(0))
    );

    d.bus().emit(Add(5)).unwrap();
    rt.run_until_stalled();
    // The current state counts even when the stream has not yielded it.
    assert_eq!(
        poll_once(pin!(states.wait_for(|n| *n == 5))),
        Poll::Ready(Ok(5))
    );
    // The state it resolved with counts as seen: the stream waits for the next change.
    assert!(poll_once(pin!(states.next())).is_pending());
}

#[test]
fn a_predicate_true_after_several_updates_checks_each_state_it_sees() {
    let (rt, d, sum) = setup();
    let mut states = sum.states();
    let (log, predicate) = recording(|n| n >= 6);
    let mut waiting = pin!(states.wait_for(predicate));
    assert!(poll_once(waiting.as_mut()).is_pending());
    for n in 1..=3 {
        d.bus().emit(Add(n)).unwrap();
        rt.run_until_stalled();
        let outcome = poll_once(waiting.as_mut());
        if n < 3 {
            assert!(outcome.is_pending(), "after adding {n}");
        } else {
            assert_eq!(outcome, Poll::Ready(Ok(6)));
        }
    }
    assert_eq!(*log.lock().unwrap(), [0, 1, 3, 6]);
}

#[test]
fn a_state_skipped_by_overwriting_is_not_checked_but_the_latest_is() {
    let (rt, d, sum) = setup();
    let mut states = sum.states();
    let (log, predicate) = recording(|n| n >= 2);
    let mut waiting = pin!(states.wait_for(predicate));
    assert!(poll_once(waiting.as_mut()).is_pending());
    // Two updates before the waiter looks again: 2 is replaced by 5.
    d.bus().emit(Add(2)).unwrap();
    d.bus().emit(Add(3)).unwrap();
    rt.run_until_stalled();
    assert_eq!(sum.state(), 5);
    assert_eq!(poll_once(waiting.as_mut()), Poll::Ready(Ok(5)));
    assert_eq!(*log.lock().unwrap(), [0, 5]);

    // Only the skipped state satisfied: nothing to resolve with, until disposal.
    let mut states = sum.states();
    let mut exactly_six = pin!(states.wait_for(|n| *n == 6));
    assert!(poll_once(exactly_six.as_mut()).is_pending());
    d.bus().emit(Add(1)).unwrap();
    d.bus().emit(Add(1)).unwrap();
    rt.run_until_stalled();
    assert_eq!(sum.state(), 7);
    assert!(poll_once(exactly_six.as_mut()).is_pending());
    sum.dispose();
    assert_eq!(poll_once(exactly_six), Poll::Ready(Err(StateClosed)));
}

#[test]
fn a_predicate_never_true_before_disposal_is_an_error_and_ends_the_stream() {
    let (rt, d, sum) = setup();
    let mut states = sum.states();
    let mut waiting = pin!(states.wait_for(|n| *n > 100));
    assert!(poll_once(waiting.as_mut()).is_pending());
    d.bus().emit(Add(1)).unwrap();
    rt.run_until_stalled();
    assert!(poll_once(waiting.as_mut()).is_pending());
    sum.dispose();
    let err = poll_once(waiting).map(Result::unwrap_err);
    assert_eq!(err, Poll::Ready(StateClosed));
    assert_eq!(
        StateClosed.to_string(),
        "the state stream ended: the orchestrator was disposed"
    );
    assert!(states.is_terminated());
    assert_eq!(rt.block_on(states.next()), None);
}

#[test]
fn after_disposal_only_the_last_state_is_checked() {
    let (rt, d, sum) = setup();
    d.bus().emit(Add(4)).unwrap();
    rt.run_until_stalled();
    sum.dispose();
    let mut states = sum.states();
    assert_eq!(rt.block_on(states.wait_for(|n| *n == 4)), Ok(4));
    assert_eq!(rt.block_on(states.wait_for(|n| *n == 5)), Err(StateClosed));
}

#[test]
fn dropping_a_pending_wait_loses_no_state() {
    let (rt, d, sum) = setup();
    let mut states = sum.states();
    {
        let mut waiting = pin!(states.wait_for(|n| *n == 1));
        assert!(poll_once(waiting.as_mut()).is_pending());
    } // cancelled while waiting
    d.bus().emit(Add(1)).unwrap();
    rt.run_until_stalled();
    assert_eq!(
        poll_once(pin!(states.wait_for(|n| *n == 1))),
        Poll::Ready(Ok(1))
    );
}

#[test]
fn block_on_waits_for_updates_made_later_on_the_virtual_clock() {
    let (rt, d, sum) = setup();
    let bus = d.bus().clone();
    let clock = rt.clone();
    rt.spawn(Task::new(async move {
        for n in 1..=4 {
            clock.sleep(Duration::from_secs(1)).await;
            bus.emit(Add(n)).unwrap();
        }
    }))
    .unwrap();
    let mut states = sum.states();
    assert_eq!(rt.block_on(states.wait_for(|n| *n >= 6)), Ok(6));
    assert_eq!(rt.now().elapsed_since_epoch(), Duration::from_secs(3));
}
