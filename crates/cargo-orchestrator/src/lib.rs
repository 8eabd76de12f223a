//! The scaffolding behind `cargo orchestrator new <feature>`: it writes, into a crate, a
//! module with a job, its executor, an orchestrator with its state, and tests, then declares
//! the module in the crate's `lib.rs` (or `main.rs`).
//!
//! ```text
//! cargo install --path crates/cargo-orchestrator     # in a checkout of the repository
//! cargo orchestrator new checkout --runtime smol     # in your crate
//! ```
//!
//! The generated code depends on the facade crate only (package `orchestrator-rs`, library
//! `orchestrator`: the code says `use orchestrator::...`) and names no runtime:
//! its tests run on `orchestrator::testing::VirtualRuntime` (feature `test-util`) and on
//! `orchestrator::DefaultRuntime`, the runtime the crate's features chose. `--runtime` picks
//! that feature in the dependency lines the command prints ([`dependency_lines`]).

#![forbid(unsafe_code)]

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// The runtimes the printed dependency lines can choose (features of `orchestrator-rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// tokio (the `tokio` feature, `orchestrator-rs`'s default).
    Tokio,
    /// smol (the `smol` feature).
    Smol,
    /// async-std (the `async-std` feature).
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

    /// The feature of `orchestrator-rs` that chooses this runtime.
    pub fn feature(self) -> &'static str {
        match self {
            Runtime::Tokio => "tokio",
            Runtime::Smol => "smol",
            Runtime::AsyncStd => "async-std",
        }
    }
}

/// Where the printed dependency lines take `orchestrator-rs` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// crates.io: `version = "0.1"`.
    CratesIo,
    /// The repository: `git = "https://github.com/orchestrator-rs/orchestrator"`.
    Git,
    /// A directory holding the `orchestrator-rs` crate: `path = "..."`.
    Path(PathBuf),
}

/// The repository of the `orchestrator` crates.
pub const REPOSITORY: &str = "https://github.com/orchestrator-rs/orchestrator";

/// The facade's package name, the key of the printed dependency lines. Its library is named
/// `orchestrator` (`use orchestrator::...`); on crates.io the package name `orchestrator`
/// belongs to another project.
pub const PACKAGE: &str = "orchestrator-rs";

impl Source {
    /// The source that works for this build of the command: the `crates/orchestrator` of the
    /// checkout it was built from (`cargo install --path crates/cargo-orchestrator`, `cargo
    /// build`), if that directory still holds the crate; else crates.io if the command was
    /// built from a published package (its directory has the `Cargo.toml.orig` that `cargo
    /// package` writes); else the git repository.
    pub fn for_this_build() -> Source {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        if let Some(path) = facade_beside(here) {
            Source::Path(path)
        } else if here.join("Cargo.toml.orig").is_file() {
            Source::CratesIo
        } else {
            Source::Git
        }
    }
}

/// The facade crate (package `orchestrator-rs`) beside the scaffolder's crate directory
/// `here` (its `../orchestrator`), if it is there.
fn facade_beside(here: &Path) -> Option<PathBuf> {
    let dir = here.parent()?.join("orchestrator");
    let manifest = fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    manifest
        .lines()
        .any(|l| l.trim() == format!("name = \"{PACKAGE}\""))
        .then_some(dir)
}

/// The two lines a crate needs for the generated code: `orchestrator-rs` with the runtime's
/// feature, and the same crate with `test-util` added for the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyLines {
    /// The line for `[dependencies]`.
    pub dependency: String,
    /// The line for `[dev-dependencies]`.
    pub dev_dependency: String,
}

/// The dependency lines for `runtime` from `source`.
///
/// Cargo unifies the features of one package across `[dependencies]` and
/// `[dev-dependencies]` when it builds tests (and only then, with resolver 2, the default
/// since edition 2021), so `cargo test` gets `test-util` and `cargo build` does not. The dev
/// line repeats `default-features = false` and the runtime: a default feature asked for by
/// either line is on, and tokio would then be the tests' `DefaultRuntime`. Both lines name
/// the same source, or Cargo would see two different packages.
///
/// ```
/// use cargo_orchestrator::{Runtime, Source, dependency_lines};
/// let smol = dependency_lines(Runtime::Smol, &Source::CratesIo);
/// assert_eq!(
///     smol.dependency,
///     r#"orchestrator-rs = { version = "0.1", default-features = false, features = ["smol"] }"#
/// );
/// assert_eq!(
///     smol.dev_dependency,
///     r#"orchestrator-rs = { version = "0.1", default-features = false, features = ["smol", "test-util"] }"#
/// );
/// assert_eq!(dependency_lines(Runtime::Tokio, &Source::CratesIo).dependency, r#"orchestrator-rs = "0.1""#);
/// ```
pub fn dependency_lines(runtime: Runtime, source: &Source) -> DependencyLines {
    let from = match source {
        Source::CratesIo => "version = \"0.1\"".to_owned(),
        Source::Git => format!("git = \"{REPOSITORY}\""),
        Source::Path(dir) => format!("path = {}", toml_string(&dir.display().to_string())),
    };
    let (dependency, dev_dependency) = match runtime {
        Runtime::Tokio if *source == Source::CratesIo => (
            format!("{PACKAGE} = \"0.1\""),
            format!("{PACKAGE} = {{ {from}, features = [\"test-util\"] }}"),
        ),
        Runtime::Tokio => (
            format!("{PACKAGE} = {{ {from} }}"),
            format!("{PACKAGE} = {{ {from}, features = [\"test-util\"] }}"),
        ),
        other => {
            let feature = other.feature();
            (
                format!(
                    "{PACKAGE} = {{ {from}, default-features = false, features = [\"{feature}\"] }}"
                ),
                format!(
                    "{PACKAGE} = {{ {from}, default-features = false, features = [\"{feature}\", \"test-util\"] }}"
                ),
            )
        }
    };
    DependencyLines {
        dependency,
        dev_dependency,
    }
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Why nothing was written.
#[derive(Debug)]
#[non_exhaustive]
pub enum ScaffoldError {
    /// The feature name cannot be a Rust module name (the message says why).
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
                "`{name}` cannot be a feature name: {}",
                why_bad(name).unwrap_or_else(|| "it is not a usable Rust module name".into())
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

/// Crate names a module of the crate root must not shadow: the generated code and the
/// crate's own code use them as paths (`use orchestrator::...`, `std::fmt`).
const SHADOWED_CRATES: &[&str] = &["std", "core", "alloc", "orchestrator"];

/// The longest module name (the generated code is rustfmt-clean up to this length; the tests
/// check every length).
pub const MAX_NAME_LEN: usize = 40;

/// Why `feature` cannot be a feature name, or `None` if it can.
fn why_bad(feature: &str) -> Option<String> {
    if feature.is_empty() {
        return Some("it is empty".into());
    }
    if !feature.is_ascii() {
        return Some(
            "module files need ASCII names: use ASCII letters, digits, `-` or `_`, starting with a letter".into(),
        );
    }
    if !feature
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Some("use ASCII letters, digits, `-` or `_`, starting with a letter".into());
    }
    if !feature.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Some("it must start with a letter".into());
    }
    let module = snake_words(feature).join("_");
    if KEYWORDS.contains(&module.as_str()) {
        return Some(format!("`{module}` is a Rust keyword"));
    }
    if SHADOWED_CRATES.contains(&module.as_str()) {
        return Some(format!(
            "a module `{module}` would shadow the crate `{module}`"
        ));
    }
    if module == "lib" || module == "main" {
        return Some(format!(
            "src/{module}.rs is a crate root (its module would be a second crate root)"
        ));
    }
    if module.len() > MAX_NAME_LEN {
        return Some(format!(
            "`{module}` is longer than {MAX_NAME_LEN} characters"
        ));
    }
    None
}

/// The lower-case words of `feature`: split on `-`/`_` and before upper-case letters that
/// follow lower-case ones or digits.
fn snake_words(feature: &str) -> Vec<String> {
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
    words
}

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
    /// assert!(Names::of("std").is_err() && Names::of("über").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ScaffoldError::BadName`]: the name is empty, has characters other than ASCII
    /// letters, digits, `-` and `_`, does not start with a letter, is a keyword or the name of
    /// a crate it would shadow (`std`, `core`, `alloc`, `orchestrator`) or the name of a crate
    /// root's file (`lib`, `main`) once in snake case, or is longer than [`MAX_NAME_LEN`].
    pub fn of(feature: &str) -> Result<Self, ScaffoldError> {
        if why_bad(feature).is_some() {
            return Err(ScaffoldError::BadName(feature.to_owned()));
        }
        let words = snake_words(feature);
        let module = words.join("_");
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

/// rustfmt's default `max_width`.
const MAX_WIDTH: usize = 100;

/// The generated module's source for `names`, whose dependency lines choose `runtime`.
///
/// The source is what `rustfmt --edition 2024` and `rustfmt --edition 2021` write (default
/// configuration), for every name [`Names::of`] accepts: no `use` brace group mixes lower-case
/// and upper-case names, which the two style editions sort differently.
pub fn render(names: &Names, runtime: Runtime) -> String {
    let p = &names.prefix;
    // The lines whose length depends on the name, in rustfmt's one-line form while it fits.
    let execute_one_line = format!(
        "    async fn execute(&self, job: &{p}Job, cx: JobContext) -> Result<String, Self::Error> {{"
    );
    let execute = if execute_one_line.len() <= MAX_WIDTH {
        execute_one_line
    } else {
        format!(
            "    async fn execute(\n        &self,\n        job: &{p}Job,\n        cx: JobContext,\n    ) -> Result<String, Self::Error> {{"
        )
    };
    let impl_one_line = format!("impl Executor<{p}Job> for {p}Executor {{");
    let impl_executor = if impl_one_line.len() <= MAX_WIDTH {
        impl_one_line
    } else {
        format!("impl Executor<{p}Job>\n    for {p}Executor\n{{")
    };
    TEMPLATE
        .replace("{{execute}}", &execute)
        .replace("{{impl_executor}}", &impl_executor)
        .replace("{{module}}", &names.module)
        .replace("{{Prefix}}", p)
        .replace("{{runtime}}", runtime.feature())
}

const TEMPLATE: &str = r#"//! The `{{module}}` feature: a job, its executor, and an orchestrator that keeps the
//! feature's state. Generated by `cargo orchestrator new`; make it yours.
//!
//! Nothing here names a runtime. The tests run the feature on `VirtualRuntime`, a
//! deterministic runtime with a virtual clock (the `test-util` feature of `orchestrator`,
//! in `[dev-dependencies]`), and on `DefaultRuntime`, the runtime the features of
//! `orchestrator` chose (`{{runtime}}` when this was generated). They use the test kit of
//! `orchestrator::testing`: outcome checks (`expect`), a fake executor and a `Scenario`
//! that checks the states the orchestrator goes through.

use orchestrator::runtime::Runtime;
use orchestrator::{
    Dispatcher, Event, Executor, Job, JobContext, Orchestrator, OrchestratorContext, Origin,
};

/// What to do: the job's input.
#[derive(Debug, Clone)]
pub struct {{Prefix}}Job {
    /// The input.
    pub input: String,
}

/// Published when a job succeeds.
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

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum {{Prefix}}Error {
    /// The input was empty.
    EmptyInput,
}

impl std::fmt::Display for {{Prefix}}Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EmptyInput => f.write_str("the input is empty"),
        }
    }
}

impl std::error::Error for {{Prefix}}Error {}

/// How to do it.
#[derive(Debug, Default)]
pub struct {{Prefix}}Executor;

{{impl_executor}}
    type Error = {{Prefix}}Error;

{{execute}}
        if job.input.is_empty() {
            return Err({{Prefix}}Error::EmptyInput);
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

    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, Self::State>,
    ) {
        if !origin.is_active() {
            return;
        }
        if let Some(done) = event.downcast_ref::<{{Prefix}}Done>() {
            cx.update(|state| {
                state.done += 1;
                state.last = Some(done.output.clone());
            });
        }
    }
}

/// A dispatcher on `runtime` with the feature's executor registered.
pub fn dispatcher<R: Runtime>(runtime: R) -> Dispatcher<R> {
    let dispatcher = Dispatcher::new(runtime);
    dispatcher.register({{Prefix}}Executor);
    dispatcher
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator::testing::expect;
    use orchestrator::testing::{FakeExecutor, Scenario, VirtualRuntime};
    use orchestrator::{DefaultRuntime, Dispatch};

    /// Dispatches a job through the orchestrator (its state counts the output), then one with
    /// an empty input (it fails).
    async fn exercise<R: Runtime>(dispatcher: Dispatcher<R>) {
        let feature = {{Prefix}}Orchestrator
            .builder(Default::default(), &dispatcher)
            .start()
            .expect("the orchestrator starts");
        let hello = {{Prefix}}Job {
            input: "hello".into(),
        };
        let output = feature.dispatch(hello).await.expect("the job succeeds");
        assert_eq!(output.value, "HELLO");
        let state = feature
            .states()
            .wait_for(|s| s.done == 1)
            .await
            .expect("the state is updated");
        assert_eq!(state.last.as_deref(), Some("HELLO"));

        let empty = {{Prefix}}Job {
            input: String::new(),
        };
        let outcome = dispatcher.dispatch(empty).await;
        expect::failed_after(&outcome, 1, "the input is empty").unwrap();
        feature.dispose();
    }

    /// On a virtual clock: deterministic, no threads, no waiting.
    #[test]
    fn updates_its_state_and_rejects_empty_input() {
        let rt = VirtualRuntime::new();
        rt.block_on(exercise(dispatcher(rt.clone())));
    }

    /// On the runtime the features of `orchestrator` chose.
    #[test]
    fn runs_on_the_default_runtime() {
        orchestrator::block_on(exercise(dispatcher(DefaultRuntime::default())));
    }

    /// The orchestrator alone, with a fake executor: the states it goes through.
    #[test]
    fn counts_what_a_fake_executor_returns() {
        type Fake = FakeExecutor<{{Prefix}}Job>;
        let fake = Fake::succeed("HELLO".to_string());
        let recorder = fake.recorder();
        let job = {{Prefix}}Job {
            input: "hello".into(),
        };
        let done = {{Prefix}}State {
            done: 1,
            last: Some("HELLO".into()),
        };
        let feature = {{Prefix}}Orchestrator;
        Scenario::new(feature, Default::default())
            .given(move |dispatcher| {
                dispatcher.register(fake);
            })
            .when(move |act| {
                act.dispatch(job);
            })
            .then_states([done])
            .run()
            .unwrap();
        assert_eq!(recorder.attempts(), 1);
    }
}
"#;

/// What [`scaffold`] wrote.
#[derive(Debug)]
pub struct Scaffolded {
    /// The feature's Rust names (`module` differs from the feature name given when Rust
    /// spells it differently: `Bad-Name` is `bad_name`).
    pub names: Names,
    /// The module file.
    pub module: PathBuf,
    /// The crate root it declared the module in (`None` if it was declared already).
    pub declared_in: Option<PathBuf>,
    /// The facade's entry of the crate's `[dependencies]` (`orchestrator-rs`, or
    /// `orchestrator` with `package = "orchestrator-rs"`), if it has one.
    pub dependency: Option<String>,
    /// The facade's entry of the crate's `[dev-dependencies]`, if it has one.
    pub dev_dependency: Option<String>,
    /// The crate depends on a package named `orchestrator` (`[dependencies]` or
    /// `[dev-dependencies]`): on crates.io that is another project's crate, and a checkout's
    /// path or git entry of that name no longer resolves. Its entry should be replaced by
    /// the printed line.
    pub foreign_orchestrator: bool,
    /// The crate's `Cargo.toml` has a `[dependencies]` table (lines go into it).
    pub has_dependencies_table: bool,
    /// The crate's `Cargo.toml` has a `[dev-dependencies]` table.
    pub has_dev_dependencies_table: bool,
}

impl Scaffolded {
    /// The crate's `Cargo.toml` has no facade (`orchestrator-rs`) in `[dependencies]`.
    pub fn needs_dependency(&self) -> bool {
        self.dependency.is_none()
    }

    /// The crate's `Cargo.toml` has no facade (`orchestrator-rs`) with `test-util` in
    /// `[dev-dependencies]`.
    pub fn needs_dev_dependency(&self) -> bool {
        !self
            .dev_dependency
            .as_ref()
            .is_some_and(|e| e.contains("test-util"))
    }
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
    let manifest_text = read(&crate_dir.join("Cargo.toml")).unwrap_or_default();
    fs::write(&module, render(&names, runtime))
        .map_err(|e| ScaffoldError::Io(module.clone(), e))?;
    let declared_in = match declare_module(&root_text, &names.module) {
        None => None,
        Some(text) => {
            fs::write(&root, text).map_err(|e| ScaffoldError::Io(root.clone(), e))?;
            Some(root)
        }
    };
    Ok(Scaffolded {
        names,
        module,
        declared_in,
        dependency: facade_entry(&manifest_text, "dependencies"),
        dev_dependency: facade_entry(&manifest_text, "dev-dependencies"),
        foreign_orchestrator: ["dependencies", "dev-dependencies"].iter().any(|table| {
            manifest_entry(&manifest_text, table, "orchestrator")
                .is_some_and(|e| !e.contains(&format!("\"{PACKAGE}\"")))
        }),
        has_dependencies_table: manifest_has_table(&manifest_text, "dependencies"),
        has_dev_dependencies_table: manifest_has_table(&manifest_text, "dev-dependencies"),
    })
}

/// The facade's entry in table `table` of `manifest`: an `orchestrator-rs` entry, or an
/// `orchestrator` entry renamed from it (`package = "orchestrator-rs"`).
///
/// ```
/// use cargo_orchestrator::facade_entry;
/// let renamed = "[dependencies]\norchestrator = { package = \"orchestrator-rs\", path = \"../o\" }\n";
/// assert!(facade_entry(renamed, "dependencies").is_some());
/// assert!(facade_entry("[dependencies]\norchestrator-rs = \"0.1\"\n", "dependencies").is_some());
/// // Another project's crate.
/// assert_eq!(facade_entry("[dependencies]\norchestrator = \"0.2\"\n", "dependencies"), None);
/// ```
pub fn facade_entry(manifest: &str, table: &str) -> Option<String> {
    manifest_entry(manifest, table, PACKAGE).or_else(|| {
        manifest_entry(manifest, table, "orchestrator")
            .filter(|e| e.contains(&format!("\"{PACKAGE}\"")))
    })
}

/// Whether `manifest` has the table `[table]`.
pub fn manifest_has_table(manifest: &str, table: &str) -> bool {
    manifest.lines().any(|line| {
        let line: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        line.strip_prefix('[')
            .and_then(|l| l.split(']').next())
            .is_some_and(|header| header == table)
            && !line.starts_with("[[")
    })
}

/// The text of dependency `name` in table `table` (`dependencies`, `dev-dependencies`) of
/// `manifest`: its `name = ...` line or its `[table.name]` table, or `None`.
pub fn manifest_entry(manifest: &str, table: &str, name: &str) -> Option<String> {
    let own_table = format!("{table}.{name}");
    let mut current = String::new();
    let mut entry: Option<String> = None;
    for line in manifest.lines() {
        let trimmed = line.trim();
        if let Some(header) = trimmed.strip_prefix('[') {
            let header = header.split(']').next().unwrap_or_default();
            current = header.chars().filter(|c| !c.is_whitespace()).collect();
            if current == own_table {
                entry = Some(String::new());
            }
            continue;
        }
        if current == own_table {
            if let Some(entry) = entry.as_mut() {
                entry.push_str(trimmed);
                entry.push('\n');
            }
        } else if current == table {
            let key = trimmed
                .split(['=', '.'])
                .next()
                .unwrap_or_default()
                .trim()
                .trim_matches('"');
            if key == name && trimmed.len() > key.len() {
                return Some(trimmed.to_owned());
            }
        }
    }
    entry
}

/// A top-level piece of a crate root's leading section.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    /// Blank lines, or `//` comments.
    Gap,
    /// An inner doc comment, an inner attribute, a `use` or an `extern crate`.
    Header,
    /// A `mod name;` declaration (with its outer attributes and doc comments).
    Mod(String),
}

/// The name declared by `line` if it is a file module declaration (`mod name;`, `pub mod
/// name;`, `pub(crate) mod name;`).
fn declared_module(line: &str) -> Option<&str> {
    let mut rest = line.trim();
    if let Some(after) = rest.strip_prefix("pub") {
        rest = after.trim_start();
        if let Some(after) = rest.strip_prefix('(') {
            rest = after.split_once(')')?.1.trim_start();
        }
    }
    let rest = rest.strip_prefix("mod")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let (name, after) = rest.trim_start().split_once(';')?;
    let after = after.trim();
    (!name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && (after.is_empty() || after.starts_with("//")))
    .then_some(name.trim())
}

/// The crate root `root` with `pub mod <module>;` declared where Rust users expect it, or
/// `None` if the root declares the module already.
///
/// The declaration goes among the existing `mod` declarations of the file's leading section
/// (its inner attributes, doc comments, `use`s and `mod`s before the first other item): at
/// its sorted place in the last run of them if that run is sorted (as rustfmt keeps it),
/// else after the last one. With no `mod` declaration there, it goes after the inner
/// attributes, doc comments and `use`s, before the first item, in a paragraph of its own.
/// Never after `fn main`.
///
/// ```
/// use cargo_orchestrator::declare_module;
/// let main = "use std::env;\n\nfn main() {}\n";
/// assert_eq!(
///     declare_module(main, "checkout").unwrap(),
///     "use std::env;\n\npub mod checkout;\n\nfn main() {}\n"
/// );
/// let lib = "mod b;\nmod d;\n\npub fn f() {}\n";
/// assert_eq!(
///     declare_module(lib, "c").unwrap(),
///     "mod b;\npub mod c;\nmod d;\n\npub fn f() {}\n"
/// );
/// assert_eq!(declare_module("pub mod c;\n", "c"), None);
/// ```
pub fn declare_module(root: &str, module: &str) -> Option<String> {
    let lines: Vec<&str> = root.split_inclusive('\n').collect();
    if lines.iter().any(|l| declared_module(l) == Some(module)) {
        return None;
    }
    // The leading section, as (first line, end line exclusive, piece).
    let mut pieces: Vec<(usize, usize, Piece)> = Vec::new();
    let mut i = 0;
    'section: while i < lines.len() {
        let line = lines[i].trim_end();
        let start = i;
        if line.trim().is_empty() || (line.starts_with("//") && !line.starts_with("///")) {
            if line.starts_with("//!") {
                pieces.push((i, i + 1, Piece::Header));
            } else {
                pieces.push((i, i + 1, Piece::Gap));
            }
            i += 1;
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            break; // not at top level: the section is over
        }
        if line.starts_with("#![") {
            i = end_of_attribute(&lines, i);
            pieces.push((start, i, Piece::Header));
            continue;
        }
        // Outer attributes and doc comments belong to the item that follows them.
        while i < lines.len() {
            let l = lines[i].trim_end();
            if l.starts_with("///") {
                i += 1;
            } else if l.starts_with("#[") {
                i = end_of_attribute(&lines, i);
            } else {
                break;
            }
        }
        let Some(item) = lines.get(i).map(|l| l.trim_end()) else {
            break;
        };
        if let Some(name) = declared_module(item) {
            pieces.push((start, i + 1, Piece::Mod(name.to_owned())));
            i += 1;
            continue;
        }
        let is_use = ["use ", "pub use ", "extern crate "]
            .iter()
            .any(|p| item.starts_with(p))
            || (item.starts_with("pub(") && item.contains(") use "));
        if is_use {
            // A `use` ends at the line that ends with `;`.
            while i < lines.len() {
                let done = lines[i].trim_end().ends_with(';');
                i += 1;
                if done {
                    pieces.push((start, i, Piece::Header));
                    continue 'section;
                }
            }
        }
        break; // the first other item: the section is over
    }

    // The file's line ending (Windows checkouts may have CRLF).
    let nl = if root.contains("\r\n") { "\r\n" } else { "\n" };
    let declaration = format!("pub mod {module};{nl}");
    let joined = |before: usize, insert: &str, after: usize| {
        let mut text: String = lines[..before].concat();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push_str(nl);
        }
        text.push_str(insert);
        text.push_str(&lines[after..].concat());
        text
    };
    if let Some(last) = pieces.iter().rposition(|p| matches!(p.2, Piece::Mod(_))) {
        // The last run of consecutive `mod` declarations.
        let first = pieces[..=last]
            .iter()
            .rposition(|p| !matches!(p.2, Piece::Mod(_)))
            .map_or(0, |k| k + 1);
        let run = &pieces[first..=last];
        let names: Vec<&str> = run
            .iter()
            .filter_map(|p| match &p.2 {
                Piece::Mod(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        let sorted = names.windows(2).all(|w| w[0] <= w[1]);
        let at = if sorted {
            run.iter()
                .zip(&names)
                .find(|(_, name)| **name > module)
                .map_or(run[run.len() - 1].1, |(p, _)| p.0)
        } else {
            run[run.len() - 1].1
        };
        return Some(joined(at, &declaration, at));
    }
    // After the last header piece, in a paragraph of its own.
    let after_header = pieces
        .iter()
        .rposition(|p| p.2 == Piece::Header)
        .map_or(0, |k| pieces[k].1);
    let mut insert = String::new();
    if after_header > 0 {
        insert.push_str(nl);
    }
    insert.push_str(&declaration);
    let next = lines[after_header..]
        .iter()
        .position(|l| !l.trim().is_empty())
        .map(|k| after_header + k);
    match next {
        // Keep one blank line before what follows.
        Some(next) => {
            insert.push_str(nl);
            Some(joined(after_header, &insert, next))
        }
        None => Some(joined(after_header, &insert, lines.len())),
    }
}

/// The line after the attribute starting at line `i` (`#[...]` or `#![...]`, perhaps over
/// several lines).
fn end_of_attribute(lines: &[&str], mut i: usize) -> usize {
    let mut depth = 0i32;
    while i < lines.len() {
        for c in lines[i].chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
        }
        i += 1;
        if depth <= 0 {
            break;
        }
    }
    i
}
