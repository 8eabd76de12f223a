//! Event-driven job orchestration for every async runtime: one crate to depend on, with the
//! runtime as a Cargo feature.
//!
//! Everything of [`orchestrator-core`](orchestrator_core) is here (jobs, executors, the
//! dispatcher, the bus, orchestrators, timeouts, retries, cancellation, progress, caching,
//! loop protection), plus the runtime the features choose, as [`DefaultRuntime`], and a
//! [`block_on`] to run `main`'s future on it. Jobs, executors and orchestrators never name the
//! runtime, so switching is one feature:
//!
//! ```toml
//! [dependencies]
//! orchestrator-rs = "0.1"                                                          # tokio
//! orchestrator-rs = { version = "0.1", default-features = false, features = ["smol"] }       # smol
//! orchestrator-rs = { version = "0.1", default-features = false, features = ["async-std"] }  # async-std
//! ```
//!
//! The package is `orchestrator-rs` (on crates.io the name `orchestrator` belongs to another
//! project); its library is `orchestrator`, so the code says `use orchestrator::...`. Until
//! it is published, use the `git = "https://github.com/orchestrator-rs/orchestrator"` or
//! `path = ".../crates/orchestrator"` form with the same keys.
//!
//! ```
//! use orchestrator::{Dispatch, Dispatcher, DefaultRuntime, Executor, Job, JobContext};
//!
//! struct Add(u32, u32);
//! impl Job for Add {
//!     type Output = u32;
//! }
//! struct Adder;
//! impl Executor<Add> for Adder {
//!     type Error = std::convert::Infallible;
//!     async fn execute(&self, job: &Add, _cx: JobContext) -> Result<u32, Self::Error> {
//!         Ok(job.0 + job.1)
//!     }
//! }
//!
//! orchestrator::block_on(async {
//!     let dispatcher = Dispatcher::new(DefaultRuntime::default());
//!     dispatcher.register(Adder);
//!     assert_eq!(dispatcher.dispatch(Add(2, 3)).await.unwrap().value, 5);
//! });
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `tokio` (default) | `orchestrator::tokio`: `TokioRuntime`, `LocalSetRuntime` |
//! | `smol` | `orchestrator::smol`: `SmolRuntime` |
//! | `async-std` | `orchestrator::async_std`: `AsyncStdRuntime` |
//! | `wasm` | `orchestrator::wasm`: `WasmRuntime` (the browser) |
//! | `embassy` | `orchestrator::embassy`: `EmbassyRuntime` (`no_std`; made from embassy's spawner, so no `DefaultRuntime`) |
//! | `std` | the standard library (on with every runtime but embassy); without it the crate is `no_std` + `alloc` |
//! | `serde`, `tracing`, `metrics`, `test-util` | the core's features of the same names |
//! | `durable` | `orchestrator::durable`: durable jobs on any store (`orchestrator-durable`) |
//! | `redb` | `orchestrator::redb`: the redb file store (needs Rust 1.90) |
//! | `idb` | `orchestrator::idb`: the browser's IndexedDB store (with `wasm`) |
//! | `remote` | `orchestrator::remote`: the wire model of jobs and events between processes |
//!
//! With several runtime features on, [`DefaultRuntime`] and [`block_on`] are the first of
//! tokio, smol, async-std, wasm; every adapter that is on stays reachable by its module.

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use orchestrator_core::*;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use orchestrator_tokio as tokio;

#[cfg(feature = "smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub use orchestrator_smol as smol;

#[cfg(feature = "async-std")]
#[cfg_attr(docsrs, doc(cfg(feature = "async-std")))]
pub use orchestrator_async_std as async_std;

#[cfg(feature = "wasm")]
#[cfg_attr(docsrs, doc(cfg(feature = "wasm")))]
pub use orchestrator_wasm as wasm;

#[cfg(feature = "embassy")]
#[cfg_attr(docsrs, doc(cfg(feature = "embassy")))]
pub use orchestrator_embassy as embassy;

#[cfg(feature = "durable")]
#[cfg_attr(docsrs, doc(cfg(feature = "durable")))]
pub use orchestrator_durable as durable;

#[cfg(feature = "redb")]
#[cfg_attr(docsrs, doc(cfg(feature = "redb")))]
pub use orchestrator_redb as redb;

#[cfg(feature = "idb")]
#[cfg_attr(docsrs, doc(cfg(feature = "idb")))]
pub use orchestrator_idb as idb;

#[cfg(any(feature = "remote", feature = "durable"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "remote", feature = "durable"))))]
pub use orchestrator_remote as remote;

/// The runtime the features chose: tokio's (multi-thread or current-thread, whichever runs
/// the dispatching code).
#[cfg(feature = "tokio")]
pub type DefaultRuntime = orchestrator_tokio::TokioRuntime;

/// The runtime the features chose: smol's global executor and timers.
#[cfg(all(feature = "smol", not(feature = "tokio")))]
pub type DefaultRuntime = orchestrator_smol::SmolRuntime;

/// The runtime the features chose: async-std's.
#[cfg(all(feature = "async-std", not(any(feature = "tokio", feature = "smol"))))]
pub type DefaultRuntime = orchestrator_async_std::AsyncStdRuntime;

/// The runtime the features chose: the browser's event loop.
#[cfg(all(
    feature = "wasm",
    not(any(feature = "tokio", feature = "smol", feature = "async-std"))
))]
pub type DefaultRuntime = orchestrator_wasm::WasmRuntime;

/// Runs `future` to completion on the chosen runtime, from synchronous code (a `main`):
/// a multi-thread tokio runtime, smol's `block_on`, or async-std's.
///
/// # Panics
///
/// With tokio, if the operating system refuses the runtime's threads (as `#[tokio::main]`
/// does).
#[cfg(feature = "tokio")]
pub fn block_on<F: core::future::Future>(future: F) -> F::Output {
    ::tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the tokio runtime: {e}"))
        .block_on(future)
}

/// Runs `future` to completion on the chosen runtime, from synchronous code (a `main`):
/// smol's `block_on` (jobs run on smol's global executor).
#[cfg(all(feature = "smol", not(feature = "tokio")))]
pub fn block_on<F: core::future::Future>(future: F) -> F::Output {
    ::smol::block_on(future)
}

/// Runs `future` to completion on the chosen runtime, from synchronous code (a `main`):
/// async-std's `block_on`.
#[cfg(all(feature = "async-std", not(any(feature = "tokio", feature = "smol"))))]
pub fn block_on<F: core::future::Future>(future: F) -> F::Output {
    ::async_std::task::block_on(future)
}

/// The README's code, compiled and run as doc tests (on the runtime the features chose).
#[cfg(all(
    doctest,
    any(feature = "tokio", feature = "smol", feature = "async-std")
))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
