//! `strata parse` end to end: the dump of BuildKit's conformance cases and
//! a sample of real Dockerfiles, the negative cases, and error rendering.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("run strata")
}

fn dump(file: &Path) -> Output {
    strata(&["parse", "--dump", "-f", &file.display().to_string()])
}

fn conformance() -> Option<PathBuf> {
    strata_testkit::conformance_dir()
}

#[test]
fn dump_matches_buildkit_parser_cases() {
    let mut n = 0;
    let Some(c) = conformance() else { return };
    for entry in std::fs::read_dir(c.join("buildkit-parser")).expect("read dir") {
        let case = entry.expect("entry").path();
        let out = dump(&case.join("Dockerfile"));
        let want = std::fs::read(case.join("result")).expect("result");
        assert!(
            out.status.success(),
            "{}: {}",
            case.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&want),
            "{}",
            case.display()
        );
        n += 1;
    }
    assert_eq!(n, 33);
}

#[test]
fn dump_matches_a_sample_of_real_dockerfiles() {
    let Some(c) = conformance() else { return };
    let dir = c.join("real-dockerfiles");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    let sample: Vec<&PathBuf> = files.iter().step_by(10).collect();
    assert!(sample.len() >= 20);
    for file in sample {
        let out = dump(file);
        let want = std::fs::read(file.with_extension("result")).expect("result");
        assert!(out.status.success(), "{}", file.display());
        assert_eq!(out.stdout, want, "{}", file.display());
    }
}

#[test]
fn negative_cases_fail_with_file_and_line() {
    let Some(c) = conformance() else { return };
    for entry in std::fs::read_dir(c.join("buildkit-parser-negative")).expect("read dir") {
        let file = entry.expect("entry").path().join("Dockerfile");
        let name = file.display().to_string();
        let out = dump(&file);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with(&format!("error: {name}:")), "{err}");
        let line: String = err[format!("error: {name}:").len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert!(line.parse::<usize>().is_ok_and(|l| l >= 1), "{err}");
    }
}

#[test]
fn broken_file_shows_a_snippet_and_what_was_expected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("Dockerfile");
    std::fs::write(&file, "FROM alpine\n\nENV PATH\n").expect("write");
    let out = dump(&file);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let name = file.display().to_string();
    assert!(
        err.contains(&format!("error: {name}:3:5: ENV must have two arguments")),
        "{err}"
    );
    assert!(err.contains(&format!("--> {name}:3:5")), "{err}");
    assert!(err.contains("3 | ENV PATH\n  |     ^^^^ no value"), "{err}");
    assert!(err.contains("hint: expected `NAME VALUE`"), "{err}");

    // Typed checks run without --dump: an unknown flag is pointed at.
    std::fs::write(&file, "FROM alpine\nCOPY --chmod=644 --chwon=1 a b\n").expect("write");
    let out = strata(&["parse", "-f", &name]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2:18: unknown flag: chwon"), "{err}");
    assert!(
        err.contains("2 | COPY --chmod=644 --chwon=1 a b\n  |                  ^^^^^^^^^"),
        "{err}"
    );
}

#[test]
fn json_has_spans_and_stdin_works() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["parse", "--json", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"FROM a\nRUN <<EOF\necho hi\nEOF\n")
            .expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let run = &v["nodes"][1];
    assert_eq!(run["keyword"], "RUN");
    assert_eq!(run["span"]["line"], 2);
    assert_eq!(run["end_line"], 4);
    assert_eq!(run["heredocs"][0]["content"], "echo hi\n");
    assert_eq!(run["args"][0]["span"]["column"], 5);
}
