//! Bad pipeline files: each file in tests/errors/ names, on its first line, the code, the
//! line:column and optionally the help it must produce; `eventflow check` must fail with exit
//! status 1 and print exactly that.

use super::support::{bin, root};

#[test]
fn each_bad_pipeline_fails_with_its_code_and_location() {
    let dir = root().join("tests/errors");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 8, "the corpus is there");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .expect("first line says what to expect");
        let (code, rest) = expect.split_once(" at ").unwrap();
        let (location, help) = match rest.split_once(" help: ") {
            Some((l, h)) => (l, Some(h)),
            None => (rest, None),
        };
        let out = std::process::Command::new(bin())
            .arg("check")
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = file.file_name().unwrap().to_string_lossy();
        assert_eq!(out.status.code(), Some(1), "{name}: exit status\n{stderr}");
        assert!(
            stderr.contains(&format!("error[{code}]")),
            "{name}: expected {code}\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("{name}:{location}")),
            "{name}: expected location {location}\n{stderr}"
        );
        if let Some(help) = help {
            assert!(
                stderr.contains(&format!("help: {help}")),
                "{name}: expected help `{help}`\n{stderr}"
            );
        }
    }
}

#[test]
fn all_errors_of_a_phase_are_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.toml");
    std::fs::write(
        &file,
        "[sources.a]\ntype = \"csvv\"\n[transforms.b]\ntype = \"filter\"\ninput = \"a\"\nwher = \"x\"\n[transforms.d]\ntype = \"aggregate\"\ninput = \"b\"\n[sinks.c]\ntype = \"csv\"\ninput = \"b\"\nmode = \"snapshots\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .arg("check")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    for code in ["E0203", "E0102", "E0104", "E0105"] {
        assert!(
            stderr.contains(&format!("error[{code}]")),
            "missing {code}:\n{stderr}"
        );
    }
}
