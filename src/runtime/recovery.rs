//! Crash recovery of an output folder: at the start of a run, decides whether it starts afresh
//! or resumes an unfinished run there, and prepares `.eventflow/` accordingly.
//!
//! `.eventflow/run.json` identifies the run ([`Manifest`]); `.eventflow/commits.log` holds what
//! each file sink committed ([`crate::connectors::commit_log`]) and, once the run finished, a
//! `complete` line. A folder with a manifest but no `complete` line holds an unfinished run.

use super::manifest::Manifest;
use super::RunError;
use crate::connectors::commit_log::{Commit, CommitLog, LogState};
use crate::connectors::{SinkMode, SinkTarget};
use crate::plan::{NodeKind, Plan};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::connectors::commit_log::RECOVERY_DIR as DIR;

/// How a run commits its outputs and resumes unfinished runs.
#[derive(Clone, Debug)]
pub struct RecoveryOptions {
    /// Commit file sinks at most this often (and at the end). `None` turns recovery off: no
    /// `.eventflow/` is kept and nothing is resumed.
    pub commit_interval: Option<Duration>,
    /// Fail unless the output folder holds an unfinished run of the same pipeline and inputs
    /// (`--resume`). Without it, such a run is resumed when found, and anything else is started
    /// afresh.
    pub require_resume: bool,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        RecoveryOptions {
            commit_interval: Some(Duration::from_secs(1)),
            require_resume: false,
        }
    }
}

/// A run's recovery state, ready for the sink writers.
pub struct Prepared {
    /// The commit log, open for appending.
    pub log: Arc<CommitLog>,
    /// How often to commit.
    pub interval: Duration,
    /// Resuming: the last commit of each updates file sink that had one, by sink name.
    pub resume: BTreeMap<String, Commit>,
    /// Whether this run resumes an interrupted one (live sources replay their journals).
    pub resuming: bool,
}

/// What the output folder holds.
#[derive(Debug, PartialEq)]
enum Found {
    /// No recorded run.
    Nothing,
    /// A run that finished.
    Completed,
    /// An unfinished run that this run may resume, with its commits.
    Resumable(LogState),
    /// An unfinished run that this run may not resume, and why.
    Different(String),
}

/// What a run will do with the output folder's recovery state, decided without writing
/// anything ([`decide`]); [`apply`] carries it out.
pub struct Decision {
    /// Commit interval; `None`: recovery is off.
    interval: Option<Duration>,
    /// This run's identity (hashed only when recovery is on).
    manifest: Option<Manifest>,
    /// The unfinished run to resume, with its commits.
    state: Option<LogState>,
    /// Why an unfinished run found there is not resumed (a warning to print).
    warning: Option<String>,
}

/// Prepares `.eventflow/` in `out_dir` for a run of `plan`: resumes an unfinished run of the same
/// pipeline and inputs, or starts afresh. Prints what it does on stderr. `Ok(None)` when
/// recovery is off.
pub fn prepare(
    plan: &Plan,
    out_dir: &Path,
    opts: &RecoveryOptions,
) -> Result<Option<Prepared>, RunError> {
    apply(plan, out_dir, decide(plan, out_dir, opts, None)?)
}

/// Decides, reading but not writing the output folder, whether a run of `plan` resumes the run
/// there or starts afresh; fails if `--resume` cannot be honoured. `manifest` is this run's
/// identity if it was already computed.
pub fn decide(
    plan: &Plan,
    out_dir: &Path,
    opts: &RecoveryOptions,
    manifest: Option<Manifest>,
) -> Result<Decision, RunError> {
    let Some(interval) = opts.commit_interval else {
        return Ok(Decision {
            interval: None,
            manifest: None,
            state: None,
            warning: None,
        });
    };
    let manifest = match manifest {
        Some(m) => m,
        None => Manifest::of(plan).map_err(|(path, source)| RunError::Io {
            action: "cannot read input file",
            path,
            source,
        })?,
    };
    let found = examine(plan, out_dir, &manifest)?;
    let refuse = |reason: String| RunError::Resume {
        out: out_dir.to_path_buf(),
        reason,
    };
    let (state, warning) = match found {
        Found::Resumable(state) => (Some(state), None),
        Found::Nothing if opts.require_resume => {
            return Err(refuse(format!(
                "it holds no interrupted run (no `{DIR}/run.json`)"
            )))
        }
        Found::Completed if opts.require_resume => {
            return Err(refuse(
                "its run completed, so there is nothing to resume".into(),
            ))
        }
        Found::Different(why) if opts.require_resume => return Err(refuse(why)),
        Found::Different(why) => (None, Some(why)),
        Found::Nothing | Found::Completed => (None, None),
    };
    Ok(Decision {
        interval: Some(interval),
        manifest: Some(manifest),
        state,
        warning,
    })
}

/// Carries out a [`decide`]d start: resets or reopens `.eventflow/` (prints what it does).
pub fn apply(
    plan: &Plan,
    out_dir: &Path,
    decision: Decision,
) -> Result<Option<Prepared>, RunError> {
    let dir = out_dir.join(DIR);
    let (Some(interval), Some(manifest)) = (decision.interval, decision.manifest) else {
        // Commits this run does not keep would describe files it rewrites: drop them.
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(RunError::Io {
                    action: "cannot remove recovery folder",
                    path: dir,
                    source: e,
                })
            }
            _ => return Ok(None),
        }
    };
    if let Some(why) = &decision.warning {
        eprintln!(
            "warning: `{}` holds an unfinished run that cannot be resumed ({why}); starting afresh",
            out_dir.display()
        );
    }
    let state = decision.state;
    let log_path = dir.join("commits.log");
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Io {
            action,
            path,
            source,
        }
    };
    let Some(state) = state else {
        std::fs::create_dir_all(&dir).map_err(io("cannot create recovery folder", &dir))?;
        // The old log goes first: a crash right after leaves a manifest without commits, which
        // resumes as a run that wrote nothing.
        match std::fs::remove_file(&log_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("cannot remove commit log", &log_path)(e))
            }
            _ => {}
        }
        let manifest_path = dir.join("run.json");
        manifest
            .save(&manifest_path)
            .map_err(io("cannot write run manifest", &manifest_path))?;
        let log =
            CommitLog::open(&log_path, 0).map_err(io("cannot create commit log", &log_path))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all(); // makes the new entries durable; not possible on every OS
        }
        return Ok(Some(Prepared {
            log: Arc::new(log),
            interval,
            resume: BTreeMap::new(),
            resuming: false,
        }));
    };
    let log = CommitLog::open(&log_path, state.valid_len)
        .map_err(io("cannot open commit log", &log_path))?;
    let resume: BTreeMap<String, Commit> = committing_sinks(plan)
        .filter_map(|name| Some((name.to_string(), *state.sinks.get(name)?)))
        .collect();
    eprintln!(
        "resuming run in {}: {}",
        out_dir.display(),
        describe(plan, &resume)
    );
    Ok(Some(Prepared {
        log: Arc::new(log),
        interval,
        resume,
        resuming: true,
    }))
}

/// Looks at the output folder's recorded run, if any.
fn examine(plan: &Plan, out_dir: &Path, now: &Manifest) -> Result<Found, RunError> {
    let dir = out_dir.join(DIR);
    let manifest_path = dir.join("run.json");
    let old = match Manifest::load(&manifest_path) {
        Ok(old) => old,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(source) => {
            return Err(RunError::Io {
                action: "cannot read run manifest",
                path: manifest_path,
                source,
            })
        }
    };
    let log_path = dir.join("commits.log");
    let state = LogState::read(&log_path).map_err(|source| RunError::Io {
        action: "cannot read commit log",
        path: log_path.clone(),
        source,
    })?;
    let state = match state {
        Ok(state) => state,
        Err(why) => {
            return Ok(Found::Different(format!(
                "its commit log `{}` is damaged: {why}",
                log_path.display()
            )))
        }
    };
    if state.complete {
        return Ok(Found::Completed);
    }
    let old = match old {
        Ok(old) => old,
        Err(why) => return Ok(Found::Different(why)),
    };
    if let Some(why) = now.mismatch(&old) {
        return Ok(Found::Different(why));
    }
    for (name, rel) in updates_files(plan) {
        let Some(commit) = state.sinks.get(name) else {
            continue;
        };
        let path = out_dir.join(rel);
        let found = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if found < commit.bytes {
            return Ok(Found::Different(format!(
                "output file `{}` has {found} bytes, fewer than the {} its last commit recorded",
                path.display(),
                commit.bytes
            )));
        }
    }
    Ok(Found::Resumable(state))
}

/// The sinks that commit as they go: updates sinks writing files or publishing to a queue.
pub fn committing_sinks(plan: &Plan) -> impl Iterator<Item = &str> {
    plan.nodes.iter().filter_map(|n| match &n.kind {
        NodeKind::Sink(cfg)
            if cfg.mode == SinkMode::Updates && !matches!(cfg.target, SinkTarget::Stdout) =>
        {
            Some(n.name.as_str())
        }
        _ => None,
    })
}

/// The updates sinks that write files: (name, path relative to the output folder).
fn updates_files(plan: &Plan) -> impl Iterator<Item = (&str, &PathBuf)> {
    plan.nodes.iter().filter_map(|n| match &n.kind {
        NodeKind::Sink(cfg) if cfg.mode == SinkMode::Updates => match &cfg.target {
            SinkTarget::File(rel) => Some((n.name.as_str(), rel)),
            SinkTarget::Stdout | SinkTarget::Amqp { .. } | SinkTarget::Kafka { .. } => None,
        },
        _ => None,
    })
}

/// "2 sinks committed up to 2024-01-01T03:00:00.000Z", for the resume notice.
fn describe(plan: &Plan, resume: &BTreeMap<String, Commit>) -> String {
    let n = resume.len();
    if n == 0 {
        return "no sink had committed anything yet".into();
    }
    let sinks = if n == 1 { "sink" } else { "sinks" };
    let bound = resume
        .values()
        .map(|c| c.bound)
        .min_by(|a, b| match (a, b) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, _) => std::cmp::Ordering::Greater,
            (_, None) => std::cmp::Ordering::Less,
            (Some(x), Some(y)) => x.cmp(y),
        })
        .flatten();
    match bound {
        Some(tick) => {
            let mut text = String::new();
            plan.time.write_tick(tick, &mut text);
            format!("{n} {sinks} committed up to {text}")
        }
        None => format!("{n} {sinks} committed to the end"),
    }
}
