//! A web service whose jobs survive the process: `POST /jobs?frames=N` (or a JSON body
//! `{"frames": N}`) stores a render job before it answers `201 {"id": "..."}`, and
//! `GET /jobs/{id}` answers the job's state as JSON: running (with its progress and how many
//! times it has started) or its outcome, also after a restart.
//!
//! Kill it at any moment (`kill -9`) and start it again on the same directory: every job it
//! answered 201 for runs again and finishes.
//!
//! ```text
//! cargo run --example durable_service      # then: curl -X POST 127.0.0.1:3001/jobs?frames=100
//! PORT=8080 DATA_DIR=/tmp/jobs cargo run --example durable_service
//! ```
//!
//! It listens on 127.0.0.1 only and keeps its jobs in `$DATA_DIR/jobs.redb` (default
//! `target/durable-service`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext, JobHandle, Progress};
use orchestrator_durable::{Durable, End, format_id, parse_id};
use orchestrator_redb::RedbStore;
use orchestrator_remote::{NodeId, Registry, WireJobId};
use orchestrator_tokio::TokioRuntime;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Renders `frames` frames, 40 ms each, reporting progress after each.
#[derive(Debug, Serialize, Deserialize)]
struct Render {
    frames: u32,
}
impl Job for Render {
    type Output = String;
}

struct Renderer {
    durable: Arc<Mutex<Option<Durable>>>,
}

impl Executor<Render> for Renderer {
    type Error = std::convert::Infallible;
    async fn execute(&self, job: &Render, cx: JobContext) -> Result<String, Self::Error> {
        // The durable id is the same in every run of the job: a real renderer would key its
        // output file by it, so a run after a crash overwrites instead of duplicating.
        let id = self
            .durable
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|d| format_id(d.job_id(&cx)));
        println!("run of {} ({} frames)", id.unwrap_or_default(), job.frames);
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

/// A job running in this process: its latest progress.
#[derive(Default, Clone)]
struct Running {
    progress: Option<f64>,
    recovered: bool,
}

#[derive(Clone)]
struct App {
    dispatcher: Dispatcher<TokioRuntime>,
    durable: Durable,
    running: Arc<Mutex<HashMap<WireJobId, Running>>>,
}

impl App {
    /// Follows a job's progress until it ends.
    fn follow(&self, id: WireJobId, handle: JobHandle<String>, recovered: bool) {
        let running = self.running.clone();
        running.lock().expect("not poisoned").insert(
            id,
            Running {
                progress: None,
                recovered,
            },
        );
        let mut reports = handle.progress();
        tokio::spawn(async move {
            while let Some(report) = reports.next().await {
                if let Some(job) = running.lock().expect("not poisoned").get_mut(&id) {
                    job.progress = Some(report.value());
                }
            }
            // The outcome is stored before the handle resolves: from now on it is read there.
            let _ = handle.await;
            running.lock().expect("not poisoned").remove(&id);
        });
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn bad_request(message: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({ "error": message }))
}

#[derive(Deserialize)]
struct Body {
    frames: u32,
}

async fn start(
    State(app): State<App>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Body>(&body) {
            Ok(body) => Some(body.frames),
            Err(e) => return bad_request(&format!("the body is not {{\"frames\": N}}: {e}")),
        }
    };
    let from_query = match query.get("frames").map(|f| f.parse::<u32>()) {
        None => None,
        Some(Ok(frames)) => Some(frames),
        Some(Err(_)) => return bad_request("frames must be a number from 1 to 1000"),
    };
    let frames = match (from_query, from_body) {
        (Some(a), Some(b)) if a != b => {
            return bad_request("frames differs between the query and the body");
        }
        (a, b) => a.or(b).unwrap_or(10),
    };
    if !(1..=1000).contains(&frames) {
        return bad_request("frames must be a number from 1 to 1000");
    }
    let handle: JobHandle<String> = app.dispatcher.dispatch(Render { frames });
    // Answer only once the job would survive a crash.
    if let Err(error) = handle.stored().await {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": format!("the job could not be stored: {error}") }),
        );
    }
    let id = app.durable.wire_id(handle.id());
    app.follow(id, handle, false);
    json_response(StatusCode::CREATED, json!({ "id": format_id(id) }))
}

async fn status(State(app): State<App>, Path(text): Path<String>) -> Response {
    let Some(id) = parse_id(&text) else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no job `{text}`: not a job id") }),
        );
    };
    let running = app.running.lock().expect("not poisoned").get(&id).cloned();
    if let Some(job) = running {
        return json_response(
            StatusCode::OK,
            json!({
                "id": text,
                "state": "running",
                "progress": job.progress.unwrap_or(0.0),
                "recovered": job.recovered,
            }),
        );
    }
    match app.durable.outcome(id) {
        Ok(Some(outcome)) => {
            let (state, detail) = match &outcome.end {
                End::Succeeded { output, .. } => ("succeeded", output.clone()),
                End::Failed { error, .. } => ("failed", json!(error)),
                End::Cancelled { reason } => ("cancelled", json!(reason)),
                End::TimedOut { .. } => ("timed out", serde_json::Value::Null),
                other => ("rejected", json!(format!("{other:?}"))),
            };
            json_response(
                StatusCode::OK,
                json!({ "id": text, "state": state, "outcome": detail }),
            )
        }
        Ok(None) => json_response(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no job `{text}`: never accepted here, or its outcome has expired") }),
        ),
        Err(error) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": error.to_string() }),
        ),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var("DATA_DIR").unwrap_or_else(|_| "target/durable-service".into());
    std::fs::create_dir_all(&dir)?;
    let store = RedbStore::open(std::path::Path::new(&dir).join("jobs.redb"))?;

    let mut registry = Registry::new(NodeId::new(1));
    registry.register_job::<Render>("render")?;
    let dispatcher = Dispatcher::new(TokioRuntime::default());
    let slot = Arc::new(Mutex::new(None));
    let (durable, recovery) = Durable::builder(store, Arc::new(registry))
        .register::<Render, _>(Renderer {
            durable: slot.clone(),
        })
        .open(&dispatcher)?;
    *slot.lock().expect("not poisoned") = Some(durable.clone());

    let app = App {
        dispatcher,
        durable: durable.clone(),
        running: Arc::new(Mutex::new(HashMap::new())),
    };
    // What the previous run left unfinished runs again, followed like new jobs.
    let recovered = recovery.ids();
    let unknown = recovery.resume();
    for id in &recovered {
        if let Some(handle) = durable.take_handle::<String>(*id) {
            app.follow(*id, handle, true);
        }
    }
    println!(
        "recovered {} job(s){}",
        recovered.len(),
        if unknown.is_empty() {
            String::new()
        } else {
            format!(", {} of unknown types kept", unknown.len())
        }
    );

    let router = Router::new()
        .route("/jobs", post(start))
        .route("/jobs/{id}", get(status))
        .with_state(app);
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
