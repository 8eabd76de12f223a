//! The conformance suite in the local flavour, on the core's virtual-time runtime: every
//! executor is registered as a local executor that is neither `Send` nor `Sync` (with futures
//! that are not `Send`), every orchestrator starts as a local one, and their tasks are
//! spawned as tasks that are not `Send`.

use std::sync::Arc;

use orchestrator_core::testing::VirtualRuntime;

orchestrator_core::conformance_suite!(
    local | case | {
        let rt = VirtualRuntime::new();
        rt.block_on(case(Arc::new(rt.clone())));
    }
);
