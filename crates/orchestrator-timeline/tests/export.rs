//! The timeline of a few jobs (a success, one retried, a failure, a cancellation, overlapping
//! jobs, events, states): the Chrome trace parses and has what happened, in the format's
//! fields; the HTML page draws and lists every job.

use std::time::Duration;

use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    CancellationToken, Dispatch, Dispatcher, Executor, Job, JobContext, RetryPolicy,
};
use orchestrator_timeline::Timeline;
use serde_json::Value;

#[derive(Clone)]
struct Task {
    fail_first: u32,
    hang: bool,
}
impl Job for Task {
    type Output = ();
}

#[derive(Debug)]
struct Oops;
impl std::fmt::Display for Oops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oops")
    }
}
impl std::error::Error for Oops {}

struct Done;

struct Runner;
impl Executor<Task> for Runner {
    type Error = Oops;
    async fn execute(&self, job: &Task, cx: JobContext) -> Result<(), Oops> {
        cx.emit(Done).unwrap();
        if job.hang {
            std::future::pending::<()>().await;
        }
        if cx.attempt() <= job.fail_first {
            Err(Oops)
        } else {
            Ok(())
        }
    }
}

#[test]
fn the_trace_and_the_page_show_every_job_and_what_happened() {
    let timeline = Timeline::new();
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::builder(rt.clone())
        .observer(timeline.observer())
        .build();
    dispatcher.register(Runner);
    let ok = dispatcher.dispatch(Task {
        fail_first: 0,
        hang: false,
    });
    let retried = dispatcher
        .job(Task {
            fail_first: 1,
            hang: false,
        })
        .retry(RetryPolicy::fixed(1, Duration::from_millis(1)))
        .dispatch();
    let failed = dispatcher.dispatch(Task {
        fail_first: 9,
        hang: false,
    });
    let token = CancellationToken::new();
    let cancelled = dispatcher
        .job(Task {
            fail_first: 0,
            hang: true,
        })
        .cancellation(token.clone())
        .dispatch();
    timeline.state("app", &"busy");
    rt.run_until_stalled();
    token.cancel();
    for handle in [ok, retried, failed, cancelled] {
        let _ = rt.block_on(handle);
    }
    timeline.state("app", &"idle");
    assert_eq!(timeline.jobs(), 4);

    let trace: Value = serde_json::from_str(&timeline.chrome_trace()).expect("valid JSON");
    assert_eq!(trace["displayTimeUnit"], "ms");
    let events = trace["traceEvents"]
        .as_array()
        .expect("a traceEvents array");
    let jobs: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(jobs.len(), 4);
    for job in &jobs {
        assert_eq!(job["name"], "Task");
        assert!(job["ts"].is_u64() && job["dur"].is_u64() && job["tid"].as_u64() >= Some(1));
    }
    let outcomes: Vec<&str> = jobs
        .iter()
        .map(|j| j["args"]["outcome"].as_str().unwrap())
        .collect();
    for expected in ["succeeded", "failed", "cancelled"] {
        assert!(outcomes.contains(&expected), "{outcomes:?}");
    }
    assert_eq!(outcomes.iter().filter(|o| **o == "succeeded").count(), 2);
    let lanes: std::collections::HashSet<u64> =
        jobs.iter().map(|j| j["tid"].as_u64().unwrap()).collect();
    assert!(lanes.len() >= 2, "overlapping jobs on separate lanes");
    let retries = events
        .iter()
        .filter(|e| e["name"] == "retry" && e["ph"] == "i")
        .count();
    assert_eq!(
        retries, 1,
        "the retried job, once (the failed one has no retry policy)"
    );
    let dones = events
        .iter()
        .filter(|e| e["cat"] == "event" && e["name"] == "Done")
        .count();
    assert_eq!(dones, 5, "one per attempt: 1 + 2 + 1 + 1");
    let states: Vec<&str> = events
        .iter()
        .filter(|e| e["cat"] == "state")
        .map(|e| e["args"]["detail"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["\"busy\"", "\"idle\""]);
    let named = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .count();
    assert_eq!(named, lanes.len() + 1);

    let page = timeline.html();
    assert!(page.starts_with("<!doctype html>") && page.ends_with("</html>"));
    assert!(page.contains("<svg") && !page.contains("<script"));
    assert_eq!(page.matches("<rect ").count(), 4);
    assert!(
        page.contains(r#"<p id="summary">4 jobs (4 ended), 5 events, 2 states"#),
        "{page}"
    );
    assert_eq!(timeline.to_string(), "4 jobs, 5 events, 2 states");
}
