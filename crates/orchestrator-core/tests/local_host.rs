//! The conformance suite, in both flavours, on a runtime made with `LocalHost` from a host
//! whose spawner and timer take and make only futures that are not `Send` (a browser's
//! `spawn_local` and `setTimeout` are like this): every engine sleep is driven by the host's
//! sleeps. The host here is the virtual-time runtime, seen through futures that hold an `Rc`.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orchestrator_core::runtime::{
    Instant, LocalHost, LocalSleep, LocalSpawn, LocalSpawnError, LocalTask, LocalTimer, Timer,
};
use orchestrator_core::testing::VirtualRuntime;

/// A host of tasks and sleeps that are not `Send`; counts the sleeps it makes.
struct Host(VirtualRuntime, Arc<AtomicUsize>);

impl Host {
    fn new(rt: &VirtualRuntime) -> Self {
        Self(rt.clone(), Arc::new(AtomicUsize::new(0)))
    }
}

impl LocalSpawn for Host {
    fn spawn_local(&self, task: LocalTask) -> Result<(), LocalSpawnError> {
        self.0.spawn_local(task)
    }
}

impl LocalTimer for Host {
    fn sleep_local(&self, duration: Duration) -> LocalSleep {
        self.1.fetch_add(1, Ordering::Relaxed);
        let (not_send, sleep) = (Rc::new(()), self.0.sleep(duration));
        LocalSleep::new(async move {
            sleep.await;
            drop(not_send);
        })
    }

    fn now(&self) -> Instant {
        Timer::now(&self.0)
    }
}

mod threaded {
    use super::*;
    orchestrator_core::conformance_suite!(|case| {
        let rt = VirtualRuntime::new();
        rt.block_on(case(Arc::new(LocalHost::new(Host::new(&rt)))));
    });
}

mod local {
    use super::*;
    orchestrator_core::conformance_suite!(
        local | case | {
            let rt = VirtualRuntime::new();
            rt.block_on(case(Arc::new(LocalHost::new(Host::new(&rt)))));
        }
    );
}

/// One host sleep per earliest deadline, whatever the number of engine sleeps; a sleep is
/// never early; dropped sleeps are deregistered.
#[test]
fn many_engine_sleeps_share_one_host_sleep_at_a_time() {
    use core::future::Future;
    use core::pin::Pin;
    use core::task::{Context, Waker};

    let rt = VirtualRuntime::new();
    let host = LocalHost::new(Host::new(&rt));
    let mut cx = Context::from_waker(Waker::noop());
    let host_sleeps = host.host().1.clone();
    // Longest first: then shortest first (100 s down to 51 s, then 1 s up to 50 s).
    let mut sleeps: Vec<Pin<Box<_>>> = (51..=100u64)
        .rev()
        .chain(1..=50)
        .map(|s| Box::pin(host.sleep(Duration::from_secs(s))))
        .collect();
    for sleep in &mut sleeps {
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(host.pending(), 100);
    // Each earlier deadline re-armed the host (100 s down to 51 s, then 1 s); the later
    // ones (2 s to 50 s) did not.
    assert_eq!(host_sleeps.load(Ordering::Relaxed), 51);
    rt.advance(Duration::from_millis(999));
    rt.run_until_stalled();
    assert_eq!(host.pending(), 100, "nothing is early");
    rt.advance(Duration::from_millis(1));
    rt.run_until_stalled();
    assert_eq!(host.pending(), 99);
    // The 1 s deadline fired and re-armed the host for the next one, 2 s.
    assert_eq!(host_sleeps.load(Ordering::Relaxed), 52);
    let one_second = sleeps.remove(50);
    drop(one_second);
    sleeps.truncate(10); // keep 100 s down to 91 s; the rest are dropped early
    assert_eq!(host.pending(), 10);
    rt.advance(Duration::from_secs(100));
    rt.run_until_stalled();
    assert_eq!(host.pending(), 0);
    for sleep in &mut sleeps {
        assert!(sleep.as_mut().poll(&mut cx).is_ready());
    }
}
