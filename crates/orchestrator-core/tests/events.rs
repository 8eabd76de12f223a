//! Job events: emitted events, the bus a job publishes on, lifecycle events, output events
//! ([`Job::output_event`]) and observers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::runtime::Instant;
use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    CancellationToken, DataSource, Dispatch, Dispatcher, Event, Executor, Job, JobContext,
    JobError, JobInfo, JobLifecycle, Observer, RetryPolicy, SignalBus, Subscription,
};

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}
impl std::error::Error for Boom {}

/// Emits `Step(i)` for each step after sleeping 10 ms, then fails `fail_first` attempts.
struct Steps {
    steps: u32,
    fail_first: u32,
}
impl Job for Steps {
    type Output = u32;
}
#[derive(Debug, PartialEq)]
struct Step(u32);
struct StepsExec(Arc<Mutex<Option<JobContext>>>);
impl Executor<Steps> for StepsExec {
    type Error = Boom;
    async fn execute(&self, job: &Steps, cx: JobContext) -> Result<u32, Boom> {
        *self.0.lock().unwrap() = Some(cx.clone());
        for i in 0..job.steps {
            cx.sleep(Duration::from_millis(10)).await;
            cx.emit(Step(i)).unwrap();
            cx.report_progress(f64::from(i + 1) / f64::from(job.steps));
        }
        if cx.attempt() <= job.fail_first {
            return Err(Boom);
        }
        Ok(job.steps)
    }
}

fn drain(sub: &mut Subscription) -> Vec<Event> {
    std::iter::from_fn(|| sub.try_next()).collect()
}

fn lifecycle(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e.downcast_ref::<JobLifecycle>() {
            Some(JobLifecycle::Started) => "started".into(),
            Some(JobLifecycle::Progress(p)) => format!("progress {}", p.value()),
            Some(JobLifecycle::Retrying { attempt, delay, .. }) => {
                format!("retrying {attempt} {delay:?}")
            }
            Some(JobLifecycle::Succeeded { data_source }) => format!("succeeded {data_source:?}"),
            Some(JobLifecycle::Failed(f)) => format!("failed {}", f.attempts()),
            Some(JobLifecycle::Cancelled { reason }) => format!("cancelled {reason:?}"),
            Some(JobLifecycle::TimedOut { budget }) => format!("timed out {budget:?}"),
            Some(JobLifecycle::Rejected(r)) => format!("rejected {r}"),
            Some(other) => format!("{other:?}"),
            None => match e.downcast_ref::<Step>() {
                Some(Step(i)) => format!("step {i}"),
                None => e.payload_type_name().to_string(),
            },
        })
        .collect()
}

fn setup(
    lifecycle_on: bool,
) -> (
    VirtualRuntime,
    Dispatcher<VirtualRuntime>,
    Arc<Mutex<Option<JobContext>>>,
) {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::builder(rt.clone())
        .lifecycle_events(lifecycle_on)
        .build();
    let slot = Arc::new(Mutex::new(None));
    d.register(StepsExec(slot.clone()));
    (rt, d, slot)
}

#[test]
fn emitted_events_carry_the_envelope_in_order() {
    let (rt, d, _) = setup(false);
    let mut sub = d.bus().subscribe();
    let handle = d.dispatch(Steps {
        steps: 3,
        fail_first: 0,
    });
    let id = handle.id();
    rt.block_on(handle).unwrap();
    let events = drain(&mut sub);
    assert_eq!(
        lifecycle(&events),
        ["step 0", "step 1", "step 2"],
        "no lifecycle by default"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.correlation_id(), Some(id));
        assert!(e.is_from_job::<Steps>());
        assert!(!e.is_from_job::<Other>());
        assert_eq!(e.job_type().unwrap().name(), std::any::type_name::<Steps>());
        assert_eq!(
            e.timestamp(),
            Instant::from_elapsed(Duration::from_millis(10 * (i as u64 + 1)))
        );
        assert_eq!(e.data_source(), None);
    }
}

struct Other;
impl Job for Other {
    type Output = ();
}

#[test]
fn a_jobs_events_follow_the_bus_it_was_dispatched_on() {
    let (rt, d, _) = setup(true);
    let scoped = SignalBus::new();
    let mut on_scoped = scoped.subscribe();
    let mut on_dispatcher = d.bus().subscribe();
    let mut on_global = SignalBus::global().subscribe();
    let job = Steps {
        steps: 1,
        fail_first: 0,
    };
    rt.block_on(d.job(job).bus(scoped.clone()).dispatch())
        .unwrap();
    assert_eq!(
        lifecycle(&drain(&mut on_scoped)),
        ["started", "step 0", "progress 1", "succeeded Fresh"]
    );
    assert!(drain(&mut on_dispatcher).is_empty());
    assert!(
        drain(&mut on_global)
            .iter()
            .all(|e| !e.is_from_job::<Steps>()),
        "nothing of this job reached the global bus"
    );
}

#[test]
fn emitting_after_the_job_ended_or_on_a_closed_bus_gives_the_event_back() {
    let (rt, d, slot) = setup(false);
    rt.block_on(d.dispatch(Steps {
        steps: 0,
        fail_first: 0,
    }))
    .unwrap();
    let cx = slot.lock().unwrap().take().unwrap();
    let err = cx.emit(Step(9)).unwrap_err();
    assert!(err.is_job_ended());
    assert_eq!(err.into_inner().downcast_ref::<Step>(), Some(&Step(9)));

    let closed = SignalBus::new();
    closed.close();
    struct EmitOnce;
    impl Job for EmitOnce {
        type Output = bool;
    }
    struct EmitOnceExec;
    impl Executor<EmitOnce> for EmitOnceExec {
        type Error = Boom;
        async fn execute(&self, _: &EmitOnce, cx: JobContext) -> Result<bool, Boom> {
            Ok(cx.emit(1u8).unwrap_err().is_closed())
        }
    }
    d.register(EmitOnceExec);
    let closed_seen = rt
        .block_on(d.job(EmitOnce).bus(closed).dispatch())
        .unwrap()
        .value;
    assert!(closed_seen);
}

#[test]
fn lifecycle_events_come_in_order_with_exactly_one_terminal_event() {
    let (rt, d, slot) = setup(true);
    let mut sub = d.bus().subscribe();
    let handle = d
        .job(Steps {
            steps: 1,
            fail_first: 5,
        })
        .retry(RetryPolicy::fixed(1, Duration::from_millis(5)))
        .dispatch();
    let err = rt.block_on(handle).unwrap_err();
    assert!(err.is_failed());
    assert_eq!(
        lifecycle(&drain(&mut sub)),
        [
            "started",
            "step 0",
            "progress 1",
            "retrying 1 5ms",
            "step 0",
            "progress 1",
            "failed 2"
        ]
    );
    // Nothing after the terminal event: a kept context can neither emit nor report.
    let cx = slot.lock().unwrap().take().unwrap();
    assert!(cx.emit(Step(7)).is_err());
    assert!(!cx.report_progress(0.5));
    assert!(drain(&mut sub).is_empty());
}

#[test]
fn every_kind_of_end_publishes_its_terminal_event() {
    let (rt, d, _) = setup(true);
    let mut sub = d.bus().subscribe();
    let slow = || Steps {
        steps: 100,
        fail_first: 0,
    };
    // Timed out.
    rt.block_on(d.job(slow()).timeout(Duration::from_millis(25)).dispatch())
        .unwrap_err();
    // Cancelled with a reason.
    let token = CancellationToken::new();
    let h = d.job(slow()).cancellation(token.clone()).dispatch();
    rt.advance(Duration::from_millis(15));
    token.cancel_with("stop");
    rt.block_on(h).unwrap_err();
    // Rejected: no executor (published synchronously by the dispatch).
    rt.block_on(d.dispatch(Other)).unwrap_err();
    let terminals: Vec<String> = lifecycle(&drain(&mut sub))
        .into_iter()
        .filter(|l| !l.starts_with("step") && !l.starts_with("progress") && l != "started")
        .collect();
    assert_eq!(terminals.len(), 3);
    assert_eq!(terminals[0], "timed out 25ms");
    assert_eq!(terminals[1], "cancelled Some(\"stop\")");
    assert!(
        terminals[2].starts_with("rejected no executor registered for job type"),
        "{}",
        terminals[2]
    );
}

/// A job with an output event: loads a cart.
struct LoadCart {
    fail: bool,
}
impl Job for LoadCart {
    type Output = Vec<&'static str>;
    fn output_event(&self, items: &Vec<&'static str>) -> Option<impl Send + Sync + 'static> {
        Some(CartLoaded(items.clone()))
    }
}
#[derive(Debug, PartialEq)]
struct CartLoaded(Vec<&'static str>);
struct CartExec;
impl Executor<LoadCart> for CartExec {
    type Error = Boom;
    async fn execute(&self, job: &LoadCart, _cx: JobContext) -> Result<Vec<&'static str>, Boom> {
        if job.fail {
            Err(Boom)
        } else {
            Ok(vec!["tea", "milk"])
        }
    }
}

#[test]
fn event_job_publishes_its_output_event_with_source_before_the_terminal_event() {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::builder(rt.clone())
        .lifecycle_events(true)
        .build();
    d.register(CartExec);
    let mut sub = d.bus().subscribe();
    let h = d.dispatch(LoadCart { fail: false });
    let id = h.id();
    assert_eq!(rt.block_on(h).unwrap().value, vec!["tea", "milk"]);
    let events = drain(&mut sub);
    assert_eq!(events.len(), 3, "{events:?}");
    let loaded = &events[1];
    assert_eq!(
        loaded.downcast_ref::<CartLoaded>(),
        Some(&CartLoaded(vec!["tea", "milk"]))
    );
    assert_eq!(loaded.data_source(), Some(DataSource::Fresh));
    assert_eq!(loaded.correlation_id(), Some(id));
    assert!(
        events[2]
            .downcast_ref::<JobLifecycle>()
            .unwrap()
            .is_terminal()
    );

    // A failed job publishes no output event.
    rt.block_on(d.dispatch(LoadCart { fail: true }))
        .unwrap_err();
    assert!(drain(&mut sub).iter().all(|e| !e.is::<CartLoaded>()));
}

#[derive(Default)]
struct Recording(Mutex<Vec<String>>);
impl Recording {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}
struct Recorder(Arc<Recording>, &'static str);
impl Observer for Recorder {
    fn on_job_start(&self, _: &JobInfo) {
        self.0.0.lock().unwrap().push(format!("{} start", self.1));
    }
    fn on_job_success(&self, _: &JobInfo, source: DataSource) {
        self.0
            .0
            .lock()
            .unwrap()
            .push(format!("{} success {source:?}", self.1));
    }
    fn on_job_error(&self, job: &JobInfo, error: &JobError) {
        assert!(job.job_type.is::<Steps>() || job.job_type.is::<Other>());
        self.0
            .0
            .lock()
            .unwrap()
            .push(format!("{} error {error}", self.1));
    }
    fn on_job_retry(
        &self,
        _: &JobInfo,
        attempt: u32,
        delay: Duration,
        error: &(dyn std::error::Error + 'static),
    ) {
        assert!(error.is::<Boom>());
        self.0
            .0
            .lock()
            .unwrap()
            .push(format!("{} retry {attempt} {delay:?}", self.1));
    }
    fn on_event_published(&self, event: &Event) {
        self.0.0.lock().unwrap().push(format!(
            "{} event {}",
            self.1,
            lifecycle(std::slice::from_ref(event))[0]
        ));
    }
}
struct Panicky;
impl Observer for Panicky {
    fn on_job_start(&self, _: &JobInfo) {
        panic!("observer bug");
    }
    fn on_job_success(&self, _: &JobInfo, _: DataSource) {
        panic!("observer bug");
    }
}

#[test]
fn observers_compose_and_a_panicking_one_breaks_nothing() {
    let rt = VirtualRuntime::new();
    let log = Arc::new(Recording::default());
    let d = Dispatcher::builder(rt.clone())
        .observer(Recorder(log.clone(), "a"))
        .observer(Panicky)
        .observer(Recorder(log.clone(), "b"))
        .build();
    d.register(StepsExec(Arc::new(Mutex::new(None))));
    let handle = d
        .job(Steps {
            steps: 1,
            fail_first: 1,
        })
        .retry(RetryPolicy::fixed(1, Duration::from_millis(1)))
        .dispatch();
    let done = rt.block_on(handle).unwrap();
    assert_eq!(
        done.value, 1,
        "the job is unaffected by the panicking observer"
    );
    assert_eq!(
        log.take(),
        [
            "a start",
            "b start",
            "a event step 0",
            "b event step 0",
            "a retry 1 1ms",
            "b retry 1 1ms",
            "a event step 0",
            "b event step 0",
            "a success Fresh",
            "b success Fresh",
        ]
    );
    rt.block_on(d.dispatch(Other)).unwrap_err();
    let errors = log.take();
    assert_eq!(errors.len(), 2);
    assert!(errors[0].starts_with("a error job rejected"));
}

#[test]
fn emit_to_publishes_a_correlated_event_on_another_bus_on_purpose() {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    let public = SignalBus::new();
    let mut on_public = public.subscribe();
    let mut on_job_bus = d.bus().subscribe();
    struct Announce(SignalBus);
    impl Job for Announce {
        type Output = ();
    }
    struct AnnounceExec;
    impl Executor<Announce> for AnnounceExec {
        type Error = Boom;
        async fn execute(&self, job: &Announce, cx: JobContext) -> Result<(), Boom> {
            cx.emit_to(&job.0, "logged in").map_err(|_| Boom)?;
            Ok(())
        }
    }
    d.register(AnnounceExec);
    let h = d.dispatch(Announce(public.clone()));
    let id = h.id();
    rt.block_on(h).unwrap();
    let got = drain(&mut on_public);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].correlation_id(), Some(id));
    assert!(got[0].is_from_job::<Announce>());
    assert!(drain(&mut on_job_bus).is_empty(), "only where it was sent");
}

#[test]
fn one_executor_behind_an_arc_serves_two_job_types() {
    struct Service;
    struct Ping;
    struct Pong;
    impl Job for Ping {
        type Output = &'static str;
    }
    impl Job for Pong {
        type Output = &'static str;
    }
    impl Executor<Ping> for Service {
        type Error = Boom;
        async fn execute(&self, _: &Ping, _: JobContext) -> Result<&'static str, Boom> {
            Ok("ping")
        }
    }
    impl Executor<Pong> for Service {
        type Error = Boom;
        async fn execute(&self, _: &Pong, _: JobContext) -> Result<&'static str, Boom> {
            Ok("pong")
        }
    }
    let rt = VirtualRuntime::new();
    let d = Dispatcher::new(rt.clone());
    let service = Arc::new(Service);
    d.register::<Ping, _>(service.clone());
    d.register::<Pong, _>(service);
    assert_eq!(rt.block_on(d.dispatch(Ping)).unwrap().value, "ping");
    assert_eq!(rt.block_on(d.dispatch(Pong)).unwrap().value, "pong");
}
