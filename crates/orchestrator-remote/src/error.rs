//! Errors on the wire ([`WireError`]) and of the codec ([`CodecError`], [`RegistryError`]).

use core::fmt;
use std::error::Error;

use serde::{Deserialize, Serialize};

/// An executor's error as it crosses the wire: its message (with its sources) and whether the
/// dispatching side may retry the job.
///
/// An executor's own error type is not serializable in general; its text is. The dispatching
/// process gets a `WireError` as the failure's error
/// ([`Failure::downcast_ref`](orchestrator_core::Failure::downcast_ref)), so a retry policy can
/// ask [`is_retryable`](Self::is_retryable).
///
/// ```
/// use orchestrator_remote::WireError;
///
/// #[derive(Debug)]
/// struct Timeout;
/// impl std::fmt::Display for Timeout {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("upstream timed out")
///     }
/// }
/// impl std::error::Error for Timeout {}
///
/// let wire = WireError::from_error(&Timeout, true);
/// assert_eq!(wire.to_string(), "upstream timed out");
/// assert!(wire.is_retryable());
/// let json = serde_json::to_string(&wire).unwrap();
/// assert_eq!(json, r#"{"message":"upstream timed out","retryable":true}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    message: String,
    retryable: bool,
}

impl WireError {
    /// An error with this message.
    pub fn new(message: impl Into<String>, retryable: bool) -> Self {
        Self {
            message: message.into(),
            retryable,
        }
    }

    /// The error's message followed by each of its sources' (`a: b: c`), skipping a source
    /// whose message its parent already ends with.
    pub fn from_error(error: &(dyn Error + 'static), retryable: bool) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.ends_with(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        Self { message, retryable }
    }

    /// Returns the message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Returns `true` if the dispatching side may retry the job.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for WireError {}

/// Why a value could not be put on or taken off the wire.
#[derive(Debug)]
#[non_exhaustive]
pub enum CodecError {
    /// No job type or event payload is registered under this wire name.
    UnknownName(String),
    /// The Rust type has no wire name in this registry.
    Unregistered(&'static str),
    /// The wire name belongs to another Rust type than the one asked for.
    WrongType {
        /// The wire name.
        name: String,
        /// The type asked for.
        expected: &'static str,
    },
    /// serde could not encode or decode the value.
    Serde(serde_json::Error),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::UnknownName(name) => write!(f, "nothing is registered as `{name}`"),
            CodecError::Unregistered(ty) => write!(f, "`{ty}` has no wire name"),
            CodecError::WrongType { name, expected } => {
                write!(f, "`{name}` is not the wire name of `{expected}`")
            }
            CodecError::Serde(e) => write!(f, "serde: {e}"),
        }
    }
}

/// Its message says all it knows (a serde error's text included), so `source()` is `None`: a
/// report that walks the chain prints each message once.
impl Error for CodecError {}

impl From<serde_json::Error> for CodecError {
    fn from(e: serde_json::Error) -> Self {
        CodecError::Serde(e)
    }
}

/// Why a registration was refused: wire names and types map one to one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// The wire name is already used by another type.
    NameTaken {
        /// The wire name.
        name: String,
        /// The type registered under it.
        by: &'static str,
    },
    /// The type is already registered under another name.
    AlreadyRegistered {
        /// The type.
        ty: &'static str,
        /// Its wire name.
        as_name: String,
    },
    /// The wire name is empty.
    EmptyName,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::NameTaken { name, by } => {
                write!(f, "the wire name `{name}` is already `{by}`'s")
            }
            RegistryError::AlreadyRegistered { ty, as_name } => {
                write!(f, "`{ty}` is already registered as `{as_name}`")
            }
            RegistryError::EmptyName => f.write_str("a wire name cannot be empty"),
        }
    }
}

impl Error for RegistryError {}
