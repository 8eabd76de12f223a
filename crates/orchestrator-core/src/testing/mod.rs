//! A test kit for orchestrator logic (feature `test-util`): a deterministic runtime, fake
//! executors, an event capture, orchestrator scenarios and outcome checks.
//!
//! | piece | what it is for |
//! | --- | --- |
//! | [`VirtualRuntime`] | a runtime whose tasks and clock the test drives: timeouts and backoff in no time, reproducibly |
//! | [`FakeExecutor`], [`Recorder`] | executors with a canned behaviour (succeed, fail, fail N times, never finish, report progress, run a closure) that record the jobs and attempts they get |
//! | [`EventCapture`] | everything published on a bus, by type, and waits for an event with a limit |
//! | [`Scenario`] | an orchestrator tested as given / when / then: the states it goes through |
//! | [`expect`] | checks of a job's outcome: succeeded with, failed after N attempts, cancelled, timed out, rejected, data source |
//!
//! Everything here works on the virtual runtime and on the real adapters (`TokioRuntime`,
//! `SmolRuntime`, ...), except [`Scenario`], which builds its own [`VirtualRuntime`]. Nothing
//! here needs `std`.
//!
//! # Checks return errors, tests assert
//!
//! The kit never panics on a failed expectation: each check returns a `Result` whose error
//! says what was expected and what happened instead ([`expect::Mismatch`], [`WaitError`],
//! [`ScenarioError`]), and the test asserts it, with `.unwrap()` or with `?` in a test that
//! returns a `Result`. These errors' `Debug` is their message, so a failing test prints the
//! message as written (tables and lists included) rather than a struct dump. One design for
//! every piece: a check can also be inspected (`is_err()`, [`WaitError::is_timed_out`],
//! [`expect::Mismatch::actual`]), which the kit's own tests use to test failure messages.
//!
//! ```
//! use core::time::Duration;
//! use orchestrator_core::testing::{EventCapture, FakeError, FakeExecutor, VirtualRuntime, expect};
//! use orchestrator_core::{Dispatch, Dispatcher, Job, JobLifecycle, RetryPolicy};
//!
//! #[derive(Clone, Debug, PartialEq)]
//! struct Charge(u32);
//! impl Job for Charge {
//!     type Output = u32;
//! }
//!
//! let rt = VirtualRuntime::new();
//! let dispatcher = Dispatcher::builder(rt.clone()).lifecycle_events(true).build();
//! let flaky = FakeExecutor::fail_times(2, FakeError::new("gateway busy"), 30);
//! let recorder = flaky.recorder();
//! dispatcher.register::<Charge, _>(flaky);
//! let events = EventCapture::on(&dispatcher);
//!
//! let charge = dispatcher
//!     .job(Charge(30))
//!     .retry(RetryPolicy::fixed(3, Duration::from_secs(1)))
//!     .dispatch();
//! let outcome = rt.block_on(charge);
//! assert_eq!(expect::succeeded_with(&outcome, &30), Ok(()));
//! assert_eq!(recorder.attempts(), 3);
//! assert_eq!(recorder.jobs(), [Charge(30)]);
//! let started = rt.block_on(events.wait_for::<JobLifecycle>()).unwrap();
//! assert!(matches!(*started, JobLifecycle::Started));
//! assert_eq!(events.count::<JobLifecycle>(), 4, "started, retrying twice, succeeded");
//! ```
//!
//! # The virtual runtime
//!
//! [`VirtualRuntime`] implements [`Spawn`](crate::runtime::Spawn) and [`Timer`](crate::runtime::Timer) like any adapter, but its tasks run
//! only when the test drives them, and its clock moves only when the test (or
//! [`block_on`](VirtualRuntime::block_on)'s auto-advance) moves it. Timeouts, backoff
//! schedules and cancellation races are therefore tested instantly and reproducibly.
//!
//! ```
//! use core::time::Duration;
//! use orchestrator_core::runtime::Timer;
//! use orchestrator_core::testing::VirtualRuntime;
//!
//! let rt = VirtualRuntime::new();
//! let start = rt.now();
//! rt.block_on(rt.sleep(Duration::from_secs(3600))); // returns at once
//! assert_eq!(rt.now().saturating_duration_since(start), Duration::from_secs(3600));
//! ```
//!
//! # Ownership
//!
//! The value [`VirtualRuntime::new`] returns is the runtime's **owner**; its clones are
//! **handles**, as with tokio's `Runtime` and `Handle`. Any of them spawns, drives the tasks
//! and moves the clock, but only the owner keeps the tasks alive. Give the dispatcher a clone
//! (`Dispatcher::new(rt.clone())`) and keep the owner in the test: a job's task and an
//! orchestrator's event loop hold their dispatcher, which holds the runtime it was given, so a
//! dispatcher holding the owner would keep its own tasks alive.
//!
//! Dropping the owner shuts the runtime down like [`VirtualRuntime::shutdown`]: unfinished
//! tasks are dropped (their jobs resolve as cancelled) and the handles refuse later tasks with
//! [`SpawnErrorKind::Shutdown`](crate::runtime::SpawnErrorKind::Shutdown), so dispatches are
//! rejected and orchestrators fail to start, without panicking. Dropping the owner, the
//! dispatchers and the orchestrator handles frees everything, with or without a `shutdown`
//! call.
//!
//! ```
//! use orchestrator_core::Dispatch;
//! use orchestrator_core::testing::VirtualRuntime;
//! use orchestrator_core::{Dispatcher, Executor, Job, JobContext};
//!
//! struct Park;
//! impl Job for Park {
//!     type Output = ();
//! }
//! struct Parker;
//! impl Executor<Park> for Parker {
//!     type Error = core::convert::Infallible;
//!     async fn execute(&self, _: &Park, _: JobContext) -> Result<(), Self::Error> {
//!         core::future::pending().await // never done
//!     }
//! }
//!
//! let rt = VirtualRuntime::new();
//! let handle = rt.clone();
//! let dispatcher = Dispatcher::new(rt.clone());
//! dispatcher.register(Parker);
//! let parked = dispatcher.dispatch(Park);
//! rt.run_until_stalled();
//! assert_eq!(rt.pool().len(), 1);
//!
//! drop(rt); // the owner: its task is dropped, the job is cancelled
//! assert!(handle.block_on(parked).unwrap_err().is_cancelled());
//! let late = handle.block_on(dispatcher.dispatch(Park)).unwrap_err();
//! assert!(late.is_rejected());
//! ```
//!
//! # Waiting on a real runtime
//!
//! On an adapter's runtime, give the capture that runtime's timer (or use
//! [`EventCapture::on`] with a dispatcher on it) and await its waits like any future: the
//! limit is then real time, so keep it short for waits that are expected to fail. Fakes and
//! [`expect`] need nothing from the runtime.

mod capture;
pub mod expect;
mod fakes;
mod scenario;
mod virtual_runtime;

pub use capture::{DEFAULT_WAIT_LIMIT, EventCapture, Wait, WaitError};
pub use fakes::{Call, FakeError, FakeExecutor, Recorder};
pub use scenario::{Act, DEFAULT_SCENARIO_WAIT, Scenario, ScenarioError, ScenarioReport};
pub use virtual_runtime::{Stalled, VirtualRuntime};
