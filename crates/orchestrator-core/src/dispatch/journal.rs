//! Journaled job types: [`Journal`], the hooks a durable store gives the dispatcher, and
//! [`Stored`], the future of a dispatch's write.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::string::String;
use core::error::Error;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use crate::id::JobId;
use crate::job::{Job, MetadataEntry};
use crate::outcome::{JobError, Success};
use crate::retry::RetryPolicy;
use crate::sync::Arc;

use super::context::JobContext;
use super::options::JobOptions;

/// A journal's write that failed: the message says why (the store's own error, a full disk,
/// a value that could not be encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalError {
    message: Cow<'static, str>,
    fatal: bool,
}

impl JournalError {
    /// An error that says `message`.
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            fatal: false,
        }
    }

    /// An error that ends the job: returned by [`Journal::attempt`], the job fails with it at
    /// once instead of running the attempt, whatever its retry policy (a job its journal has
    /// poisoned).
    pub fn fatal(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            fatal: true,
        }
    }

    /// Returns `true` for an error made by [`fatal`](Self::fatal).
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    /// Returns the message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for JournalError {}

/// A future a journal returns for a write: it resolves once the write is durable (or failed).
/// The write itself is requested when the hook is called, whether or not the future is polled.
pub type JournalFuture = Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send>>;

/// The proof of a dispatch's write, which a [`JobHandle::stored`](crate::JobHandle::stored)
/// future polls (as often as asked: every `Stored` of one job polls the same receipt).
pub trait Receipt: Send + Sync {
    /// Returns `Ready(Ok(()))` once the dispatch is durable, `Ready(Err(_))` if its write
    /// failed, and otherwise registers `cx`'s waker.
    fn poll_stored(&self, cx: &mut Context<'_>) -> Poll<Result<(), JournalError>>;
}

/// A receipt that is ready at once (the job was stored before: a recovered job).
#[derive(Debug, Clone)]
pub struct StoredAlready;

impl Receipt for StoredAlready {
    fn poll_stored(&self, _: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        Poll::Ready(Ok(()))
    }
}

/// What a journal learns about a dispatch it is asked to accept: the job's id and every option
/// it must keep to run the job again after a restart.
pub struct Accepting<'a, J: Job> {
    pub(crate) id: JobId,
    pub(crate) options: &'a JobOptions,
    pub(crate) metadata: &'a [MetadataEntry],
    pub(crate) placeholder: Option<&'a J::Output>,
    pub(crate) dedup: Option<&'a str>,
}

impl<J: Job> Accepting<'_, J> {
    /// Returns the job's id in this process.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// Returns the total time budget, if the dispatch set one.
    pub fn timeout(&self) -> Option<Duration> {
        self.options.timeout()
    }

    /// Returns the per-attempt limit, if the dispatch set one.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.options.attempt_timeout()
    }

    /// Returns the retry policy, if the dispatch set one.
    pub fn retry(&self) -> Option<&RetryPolicy> {
        self.options.retry()
    }

    /// Returns how long after its dispatch the job is due, if it was delayed.
    pub fn delay(&self) -> Option<Duration> {
        self.options.delay()
    }

    /// Returns the number of the job's first attempt here (more than 1 for a job resumed
    /// after a restart).
    pub fn first_attempt(&self) -> u32 {
        self.options.first_attempt()
    }

    /// Returns the dispatch's metadata entries.
    pub fn metadata(&self) -> &[MetadataEntry] {
        self.metadata
    }

    /// Returns the value of metadata entry `key`, if the dispatch set one.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|entry| entry.0 == key)
            .map(|entry| &*entry.1)
    }

    /// Returns the placeholder value, if the dispatch has one.
    pub fn placeholder(&self) -> Option<&J::Output> {
        self.placeholder
    }

    /// Returns the dedup key, if the dispatch has one
    /// ([`JobBuilder::dedup`](crate::JobBuilder::dedup)): a journal keeps it, so that the job
    /// run again after a restart still leads the dispatches with that key.
    pub fn dedup_key(&self) -> Option<&str> {
        self.dedup
    }
}

impl<J: Job> fmt::Debug for Accepting<'_, J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accepting")
            .field("id", &self.id)
            .field("options", &self.options)
            .field("metadata", &self.metadata)
            .field("placeholder", &self.placeholder.is_some())
            .field("dedup", &self.dedup)
            .finish()
    }
}

/// How a journaled job ended, as its journal is told.
#[derive(Debug)]
pub enum Ending<'a, T> {
    /// The job reached its outcome (the handle resolves with it once the journal's write is
    /// durable).
    Outcome(&'a Result<Success<T>, JobError>),
    /// The job was cancelled because its dispatcher shut down (or its task was dropped): it
    /// has no outcome and runs again when its journal recovers it.
    Interrupted,
}

/// The hooks that make a job type durable: a store told of each dispatch before its handle is
/// returned, of each attempt before it runs, and of the job's end before its handle resolves.
///
/// Registered with [`Dispatcher::register_journaled`](crate::Dispatcher::register_journaled).
/// Each hook requests its write when called; the futures returned wait for it to be durable,
/// and the job waits for them: an attempt runs only once its start is recorded, and the handle
/// resolves only once the outcome is. A store batches the writes of concurrent jobs (group
/// commit).
///
/// The `orchestrator-durable` crate implements it on any store; a test can implement it on a
/// vector.
pub trait Journal<J: Job>: Send + Sync + 'static {
    /// A dispatch of `job` is being accepted. `Ok` gives the receipt of its write (which
    /// [`JobHandle::stored`](crate::JobHandle::stored) awaits); `Err` rejects the dispatch
    /// ([`Rejection::NotStored`](crate::Rejection::NotStored)).
    fn accept(
        &self,
        job: &J,
        dispatch: &Accepting<'_, J>,
    ) -> Result<Arc<dyn Receipt>, JournalError>;

    /// Attempt `attempt` of job `id` is about to run; it runs once the future resolves (a
    /// journal may hold it back: a network-bound job waits for the network). An error fails
    /// the attempt (the retry policy decides what follows); a [fatal](JournalError::fatal)
    /// one ends the job as failed with it.
    fn attempt(&self, id: JobId, attempt: u32) -> JournalFuture;

    /// Attempt `attempt` of job `id` failed with `error` and will be retried; the backoff
    /// starts once the future resolves (so that a crash after it never runs the failed
    /// attempt again). An error is ignored: the retry goes ahead.
    fn retrying(&self, id: JobId, attempt: u32, error: &(dyn Error + 'static)) -> JournalFuture;

    /// Job `id` ended; its handle resolves once the future does. `cx` publishes on the job's
    /// bus (before its terminal event).
    fn finish(&self, id: JobId, ending: Ending<'_, J::Output>, cx: &JobContext) -> JournalFuture;
}

/// The future of [`JobHandle::stored`](crate::JobHandle::stored): resolves once the dispatch is
/// durable.
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct Stored {
    pub(crate) receipt: Option<Arc<dyn Receipt>>,
    pub(crate) job_type: &'static str,
}

impl Future for Stored {
    type Output = Result<(), JournalError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &self.receipt {
            Some(receipt) => receipt.poll_stored(cx),
            None => Poll::Ready(Err(JournalError::new(alloc::format!(
                "this dispatch of `{}` was not stored: its type has no journal, or it was \
                 rejected, answered from the cache, or joined another dispatch",
                self.job_type
            )))),
        }
    }
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("journaled", &self.receipt.is_some())
            .finish()
    }
}

/// The reason of a [`Rejection::NotStored`](crate::Rejection::NotStored).
pub(crate) fn not_stored(error: &JournalError) -> String {
    String::from(error.message())
}
