//! The signal bus: delivery, ordering, lag (memory), closing, typed subscriptions.

use std::any::TypeId;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures::StreamExt;
use futures::executor::block_on;
use orchestrator_core::{Event, SignalBus, Subscription};

#[derive(Debug, Clone, Copy, PartialEq)]
struct Seq {
    publisher: u32,
    n: u64,
}

fn drain(sub: &mut Subscription) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(e) = sub.try_next() {
        out.push(e);
    }
    out
}

fn poll_once(sub: &mut Subscription) -> Poll<Option<Event>> {
    Pin::new(sub).poll_next(&mut Context::from_waker(Waker::noop()))
}

use futures::Stream;

#[test]
fn every_subscriber_present_gets_every_event_in_order() {
    // Fewer under Miri (about 100x slower), still several batches per subscription.
    const EVENTS: u64 = if cfg!(miri) { 100 } else { 1000 };
    let bus = SignalBus::new();
    let mut subs: Vec<_> = (0..3).map(|_| bus.subscribe()).collect();
    for n in 0..EVENTS {
        assert_eq!(bus.emit(Seq { publisher: 0, n }).unwrap(), 3);
        if n % 7 == 0 {
            // Interleave reading with publishing for one subscriber.
            assert!(subs[1].try_next().is_some());
        }
    }
    let mut firsts = 0;
    for (i, sub) in subs.iter_mut().enumerate() {
        let got: Vec<u64> = drain(sub)
            .iter()
            .map(|e| e.downcast_ref::<Seq>().unwrap().n)
            .collect();
        // Subscriber 1 read one event per multiple of 7 while publishing.
        let start = if i == 1 { EVENTS.div_ceil(7) } else { 0 };
        assert_eq!(got, (start..EVENTS).collect::<Vec<_>>(), "subscriber {i}");
        firsts += 1;
    }
    assert_eq!(firsts, 3);
    assert_eq!(
        bus.queued(),
        0,
        "every event was taken by everyone: nothing stays queued"
    );
}

#[test]
fn late_subscriber_sees_only_later_events_and_one_allocation_is_shared() {
    let bus = SignalBus::new();
    let mut early = bus.subscribe();
    bus.emit(1u32).unwrap();
    let mut late = bus.subscribe();
    let second = Event::new(2u32);
    bus.publish(second.clone()).unwrap();
    let early_got = drain(&mut early);
    let late_got = drain(&mut late);
    assert_eq!(early_got.len(), 2);
    assert_eq!(late_got.len(), 1);
    assert!(late_got[0].ptr_eq(&second) && early_got[1].ptr_eq(&second));
    assert_eq!(second.payload_type_id(), TypeId::of::<u32>());
}

#[test]
fn a_subscriber_that_never_reads_blocks_no_one_and_loses_nothing() {
    let bus = SignalBus::new();
    const EVENTS: u64 = if cfg!(miri) { 200 } else { 10_000 };
    let stuck = bus.subscribe();
    let mut reader = bus.subscribe();
    for n in 0..EVENTS {
        bus.emit(n).unwrap(); // never waits
        assert_eq!(
            *reader.try_next().unwrap().downcast_ref::<u64>().unwrap(),
            n
        );
    }
    assert_eq!(bus.queued() as u64, EVENTS, "kept for the stuck subscriber");
    drop(stuck);
    assert_eq!(bus.queued(), 0, "dropping it releases them");
    assert_eq!(bus.subscriber_count(), 1);
}

#[test]
fn closing_drains_then_ends_and_publishing_gives_the_event_back() {
    let bus = SignalBus::new();
    let mut sub = bus.subscribe();
    bus.emit("a").unwrap();
    bus.emit("b").unwrap();
    bus.close();
    assert!(bus.is_closed());
    let err = bus.emit("c").unwrap_err();
    assert_eq!(err.to_string(), "the signal bus is closed");
    assert_eq!(err.into_inner().downcast_ref::<&str>(), Some(&"c"));
    block_on(async {
        assert_eq!(sub.next().await.unwrap().downcast_ref::<&str>(), Some(&"a"));
        assert_eq!(sub.next().await.unwrap().downcast_ref::<&str>(), Some(&"b"));
        assert!(sub.next().await.is_none());
        assert!(sub.next().await.is_none(), "stays ended");
    });
    let mut after = bus.subscribe();
    assert!(matches!(poll_once(&mut after), Poll::Ready(None)));
}

#[test]
fn dropping_the_last_handle_closes_the_bus() {
    let bus = SignalBus::new();
    let clone = bus.clone();
    let mut sub = bus.subscribe();
    drop(bus);
    assert!(!clone.is_closed(), "a handle is still alive");
    clone.emit(1u8).unwrap();
    drop(clone);
    assert!(sub.try_next().is_some());
    assert!(matches!(poll_once(&mut sub), Poll::Ready(None)));
}

#[test]
fn pending_subscriber_is_woken_by_a_publish() {
    let bus = SignalBus::new();
    let mut sub = bus.subscribe();
    assert!(poll_once(&mut sub).is_pending());
    let publisher = bus.clone();
    let t = std::thread::spawn(move || publisher.emit(9i32).unwrap());
    let got = block_on(sub.next()).unwrap();
    assert_eq!(got.downcast_ref::<i32>(), Some(&9));
    t.join().unwrap();
}

#[test]
fn typed_subscription_yields_only_its_type_with_the_envelope() {
    #[derive(Debug, PartialEq)]
    struct LoggedIn(&'static str);
    let bus = SignalBus::new();
    let mut logins = bus.subscribe_to::<LoggedIn>();
    bus.emit(1u32).unwrap();
    bus.emit(LoggedIn("ada")).unwrap();
    bus.emit("noise").unwrap();
    bus.emit(LoggedIn("bob")).unwrap();
    bus.close();
    let got: Vec<_> = block_on(logins.by_ref().collect::<Vec<_>>());
    assert_eq!(got.len(), 2);
    assert_eq!(*got[0], LoggedIn("ada"));
    assert_eq!(got[1].0, "bob");
    assert!(got[1].event().correlation_id().is_none());
}

#[test]
fn per_publisher_order_holds_with_concurrent_publishers() {
    const PUBLISHERS: u32 = 4;
    const EACH: u64 = if cfg!(miri) { 200 } else { 20_000 };
    let bus = SignalBus::new();
    let mut sub = bus.subscribe();
    let threads: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for n in 0..EACH {
                    bus.emit(Seq { publisher: p, n }).unwrap();
                }
            })
        })
        .collect();
    let reader = std::thread::spawn(move || {
        let mut next = [0u64; PUBLISHERS as usize];
        let mut total = 0;
        block_on(async {
            while total < PUBLISHERS as u64 * EACH {
                let e = sub.next().await.unwrap();
                let s = e.downcast_ref::<Seq>().unwrap();
                assert_eq!(s.n, next[s.publisher as usize], "publisher {}", s.publisher);
                next[s.publisher as usize] += 1;
                total += 1;
            }
        });
        next
    });
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(reader.join().unwrap(), [EACH; PUBLISHERS as usize]);
    assert_eq!(bus.queued(), 0);
}

#[test]
fn publishing_without_subscribers_queues_nothing() {
    let bus = SignalBus::new();
    assert_eq!(bus.emit(()).unwrap(), 0);
    assert_eq!(bus.queued(), 0);
}

#[test]
fn global_bus_is_one_bus_and_scoped_buses_are_isolated() {
    let global = SignalBus::global();
    assert!(global.same_bus(&SignalBus::global()));
    let scoped = SignalBus::new();
    assert!(!scoped.same_bus(&global));
    let mut on_scoped = scoped.subscribe();
    struct OnlyGlobal;
    global.emit(OnlyGlobal).unwrap();
    assert!(on_scoped.try_next().is_none());
}
