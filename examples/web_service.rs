//! A web service on axum whose jobs show their progress live: `POST /jobs?frames=N` (or a JSON
//! body `{"frames": N}`; N from 1 to 200, default 10) dispatches a render job and answers
//! `201 {"id": 7}`; `GET /jobs/{id}/events` streams its progress as Server-Sent Events, then
//! its outcome; `GET /` is a page with a button and live progress bars (the browser's
//! `EventSource`). Every error answers JSON too, `content-type: application/json`:
//! `400 {"error": "..."}` (a bad frame count), `404 {"error": "..."}` (an unknown job, or an
//! unknown path: the answer names it and lists the routes), `405 {"error": "..."}` (a method
//! the path does not take: the answer, and its `allow` header, say which it takes).
//!
//! ```text
//! cargo run --example web_service          # then open http://127.0.0.1:3000
//! PORT=8080 cargo run --example web_service
//! ```
//!
//! It listens on 127.0.0.1 only, and runs until it is stopped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt};
use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext, JobHandle, Progress};
use orchestrator_tokio::TokioRuntime;
use tokio::sync::watch;

/// Renders `frames` frames, 40 ms each, reporting progress after each.
struct Render {
    frames: u32,
}
impl Job for Render {
    type Output = String;
}

struct Renderer;
impl Executor<Render> for Renderer {
    type Error = Infallible;
    async fn execute(&self, job: &Render, cx: JobContext) -> Result<String, Infallible> {
        for frame in 1..=job.frames {
            cx.sleep(Duration::from_millis(40)).await;
            cx.report_progress(
                Progress::new(f64::from(frame) / f64::from(job.frames))
                    .with_step(frame, job.frames),
            );
        }
        Ok(format!("rendered {} frames", job.frames))
    }
}

/// A job the service knows: its latest progress report, and its outcome once it ends.
struct Running {
    progress: watch::Receiver<Option<Progress>>,
    outcome: watch::Receiver<Option<String>>,
}

#[derive(Clone)]
struct App {
    dispatcher: Dispatcher<TokioRuntime>,
    jobs: Arc<Mutex<HashMap<u64, Arc<Running>>>>,
}

/// A JSON answer.
fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A JSON error answer: `{"error": "..."}`.
fn error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

/// The routes, for the 404 answer of an unknown path.
const ROUTES: &str = "GET /, POST /jobs, GET /jobs/{id}/events";

/// The answer to a path that is no route: `404 {"error": "..."}` naming it, with the routes.
async fn unknown_path(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!(
            "no route for {method} {}; the routes are: {ROUTES}",
            uri.path()
        ),
    )
}

/// The answer to a method a route does not take: `405 {"error": "..."}` and an `allow` header,
/// both listing `allowed`.
fn not_allowed(
    allowed: &'static str,
) -> impl Fn(Method, Uri) -> std::future::Ready<Response> + Clone {
    move |method: Method, uri: Uri| {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "{method} is not allowed on {}; allowed: {allowed}",
                uri.path()
            ),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allowed));
        std::future::ready(response)
    }
}

/// The service's routes; every error answers `{"error": "..."}`.
fn router(app: App) -> Router {
    Router::new()
        .route("/", get(page).fallback(not_allowed("GET, HEAD")))
        .route("/jobs", post(start).fallback(not_allowed("POST")))
        .route(
            "/jobs/{id}/events",
            get(events).fallback(not_allowed("GET, HEAD")),
        )
        .fallback(unknown_path)
        .with_state(app)
}

/// The body `POST /jobs` accepts.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    frames: u32,
}

/// The frame count: from the query (`?frames=N`) or a JSON body (`{"frames": N}`), 10 if
/// neither; both must agree.
fn frames(query: &HashMap<String, String>, body: &[u8]) -> Result<u32, String> {
    const RANGE: &str = "frames must be a number from 1 to 200";
    let from_query = match query.get("frames") {
        None => None,
        Some(text) => Some(text.parse::<u32>().map_err(|_| RANGE.to_owned())?),
    };
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let body: Body = serde_json::from_slice(body)
            .map_err(|e| format!("the body must be {{\"frames\": N}}: {e}"))?;
        Some(body.frames)
    };
    let frames = match (from_query, from_body) {
        (Some(a), Some(b)) if a != b => {
            return Err("frames differs in the query and the body".into());
        }
        (a, b) => a.or(b).unwrap_or(10),
    };
    if (1..=200).contains(&frames) {
        Ok(frames)
    } else {
        Err(RANGE.to_owned())
    }
}

async fn start(
    State(app): State<App>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let frames = match frames(&query, &body) {
        Ok(frames) => frames,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let handle: JobHandle<String> = app.dispatcher.dispatch(Render { frames });
    let id = handle.id().as_u64();
    // The latest report and the outcome, for any number of readers (a progress bar needs the
    // latest value, not every one).
    let (progress_tx, progress) = watch::channel(None);
    let (outcome_tx, outcome) = watch::channel(None);
    let mut reports = handle.progress();
    tokio::spawn(async move {
        while let Some(report) = reports.next().await {
            let _ = progress_tx.send(Some(report));
        }
    });
    tokio::spawn(async move {
        let text = match handle.await {
            Ok(done) => format!("succeeded: {}", done.value),
            Err(error) => format!("failed: {error:#}"),
        };
        let _ = outcome_tx.send(Some(text));
    });
    let running = Arc::new(Running { progress, outcome });
    app.jobs.lock().expect("not poisoned").insert(id, running);
    json(StatusCode::CREATED, &serde_json::json!({ "id": id }))
}

fn progress_event(report: &Progress) -> SseEvent {
    let step = report
        .step()
        .map_or(String::new(), |(n, of)| format!(" (frame {n} of {of})"));
    SseEvent::default()
        .event("progress")
        .data(format!("{:.0} %{step}", report.value() * 100.0))
}

/// What a reader of a job's events has sent so far.
struct Reader {
    progress: watch::Receiver<Option<Progress>>,
    outcome: watch::Receiver<Option<String>>,
    /// The last report sent (a late reader first gets the current one).
    last_sent: Option<Progress>,
    finished: bool,
}

async fn next_event(mut r: Reader) -> Option<(Result<SseEvent, Infallible>, Reader)> {
    if r.finished {
        return None;
    }
    loop {
        let current = r.progress.borrow_and_update().clone();
        if current.is_some() && current != r.last_sent {
            let event = progress_event(current.as_ref()?);
            r.last_sent = current;
            return Some((Ok(event), r));
        }
        // The reports have ended once their sender is gone; then the outcome is the last event.
        let reports_ended = r.progress.has_changed().is_err();
        let outcome = r.outcome.borrow_and_update().clone();
        if let (Some(text), true) = (outcome, reports_ended) {
            r.finished = true;
            return Some((Ok(SseEvent::default().event("done").data(text)), r));
        }
        if reports_ended {
            let _ = r.outcome.changed().await;
        } else {
            tokio::select! {
                _ = r.progress.changed() => {}
                _ = r.outcome.changed() => {}
            }
        }
    }
}

async fn events(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Response> {
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            &format!("no job `{id}`: ids are the numbers POST /jobs answers"),
        )
    };
    let number = id.parse::<u64>().map_err(|_| not_found())?;
    let running = app
        .jobs
        .lock()
        .expect("not poisoned")
        .get(&number)
        .cloned()
        .ok_or_else(not_found)?;
    let reader = Reader {
        progress: running.progress.clone(),
        outcome: running.outcome.clone(),
        last_sent: None,
        finished: false,
    };
    let stream = futures::stream::unfold(reader, next_event);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>render jobs</title>
<style>body{font-family:sans-serif;margin:20px}li{margin:8px 0;list-style:none}
.bar{width:320px;height:14px;border:1px solid #999;display:inline-block;vertical-align:middle}
.fill{display:block;height:100%;background:#3a9a4a;width:0}</style></head>
<body><h1>Render jobs</h1>
<p><button id="start">Render 10 frames</button> <span id="status">ready</span></p>
<ul id="jobs"></ul>
<script>
document.getElementById("start").onclick = async () => {
  const response = await fetch("/jobs?frames=10", { method: "POST" });
  const { id } = await response.json();
  const li = document.createElement("li");
  li.id = "job-" + id;
  li.innerHTML = `job ${id}: <span class="bar"><span class="fill"></span></span> <span class="text">0 %</span>`;
  document.getElementById("jobs").appendChild(li);
  document.getElementById("status").textContent = "job " + id + " started";
  const source = new EventSource("/jobs/" + id + "/events");
  source.addEventListener("progress", (e) => {
    li.querySelector(".text").textContent = e.data;
    li.querySelector(".fill").style.width = parseInt(e.data, 10) + "%";
  });
  source.addEventListener("done", (e) => {
    li.querySelector(".text").textContent += " · " + e.data;
    source.close();
  });
};
</script></body></html>"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dispatcher = Dispatcher::new(TokioRuntime::default());
    dispatcher.register(Renderer);
    let app = App {
        dispatcher,
        jobs: Arc::new(Mutex::new(HashMap::new())),
    };
    let router = router(app);
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// Sends `method path` to `addr` over HTTP/1.1 and returns the whole answer as text.
    fn ask(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.to_ascii_lowercase()
    }

    /// Unknown paths, an unknown job and wrong methods: JSON errors, never an empty body.
    #[tokio::test(flavor = "multi_thread")]
    async fn every_error_answers_json() {
        let dispatcher = Dispatcher::new(TokioRuntime::default());
        dispatcher.register(Renderer);
        let app = App {
            dispatcher,
            jobs: Arc::new(Mutex::new(HashMap::new())),
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(app)).await });
        let cases = [
            (
                "GET",
                "/nope",
                "404",
                "no route for get /nope; the routes are",
            ),
            ("GET", "/jobs/7", "404", "no route for get /jobs/7"),
            ("GET", "/jobs/7/events", "404", "no job `7`"),
            (
                "GET",
                "/jobs",
                "405",
                "get is not allowed on /jobs; allowed: post",
            ),
            ("DELETE", "/", "405", "allowed: get, head"),
            (
                "POST",
                "/jobs?frames=0",
                "400",
                "frames must be a number from 1 to 200",
            ),
        ];
        for (method, path, status, says) in cases {
            let answer = tokio::task::spawn_blocking(move || ask(addr, method, path))
                .await
                .unwrap();
            assert!(
                answer.starts_with(&format!("http/1.1 {status} ")),
                "{answer}"
            );
            assert!(
                answer.contains("content-type: application/json"),
                "{answer}"
            );
            assert!(answer.contains("{\"error\":\""), "{answer}");
            assert!(answer.contains(says), "{method} {path}: {answer}");
            if status == "405" {
                assert!(answer.contains("\r\nallow: "), "{answer}");
            }
        }
    }
}
