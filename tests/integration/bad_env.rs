//! Bad environments: missing, unreadable or clashing files. Each row of one table sets up a
//! folder, runs `eventflow run`, and expects its exit status, a message naming the problem, and
//! no file created or changed: every one of these is found before the run starts.

use super::support::bin;
use std::path::{Path, PathBuf};

const HEADER: &str = "order_id,ts,category,amount,status\n";
const SCHEMA: &str = "{ order_id = \"int\", ts = \"timestamp\", category = \"string\", amount = \"float\", status = \"string\" }";

/// Writes a pipeline reading `input` (a CSV source, or JSON Lines for a `.jsonl` path) with
/// `transform` between it and one CSV sink per entry of `sinks` (their `path`s).
fn pipeline(dir: &Path, input: &str, transform: &str, sinks: &[&str]) -> PathBuf {
    let kind = if input.ends_with(".jsonl") {
        "jsonl"
    } else {
        "csv"
    };
    let mut text = format!(
        "[sources.orders]\ntype = \"{kind}\"\npath = \"{input}\"\nschema = {SCHEMA}\n\
         [transforms.t]\ntype = \"filter\"\ninput = \"orders\"\nwhere = \"{transform}\"\n"
    );
    for (i, path) in sinks.iter().enumerate() {
        text.push_str(&format!(
            "[sinks.out{i}]\ntype = \"csv\"\ninput = \"t\"\npath = \"{path}\"\n"
        ));
    }
    let file = dir.join("pipeline.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// The usual setup: `orders.csv` with one row, a pipeline writing `out.csv`, output in `out/`.
fn orders(dir: &Path) -> PathBuf {
    let data = dir.join("orders.csv");
    std::fs::write(
        &data,
        format!("{HEADER}1,2024-01-01T00:00:00Z,books,5,paid\n"),
    )
    .unwrap();
    data
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// One bad environment.
struct Case {
    name: &'static str,
    /// Creates the files in the folder; returns the pipeline file and the `--out` folder.
    setup: fn(&Path) -> (PathBuf, PathBuf),
    /// Substrings stderr must hold.
    expect: &'static [&'static str],
    /// Exit status.
    code: i32,
    /// Root may read and write anything: such rows cannot fail as root and are skipped.
    needs_non_root: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "missing input file",
        setup: |d| {
            (
                pipeline(d, "nope.csv", "amount > 1", &["out.csv"]),
                d.join("out"),
            )
        },
        expect: &[
            "error[E0401]",
            "cannot open input file",
            "nope.csv",
            "No such file",
        ],
        code: 1,
        needs_non_root: false,
    },
    Case {
        name: "unreadable input file",
        setup: |d| {
            chmod(&orders(d), 0o000);
            (
                pipeline(d, "orders.csv", "amount > 1", &["out.csv"]),
                d.join("out"),
            )
        },
        expect: &[
            "error[E0401]",
            "orders.csv",
            "Permission denied",
            "chmod u+r",
        ],
        code: 1,
        needs_non_root: true,
    },
    Case {
        name: "input path is a folder",
        setup: |d| {
            std::fs::create_dir(d.join("orders.jsonl")).unwrap();
            (
                pipeline(d, "orders.jsonl", "amount > 1", &["out.csv"]),
                d.join("out"),
            )
        },
        expect: &["error[E0401]", "orders.jsonl", "it is a folder"],
        code: 1,
        needs_non_root: false,
    },
    Case {
        name: "a CSV input lacks a schema field",
        setup: |d| {
            std::fs::write(d.join("orders.csv"), "order_id,ts,category,status\n").unwrap();
            (
                pipeline(d, "orders.csv", "amount > 1", &["out.csv"]),
                d.join("out"),
            )
        },
        expect: &["error[E0402]", "orders.csv", "missing column `amount`"],
        code: 1,
        needs_non_root: false,
    },
    Case {
        name: "a transform names a field its source lacks",
        setup: |d| {
            orders(d);
            (
                pipeline(d, "orders.csv", "amout > 1", &["out.csv"]),
                d.join("out"),
            )
        },
        expect: &[
            "error[E0302]",
            "unknown field `amout`",
            "did you mean `amount`?",
        ],
        code: 1,
        needs_non_root: false,
    },
    Case {
        name: "output folder not writable",
        setup: |d| {
            orders(d);
            std::fs::create_dir(d.join("ro")).unwrap();
            chmod(&d.join("ro"), 0o555);
            (
                pipeline(d, "orders.csv", "amount > 1", &["out.csv"]),
                d.join("ro"),
            )
        },
        expect: &["error[E0404]", "output folder", "ro`", "not writable"],
        code: 1,
        needs_non_root: true,
    },
    Case {
        name: "output folder inside a folder that is not writable",
        setup: |d| {
            orders(d);
            std::fs::create_dir(d.join("ro")).unwrap();
            chmod(&d.join("ro"), 0o555);
            (
                pipeline(d, "orders.csv", "amount > 1", &["out.csv"]),
                d.join("ro/out"),
            )
        },
        expect: &["error[E0404]", "ro/out", "not writable"],
        code: 1,
        needs_non_root: true,
    },
    Case {
        name: "output folder's parent is a regular file",
        setup: |d| {
            orders(d);
            std::fs::write(d.join("file"), "").unwrap();
            (
                pipeline(d, "orders.csv", "amount > 1", &["out.csv"]),
                d.join("file/out"),
            )
        },
        expect: &["error[E0404]", "file/out", "is a file, not a folder"],
        code: 1,
        needs_non_root: false,
    },
    Case {
        name: "output folder is a regular file",
        setup: |d| {
            orders(d);
            std::fs::write(d.join("file"), "").unwrap();
            (
                pipeline(d, "orders.csv", "amount > 1", &["out.csv"]),
                d.join("file"),
            )
        },
        expect: &["error[E0404]", "it is a file, not a folder"],
        code: 1,
        needs_non_root: false,
    },
    Case {
        name: "a sink's folder is a regular file",
        setup: |d| {
            orders(d);
            std::fs::create_dir(d.join("out")).unwrap();
            std::fs::write(d.join("out/sub"), "").unwrap();
            (
                pipeline(d, "orders.csv", "amount > 1", &["sub/x.csv"]),
                d.join("out"),
            )
        },
        expect: &[
            "error[E0404]",
            "sink `out0`",
            "sub` is a file, not a folder",
            "pipeline.toml:",
        ],
        code: 1,
        needs_non_root: false,
    },
    Case {
        name: "a sink's file is a folder",
        setup: |d| {
            orders(d);
            std::fs::create_dir_all(d.join("out/x.csv")).unwrap();
            (
                pipeline(d, "orders.csv", "amount > 1", &["x.csv"]),
                d.join("out"),
            )
        },
        expect: &["error[E0404]", "sink `out0`", "x.csv`: it is a folder"],
        code: 1,
        needs_non_root: false,
    },
    Case {
        name: "a sink's file is read-only",
        setup: |d| {
            orders(d);
            std::fs::create_dir(d.join("out")).unwrap();
            std::fs::write(d.join("out/x.csv"), "old").unwrap();
            chmod(&d.join("out/x.csv"), 0o444);
            (
                pipeline(d, "orders.csv", "amount > 1", &["x.csv"]),
                d.join("out"),
            )
        },
        expect: &["error[E0404]", "x.csv`: it is not writable"],
        code: 1,
        needs_non_root: true,
    },
    Case {
        name: "output would overwrite an input",
        setup: |d| {
            orders(d);
            (
                pipeline(d, "orders.csv", "amount > 1", &["orders.csv"]),
                d.to_path_buf(),
            )
        },
        expect: &[
            "error[E0405]",
            "sink `out0` would overwrite input file",
            "orders.csv",
        ],
        code: 1,
        needs_non_root: false,
    },
    Case {
        name: "the run's dead letters would overwrite an input",
        setup: |d| {
            std::fs::create_dir(d.join("out")).unwrap();
            std::fs::write(d.join("out/dead_letters.jsonl"), "{\"order_id\": 1}\n").unwrap();
            let p = pipeline(d, "out/dead_letters.jsonl", "amount > 1", &["x.csv"]);
            (p, d.join("out"))
        },
        expect: &[
            "error[E0405]",
            "the run's `dead_letters.jsonl` would overwrite input file",
        ],
        code: 1,
        needs_non_root: false,
    },
    Case {
        name: "two sinks write one file",
        setup: |d| {
            orders(d);
            let p = pipeline(d, "orders.csv", "amount > 1", &["same.csv", "./same.csv"]);
            (p, d.join("out"))
        },
        expect: &["error[E0403]", "two sinks write `same.csv`"],
        code: 1,
        needs_non_root: false,
    },
];

/// Every file and folder under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.push((path, meta.len(), meta.modified().unwrap()));
        }
    }
    out.sort();
    out
}

/// Gives the owner back every permission, so that the folder can be deleted.
fn restore_permissions(dir: &Path) {
    for (path, _, _) in snapshot(dir) {
        let dir = path.is_dir();
        chmod(&path, if dir { 0o755 } else { 0o644 });
    }
}

fn running_as_root() -> bool {
    let id = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

#[test]
fn each_bad_environment_fails_before_writing_anything() {
    let root = running_as_root();
    for case in CASES {
        if case.needs_non_root && root {
            println!(
                "note: skipping `{}`: running as root, which may read and write any file",
                case.name
            );
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let (pipeline, out) = (case.setup)(dir.path());
        let before = snapshot(dir.path());
        let run = std::process::Command::new(bin())
            .args(["run", "--quiet", "--workers", "2", "--out"])
            .arg(&out)
            .arg(&pipeline)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        let after = snapshot(dir.path());
        restore_permissions(dir.path());
        assert_eq!(
            run.status.code(),
            Some(case.code),
            "{}: exit status\n{stderr}",
            case.name
        );
        for expected in case.expect {
            assert!(
                stderr.contains(expected),
                "{}: expected `{expected}` in\n{stderr}",
                case.name
            );
        }
        assert_eq!(
            after, before,
            "{}: files were created or changed",
            case.name
        );
    }
}
