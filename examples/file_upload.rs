//! The file-upload case study: a chunked upload with a progress bar, retries of
//! transient errors only, cancellation by Ctrl-C, and a total timeout, on tokio.
//!
//! An `UploadFile` job uploads a file chunk by chunk and reports progress after each chunk.
//! `main` draws a text progress bar from the handle's progress stream, races the upload against
//! Ctrl-C (which cancels it through a `CancellationToken`), gives it a total time budget, and
//! retries it only when the error is transient (`UploadError::NetworkBlip`), never when it is
//! permanent (`FileTooLarge`, `PermissionDenied`). The server keeps the chunks it received, so
//! a retry resumes where the failed attempt stopped. Four uploads run in sequence, without user
//! input:
//!
//! 1. the connection drops once mid-way: retried, and the upload succeeds on attempt 2;
//! 2. the file is over the server's size limit: a permanent error, not retried (1 attempt);
//! 3. the user presses Ctrl-C once the upload passes 50% (simulated by cancelling the token
//!    from a task; pressing Ctrl-C for real while an upload runs cancels it too, and skips the
//!    uploads after it);
//! 4. a slow, large upload runs out of its time budget.
//!
//! Run it with `cargo run --example file_upload`.
//!
//! The progress bars go to stderr: progress is a state, not a log, so how many intermediate
//! steps a bar draws depends on timing. The one-line summaries go to stdout and are the same
//! on every run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use orchestrator_core::{
    CancellationToken, Dispatch, Dispatcher, Executor, Job, JobContext, JobError, JobHandle,
    Progress, RetryPolicy, Success,
};
use orchestrator_tokio::TokioRuntime;

// ---------------------------------------------------------------------------------------------
// The job, its output and its errors.
// ---------------------------------------------------------------------------------------------

/// Job: upload file `name` of `size` bytes in `chunks` chunks.
#[derive(Debug, Clone)]
struct UploadFile {
    name: &'static str,
    size: u64,
    chunks: u32,
}

impl Job for UploadFile {
    type Output = Receipt;
}

/// What the server answers once it has the whole file.
#[derive(Debug, Clone)]
struct Receipt {
    bytes: u64,
    chunks: u32,
    /// The attempt that finished the upload (1-based).
    attempt: u32,
    /// The first chunk this attempt sent, if earlier attempts had sent some already.
    resumed_at: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum UploadError {
    /// The connection dropped while sending a chunk: worth another try.
    NetworkBlip { chunk: u32 },
    /// The file is over the server's limit: trying again cannot help.
    FileTooLarge { size: u64, limit: u64 },
    /// The account may not write this path: trying again cannot help.
    PermissionDenied { name: &'static str },
}

impl UploadError {
    /// Whether another attempt may succeed.
    fn is_transient(&self) -> bool {
        match self {
            UploadError::NetworkBlip { .. } => true,
            UploadError::FileTooLarge { .. } | UploadError::PermissionDenied { .. } => false,
        }
    }
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::NetworkBlip { chunk } => {
                write!(f, "connection reset while sending chunk {chunk}")
            }
            UploadError::FileTooLarge { size, limit } => {
                write!(f, "file too large: {} > {} limit", mb(*size), mb(*limit))
            }
            UploadError::PermissionDenied { name } => write!(f, "permission denied: {name}"),
        }
    }
}

impl std::error::Error for UploadError {}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

// ---------------------------------------------------------------------------------------------
// How: a simulated upload server.
// ---------------------------------------------------------------------------------------------

/// The server's side of the uploads, with scripted network trouble.
#[derive(Default)]
struct ServerState {
    /// Per file: how many chunks the server has (a retry resumes after them).
    received: HashMap<&'static str, u32>,
    /// Per file: the chunk whose sending fails once with a network blip.
    blips: HashMap<&'static str, u32>,
    /// Per file: the attempts made (1-based), for the summaries.
    attempts: HashMap<&'static str, u32>,
}

#[derive(Clone)]
struct UploadServer {
    state: Arc<Mutex<ServerState>>,
    /// The largest file accepted.
    limit: u64,
    /// Paths this account may not write.
    read_only: &'static [&'static str],
    /// Simulated time to send one chunk.
    chunk_latency: Duration,
}

impl UploadServer {
    /// Runs `f` on the server's state (never across an `.await`).
    fn with_state<T>(&self, f: impl FnOnce(&mut ServerState) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .expect("no executor panics with the lock held");
        f(&mut state)
    }

    /// Makes sending chunk `chunk` of `name` fail once.
    fn drop_connection_once(&self, name: &'static str, chunk: u32) {
        self.with_state(|s| s.blips.insert(name, chunk));
    }

    /// How many attempts uploading `name` took.
    ///
    /// A successful outcome carries the executor's output (here, [`Receipt::attempt`]) and a
    /// failure carries [`Failure::attempts`](orchestrator_core::Failure::attempts), but a
    /// cancelled or timed-out outcome says nothing about attempts: the server counts them.
    fn attempts(&self, name: &str) -> u32 {
        self.with_state(|s| s.attempts.get(name).copied().unwrap_or(0))
    }
}

impl Executor<UploadFile> for UploadServer {
    type Error = UploadError;

    async fn execute(&self, job: &UploadFile, cx: JobContext) -> Result<Receipt, UploadError> {
        let name = job.name;
        let resume_after = self.with_state(|s| {
            s.attempts.insert(name, cx.attempt());
            s.received.get(name).copied().unwrap_or(0)
        });
        if job.size > self.limit {
            return Err(UploadError::FileTooLarge {
                size: job.size,
                limit: self.limit,
            });
        }
        if self.read_only.contains(&name) {
            return Err(UploadError::PermissionDenied { name });
        }
        for chunk in resume_after + 1..=job.chunks {
            cx.sleep(self.chunk_latency).await; // sending the chunk
            let blip = self.with_state(|s| {
                if s.blips.get(name) == Some(&chunk) {
                    s.blips.remove(name);
                    return true;
                }
                s.received.insert(name, chunk);
                false
            });
            if blip {
                return Err(UploadError::NetworkBlip { chunk });
            }
            let done = f64::from(chunk) / f64::from(job.chunks);
            cx.report_progress(
                Progress::new(done)
                    .with_step(chunk, job.chunks)
                    .with_message(format!("{name}: chunk {chunk}/{}", job.chunks)),
            );
        }
        Ok(Receipt {
            bytes: job.size,
            chunks: job.chunks,
            attempt: cx.attempt(),
            resumed_at: (resume_after > 0).then_some(resume_after + 1),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The client side: dispatch, progress bar, Ctrl-C.
// ---------------------------------------------------------------------------------------------

/// How an upload ended.
type Outcome = Result<Success<Receipt>, JobError>;

/// The cancel reason when the user presses Ctrl-C.
const CTRL_C: &str = "Ctrl-C";

/// Retries transient errors only, up to 3 times, 20 ms apart.
fn retry_transient() -> RetryPolicy {
    RetryPolicy::fixed(3, Duration::from_millis(20)).retry_if(|err, _attempt| {
        err.downcast_ref::<UploadError>()
            .is_some_and(UploadError::is_transient)
    })
}

/// Starts uploading `file`, cancelled by `token` or when `budget` runs out.
fn start_upload<R>(
    dispatcher: &Dispatcher<R>,
    file: UploadFile,
    budget: Duration,
    token: &CancellationToken,
) -> JobHandle<Receipt> {
    dispatcher
        .job(file)
        .timeout(budget)
        .retry(retry_transient())
        .cancellation(token.clone())
        .dispatch()
}

/// Moves an indicatif bar to a report: `[##########>.........]  50% chunk 5/10`.
fn show(bar: &ProgressBar, progress: &Progress) {
    bar.set_position((progress.value() * 1000.0).round() as u64);
    if let Some((i, n)) = progress.step() {
        bar.set_message(format!("chunk {i}/{n}"));
    }
}

/// Waits for `handle` while drawing its progress bar; Ctrl-C cancels it through `token`.
async fn finish_upload(mut handle: JobHandle<Receipt>, token: &CancellationToken) -> Outcome {
    let mut progress = handle.progress();
    // An indicatif bar on stderr (drawn only on a terminal), moved by each report the stream
    // yields.
    let bar = ProgressBar::new(1000).with_style(
        ProgressStyle::with_template("    [{bar:20}] {percent:>3}% {msg}")
            .expect("a valid template")
            .progress_chars("#>."),
    );
    let drawing = tokio::spawn(async move {
        // The stream ends when the job does, after its last report.
        while let Some(report) = progress.next().await {
            show(&bar, &report);
        }
        bar.finish();
    });
    let outcome = tokio::select! {
        outcome = &mut handle => outcome,
        pressed = tokio::signal::ctrl_c() => {
            pressed.expect("the Ctrl-C handler can be installed");
            token.cancel_with(CTRL_C);
            // The job's work is dropped; the handle resolves as cancelled.
            (&mut handle).await
        }
    };
    drawing.await.expect("the progress bar task does not panic");
    outcome
}

/// One line for an upload's outcome.
fn summary(name: &str, outcome: &Outcome, attempts: u32) -> String {
    let what = match outcome {
        Ok(Success { value: receipt, .. }) => {
            let resumed = receipt
                .resumed_at
                .map_or(String::new(), |chunk| format!(", resumed at chunk {chunk}"));
            format!(
                "uploaded {} in {} chunks{resumed}",
                mb(receipt.bytes),
                receipt.chunks
            )
        }
        Err(JobError::Failed(failure)) => {
            let kind = match failure.downcast_ref::<UploadError>() {
                Some(e) if e.is_transient() => "transient, retries exhausted",
                Some(_) => "permanent, not retried",
                None => "unexpected",
            };
            format!("failed ({kind}): {}", failure.error())
        }
        Err(JobError::Cancelled { reason }) => {
            format!("cancelled: {}", reason.as_deref().unwrap_or("no reason"))
        }
        Err(JobError::TimedOut { budget }) => format!("timed out after {budget:?}"),
        Err(other) => format!("did not run: {other:#}"),
    };
    format!("{name:<12} {what}; attempts: {attempts}")
}

/// Prints an upload's summary; returns `None` if the user pressed Ctrl-C (the demo stops).
fn report(server: &UploadServer, name: &str, outcome: Outcome) -> Option<Outcome> {
    println!("   {}", summary(name, &outcome, server.attempts(name)));
    let pressed = matches!(&outcome, Err(JobError::Cancelled { reason: Some(r) }) if r == CTRL_C);
    if pressed {
        println!("interrupted: the remaining uploads are skipped");
        return None;
    }
    Some(outcome)
}

#[tokio::main]
async fn main() {
    let dispatcher = Dispatcher::new(TokioRuntime::default()); // the one runtime-specific line
    let server = UploadServer {
        state: Arc::default(),
        limit: 50_000_000,
        read_only: &["/etc/passwd"],
        chunk_latency: Duration::from_millis(4),
    };
    dispatcher.register(server.clone());
    let budget = Duration::from_secs(2);

    // 1. A transient error: the connection drops at chunk 4; the retry resumes there.
    println!("1. network blip at chunk 4 (retried: transient)");
    let file = UploadFile {
        name: "holiday.mp4",
        size: 12_000_000,
        chunks: 10,
    };
    server.drop_connection_once(file.name, 4);
    let token = CancellationToken::new();
    let name = file.name;
    let outcome = finish_upload(start_upload(&dispatcher, file, budget, &token), &token).await;
    let Some(outcome) = report(&server, name, outcome) else {
        return;
    };
    let receipt = outcome.expect("the blip is retried").value;
    assert_eq!((receipt.attempt, receipt.resumed_at), (2, Some(4)));

    // 2. A permanent error: the policy's predicate refuses to retry it.
    println!("2. file over the 50 MB limit (not retried: permanent)");
    let file = UploadFile {
        name: "backup.tar",
        size: 80_000_000,
        chunks: 16,
    };
    let token = CancellationToken::new();
    let name = file.name;
    let outcome = finish_upload(start_upload(&dispatcher, file, budget, &token), &token).await;
    let Some(outcome) = report(&server, name, outcome) else {
        return;
    };
    let failure = match &outcome {
        Err(JobError::Failed(failure)) => failure,
        other => panic!("a file over the limit fails the job, got {other:?}"),
    };
    assert_eq!(failure.attempts(), 1, "a permanent error is not retried");
    assert!(matches!(
        failure.downcast_ref::<UploadError>(),
        Some(UploadError::FileTooLarge { .. })
    ));

    // 3. Cancelled mid-way: a task plays the user, pressing "Ctrl-C" once progress passes
    //    50%, by cancelling the upload's token (the real Ctrl-C does the same).
    println!("3. Ctrl-C once the upload passes 50% (simulated)");
    let file = UploadFile {
        name: "dataset.csv",
        size: 30_000_000,
        chunks: 20,
    };
    let token = CancellationToken::new();
    let name = file.name;
    let handle = start_upload(&dispatcher, file, budget, &token);
    let mut progress = handle.progress();
    let user = token.clone();
    let presser = tokio::spawn(async move {
        while let Some(report) = progress.next().await {
            if report.value() > 0.5 {
                user.cancel_with("Ctrl-C (simulated)");
                return Some(report.value());
            }
        }
        None // the upload ended before half-way
    });
    let outcome = finish_upload(handle, &token).await;
    let Some(outcome) = report(&server, name, outcome) else {
        return;
    };
    let pressed_at = presser.await.expect("the simulated user does not panic");
    let pressed_at = pressed_at.expect("the upload passed 50% before it was cancelled");
    assert!(pressed_at > 0.5 && pressed_at < 1.0);
    assert!(outcome.as_ref().is_err_and(JobError::is_cancelled));

    // 4. Out of time: 40 chunks at 4 ms each do not fit in 60 ms.
    let tight = Duration::from_millis(60);
    println!("4. a large upload with a {tight:?} budget");
    let file = UploadFile {
        name: "video.mov",
        size: 48_000_000,
        chunks: 40,
    };
    let token = CancellationToken::new();
    let name = file.name;
    let outcome = finish_upload(start_upload(&dispatcher, file, tight, &token), &token).await;
    let Some(outcome) = report(&server, name, outcome) else {
        return;
    };
    assert!(outcome.as_ref().is_err_and(JobError::is_timed_out));
    assert_eq!(
        server.attempts(name),
        1,
        "the total budget is never retried"
    );
}
