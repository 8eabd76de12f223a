//! Orchestrators on the virtual runtime: routing, state, tracking, guard, dispose, groups
//!.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use orchestrator_core::testing::{FakeError, FakeExecutor, VirtualRuntime, expect};
use orchestrator_core::{
    Dispatch, Dispatcher, DropReason, DroppedEvent, Event, Job, JobId, JobLifecycle, LoopGuard,
    Observer, Orchestrator, OrchestratorContext, OrchestratorError, OrchestratorGroup,
    OrchestratorHandle, Origin, Rejection, SignalBus,
};

/// Adds `n` to the cart after `delay`; its output event is `ItemAdded(n)`.
#[derive(Clone)]
struct AddItem {
    n: u32,
    delay: Duration,
}
impl Job for AddItem {
    type Output = u32;
    fn output_event(&self, n: &u32) -> Option<impl Send + Sync + 'static> {
        Some(ItemAdded(*n))
    }
}
#[derive(Debug, Clone, PartialEq)]
struct ItemAdded(u32);
fn add_item_exec() -> FakeExecutor<AddItem> {
    FakeExecutor::from_fn(|job: AddItem, cx| async move {
        cx.sleep(job.delay).await;
        Ok(job.n)
    })
}

/// Records what it sees; keeps the cart total as state.
type Sighting = (String, Origin, Option<JobId>);
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Sighting>>>);
impl Seen {
    fn take(&self) -> Vec<Sighting> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}
struct Cart {
    seen: Seen,
}
impl Orchestrator for Cart {
    type State = u32;
    fn on_event(&mut self, event: &Event, origin: Origin, cx: &mut OrchestratorContext<'_, u32>) {
        let what = if let Some(ItemAdded(n)) = event.downcast_ref::<ItemAdded>() {
            cx.update(|total| *total += n);
            format!("added {n}")
        } else if let Some(l) = event.downcast_ref::<JobLifecycle>() {
            format!("{l:?}")
                .split([' ', '{', '('])
                .next()
                .unwrap()
                .to_string()
        } else if event.is::<&str>() {
            let text = *event.downcast_ref::<&str>().unwrap();
            if text == "panic" {
                panic!("handler bug");
            }
            text.to_string()
        } else {
            event.payload_type_name().to_string()
        };
        self.seen
            .0
            .lock()
            .unwrap()
            .push((what, origin, event.correlation_id()));
    }
}

fn setup() -> (VirtualRuntime, Dispatcher<VirtualRuntime>) {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    d.register(add_item_exec());
    (rt, d)
}

fn cart(d: &Dispatcher<VirtualRuntime>) -> (OrchestratorHandle<u32>, Seen) {
    let seen = Seen::default();
    let h = Cart { seen: seen.clone() }.builder(0, d).start().unwrap();
    (h, seen)
}

fn item(n: u32) -> AddItem {
    AddItem {
        n,
        delay: Duration::from_millis(10),
    }
}

#[test]
fn the_dispatching_orchestrator_sees_active_events_and_another_sees_them_passive() {
    let (rt, d) = setup();
    let (a, seen_a) = cart(&d);
    let (b, seen_b) = cart(&d);
    let job = a.dispatch(item(3));
    let id = job.id();
    assert!(a.is_job_running(id));
    assert!(!b.is_job_running(id));
    rt.block_on(job).unwrap();
    rt.run_until_stalled();
    let expected = |origin| {
        vec![
            ("Started".to_string(), origin, Some(id)),
            ("added 3".to_string(), origin, Some(id)),
            ("Succeeded".to_string(), origin, Some(id)),
        ]
    };
    assert_eq!(seen_a.take(), expected(Origin::Active));
    assert_eq!(seen_b.take(), expected(Origin::Passive));
    assert_eq!(
        (a.state(), b.state()),
        (3, 3),
        "both update their own state"
    );
    assert!(
        !a.is_job_running(id),
        "untracked after its terminal event was handled"
    );
    assert_eq!(a.running_jobs(), 0);
}

#[test]
fn three_concurrent_jobs_are_all_active_for_their_orchestrator() {
    let (rt, d) = setup();
    let (a, seen) = cart(&d);
    let jobs: Vec<_> = (1..=3).map(|n| a.dispatch(item(n))).collect();
    assert_eq!(a.running_jobs(), 3);
    for j in jobs {
        rt.block_on(j).unwrap();
    }
    rt.run_until_stalled();
    let seen = seen.take();
    assert_eq!(seen.len(), 9);
    assert!(seen.iter().all(|(_, origin, _)| *origin == Origin::Active));
    assert_eq!(a.state(), 6);
    assert_eq!(a.running_jobs(), 0);
}

#[test]
fn events_published_directly_are_passive_and_state_streams_replay_the_current_state() {
    let (rt, d) = setup();
    let (a, seen) = cart(&d);
    d.bus().emit("hello").unwrap();
    rt.run_until_stalled();
    assert_eq!(seen.take(), [("hello".to_string(), Origin::Passive, None)]);

    rt.block_on(a.dispatch(item(5))).unwrap();
    rt.run_until_stalled();
    let mut late = a.states();
    assert_eq!(rt.block_on(late.next()), Some(5), "the current state first");
    rt.block_on(a.dispatch(item(2))).unwrap();
    rt.run_until_stalled();
    assert_eq!(rt.block_on(late.next()), Some(7), "then changes");
    a.dispose();
    assert_eq!(rt.block_on(late.next()), None, "no state after disposal");
    assert_eq!(rt.block_on(a.states().next()), None);
}

#[derive(Default)]
struct Reports(Mutex<Vec<String>>);
struct Reporter(Arc<Reports>);
impl Observer for Reporter {
    fn on_handler_panic(&self, orchestrator: &'static str, message: &str) {
        self.0
            .0
            .lock()
            .unwrap()
            .push(format!("panic in {orchestrator}: {message}"));
    }
    fn on_event_dropped(&self, dropped: &DroppedEvent<'_>) {
        self.0.0.lock().unwrap().push(format!(
            "{} dropped {}: {:?}",
            dropped.orchestrator(),
            dropped.event().payload_type_name(),
            dropped.reason()
        ));
    }
}

#[test]
fn a_panicking_handler_is_reported_and_the_orchestrator_goes_on() {
    let rt = VirtualRuntime::new();
    let reports = Arc::new(Reports::default());
    let d = Dispatcher::builder(rt.clone())
        .observer(Reporter(reports.clone()))
        .build();
    let seen = Seen::default();
    let a = Cart { seen: seen.clone() }
        .builder(0, &d)
        .name("cart")
        .start()
        .unwrap();
    d.bus().emit("panic").unwrap();
    d.bus().emit("after").unwrap();
    rt.run_until_stalled();
    assert_eq!(*reports.0.lock().unwrap(), ["panic in cart: handler bug"]);
    assert_eq!(seen.take(), [("after".to_string(), Origin::Passive, None)]);
    assert!(a.is_running());
}

#[test]
fn dispose_stops_handling_but_running_jobs_finish_and_others_are_unaffected() {
    let (rt, d) = setup();
    let (a, seen_a) = cart(&d);
    let (b, seen_b) = cart(&d);
    let job = a.dispatch(AddItem {
        n: 4,
        delay: Duration::from_secs(1),
    });
    rt.run_until_stalled();
    a.dispose();
    assert!(a.is_disposed() && !a.is_running());
    assert_eq!(rt.block_on(job).unwrap().value, 4, "the job runs on");
    rt.run_until_stalled();
    assert_eq!(
        seen_a.take().len(),
        1,
        "only the Started event before disposal"
    );
    assert_eq!(a.state(), 0, "no state change after disposal");
    assert_eq!(
        seen_b.take().len(),
        3,
        "the other orchestrator saw everything"
    );
    assert_eq!(b.state(), 4);
    let refused = rt.block_on(a.dispatch(item(1)));
    let disposed = Rejection::Disposed {
        orchestrator: a.name(),
    };
    assert_eq!(expect::rejected(&refused), Ok(&disposed));
    assert_eq!(a.start().unwrap_err(), OrchestratorError::Disposed);
}

#[test]
fn dispatch_before_start_is_refused_and_start_twice_is_an_error() {
    let (rt, d) = setup();
    let seen = Seen::default();
    let a = Cart { seen }.builder(0, &d).build();
    let refused = rt.block_on(a.dispatch(item(1)));
    let not_started = Rejection::NotStarted {
        orchestrator: a.name(),
    };
    assert_eq!(expect::rejected(&refused), Ok(&not_started));
    a.start().unwrap();
    assert_eq!(a.start().unwrap_err(), OrchestratorError::AlreadyStarted);
    assert!(
        rt.block_on(a.dispatch(item(1))).is_ok(),
        "dispatch works once started"
    );
}

/// Re-dispatches its own job every time it sees that job's success: an event storm.
struct Looper;
impl Orchestrator for Looper {
    type State = u32;
    fn on_event(&mut self, event: &Event, origin: Origin, cx: &mut OrchestratorContext<'_, u32>) {
        if origin.is_active() && event.is::<ItemAdded>() {
            cx.update(|n| *n += 1);
            drop(cx.dispatch(AddItem {
                n: 1,
                delay: Duration::ZERO,
            }));
        }
    }
}

#[test]
fn the_storm_guard_throttles_an_orchestrator_that_redispatches_on_its_own_events() {
    let rt = VirtualRuntime::new();
    let reports = Arc::new(Reports::default());
    let d = Dispatcher::builder(rt.clone())
        .observer(Reporter(reports.clone()))
        .build();
    d.register(add_item_exec());
    let looper = Looper
        .builder(0, &d)
        .name("looper")
        .guard(LoopGuard::new().with_rate_limit_for::<ItemAdded>(NonZeroU32::new(50).unwrap()))
        .start()
        .unwrap();
    let now = || AddItem {
        n: 1,
        delay: Duration::ZERO,
    };
    drop(looper.dispatch(now()));
    // Zero-delay jobs: the rate limit ends the loop long before the depth limit would.
    rt.run_until_stalled();
    assert_eq!(
        looper.state(),
        50,
        "at most 50 ItemAdded handled in the window"
    );
    assert_eq!(
        looper.dropped_events(),
        1,
        "the 51st was dropped, which ended the loop"
    );
    assert_eq!(
        looper.running_jobs(),
        0,
        "bookkeeping went on for the dropped event's job"
    );
    assert_eq!(looper.dropped_events_of::<ItemAdded>(), 1);
    let report = format!(
        "looper dropped {}: {:?}",
        std::any::type_name::<ItemAdded>(),
        DropReason::RateLimited { limit: 50 }
    );
    assert_eq!(*reports.0.lock().unwrap(), std::slice::from_ref(&report));
    // The process is healthy: other work still runs, and a new window admits events again.
    rt.advance(Duration::from_secs(1));
    drop(looper.dispatch(now()));
    rt.run_until_stalled();
    assert_eq!(looper.state(), 100);
    assert_eq!(looper.dropped_events(), 2);
    assert_eq!(
        *reports.0.lock().unwrap(),
        [report.clone(), report],
        "every drop is reported"
    );
}

#[test]
fn typed_on_subscription_ends_with_the_orchestrator() {
    let (rt, d) = setup();
    let (a, _) = cart(&d);
    let mut added = a.on::<ItemAdded>();
    rt.block_on(a.dispatch(item(8))).unwrap();
    assert_eq!(rt.block_on(added.next()).map(|e| e.0), Some(8));
    a.dispose();
    assert!(rt.block_on(added.next()).is_none());
}

#[test]
fn scoped_bus_isolation_scope_one_sees_its_job_scope_two_and_global_see_nothing() {
    let (rt, d) = setup();
    let (scope1, scope2) = (SignalBus::new(), SignalBus::new());
    let seen1 = Seen::default();
    let seen2 = Seen::default();
    let o1 = Cart {
        seen: seen1.clone(),
    }
    .builder(0, &d)
    .bus(scope1.clone())
    .start()
    .unwrap();
    let _o2 = Cart {
        seen: seen2.clone(),
    }
    .builder(0, &d)
    .bus(scope2.clone())
    .start()
    .unwrap();
    let mut global = SignalBus::global().subscribe();
    let mut dispatcher_bus = d.bus().subscribe();
    rt.block_on(o1.dispatch(item(2))).unwrap();
    rt.run_until_stalled();
    assert_eq!(seen1.take().len(), 3);
    assert!(seen2.take().is_empty());
    assert!(std::iter::from_fn(|| global.try_next()).all(|e| !e.is_from_job::<AddItem>()));
    assert!(dispatcher_bus.try_next().is_none());
}

#[test]
fn a_group_starts_and_disposes_together_and_a_failed_start_disposes_the_started() {
    let (_rt, d) = setup();
    let a = Cart {
        seen: Seen::default(),
    }
    .builder(0, &d)
    .build();
    let b = Cart {
        seen: Seen::default(),
    }
    .builder(0, &d)
    .build();
    let mut group = OrchestratorGroup::new();
    group.add(&a).add(&b);
    assert_eq!(group.len(), 2);
    group.start().unwrap();
    assert!(a.is_running() && b.is_running());
    group.dispose();
    assert!(a.is_disposed() && b.is_disposed());

    let c = Cart {
        seen: Seen::default(),
    }
    .builder(0, &d)
    .build();
    let broken = Cart {
        seen: Seen::default(),
    }
    .builder(0, &d)
    .build();
    broken.dispose();
    let mut group = OrchestratorGroup::new();
    group.add(&c).add(&broken);
    assert_eq!(group.start().unwrap_err(), OrchestratorError::Disposed);
    assert!(c.is_disposed(), "all or nothing");
}

/// Reports progress `reports` times, then fails.
#[derive(Clone)]
struct Chatty {
    reports: u32,
}
impl Job for Chatty {
    type Output = ();
}
fn chatty_exec() -> FakeExecutor<Chatty> {
    FakeExecutor::from_fn(|job: Chatty, cx| async move {
        for i in 0..job.reports {
            cx.report_progress(f64::from(i) / f64::from(job.reports));
        }
        Err(FakeError::new("never"))
    })
}

struct TerminalCounter;
impl Orchestrator for TerminalCounter {
    type State = (u32, u32);
    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, (u32, u32)>,
    ) {
        match event.downcast_ref::<JobLifecycle>() {
            Some(JobLifecycle::Progress(_)) => cx.update(|s| s.0 += 1),
            Some(JobLifecycle::Failed(_)) if origin.is_active() => cx.update(|s| s.1 += 1),
            _ => {}
        }
    }
}

#[test]
fn a_chatty_job_cannot_use_up_the_guard_budget_of_its_own_terminal_event() {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    d.register(chatty_exec());
    // The default guard drops nothing by rate: the burst is delivered in full.
    let o = TerminalCounter.builder((0, 0), &d).start().unwrap();
    // All lifecycle events, progress included, asked for explicitly.
    let all = o
        .job(Chatty { reports: 100 })
        .lifecycle_events(true)
        .dispatch();
    let id = all.id();
    rt.block_on(all).unwrap_err();
    rt.block_on(o.handled(id)).unwrap();
    assert_eq!(
        o.state(),
        (100, 1),
        "every progress event and the terminal event handled"
    );
    assert_eq!(o.dropped_events(), 0);
    // An opt-in rate limit throttles progress, not the terminal event.
    let o = TerminalCounter
        .builder((0, 0), &d)
        .guard(LoopGuard::new().with_rate_limit(NonZeroU32::new(50).unwrap()))
        .start()
        .unwrap();
    let all = o
        .job(Chatty { reports: 100 })
        .lifecycle_events(true)
        .dispatch();
    let id = all.id();
    rt.block_on(all).unwrap_err();
    rt.block_on(o.handled(id)).unwrap();
    assert_eq!(
        o.state(),
        (50, 1),
        "progress throttled at 50, the terminal event handled"
    );
    assert_eq!(o.dropped_events(), 50);
    assert_eq!(o.dropped_events_of::<JobLifecycle>(), 50);
}

#[test]
fn orchestrator_jobs_publish_no_progress_events_unless_asked() {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    d.register(chatty_exec());
    let o = TerminalCounter.builder((0, 0), &d).start().unwrap();
    let handle = o.dispatch(Chatty { reports: 100 });
    let id = handle.id();
    rt.block_on(handle).unwrap_err();
    rt.block_on(o.handled(id)).unwrap();
    assert_eq!(
        o.state(),
        (0, 1),
        "no progress events; the terminal event handled"
    );
    assert!(!o.is_job_running(id));
    assert_eq!(o.dropped_events(), 0);
    // An explicit "off" cannot be honoured (tracking needs the terminal event): rejected.
    let off = o
        .job(Chatty { reports: 100 })
        .lifecycle_events(false)
        .dispatch();
    let id = off.id();
    let err = rt.block_on(off);
    let invalid = expect::rejected(&err).unwrap();
    assert!(matches!(invalid, Rejection::Invalid { .. }), "{invalid:?}");
    assert!(!o.is_job_running(id));
    rt.run_until_stalled();
    assert_eq!(o.state(), (0, 1), "the rejected job never ran");
}

#[test]
fn an_orchestrator_whose_runtime_shut_down_is_stopped_not_running() {
    use orchestrator_core::{Event, Orchestrator, OrchestratorContext, OrchestratorStatus, Origin};
    struct Idle;
    impl Orchestrator for Idle {
        type State = u32;
        fn on_event(&mut self, _: &Event, _: Origin, _: &mut OrchestratorContext<'_, u32>) {}
    }
    let rt = orchestrator_core::testing::VirtualRuntime::new();
    let dispatcher = orchestrator_core::Dispatcher::new(rt.clone());
    let idle = Idle.builder(0, &dispatcher).start().unwrap();
    rt.run_until_stalled();
    assert_eq!(idle.status(), OrchestratorStatus::Running);
    rt.shutdown(); // drops the event loop's task unfinished
    assert_eq!(idle.status(), OrchestratorStatus::Stopped);
    assert!(!idle.is_running());
    assert_eq!(idle.state(), 0, "its state stays readable");
}
