//! Results and UI-facing async state: [`JobResult`] and [`AsyncState`].

use crate::outcome::{DataSource, JobError, Success};

/// A job's outcome: what a [`JobHandle`](crate::JobHandle) resolves to.
pub type JobResult<T> = Result<Success<T>, JobError>;

/// Shortcuts on a [`JobResult`]: success, data, error, where the data came from.
///
/// ```
/// use core::time::Duration;
/// use orchestrator_core::{DataSource, JobError, JobResult, JobResultExt, Success};
///
/// let ok: JobResult<u32> = Ok(Success { value: 1, data_source: DataSource::Cached });
/// assert!(ok.is_success());
/// assert_eq!(ok.data_source(), Some(DataSource::Cached));
///
/// let late: JobResult<u32> = Err(JobError::TimedOut { budget: Duration::from_secs(2) });
/// assert!(late.is_timed_out());
/// assert!(late.data().is_none());
/// assert!(late.error().is_some_and(JobError::is_timed_out));
/// ```
pub trait JobResultExt<T>: sealed::Sealed {
    /// Returns `true` if the job succeeded.
    fn is_success(&self) -> bool;
    /// Returns the value, if the job succeeded.
    fn data(&self) -> Option<&T>;
    /// Returns the value, if the job succeeded, consuming the result.
    fn into_data(self) -> Option<T>;
    /// Returns the error, if the job did not succeed.
    fn error(&self) -> Option<&JobError>;
    /// Returns where the value came from, if the job succeeded.
    fn data_source(&self) -> Option<DataSource>;
    /// Returns `true` if the job was cancelled.
    fn is_cancelled(&self) -> bool;
    /// Returns `true` if the job's time budget ran out.
    fn is_timed_out(&self) -> bool;
}

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for super::JobResult<T> {}
}

impl<T> JobResultExt<T> for JobResult<T> {
    fn is_success(&self) -> bool {
        self.is_ok()
    }

    fn data(&self) -> Option<&T> {
        self.as_ref().ok().map(|s| &s.value)
    }

    fn into_data(self) -> Option<T> {
        self.ok().map(|s| s.value)
    }

    fn error(&self) -> Option<&JobError> {
        self.as_ref().err()
    }

    fn data_source(&self) -> Option<DataSource> {
        self.as_ref().ok().map(|s| s.data_source)
    }

    fn is_cancelled(&self) -> bool {
        self.as_ref().is_err_and(JobError::is_cancelled)
    }

    fn is_timed_out(&self) -> bool {
        self.as_ref().is_err_and(JobError::is_timed_out)
    }
}

/// The state of asynchronously loaded data: initial, loading, success, failure, refreshing.
///
/// ## `AsyncState`: data that survives transitions
///
/// [`AsyncState<T, E>`] is the state of one piece of asynchronously loaded data, as a screen
/// shows it. Its transitions take `&mut self`, so they fit
/// [`OrchestratorContext::update`](crate::OrchestratorContext::update), and they
/// follow one contract: **transitions keep data on failure and clear the error on loading and
/// success.** In full (`-` is "no data"):
///
/// | from ╲ call        | [`set_loading`]     | [`set_success(d)`]  | [`set_failure(e)`]    | [`set_refreshing`]  |
/// |--------------------|---------------------|---------------------|-----------------------|---------------------|
/// | `Initial`          | `Loading { - }`     | `Success { d }`     | `Failure { e, - }`    | `Loading { - }`     |
/// | `Loading { x }`    | `Loading { x }`     | `Success { d }`     | `Failure { e, x }`    | `Refreshing { x }`¹ |
/// | `Success { x }`    | `Loading { x }`     | `Success { d }`     | `Failure { e, x }`    | `Refreshing { x }`  |
/// | `Failure { _, x }` | `Loading { x }`     | `Success { d }`     | `Failure { e, x }`    | `Refreshing { x }`¹ |
/// | `Refreshing { x }` | `Loading { x }`     | `Success { d }`     | `Failure { e, x }`    | `Refreshing { x }`  |
///
/// ¹ `Refreshing` always holds data; without data, `set_refreshing` gives `Loading { - }`.
///
/// [`set_loading`]: AsyncState::set_loading
/// [`set_success(d)`]: AsyncState::set_success
/// [`set_failure(e)`]: AsyncState::set_failure
/// [`set_refreshing`]: AsyncState::set_refreshing
///
/// Data loaded once stays through later loading, refreshing and failure, so a screen can keep
/// showing it next to a spinner or an error. The transitions ([`set_loading`](Self::set_loading),
/// [`set_success`](Self::set_success), [`set_failure`](Self::set_failure),
/// [`set_refreshing`](Self::set_refreshing), [`settle`](Self::settle)) change the state in
/// place; they keep data on failure and clear the error on loading and success (the
/// table above has them all). The default is [`Initial`](Self::Initial).
///
/// With the `serde` feature it is `Serialize`/`Deserialize` (externally tagged, variant names
/// as written here).
///
/// ```
/// use orchestrator_core::AsyncState;
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
    /// use orchestrator_core::AsyncState;
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
    /// use orchestrator_core::AsyncState;
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
    /// use orchestrator_core::AsyncState;
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
    /// use orchestrator_core::AsyncState;
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
    /// use orchestrator_core::AsyncState;
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
    /// use orchestrator_core::AsyncState;
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
    /// use orchestrator_core::AsyncState;
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
    /// use orchestrator_core::AsyncState;
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
    /// use orchestrator_core::AsyncState;
    ///
    /// assert!(AsyncState::<(), ()>::default().is_initial());
    /// ```
    pub fn is_initial(&self) -> bool {
        matches!(self, AsyncState::Initial)
    }

    /// Returns `true` while a load is under way: `Loading` or `Refreshing`.
    ///
    /// ```
    /// use orchestrator_core::AsyncState;
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
    /// use orchestrator_core::AsyncState;
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
    /// use orchestrator_core::AsyncState;
    ///
    /// assert!(AsyncState::<u8, ()>::Success { data: 1 }.is_success());
    /// ```
    pub fn is_success(&self) -> bool {
        matches!(self, AsyncState::Success { .. })
    }

    /// Returns `true` if the last load failed.
    ///
    /// ```
    /// use orchestrator_core::AsyncState;
    ///
    /// assert!(AsyncState::<u8, ()>::Failure { error: (), data: Some(1) }.is_failure());
    /// ```
    pub fn is_failure(&self) -> bool {
        matches!(self, AsyncState::Failure { .. })
    }

    /// Returns `true` if there is data to show, whatever the state.
    ///
    /// ```
    /// use orchestrator_core::AsyncState;
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
    /// use orchestrator_core::AsyncState;
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
    /// use orchestrator_core::AsyncState;
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
