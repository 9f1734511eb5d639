//! Report formats: [`text`] (rustc-style snippets with carets), [`json`](fn@json)
//! (the stable schema documented in `docs/lint.md`) and [`sarif`] (SARIF
//! 2.1.0 with rule metadata and fixes, for GitHub code scanning).

mod sarif;
mod text;

pub use sarif::sarif;
pub use text::text;

use serde_json::{json, Value};

use super::findings::{Finding, Region};
use super::Report;

/// Version of the JSON schema; bumped on any incompatible change.
pub const JSON_SCHEMA_VERSION: u32 = 1;

fn region(r: &Region) -> Value {
    json!({
        "start": {"line": r.start.line, "column": r.start.column},
        "end": {"line": r.end.line, "column": r.end.column},
        "offset": r.offset,
        "length": r.length,
    })
}

fn finding(f: &Finding) -> Value {
    json!({
        "rule": f.rule.id,
        "name": f.rule.name,
        "severity": f.severity.as_str(),
        "message": f.message,
        "why": f.rule.why,
        "practice": f.rule.practice,
        "doc": f.rule.doc_url(),
        "aliases": f.aliases,
        "region": region(&f.region),
        "instruction_line": f.instruction_line,
        "fix": {
            "description": f.fix.description,
            "safe": f.fix.safe,
            "edits": f.fix.edits.iter().map(|e| json!({
                "region": region(&e.region),
                "replacement": e.replacement,
            })).collect::<Vec<_>>(),
        },
    })
}

/// The JSON report for several files (see `docs/lint.md`).
pub fn json(reports: &[Report]) -> Value {
    let mut counts = [0usize; 3];
    for f in reports.iter().flat_map(|r| r.findings.iter()) {
        counts[f.severity as usize] += 1;
    }
    json!({
        "version": JSON_SCHEMA_VERSION,
        "tool": {"name": "strata", "version": env!("CARGO_PKG_VERSION")},
        "files": reports.iter().map(|r| json!({
            "path": r.name,
            "findings": r.findings.iter().map(finding).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "summary": {"error": counts[2], "warning": counts[1], "info": counts[0]},
    })
}
