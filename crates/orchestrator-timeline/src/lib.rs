//! A job timeline for [`orchestrator-core`](orchestrator_core): what a dispatcher's jobs did
//! and when (start, retries, end and outcome), the events they published, and the states the
//! application records, exported as
//!
//! - a **Chrome trace** ([`Timeline::chrome_trace`]): the trace-event JSON format that
//!   [Perfetto](https://ui.perfetto.dev) and `chrome://tracing` open; each job a slice on a lane
//!   (overlapping jobs on separate lanes), each retry, event and state an instant;
//! - a **self-contained HTML page** ([`Timeline::html`]): the same timeline drawn in SVG, and a
//!   table of the jobs, with no script and nothing to fetch.
//!
//! Install it as an observer; times are the wall clock since the timeline was made.
//!
//! ```
//! use orchestrator_core::testing::VirtualRuntime;
//! use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext};
//! use orchestrator_timeline::Timeline;
//!
//! struct Ping;
//! impl Job for Ping {
//!     type Output = ();
//! }
//! struct Pong;
//! impl Executor<Ping> for Pong {
//!     type Error = core::convert::Infallible;
//!     async fn execute(&self, _: &Ping, _: JobContext) -> Result<(), Self::Error> {
//!         Ok(())
//!     }
//! }
//!
//! let timeline = Timeline::new();
//! let rt = VirtualRuntime::new();
//! let dispatcher = Dispatcher::builder(rt.clone()).observer(timeline.observer()).build();
//! dispatcher.register(Pong);
//! rt.block_on(dispatcher.dispatch(Ping)).unwrap();
//! timeline.state("app", &"ready");
//!
//! let trace: String = timeline.chrome_trace();
//! assert!(trace.starts_with(r#"{"traceEvents":["#) && trace.contains(r#""name":"Ping""#));
//! assert!(timeline.html().contains("Ping") && timeline.html().contains("succeeded"));
//! ```

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt::{self, Debug, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use orchestrator_core::{DataSource, Event, JobError, JobId, JobInfo, Observer};

/// One job on the timeline.
#[derive(Debug, Clone)]
struct JobRow {
    id: JobId,
    job_type: &'static str,
    start: Duration,
    end: Option<Duration>,
    outcome: Option<&'static str>,
    retries: Vec<(u32, Duration)>,
    lane: usize,
}

/// An instant on the timeline: an event, or a state.
#[derive(Debug, Clone)]
struct Mark {
    at: Duration,
    name: String,
    detail: String,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: Vec<JobRow>,
    by_id: HashMap<JobId, usize>,
    /// When each lane is free again (`None`: a job on it has not ended).
    lanes: Vec<Option<Duration>>,
    events: Vec<Mark>,
    states: Vec<Mark>,
}

/// Records a dispatcher's jobs, their events and the application's states; see the
/// [crate documentation](crate).
#[derive(Debug)]
pub struct Timeline {
    origin: Instant,
    inner: Mutex<Inner>,
}

/// The observer that feeds a [`Timeline`]; made by [`Timeline::observer`].
#[derive(Debug, Clone)]
pub struct TimelineObserver(Arc<Timeline>);

fn short(type_name: &'static str) -> &'static str {
    // `my_crate::jobs::FetchUser<T>` → `FetchUser<T>`: the last path segment before generics.
    let end = type_name.find('<').unwrap_or(type_name.len());
    let start = type_name[..end].rfind("::").map_or(0, |i| i + 2);
    &type_name[start..]
}

impl Timeline {
    /// A new, empty timeline, starting now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// The observer to install on a dispatcher
    /// ([`DispatcherBuilder::observer`](orchestrator_core::DispatcherBuilder::observer)).
    pub fn observer(self: &Arc<Self>) -> TimelineObserver {
        TimelineObserver(self.clone())
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Records that `name` (an orchestrator, a screen, anything) is now in state `state`.
    pub fn state(&self, name: &str, state: &dyn Debug) {
        let mark = Mark {
            at: self.now(),
            name: name.to_owned(),
            detail: format!("{state:?}"),
        };
        self.inner().states.push(mark);
    }

    /// Returns how many jobs it has seen start.
    pub fn jobs(&self) -> usize {
        self.inner().jobs.len()
    }

    fn start(&self, job: &JobInfo) {
        let at = self.now();
        let mut inner = self.inner();
        let free = inner.lanes.iter().position(|l| l.is_some_and(|t| t <= at));
        let lane = match free {
            Some(lane) => lane,
            None => {
                inner.lanes.push(None);
                inner.lanes.len() - 1
            }
        };
        inner.lanes[lane] = None;
        let row = inner.jobs.len();
        inner.by_id.insert(job.id, row);
        inner.jobs.push(JobRow {
            id: job.id,
            job_type: short(job.job_type.name()),
            start: at,
            end: None,
            outcome: None,
            retries: Vec::new(),
            lane,
        });
    }

    fn end(&self, job: &JobInfo, outcome: &'static str) {
        let at = self.now();
        let mut inner = self.inner();
        let Some(&row) = inner.by_id.get(&job.id) else {
            return; // ended without starting (rejected): not a slice
        };
        let lane = inner.jobs[row].lane;
        inner.jobs[row].end = Some(at);
        inner.jobs[row].outcome = Some(outcome);
        inner.lanes[lane] = Some(at);
    }

    /// The timeline in the Chrome trace-event JSON format (Perfetto, `chrome://tracing`).
    /// Times are microseconds since the timeline was made; a job that has not ended ends at
    /// the time of the export.
    pub fn chrome_trace(&self) -> String {
        let now = self.now();
        let inner = self.inner();
        let mut out = String::from(r#"{"traceEvents":["#);
        let mut first = true;
        let mut push = |out: &mut String, item: String| {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&item);
        };
        push(&mut out, thread_name(0, "events and states"));
        for lane in 0..inner.lanes.len() {
            push(
                &mut out,
                thread_name(lane + 1, &format!("jobs {}", lane + 1)),
            );
        }
        for job in &inner.jobs {
            let end = job.end.unwrap_or(now);
            push(
                &mut out,
                format!(
                    r#"{{"name":{},"cat":"job","ph":"X","ts":{},"dur":{},"pid":1,"tid":{},"args":{{"id":{},"outcome":{},"retries":{}}}}}"#,
                    json(job.job_type),
                    micros(job.start),
                    micros(end.saturating_sub(job.start)),
                    job.lane + 1,
                    job.id.as_u64(),
                    json(job.outcome.unwrap_or("running")),
                    job.retries.len()
                ),
            );
            for (attempt, at) in &job.retries {
                push(
                    &mut out,
                    format!(
                        r#"{{"name":"retry","cat":"retry","ph":"i","s":"t","ts":{},"pid":1,"tid":{},"args":{{"job":{},"failed_attempt":{attempt}}}}}"#,
                        micros(*at),
                        job.lane + 1,
                        job.id.as_u64()
                    ),
                );
            }
        }
        for (cat, marks) in [("event", &inner.events), ("state", &inner.states)] {
            for mark in marks {
                push(
                    &mut out,
                    format!(
                        r#"{{"name":{},"cat":"{cat}","ph":"i","s":"t","ts":{},"pid":1,"tid":0,"args":{{"detail":{}}}}}"#,
                        json(&mark.name),
                        micros(mark.at),
                        json(&mark.detail)
                    ),
                );
            }
        }
        out.push_str(r#"],"displayTimeUnit":"ms"}"#);
        out
    }

    /// The timeline as a self-contained HTML page: an SVG drawing (a row per lane, a bar per
    /// job coloured by outcome, a tick per retry, event and state) and a table of the jobs.
    pub fn html(&self) -> String {
        let now = self.now();
        let inner = self.inner();
        let span = inner
            .jobs
            .iter()
            .map(|j| j.end.unwrap_or(now))
            .chain(inner.events.iter().map(|m| m.at))
            .chain(inner.states.iter().map(|m| m.at))
            .max()
            .unwrap_or_default()
            .max(Duration::from_micros(1));
        let (width, row, left) = (900.0_f64, 22.0_f64, 110.0_f64);
        let x = |t: Duration| left + (width - left - 10.0) * t.as_secs_f64() / span.as_secs_f64();
        let lanes = inner.lanes.len();
        let height = row * (lanes as f64 + 2.0) + 20.0;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="job timeline">"#
        );
        let _ = write!(
            svg,
            r#"<text x="4" y="{}" class="lane">events, states</text>"#,
            row * 0.7
        );
        for mark in inner.events.iter().chain(&inner.states) {
            let _ = write!(
                svg,
                r#"<line x1="{0:.1}" x2="{0:.1}" y1="2" y2="{1:.1}" class="mark"><title>{2}: {3}</title></line>"#,
                x(mark.at),
                row - 4.0,
                html(&mark.name),
                html(&mark.detail)
            );
        }
        for lane in 0..lanes {
            let _ = write!(
                svg,
                r#"<text x="4" y="{:.1}" class="lane">jobs {}</text>"#,
                row * (lane as f64 + 1.7),
                lane + 1
            );
        }
        for job in &inner.jobs {
            let end = job.end.unwrap_or(now);
            let (x0, x1) = (x(job.start), x(end).max(x(job.start) + 2.0));
            let y = row * (job.lane as f64 + 1.0) + 2.0;
            let outcome = job.outcome.unwrap_or("running");
            let _ = write!(
                svg,
                r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" class="{outcome}"><title>job {} {}: {outcome}</title></rect>"#,
                x1 - x0,
                row - 6.0,
                job.id.as_u64(),
                html(job.job_type)
            );
            for (_, at) in &job.retries {
                let _ = write!(
                    svg,
                    r#"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" class="retry"/>"#,
                    x(*at),
                    y - 1.0,
                    y + row - 5.0
                );
            }
        }
        let _ = write!(
            svg,
            r#"<text x="{left}" y="{:.1}" class="axis">0 ms</text><text x="{:.1}" y="{:.1}" class="axis" text-anchor="end">{:.1} ms</text></svg>"#,
            height - 4.0,
            width - 10.0,
            height - 4.0,
            span.as_secs_f64() * 1e3
        );
        let mut table = String::from(
            "<table><tr><th>job</th><th>type</th><th>outcome</th><th>start</th><th>duration</th><th>retries</th></tr>",
        );
        for job in &inner.jobs {
            let end = job.end.unwrap_or(now);
            let _ = write!(
                table,
                "<tr><td>{}</td><td>{}</td><td class=\"{2}\">{2}</td><td>{3:.1} ms</td><td>{4:.1} ms</td><td>{5}</td></tr>",
                job.id.as_u64(),
                html(job.job_type),
                job.outcome.unwrap_or("running"),
                job.start.as_secs_f64() * 1e3,
                end.saturating_sub(job.start).as_secs_f64() * 1e3,
                job.retries.len()
            );
        }
        table.push_str("</table>");
        let mut states = String::from("<ul>");
        for mark in &inner.states {
            let _ = write!(
                states,
                "<li>{:.1} ms: {} → {}</li>",
                mark.at.as_secs_f64() * 1e3,
                html(&mark.name),
                html(&mark.detail)
            );
        }
        states.push_str("</ul>");
        let ended = inner.jobs.iter().filter(|j| j.end.is_some()).count();
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>job timeline</title><style>{STYLE}</style></head><body><h1>Job timeline</h1><p id=\"summary\">{} jobs ({ended} ended), {} events, {} states, over {:.1} ms</p>{svg}<h2>Jobs</h2>{table}<h2>States</h2>{states}</body></html>",
            inner.jobs.len(),
            inner.events.len(),
            inner.states.len(),
            span.as_secs_f64() * 1e3
        )
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:16px;color:#222}svg{border:1px solid #ccc;background:#fafafa}\
text{font-size:11px}.lane{fill:#555}.axis{fill:#888}.mark{stroke:#7a5cff;stroke-width:1}\
.retry{stroke:#000;stroke-width:2}.succeeded{fill:#3a9a4a;color:#2a7a3a}.failed{fill:#d04040;color:#b02020}\
.cancelled{fill:#d0a020;color:#8a6a00}.timed_out{fill:#e07020;color:#a04a00}.rejected{fill:#888;color:#555}\
.running{fill:#4a7ad0;color:#2a5ab0}table{border-collapse:collapse;margin-top:8px}\
td,th{border:1px solid #ddd;padding:2px 8px;font-size:12px;text-align:left}";

impl Observer for TimelineObserver {
    fn on_job_start(&self, job: &JobInfo) {
        self.0.start(job);
    }

    fn on_job_success(&self, job: &JobInfo, data_source: DataSource) {
        let outcome = if data_source == DataSource::Cached {
            "succeeded (cached)"
        } else {
            "succeeded"
        };
        self.0.end(job, outcome);
    }

    fn on_job_error(&self, job: &JobInfo, error: &JobError) {
        let outcome = match error {
            JobError::Failed(_) => "failed",
            JobError::Cancelled { .. } => "cancelled",
            JobError::TimedOut { .. } => "timed_out",
            _ => "rejected",
        };
        self.0.end(job, outcome);
    }

    fn on_job_retry(
        &self,
        job: &JobInfo,
        attempt: u32,
        _delay: Duration,
        _error: &(dyn std::error::Error + 'static),
    ) {
        let at = self.0.now();
        let mut inner = self.0.inner();
        if let Some(&row) = inner.by_id.get(&job.id) {
            inner.jobs[row].retries.push((attempt, at));
        }
    }

    fn on_event_published(&self, event: &Event) {
        let at = self.0.now();
        let detail = match event.correlation_id() {
            Some(id) => format!("job {}", id.as_u64()),
            None => String::from("no job"),
        };
        let mark = Mark {
            at,
            name: short(event.payload_type_name()).to_owned(),
            detail,
        };
        self.0.inner().events.push(mark);
    }
}

fn micros(d: Duration) -> u128 {
    d.as_micros()
}

/// `s` as a JSON string literal.
fn json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` with the HTML special characters escaped.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn thread_name(tid: usize, name: &str) -> String {
    format!(
        r#"{{"name":"thread_name","ph":"M","pid":1,"tid":{tid},"args":{{"name":{}}}}}"#,
        json(name)
    )
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner();
        write!(
            f,
            "{} jobs, {} events, {} states",
            inner.jobs.len(),
            inner.events.len(),
            inner.states.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{html, json, short};

    #[test]
    fn names_are_short_and_text_is_escaped() {
        assert_eq!(short("my_crate::jobs::FetchUser"), "FetchUser");
        assert_eq!(short("a::Wrap<b::Inner>"), "Wrap<b::Inner>");
        assert_eq!(short("Plain"), "Plain");
        assert_eq!(json("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
        assert_eq!(
            html("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
