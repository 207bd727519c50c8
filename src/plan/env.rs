//! The environment checks: everything about files that can be known before a run starts.
//!
//! Why here and not where the files are opened: a run that fails half-way leaves some outputs
//! written and others not, and its error has no place in the pipeline file to point at. These
//! checks run before anything is created, and report every problem at once as diagnostics.
//!
//! - [`check_files`] is phase 4 of [`super::build`]: input files open, CSV headers hold the
//!   schema, no two sinks write one file, no sink writes a file the run writes itself.
//! - [`check_outputs`] needs the output folder, which only a run knows (`--out`):
//!   `runtime::run` calls it before it creates anything. The folder and every output file must
//!   be creatable and writable, and no output may be one of the input files.

use super::{NodeKind, Plan, PlanNode};
use crate::connectors::{self, SinkConfig, SinkTarget};
use crate::diag::Diagnostic;
use crate::spec::NodeSpec;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Files every run writes into its output folder, besides the sinks'.
pub const RUN_FILES: [&str; 2] = ["dead_letters.jsonl", "summary.json"];

/// Phase 4: input files and sink paths, in the plan's node order (`specs[i]` declares
/// `nodes[i]`).
pub(super) fn check_files(nodes: &[PlanNode], specs: &[&NodeSpec]) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut outputs: HashMap<PathBuf, &NodeSpec> = HashMap::new();
    for (n, node) in nodes.iter().zip(specs) {
        match &n.kind {
            NodeKind::Source(cfg) => {
                if let Err(d) = connectors::check_source_file(cfg) {
                    diags.push(*d);
                }
            }
            NodeKind::Sink(SinkConfig { target, .. }) => {
                let p: PathBuf = match target {
                    SinkTarget::File(p) => p
                        .components()
                        .filter(|c| !matches!(c, std::path::Component::CurDir))
                        .collect(),
                    SinkTarget::Stdout => PathBuf::from("<stdout>"),
                    SinkTarget::Amqp { .. } | SinkTarget::Kafka { .. } => continue,
                };
                if RUN_FILES.iter().any(|r| p == Path::new(r)) {
                    diags.push(
                        Diagnostic::error(
                            "E0403",
                            format!(
                                "sink `{}` would overwrite the run's `{}`",
                                node.name.value,
                                p.display()
                            ),
                        )
                        .at(node.name.span.clone(), "this sink's file")
                        .help("set another `path`: every run writes `dead_letters.jsonl` and `summary.json`"),
                    );
                }
                if p.starts_with(crate::connectors::commit_log::RECOVERY_DIR) {
                    diags.push(
                        Diagnostic::error(
                            "E0403",
                            format!(
                                "sink `{}` would write into the run's recovery folder `{}`",
                                node.name.value,
                                crate::connectors::commit_log::RECOVERY_DIR
                            ),
                        )
                        .at(node.name.span.clone(), "this sink's file")
                        .help("set another `path`: the folder holds the run's commit log"),
                    );
                }
                if let Some(first) = outputs.insert(p.clone(), node) {
                    diags.push(
                        Diagnostic::error("E0403", format!("two sinks write `{}`", p.display()))
                            .at(node.name.span.clone(), "second sink")
                            .also(first.name.span.clone(), "first sink")
                            .help("give one of them a different `path`"),
                    );
                }
            }
            NodeKind::Transform(_) => {}
        }
    }
    diags
}

/// Checks that a run of `plan` can write its outputs into `out_dir` without touching its
/// inputs: the folder can be created (or exists) and is writable, each output file can be
/// created or overwritten, and none of them is an input file. Creates nothing.
///
/// # Errors
/// Every problem found, as diagnostics (codes E0404 and E0405) that name the file and say what
/// to do.
pub fn check_outputs(plan: &Plan, out_dir: &Path) -> Result<(), Vec<Diagnostic>> {
    let mut diags = Vec::new();
    if let Err(why) = can_hold_files(out_dir) {
        diags.push(
            Diagnostic::error(
                "E0404",
                format!(
                    "cannot write the output folder `{}`: {why}",
                    out_dir.display()
                ),
            )
            .help("choose another folder with `--out`, or fix this one's permissions"),
        );
        // Every file in it would fail for the same reason: one message is enough.
        return Err(diags);
    }
    let sinks = plan.nodes.iter().filter_map(|n| match &n.kind {
        NodeKind::Sink(
            cfg @ SinkConfig {
                target: SinkTarget::File(rel),
                ..
            },
        ) => Some((Some(cfg), rel.as_path())),
        _ => None,
    });
    let run_files = RUN_FILES.iter().map(|f| (None, Path::new(f)));
    for (sink, rel) in sinks.chain(run_files) {
        let path = out_dir.join(rel);
        let what = match sink {
            Some(cfg) => format!("sink `{}`", cfg.name),
            None => format!("the run's `{}`", rel.display()),
        };
        let at = |d: Diagnostic| match sink {
            Some(cfg) => d.at(cfg.path_span.clone(), "this sink's file"),
            None => d,
        };
        if let Some((source, input)) = input_at(plan, &path) {
            diags.push(at(Diagnostic::error(
                "E0405",
                format!(
                    "{what} would overwrite input file `{}` of source `{source}`",
                    input.display()
                ),
            )
            .help(
                "choose another `--out` folder or sink `path`: a run never writes its inputs",
            )));
        } else if let Err(why) = can_create_file(&path) {
            diags.push(at(Diagnostic::error(
                "E0404",
                format!("{what} cannot write `{}`: {why}", path.display()),
            )
            .help(
                "choose another `--out` folder or sink `path`, or fix the permissions",
            )));
        }
    }
    if diags.is_empty() {
        Ok(())
    } else {
        Err(diags)
    }
}

/// The source whose input file `path` is (the same file, also through links), if any.
fn input_at<'p>(plan: &'p Plan, path: &Path) -> Option<(&'p str, &'p Path)> {
    let out = std::fs::metadata(path).ok()?;
    plan.nodes.iter().find_map(|n| match &n.kind {
        NodeKind::Source(src) => std::fs::metadata(&src.path)
            .ok()
            .filter(|input| same_file(input, &out))
            .map(|_| (n.name.as_str(), src.path.as_path())),
        _ => None,
    })
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false
}

/// Whether a folder exists at `dir` or can be created there, and files can be created in it.
fn can_hold_files(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err("it is a file, not a folder".into()),
        Ok(_) if !writable(dir) => Err("it is not writable (permission denied)".into()),
        Ok(_) => Ok(()),
        Err(_) => creatable_under(dir),
    }
}

/// Whether a file can be created at `path` (with any missing folders), or overwritten.
fn can_create_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err("it is a folder".into()),
        Ok(_) if !writable(path) => Err("it is not writable (permission denied)".into()),
        Ok(_) => Ok(()),
        Err(_) => creatable_under(path),
    }
}

/// For a `path` that does not exist: whether its nearest existing ancestor is a writable folder,
/// so that the missing folders (and the file) can be created.
fn creatable_under(path: &Path) -> Result<(), String> {
    let ancestor = path
        .ancestors()
        .skip(1)
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find(|a| std::fs::symlink_metadata(a).is_ok())
        .unwrap_or(Path::new("."));
    match std::fs::metadata(ancestor) {
        Ok(m) if m.is_dir() => {
            if writable(ancestor) {
                Ok(())
            } else {
                Err(format!(
                    "`{}` is not writable (permission denied)",
                    ancestor.display()
                ))
            }
        }
        Ok(_) => Err(format!("`{}` is a file, not a folder", ancestor.display())),
        Err(e) => Err(format!("`{}`: {e}", ancestor.display())),
    }
}

/// Whether this process may write `path` (for a folder: create files in it). Asks the kernel,
/// which knows about owners, groups, ACLs, read-only mounts and root.
#[cfg(unix)]
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mode = if path.is_dir() {
        libc::W_OK | libc::X_OK
    } else {
        libc::W_OK
    };
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c_path.as_ptr(), mode) == 0 }
}

#[cfg(not(unix))]
fn writable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.permissions().readonly())
}
