//! The README's promises that CI keeps (its code block runs as a doc test of `src/lib.rs`).

#[test]
fn readme_names_the_two_commands_that_ci_runs() {
    let readme = include_str!("../README.md");
    let ci = include_str!("../.ci/run");
    assert!(readme.contains("cargo run --example quickstart"));
    assert!(readme.contains("cargo test --workspace"));
    assert!(ci.contains("\ncargo test --workspace\n"));
    assert!(ci.contains("cargo run --example quickstart"));
}
