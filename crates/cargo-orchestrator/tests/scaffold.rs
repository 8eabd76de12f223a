//! `cargo orchestrator new` on a crate in a temporary directory: what it writes and declares,
//! the dependencies it asks for, and that it refuses bad names and never overwrites. (CI also
//! compiles and tests generated features in fresh crates: `.ci/scaffold_check.sh`.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use cargo_orchestrator::{
    MAX_NAME_LEN, Names, Runtime, ScaffoldError, Source, declare_module, dependency_lines,
    manifest_entry, manifest_has_table, render, scaffold,
};

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
    let dir = fresh_crate("shop", "orchestrator-rs = \"0.1\"\n");
    let done = scaffold(&dir, "user-signup", Runtime::Tokio).unwrap();
    assert_eq!(done.module, dir.join("src/user_signup.rs"));
    let module = fs::read_to_string(&done.module).unwrap();
    for item in [
        "pub struct UserSignupJob",
        "impl Executor<UserSignupJob> for UserSignupExecutor",
        "pub struct UserSignupState",
        "impl Orchestrator for UserSignupOrchestrator",
        "use orchestrator::testing::expect;",
        "use orchestrator::testing::{FakeExecutor, Scenario, VirtualRuntime};",
        "fn updates_its_state_and_rejects_empty_input()",
        "fn runs_on_the_default_runtime()",
        "fn counts_what_a_fake_executor_returns()",
    ] {
        assert!(module.contains(item), "missing {item}");
    }
    assert!(!module.contains("{{"), "every placeholder filled");
    assert_eq!(done.declared_in, Some(dir.join("src/lib.rs")));
    assert_eq!(
        fs::read_to_string(dir.join("src/lib.rs")).unwrap(),
        "//! An app.\n\npub mod user_signup;\n"
    );
    assert!(!done.needs_dependency(), "orchestrator-rs is there already");
    assert!(!done.foreign_orchestrator);
    assert!(done.needs_dev_dependency(), "but not with test-util");

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
    let too_long = "a".repeat(MAX_NAME_LEN + 1);
    for name in [
        "2fa",
        "fn",
        "a b",
        "",
        "-x",
        "über",
        "std",
        "Core",
        "orchestrator",
        "Self",
        "a.b",
        "lib",
        "Main",
        too_long.as_str(),
    ] {
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
    assert_eq!(
        fs::read_to_string(dir.join("src/lib.rs")).unwrap(),
        "//! An app.\n"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_names_say_why() {
    let message = |name: &str| Names::of(name).unwrap_err().to_string();
    assert!(message("").contains("empty"), "{}", message(""));
    assert!(message("über").contains("ASCII"), "{}", message("über"));
    assert!(message("2fa").contains("start with a letter"));
    assert!(message("a b").contains("letters, digits"));
    assert!(message("Type").contains("keyword"), "{}", message("Type"));
    assert!(message("std").contains("shadow"), "{}", message("std"));
    assert!(message("lib").contains("crate root"), "{}", message("lib"));
    assert!(
        message(&"a".repeat(MAX_NAME_LEN + 1))
            .contains(&format!("longer than {MAX_NAME_LEN} characters"))
    );
}

#[test]
fn no_name_panics() {
    // Every string of up to three characters over an alphabet of awkward ones.
    let alphabet = ['a', 'Z', '1', '-', '_', ' ', 'é', '\u{0}', '.', '/'];
    let mut names = vec![String::new()];
    for _ in 0..3 {
        let longer: Vec<String> = names
            .iter()
            .flat_map(|n| alphabet.iter().map(move |c| format!("{n}{c}")))
            .collect();
        names.extend(longer);
    }
    names.sort();
    names.dedup();
    for name in &names {
        if let Ok(names) = Names::of(name) {
            assert!(
                !names.module.is_empty() && !names.prefix.is_empty(),
                "{name:?}"
            );
            assert!(names.module.starts_with(|c: char| c.is_ascii_lowercase()));
            assert!(names.prefix.starts_with(|c: char| c.is_ascii_uppercase()));
            let _ = render(&names, Runtime::Smol);
        }
    }
}

#[test]
fn names_rust_spells_differently_are_reported() {
    let names = Names::of("Bad-Name").unwrap();
    assert_eq!(
        (names.module.as_str(), names.prefix.as_str()),
        ("bad_name", "BadName")
    );
    assert_eq!(Names::of("HTTPServer").unwrap().module, "httpserver");
    assert_eq!(Names::of("orderItem").unwrap().prefix, "OrderItem");
    assert_eq!(Names::of("checkout").unwrap().module, "checkout");

    let dir = fresh_crate("renamed", "");
    let out = cli(&["orchestrator", "new", "Bad-Name", "--path", path(&dir)]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("feature `Bad-Name` is named `bad_name` in Rust"),
        "{stdout}"
    );
    assert!(dir.join("src/bad_name.rs").is_file());
    // A name Rust keeps as it is is not reported.
    let out = cli(&["orchestrator", "new", "checkout", "--path", path(&dir)]);
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8(out.stdout).unwrap().contains("is named"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_generated_code_depends_on_the_facade_only() {
    let names = Names::of("Checkout").unwrap();
    for runtime in [Runtime::Tokio, Runtime::Smol, Runtime::AsyncStd] {
        let module = render(&names, runtime);
        for old in [
            "orchestrator_core",
            "orchestrator_tokio",
            "orchestrator_smol",
            "orchestrator_async_std",
            "tokio::",
            "smol::",
            "async_std::",
        ] {
            assert!(!module.contains(old), "{runtime:?}: {old}");
        }
        for used in [
            "use orchestrator::{\n",
            "use orchestrator::testing::expect;",
            "use orchestrator::testing::{FakeExecutor, Scenario, VirtualRuntime};",
            "use orchestrator::{DefaultRuntime, Dispatch};",
            "orchestrator::block_on(",
        ] {
            assert!(module.contains(used), "{runtime:?}: {used}");
        }
        // The runtime is a feature, not code: only the doc comment names it.
        let other = render(&names, Runtime::Tokio);
        let differing: Vec<(&str, &str)> = module
            .lines()
            .zip(other.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert!(
            differing.iter().all(|(a, _)| a.starts_with("//!")),
            "{differing:?}"
        );
    }
}

#[test]
fn dependency_lines_name_the_facade_with_the_runtime_as_a_feature() {
    let crates_io = |rt| dependency_lines(rt, &Source::CratesIo);
    assert_eq!(
        crates_io(Runtime::Tokio).dependency,
        r#"orchestrator-rs = "0.1""#
    );
    assert_eq!(
        crates_io(Runtime::Tokio).dev_dependency,
        r#"orchestrator-rs = { version = "0.1", features = ["test-util"] }"#
    );
    assert_eq!(
        crates_io(Runtime::Smol).dependency,
        r#"orchestrator-rs = { version = "0.1", default-features = false, features = ["smol"] }"#
    );
    assert_eq!(
        crates_io(Runtime::AsyncStd).dev_dependency,
        r#"orchestrator-rs = { version = "0.1", default-features = false, features = ["async-std", "test-util"] }"#
    );
    let git = dependency_lines(Runtime::Smol, &Source::Git);
    assert_eq!(
        git.dependency,
        r#"orchestrator-rs = { git = "https://github.com/orchestrator-rs/orchestrator", default-features = false, features = ["smol"] }"#
    );
    assert_eq!(
        dependency_lines(Runtime::Tokio, &Source::Git).dependency,
        r#"orchestrator-rs = { git = "https://github.com/orchestrator-rs/orchestrator" }"#
    );
    let path = dependency_lines(
        Runtime::Smol,
        &Source::Path(PathBuf::from(r#"C:\src\"odd"\crates\orchestrator"#)),
    );
    assert_eq!(
        path.dependency,
        r#"orchestrator-rs = { path = "C:\\src\\\"odd\"\\crates\\orchestrator", default-features = false, features = ["smol"] }"#
    );
    for runtime in [Runtime::Tokio, Runtime::Smol, Runtime::AsyncStd] {
        for source in [Source::CratesIo, Source::Git, Source::Path("/x".into())] {
            let lines = dependency_lines(runtime, &source);
            assert!(lines.dev_dependency.contains("\"test-util\""));
            assert!(!lines.dependency.contains("test-util"));
            assert!(!lines.dependency.contains("orchestrator-core"));
            // The facade's package name: `orchestrator` on crates.io is another project.
            assert!(lines.dependency.starts_with("orchestrator-rs = "));
            assert!(lines.dev_dependency.starts_with("orchestrator-rs = "));
            // A default feature asked for by either line would be on in tests (tokio).
            assert_eq!(
                lines.dependency.contains("default-features = false"),
                runtime != Runtime::Tokio
            );
            assert_eq!(
                lines.dev_dependency.contains("default-features = false"),
                runtime != Runtime::Tokio
            );
            assert!(
                lines
                    .dev_dependency
                    .contains(&format!("\"{}\"", runtime.feature()))
                    || runtime == Runtime::Tokio
            );
        }
    }
    // Built from this checkout: the path form, pointing at the facade crate.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        Source::for_this_build(),
        Source::Path(here.parent().unwrap().join("orchestrator"))
    );
}

#[test]
fn the_manifest_is_read_per_table() {
    let manifest = r#"[package]
name = "app"
orchestrator = "not a dependency"

[dependencies]
orchestrator-core = "0.1"
orchestrator = { path = "../orchestrator", default-features = false, features = ["smol"] }

[dev-dependencies.orchestrator]
path = "../orchestrator"
features = ["smol", "test-util"]
"#;
    assert!(
        manifest_entry(manifest, "dependencies", "orchestrator")
            .unwrap()
            .contains("\"smol\"")
    );
    assert!(
        manifest_entry(manifest, "dev-dependencies", "orchestrator")
            .unwrap()
            .contains("test-util")
    );
    assert_eq!(
        manifest_entry(manifest, "build-dependencies", "orchestrator"),
        None
    );
    assert_eq!(
        manifest_entry(
            "[dependencies]\norchestrator-core = \"0.1\"\n",
            "dependencies",
            "orchestrator"
        ),
        None,
        "orchestrator-core is not orchestrator"
    );
    assert!(
        manifest_entry(
            "[dependencies]\norchestrator.workspace = true\n",
            "dependencies",
            "orchestrator"
        )
        .is_some()
    );
    assert!(manifest_has_table(manifest, "dependencies"));
    assert!(
        !manifest_has_table(manifest, "dev-dependencies"),
        "[dev-dependencies.orchestrator] is another table"
    );
    assert!(!manifest_has_table(manifest, "build-dependencies"));
    assert!(manifest_has_table(
        "[ dependencies ] # deps\n",
        "dependencies"
    ));

    // scaffold asks only for what is missing.
    let dir = fresh_crate(
        "complete",
        "orchestrator-rs = \"0.1\"\n\n[dev-dependencies]\norchestrator = { package = \"orchestrator-rs\", version = \"0.1\", features = [\"test-util\"] }\n",
    );
    let done = scaffold(&dir, "checkout", Runtime::Tokio).unwrap();
    assert!(!done.needs_dependency() && !done.needs_dev_dependency());
    assert!(!done.foreign_orchestrator, "renamed from orchestrator-rs");
    let out = cli(&["orchestrator", "new", "refund", "--path", path(&dir)]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("add to Cargo.toml"), "{stdout}");
    let _ = fs::remove_dir_all(&dir);
}

/// The rustfmt of the toolchain with `--check --edition <edition>`, if it runs.
fn rustfmt(edition: &str) -> Option<Command> {
    let ok = Command::new("rustfmt")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("rustfmt is not available: skipped (CI has it)");
    }
    ok.then(|| {
        let mut command = Command::new("rustfmt");
        command.args(["--check", "--edition", edition]);
        command
    })
}

/// Checks `files` (name, text) with `rustfmt --check --edition 2024`, in a directory of their
/// own (no rustfmt.toml above it is read: the config is rustfmt's default).
fn assert_rustfmt_clean(test: &str, files: &[(String, String)]) {
    assert_rustfmt_clean_in("2024", test, files);
}

/// Checks `files` (name, text) with `rustfmt --check --edition <edition>`, as
/// [`assert_rustfmt_clean`] does.
fn assert_rustfmt_clean_in(edition: &str, test: &str, files: &[(String, String)]) {
    let Some(mut rustfmt) = rustfmt(edition) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!(
        "cargo-orchestrator-fmt-{test}-{edition}-{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    // An empty config here, so that no rustfmt.toml of a parent directory applies.
    fs::write(dir.join("rustfmt.toml"), "").unwrap();
    for (name, text) in files {
        let file = dir.join(name);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, text).unwrap();
        if name.ends_with("lib.rs") || !name.contains('/') {
            rustfmt.arg(&file);
        }
    }
    let out = rustfmt.output().unwrap();
    assert!(
        out.status.success(),
        "not rustfmt-clean (edition {edition}):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_generated_module_is_rustfmt_clean_for_every_name_length() {
    let mut files = Vec::new();
    for runtime in [Runtime::Tokio, Runtime::Smol, Runtime::AsyncStd] {
        for feature in ["checkout", "user-signup", "x", "HTTPServer", "a1-b2-c3"] {
            let names = Names::of(feature).unwrap();
            files.push((
                format!(
                    "{}_{}.rs",
                    names.module,
                    runtime.feature().replace('-', "_")
                ),
                render(&names, runtime),
            ));
        }
    }
    // Every length, with the longest prefix for it (no `_` dropped).
    for len in 1..=MAX_NAME_LEN {
        let feature: String = "abcdefghijklmnopqrstuvwxyz"
            .chars()
            .cycle()
            .take(len)
            .collect();
        let names = Names::of(&feature).unwrap();
        files.push((format!("len_{len}.rs"), render(&names, Runtime::Smol)));
    }
    // And with words.
    for words in 1..=8 {
        let feature = vec!["word"; words].join("-");
        let names = Names::of(&feature).unwrap();
        files.push((format!("words_{words}.rs"), render(&names, Runtime::Tokio)));
    }
    // Crates of either edition (cargo new still writes 2024; older crates are 2021): the
    // style editions sort `use` groups differently, and the generated code avoids the
    // difference.
    assert_rustfmt_clean_in("2024", "module", &files);
    assert_rustfmt_clean_in("2021", "module", &files);
}

/// A crate root's leading section: inner docs, attributes (one over several lines) and uses
/// (one over several lines), rustfmt-clean.
macro_rules! header {
    () => {
        r#"//! The app.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(any(
        feature = "tokio",
        feature = "smol",
        feature = "async-std",
        feature = "wasm"
    )),
    allow(unused)
)]

use std::collections::{
    BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque, btree_map, hash_map,
};
use std::env;

"#
    };
}

#[test]
fn the_declaration_goes_where_rust_users_expect_it() {
    let cases: &[(&str, &str, &str)] = &[
        // cargo new's main.rs: at the top, before fn main.
        (
            "cargo_new_main",
            "fn main() {\n    println!(\"Hello, world!\");\n}\n",
            "pub mod checkout;\n\nfn main() {\n    println!(\"Hello, world!\");\n}\n",
        ),
        // After inner docs, attributes and uses, before the first item.
        (
            "header",
            concat!(header!(), "/// The entry point.\nfn main() {}\n"),
            concat!(
                header!(),
                "pub mod checkout;\n\n/// The entry point.\nfn main() {}\n"
            ),
        ),
        // Among sorted mods, at its sorted place (rustfmt keeps them sorted).
        (
            "sorted_mods",
            "//! Lib.\n\nmod a;\npub mod b;\n/// Docs.\n#[cfg(test)]\nmod d;\n\nuse a::X;\n\npub fn f() {}\n",
            "//! Lib.\n\nmod a;\npub mod b;\npub mod checkout;\n/// Docs.\n#[cfg(test)]\nmod d;\n\nuse a::X;\n\npub fn f() {}\n",
        ),
        // Last of a sorted run.
        (
            "last_mod",
            "mod a;\nmod b;\n\nfn main() {}\n",
            "mod a;\nmod b;\npub mod checkout;\n\nfn main() {}\n",
        ),
        // Unsorted mods: after the last one of the leading section.
        (
            "unsorted_mods",
            "mod z;\nmod a;\n\nfn main() {}\n",
            "mod z;\nmod a;\npub mod checkout;\n\nfn main() {}\n",
        ),
        // A mod after fn main does not count: never after fn main.
        (
            "mod_after_main",
            "use std::env;\n\nfn main() {}\n\n#[cfg(test)]\nmod tests;\n",
            "use std::env;\n\npub mod checkout;\n\nfn main() {}\n\n#[cfg(test)]\nmod tests;\n",
        ),
        // An inline module ends the leading section.
        (
            "inline_mod",
            "//! Docs.\nmod inline {\n    mod inner;\n}\n",
            "//! Docs.\n\npub mod checkout;\n\nmod inline {\n    mod inner;\n}\n",
        ),
        // A comment before the first item stays with it.
        (
            "comment",
            "use std::env;\n\n// The entry point.\nfn main() {}\n",
            "use std::env;\n\npub mod checkout;\n\n// The entry point.\nfn main() {}\n",
        ),
        // Only a header, no item, no final newline.
        (
            "only_docs",
            "//! Empty.\n",
            "//! Empty.\n\npub mod checkout;\n",
        ),
        ("empty", "", "pub mod checkout;\n"),
    ];
    let mut files = Vec::new();
    for (name, before, after) in cases {
        let got = declare_module(before, "checkout").unwrap();
        assert_eq!(got, *after, "{name}");
        assert!(
            got.find("pub mod checkout;").unwrap() < got.find("fn main").unwrap_or(usize::MAX),
            "{name}: after fn main"
        );
        // rustfmt-clean before, rustfmt-clean after (the modules exist: rustfmt opens them).
        // Unsorted mods and an empty file are not rustfmt-clean to start with.
        if ["unsorted_mods", "empty"].contains(name) {
            continue;
        }
        for (side, text) in [("before", *before), ("after", got.as_str())] {
            files.push((format!("{name}/{side}/lib.rs"), text.to_owned()));
            for module in ["a", "b", "d", "z", "tests", "checkout", "inline/inner"] {
                files.push((
                    format!("{name}/{side}/{module}.rs"),
                    "//! A module.\n".to_owned(),
                ));
            }
        }
    }
    assert_rustfmt_clean("roots", &files);
    // CRLF files stay CRLF.
    assert_eq!(
        declare_module(
            "//! Docs.\r\nuse std::env;\r\n\r\nfn main() {}\r\n",
            "checkout"
        )
        .unwrap(),
        "//! Docs.\r\nuse std::env;\r\n\r\npub mod checkout;\r\n\r\nfn main() {}\r\n"
    );
    assert_eq!(
        declare_module("mod a;\r\n", "checkout").unwrap(),
        "mod a;\r\npub mod checkout;\r\n"
    );
    // No final newline.
    assert_eq!(
        declare_module("//! Empty.", "checkout").unwrap(),
        "//! Empty.\n\npub mod checkout;\n"
    );

    // Declared already, with any visibility: left alone.
    for root in [
        "mod checkout;\n",
        "pub mod checkout;\n",
        "pub(crate) mod checkout; // here\n",
    ] {
        assert_eq!(declare_module(root, "checkout"), None, "{root}");
    }
    assert!(declare_module("mod checkout_v2;\n", "checkout").is_some());
}

#[test]
fn a_binary_crate_gets_the_declaration_before_main() {
    let dir = fresh_crate("bin", "");
    fs::remove_file(dir.join("src/lib.rs")).unwrap();
    fs::write(
        dir.join("src/main.rs"),
        "use std::env;\n\nfn main() {\n    let _ = env::args();\n}\n",
    )
    .unwrap();
    let done = scaffold(&dir, "checkout", Runtime::Smol).unwrap();
    assert_eq!(done.declared_in, Some(dir.join("src/main.rs")));
    assert_eq!(
        fs::read_to_string(dir.join("src/main.rs")).unwrap(),
        "use std::env;\n\npub mod checkout;\n\nfn main() {\n    let _ = env::args();\n}\n"
    );
    let _ = fs::remove_dir_all(&dir);
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cargo-orchestrator"))
        .args(args)
        .output()
        .unwrap()
}

fn path(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

#[test]
fn help_exits_0_on_stdout_and_says_how_to_install() {
    for args in [
        &["orchestrator", "--help"][..],
        &["orchestrator", "-h"],
        &["orchestrator", "help"],
        &["orchestrator", "new", "--help"],
        &["--help"],
    ] {
        let out = cli(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(out.stderr.is_empty(), "{args:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        for needed in [
            "cargo install --path crates/cargo-orchestrator",
            "cargo install cargo-orchestrator",
            "--runtime",
            "test-util",
            "default-features = false",
            "[dev-dependencies]",
        ] {
            assert!(help.contains(needed), "{args:?}: {needed}");
        }
    }
    let out = cli(&["orchestrator", "--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("cargo-orchestrator 0.")
    );
}

#[test]
fn bad_usage_exits_2_with_the_usage_on_stderr() {
    for args in [
        &["orchestrator"][..],
        &[],
        &["orchestrator", "make", "checkout"],
        &["orchestrator", "new"],
        &["orchestrator", "new", "checkout", "--runtime"],
        &["orchestrator", "new", "checkout", "--runtime", "actix"],
        &["orchestrator", "new", "checkout", "--frobnicate"],
        &["orchestrator", "new", "checkout", "refund"],
    ] {
        let out = cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: cargo orchestrator new"), "{args:?}");
        assert!(
            stderr.contains("cargo install --path crates/cargo-orchestrator"),
            "{args:?}"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let out = Command::new(env!("CARGO_BIN_EXE_cargo-orchestrator"))
            .args(["orchestrator", "new"])
            .arg(std::ffi::OsStr::from_bytes(b"bad\xff"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

#[test]
fn refused_names_exit_1_with_a_clear_error_and_no_panic() {
    let dir = fresh_crate("refused", "");
    for name in ["2fa", "type", "std", "über", "a b", "-"] {
        let out = cli(&["orchestrator", "new", name, "--path", path(&dir)]);
        assert_eq!(out.status.code(), Some(1), "{name:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.starts_with(&format!("error: `{name}` cannot be a feature name: ")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert_eq!(
        fs::read_dir(dir.join("src")).unwrap().count(),
        1,
        "nothing written"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_command_prints_the_facade_lines_that_work_today() {
    let dir = fresh_crate("printed", "");
    let out = cli(&[
        "orchestrator",
        "new",
        "checkout",
        "--runtime=smol",
        "--path",
        path(&dir),
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let facade = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("orchestrator");
    let lines = dependency_lines(Runtime::Smol, &Source::Path(facade));
    // The crate has a [dependencies] table (a second one would be an error), no
    // [dev-dependencies].
    let block = format!(
        "add to the [dependencies] table of Cargo.toml:\n{}\n\nand add to Cargo.toml:\n[dev-dependencies]\n{}\n",
        lines.dependency, lines.dev_dependency
    );
    assert!(stdout.contains(&block), "{stdout}");
    assert!(!stdout.contains("orchestrator-core"), "{stdout}");
    // The other forms too.
    assert!(stdout.contains(&dependency_lines(Runtime::Smol, &Source::Git).dependency));
    assert!(stdout.contains(&dependency_lines(Runtime::Smol, &Source::CratesIo).dependency));

    // Without the tables, their headers.
    fs::write(dir.join("Cargo.toml"), "[package]\nname = \"printed\"\n").unwrap();
    let out = cli(&[
        "orchestrator",
        "new",
        "refund",
        "--runtime",
        "smol",
        "--path",
        path(&dir),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let block = format!(
        "add to Cargo.toml:\n[dependencies]\n{}\n\nand add to Cargo.toml:\n[dev-dependencies]\n{}\n",
        lines.dependency, lines.dev_dependency
    );
    assert!(stdout.contains(&block), "{stdout}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn an_orchestrator_entry_of_another_package_is_reported() {
    // `orchestrator` on crates.io is another project's crate; the facade is `orchestrator-rs`.
    let dir = fresh_crate("foreign", "orchestrator = \"0.2\"\n");
    let out = cli(&["orchestrator", "new", "checkout", "--path", path(&dir)]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("add to the [dependencies] table"),
        "{stdout}"
    );
    assert!(
        stdout.contains("note: Cargo.toml depends on a package named `orchestrator`"),
        "{stdout}"
    );
    let _ = fs::remove_dir_all(&dir);

    // The facade renamed to `orchestrator` is the facade.
    let dir = fresh_crate(
        "renamed",
        "orchestrator = { package = \"orchestrator-rs\", version = \"0.1\" }\n",
    );
    let done = scaffold(&dir, "checkout", Runtime::Smol).unwrap();
    assert!(!done.needs_dependency() && !done.foreign_orchestrator);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn help_counts_the_tests_it_writes() {
    let help = String::from_utf8(cli(&["orchestrator", "--help"]).stdout).unwrap();
    let module = render(&Names::of("checkout").unwrap(), Runtime::Tokio);
    let tests = module.matches("#[test]").count();
    assert_eq!(tests, 3);
    assert!(help.contains("and three tests)"), "{help}");
    assert!(help.contains("orchestrator-rs = "), "{help}");
}
