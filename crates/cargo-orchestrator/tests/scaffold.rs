//! `cargo orchestrator new` on a crate in a temporary directory: what it writes and declares,
//! the dependencies it asks for, and that it refuses bad names and never overwrites. (CI also
//! compiles and tests generated features in fresh crates: `.ci/run`.)

use std::fs;
use std::path::PathBuf;

use cargo_orchestrator::{Names, Runtime, ScaffoldError, render, scaffold};

fn fresh_crate(name: &str, dependencies: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("cargo-orchestrator-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(
        dir.join("Cargo.toml"),
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\n{dependencies}"),
    )
    .unwrap();
    fs::write(dir.join("src/lib.rs"), "//! An app.\n").unwrap();
    dir
}

#[test]
fn it_writes_the_module_declares_it_and_lists_what_is_missing() {
    let dir = fresh_crate("shop", "orchestrator-core = \"0.1\"\n");
    let done = scaffold(&dir, "user-signup", Runtime::Tokio).unwrap();
    assert_eq!(done.module, dir.join("src/user_signup.rs"));
    let module = fs::read_to_string(&done.module).unwrap();
    for item in [
        "pub struct UserSignupJob",
        "impl Executor<UserSignupJob> for UserSignupExecutor",
        "pub struct UserSignupState",
        "impl Orchestrator for UserSignupOrchestrator",
        "#[tokio::test]",
        "use orchestrator_tokio::TokioRuntime;",
        "fn user_signup_updates_its_state_and_rejects_empty_input()",
    ] {
        assert!(module.contains(item), "missing {item}");
    }
    assert!(!module.contains("{{"), "every placeholder filled");
    assert_eq!(done.declared_in, Some(dir.join("src/lib.rs")));
    assert_eq!(
        fs::read_to_string(dir.join("src/lib.rs")).unwrap(),
        "//! An app.\npub mod user_signup;\n"
    );
    assert_eq!(
        done.missing_dependencies,
        Runtime::Tokio.dependencies(),
        "orchestrator-core is there already"
    );

    // Again: nothing is overwritten, nothing declared twice.
    match scaffold(&dir, "user_signup", Runtime::Smol) {
        Err(ScaffoldError::Exists(path)) => assert_eq!(path, done.module),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(fs::read_to_string(&done.module).unwrap(), module);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_names_runtimes_and_places_are_errors_and_write_nothing() {
    let dir = fresh_crate("empty", "");
    for name in ["2fa", "fn", "a b", "", "-x", "über"] {
        assert!(
            matches!(
                scaffold(&dir, name, Runtime::Tokio),
                Err(ScaffoldError::BadName(_))
            ),
            "{name:?}"
        );
    }
    assert!(matches!(
        Runtime::parse("actix"),
        Err(ScaffoldError::UnknownRuntime(_))
    ));
    let nowhere = std::env::temp_dir().join(format!("no-crate-{}", std::process::id()));
    assert!(matches!(
        scaffold(&nowhere, "checkout", Runtime::Tokio),
        Err(ScaffoldError::NotACrate(_))
    ));
    assert_eq!(
        fs::read_dir(dir.join("src")).unwrap().count(),
        1,
        "only lib.rs"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn each_runtime_gets_its_own_test_harness() {
    let names = Names::of("Checkout").unwrap();
    let smol = render(&names, Runtime::Smol);
    assert!(smol.contains("smol::block_on(async {") && smol.contains("SmolRuntime::default()"));
    let async_std = render(&names, Runtime::AsyncStd);
    assert!(async_std.contains("async_std::task::block_on(async {"));
    assert!(async_std.contains("AsyncStdRuntime::default()"));
    assert_eq!(Names::of("HTTPServer").unwrap().module, "httpserver");
    assert_eq!(Names::of("orderItem").unwrap().prefix, "OrderItem");
}
