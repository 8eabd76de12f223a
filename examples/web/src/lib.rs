//! A web page on [`orchestrator_wasm::WasmRuntime`]: buttons dispatch jobs, and the page
//! shows each job's progress (from its handle's progress stream) and its outcome.
//!
//! - **Start job** multiplies 6 by 7 in four steps ([`Multiply`]): `job 1: succeeded: 42`.
//! - **Start failing job** uploads five chunks, and the server rejects the third on every
//!   attempt ([`Upload`]); it is retried once, then fails:
//!   `job 2: failed: job failed after 2 attempts: chunk 3 of 5 rejected by the server`.
//! - **Start long job** uploads forty chunks (about ten seconds).
//! - **Cancel** cancels the newest job still running: `job 3: cancelled`.
//!
//! The jobs' executors are plain Rust that sleep with [`JobContext::sleep`](orchestrator_core::JobContext::sleep)
//! (a `setTimeout` underneath, in the browser) and report progress: they are `Send`, so the
//! same jobs also run (and are tested) on the host. An executor that awaited JavaScript (a
//! `fetch`) would be a `LocalExecutor`, registered with `register_local` on the same
//! dispatcher. The page's own code (the button handlers, the tasks that follow each handle
//! and redraw the list) is not `Send` and needs not be: it runs on
//! `wasm_bindgen_futures::spawn_local` directly, outside the dispatcher.
//!
//! Everything but the DOM is in this library and builds on any target: [`start`] dispatches
//! what a button asks for, [`follow`] drives a job's progress stream and outcome, [`Board`]
//! keeps the list and makes its texts. The DOM part (`page.rs`) is only compiled for `wasm32`.
//! Build and serve the page with (from the workspace root; `.ci/run` does the same, then
//! clicks through the page in headless Chromium):
//!
//! ```text
//! cargo build -p orchestrator-web-example --target wasm32-unknown-unknown --release
//! wasm-bindgen --target web --no-typescript --out-dir target/web-example/pkg \
//!     target/wasm32-unknown-unknown/release/orchestrator_web_example.wasm
//! cp examples/web/index.html target/web-example/
//! python3 -m http.server --bind 127.0.0.1 --directory target/web-example 8000
//! ```
//!
//! then open <http://127.0.0.1:8000/>. On other targets the library builds, and its tests run
//! the same jobs on the core's virtual-time runtime.

#![forbid(unsafe_code)]

mod board;
mod jobs;
#[cfg(target_arch = "wasm32")]
mod page;

use core::fmt;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::time::Duration;

use futures_core::Stream;
use orchestrator_core::runtime::Runtime;
use orchestrator_core::{
    CancellationToken, Dispatch, Dispatcher, JobHandle, Progress, ProgressStream, RetryPolicy,
};

pub use board::{Board, Outcome, Row, percent, progress_text};
pub use jobs::{ChunkRejected, Multiplier, Multiply, Overflow, Upload, Uploader};

/// What a button of the page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// 6 × 7 in four steps of 300 ms: succeeds with 42.
    Multiply,
    /// Five chunks of 200 ms, the third rejected on every attempt; one retry after 300 ms,
    /// then it fails.
    FailingUpload,
    /// Forty chunks of 250 ms: about ten seconds, time enough to cancel it.
    LongUpload,
}

impl Action {
    /// Every action, in the order of the page's buttons.
    pub const ALL: [Action; 3] = [Action::Multiply, Action::FailingUpload, Action::LongUpload];

    /// The id of the action's button in `index.html`.
    pub fn button_id(self) -> &'static str {
        match self {
            Action::Multiply => "start-job",
            Action::FailingUpload => "start-failing-job",
            Action::LongUpload => "start-long-job",
        }
    }

    /// What the job list calls the action's job.
    pub fn label(self) -> &'static str {
        match self {
            Action::Multiply => "multiply 6 × 7",
            Action::FailingUpload => "upload 5 chunks, the 3rd is rejected",
            Action::LongUpload => "upload 40 chunks",
        }
    }
}

/// Registers the page's executors on `dispatcher`.
pub fn register<R: Runtime>(dispatcher: &Dispatcher<R>) {
    dispatcher.register(Multiplier).register(Uploader);
}

/// A dispatched job seen by the page: its progress reports and its outcome.
pub struct Started {
    /// The job's progress reports (the handle's [`progress`](JobHandle::progress) stream).
    pub progress: ProgressStream,
    /// The job's outcome (its handle, awaited and turned into an [`Outcome`]).
    pub outcome: Pin<Box<dyn Future<Output = Outcome> + Send>>,
}

impl fmt::Debug for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Started")
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl Started {
    fn new<T: fmt::Display + Send + 'static>(handle: JobHandle<T>) -> Self {
        Self {
            progress: handle.progress(),
            outcome: Box::pin(async move { Outcome::of(&handle.await) }),
        }
    }
}

/// Dispatches `action`'s job on `dispatcher` (whose executors [`register`] registered), with
/// `token` as its cancellation token.
pub fn start<R: Runtime>(
    dispatcher: &Dispatcher<R>,
    action: Action,
    token: CancellationToken,
) -> Started {
    match action {
        Action::Multiply => Started::new(
            dispatcher
                .job(Multiply {
                    a: 6,
                    b: 7,
                    steps: 4,
                    step: Duration::from_millis(300),
                })
                .cancellation(token)
                .dispatch(),
        ),
        Action::FailingUpload => Started::new(
            dispatcher
                .job(Upload {
                    chunks: 5,
                    reject_at: Some(3),
                    chunk_time: Duration::from_millis(200),
                })
                .retry(RetryPolicy::fixed(1, Duration::from_millis(300)))
                .cancellation(token)
                .dispatch(),
        ),
        Action::LongUpload => Started::new(
            dispatcher
                .job(Upload {
                    chunks: 40,
                    reject_at: None,
                    chunk_time: Duration::from_millis(250),
                })
                .cancellation(token)
                .dispatch(),
        ),
    }
}

/// Follows a started job to its end: calls `on_progress` with each report the progress stream
/// yields (the last one the job made included), then returns the job's outcome.
pub async fn follow(started: Started, mut on_progress: impl FnMut(Progress)) -> Outcome {
    let Started {
        mut progress,
        outcome,
    } = started;
    while let Some(report) = poll_fn(|cx| Pin::new(&mut progress).poll_next(cx)).await {
        on_progress(report);
    }
    outcome.await
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::testing::VirtualRuntime;

    /// Runs `action` to its end on a virtual clock; `cancel_at` cancels it once its progress
    /// reaches that value. Returns the reports seen and the outcome.
    fn run(action: Action, cancel_at: Option<f64>) -> (Vec<Progress>, Outcome) {
        let rt = VirtualRuntime::new();
        let dispatcher = Dispatcher::new(rt.clone());
        register(&dispatcher);
        let token = CancellationToken::new();
        let started = start(&dispatcher, action, token.clone());
        let mut reports = Vec::new();
        let outcome = rt.block_on(follow(started, |p| {
            if cancel_at.is_some_and(|at| p.value() >= at) {
                token.cancel();
            }
            reports.push(p);
        }));
        (reports, outcome)
    }

    #[test]
    fn the_multiply_job_reaches_100_percent_and_42() {
        let (reports, outcome) = run(Action::Multiply, None);
        assert_eq!(outcome, Outcome::Succeeded("42".into()));
        let last = reports.last().expect("progress reports");
        assert_eq!(percent(last.value()), 100);
        assert_eq!(last.step(), Some((4, 4)));
        assert!(reports.windows(2).all(|w| w[0].value() <= w[1].value()));
    }

    #[test]
    fn the_failing_upload_fails_after_its_retry() {
        let (reports, outcome) = run(Action::FailingUpload, None);
        assert_eq!(
            outcome.to_string(),
            "failed: job failed after 2 attempts: chunk 3 of 5 rejected by the server"
        );
        // The second attempt reports too, and says so.
        assert!(
            reports
                .iter()
                .any(|p| p.message() == Some("uploading, attempt 2")),
            "{reports:?}"
        );
        assert!(reports.iter().all(|p| percent(p.value()) < 100));
    }

    #[test]
    fn the_long_upload_can_be_cancelled() {
        let (reports, outcome) = run(Action::LongUpload, Some(0.1));
        assert_eq!(outcome, Outcome::Cancelled(None));
        assert!(reports.iter().all(|p| p.value() < 1.0), "{reports:?}");
    }

    #[test]
    fn the_long_upload_succeeds_when_left_alone() {
        let (reports, outcome) = run(Action::LongUpload, None);
        assert_eq!(outcome.to_string(), "succeeded: 40");
        assert_eq!(reports.last().and_then(Progress::step), Some((40, 40)));
    }

    #[test]
    fn index_html_has_every_element_the_page_looks_up() {
        let html = include_str!("../index.html");
        let ids = Action::ALL
            .iter()
            .map(|a| a.button_id())
            .chain(["cancel", "jobs", "summary", "status"]);
        for id in ids {
            let found = html.matches(&format!("id=\"{id}\"")).count();
            assert_eq!(found, 1, "#{id} is in index.html {found} times");
        }
    }
}
