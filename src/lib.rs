//! The orchestrator workspace's root package.
//!
//! It publishes nothing: it hosts the runnable `examples/`, the cross-crate `tests/` and the
//! `benches/`. Applications depend on the facade crate (package `orchestrator-rs`, library
//! `orchestrator`), with the runtime as a feature (or on `orchestrator-core` plus one adapter
//! crate).
//!
//! The README follows; its code block runs as this crate's doc test (on tokio; the
//! facade crate runs it on smol and async-std too).
#![doc = include_str!("../README.md")]
