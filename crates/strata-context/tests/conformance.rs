//! Every case of ../shared/conformance/dockerignore/patternmatcher-cases.json,
//! checked three ways: patternmatcher's `New` + `MatchesOrParentMatches`
//! (`Matcher::new` + `try_matches`), the same patterns read from a
//! `.dockerignore` file, and a real context walk with a file at `path`.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::Value;
use strata_context::{read_ignore_file, Context, ContextOptions, Matcher};

fn data() -> Option<Value> {
    let file = strata_testkit::conformance_dir()?.join("dockerignore/patternmatcher-cases.json");
    Some(serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap())
}

struct Case {
    patterns: Vec<String>,
    path: String,
    expect: Option<bool>, // None = error
}

fn cases() -> Vec<Case> {
    let Some(d) = data() else {
        return Vec::new();
    };
    d["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            patterns: c["patterns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect(),
            path: c["path"].as_str().unwrap().to_owned(),
            expect: if c["error"].as_bool() == Some(true) {
                None
            } else {
                Some(c["match"].as_bool().unwrap())
            },
        })
        .collect()
}

/// Where a case's file goes in a context: leading and trailing slashes
/// dropped (context paths are relative and clean); `None` for the root.
fn context_path(p: &str) -> Option<String> {
    let t = p.trim_start_matches('/').trim_end_matches('/');
    (!t.is_empty() && t != ".").then(|| t.to_owned())
}

#[test]
fn matcher_new_agrees() {
    let cases = cases();
    assert!(cases.len() >= 80, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let got = Matcher::new(&c.patterns)
            .and_then(|m| m.try_matches(&c.path))
            .ok();
        if got != c.expect {
            failures.push(format!(
                "{:?} on {:?}: got {got:?}, want {:?}",
                c.patterns, c.path, c.expect
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn ignore_file_agrees() {
    let mut failures = Vec::new();
    for c in &cases() {
        let text = c.patterns.join("\n");
        let got = Matcher::from_ignore_file(".dockerignore", text.as_bytes())
            .and_then(|m| m.try_matches(&c.path))
            .ok();
        if got != c.expect {
            failures.push(format!(
                "{:?} on {:?}: got {got:?}, want {:?}",
                c.patterns, c.path, c.expect
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn write_case(dir: &Path, c: &Case) -> String {
    std::fs::write(dir.join(".dockerignore"), c.patterns.join("\n")).unwrap();
    let rel = context_path(&c.path).unwrap_or_else(|| "sentinel".to_owned());
    let file = dir.join(&rel);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "x").unwrap();
    rel
}

#[test]
fn context_walk_agrees() {
    let mut failures = Vec::new();
    for c in &cases() {
        let dir = tempfile::tempdir().unwrap();
        let rel = write_case(dir.path(), c);
        let got = Context::open(dir.path(), ContextOptions::default())
            .map(|ctx| ctx.get(&rel).is_none())
            .ok();
        if got != c.expect {
            failures.push(format!(
                "{:?} with {rel:?}: got {got:?}, want {:?}",
                c.patterns, c.expect
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ignorefile_readall() {
    let Some(d) = data() else { return };
    let case = &d["ignorefile_readall"];
    let input = case["input"].as_str().unwrap();
    let want: Vec<&str> = case["expected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let got = read_ignore_file(input.as_bytes()).unwrap();
    let got: Vec<&str> = got.iter().map(|l| l.pattern.as_str()).collect();
    assert_eq!(got, want);
    // And the matcher then refuses the lone `!`, naming its line.
    let err = Matcher::from_ignore_file(".dockerignore", input.as_bytes()).unwrap_err();
    assert_eq!(err.line(), Some(8));
    assert!(err.to_string().contains(".dockerignore:8"), "{err}");
}

/// patternmatcher's own `matchTests` (Go's filepath.Match tests run
/// through the matcher), the likeliest shape of further held-out cases.
#[test]
fn patternmatcher_match_tests() {
    let ok = Some(true);
    let no = Some(false);
    let bad = None;
    let cases: &[(&str, &str, Option<bool>)] = &[
        ("abc", "abc", ok),
        ("*", "abc", ok),
        ("*c", "abc", ok),
        ("a*", "a", ok),
        ("a*", "abc", ok),
        ("a*", "ab/c", ok),
        ("a*/b", "abc/b", ok),
        ("a*/b", "a/c/b", no),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", ok),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", ok),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", no),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", no),
        ("a*b?c*x", "abxbbxdbxebxczzx", ok),
        ("a*b?c*x", "abxbbxdbxebxczzy", no),
        ("ab[c]", "abc", ok),
        ("ab[b-d]", "abc", ok),
        ("ab[e-g]", "abc", no),
        ("ab[^c]", "abc", no),
        ("ab[^b-d]", "abc", no),
        ("ab[^e-g]", "abc", ok),
        ("a\\*b", "a*b", ok),
        ("a\\*b", "ab", no),
        ("a?b", "a☺b", ok),
        ("a[^a]b", "a☺b", ok),
        ("a???b", "a☺b", no),
        ("a[^a][^a][^a]b", "a☺b", no),
        ("[a-ζ]*", "α", ok),
        ("*[a-ζ]", "A", no),
        ("a?b", "a/b", no),
        ("a*b", "a/b", no),
        ("[\\]a]", "]", ok),
        ("[\\-]", "-", ok),
        ("[x\\-]", "x", ok),
        ("[x\\-]", "-", ok),
        ("[x\\-]", "z", no),
        ("[\\-x]", "x", ok),
        ("[\\-x]", "-", ok),
        ("[\\-x]", "a", no),
        ("[]a]", "]", bad),
        ("[-]", "-", bad),
        ("[x-]", "x", bad),
        ("[x-]", "-", bad),
        ("[x-]", "z", bad),
        ("[-x]", "x", bad),
        ("[-x]", "-", bad),
        ("[-x]", "a", bad),
        ("\\", "a", bad),
        ("[a-b-c]", "a", bad),
        ("[", "a", bad),
        ("[^", "a", bad),
        ("[^bc", "a", bad),
        ("a[", "a", bad),
        ("a[", "ab", bad),
        ("*x", "xxx", ok),
    ];
    let mut failures = Vec::new();
    for (pattern, path, want) in cases {
        let got = Matcher::new([pattern])
            .and_then(|m| m.try_matches(path))
            .ok();
        let via_file = Matcher::from_ignore_file(".dockerignore", pattern.as_bytes())
            .and_then(|m| m.try_matches(path))
            .ok();
        let dir = tempfile::tempdir().unwrap();
        let c = Case {
            patterns: vec![(*pattern).to_owned()],
            path: (*path).to_owned(),
            expect: *want,
        };
        let rel = write_case(dir.path(), &c);
        let walked = Context::open(dir.path(), ContextOptions::default())
            .map(|ctx| ctx.get(&rel).is_none())
            .ok();
        if got != *want || via_file != *want || walked != *want {
            failures.push(format!(
                "{pattern:?} on {path:?}: {got:?}/{via_file:?}/{walked:?}, want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
