//! The core's conformance suite in a browser (headless Chromium in CI), on [`WasmRuntime`].
//!
//! The suite's own macro (`conformance_suite!`) generates `#[test]` functions that block on
//! each case; a browser cannot block, so here each case is an async `#[wasm_bindgen_test]`
//! that the test runner awaits, run under the suite's watchdog by `run_case`. The cases come
//! from the core's list (`conformance_cases!`), so none can be forgotten here. The ones that
//! need a panic to unwind (an executor's panic becoming a failed outcome) are compiled only
//! under `panic = "unwind"`: `wasm32-unknown-unknown` builds with `panic = "abort"`, where an
//! executor's panic aborts the whole wasm instance.

#![cfg(target_arch = "wasm32")]

use std::sync::Arc;

use orchestrator_core::conformance::{cases, run_case, run_case_local};
use orchestrator_wasm::WasmRuntime;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

macro_rules! browser_cases {
    ($run:ident [unwind: $($unwind:ident),*] [all: $($name:ident),*]) => {
        $( browser_cases!(@test #[cfg(panic = "unwind")] $run $unwind); )*
        $( browser_cases!(@test $run $name); )*
    };
    (@test $(#[$attr:meta])* $run:ident $name:ident) => {
        $(#[$attr])*
        #[wasm_bindgen_test]
        async fn $name() {
            $run(Arc::new(WasmRuntime::new()), cases::$name).await;
        }
    };
}

/// The threaded flavour: `Send` executors and orchestrators.
mod threaded {
    use super::*;
    orchestrator_core::conformance_cases!(browser_cases; run_case);
}

/// The local flavour: every executor registered as a local one (neither `Send` nor `Sync`,
/// futures not `Send`), every orchestrator started as a local one, all on `spawn_local`.
mod local {
    use super::*;
    orchestrator_core::conformance_cases!(browser_cases; run_case_local);
}
