//! `cargo orchestrator new <feature> [--runtime tokio|smol|async-std] [--path <crate>]`.

use std::path::PathBuf;
use std::process::ExitCode;

use cargo_orchestrator::{Runtime, scaffold};

const USAGE: &str =
    "usage: cargo orchestrator new <feature> [--runtime tokio|smol|async-std] [--path <crate dir>]";

fn main() -> ExitCode {
    // As a cargo subcommand, cargo passes `orchestrator` first.
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("orchestrator") {
        args.remove(0);
    }
    let mut feature = None;
    let mut runtime = Runtime::Tokio;
    let mut path = PathBuf::from(".");
    let mut args = args.into_iter();
    match args.next().as_deref() {
        Some("new") => {}
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runtime" => match args.next().map(|r| Runtime::parse(&r)) {
                Some(Ok(r)) => runtime = r,
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--path" => match args.next() {
                Some(p) => path = PathBuf::from(p),
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            other if feature.is_none() && !other.starts_with('-') => {
                feature = Some(other.to_owned())
            }
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(feature) = feature else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match scaffold(&path, &feature, runtime) {
        Ok(done) => {
            println!("wrote {}", done.module.display());
            if let Some(root) = done.declared_in {
                println!("declared the module in {}", root.display());
            }
            if !done.missing_dependencies.is_empty() {
                println!("add to [dependencies] in Cargo.toml:");
                for line in done.missing_dependencies {
                    println!("    {line}");
                }
            }
            println!("then: cargo test");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
