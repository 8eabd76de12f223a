//! [`DurableError`].

use std::fmt;

use orchestrator_core::JournalError;
use orchestrator_remote::WireJobId;
use orchestrator_store::StoreError;

/// What went wrong with durable jobs. Nothing stored is dropped because of one.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DurableError {
    /// The store failed (locked by another process, newer format, damaged file, full disk).
    Store(StoreError),
    /// A write failed.
    Write(JournalError),
    /// A job type was made durable without a wire name in the registry.
    Unregistered(&'static str),
    /// A stored record could not be read (the store is damaged, or a newer version wrote it).
    Damaged(String),
    /// A stored job no longer decodes as its type (it was moved to the dead-letter list).
    Codec(String),
    /// The job is not on the dead-letter list.
    NotDead(WireJobId),
    /// The job's type is not durable in this process.
    UnknownType(String),
    /// The dispatcher or orchestrator refused the recovered job before it could run (closed,
    /// disposed); it stays stored and runs at the next start.
    NotDispatched(WireJobId),
}

impl fmt::Display for DurableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurableError::Store(e) => write!(f, "{e}"),
            DurableError::Write(e) => write!(f, "a write failed: {e}"),
            DurableError::Unregistered(ty) => write!(
                f,
                "job type `{ty}` has no wire name: register it in the registry first \
                 (`Registry::register_job`)"
            ),
            DurableError::Damaged(what) => write!(f, "a stored record cannot be read: {what}"),
            DurableError::Codec(what) => write!(f, "{what}"),
            DurableError::NotDead(id) => write!(f, "job {id} is not on the dead-letter list"),
            DurableError::UnknownType(name) => {
                write!(f, "job type `{name}` is not durable in this process")
            }
            DurableError::NotDispatched(id) => write!(
                f,
                "recovered job {id} was refused by its dispatcher (closed or disposed); it \
                 stays stored"
            ),
        }
    }
}

/// Each message says all it knows: `source()` is `None`, so a report prints it once.
impl std::error::Error for DurableError {}

impl From<StoreError> for DurableError {
    fn from(e: StoreError) -> Self {
        DurableError::Store(e)
    }
}
