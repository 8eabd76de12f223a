//! One way to dispatch: every entry point routes the same way; output events belong to the job
//! type; sub-jobs; jobs in flight and graceful shutdown; waiting for an orchestrator.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    CachePolicy, CancellationToken, DataSource, Dispatch, Dispatcher, Event, Executor, Job,
    JobContext, JobError, JobLifecycle, Orchestrator, OrchestratorContext, Origin, Rejection,
    SignalBus,
};

#[derive(Debug)]
struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

/// Loads a price after `delay`; its output event is `PriceLoaded`.
#[derive(Clone)]
struct LoadPrice {
    delay: Duration,
}
#[derive(Debug, Clone, Copy, PartialEq)]
struct PriceLoaded(u32);
impl Job for LoadPrice {
    type Output = u32;
    fn output_event(&self, price: &u32) -> Option<impl Send + Sync + 'static> {
        Some(PriceLoaded(*price))
    }
}
struct Prices;
impl Executor<LoadPrice> for Prices {
    type Error = Never;
    async fn execute(&self, job: &LoadPrice, cx: JobContext) -> Result<u32, Never> {
        cx.sleep(job.delay).await;
        Ok(42)
    }
}

/// Records every event it sees with its origin; its state counts `PriceLoaded` events.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(String, Origin)>>>);
struct Watcher {
    log: Log,
}
impl Orchestrator for Watcher {
    type State = u32;
    fn on_event(&mut self, event: &Event, origin: Origin, cx: &mut OrchestratorContext<'_, u32>) {
        let name = if let Some(l) = event.downcast_ref::<JobLifecycle>() {
            format!("{l:?}")
                .split([' ', '{', '('])
                .next()
                .unwrap()
                .to_string()
        } else {
            event
                .payload_type_name()
                .rsplit("::")
                .next()
                .unwrap()
                .to_string()
        };
        self.log.0.lock().unwrap().push((name, origin));
        if event.is::<PriceLoaded>() {
            cx.update(|n| *n += 1);
        }
    }
}

#[test]
fn a_builder_made_through_an_orchestrator_is_tracked_and_publishes_on_its_bus() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(Prices);
    let own_bus = SignalBus::new();
    let log = Log::default();
    let watcher = Watcher { log: log.clone() }
        .builder(0, &dispatcher)
        .bus(own_bus.clone())
        .start()
        .unwrap();
    let mut dispatcher_bus = dispatcher.bus().subscribe();
    let policy = CachePolicy::new("price").with_ttl(Duration::from_secs(60));
    let handle = watcher
        .job(LoadPrice {
            delay: Duration::from_secs(1),
        })
        .cache(policy.clone())
        .timeout(Duration::from_secs(5))
        .dispatch();
    let id = handle.id();
    assert!(watcher.is_job_running(id), "tracked before it runs");
    assert_eq!(watcher.running_jobs(), 1);
    assert_eq!(rt.block_on(handle).unwrap().value, 42);
    rt.block_on(watcher.handled(id)).unwrap();
    assert_eq!(watcher.running_jobs(), 0);
    assert_eq!(
        watcher.state(),
        1,
        "its output event arrived, on the orchestrator's bus"
    );
    assert!(
        dispatcher_bus.try_next().is_none(),
        "nothing went to the dispatcher's bus"
    );
    let seen = log.0.lock().unwrap().clone();
    assert!(
        seen.iter().all(|(_, origin)| origin.is_active()),
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["Started", "PriceLoaded", "Succeeded"]
    );
    // A plain cache hit through the same orchestrator: tracked and handled too.
    log.0.lock().unwrap().clear();
    let hit = watcher
        .job(LoadPrice {
            delay: Duration::from_secs(1),
        })
        .cache(policy)
        .dispatch();
    let id = hit.id();
    assert_eq!(rt.block_on(hit).unwrap().data_source, DataSource::Cached);
    rt.block_on(watcher.handled(id)).unwrap();
    assert_eq!(watcher.state(), 2);
    assert!(log.0.lock().unwrap().iter().all(|(_, o)| o.is_active()));
}

#[test]
fn options_an_orchestrator_cannot_honour_reject_the_dispatch_instead_of_being_ignored() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(Prices);
    let watcher = Watcher {
        log: Log::default(),
    }
    .builder(0, &dispatcher)
    .start()
    .unwrap();
    let job = || LoadPrice {
        delay: Duration::ZERO,
    };
    let other_bus = watcher.job(job()).bus(SignalBus::new()).dispatch();
    let no_lifecycle = watcher.job(job()).lifecycle_events(false).dispatch();
    for handle in [other_bus, no_lifecycle] {
        match rt.block_on(handle) {
            Err(JobError::Rejected(Rejection::Invalid { reason })) => assert!(!reason.is_empty()),
            other => panic!("expected an invalid-dispatch rejection, got {other:?}"),
        }
    }
    // The orchestrator's own bus is fine.
    let same_bus = watcher.job(job()).bus(dispatcher.bus().clone()).dispatch();
    assert_eq!(rt.block_on(same_bus).unwrap().value, 42);
    assert_eq!(watcher.running_jobs(), 0);
}

#[test]
fn a_built_or_disposed_orchestrator_rejects_through_the_handle() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(Prices);
    let watcher = Watcher {
        log: Log::default(),
    }
    .builder(0, &dispatcher)
    .name("prices")
    .build();
    let job = LoadPrice {
        delay: Duration::ZERO,
    };
    let err = rt.block_on(watcher.dispatch(job.clone())).unwrap_err();
    assert!(matches!(
        err,
        JobError::Rejected(Rejection::NotStarted {
            orchestrator: "prices"
        })
    ));
    watcher.start().unwrap();
    watcher.dispose();
    let err = rt.block_on(watcher.job(job).dispatch()).unwrap_err();
    assert!(matches!(
        err,
        JobError::Rejected(Rejection::Disposed {
            orchestrator: "prices"
        })
    ));
    assert_eq!(watcher.running_jobs(), 0);
}

/// A job without an output event.
struct Plain;
impl Job for Plain {
    type Output = u32;
}
struct PlainExec;
impl Executor<Plain> for PlainExec {
    type Error = Never;
    async fn execute(&self, _: &Plain, _: JobContext) -> Result<u32, Never> {
        Ok(1)
    }
}

#[test]
fn output_events_belong_to_the_job_type_and_a_placeholder_needs_one() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    // Registered through an `Arc`, a plain `register`: the output event is the job's.
    dispatcher.register(Arc::new(Prices)).register(PlainExec);
    let mut events = dispatcher.bus().subscribe_to::<PriceLoaded>();
    let optimistic = dispatcher
        .job(LoadPrice {
            delay: Duration::from_secs(1),
        })
        .placeholder(7)
        .dispatch();
    rt.block_on(optimistic).unwrap();
    let placeholder = events.try_next().unwrap();
    assert_eq!(*placeholder, PriceLoaded(7));
    assert_eq!(
        placeholder.event().data_source(),
        Some(DataSource::Optimistic)
    );
    let fresh = events.try_next().unwrap();
    assert_eq!(*fresh, PriceLoaded(42));
    assert_eq!(fresh.event().data_source(), Some(DataSource::Fresh));
    let invalid = dispatcher.job(Plain).placeholder(3).dispatch();
    assert!(matches!(
        rt.block_on(invalid),
        Err(JobError::Rejected(Rejection::Invalid { .. }))
    ));
}

/// Dispatches `children` sub-jobs of `Sleepy` and waits for them.
struct Fan {
    children: usize,
}
impl Job for Fan {
    type Output = usize;
}
struct Sleepy;
impl Job for Sleepy {
    type Output = ();
}
struct FanExec {
    drops: Arc<AtomicUsize>,
}
impl Drop for FanExec {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}
impl Executor<Fan> for FanExec {
    type Error = Never;
    async fn execute(&self, job: &Fan, cx: JobContext) -> Result<usize, Never> {
        let handles: Vec<_> = (0..job.children).map(|_| cx.dispatch(Sleepy)).collect();
        let mut done = 0;
        for handle in handles {
            if handle.await.is_ok() {
                done += 1;
            }
        }
        Ok(done)
    }
}
/// Each started sub-job's parent id and causal depth.
type Started = Arc<Mutex<Vec<(Option<orchestrator_core::JobId>, u32)>>>;
struct SleepyExec {
    started: Started,
}
impl Executor<Sleepy> for SleepyExec {
    type Error = Never;
    async fn execute(&self, _: &Sleepy, cx: JobContext) -> Result<(), Never> {
        self.started
            .lock()
            .unwrap()
            .push((cx.parent_id(), cx.causal_depth()));
        cx.sleep(Duration::from_secs(60)).await;
        Ok(())
    }
}

#[test]
fn sub_jobs_carry_their_parent_and_are_cancelled_with_it() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let drops = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Mutex::new(Vec::new()));
    dispatcher
        .register(FanExec {
            drops: drops.clone(),
        })
        .register(SleepyExec {
            started: started.clone(),
        });
    let parent = dispatcher.dispatch(Fan { children: 3 });
    rt.run_until_stalled();
    assert_eq!(dispatcher.in_flight(), 4);
    let seen = started.lock().unwrap().clone();
    assert_eq!(seen, vec![(Some(parent.id()), 0); 3]);
    parent.cancel();
    rt.run_until_stalled();
    assert!(rt.block_on(parent).unwrap_err().is_cancelled());
    assert_eq!(
        dispatcher.in_flight(),
        0,
        "the children were cancelled with it"
    );
    // A parent that completes normally leaves its children's results to it.
    let whole = dispatcher.dispatch(Fan { children: 2 });
    assert_eq!(rt.block_on(whole).unwrap().value, 2);
    // The executor holds no dispatcher: dropping the dispatcher frees it.
    drop(dispatcher);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

/// Sub-jobs dispatched through a token-cancelled parent are cancelled too.
#[test]
fn a_parents_token_reaches_its_sub_jobs() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher
        .register(FanExec {
            drops: Arc::new(AtomicUsize::new(0)),
        })
        .register(SleepyExec {
            started: Arc::new(Mutex::new(Vec::new())),
        });
    let token = CancellationToken::new();
    let parent = dispatcher
        .job(Fan { children: 2 })
        .cancellation(token.clone())
        .dispatch();
    rt.run_until_stalled();
    assert_eq!(dispatcher.in_flight(), 3);
    token.cancel_with("stop");
    rt.run_until_stalled();
    assert!(rt.block_on(parent).unwrap_err().is_cancelled());
    assert_eq!(dispatcher.in_flight(), 0);
}

#[test]
fn shutdown_stops_intake_waits_for_running_jobs_then_cancels_the_rest() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(Prices);
    let quick = dispatcher.dispatch(LoadPrice {
        delay: Duration::from_secs(1),
    });
    let slow = dispatcher.dispatch(LoadPrice {
        delay: Duration::from_secs(3600),
    });
    rt.run_until_stalled();
    assert_eq!(dispatcher.in_flight(), 2);
    let report = rt.block_on(dispatcher.shutdown(Duration::from_secs(10)));
    assert_eq!(report.cancelled, 1);
    assert_eq!(dispatcher.in_flight(), 0);
    assert!(dispatcher.is_closed());
    assert_eq!(rt.block_on(quick).unwrap().value, 42);
    assert!(rt.block_on(slow).unwrap_err().is_cancelled());
    let late = dispatcher.dispatch(LoadPrice {
        delay: Duration::ZERO,
    });
    assert!(matches!(
        rt.block_on(late),
        Err(JobError::Rejected(Rejection::Shutdown))
    ));
    // Nothing in flight: shutdown completes at once.
    assert_eq!(
        rt.block_on(dispatcher.shutdown(Duration::ZERO)).cancelled,
        0
    );
}

/// Counts the attempts it runs.
struct CountingExec(Arc<AtomicUsize>);
impl Executor<LoadPrice> for CountingExec {
    type Error = Never;
    async fn execute(&self, _: &LoadPrice, _: JobContext) -> Result<u32, Never> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(1)
    }
}

#[test]
fn a_shutdown_cancels_a_job_whose_task_has_not_run_yet() {
    // A job is reachable by a shutdown only once its task has waited; one dispatched but not
    // yet polled must still be cancelled (by the shutdown flag its task checks), not run.
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    dispatcher.register(CountingExec(runs.clone()));
    let handle = dispatcher.dispatch(LoadPrice {
        delay: Duration::ZERO,
    });
    let mut shutdown = Box::pin(dispatcher.shutdown(Duration::ZERO));
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    // The grace period is over at once: the job in flight is cancelled, then awaited.
    assert!(shutdown.as_mut().poll(&mut cx).is_pending());
    assert_eq!(dispatcher.in_flight(), 1);
    let report = rt.block_on(shutdown);
    assert_eq!(report.cancelled, 1);
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the executor never ran");
    let error = rt.block_on(handle).unwrap_err();
    assert!(error.is_cancelled(), "{error:?}");
    assert_eq!(dispatcher.in_flight(), 0);
}

/// Slow to handle: its state only changes once the handler ran.
struct Recorder;
impl Orchestrator for Recorder {
    type State = Vec<String>;
    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, Vec<String>>,
    ) {
        if origin.is_active() {
            if let Some(l) = event.downcast_ref::<JobLifecycle>() {
                if l.is_terminal() {
                    let running = event
                        .correlation_id()
                        .is_some_and(|id| cx.is_job_running(id));
                    cx.update(|s| s.push(format!("terminal running={running}")));
                }
            }
        }
    }
}

#[test]
fn handled_resolves_once_the_handler_has_seen_the_terminal_event() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(Prices);
    let recorder = Recorder.builder(Vec::new(), &dispatcher).start().unwrap();
    let handle = recorder.dispatch(LoadPrice {
        delay: Duration::from_secs(2),
    });
    let id = handle.id();
    let mut handled = recorder.handled(id);
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(std::pin::Pin::new(&mut handled).poll(&mut cx).is_pending());
    rt.block_on(handled).unwrap();
    assert_eq!(recorder.state(), ["terminal running=false"]);
    // Not one of its jobs: at once. After disposal: an error.
    assert!(
        rt.block_on(recorder.handled(orchestrator_core::JobId::next()))
            .is_ok()
    );
    let pending = recorder.dispatch(LoadPrice {
        delay: Duration::from_secs(3600),
    });
    rt.run_until_stalled();
    let wait = recorder.handled(pending.id());
    recorder.dispose();
    assert!(rt.block_on(wait).is_err());
    assert_eq!(recorder.running_jobs(), 0, "disposal forgets its jobs");
}

use std::future::Future as _;

#[test]
fn sub_jobs_publish_on_their_parents_bus() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::builder(rt.clone())
        .lifecycle_events(true)
        .build();
    dispatcher
        .register(FanExec {
            drops: Arc::new(AtomicUsize::new(0)),
        })
        .register(SleepyExec {
            started: Arc::new(Mutex::new(Vec::new())),
        });
    let scoped = SignalBus::new();
    let mut on_scoped = scoped.subscribe();
    let mut on_default = dispatcher.bus().subscribe();
    let parent = dispatcher
        .job(Fan { children: 1 })
        .bus(scoped.clone())
        .dispatch();
    assert_eq!(rt.block_on(parent).unwrap().value, 1);
    assert!(
        on_default.try_next().is_none(),
        "nothing leaked to the default bus"
    );
    let mut child_events = 0;
    while let Some(event) = on_scoped.try_next() {
        if event.is_from_job::<Sleepy>() {
            child_events += 1;
        }
    }
    assert_eq!(child_events, 2, "the sub-job's Started and Succeeded");
}

/// A job whose executor panics when asked for its future (before any poll) if the job is
/// empty.
struct Parcel(u32);
impl Job for Parcel {
    type Output = u32;
}

/// `execute` is an ordinary function returning a future: it can panic before the future exists.
struct Weigher;
impl Executor<Parcel> for Weigher {
    type Error = Never;
    fn execute(
        &self,
        job: &Parcel,
        _cx: JobContext,
    ) -> impl std::future::Future<Output = Result<u32, Never>> + Send {
        assert!(job.0 > 0, "an empty parcel has no weight");
        let weight = job.0;
        async move { Ok(weight) }
    }
}

#[test]
fn a_panic_while_making_the_executors_future_is_a_failure_with_or_without_options() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(Weigher);

    let panicked_once = |error: JobError| {
        let failure = error.failure().expect("a failed outcome");
        assert!(failure.is_panic());
        assert_eq!(
            failure.panic_message(),
            Some("an empty parcel has no weight")
        );
        assert_eq!(failure.attempts(), 1);
    };
    panicked_once(
        rt.block_on(dispatcher.dispatch(Parcel(0)))
            .expect_err("a panic is a failure"),
    );
    panicked_once(
        rt.block_on(
            dispatcher
                .job(Parcel(0))
                .timeout(Duration::from_secs(5))
                .dispatch(),
        )
        .expect_err("a panic is a failure"),
    );

    // The dispatcher goes on, and counts no job in flight.
    assert_eq!(
        rt.block_on(dispatcher.dispatch(Parcel(3)))
            .expect("a parcel has a weight")
            .value,
        3
    );
    assert_eq!(dispatcher.in_flight(), 0);
}

#[test]
fn an_executor_offered_after_shutdown_is_refused_and_counted() {
    struct Late;
    impl orchestrator_core::Job for Late {
        type Output = ();
    }
    struct Runs;
    impl orchestrator_core::Executor<Late> for Runs {
        type Error = std::convert::Infallible;
        async fn execute(
            &self,
            _: &Late,
            _: orchestrator_core::JobContext,
        ) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    let rt = orchestrator_core::testing::VirtualRuntime::new();
    let dispatcher = orchestrator_core::Dispatcher::new(rt.clone());
    rt.block_on(dispatcher.shutdown(core::time::Duration::from_secs(1)));
    dispatcher.register(Runs);
    assert!(!dispatcher.is_registered::<Late>());
    assert_eq!(dispatcher.refused_registrations(), 1);
    assert!(format!("{dispatcher:?}").contains("refused_registrations: 1"));
    let error = rt
        .block_on(orchestrator_core::Dispatch::dispatch(&dispatcher, Late))
        .unwrap_err();
    assert!(matches!(
        error,
        orchestrator_core::JobError::Rejected(orchestrator_core::Rejection::Shutdown)
    ));
}
