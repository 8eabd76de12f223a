//! On the host: the browser conformance tests (`tests/browser_conformance.rs`) list every
//! case of the core's suite except the ones documented there as impossible in a browser.

#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeSet;

/// The cases that cannot run in a browser (the reasons are in browser_conformance.rs).
const NOT_IN_A_BROWSER: &[&str] = &["panic_becomes_failure_and_dispatcher_keeps_working"];

/// The identifiers between `open` and the next `}` of `text`.
fn names_after(text: &str, open: &str) -> BTreeSet<String> {
    let start = text.find(open).map(|i| i + open.len());
    let start = start.unwrap_or_else(|| panic!("`{open}` not found"));
    let rest = &text[start..];
    let end = rest.find('}').expect("a closing brace");
    rest[..end]
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn the_browser_runs_every_conformance_case_it_can() {
    let root = env!("CARGO_MANIFEST_DIR");
    let suite = std::fs::read_to_string(format!(
        "{root}/../orchestrator-core/src/conformance/mod.rs"
    ))
    .expect("the core's conformance module");
    let browser = std::fs::read_to_string(format!("{root}/tests/browser_conformance.rs"))
        .expect("the browser conformance tests");
    let mut expected = names_after(&suite, "__conformance_tests! { |$case| $body;");
    assert!(expected.len() > 30, "parsed the suite's list: {expected:?}");
    for name in NOT_IN_A_BROWSER {
        assert!(expected.remove(*name), "{name} is no longer in the suite");
    }
    let listed = names_after(&browser, "browser_cases! {");
    assert_eq!(listed, expected);
}
