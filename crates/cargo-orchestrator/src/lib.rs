//! The scaffolding behind `cargo orchestrator new <feature>`: it writes, into a crate, a
//! module with a job, its executor, an orchestrator with its state, and a test on the runtime
//! you name, then declares the module in the crate's `lib.rs` (or `main.rs`).
//!
//! ```text
//! cargo install --path crates/cargo-orchestrator
//! cargo orchestrator new checkout --runtime tokio     # in your crate
//! ```
//!
//! The generated code uses `orchestrator-core` and the adapter of the runtime (`tokio`,
//! `smol` or `async-std`); the command prints the dependencies to add if your `Cargo.toml`
//! lacks them.

#![forbid(unsafe_code)]

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// The runtimes a generated test can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// tokio (`orchestrator-tokio`).
    Tokio,
    /// smol (`orchestrator-smol`).
    Smol,
    /// async-std (`orchestrator-async-std`).
    AsyncStd,
}

impl Runtime {
    /// Parses `tokio`, `smol` or `async-std`.
    pub fn parse(name: &str) -> Result<Self, ScaffoldError> {
        match name {
            "tokio" => Ok(Runtime::Tokio),
            "smol" => Ok(Runtime::Smol),
            "async-std" | "async_std" => Ok(Runtime::AsyncStd),
            other => Err(ScaffoldError::UnknownRuntime(other.to_owned())),
        }
    }

    /// The dependency lines the generated code needs, besides `orchestrator-core`.
    pub fn dependencies(self) -> &'static [&'static str] {
        match self {
            Runtime::Tokio => &[
                "orchestrator-tokio = \"0.1\"",
                "tokio = { version = \"1\", features = [\"rt\", \"macros\"] }",
            ],
            Runtime::Smol => &["orchestrator-smol = \"0.1\"", "smol = \"2\""],
            Runtime::AsyncStd => &["orchestrator-async-std = \"0.1\"", "async-std = \"1\""],
        }
    }
}

/// Why nothing was written.
#[derive(Debug)]
#[non_exhaustive]
pub enum ScaffoldError {
    /// The feature name is not usable as a Rust module name.
    BadName(String),
    /// The runtime is not one of `tokio`, `smol`, `async-std`.
    UnknownRuntime(String),
    /// The crate has no `src/lib.rs` or `src/main.rs`.
    NotACrate(PathBuf),
    /// The module file exists already (nothing is overwritten).
    Exists(PathBuf),
    /// Reading or writing a file failed.
    Io(PathBuf, std::io::Error),
}

impl fmt::Display for ScaffoldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScaffoldError::BadName(name) => write!(
                f,
                "`{name}` is not a usable feature name: use letters, digits, `-` or `_`, starting with a letter, and not a Rust keyword"
            ),
            ScaffoldError::UnknownRuntime(name) => {
                write!(f, "unknown runtime `{name}`: use tokio, smol or async-std")
            }
            ScaffoldError::NotACrate(dir) => {
                write!(f, "{} has no src/lib.rs or src/main.rs", dir.display())
            }
            ScaffoldError::Exists(path) => {
                write!(f, "{} exists already; nothing was written", path.display())
            }
            ScaffoldError::Io(path, e) => write!(f, "{}: {e}", path.display()),
        }
    }
}

impl std::error::Error for ScaffoldError {}

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe",
    "use", "where", "while", "abstract", "become", "box", "do", "final", "macro", "override",
    "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// A feature's names: the module (`user_signup`) and the type prefix (`UserSignup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The module name, snake case.
    pub module: String,
    /// The type prefix, upper camel case.
    pub prefix: String,
}

impl Names {
    /// Derives the names of feature `feature` (`user-signup`, `user_signup`, `UserSignup`).
    ///
    /// ```
    /// use cargo_orchestrator::Names;
    /// let names = Names::of("user-signup").unwrap();
    /// assert_eq!((names.module.as_str(), names.prefix.as_str()), ("user_signup", "UserSignup"));
    /// assert_eq!(Names::of("Checkout").unwrap().module, "checkout");
    /// assert!(Names::of("2fa").is_err() && Names::of("type").is_err() && Names::of("a b").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ScaffoldError::BadName`].
    pub fn of(feature: &str) -> Result<Self, ScaffoldError> {
        let bad = || ScaffoldError::BadName(feature.to_owned());
        let valid = feature
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid || !feature.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(bad());
        }
        // Words: split on `-`/`_` and before upper-case letters that follow lower-case ones.
        let mut words: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut previous_lower = false;
        for c in feature.chars() {
            if c == '-' || c == '_' {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
                previous_lower = false;
                continue;
            }
            if c.is_ascii_uppercase() && previous_lower && !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            current.push(c.to_ascii_lowercase());
        }
        if !current.is_empty() {
            words.push(current);
        }
        let module = words.join("_");
        if module.is_empty() || KEYWORDS.contains(&module.as_str()) {
            return Err(bad());
        }
        let prefix = words
            .iter()
            .map(|w| {
                let mut chars = w.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect();
        Ok(Names { module, prefix })
    }
}

/// The generated module's source for `names` on `runtime`.
pub fn render(names: &Names, runtime: Runtime) -> String {
    let (adapter, runtime_value, test_attr, test_body_open, test_body_close) = match runtime {
        Runtime::Tokio => (
            "use orchestrator_tokio::TokioRuntime;",
            "TokioRuntime::default()",
            "#[tokio::test]\n    async fn",
            "",
            "",
        ),
        Runtime::Smol => (
            "use orchestrator_smol::SmolRuntime;",
            "SmolRuntime::default()",
            "#[test]\n    fn",
            "smol::block_on(async {",
            "});",
        ),
        Runtime::AsyncStd => (
            "use orchestrator_async_std::AsyncStdRuntime;",
            "AsyncStdRuntime::default()",
            "#[test]\n    fn",
            "async_std::task::block_on(async {",
            "});",
        ),
    };
    TEMPLATE
        .replace("{{module}}", &names.module)
        .replace("{{Prefix}}", &names.prefix)
        .replace("{{adapter}}", adapter)
        .replace("{{runtime}}", runtime_value)
        .replace("{{test_attr}}", test_attr)
        .replace("{{open}}", test_body_open)
        .replace("{{close}}", test_body_close)
}

const TEMPLATE: &str = r#"//! The `{{module}}` feature: a job, its executor, and an orchestrator that keeps the
//! feature's state. Generated by `cargo orchestrator new`; make it yours.

use orchestrator_core::{
    Dispatcher, Event, Executor, Job, JobContext, Orchestrator, OrchestratorContext, Origin,
};

/// What to do: the job's input.
#[derive(Debug, Clone)]
pub struct {{Prefix}}Job {
    /// The input.
    pub input: String,
}

/// Published when a `{{Prefix}}Job` succeeds.
#[derive(Debug, Clone)]
pub struct {{Prefix}}Done {
    /// The job's output.
    pub output: String,
}

impl Job for {{Prefix}}Job {
    type Output = String;

    fn output_event(&self, output: &String) -> Option<impl Send + Sync + 'static> {
        Some({{Prefix}}Done {
            output: output.clone(),
        })
    }
}

/// Why a `{{Prefix}}Job` failed.
#[derive(Debug)]
pub struct {{Prefix}}Error(pub String);

impl std::fmt::Display for {{Prefix}}Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for {{Prefix}}Error {}

/// How to do it.
#[derive(Debug, Default)]
pub struct {{Prefix}}Executor;

impl Executor<{{Prefix}}Job> for {{Prefix}}Executor {
    type Error = {{Prefix}}Error;

    async fn execute(&self, job: &{{Prefix}}Job, cx: JobContext) -> Result<String, {{Prefix}}Error> {
        if job.input.is_empty() {
            return Err({{Prefix}}Error("the input is empty".into()));
        }
        cx.report_progress(0.5);
        Ok(job.input.to_uppercase())
    }
}

/// The feature's state, owned by its orchestrator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct {{Prefix}}State {
    /// How many of its jobs succeeded.
    pub done: u32,
    /// The last output.
    pub last: Option<String>,
}

/// Keeps the state: counts the outputs of the jobs it dispatched.
#[derive(Debug, Default)]
pub struct {{Prefix}}Orchestrator;

impl Orchestrator for {{Prefix}}Orchestrator {
    type State = {{Prefix}}State;

    fn on_event(&mut self, event: &Event, origin: Origin, cx: &mut OrchestratorContext<'_, {{Prefix}}State>) {
        if let (Some(done), Origin::Active) = (event.downcast_ref::<{{Prefix}}Done>(), origin) {
            cx.update(|state| {
                state.done += 1;
                state.last = Some(done.output.clone());
            });
        }
    }
}

/// A dispatcher with the feature's executor registered.
pub fn dispatcher<R: orchestrator_core::runtime::Runtime>(runtime: R) -> Dispatcher<R> {
    let dispatcher = Dispatcher::new(runtime);
    dispatcher.register({{Prefix}}Executor);
    dispatcher
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::{Dispatch, JobError};
    {{adapter}}

    {{test_attr}} {{module}}_updates_its_state_and_rejects_empty_input() {
        {{open}}
        let dispatcher = dispatcher({{runtime}});
        let feature = {{Prefix}}Orchestrator
            .builder({{Prefix}}State::default(), &dispatcher)
            .start()
            .expect("the orchestrator starts");
        let output = feature
            .dispatch({{Prefix}}Job { input: "hello".into() })
            .await
            .expect("the job succeeds")
            .value;
        assert_eq!(output, "HELLO");
        let state = feature
            .states()
            .wait_for(|s| s.done == 1)
            .await
            .expect("the state is updated");
        assert_eq!(state.last.as_deref(), Some("HELLO"));
        match dispatcher.dispatch({{Prefix}}Job { input: String::new() }).await {
            Err(JobError::Failed(failure)) => {
                assert_eq!(failure.error().to_string(), "the input is empty");
            }
            other => panic!("an empty input fails, got {other:?}"),
        }
        feature.dispose();
        {{close}}
    }
}
"#;

/// What [`scaffold`] wrote.
#[derive(Debug)]
pub struct Scaffolded {
    /// The module file.
    pub module: PathBuf,
    /// The crate root it declared the module in (`None` if it was declared already).
    pub declared_in: Option<PathBuf>,
    /// The dependencies the crate's `Cargo.toml` lacks.
    pub missing_dependencies: Vec<&'static str>,
}

/// Writes feature `feature` into the crate at `crate_dir`, for `runtime`.
///
/// # Errors
///
/// A [`ScaffoldError`]; nothing is written then.
pub fn scaffold(
    crate_dir: &Path,
    feature: &str,
    runtime: Runtime,
) -> Result<Scaffolded, ScaffoldError> {
    let names = Names::of(feature)?;
    let src = crate_dir.join("src");
    let root = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| ScaffoldError::NotACrate(crate_dir.to_owned()))?;
    let module = src.join(format!("{}.rs", names.module));
    if module.exists() || src.join(&names.module).join("mod.rs").exists() {
        return Err(ScaffoldError::Exists(module));
    }
    let read = |p: &Path| fs::read_to_string(p).map_err(|e| ScaffoldError::Io(p.to_owned(), e));
    let root_text = read(&root)?;
    let manifest = crate_dir.join("Cargo.toml");
    let manifest_text = read(&manifest).unwrap_or_default();
    fs::write(&module, render(&names, runtime))
        .map_err(|e| ScaffoldError::Io(module.clone(), e))?;
    let declaration = format!("pub mod {};", names.module);
    let declared_in = if root_text.lines().any(|l| l.trim() == declaration) {
        None
    } else {
        let mut text = root_text;
        if !text.ends_with('\n') && !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&declaration);
        text.push('\n');
        fs::write(&root, text).map_err(|e| ScaffoldError::Io(root.clone(), e))?;
        Some(root)
    };
    let mut wanted = vec!["orchestrator-core = \"0.1\""];
    wanted.extend_from_slice(runtime.dependencies());
    let missing_dependencies = wanted
        .into_iter()
        .filter(|line| {
            let name = line.split_whitespace().next().unwrap_or_default();
            !manifest_text.lines().any(|l| {
                l.trim_start().starts_with(&format!("{name} "))
                    || l.trim_start().starts_with(&format!("{name}="))
            })
        })
        .collect();
    Ok(Scaffolded {
        module,
        declared_in,
        missing_dependencies,
    })
}
