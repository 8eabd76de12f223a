//! Loop protection by causation: causal depth on events and jobs, the loop guard's cut, and
//! that nothing else is ever dropped; every drop counted, reported and visible.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    Dispatch, Dispatcher, DropReason, DroppedEvent, Event, Executor, Job, JobContext, JobLifecycle,
    LoopGuard, Observer, Orchestrator, OrchestratorContext, Origin, SignalBus,
};

#[derive(Debug)]
struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

/// Creates a user; its output event is `UserCreated`.
struct CreateUser(u32);
#[derive(Debug, Clone, Copy)]
struct UserCreated(#[allow(dead_code)] u32);
impl Job for CreateUser {
    type Output = u32;
    fn output_event(&self, id: &u32) -> Option<impl Send + Sync + 'static> {
        Some(UserCreated(*id))
    }
}
struct Users;
impl Executor<CreateUser> for Users {
    type Error = Never;
    async fn execute(&self, job: &CreateUser, _: JobContext) -> Result<u32, Never> {
        Ok(job.0)
    }
}

/// Counts `UserCreated` events of the given origin.
struct Counter {
    origin: Origin,
}
impl Orchestrator for Counter {
    type State = u32;
    fn on_event(&mut self, event: &Event, origin: Origin, cx: &mut OrchestratorContext<'_, u32>) {
        if event.is::<UserCreated>() && origin == self.origin {
            cx.update(|n| *n += 1);
        }
    }
}

/// Records every drop reported to the observers: orchestrator, payload type, depth, chain
/// length, reason.
/// One reported drop: orchestrator, payload type, depth, chain length, reason.
type Report = (String, String, u32, usize, DropReason);
#[derive(Default, Clone)]
struct Drops(Arc<Mutex<Vec<Report>>>);
impl Observer for Drops {
    fn on_event_dropped(&self, dropped: &DroppedEvent<'_>) {
        let event = dropped.event();
        self.0.lock().unwrap().push((
            dropped.orchestrator().to_string(),
            event.payload_type_name().to_string(),
            event.causal_depth(),
            event.causal_chain().count(),
            dropped.reason(),
        ));
    }
}
impl Drops {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[test]
fn a_burst_of_200_jobs_is_delivered_in_full_to_active_and_passive_orchestrators() {
    let rt = VirtualRuntime::new();
    let drops = Drops::default();
    let dispatcher = Dispatcher::builder(rt.clone())
        .observer(drops.clone())
        .build();
    dispatcher.register(Users);
    let users = Counter {
        origin: Origin::Active,
    }
    .builder(0, &dispatcher)
    .start()
    .unwrap();
    let dashboard = Counter {
        origin: Origin::Passive,
    }
    .builder(0, &dispatcher)
    .start()
    .unwrap();
    let handles: Vec<_> = (0..200).map(|i| users.dispatch(CreateUser(i))).collect();
    let ids: Vec<_> = handles.iter().map(|h| h.id()).collect();
    rt.block_on(async {
        for handle in handles {
            handle.await.unwrap();
        }
        for id in ids {
            users.handled(id).await.unwrap();
        }
    });
    rt.run_until_stalled();
    assert_eq!(users.state(), 200);
    assert_eq!(dashboard.state(), 200);
    assert_eq!(users.dropped_events(), 0);
    assert_eq!(dashboard.dropped_events(), 0);
    assert_eq!(drops.len(), 0);
    assert_eq!(users.running_jobs(), 0);
    assert_eq!(dispatcher.in_flight(), 0);
}

/// Re-dispatches a job whenever one of its own jobs succeeds: a loop through itself.
struct SelfLoop {
    rounds: Arc<Mutex<Vec<u32>>>,
    cut: Arc<Mutex<Vec<(u32, usize)>>>,
}
impl Orchestrator for SelfLoop {
    type State = u32;
    fn on_event(&mut self, event: &Event, origin: Origin, cx: &mut OrchestratorContext<'_, u32>) {
        if origin.is_active() && event.is::<UserCreated>() {
            self.rounds.lock().unwrap().push(event.causal_depth());
            cx.update(|n| *n += 1);
            drop(cx.dispatch(CreateUser(0)));
        }
    }
    fn on_dropped(&mut self, dropped: &DroppedEvent<'_>, _: &mut OrchestratorContext<'_, u32>) {
        let event = dropped.event();
        self.cut
            .lock()
            .unwrap()
            .push((event.causal_depth(), event.causal_chain().count()));
    }
}

#[test]
fn an_orchestrator_that_redispatches_on_its_own_success_is_cut_at_its_depth_limit() {
    let rt = VirtualRuntime::new();
    let drops = Drops::default();
    let dispatcher = Dispatcher::builder(rt.clone())
        .observer(drops.clone())
        .build();
    dispatcher.register(Users);
    let rounds = Arc::new(Mutex::new(Vec::new()));
    let cut = Arc::new(Mutex::new(Vec::new()));
    let orchestrator = SelfLoop {
        rounds: rounds.clone(),
        cut: cut.clone(),
    }
    .builder(0, &dispatcher)
    .guard(LoopGuard::new().max_depth(5))
    .name("self-loop")
    .start()
    .unwrap();
    let first = orchestrator.dispatch(CreateUser(0));
    rt.block_on(first).unwrap();
    rt.run_until_stalled();
    // Depths 0..=5 handled (six rounds); the job dispatched at depth 6 ran, its events were cut.
    assert_eq!(*rounds.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(orchestrator.state(), 6);
    assert!(orchestrator.dropped_events() >= 1);
    assert_eq!(orchestrator.dropped_events_of::<UserCreated>(), 1);
    let cut = cut.lock().unwrap().clone();
    assert!(
        cut.contains(&(6, 6)),
        "the handler learns of the cut: {cut:?}"
    );
    let reported = drops.0.lock().unwrap().clone();
    assert_eq!(reported.len() as u64, orchestrator.dropped_events());
    assert!(
        reported
            .iter()
            .all(|(name, _, depth, chain, reason)| name == "self-loop"
                && *depth == 6
                && *chain == 6
                && *reason == DropReason::TooDeep { limit: 5 })
    );
    // Nothing stays tracked; the process is healthy.
    assert_eq!(orchestrator.running_jobs(), 0);
    assert_eq!(dispatcher.in_flight(), 0);
    assert_eq!(
        rt.block_on(dispatcher.dispatch(CreateUser(9)))
            .unwrap()
            .value,
        9
    );
}

struct Ping;
struct Pong;

/// Answers `Ping` with `Pong` (or the reverse): two of them loop through each other.
struct Answer {
    on_ping: bool,
    seen: Arc<Mutex<Vec<u32>>>,
}
impl Orchestrator for Answer {
    type State = ();
    fn on_event(&mut self, event: &Event, _: Origin, cx: &mut OrchestratorContext<'_, ()>) {
        if self.on_ping && event.is::<Ping>() {
            self.seen.lock().unwrap().push(event.causal_depth());
            cx.emit(Pong).unwrap();
        } else if !self.on_ping && event.is::<Pong>() {
            self.seen.lock().unwrap().push(event.causal_depth());
            cx.emit(Ping).unwrap();
        }
    }
}

#[test]
fn a_loop_through_two_orchestrators_is_cut_and_reported_with_its_chain() {
    let rt = VirtualRuntime::new();
    let drops = Drops::default();
    let dispatcher = Dispatcher::builder(rt.clone())
        .observer(drops.clone())
        .build();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let ping = Answer {
        on_ping: true,
        seen: seen.clone(),
    }
    .builder((), &dispatcher)
    .guard(LoopGuard::new().max_depth(7))
    .name("ping")
    .start()
    .unwrap();
    let pong = Answer {
        on_ping: false,
        seen: seen.clone(),
    }
    .builder((), &dispatcher)
    .guard(LoopGuard::new().max_depth(7))
    .name("pong")
    .start()
    .unwrap();
    dispatcher.bus().emit(Ping).unwrap();
    rt.run_until_stalled();
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2, 3, 4, 5, 6, 7]);
    // The depth-8 event reached both (one bus) and each cut it: counted per orchestrator.
    assert_eq!((ping.dropped_events(), pong.dropped_events()), (1, 1));
    let reported = drops.0.lock().unwrap().clone();
    assert_eq!(reported.len(), 2);
    for (_, _, depth, chain, reason) in &reported {
        assert_eq!((*depth, *chain), (8, 8));
        assert_eq!(*reason, DropReason::TooDeep { limit: 7 });
    }
    // The chain alternates between the two orchestrators.
    let bus_event_chain = {
        let mut sub = dispatcher.bus().subscribe();
        dispatcher.bus().emit(Ping).unwrap();
        rt.run_until_stalled();
        let mut last = None;
        while let Some(event) = sub.try_next() {
            last = Some(event);
        }
        last.unwrap()
    };
    let names: Vec<_> = bus_event_chain
        .causal_chain()
        .map(|step| step.orchestrator())
        .collect();
    assert_eq!(names.len(), 8);
    assert!(names.windows(2).all(|w| w[0] != w[1]), "{names:?}");
}

/// A job whose executor dispatches a sub-job and emits an event.
struct Parent;
impl Job for Parent {
    type Output = ();
}
struct Child;
impl Job for Child {
    type Output = ();
}
struct Note;
struct ParentExec;
impl Executor<Parent> for ParentExec {
    type Error = Never;
    async fn execute(&self, _: &Parent, cx: JobContext) -> Result<(), Never> {
        cx.emit(Note).unwrap();
        cx.dispatch(Child).await.unwrap();
        Ok(())
    }
}
struct ChildExec;
impl Executor<Child> for ChildExec {
    type Error = Never;
    async fn execute(&self, _: &Child, cx: JobContext) -> Result<(), Never> {
        cx.emit(Note).unwrap();
        Ok(())
    }
}

/// Dispatches `Parent` when it sees a `Ping`.
struct OnPing;
impl Orchestrator for OnPing {
    type State = ();
    fn on_event(&mut self, event: &Event, _: Origin, cx: &mut OrchestratorContext<'_, ()>) {
        if event.is::<Ping>() {
            drop(cx.dispatch(Parent));
        }
    }
}

#[test]
fn depth_travels_through_jobs_sub_jobs_domain_and_lifecycle_events() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::builder(rt.clone())
        .lifecycle_events(true)
        .build();
    dispatcher.register(ParentExec).register(ChildExec);
    let _o = OnPing.builder((), &dispatcher).start().unwrap();
    let mut sub = dispatcher.bus().subscribe();
    // A Ping emitted from inside a handler of a depth-2 event would be depth 3; from outside,
    // it is depth 0, so the parent job and everything below it is depth 1.
    dispatcher.bus().emit(Ping).unwrap();
    rt.run_until_stalled();
    let mut parent_id = None;
    let mut seen = Vec::new();
    while let Some(event) = sub.try_next() {
        if event.is::<Ping>() {
            assert_eq!(event.causal_depth(), 0);
            continue;
        }
        if event.is_from_job::<Parent>() {
            parent_id = event.correlation_id();
        }
        seen.push((
            event.is_from_job::<Child>(),
            event.is::<JobLifecycle>(),
            event.causal_depth(),
            event.parent_id(),
        ));
    }
    let parent_id = parent_id.expect("the parent job published");
    assert!(seen.iter().all(|(_, _, depth, _)| *depth == 1), "{seen:?}");
    assert!(
        seen.iter()
            .any(|(child, lifecycle, _, _)| *child && !*lifecycle)
    );
    assert!(
        seen.iter()
            .any(|(child, lifecycle, _, _)| *child && *lifecycle)
    );
    assert!(
        seen.iter()
            .filter(|(child, ..)| *child)
            .all(|(.., parent)| *parent == Some(parent_id)),
        "a sub-job's events carry its parent's id"
    );
}

/// Publishes through a bus clone it keeps (not through its context).
struct ViaClone {
    bus: SignalBus,
}
impl Orchestrator for ViaClone {
    type State = ();
    fn on_event(&mut self, event: &Event, _: Origin, _: &mut OrchestratorContext<'_, ()>) {
        if event.is::<Ping>() {
            self.bus.emit(Pong).unwrap();
        }
    }
}

#[test]
fn what_a_handler_publishes_through_a_kept_bus_clone_carries_its_depth_too() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let bus = dispatcher.bus().clone();
    let _o = ViaClone { bus: bus.clone() }
        .builder((), &dispatcher)
        .start()
        .unwrap();
    let mut all = bus.subscribe();
    bus.emit(Ping).unwrap();
    rt.run_until_stalled();
    let mut next_pong = || loop {
        let event = all.try_next().expect("a pong");
        if event.is::<Pong>() {
            return event;
        }
    };
    let pong = next_pong();
    assert_eq!(pong.causal_depth(), 1);
    assert_eq!(
        pong.cause().map(|c| c.event_type()),
        Some(std::any::type_name::<Ping>())
    );
    // Outside any handler: depth 0 again.
    bus.emit(Pong).unwrap();
    assert_eq!(next_pong().causal_depth(), 0);
}

/// An event only [`EchoAll`] reacts to, besides `Ping`.
struct Knock;
/// What [`EchoAll`] publishes for each event it handles.
struct Echo;

/// Echoes every `Ping` and `Knock` through a bus clone it keeps.
struct EchoAll {
    bus: SignalBus,
}
impl Orchestrator for EchoAll {
    type State = ();
    fn on_event(&mut self, event: &Event, _: Origin, _: &mut OrchestratorContext<'_, ()>) {
        if event.is::<Ping>() || event.is::<Knock>() {
            self.bus.emit(Echo).unwrap();
        }
    }
}

#[test]
fn each_event_of_a_batch_is_the_cause_of_what_its_handler_publishes() {
    // Events already queued are handled in one batch; each handler call must still see its
    // own event as the ambient cause, not the batch's first.
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let bus = dispatcher.bus().clone();
    let _o = EchoAll { bus: bus.clone() }
        .builder((), &dispatcher)
        .start()
        .unwrap();
    let mut all = bus.subscribe();
    bus.emit(Ping).unwrap();
    bus.emit(Knock).unwrap();
    bus.emit(Ping).unwrap();
    rt.run_until_stalled();
    let mut causes = Vec::new();
    while let Some(event) = all.try_next() {
        if event.is::<Echo>() {
            assert_eq!(event.causal_depth(), 1);
            causes.push(event.cause().map(|c| c.event_type()));
        }
    }
    let ping = Some(std::any::type_name::<Ping>());
    let knock = Some(std::any::type_name::<Knock>());
    assert_eq!(causes, [ping, knock, ping]);
    // After the batch, outside any handler: depth 0 again.
    bus.emit(Echo).unwrap();
    let last = all.try_next().expect("the echo just published");
    assert_eq!(last.causal_depth(), 0);
}

#[test]
fn opt_in_rate_limits_are_lossy_but_every_drop_is_counted_and_reported() {
    let rt = VirtualRuntime::new();
    let drops = Drops::default();
    let dispatcher = Dispatcher::builder(rt.clone())
        .observer(drops.clone())
        .build();
    let counter = Counter {
        origin: Origin::Passive,
    }
    .builder(0, &dispatcher)
    .guard(LoopGuard::new().with_rate_limit_for::<UserCreated>(NonZeroU32::new(10).unwrap()))
    .start()
    .unwrap();
    for i in 0..25 {
        dispatcher.bus().emit(UserCreated(i)).unwrap();
    }
    rt.run_until_stalled();
    assert_eq!(counter.state(), 10);
    assert_eq!(counter.dropped_events(), 15);
    assert_eq!(counter.dropped_events_of::<UserCreated>(), 15);
    assert_eq!(
        drops.len(),
        15,
        "every drop is reported, not only the first"
    );
    let types = counter.dropped_event_types();
    assert_eq!(types.len(), 1);
    assert!(types[0].0.ends_with("UserCreated"));
}

#[test]
fn a_dropped_terminal_event_never_leaves_a_job_tracked() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(Users);
    // One lifecycle event per variant per second: the second job's terminal event is dropped.
    let orchestrator = Counter {
        origin: Origin::Active,
    }
    .builder(0, &dispatcher)
    .guard(LoopGuard::new().with_rate_limit_for::<JobLifecycle>(NonZeroU32::MIN))
    .start()
    .unwrap();
    let a = orchestrator.dispatch(CreateUser(1));
    let b = orchestrator.dispatch(CreateUser(2));
    let (a, b) = (a.id(), b.id());
    rt.block_on(async {
        orchestrator.handled(a).await.unwrap();
        orchestrator.handled(b).await.unwrap();
    });
    assert!(orchestrator.dropped_events_of::<JobLifecycle>() >= 1);
    assert_eq!(orchestrator.running_jobs(), 0);
    assert!(!orchestrator.is_job_running(a) && !orchestrator.is_job_running(b));
}
