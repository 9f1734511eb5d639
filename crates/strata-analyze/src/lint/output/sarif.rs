//! SARIF 2.1.0: one run, `tool.driver.rules` from the rule table, results
//! with 1-based lines and columns and `fixes`.

use serde_json::{json, Value};

use super::super::findings::{Finding, Region};
use super::super::rules::ALL;
use super::super::Report;

fn region(r: &Region) -> Value {
    json!({
        "startLine": r.start.line,
        "startColumn": r.start.column,
        "endLine": r.end.line,
        "endColumn": r.end.column,
        "charOffset": r.offset,
        "charLength": r.length,
    })
}

fn uri(name: &str) -> String {
    name.trim_start_matches("./").to_string()
}

fn result(r: &Report, f: &Finding) -> Value {
    let index = ALL.iter().position(|x| x.id == f.rule.id).unwrap_or(0);
    let mut v = json!({
        "ruleId": f.rule.id,
        "ruleIndex": index,
        "level": f.severity.sarif_level(),
        "message": {"text": format!("{} Fix: {}", f.message, f.fix.description)},
        "locations": [{
            "physicalLocation": {
                "artifactLocation": {"uri": uri(&r.name)},
                "region": region(&f.region),
            }
        }],
        "properties": {"aliases": f.aliases, "practice": f.rule.practice, "name": f.rule.name, "doc": f.rule.doc_url()},
    });
    if !f.fix.edits.is_empty() {
        v["fixes"] = json!([{
            "description": {"text": f.fix.description},
            "artifactChanges": [{
                "artifactLocation": {"uri": uri(&r.name)},
                "replacements": f.fix.edits.iter().map(|e| json!({
                    "deletedRegion": region(&e.region),
                    "insertedContent": {"text": e.replacement},
                })).collect::<Vec<_>>(),
            }],
        }]);
    }
    v
}

/// The SARIF log for several files.
pub fn sarif(reports: &[Report]) -> Value {
    let rules: Vec<Value> = ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "shortDescription": {"text": r.short},
                "fullDescription": {"text": r.why},
                "help": {"text": r.help, "markdown": r.help},
                "helpUri": r.doc_url(),
                "defaultConfiguration": {"level": r.severity.sarif_level()},
                "properties": {"aliases": r.aliases, "practice": r.practice, "tags": ["dockerfile", "maintainability"]},
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "strata-lint",
                "informationUri": "https://github.com/strata-build/strata",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": reports.iter().flat_map(|r| r.findings.iter().map(move |f| result(r, f))).collect::<Vec<_>>(),
        }],
    })
}
