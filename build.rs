//! Records the git commit the binary is built from, as `EVENTFLOW_BUILD_COMMIT` (with `-dirty`
//! when tracked files had uncommitted changes), so that `eventflow bench` labels its results
//! with the build that produced them rather than with whatever the current folder holds.
//! Outside a git checkout nothing is recorded and the bench says "unknown".

use std::process::{Command, Output};

fn main() {
    // Rerun on a new commit or checkout (the reflog), a staged change (the index) and any edit
    // of the sources (so `-dirty` stays true to what is compiled).
    for path in [
        "src",
        "benches",
        "build.rs",
        "Cargo.toml",
        "Cargo.lock",
        ".git/HEAD",
        ".git/index",
        ".git/logs/HEAD",
    ] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let git = |args: &[&str]| -> Option<Output> {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return;
    };
    let mut commit = String::from_utf8_lossy(&head.stdout).trim().to_string();
    if commit.is_empty() {
        return;
    }
    if git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|o| !o.stdout.is_empty())
    {
        commit.push_str("-dirty");
    }
    println!("cargo:rustc-env=EVENTFLOW_BUILD_COMMIT={commit}");
}
