//! The conformance suite on the core's deterministic virtual-time runtime.

use std::sync::Arc;

use orchestrator_core::testing::VirtualRuntime;

orchestrator_core::conformance_suite!(|case| {
    let rt = VirtualRuntime::new();
    rt.block_on(case(Arc::new(rt.clone())));
});
