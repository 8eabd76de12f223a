//! Event-driven orchestration for every async runtime and for `no_std`.
//!
//! Application code says **what** to do with a typed [`Job`]; an [`Executor`] registered for
//! that job type does **how**; a [`Dispatcher`] routes jobs to executors and returns a
//! [`JobHandle`] for each dispatch: an awaitable typed outcome, a progress stream, a job id and
//! a way to cancel. Executors publish [`Event`]s on a [`SignalBus`]; [`Orchestrator`]s hold
//! state and react to events, telling the events of their own jobs (active) from everyone
//! else's (passive). Timeouts, retries with backoff, cancellation, progress and loop
//! protection are built in.
//!
//! The core names no runtime. An adapter crate (`orchestrator-tokio`, `orchestrator-smol`,
//! `orchestrator-async-std`) supplies spawning, sleeping and a clock through the traits in
//! [`runtime`]; switching runtime is changing the one line that constructs it.
//!
//! ```
//! use orchestrator_core::testing::VirtualRuntime;
//! use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext, RetryPolicy};
//! use core::time::Duration;
//!
//! struct Add(u32, u32);
//! impl Job for Add {
//!     type Output = u32;
//! }
//!
//! struct Adder;
//! impl Executor<Add> for Adder {
//!     type Error = core::convert::Infallible;
//!     async fn execute(&self, job: &Add, cx: JobContext) -> Result<u32, Self::Error> {
//!         cx.report_progress(1.0);
//!         Ok(job.0 + job.1)
//!     }
//! }
//!
//! let rt = VirtualRuntime::new(); // or TokioRuntime::default(), SmolRuntime::default(), ...
//! let dispatcher = Dispatcher::new(rt.clone());
//! dispatcher.register(Adder);
//! let handle = dispatcher
//!     .job(Add(2, 3))
//!     .timeout(Duration::from_secs(5))
//!     .retry(RetryPolicy::exponential(3, Duration::from_millis(100)))
//!     .dispatch();
//! assert_eq!(rt.block_on(handle).unwrap().value, 5);
//! ```
//!
//! # Features
//!
//! - `std` (default): the standard library; executor panics become failed outcomes.
//!   Without it the crate is `#![no_std]` + `alloc` and its lock is a
//!   [`critical-section`](https://docs.rs/critical-section) mutex: the final binary must
//!   provide a critical-section implementation.
//! - `critical-section`: also makes `event-listener` use critical sections instead of its
//!   spin-lock fallback; recommended for `no_std` builds. It is meant for `no_std`: combined
//!   with `std`, event-listener still uses the critical section, so the binary must provide an
//!   implementation (for example critical-section's own `std` feature).
//! - `serde`: `Serialize`/`Deserialize` for the plain data types (`AsyncState`, `DataSource`,
//!   `JobId`, `Progress`).
//! - `test-util`: the test kit, `testing`: `VirtualRuntime` (a deterministic runtime with a
//!   virtual clock), fake executors, an event capture, orchestrator scenarios and outcome
//!   checks (`docs/testing.md` is the guide).
//! - `conformance`: the conformance suite that every runtime adapter runs (implies
//!   `test-util` and `std`).
//! - `tracing`: a `job` span per job (made at dispatch under the caller's span, entered
//!   whenever the job's task is polled, so an executor's own logs are inside it; its attempt,
//!   outcome and data source recorded) and events (target `orchestrator`) for retries, ends
//!   other than success, loop-guard drops and circuit-breaker transitions. Off, it costs
//!   nothing.
//! - `metrics` (implies `std`): `MetricsObserver`, jobs and events as counters and a
//!   duration histogram of the [`metrics`](https://docs.rs/metrics) facade.

#![no_std]
#![forbid(unsafe_code)]
#![warn(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod breaker;
mod bus;
mod cache;
mod cancel;
mod cause;
mod connectivity;
mod dispatch;
mod event;
mod id;
mod job;
mod lifecycle;
#[cfg(feature = "metrics")]
mod metrics_observer;
mod observer;
mod orchestrator;
mod outcome;
mod panic;
mod progress;
mod retry;
pub mod runtime;
mod saga;
mod state;
mod sync;
mod trace;
mod typemap;
mod undo;
mod watch;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;

pub use breaker::{BreakerConfig, BreakerState, InvalidBreakerConfig};
pub use bus::{PublishError, SignalBus, Subscription, TypedEvent, TypedSubscription};
pub use cache::{
    CacheEntry, CacheError, CachePolicy, CacheProvider, CacheStats, CacheValue, InMemoryCache,
    InvalidCacheConfig, InvalidateCache, Invalidation,
};
pub use cancel::{CancellationToken, WaitForCancellation, WaitForCancellationOwned};
pub use cause::{CausalChain, CauseStep};
pub use connectivity::{AlwaysOnline, Connectivity, ManualConnectivity};
pub use dispatch::builder::{Dispatch, JobBuilder};
pub use dispatch::context::JobContext;
pub use dispatch::control::EmitError;
pub use dispatch::dispatcher::Dispatcher;
pub use dispatch::dispatcher_builder::{DEFAULT_CACHE_CAPACITY, DispatcherBuilder};
pub use dispatch::executor::{Executor, LocalExecutor};
pub use dispatch::handle::{JobHandle, ProgressStream};
pub use dispatch::journal::{
    Accepting, Ending, Journal, JournalError, JournalFuture, Receipt, Stored, StoredAlready,
};
pub use dispatch::shutdown::{Shutdown, ShutdownReport};
pub use event::{Event, EventBuilder};
pub use id::JobId;
pub use job::{Job, JobType, MetadataEntry};
pub use lifecycle::JobLifecycle;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use metrics_observer::MetricsObserver;
pub use observer::{DropReason, DroppedEvent, JobInfo, Observer};
pub use orchestrator::{
    DEFAULT_MAX_DEPTH, Handled, LoopGuard, OnEvent, Orchestrator, OrchestratorBuilder,
    OrchestratorContext, OrchestratorError, OrchestratorGroup, OrchestratorHandle,
    OrchestratorStatus, Origin,
};
pub use outcome::{AttemptTimedOut, DataSource, Failure, JobError, Panicked, Rejection, Success};
pub use progress::Progress;
pub use retry::{InvalidRetryPolicy, RetryPolicy, RetryPolicyBuilder};
pub use saga::{CompensationFailure, RollbackReport, Saga, StepError};
pub use state::{AsyncState, JobResult, JobResultExt};
pub use undo::{
    DEFAULT_HISTORY_LIMIT, EntryFailure, EntryId, EntryState, FailureReason, History,
    HistoryAction, HistoryEntry, HistoryStep, HookDecision, InvalidHistoryLimit, RecordError,
    RedoError, Reversible, RunError, UndoError, UndoStack, UndoStackBuilder, UndoStrategy,
    UndoToError, UndoToReport,
};
pub use watch::{StateClosed, StateStream, WaitForState};
