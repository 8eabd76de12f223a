//! Error reports: along the `source()` chain of a job's error each message appears once, so a
//! reporter that prints the error and its sources never repeats the executor's text.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use orchestrator_core::runtime::{Instant, Sleep, Spawn, SpawnError, SpawnErrorKind, Task, Timer};
use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext, JobError, RetryPolicy};

#[derive(Debug)]
struct DiskUnreachable;

impl fmt::Display for DiskUnreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("disk unreachable")
    }
}

impl Error for DiskUnreachable {}

#[derive(Debug)]
struct UploadError {
    cause: DiskUnreachable,
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upload of chunk 3 failed")
    }
}

impl Error for UploadError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.cause)
    }
}

struct Upload;
impl Job for Upload {
    type Output = ();
}

struct Uploader;
impl Executor<Upload> for Uploader {
    type Error = UploadError;
    async fn execute(&self, _job: &Upload, _cx: JobContext) -> Result<(), UploadError> {
        Err(UploadError {
            cause: DiskUnreachable,
        })
    }
}

/// The messages of `error` and of each of its sources, outermost first.
fn chain(error: &(dyn Error + 'static)) -> Vec<String> {
    let mut messages = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        messages.push(error.to_string());
        next = error.source();
    }
    messages
}

/// Asserts that no message of the chain repeats the text of one further down.
fn assert_each_message_once(messages: &[String]) {
    for (index, outer) in messages.iter().enumerate() {
        for inner in &messages[index + 1..] {
            assert!(
                !outer.contains(inner.as_str()),
                "`{outer}` repeats its source `{inner}` (chain: {messages:?})"
            );
        }
    }
}

fn failed_upload(retries: u32) -> JobError {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(Uploader);
    let handle = dispatcher
        .job(Upload)
        .retry(RetryPolicy::fixed(retries, Duration::from_secs(1)))
        .dispatch();
    rt.block_on(handle).unwrap_err()
}

#[test]
fn a_failed_jobs_error_chain_prints_each_message_once() {
    let error = failed_upload(2);
    let messages = chain(&error);
    assert_each_message_once(&messages);
    assert_eq!(
        messages,
        [
            "job failed after 3 attempts",
            "upload of chunk 3 failed",
            "disk unreachable"
        ]
    );
    let source = error.source().and_then(|s| s.downcast_ref::<UploadError>());
    assert!(source.is_some(), "the first source is the executor's error");
}

#[test]
fn a_failure_is_an_error_whose_source_is_the_executors() {
    let error = failed_upload(0);
    let failure = error.failure().unwrap();
    assert_eq!(failure.to_string(), "job failed after 1 attempt");
    assert_eq!(error.to_string(), failure.to_string());
    let messages = chain(failure);
    assert_each_message_once(&messages);
    assert_eq!(
        messages,
        [
            "job failed after 1 attempt",
            "upload of chunk 3 failed",
            "disk unreachable"
        ]
    );
    assert!(failure.downcast_ref::<UploadError>().is_some());
}

/// A runtime that refuses every task.
struct Refusing(VirtualRuntime);

impl Spawn for Refusing {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        Err(SpawnError::new(SpawnErrorKind::Full, task))
    }
}

impl Timer for Refusing {
    fn sleep(&self, duration: Duration) -> Sleep {
        self.0.sleep(duration)
    }

    fn now(&self) -> Instant {
        self.0.now()
    }
}

#[test]
fn a_spawn_rejection_names_the_runtime_reason_once() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(Refusing(rt.clone()));
    dispatcher.register(Uploader);
    let error = rt.block_on(dispatcher.dispatch(Upload)).unwrap_err();
    assert!(error.is_rejected());
    let messages = chain(&error);
    assert_each_message_once(&messages);
    let reason = SpawnErrorKind::Full.to_string();
    assert_eq!(
        messages.iter().filter(|m| m.contains(&reason)).count(),
        1,
        "{messages:?}"
    );
}

#[test]
fn the_alternate_form_prints_the_whole_chain_on_one_line() {
    use core::fmt;
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("upload failed")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    struct Upload;
    impl orchestrator_core::Job for Upload {
        type Output = ();
    }
    struct Uploader;
    impl orchestrator_core::Executor<Upload> for Uploader {
        type Error = Outer;
        async fn execute(&self, _: &Upload, _: orchestrator_core::JobContext) -> Result<(), Outer> {
            Err(Outer(std::io::Error::other("connection reset")))
        }
    }
    let rt = orchestrator_core::testing::VirtualRuntime::new();
    let dispatcher = orchestrator_core::Dispatcher::new(rt.clone());
    dispatcher.register(Uploader);
    let error = rt
        .block_on(orchestrator_core::Dispatch::dispatch(&dispatcher, Upload))
        .unwrap_err();
    assert_eq!(error.to_string(), "job failed after 1 attempt");
    assert_eq!(
        format!("{error:#}"),
        "job failed after 1 attempt: upload failed: connection reset"
    );
    let failure = error.failure().unwrap();
    assert_eq!(
        format!("{failure:#}"),
        "job failed after 1 attempt: upload failed: connection reset"
    );
    // The other variants say everything in either form.
    let timed_out = orchestrator_core::JobError::TimedOut {
        budget: core::time::Duration::from_secs(1),
    };
    assert_eq!(format!("{timed_out:#}"), timed_out.to_string());
}
