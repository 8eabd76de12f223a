//! `cargo orchestrator new <feature> [--runtime tokio|smol|async-std] [--path <crate>]`.

use std::path::PathBuf;
use std::process::ExitCode;

use cargo_orchestrator::{
    MAX_NAME_LEN, REPOSITORY, Runtime, Scaffolded, Source, dependency_lines, scaffold,
};

const USAGE: &str = "\
usage: cargo orchestrator new <feature> [--runtime tokio|smol|async-std] [--path <crate dir>]
       cargo orchestrator --help

If cargo says `no such command: orchestrator`, install the command first:
    cargo install --path crates/cargo-orchestrator   (in a checkout of the repository)
    cargo install cargo-orchestrator                 (from crates.io, once published)";

fn help() -> String {
    let source = match Source::for_this_build() {
        Source::Path(dir) => format!(
            "path = \"{}\" (the checkout this command was built from)",
            dir.display()
        ),
        Source::CratesIo => "version = \"0.1\" (this command came from crates.io)".to_owned(),
        Source::Git => format!("git = \"{REPOSITORY}\""),
    };
    format!(
        "\
cargo orchestrator new: scaffolds a feature into your crate

usage: cargo orchestrator new <feature> [--runtime tokio|smol|async-std] [--path <crate dir>]

Writes src/<feature>.rs into the crate (a job, its executor, an orchestrator with its state,
and three tests), declares `pub mod <feature>;` in src/lib.rs (or src/main.rs) next to its
other `mod` declarations (or after its `use`s, before the first item), and prints the
dependency lines to add to Cargo.toml if it lacks them. It overwrites nothing.

arguments:
  <feature>            letters, digits, `-` or `_` (ASCII), starting with a letter, at most
                       {MAX_NAME_LEN} characters: `user-signup`, `UserSignup` and `user_signup` all give
                       module `user_signup` and types `UserSignupJob`, `UserSignupExecutor`,
                       `UserSignupOrchestrator`, `UserSignupState`. A name that Rust spells
                       differently is reported; keywords, `std`, `core`, `alloc` and
                       `orchestrator` (the module would shadow the crate), and `lib` and
                       `main` (crate roots' files) are refused.

options:
  --runtime <runtime>  tokio (the default), smol or async-std: the feature of the
                       `orchestrator-rs` crate that the printed lines turn on. The generated code
                       names no runtime: its tests run on `orchestrator::testing::VirtualRuntime`
                       and on `orchestrator::DefaultRuntime`, whichever the features chose.
  --path <crate dir>   the crate to write into (default: the current directory)
  -h, --help           prints this help
  -V, --version        prints the version

dependencies:
  The generated code depends on the facade crate only: the package `orchestrator-rs`,
  whose library is `orchestrator` (the code says `use orchestrator::...`; on crates.io the
  name `orchestrator` belongs to another project). The runtime is one of its features, and
  the tests need its `test-util` feature (`VirtualRuntime`):

    [dependencies]
    orchestrator-rs = {{ version = \"0.1\", default-features = false, features = [\"smol\"] }}

    [dev-dependencies]
    orchestrator-rs = {{ version = \"0.1\", default-features = false, features = [\"smol\", \"test-util\"] }}

  (tokio: `orchestrator-rs = \"0.1\"`, and `features = [\"test-util\"]` in the dev line.) Cargo
  unifies the two lines' features when it builds tests, and only then (resolver 2, the
  default since edition 2021): `cargo test` gets `test-util`, `cargo build` does not. The dev
  line repeats `default-features = false` and the runtime, or tests would turn on tokio (a
  default feature) and `DefaultRuntime` would be tokio's. Both lines must name the same
  source (version, git or path), or Cargo sees two different crates.

  The orchestrator crates are not on crates.io yet. The lines printed name the source that
  works for this build of the command: the crates/orchestrator of the checkout it was built
  from, while that directory is there (`cargo install --path crates/cargo-orchestrator`),
  else crates.io if it was installed from there, else the git repository
  (`git = \"{REPOSITORY}\"`); the other forms are printed too.
  For this build:
    {source}

install:
    cargo install --path crates/cargo-orchestrator   (in a checkout of the repository)
    cargo install cargo-orchestrator                 (from crates.io, once published)
  Without it, cargo says `no such command: orchestrator`. The binary also runs as
  `cargo-orchestrator orchestrator new ...` (or `cargo-orchestrator new ...`).
"
    )
}

/// What the command line asks for.
enum Command {
    Help,
    Version,
    New {
        feature: String,
        runtime: Runtime,
        path: PathBuf,
    },
}

/// Parses the arguments after the program name; `Err` is the message of a usage error.
fn parse(args: Vec<String>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    // As a cargo subcommand, cargo passes `orchestrator` first.
    if args.peek().map(String::as_str) == Some("orchestrator") {
        args.next();
    }
    let mut args: Vec<String> = args.collect();
    if args.iter().any(|a| matches!(a.as_str(), "-h" | "--help"))
        || args.first().map(String::as_str) == Some("help")
    {
        return Ok(Command::Help);
    }
    if args
        .iter()
        .any(|a| matches!(a.as_str(), "-V" | "--version"))
    {
        return Ok(Command::Version);
    }
    match args.first().map(String::as_str) {
        Some("new") => {
            args.remove(0);
        }
        Some(other) => return Err(format!("unknown command `{other}`: the command is `new`")),
        None => return Err("no command given".to_owned()),
    }
    let mut feature = None;
    let mut runtime = Runtime::Tokio;
    let mut path = PathBuf::from(".");
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "--runtime" => {
                let value = inline
                    .or_else(|| args.next())
                    .ok_or("--runtime needs a value: tokio, smol or async-std")?;
                runtime = Runtime::parse(&value).map_err(|e| e.to_string())?;
            }
            "--path" => {
                let value = inline
                    .or_else(|| args.next())
                    .ok_or("--path needs a directory")?;
                path = PathBuf::from(value);
            }
            _ if arg.starts_with('-') && arg.len() > 1 => {
                return Err(format!("unexpected option `{arg}`"));
            }
            _ if feature.is_none() => feature = Some(arg),
            _ => {
                return Err(format!(
                    "unexpected argument `{arg}`: one feature at a time"
                ));
            }
        }
    }
    let feature = feature.ok_or("no feature name given")?;
    Ok(Command::New {
        feature,
        runtime,
        path,
    })
}

fn main() -> ExitCode {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => {
                eprintln!("error: the argument {arg:?} is not valid Unicode\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (feature, runtime, path) = match parse(args) {
        Ok(Command::Help) => {
            print!("{}", help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("cargo-orchestrator {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::New {
            feature,
            runtime,
            path,
        }) => (feature, runtime, path),
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let done = match scaffold(&path, &feature, runtime) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if done.names.module != feature {
        println!(
            "note: feature `{feature}` is named `{}` in Rust (types `{}Job`, `{}Executor`, ...)",
            done.names.module, done.names.prefix, done.names.prefix
        );
    }
    println!("wrote {}", done.module.display());
    if let Some(root) = &done.declared_in {
        println!(
            "declared `pub mod {};` in {}",
            done.names.module,
            root.display()
        );
    }
    if done.needs_dependency() || done.needs_dev_dependency() {
        print_dependencies(runtime, &done);
    }
    let feature_flag = format!("\"{}\"", runtime.feature());
    if let Some(entry) = &done.dependency {
        if runtime != Runtime::Tokio && !entry.contains(&feature_flag) {
            println!(
                "note: the orchestrator-rs of [dependencies] does not name the `{}` feature: the \
                 tests' DefaultRuntime is the one its features choose (tokio by default)",
                runtime.feature()
            );
        }
    }
    if done.foreign_orchestrator {
        println!(
            "note: Cargo.toml depends on a package named `orchestrator`: on crates.io that is \
             another project's crate, and the facade's package is now `orchestrator-rs` (library \
             `orchestrator`); replace that entry with the orchestrator-rs line above"
        );
    }
    if done.dev_dependency.is_some() && done.needs_dev_dependency() {
        println!(
            "note: replace the orchestrator-rs line of [dev-dependencies] with the one above: the \
             tests need its `test-util` feature"
        );
    }
    println!("then: cargo test");
    ExitCode::SUCCESS
}

/// Prints the lines Cargo.toml lacks, from the source that works for this build, then the
/// other forms (indented). A line goes under its table's header, printed only if Cargo.toml
/// lacks the table (a second `[dependencies]` would be an error).
fn print_dependencies(runtime: Runtime, done: &Scaffolded) {
    let source = Source::for_this_build();
    let lines = dependency_lines(runtime, &source);
    let mut first = true;
    let mut section = |has_table: bool, table: &str, line: &str| {
        let also = if first { "" } else { "and " };
        first = false;
        if has_table {
            println!("{also}add to the [{table}] table of Cargo.toml:\n{line}\n");
        } else {
            println!("{also}add to Cargo.toml:\n[{table}]\n{line}\n");
        }
    };
    if done.needs_dependency() {
        section(
            done.has_dependencies_table,
            "dependencies",
            &lines.dependency,
        );
    }
    if done.needs_dev_dependency() {
        section(
            done.has_dev_dependencies_table,
            "dev-dependencies",
            &lines.dev_dependency,
        );
    }
    match &source {
        Source::Path(_) => println!(
            "(the orchestrator crates are not on crates.io yet: this path is the crates/orchestrator\n\
             of the checkout cargo-orchestrator was built from)"
        ),
        Source::Git => {
            println!("(the orchestrator crates are not on crates.io yet: this is their repository)")
        }
        Source::CratesIo => {}
    }
    for other in [Source::Git, Source::CratesIo] {
        if other == source {
            continue;
        }
        let label = match other {
            Source::Git => "or, from git:",
            _ => "or, from crates.io once published:",
        };
        let lines = dependency_lines(runtime, &other);
        println!("{label}");
        if done.needs_dependency() {
            println!("    [dependencies]\n    {}", lines.dependency);
        }
        if done.needs_dev_dependency() {
            println!("    [dev-dependencies]\n    {}", lines.dev_dependency);
        }
    }
    println!(
        "The dev-dependency adds `test-util` (the tests' VirtualRuntime), for tests only; both\n\
         lines must name the same source. See cargo orchestrator --help."
    );
}
