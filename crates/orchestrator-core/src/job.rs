//! Jobs: typed descriptions of work, and their types.

use alloc::borrow::Cow;
use core::any::TypeId;

/// A typed description of *what* to do.
///
/// A job is a plain value; the [`Executor`](crate::Executor) registered for its type on a
/// [`Dispatcher`](crate::Dispatcher) decides *how*. Each dispatch of a job gets its own
/// [`JobId`](crate::JobId).
///
/// A job is borrowed by its executor (`&J`) so that it can be retried; it must therefore be
/// `Sync` as well as `Send`.
///
/// ```
/// use orchestrator_core::Job;
///
/// struct FetchUser {
///     user_id: u64,
/// }
///
/// impl Job for FetchUser {
///     type Output = String;
/// }
/// # let _ = FetchUser { user_id: 1 }.user_id;
/// ```
pub trait Job: Send + Sync + 'static {
    /// The value a successful run produces.
    type Output: Send + 'static;

    /// Makes the domain event this job publishes when it succeeds, if any (none by default).
    ///
    /// Whatever executor runs the job and however it is dispatched, a successful job whose
    /// `output_event` returns `Some(payload)` publishes `payload` on its bus before its handle
    /// resolves (and before its terminal lifecycle event), with the job's id as correlation id
    /// and the output's [`DataSource`](crate::DataSource) in the envelope. A cache hit
    /// publishes it too (as [`DataSource::Cached`](crate::DataSource::Cached)), and a
    /// placeholder ([`JobBuilder::placeholder`](crate::JobBuilder::placeholder)) is published
    /// through it as [`DataSource::Optimistic`](crate::DataSource::Optimistic).
    ///
    /// ```
    /// use orchestrator_core::Job;
    ///
    /// struct LoadCart;
    /// struct CartLoaded {
    ///     items: Vec<String>,
    /// }
    ///
    /// impl Job for LoadCart {
    ///     type Output = Vec<String>;
    ///     fn output_event(&self, items: &Vec<String>) -> Option<impl Send + Sync + 'static> {
    ///         Some(CartLoaded { items: items.clone() })
    ///     }
    /// }
    /// assert!(LoadCart.output_event(&vec!["tea".to_string()]).is_some());
    /// # let _ = CartLoaded { items: vec![] }.items;
    /// ```
    fn output_event(&self, output: &Self::Output) -> Option<impl Send + Sync + 'static> {
        let _ = output;
        None::<()>
    }
}

/// One metadata entry of a dispatch: a key and a value.
pub type MetadataEntry = (Cow<'static, str>, Cow<'static, str>);

/// A job type, by `TypeId` and name (the type of the job that emitted an event, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobType {
    id: TypeId,
    name: &'static str,
}

impl JobType {
    /// The job type `J`.
    pub fn of<J: Job>() -> Self {
        Self {
            id: TypeId::of::<J>(),
            name: core::any::type_name::<J>(),
        }
    }

    /// Returns `true` if this is `J`.
    pub fn is<J: Job>(&self) -> bool {
        self.id == TypeId::of::<J>()
    }

    /// Returns the type's name, from `core::any::type_name`.
    pub fn name(&self) -> &'static str {
        self.name
    }
}
