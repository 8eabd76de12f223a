//! `tracing` (feature `tracing`): one span per job, the caller's span as its parent, entered
//! while the executor runs (its own logs are inside), its attempt and outcome recorded; events
//! for retries, ends other than success, loop-guard drops and breaker transitions. Recorded by
//! a layer of our own on `tracing-subscriber`'s registry. (`.ci/run` runs this file with the
//! feature on: `cargo test -p orchestrator-core --features tracing --test tracing`.)

#![cfg(feature = "tracing")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    BreakerConfig, Dispatch, Dispatcher, Event, Executor, Job, JobContext, LoopGuard, Orchestrator,
    OrchestratorContext, Origin, RetryPolicy,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Default, Debug, Clone)]
struct SpanRecord {
    name: String,
    parent: Option<u64>,
    fields: HashMap<String, String>,
}

#[derive(Debug, Clone)]
struct EventRecord {
    message: String,
    level: tracing::Level,
    fields: HashMap<String, String>,
    /// The span the event happened in.
    span: Option<u64>,
}

#[derive(Default, Clone)]
struct Recorded {
    spans: Arc<Mutex<HashMap<u64, SpanRecord>>>,
    events: Arc<Mutex<Vec<EventRecord>>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);
impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorded {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut record = SpanRecord {
            name: attrs.metadata().name().to_owned(),
            parent: attrs
                .parent()
                .cloned()
                .or_else(|| {
                    if attrs.is_contextual() {
                        ctx.current_span().id().cloned()
                    } else {
                        None
                    }
                })
                .map(|p| p.into_u64()),
            ..SpanRecord::default()
        };
        attrs.record(&mut Fields(&mut record.fields));
        self.spans.lock().unwrap().insert(id.into_u64(), record);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some(span) = self.spans.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        self.events.lock().unwrap().push(EventRecord {
            message: fields.remove("message").unwrap_or_default(),
            level: *event.metadata().level(),
            fields,
            span: ctx.current_span().id().map(|id| id.into_u64()),
        });
    }
}

#[derive(Clone)]
struct Work {
    fail_first: u32,
    hang: bool,
}
impl Job for Work {
    type Output = u32;
}

#[derive(Debug)]
struct Broken;
impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("broken")
    }
}
impl std::error::Error for Broken {}

struct Worker;
impl Executor<Work> for Worker {
    type Error = Broken;
    async fn execute(&self, job: &Work, cx: JobContext) -> Result<u32, Broken> {
        tracing::info!(attempt = cx.attempt(), "inside the executor");
        if job.hang {
            std::future::pending::<()>().await;
        }
        if cx.attempt() <= job.fail_first {
            Err(Broken)
        } else {
            Ok(cx.attempt())
        }
    }
}

struct Ping(u32);
struct Echo;
impl Orchestrator for Echo {
    type State = ();
    fn on_event(&mut self, event: &Event, _: Origin, cx: &mut OrchestratorContext<'_, ()>) {
        if let Some(Ping(n)) = event.downcast_ref::<Ping>() {
            let _ = cx.emit(Ping(n + 1));
        }
    }
}

#[test]
fn a_job_is_a_span_under_its_caller_with_its_attempt_outcome_and_events() {
    let recorded = Recorded::default();
    let subscriber = tracing_subscriber::registry().with(recorded.clone());
    let (retried_id, failed_id, timed_id) = tracing::subscriber::with_default(subscriber, || {
        let rt = VirtualRuntime::new();
        let dispatcher = Dispatcher::new(rt.clone());
        dispatcher.register(Worker);
        let request = tracing::info_span!("request");
        let retried = request.in_scope(|| {
            dispatcher
                .job(Work {
                    fail_first: 1,
                    hang: false,
                })
                .retry(RetryPolicy::fixed(2, Duration::from_millis(5)))
                .dispatch()
        });
        let retried_id = retried.id();
        assert_eq!(rt.block_on(retried).unwrap().value, 2);
        let failed = dispatcher.dispatch(Work {
            fail_first: 9,
            hang: false,
        });
        let failed_id = failed.id();
        rt.block_on(failed).unwrap_err();
        let timed = dispatcher
            .job(Work {
                fail_first: 0,
                hang: true,
            })
            .timeout(Duration::from_secs(1))
            .dispatch();
        let timed_id = timed.id();
        rt.block_on(timed).unwrap_err();

        let echo = Echo
            .builder((), &dispatcher)
            .guard(LoopGuard::new().max_depth(2))
            .start()
            .unwrap();
        dispatcher.bus().emit(Ping(0)).unwrap();
        rt.run_until_stalled();
        echo.dispose();

        dispatcher.set_circuit_breaker::<Work>(
            BreakerConfig::new(1, Duration::from_secs(60), Duration::from_secs(60)).unwrap(),
        );
        rt.block_on(dispatcher.dispatch(Work {
            fail_first: 9,
            hang: false,
        }))
        .unwrap_err();
        (retried_id, failed_id, timed_id)
    });

    let spans = recorded.spans.lock().unwrap().clone();
    let events = recorded.events.lock().unwrap().clone();
    let job_span = |id: orchestrator_core::JobId| {
        let (span_id, span) = spans
            .iter()
            .find(|(_, s)| {
                s.name == "job" && s.fields.get("job.id") == Some(&id.as_u64().to_string())
            })
            .unwrap_or_else(|| panic!("a span for {id}"));
        (*span_id, span.clone())
    };
    let request = spans
        .iter()
        .find(|(_, s)| s.name == "request")
        .map(|(id, _)| *id);

    let (retried_span, retried) = job_span(retried_id);
    assert_eq!(retried.parent, request, "the caller's span is the parent");
    assert_eq!(
        retried.fields.get("job.type").map(String::as_str),
        Some(std::any::type_name::<Work>())
    );
    assert_eq!(
        retried.fields.get("job.attempt").map(String::as_str),
        Some("2")
    );
    assert_eq!(
        retried.fields.get("job.outcome").map(String::as_str),
        Some("succeeded")
    );
    assert_eq!(
        retried.fields.get("job.data_source").map(String::as_str),
        Some("fresh")
    );
    let inside: Vec<_> = events
        .iter()
        .filter(|e| e.message == "inside the executor" && e.span == Some(retried_span))
        .collect();
    assert_eq!(inside.len(), 2, "each attempt logs inside the job's span");
    assert!(
        events
            .iter()
            .any(|e| e.message == "job attempt failed, retrying"
                && e.span == Some(retried_span)
                && e.level == tracing::Level::WARN
                && e.fields.get("attempt").map(String::as_str) == Some("1"))
    );

    let (failed_span, failed) = job_span(failed_id);
    assert_eq!(failed.parent, None);
    assert_eq!(
        failed.fields.get("job.outcome").map(String::as_str),
        Some("failed")
    );
    assert!(
        events
            .iter()
            .any(|e| e.message == "job failed" && e.span == Some(failed_span))
    );

    let (_, timed) = job_span(timed_id);
    assert_eq!(
        timed.fields.get("job.outcome").map(String::as_str),
        Some("timed_out")
    );

    assert!(
        events
            .iter()
            .any(|e| e.message == "event dropped by the loop guard"
                && e.fields.get("causal_depth").map(String::as_str) == Some("3"))
    );
    assert!(events.iter().any(|e| e.message == "circuit breaker"
        && e.fields.get("state").map(String::as_str) == Some("Open")));
}
