//! The dispatch engine: from a job to its outcome.
//!
//! One folder, layered so that each file uses only the ones above it (no import cycles):
//!
//! | file | what it holds |
//! | --- | --- |
//! | `options.rs` | `JobOptions` (timeout, retries, token, bus, lifecycle, metadata) and `Extras` (cache, placeholder, dedup): what one dispatch runs with |
//! | `registry.rs` | the jobs in flight of one dispatcher (a slab of weak references), for accounting and shutdown |
//! | `env.rs` | `JobEnv`: what a dispatcher gives every job (runtime, cache, bus, observers, registry) |
//! | `control.rs` | `JobControl`: the type-erased view of a running job; `EmitError` |
//! | `shared.rs` | `JobShared`: the per-job engine (outcome slot, running flag, cancel request, progress, watchers) |
//! | `handle.rs` | `JobHandle` and `ProgressStream`: the caller's side |
//! | `context.rs` | `JobContext`: the executor's side |
//! | `journal.rs` | `Journal`: the hooks of a durable store (accept, attempt, finish); `Stored` |
//! | `executor.rs` | the `Executor` and `LocalExecutor` traits |
//! | `pipeline.rs` | one task per dispatch: attempts, retries, budget, cancellation, cache |
//! | `local.rs` | this thread's table of local executors (`std`) |
//! | `dispatcher.rs` | `Dispatcher`: the registry of executors, routing (`Route`), dedup, breaker, shutdown |
//! | `builder.rs` | `Dispatch` (every entry point) and `JobBuilder` |
//!
//! A new dispatch option touches three files: `options.rs` (the field), `builder.rs` (the
//! builder method) and the file that honours it (`pipeline.rs` or `dispatcher.rs`).

pub(crate) mod builder;
pub(crate) mod context;
pub(crate) mod control;
pub(crate) mod dispatcher;
pub(crate) mod dispatcher_builder;
pub(crate) mod env;
pub(crate) mod executor;
pub(crate) mod handle;
pub(crate) mod journal;
pub(crate) mod journaled;
#[cfg(feature = "std")]
pub(crate) mod local;
pub(crate) mod options;
pub(crate) mod pipeline;
pub(crate) mod registry;
pub(crate) mod shared;
pub(crate) mod shutdown;
