#!/usr/bin/env bash
# `cargo orchestrator new` as a newcomer uses it: a feature generated into fresh crates (a
# library on tokio, a binary on smol: cargo new's main.rs), the dependency lines the command
# prints added to their Cargo.toml as printed, then `cargo fmt --check`, a warning-free
# `cargo build` and the crates' own `cargo test` (the generated tests: on VirtualRuntime and
# on the runtime the features chose).
#
# The command was built from this checkout, so it prints the path form: this checkout's
# crates/orchestrator (package orchestrator-rs, library orchestrator; the crates are not on
# crates.io yet). Run from anywhere after `cargo build -p cargo-orchestrator`. RUNTIMES
# overrides the runtimes ("tokio smol"); the crates share a target dir of their own,
# target/scaffold.
set -euo pipefail
cd "$(dirname "$0")/.."
workspace=$PWD
bin="$workspace/target/debug/cargo-orchestrator"
fail() { echo "scaffold_check: $*" >&2; exit 1; }

scaffold_dir=$(mktemp -d)
trap 'rm -rf "$scaffold_dir"' EXIT
for rt in ${RUNTIMES:-tokio smol}; do
    case "$rt" in
        tokio) kind=--lib root=src/lib.rs ;;
        *) kind=--bin root=src/main.rs ;;
    esac
    app="$scaffold_dir/app-$rt"
    echo "--- $rt ($kind)"
    cargo new "$kind" --vcs none --quiet "$app"
    "$bin" orchestrator new user-signup --runtime "$rt" --path "$app" | tee "$scaffold_dir/out-$rt"

    # The lines as printed (the unindented ones; the other sources are indented): the
    # [dependencies] line into the table cargo new wrote, then the [dev-dependencies] table.
    mapfile -t lines < <(grep '^orchestrator-rs = ' "$scaffold_dir/out-$rt")
    [ "${#lines[@]}" = 2 ] || fail "$rt: expected 2 dependency lines, got ${#lines[@]}"
    grep -qxF 'add to the [dependencies] table of Cargo.toml:' "$scaffold_dir/out-$rt" \
        || fail "$rt: no [dependencies] instruction"
    grep -qxF '[dev-dependencies]' "$scaffold_dir/out-$rt" || fail "$rt: no [dev-dependencies] table"
    case "${lines[0]}" in
        *"path = \"$workspace/crates/orchestrator\""*) ;;
        *) fail "$rt: not this checkout's crates/orchestrator: ${lines[0]}" ;;
    esac
    case "${lines[1]}" in
        *'"test-util"'*) ;;
        *) fail "$rt: the dev-dependency lacks test-util: ${lines[1]}" ;;
    esac
    DEP="${lines[0]}" awk '{ print } /^\[dependencies\]$/ { print ENVIRON["DEP"] }' \
        "$app/Cargo.toml" >"$app/Cargo.toml.new"
    mv "$app/Cargo.toml.new" "$app/Cargo.toml"
    printf '\n[dev-dependencies]\n%s\n' "${lines[1]}" >>"$app/Cargo.toml"

    # Declared before anything else in the crate root, never after fn main.
    [ "$(grep -n . "$app/$root" | head -1)" = "1:pub mod user_signup;" ] \
        || fail "$rt: $root does not start with the declaration: $(cat "$app/$root")"

    (
        cd "$app"
        export CARGO_TARGET_DIR="$workspace/target/scaffold"
        cargo fmt --check
        # The app's own warnings (short format: `src/...: warning: ...`); dependencies' paths
        # are absolute.
        cargo build --quiet --message-format short 2>&1 | tee build.log
        if grep -E '^src/.*: warning' build.log; then fail "$rt: the generated code warns"; fi
        cargo test --quiet
    )
done
