//! Results and UI-facing async state: [`JobResult`] and [`AsyncState`].
//!
//! ## `JobResult`: a handle's outcome as one value
//!
//! A [`JobHandle`](crate::JobHandle) resolves to `Result<Success<T>, JobError>`, which keeps
//! `?` working. [`JobResult`] is the same outcome flattened into the four cases a caller
//! usually branches on: success (with its [`DataSource`]), failure (the executor failed, or the
//! job was rejected before it ran), cancelled (with the optional reason) and timed out (with
//! the budget). The conversion loses nothing: [`JobResult::into_result`] gives the original
//! outcome back.
//!
//! ```
//! use orchestrator_core::state::JobResult;
//! # use orchestrator_core::testing::VirtualRuntime;
//! # use orchestrator_core::{DataSource, Dispatcher, Executor, Job, JobContext};
//! # struct Ping;
//! # impl Job for Ping { type Output = u8; }
//! # struct Pong;
//! # impl Executor<Ping> for Pong {
//! #     type Error = core::convert::Infallible;
//! #     async fn execute(&self, _: &Ping, _: JobContext) -> Result<u8, Self::Error> { Ok(7) }
//! # }
//! # let rt = VirtualRuntime::new();
//! # let dispatcher = Dispatcher::new(rt.clone());
//! # dispatcher.register(Pong);
//! let handle = dispatcher.dispatch(Ping);
//! let result = rt.block_on(async { JobResult::from(handle.await) });
//! assert_eq!(result.data(), Some(&7));
//! assert_eq!(result.source(), Some(DataSource::Fresh));
//! ```
//!
//! ## `AsyncState`: data that survives transitions
//!
//! [`AsyncState<T, E>`] is the state of one piece of asynchronously loaded data, as a screen
//! shows it. Its transitions take `&mut self`, so they fit
//! [`OrchestratorContext::update`](crate::orchestrator::OrchestratorContext::update), and they
//! follow one contract: **transitions keep data on failure and clear the error on loading and
//! success.** In full (`-` is "no data"):
//!
//! | from ╲ call        | [`set_loading`]     | [`set_success(d)`]  | [`set_failure(e)`]    | [`set_refreshing`]  |
//! |--------------------|---------------------|---------------------|-----------------------|---------------------|
//! | `Initial`          | `Loading { - }`     | `Success { d }`     | `Failure { e, - }`    | `Loading { - }`     |
//! | `Loading { x }`    | `Loading { x }`     | `Success { d }`     | `Failure { e, x }`    | `Refreshing { x }`¹ |
//! | `Success { x }`    | `Loading { x }`     | `Success { d }`     | `Failure { e, x }`    | `Refreshing { x }`  |
//! | `Failure { _, x }` | `Loading { x }`     | `Success { d }`     | `Failure { e, x }`    | `Refreshing { x }`¹ |
//! | `Refreshing { x }` | `Loading { x }`     | `Success { d }`     | `Failure { e, x }`    | `Refreshing { x }`  |
//!
//! ¹ `Refreshing` always holds data; without data, `set_refreshing` gives `Loading { - }`.
//!
//! [`set_loading`]: AsyncState::set_loading
//! [`set_success(d)`]: AsyncState::set_success
//! [`set_failure(e)`]: AsyncState::set_failure
//! [`set_refreshing`]: AsyncState::set_refreshing

use alloc::borrow::Cow;
use core::time::Duration;

use crate::outcome::{DataSource, JobError, Success};

/// The outcome of a job as one of four cases: success, failure, cancelled or timed out.
///
/// Made from a handle's outcome with [`From`] (`JobResult::from(handle.await)`) or
/// [`JobResult::from_outcome`]. A rejected job ([`JobError::Rejected`]: no executor, or the
/// dispatcher was shut down) counts as a failure, like an executor's error; both keep their
/// [`JobError`], so nothing is lost and [`into_result`](Self::into_result) restores the
/// outcome.
///
/// ```
/// use orchestrator_core::state::JobResult;
/// use orchestrator_core::{DataSource, JobError, Success};
/// use core::time::Duration;
///
/// let ok = JobResult::from(Ok::<_, JobError>(Success { value: 1, source: DataSource::Cached }));
/// assert!(ok.is_success());
/// assert_eq!(ok.source(), Some(DataSource::Cached));
///
/// let late: JobResult<u32> = Err(JobError::TimedOut { budget: Duration::from_secs(2) }).into();
/// assert!(late.is_timed_out());
/// assert!(late.data().is_none());
/// ```
#[derive(Debug, Clone)]
#[must_use = "a job result may be a failure, which should be handled"]
pub enum JobResult<T> {
    /// The job produced a value.
    Success {
        /// The value.
        value: T,
        /// Where the value came from.
        source: DataSource,
    },
    /// The executor failed ([`JobError::Failed`]) or the job was rejected before it ran
    /// ([`JobError::Rejected`]).
    Failure(JobError),
    /// The job was cancelled before it finished.
    Cancelled {
        /// The reason given to the cancel call, if any.
        reason: Option<Cow<'static, str>>,
    },
    /// The job's total time budget ran out.
    TimedOut {
        /// The budget that expired.
        budget: Duration,
    },
}

impl<T> JobResult<T> {
    /// Converts a handle's outcome; the same as `JobResult::from(outcome)`.
    ///
    /// ```
    /// use orchestrator_core::state::JobResult;
    /// use orchestrator_core::JobError;
    ///
    /// let outcome: Result<orchestrator_core::Success<()>, JobError> =
    ///     Err(JobError::Cancelled { reason: Some("user left".into()) });
    /// match JobResult::from_outcome(outcome) {
    ///     JobResult::Cancelled { reason } => assert_eq!(reason.as_deref(), Some("user left")),
    ///     other => panic!("expected cancelled, got {other:?}"),
    /// }
    /// ```
    pub fn from_outcome(outcome: Result<Success<T>, JobError>) -> Self {
        match outcome {
            Ok(Success { value, source }) => JobResult::Success { value, source },
            Err(error) => Self::from_error(error),
        }
    }

    fn from_error(error: JobError) -> Self {
        match error {
            JobError::Cancelled { reason } => JobResult::Cancelled { reason },
            JobError::TimedOut { budget } => JobResult::TimedOut { budget },
            error @ (JobError::Failed(_) | JobError::Rejected(_)) => JobResult::Failure(error),
        }
    }

    /// Converts back into the handle's outcome, `Result<Success<T>, JobError>`.
    ///
    /// ```
    /// use orchestrator_core::state::JobResult;
    /// use orchestrator_core::{DataSource, JobError};
    ///
    /// let result: JobResult<u8> = JobResult::Cancelled { reason: None };
    /// let outcome = result.into_result();
    /// assert!(matches!(outcome, Err(JobError::Cancelled { reason: None })));
    ///
    /// let result = JobResult::Success { value: 3, source: DataSource::Fresh };
    /// assert_eq!(result.into_result().unwrap().value, 3);
    /// ```
    ///
    /// # Errors
    ///
    /// Every case but [`Success`](JobResult::Success) becomes the [`JobError`] it came from.
    pub fn into_result(self) -> Result<Success<T>, JobError> {
        match self {
            JobResult::Success { value, source } => Ok(Success { value, source }),
            JobResult::Failure(error) => Err(error),
            JobResult::Cancelled { reason } => Err(JobError::Cancelled { reason }),
            JobResult::TimedOut { budget } => Err(JobError::TimedOut { budget }),
        }
    }

    /// Returns `true` if the job produced a value.
    ///
    /// ```
    /// use orchestrator_core::state::JobResult;
    /// use orchestrator_core::DataSource;
    ///
    /// assert!(JobResult::Success { value: (), source: DataSource::Fresh }.is_success());
    /// assert!(!JobResult::<()>::Cancelled { reason: None }.is_success());
    /// ```
    pub fn is_success(&self) -> bool {
        matches!(self, JobResult::Success { .. })
    }

    /// Returns `true` if the executor failed or the job was rejected.
    ///
    /// ```
    /// use orchestrator_core::state::JobResult;
    /// use core::time::Duration;
    ///
    /// let late = JobResult::<()>::TimedOut { budget: Duration::from_secs(1) };
    /// assert!(!late.is_failure()); // a timeout is its own case
    /// ```
    pub fn is_failure(&self) -> bool {
        matches!(self, JobResult::Failure(_))
    }

    /// Returns `true` if the job was cancelled.
    ///
    /// ```
    /// use orchestrator_core::state::JobResult;
    ///
    /// assert!(JobResult::<()>::Cancelled { reason: None }.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JobResult::Cancelled { .. })
    }

    /// Returns `true` if the job's time budget ran out.
    ///
    /// ```
    /// use orchestrator_core::state::JobResult;
    /// use core::time::Duration;
    ///
    /// assert!(JobResult::<()>::TimedOut { budget: Duration::from_secs(1) }.is_timed_out());
    /// ```
    pub fn is_timed_out(&self) -> bool {
        matches!(self, JobResult::TimedOut { .. })
    }

    /// Returns the value, if the job succeeded.
    ///
    /// ```
    /// use orchestrator_core::state::JobResult;
    /// use orchestrator_core::DataSource;
    ///
    /// let result = JobResult::Success { value: "alice", source: DataSource::Fresh };
    /// assert_eq!(result.data(), Some(&"alice"));
    /// ```
    pub fn data(&self) -> Option<&T> {
        match self {
            JobResult::Success { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Returns the value, if the job succeeded, dropping the rest.
    ///
    /// ```
    /// use orchestrator_core::state::JobResult;
    /// use orchestrator_core::DataSource;
    ///
    /// let result = JobResult::Success { value: vec![1, 2], source: DataSource::Cached };
    /// assert_eq!(result.into_data(), Some(vec![1, 2]));
    /// ```
    pub fn into_data(self) -> Option<T> {
        match self {
            JobResult::Success { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Returns the error of a [`Failure`](JobResult::Failure) (failed or rejected).
    ///
    /// Cancelled and timed-out results carry their reason or budget instead; use
    /// [`into_result`](Self::into_result) to get every non-success case as a [`JobError`].
    ///
    /// ```
    /// use orchestrator_core::state::JobResult;
    /// use orchestrator_core::JobError;
    ///
    /// let cancelled = JobResult::<()>::from(Err(JobError::Cancelled { reason: None }));
    /// assert!(cancelled.error().is_none());
    /// ```
    pub fn error(&self) -> Option<&JobError> {
        match self {
            JobResult::Failure(error) => Some(error),
            _ => None,
        }
    }

    /// Returns where the value came from, if the job succeeded.
    ///
    /// ```
    /// use orchestrator_core::state::JobResult;
    /// use orchestrator_core::DataSource;
    ///
    /// let result = JobResult::Success { value: 1, source: DataSource::Optimistic };
    /// assert_eq!(result.source(), Some(DataSource::Optimistic));
    /// ```
    pub fn source(&self) -> Option<DataSource> {
        match self {
            JobResult::Success { source, .. } => Some(*source),
            _ => None,
        }
    }

    /// Maps the value of a success with `f`; other cases are kept as they are.
    ///
    /// ```
    /// use orchestrator_core::state::JobResult;
    /// use orchestrator_core::DataSource;
    ///
    /// let result = JobResult::Success { value: 20, source: DataSource::Cached };
    /// let doubled = result.map(|n| n * 2);
    /// assert_eq!(doubled.data(), Some(&40));
    /// assert_eq!(doubled.source(), Some(DataSource::Cached));
    /// ```
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> JobResult<U> {
        match self {
            JobResult::Success { value, source } => JobResult::Success {
                value: f(value),
                source,
            },
            JobResult::Failure(error) => JobResult::Failure(error),
            JobResult::Cancelled { reason } => JobResult::Cancelled { reason },
            JobResult::TimedOut { budget } => JobResult::TimedOut { budget },
        }
    }
}

impl<T> From<Result<Success<T>, JobError>> for JobResult<T> {
    /// Converts a handle's outcome; see [`JobResult::from_outcome`].
    fn from(outcome: Result<Success<T>, JobError>) -> Self {
        Self::from_outcome(outcome)
    }
}

impl<T> From<JobResult<T>> for Result<Success<T>, JobError> {
    /// Converts back; see [`JobResult::into_result`].
    fn from(result: JobResult<T>) -> Self {
        result.into_result()
    }
}

/// The state of asynchronously loaded data: initial, loading, success, failure, refreshing.
///
/// Data loaded once stays through later loading, refreshing and failure, so a screen can keep
/// showing it next to a spinner or an error. The transitions ([`set_loading`](Self::set_loading),
/// [`set_success`](Self::set_success), [`set_failure`](Self::set_failure),
/// [`set_refreshing`](Self::set_refreshing), [`settle`](Self::settle)) change the state in
/// place; they keep data on failure and clear the error on loading and success (the
/// [module docs](self) have the full table). The default is [`Initial`](Self::Initial).
///
/// With the `serde` feature it is `Serialize`/`Deserialize` (externally tagged, variant names
/// as written here).
///
/// ```
/// use orchestrator_core::state::AsyncState;
///
/// let mut users: AsyncState<Vec<&str>, &str> = AsyncState::default();
/// users.set_loading();
/// assert!(users.is_loading());
/// users.set_success(vec!["ada", "grace"]);
/// users.set_failure("offline");
/// // The failure keeps the data it had.
/// assert_eq!(users.error(), Some(&"offline"));
/// assert_eq!(users.data().map(Vec::len), Some(2));
/// users.set_refreshing();
/// assert_eq!(users, AsyncState::Refreshing { data: vec!["ada", "grace"] });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AsyncState<T, E> {
    /// Nothing was requested yet.
    Initial,
    /// A load is under way; `data` is what an earlier load produced, if anything.
    Loading {
        /// Data from before this load, if any.
        data: Option<T>,
    },
    /// The last load succeeded.
    Success {
        /// The loaded data.
        data: T,
    },
    /// The last load failed; `data` is what an earlier load produced, if anything.
    Failure {
        /// Why the last load failed.
        error: E,
        /// Data from before the failed load, if any.
        data: Option<T>,
    },
    /// A reload is under way while earlier data is shown.
    Refreshing {
        /// The data being refreshed.
        data: T,
    },
}

impl<T, E> Default for AsyncState<T, E> {
    /// Returns [`AsyncState::Initial`].
    fn default() -> Self {
        AsyncState::Initial
    }
}

impl<T, E> AsyncState<T, E> {
    /// Moves out the current state, leaving `Initial` behind for the transition to overwrite.
    fn take(&mut self) -> Self {
        core::mem::take(self)
    }

    /// Starts a load: becomes `Loading`, keeping any data and clearing any error.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// let mut state = AsyncState::Failure { error: "timeout", data: Some(1) };
    /// state.set_loading();
    /// assert_eq!(state, AsyncState::Loading { data: Some(1) });
    /// assert!(state.error().is_none());
    /// ```
    pub fn set_loading(&mut self) {
        let data = self.take().into_data();
        *self = AsyncState::Loading { data };
    }

    /// Records a successful load: becomes `Success` with `data`, clearing any error.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// let mut state = AsyncState::Failure { error: "timeout", data: None };
    /// state.set_success(5);
    /// assert_eq!(state, AsyncState::Success { data: 5 });
    /// ```
    pub fn set_success(&mut self, data: T) {
        *self = AsyncState::Success { data };
    }

    /// Records a failed load: becomes `Failure` with `error`, keeping any data.
    ///
    /// An earlier error is replaced.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// let mut state: AsyncState<u8, &str> = AsyncState::Refreshing { data: 9 };
    /// state.set_failure("offline");
    /// assert_eq!(state, AsyncState::Failure { error: "offline", data: Some(9) });
    /// ```
    pub fn set_failure(&mut self, error: E) {
        let data = self.take().into_data();
        *self = AsyncState::Failure { error, data };
    }

    /// Starts a reload of data that is already shown: becomes `Refreshing`, keeping the data
    /// and clearing any error.
    ///
    /// `Refreshing` always holds data: from a state without data (`Initial`, or `Loading` or
    /// `Failure` without data) this becomes `Loading { data: None }`, like
    /// [`set_loading`](Self::set_loading).
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// let mut shown: AsyncState<u8, ()> = AsyncState::Success { data: 1 };
    /// shown.set_refreshing();
    /// assert_eq!(shown, AsyncState::Refreshing { data: 1 });
    ///
    /// let mut empty: AsyncState<u8, ()> = AsyncState::Initial;
    /// empty.set_refreshing();
    /// assert_eq!(empty, AsyncState::Loading { data: None });
    /// ```
    pub fn set_refreshing(&mut self) {
        *self = match self.take().into_data() {
            Some(data) => AsyncState::Refreshing { data },
            None => AsyncState::Loading { data: None },
        };
    }

    /// Records the result of a load: [`set_success`](Self::set_success) on `Ok`,
    /// [`set_failure`](Self::set_failure) on `Err`.
    ///
    /// With a job handle: `state.settle(handle.await.map(Success::into_value))`.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// let mut state: AsyncState<u8, &str> = AsyncState::Loading { data: Some(1) };
    /// state.settle(Err("offline"));
    /// assert_eq!(state, AsyncState::Failure { error: "offline", data: Some(1) });
    /// state.settle(Ok(2));
    /// assert_eq!(state, AsyncState::Success { data: 2 });
    /// ```
    pub fn settle(&mut self, result: Result<T, E>) {
        match result {
            Ok(data) => self.set_success(data),
            Err(error) => self.set_failure(error),
        }
    }

    /// Returns the data, whatever the state, if there is any.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// let state: AsyncState<u8, &str> = AsyncState::Failure { error: "x", data: Some(4) };
    /// assert_eq!(state.data(), Some(&4));
    /// assert_eq!(AsyncState::<u8, &str>::Initial.data(), None);
    /// ```
    pub fn data(&self) -> Option<&T> {
        match self {
            AsyncState::Initial => None,
            AsyncState::Loading { data } | AsyncState::Failure { data, .. } => data.as_ref(),
            AsyncState::Success { data } | AsyncState::Refreshing { data } => Some(data),
        }
    }

    /// Returns the data, if there is any, dropping the rest of the state.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// let state: AsyncState<String, ()> = AsyncState::Refreshing { data: "hi".into() };
    /// assert_eq!(state.into_data().as_deref(), Some("hi"));
    /// ```
    pub fn into_data(self) -> Option<T> {
        match self {
            AsyncState::Initial => None,
            AsyncState::Loading { data } | AsyncState::Failure { data, .. } => data,
            AsyncState::Success { data } | AsyncState::Refreshing { data } => Some(data),
        }
    }

    /// Returns the error of a `Failure`.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// let state: AsyncState<(), &str> = AsyncState::Failure { error: "denied", data: None };
    /// assert_eq!(state.error(), Some(&"denied"));
    /// ```
    pub fn error(&self) -> Option<&E> {
        match self {
            AsyncState::Failure { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Returns `true` if nothing was requested yet.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// assert!(AsyncState::<(), ()>::default().is_initial());
    /// ```
    pub fn is_initial(&self) -> bool {
        matches!(self, AsyncState::Initial)
    }

    /// Returns `true` while a load is under way: `Loading` or `Refreshing`.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// assert!(AsyncState::<u8, ()>::Refreshing { data: 1 }.is_loading());
    /// assert!(AsyncState::<u8, ()>::Loading { data: None }.is_loading());
    /// assert!(!AsyncState::<u8, ()>::Success { data: 1 }.is_loading());
    /// ```
    pub fn is_loading(&self) -> bool {
        matches!(
            self,
            AsyncState::Loading { .. } | AsyncState::Refreshing { .. }
        )
    }

    /// Returns `true` while data already shown is being reloaded.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// assert!(AsyncState::<u8, ()>::Refreshing { data: 1 }.is_refreshing());
    /// assert!(!AsyncState::<u8, ()>::Loading { data: Some(1) }.is_refreshing());
    /// ```
    pub fn is_refreshing(&self) -> bool {
        matches!(self, AsyncState::Refreshing { .. })
    }

    /// Returns `true` if the last load succeeded.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// assert!(AsyncState::<u8, ()>::Success { data: 1 }.is_success());
    /// ```
    pub fn is_success(&self) -> bool {
        matches!(self, AsyncState::Success { .. })
    }

    /// Returns `true` if the last load failed.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// assert!(AsyncState::<u8, ()>::Failure { error: (), data: Some(1) }.is_failure());
    /// ```
    pub fn is_failure(&self) -> bool {
        matches!(self, AsyncState::Failure { .. })
    }

    /// Returns `true` if there is data to show, whatever the state.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// assert!(AsyncState::<u8, ()>::Loading { data: Some(1) }.has_data());
    /// assert!(!AsyncState::<u8, ()>::Failure { error: (), data: None }.has_data());
    /// ```
    pub fn has_data(&self) -> bool {
        self.data().is_some()
    }

    /// Maps the data with `f`, keeping the state and the error.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// let state: AsyncState<Vec<u8>, ()> = AsyncState::Refreshing { data: vec![1, 2, 3] };
    /// assert_eq!(state.map_data(|v| v.len()), AsyncState::Refreshing { data: 3 });
    /// ```
    pub fn map_data<U>(self, f: impl FnOnce(T) -> U) -> AsyncState<U, E> {
        match self {
            AsyncState::Initial => AsyncState::Initial,
            AsyncState::Loading { data } => AsyncState::Loading { data: data.map(f) },
            AsyncState::Success { data } => AsyncState::Success { data: f(data) },
            AsyncState::Failure { error, data } => AsyncState::Failure {
                error,
                data: data.map(f),
            },
            AsyncState::Refreshing { data } => AsyncState::Refreshing { data: f(data) },
        }
    }

    /// Maps the error with `f`, keeping the state and the data.
    ///
    /// ```
    /// use orchestrator_core::state::AsyncState;
    ///
    /// let state: AsyncState<u8, u16> = AsyncState::Failure { error: 404, data: Some(1) };
    /// let state = state.map_error(|code| if code == 404 { "not found" } else { "other" });
    /// assert_eq!(state.error(), Some(&"not found"));
    /// assert_eq!(state.data(), Some(&1));
    /// ```
    pub fn map_error<F>(self, f: impl FnOnce(E) -> F) -> AsyncState<T, F> {
        match self {
            AsyncState::Initial => AsyncState::Initial,
            AsyncState::Loading { data } => AsyncState::Loading { data },
            AsyncState::Success { data } => AsyncState::Success { data },
            AsyncState::Failure { error, data } => AsyncState::Failure {
                error: f(error),
                data,
            },
            AsyncState::Refreshing { data } => AsyncState::Refreshing { data },
        }
    }
}
