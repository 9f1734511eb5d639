//! `strata context ls` end to end: every patternmatcher conformance case
//! (a file at `path`, the patterns in `.dockerignore`: listed iff not
//! excluded; `error` cases exit non-zero naming the pattern), the
//! `ignorefile_readall` case, per-Dockerfile ignore files and `--long`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn strata(args: &[&str], cwd: &Path, store: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(store)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run strata")
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn data() -> Option<Value> {
    let file = strata_testkit::conformance_dir()?.join("dockerignore/patternmatcher-cases.json");
    Some(serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap())
}

/// Where a case's file goes in the context: leading and trailing slashes
/// dropped (context paths are relative); the root itself (`.`, `/`) gets a
/// sentinel file, which a pattern matching the root must exclude too.
fn context_path(p: &str) -> String {
    let t = p.trim_start_matches('/').trim_end_matches('/');
    if t.is_empty() || t == "." {
        "sentinel".to_owned()
    } else {
        t.to_owned()
    }
}

#[test]
fn every_patternmatcher_case_through_the_cli() {
    let Some(d) = data() else { return };
    let cases = d["cases"].as_array().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut failures = Vec::new();
    let mut checked = 0;
    for (i, c) in cases.iter().enumerate() {
        let patterns: Vec<&str> = c["patterns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let path = c["path"].as_str().unwrap();
        let ctx = tmp.path().join(format!("case{i}"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join(".dockerignore"), patterns.join("\n")).unwrap();
        let rel = context_path(path);
        let file = ctx.join(&rel);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "x").unwrap();
        let out = strata(
            &["context", "ls", ctx.to_str().unwrap()],
            tmp.path(),
            &store,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        checked += 1;
        if c["error"].as_bool() == Some(true) {
            let names_pattern = patterns
                .iter()
                .any(|p| stderr.contains(&format!("{:?}", p.trim())));
            if out.status.code() != Some(1) || !stderr.contains(".dockerignore:") || !names_pattern
            {
                failures.push(format!(
                    "case {i} {patterns:?}: want an error naming the pattern and line, got {:?} {stderr}",
                    out.status
                ));
            }
            continue;
        }
        if !out.status.success() {
            failures.push(format!(
                "case {i} {patterns:?} on {path:?}: failed: {stderr}"
            ));
            continue;
        }
        let excluded = !lines(&out).contains(&rel);
        let want = c["match"].as_bool().unwrap();
        if excluded != want {
            failures.push(format!(
                "case {i} {patterns:?} on {path:?} (file {rel:?}): excluded={excluded}, want {want}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, cases.len());
    eprintln!("{checked} patternmatcher cases passed through `strata context ls`");
}

#[test]
fn ignorefile_readall_through_the_cli() {
    let Some(d) = data() else { return };
    let input = d["ignorefile_readall"]["input"].as_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    for f in [
        "test1",
        "test2",
        "a/file/here",
        "lastfile",
        "inverted/abs/path",
        "kept",
        "a/other",
    ] {
        let p = ctx.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, f).unwrap();
    }
    // As given, the lone `!` (line 8) makes Docker refuse the file.
    std::fs::write(ctx.join(".dockerignore"), input).unwrap();
    let out = strata(&["context", "ls", "ctx"], tmp.path(), &store);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(".dockerignore:8") && stderr.contains("illegal exclusion pattern"),
        "{stderr}"
    );
    // Without the two lone `!` lines, the rest reads as ReadAll says:
    // `/test2` is `test2`, `/a/file/here` is `a/file/here`, comments and
    // blank lines are skipped, `! /inverted/abs/path` is an exception.
    // CRLF line ends and a byte order mark change nothing.
    let kept: Vec<&str> = input.lines().take(7).collect();
    let mut text = b"\xEF\xBB\xBF".to_vec();
    text.extend_from_slice(kept.join("\r\n").as_bytes());
    std::fs::write(ctx.join(".dockerignore"), text).unwrap();
    let out = strata(&["context", "ls", "ctx"], tmp.path(), &store);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines(&out),
        // `a/file` is left empty (its only file is excluded): COPY creates it.
        [
            ".dockerignore",
            "a/file",
            "a/other",
            "inverted/abs/path",
            "kept"
        ]
    );
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("build")).unwrap();
    for f in ["a.txt", "b.txt", "build/app.Dockerfile", "Dockerfile"] {
        std::fs::write(ctx.join(f), f).unwrap();
    }
    std::fs::write(ctx.join(".dockerignore"), "a.txt\n").unwrap();
    std::fs::write(
        ctx.join("build/app.Dockerfile.dockerignore"),
        "b.txt\n*/*.dockerignore\n",
    )
    .unwrap();
    let out = strata(&["context", "ls", "ctx"], tmp.path(), &store);
    assert_eq!(
        lines(&out),
        [
            ".dockerignore",
            "Dockerfile",
            "b.txt",
            "build/app.Dockerfile",
            "build/app.Dockerfile.dockerignore"
        ]
    );
    // -f is relative to the current directory, like docker build's.
    let out = strata(
        &["context", "ls", "ctx", "-f", "ctx/build/app.Dockerfile"],
        tmp.path(),
        &store,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines(&out),
        [
            ".dockerignore",
            "Dockerfile",
            "a.txt",
            "build/app.Dockerfile"
        ]
    );
    // Dockerfile.dockerignore beside the default Dockerfile wins too.
    std::fs::write(ctx.join("Dockerfile.dockerignore"), "Dockerfile*\n").unwrap();
    let out = strata(&["context", "ls", "ctx"], tmp.path(), &store);
    assert_eq!(
        lines(&out),
        [
            ".dockerignore",
            "a.txt",
            "b.txt",
            "build/app.Dockerfile",
            "build/app.Dockerfile.dockerignore"
        ]
    );
    let out = strata(
        &["context", "ls", "ctx", "-f", "nope/Dockerfile"],
        tmp.path(),
        &store,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn long_listing_exceptions_symlinks_and_empty_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("node_modules/pkg")).unwrap();
    std::fs::create_dir_all(ctx.join("docs")).unwrap();
    std::fs::create_dir_all(ctx.join("empty")).unwrap();
    std::fs::write(ctx.join("node_modules/pkg/index.js"), "js").unwrap();
    std::fs::write(ctx.join("docs/README.md"), "readme").unwrap();
    std::fs::write(ctx.join("docs/secret.md"), "secret").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("link")).unwrap();
    std::fs::write(
        ctx.join(".dockerignore"),
        "node_modules/*\ndocs\n!docs/README.md\n",
    )
    .unwrap();
    let out = strata(&["context", "ls", "ctx"], tmp.path(), &store);
    assert_eq!(
        lines(&out),
        [
            ".dockerignore",
            "docs/README.md",
            "empty",
            "link",
            "node_modules"
        ]
    );
    let out = strata(&["context", "ls", "--long", "ctx"], tmp.path(), &store);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let readme = format!("sha256:{} docs/README.md", sha256sum(b"readme"));
    assert!(text.contains(&readme), "{text}");
    assert!(text.contains(" - link -> /etc/passwd\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("d ") && l.ends_with(" docs/")),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
}

/// sha256 through coreutils, so the test does not share the code it checks.
fn sha256sum(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}
