//! The orchestrator workspace's root package.
//!
//! It publishes nothing: it hosts the runnable `examples/`, the cross-crate `tests/` and the
//! `benches/`. Applications depend on `orchestrator-core` plus one adapter
//! (`orchestrator-tokio`, `orchestrator-smol` or `orchestrator-async-std`).
//!
//! The README follows; its code block runs as this crate's doc test.
#![doc = include_str!("../README.md")]
