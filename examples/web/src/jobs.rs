//! The page's jobs and their executors: plain Rust that sleeps on the dispatcher's runtime and
//! reports progress: `Send` executors, so they run on any runtime (the host's tests run them
//! on the virtual clock).

use core::fmt;
use core::time::Duration;

use orchestrator_core::{Executor, Job, JobContext, Progress};

/// Multiplies `a` by `b` in `steps` steps of `step` each, reporting progress after each step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multiply {
    /// The left factor.
    pub a: u64,
    /// The right factor.
    pub b: u64,
    /// How many progress steps the work takes (at least one is made).
    pub steps: u32,
    /// How long each step sleeps.
    pub step: Duration,
}

impl Job for Multiply {
    type Output = u64;
}

/// The error of a [`Multiply`] whose product does not fit in a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the product does not fit in 64 bits")
    }
}

impl core::error::Error for Overflow {}

/// Runs [`Multiply`] jobs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Multiplier;

impl Executor<Multiply> for Multiplier {
    type Error = Overflow;

    async fn execute(&self, job: &Multiply, cx: JobContext) -> Result<u64, Overflow> {
        let steps = job.steps.max(1);
        for i in 1..=steps {
            cx.sleep(job.step).await;
            cx.report_progress(
                Progress::new(f64::from(i) / f64::from(steps))
                    .with_step(i, steps)
                    .with_message(if i == steps { "done" } else { "multiplying" }),
            );
        }
        job.a.checked_mul(job.b).ok_or(Overflow)
    }
}

/// Uploads `chunks` chunks taking `chunk_time` each; the server rejects chunk `reject_at`, if
/// set, on every attempt. The output is the number of chunks sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// How many chunks to send (at least one is sent).
    pub chunks: u32,
    /// The chunk the server rejects, if any (1-based).
    pub reject_at: Option<u32>,
    /// How long sending one chunk takes.
    pub chunk_time: Duration,
}

impl Job for Upload {
    type Output = u32;
}

/// The error of an [`Upload`] whose chunk the server rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRejected {
    /// The rejected chunk (1-based).
    pub chunk: u32,
    /// The number of chunks of the upload.
    pub of: u32,
}

impl fmt::Display for ChunkRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chunk {} of {} rejected by the server",
            self.chunk, self.of
        )
    }
}

impl core::error::Error for ChunkRejected {}

/// Runs [`Upload`] jobs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Uploader;

impl Executor<Upload> for Uploader {
    type Error = ChunkRejected;

    async fn execute(&self, job: &Upload, cx: JobContext) -> Result<u32, ChunkRejected> {
        let chunks = job.chunks.max(1);
        let attempt = cx.attempt();
        for chunk in 1..=chunks {
            cx.sleep(job.chunk_time).await;
            if job.reject_at == Some(chunk) {
                return Err(ChunkRejected { chunk, of: chunks });
            }
            let message = if attempt == 1 {
                "uploading".into()
            } else {
                format!("uploading, attempt {attempt}")
            };
            cx.report_progress(
                Progress::new(f64::from(chunk) / f64::from(chunks))
                    .with_step(chunk, chunks)
                    .with_message(message),
            );
        }
        Ok(chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_went_wrong() {
        assert_eq!(
            ChunkRejected { chunk: 3, of: 5 }.to_string(),
            "chunk 3 of 5 rejected by the server"
        );
        assert_eq!(Overflow.to_string(), "the product does not fit in 64 bits");
    }
}
