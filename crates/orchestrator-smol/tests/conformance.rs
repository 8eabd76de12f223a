//! The conformance suite on smol's global executor.

use std::sync::Arc;

use orchestrator_smol::SmolRuntime;

orchestrator_core::conformance_suite!(|case| {
    smol::block_on(case(Arc::new(SmolRuntime::default())));
});
