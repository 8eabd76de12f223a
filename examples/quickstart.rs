//! The quickstart: jobs, executors, a dispatcher and handles, on the facade crate's default
//! runtime (tokio).
//!
//! Run it with `cargo run --example quickstart`. In a crate of your own the same file runs on
//! smol or async-std when the `orchestrator-rs` dependency picks that feature instead
//! (`default-features = false, features = ["smol"]`): nothing in it names a runtime.

use std::time::Duration;

use futures::StreamExt;
use orchestrator::{
    CancellationToken, DataSource, DefaultRuntime, Dispatch, Dispatcher, Executor, Job, JobContext,
    JobError, Progress, RetryPolicy,
};

/// What to do: fetch a user's profile.
struct FetchProfile {
    user_id: u64,
}

impl Job for FetchProfile {
    type Output = String;
}

#[derive(Debug)]
struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("profile service unavailable")
    }
}

impl std::error::Error for Unavailable {}

/// How to do it: a flaky service that fails on its first attempt.
struct ProfileService;

impl Executor<FetchProfile> for ProfileService {
    type Error = Unavailable;

    async fn execute(&self, job: &FetchProfile, cx: JobContext) -> Result<String, Unavailable> {
        for step in 1..=4 {
            cx.sleep(Duration::from_millis(20)).await; // runtime-agnostic sleep
            cx.report_progress(Progress::new(f64::from(step) / 4.0).with_step(step, 4));
        }
        if cx.attempt() == 1 {
            return Err(Unavailable); // retried by the policy below
        }
        Ok(format!("user #{} (attempt {})", job.user_id, cx.attempt()))
    }
}

/// A job nobody registered an executor for.
struct Orphan;

impl Job for Orphan {
    type Output = ();
}

fn main() {
    orchestrator::block_on(run());
}

async fn run() {
    let dispatcher = Dispatcher::new(DefaultRuntime::default());
    dispatcher.register(ProfileService);

    // 1. Dispatch with a total timeout and a retry policy; watch progress; await the value.
    let handle = dispatcher
        .job(FetchProfile { user_id: 7 })
        .timeout(Duration::from_secs(5))
        .retry(RetryPolicy::exponential(3, Duration::from_millis(50)))
        .dispatch();
    let mut progress = handle.progress();
    // The progress stream ends with the job: both finish.
    let watch = async move {
        while let Some(p) = progress.next().await {
            let step = p
                .step()
                .map(|(n, of)| format!(" (step {n} of {of})"))
                .unwrap_or_default();
            println!("  progress {:>3.0}%{step}", p.value() * 100.0);
        }
    };
    let (profile, ()) = futures::join!(handle, watch);
    let profile = profile.expect("the second attempt succeeds");
    let source = match profile.data_source {
        DataSource::Cached => "from the cache",
        _ => "fresh",
    };
    println!("fetched {} ({source})", profile.value);

    // 2. Cancel a running job with a shared token: its work is dropped at once.
    let token = CancellationToken::new();
    let handle = dispatcher
        .job(FetchProfile { user_id: 8 })
        .cancellation(token.clone())
        .dispatch();
    token.cancel_with("user navigated away");
    match handle.await {
        Err(JobError::Cancelled { reason }) => {
            println!(
                "cancelled: {}",
                reason.as_deref().unwrap_or("no reason given")
            );
        }
        Err(other) => println!("unexpected: {other:#}"),
        Ok(success) => println!("unexpected: it finished with {}", success.value),
    }

    // 3. Bad input is an error value, never a panic.
    let err = dispatcher.dispatch(Orphan).await.unwrap_err();
    println!("rejected: {err:#}");
}
