//! The conformance suite on tokio, multi-thread and current-thread schedulers.

use std::sync::Arc;

use orchestrator_tokio::TokioRuntime;

mod multi_thread {
    use super::*;

    orchestrator_core::conformance_suite!(|case| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(case(Arc::new(TokioRuntime::default())));
    });
}

mod current_thread {
    use super::*;

    orchestrator_core::conformance_suite!(|case| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(case(Arc::new(TokioRuntime::default())));
    });
}

mod with_handle {
    use super::*;

    orchestrator_core::conformance_suite!(|case| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let rt = TokioRuntime::with_handle(runtime.handle().clone());
        // Driven from a thread outside the runtime: the adapter spawns and sleeps through
        // its handle.
        futures::executor::block_on(case(Arc::new(rt)));
    });
}
