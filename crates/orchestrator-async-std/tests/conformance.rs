//! The conformance suite on async-std's global executor.

use std::sync::Arc;

use orchestrator_async_std::AsyncStdRuntime;

orchestrator_core::conformance_suite!(|case| {
    async_std::task::block_on(case(Arc::new(AsyncStdRuntime::default())));
});
