//! The identity of a run (`.eventflow/run.json`): the pipeline text, the bytes of every input and
//! the output files. Resuming relies on the replay of the inputs producing the same output bytes,
//! so only a run with the same identity may resume an interrupted one.

use crate::connectors::SinkMode;
use crate::plan::{NodeKind, Plan};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64;

/// The version of `run.json` and `commits.log`; a run written in another format is not resumed.
pub const FORMAT: u32 = 1;

/// What identifies a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`] of the eventflow that wrote it.
    pub format: u32,
    /// The pipeline file.
    pub pipeline: PipelineId,
    /// Every source's input file, in plan order.
    pub inputs: Vec<InputId>,
    /// Every sink, in plan order.
    pub sinks: Vec<SinkId>,
}

/// The pipeline file of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineId {
    /// As given on the command line.
    pub path: String,
    /// xxh3-64 of its text, in hex.
    pub xxh3: String,
}

/// One source's input file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputId {
    /// Source name.
    pub source: String,
    /// The file, as the run resolved it (informational: contents decide).
    pub path: String,
    /// Length in bytes.
    pub length: u64,
    /// xxh3-64 of its contents, in hex.
    pub xxh3: String,
}

/// One sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkId {
    /// Sink name.
    pub name: String,
    /// File relative to the output folder, or `-` for stdout.
    pub path: String,
    /// `updates` or `snapshot`.
    pub mode: String,
}

impl Manifest {
    /// The identity of a run of `plan`, hashing every input file. On failure, returns the file
    /// that could not be read.
    pub fn of(plan: &Plan) -> Result<Manifest, (PathBuf, std::io::Error)> {
        let mut inputs = Vec::new();
        let mut sinks = Vec::new();
        for node in &plan.nodes {
            match &node.kind {
                // A queue's contents are not known up front; its messages go into the run's
                // journal instead (`connectors::live_source`).
                NodeKind::Source(cfg) if cfg.live.is_some() => {}
                NodeKind::Source(cfg) => {
                    let (length, hash) = match &cfg.format {
                        // Generated input: its settings are its identity.
                        crate::connectors::SourceFormat::Nexmark(n) => {
                            let text = format!("{n:?}");
                            (n.events, xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
                        }
                        _ => hash_file(&cfg.path).map_err(|e| (cfg.path.clone(), e))?,
                    };
                    inputs.push(InputId {
                        source: node.name.clone(),
                        path: cfg.input_label(),
                        length,
                        xxh3: hex(hash),
                    });
                }
                NodeKind::Sink(cfg) => sinks.push(SinkId {
                    name: node.name.clone(),
                    path: cfg.target.describe(),
                    mode: match cfg.mode {
                        SinkMode::Updates => "updates".into(),
                        SinkMode::Snapshot => "snapshot".into(),
                    },
                }),
                NodeKind::Transform(_) => {}
            }
        }
        Ok(Manifest {
            format: FORMAT,
            pipeline: PipelineId {
                path: plan.file.name.clone(),
                xxh3: hex(xxh3_64(plan.file.text.as_bytes())),
            },
            inputs,
            sinks,
        })
    }

    /// Reads a manifest; `Ok(Err(why))` if the file is not one.
    pub fn load(path: &Path) -> std::io::Result<Result<Manifest, String>> {
        let text = std::fs::read(path)?;
        Ok(serde_json::from_slice(&text)
            .map_err(|e| format!("`{}` is unreadable: {e}", path.display())))
    }

    /// Writes the manifest so that a crash leaves either the old file or the new one.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut text = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        text.push(b'\n');
        std::fs::write(&tmp, &text)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Why a run with this identity may not resume the interrupted run `old`, or `None` if it
    /// may. The first difference found is reported, in words meant for the user.
    pub fn mismatch(&self, old: &Manifest) -> Option<String> {
        if old.format != self.format {
            return Some(format!(
                "the interrupted run was recorded in format {}, this eventflow uses format {}",
                old.format, self.format
            ));
        }
        if old.pipeline.xxh3 != self.pipeline.xxh3 {
            return Some(if old.pipeline.path == self.pipeline.path {
                format!(
                    "pipeline file `{}` changed since the interrupted run",
                    self.pipeline.path
                )
            } else {
                format!(
                    "pipeline file `{}` differs from `{}`, which the interrupted run used",
                    self.pipeline.path, old.pipeline.path
                )
            });
        }
        for now in &self.inputs {
            let Some(then) = old.inputs.iter().find(|i| i.source == now.source) else {
                return Some(format!(
                    "source `{}` was not part of the interrupted run",
                    now.source
                ));
            };
            if then.length != now.length {
                return Some(format!(
                    "input `{}` changed since the interrupted run (length {} → {})",
                    now.path, then.length, now.length
                ));
            }
            if then.xxh3 != now.xxh3 {
                return Some(format!(
                    "input `{}` changed since the interrupted run (same length, different contents)",
                    now.path
                ));
            }
        }
        if let Some(gone) = old
            .inputs
            .iter()
            .find(|then| !self.inputs.iter().any(|now| now.source == then.source))
        {
            return Some(format!(
                "source `{}` of the interrupted run is not in this pipeline",
                gone.source
            ));
        }
        if old.sinks != self.sinks {
            return Some("the sinks differ from the interrupted run's".into());
        }
        None
    }
}

/// Length and xxh3-64 of a file's contents, read through a memory map.
fn hash_file(path: &Path) -> std::io::Result<(u64, u64)> {
    let file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();
    if length == 0 {
        return Ok((0, xxh3_64(b"")));
    }
    // SAFETY: read-only map of an input, as in `file_source`; eventflow never writes inputs.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    Ok((length, xxh3_64(&map)))
}

fn hex(hash: u64) -> String {
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            pipeline: PipelineId {
                path: "p.toml".into(),
                xxh3: hex(1),
            },
            inputs: vec![InputId {
                source: "orders".into(),
                path: "data/orders.csv".into(),
                length: 123,
                xxh3: hex(2),
            }],
            sinks: vec![SinkId {
                name: "out".into(),
                path: "out.csv".into(),
                mode: "updates".into(),
            }],
        }
    }

    #[test]
    fn the_same_run_matches_even_from_another_path() {
        let mut now = manifest();
        assert_eq!(now.mismatch(&manifest()), None);
        now.inputs[0].path = "../elsewhere/orders.csv".into();
        assert_eq!(now.mismatch(&manifest()), None);
    }

    #[test]
    fn differences_are_explained() {
        let old = manifest();
        let why = |change: fn(&mut Manifest)| {
            let mut now = manifest();
            change(&mut now);
            now.mismatch(&old).expect("a difference")
        };
        assert_eq!(
            why(|m| m.inputs[0].length = 456),
            "input `data/orders.csv` changed since the interrupted run (length 123 → 456)"
        );
        assert_eq!(
            why(|m| m.inputs[0].xxh3 = hex(3)),
            "input `data/orders.csv` changed since the interrupted run (same length, different contents)"
        );
        assert_eq!(
            why(|m| m.pipeline.xxh3 = hex(9)),
            "pipeline file `p.toml` changed since the interrupted run"
        );
        assert_eq!(
            why(|m| {
                m.pipeline.xxh3 = hex(9);
                m.pipeline.path = "q.toml".into();
            }),
            "pipeline file `q.toml` differs from `p.toml`, which the interrupted run used"
        );
        assert_eq!(
            why(|m| m.inputs[0].source = "clicks".into()),
            "source `clicks` was not part of the interrupted run"
        );
        assert_eq!(
            why(|m| m.inputs.clear()),
            "source `orders` of the interrupted run is not in this pipeline"
        );
        assert_eq!(
            why(|m| m.format = FORMAT + 1),
            format!(
                "the interrupted run was recorded in format {FORMAT}, this eventflow uses format {}",
                FORMAT + 1
            )
        );
        assert_eq!(
            why(|m| m.sinks[0].mode = "snapshot".into()),
            "the sinks differ from the interrupted run's"
        );
    }

    #[test]
    fn a_manifest_survives_a_round_trip_and_hashes_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d.csv");
        std::fs::write(&data, "a\n1\n").unwrap();
        let (len, hash) = hash_file(&data).unwrap();
        assert_eq!((len, hash), (4, xxh3_64(b"a\n1\n")));
        std::fs::write(&data, "").unwrap();
        assert_eq!(hash_file(&data).unwrap(), (0, xxh3_64(b"")));
        let path = dir.path().join("run.json");
        manifest().save(&path).unwrap();
        assert_eq!(Manifest::load(&path).unwrap().unwrap(), manifest());
        std::fs::write(&path, "{").unwrap();
        assert!(Manifest::load(&path).unwrap().is_err());
    }
}
