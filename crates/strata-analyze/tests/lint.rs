//! The practice cases (`tests/lint/cases/<case>/{bad,good}`, see
//! docs/practices.md): each bad Dockerfile reports exactly the findings
//! listed in its `expect` file (`LINE RULE` per line), each good one
//! reports nothing, and every finding links to a section of
//! docs/practices.md. Also: JSON and
//! SARIF structure, pragmas and config, `fix`, and every real Dockerfile of
//! the conformance set linted, rendered and fixed without a panic.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use strata_analyze::lint::{self, output, Config, LintOptions, Report, Severity};

const PRACTICES_MD: &str = include_str!("../../../docs/practices.md");

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint/cases")
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, dest).unwrap();
        }
    }
}

/// Lints `dir/Dockerfile` with `dir` as context (copied to a temporary
/// directory first when it lists directories to create in `mkdirs`, such
/// as `.git` or `web/node_modules`, which are not committed).
fn lint_dir(dir: &Path) -> (Report, Option<tempfile::TempDir>) {
    let mut tmp = None;
    let mut ctx = dir.to_path_buf();
    if let Ok(list) = std::fs::read_to_string(dir.join("mkdirs")) {
        let t = tempfile::tempdir().unwrap();
        copy_tree(dir, t.path());
        for d in list.lines().filter(|l| !l.trim().is_empty()) {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
            std::fs::write(t.path().join(d).join("file"), "x").unwrap();
        }
        ctx = t.path().to_path_buf();
        tmp = Some(t);
    }
    let src = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    let opts = LintOptions {
        context: Some(ctx.clone()),
        dockerfile: Some(ctx.join("Dockerfile")),
        ..Default::default()
    };
    (lint::lint("Dockerfile", &src, &opts), tmp)
}

fn describe(r: &Report) -> String {
    output::text(std::slice::from_ref(r), false)
}

#[test]
fn practice_cases() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let bad = case.join("bad");
        let (report, _t) = lint_dir(&bad);
        let mut got: Vec<String> = report
            .findings
            .iter()
            .map(|f| format!("{} {}", f.region.start.line, f.rule.id))
            .collect();
        got.sort();
        let mut want: Vec<String> = std::fs::read_to_string(bad.join("expect"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
            .collect();
        want.sort();
        if got != want {
            failures.push(format!(
                "{name}/bad: want {want:?}, got {got:?}\n{}",
                describe(&report)
            ));
        }
        for f in &report.findings {
            assert!(
                !f.message.is_empty() && !f.fix.description.is_empty(),
                "{name}: {f:?}"
            );
            assert!(f.rule.why.contains("practice"), "{name}: {}", f.rule.id);
            // Every finding links to a section that exists.
            let anchor = f.rule.doc_anchor().expect("a practice section");
            assert!(
                PRACTICES_MD.contains(&format!("<a id=\"{anchor}\"></a>")),
                "{name}: {} links to #{anchor}",
                f.rule.id
            );
        }
        let good = case.join("good");
        if good.join("Dockerfile").is_file() {
            let (report, _t) = lint_dir(&good);
            if !report.findings.is_empty() {
                failures.push(format!(
                    "{name}/good: expected no findings\n{}",
                    describe(&report)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn spans_are_exact() {
    let src = "FROM debian:12.5-slim\nRUN apt-get update \\\n && apt-get install -y curl=1 \\\n && true\n";
    let r = lint::lint("Dockerfile", src, &LintOptions::default());
    let f = r
        .findings
        .iter()
        .find(|f| f.rule.id == "SL101")
        .expect("SL101");
    assert_eq!((f.region.start.line, f.region.start.column), (3, 5));
    assert_eq!((f.region.end.line, f.region.end.column), (3, 20));
    assert_eq!(
        &src[f.region.offset..f.region.offset + f.region.length],
        "apt-get install"
    );
    let f = r
        .findings
        .iter()
        .find(|f| f.rule.id == "SL102")
        .expect("SL102");
    assert_eq!(
        &src[f.region.offset..f.region.offset + f.region.length],
        "apt-get update"
    );
}

#[test]
fn pragmas_and_config_ignore_findings() {
    let src = "FROM debian:12.5-slim\n# hadolint ignore=DL3015\nRUN apt-get update && apt-get install -y curl=1 && rm -rf /var/lib/apt/lists/*\n";
    let r = lint::lint("Dockerfile", src, &LintOptions::default());
    assert!(r.findings.is_empty(), "{}", describe(&r));
    let src2 = src.replace(
        "# hadolint ignore=DL3015",
        "# strata ignore=apt-no-install-recommends",
    );
    assert!(lint::lint("Dockerfile", &src2, &LintOptions::default())
        .findings
        .is_empty());
    let src3 = src.replace("# hadolint ignore=DL3015\n", "");
    let r = lint::lint("Dockerfile", &src3, &LintOptions::default());
    assert_eq!(r.findings.len(), 1);
    let global = format!("# strata global ignore=SL101\n{src3}");
    assert!(lint::lint("Dockerfile", &global, &LintOptions::default())
        .findings
        .is_empty());
    // A pragma only covers the next instruction.
    let later =
        "FROM debian:12.5-slim\n# strata ignore=SL101\nRUN true\nRUN apt-get install -y curl=1\n";
    let r = lint::lint("Dockerfile", later, &LintOptions::default());
    assert!(r.findings.iter().any(|f| f.rule.id == "SL101"));
    let config = Config::parse("[severity]\nSL101 = \"error\"\nSL001 = \"off\"\n").unwrap();
    let r = lint::lint(
        "Dockerfile",
        later,
        &LintOptions {
            config,
            ..Default::default()
        },
    );
    assert_eq!(
        r.findings
            .iter()
            .map(|f| (f.rule.id, f.severity))
            .collect::<Vec<_>>(),
        [("SL101", Severity::Error)]
    );
}

#[test]
fn fix_applies_safe_fixes() {
    let src = "FROM debian:12.5-slim\nRUN apt-get update\nRUN apt-get install -y curl=1\nCMD [\"curl\"]\n";
    let fixed = lint::fix("Dockerfile", src, &LintOptions::default());
    assert_eq!(
        fixed.source,
        "FROM debian:12.5-slim\nRUN apt-get update \\\n    && apt-get install --no-install-recommends -y curl=1 \\\n    && rm -rf /var/lib/apt/lists/*\nCMD [\"curl\"]\n"
    );
    assert!(
        fixed
            .diff
            .starts_with("--- a/Dockerfile\n+++ b/Dockerfile\n@@ "),
        "{}",
        fixed.diff
    );
    assert!(fixed.diff.contains("-RUN apt-get install -y curl=1\n"));
    let again = lint::lint("Dockerfile", &fixed.source, &LintOptions::default());
    assert!(again.findings.is_empty(), "{}", describe(&again));
    // Never merged across a `cd`, never invents pins.
    let src = "FROM debian:12.5-slim\nRUN cd /x && make\nRUN make install\n";
    assert_eq!(
        lint::fix("Dockerfile", src, &LintOptions::default()).source,
        src
    );
}

#[test]
fn add_becomes_copy_only_when_the_context_shows_no_archive() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), "print(1)\n").unwrap();
    // A gzip stream under a name that does not say so: ADD unpacks it.
    std::fs::write(dir.path().join("vendor.bin"), [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    let src = "FROM python:3.12-slim\nADD app.py /app/\nADD vendor.bin /opt/\n";
    let with_ctx = LintOptions {
        context: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let fixed = lint::fix("Dockerfile", src, &with_ctx);
    assert_eq!(
        fixed.source,
        "FROM python:3.12-slim\nCOPY app.py /app/\nADD vendor.bin /opt/\n"
    );
    // Without the context, vendor.bin may be anything: reported, as hadolint
    // does, but never rewritten.
    let r = lint::lint("Dockerfile", src, &LintOptions::default());
    let adds: Vec<_> = r.findings.iter().filter(|f| f.rule.id == "SL304").collect();
    assert_eq!(adds.len(), 2, "{}", describe(&r));
    assert!(adds.iter().all(|f| !f.fix.safe && f.aliases == ["DL3020"]));
    assert_eq!(
        lint::fix("Dockerfile", src, &LintOptions::default()).source,
        src
    );
}

#[test]
fn json_report_follows_the_documented_schema() {
    let src = "FROM debian\nRUN apt-get update && apt-get install -y curl\n";
    let r = lint::lint("Dockerfile", src, &LintOptions::default());
    let v = output::json(&[r]);
    assert_eq!(v["version"], 1);
    assert_eq!(v["tool"]["name"], "strata");
    let f = &v["files"][0]["findings"][0];
    for key in [
        "rule", "name", "severity", "message", "why", "practice", "doc", "aliases", "region", "fix",
    ] {
        assert!(!f[key].is_null(), "{key} missing in {f}");
    }
    assert_eq!(f["region"]["start"]["line"], 1);
    assert_eq!(f["rule"], "SL203");
    assert_eq!(
        f["doc"],
        "https://github.com/strata-build/strata/blob/main/docs/practices.md#pin"
    );
    assert_eq!(
        v["summary"]["warning"].as_u64().unwrap() + v["summary"]["info"].as_u64().unwrap(),
        v["files"][0]["findings"].as_array().unwrap().len() as u64
    );
}

/// The fields GitHub code scanning needs from a SARIF 2.1.0 log.
fn check_sarif(v: &Value) {
    assert_eq!(v["version"], "2.1.0");
    assert!(v["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let run = &v["runs"][0];
    let driver = &run["tool"]["driver"];
    assert!(driver["name"].is_string());
    let rules = driver["rules"].as_array().unwrap();
    assert!(rules.len() >= 25);
    for r in rules {
        assert!(r["id"].is_string());
        for k in ["shortDescription", "fullDescription", "help"] {
            assert!(
                !r[k]["text"].as_str().unwrap().is_empty(),
                "{k} of {}",
                r["id"]
            );
        }
        assert!(["none", "note", "warning", "error"]
            .contains(&r["defaultConfiguration"]["level"].as_str().unwrap()));
        // Every rule's help is its section of docs/practices.md (or, for the
        // parse error, the rule table).
        let uri = r["helpUri"].as_str().unwrap();
        match uri.split_once("docs/practices.md#") {
            Some((_, anchor)) => assert!(
                PRACTICES_MD.contains(&format!("<a id=\"{anchor}\"></a>")),
                "{uri}"
            ),
            None => assert!(uri.ends_with("docs/lint.md#rule-ids"), "{uri}"),
        }
    }
    for res in run["results"].as_array().unwrap() {
        let idx = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], res["ruleId"]);
        assert!(["none", "note", "warning", "error"].contains(&res["level"].as_str().unwrap()));
        assert!(!res["message"]["text"].as_str().unwrap().is_empty());
        let loc = &res["locations"][0]["physicalLocation"];
        assert!(loc["artifactLocation"]["uri"].is_string());
        let reg = &loc["region"];
        assert!(
            reg["startLine"].as_u64().unwrap() >= 1 && reg["startColumn"].as_u64().unwrap() >= 1
        );
        assert!(reg["endLine"].as_u64().unwrap() >= reg["startLine"].as_u64().unwrap());
        if let Some(fixes) = res.get("fixes") {
            let rep = &fixes[0]["artifactChanges"][0]["replacements"][0];
            assert!(rep["deletedRegion"]["startLine"].as_u64().unwrap() >= 1);
            assert!(rep["insertedContent"]["text"].is_string());
            assert!(fixes[0]["description"]["text"].is_string());
        }
    }
}

#[test]
fn sarif_has_rule_metadata_columns_and_fixes() {
    let src = "FROM debian\nRUN apt-get update && apt-get install -y curl\nCMD curl x\n";
    let r = lint::lint("Dockerfile", src, &LintOptions::default());
    let v = output::sarif(&[r]);
    check_sarif(&v);
    let results = v["runs"][0]["results"].as_array().unwrap();
    let rec = results.iter().find(|r| r["ruleId"] == "SL101").unwrap();
    assert_eq!(
        rec["locations"][0]["physicalLocation"]["region"]["startColumn"],
        23
    );
    assert_eq!(
        rec["fixes"][0]["artifactChanges"][0]["replacements"][0]["insertedContent"]["text"],
        " --no-install-recommends"
    );
}

#[test]
fn every_real_dockerfile_lints_renders_and_fixes() {
    let Some(c) = strata_testkit::conformance_dir() else {
        return;
    };
    let dir = c.join("real-dockerfiles");
    let mut n = 0;
    let mut reports = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "Dockerfile") {
            continue;
        }
        let src = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
        let opts = LintOptions {
            context: Some(dir.clone()),
            dockerfile: Some(p.clone()),
            ..Default::default()
        };
        let r = lint::lint(&p.file_name().unwrap().to_string_lossy(), &src, &opts);
        for f in &r.findings {
            assert!(f.region.offset + f.region.length <= src.len());
            assert!(f.region.start <= f.region.end, "{}: {f:?}", p.display());
        }
        let fixed = lint::fix("Dockerfile", &src, &opts);
        let before = strata_dockerfile::parse(&src)
            .ok()
            .and_then(|d| d.stages().ok())
            .map(|s| s.stages.len());
        if let Some(before) = before {
            let after = strata_dockerfile::parse(&fixed.source)
                .expect("fixed parses")
                .stages()
                .expect("fixed stages")
                .stages
                .len();
            assert_eq!(before, after, "{}", p.display());
        }
        reports.push(r);
        n += 1;
    }
    assert!(n >= 200, "{n}");
    let _ = output::text(&reports, false);
    check_sarif(&output::sarif(&reports));
    let j = output::json(&reports);
    assert_eq!(j["files"].as_array().unwrap().len(), n);
}
