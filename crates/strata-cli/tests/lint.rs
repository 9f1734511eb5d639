//! `strata lint` end to end: text with snippets, `--format json`,
//! `--format sarif`, `--fix` (file rewritten, diff printed), the config
//! file, and exit codes (`--failure-threshold`, usage errors).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BAD: &str = "FROM debian:12.5-slim\nRUN apt-get update\nRUN apt-get install -y curl=7.88.1-10+deb12u5\nCMD curl --version\n";

fn strata(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("run strata")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), BAD).unwrap();
    dir
}

#[test]
fn text_report_shows_snippets_and_fails_on_warnings() {
    let dir = setup();
    let out = strata(dir.path(), &["lint"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("warning[SL101 apt-no-install-recommends] (DL3015)"),
        "{text}"
    );
    assert!(text.contains(" --> Dockerfile:3:5\n"), "{text}");
    assert!(
        text.contains(
            "3 | RUN apt-get install -y curl=7.88.1-10+deb12u5\n  |     ^^^^^^^^^^^^^^^\n"
        ),
        "{text}"
    );
    assert!(text.contains("= why: practice 7"), "{text}");
    assert!(text.contains("warning[SL401 shell-form-command]"), "{text}");
    assert!(
        text.ends_with("1 file checked: 0 errors, 4 warnings, 1 info\n"),
        "{text}"
    );
    // Thresholds: nothing is an error; `none` never fails.
    assert_eq!(
        strata(dir.path(), &["lint", "--failure-threshold", "error"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        strata(dir.path(), &["lint", "--failure-threshold", "none"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        strata(dir.path(), &["lint", "--failure-threshold", "info"])
            .status
            .code(),
        Some(1)
    );
    // Usage errors exit 2; a missing Dockerfile is a failure with a hint.
    assert_eq!(
        strata(dir.path(), &["lint", "--failure-threshold", "loud"])
            .status
            .code(),
        Some(2)
    );
    let missing = strata(dir.path(), &["lint", "-f", "nope/Dockerfile"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("hint: pass the file with -f FILE"));
}

#[test]
fn json_and_sarif_formats() {
    let dir = setup();
    let out = strata(dir.path(), &["lint", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["version"], 1);
    let findings = v["files"][0]["findings"].as_array().unwrap();
    let ids: Vec<&str> = findings
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["SL102", "SL103", "SL001", "SL101", "SL401"]);
    assert_eq!(
        findings[3]["region"]["start"],
        serde_json::json!({"line": 3, "column": 5})
    );
    assert_eq!(findings[3]["fix"]["safe"], true);

    let out = strata(
        dir.path(),
        &["lint", "--format", "sarif", "--failure-threshold", "none"],
    );
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    assert!(run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["defaultConfiguration"]["level"].is_string()));
    let res = run["results"].as_array().unwrap();
    assert_eq!(res.len(), 5);
    let r = res.iter().find(|r| r["ruleId"] == "SL101").unwrap();
    assert_eq!(
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "Dockerfile"
    );
    assert_eq!(
        r["locations"][0]["physicalLocation"]["region"]["startColumn"],
        5
    );
    assert!(
        r["fixes"][0]["artifactChanges"][0]["replacements"][0]["insertedContent"]["text"]
            .is_string()
    );
}

#[test]
fn fix_rewrites_the_file_and_prints_the_diff() {
    let dir = setup();
    let out = strata(dir.path(), &["lint", "--fix"]);
    let text = stdout(&out);
    assert!(
        text.starts_with("--- a/Dockerfile\n+++ b/Dockerfile\n@@ -1,4 +1,5 @@\n"),
        "{text}"
    );
    assert!(
        text.contains("-RUN apt-get install -y curl=7.88.1-10+deb12u5\n"),
        "{text}"
    );
    assert!(text.contains("+    && apt-get install --no-install-recommends -y curl=7.88.1-10+deb12u5 \\\n+    && rm -rf /var/lib/apt/lists/*\n"), "{text}");
    let fixed = std::fs::read_to_string(dir.path().join("Dockerfile")).unwrap();
    assert_eq!(
        fixed,
        "FROM debian:12.5-slim\nRUN apt-get update \\\n    && apt-get install --no-install-recommends -y curl=7.88.1-10+deb12u5 \\\n    && rm -rf /var/lib/apt/lists/*\nCMD curl --version\n"
    );
    // What is left (the shell-form CMD has no safe fix) still fails.
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("warning[SL401"), "{text}");
    assert!(!text.contains("SL101"), "{text}");
    // Fixing again changes nothing.
    let again = strata(
        dir.path(),
        &["lint", "--fix", "--failure-threshold", "none"],
    );
    assert!(!stdout(&again).contains("--- a/Dockerfile"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("Dockerfile")).unwrap(),
        fixed
    );
}

#[test]
fn config_file_and_ignores() {
    let dir = setup();
    std::fs::write(
        dir.path().join(".strata-lint.toml"),
        "ignore = [\"DL3025\"]\n[severity]\nSL101 = \"error\"\nSL103 = \"off\"\n",
    )
    .unwrap();
    let out = strata(
        dir.path(),
        &[
            "lint",
            "--format",
            "json",
            "--failure-threshold",
            "error",
            "--ignore",
            "SL001",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let got: Vec<(String, String)> = v["files"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("SL102".to_string(), "warning".to_string()),
            ("SL101".to_string(), "error".to_string())
        ]
    );
    std::fs::write(
        dir.path().join("bad.toml"),
        "[severity]\nSL999 = \"info\"\n",
    )
    .unwrap();
    let out = strata(dir.path(), &["lint", "--config", "bad.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown rule `SL999`"));
}
