//! `strata lint --fix`: apply the safe fixes, re-lint, repeat.

use super::findings::Finding;
use super::{diff, lint, LintOptions};

/// The result of fixing a Dockerfile.
#[derive(Debug, Clone)]
pub struct Fixed {
    /// The fixed text (the input when nothing applied).
    pub source: String,
    /// The findings whose fixes were applied, in the order applied.
    pub applied: Vec<Finding>,
    /// A unified diff from the input to the fixed text (empty when equal).
    pub diff: String,
}

/// Applies every safe fix (`Fix::safe`) to `source`. Overlapping edits are
/// applied over several rounds, re-linting the text each time, so each
/// round's edits are computed on the text they change.
pub fn fix(name: &str, source: &str, opts: &LintOptions) -> Fixed {
    let mut text = source.to_string();
    let mut applied = Vec::new();
    for _ in 0..16 {
        let report = lint(name, &text, opts);
        let mut edits: Vec<(usize, usize, String, usize)> = Vec::new();
        let mut chosen: Vec<usize> = Vec::new();
        // Merges first: the other fixes then apply to the merged RUN.
        let mut order: Vec<usize> = (0..report.findings.len()).collect();
        order.sort_by_key(|&k| report.findings[k].rule.id != super::rules::RUN_CHAINABLE.id);
        for k in order {
            let f = &report.findings[k];
            if !f.fix.safe || f.fix.edits.is_empty() {
                continue;
            }
            let clash = f.fix.edits.iter().any(|e| {
                let (s, t) = (e.region.offset, e.region.offset + e.region.length);
                edits.iter().any(|(s2, t2, _, _)| s <= *t2 && *s2 <= t)
            });
            if clash {
                continue;
            }
            for e in &f.fix.edits {
                edits.push((
                    e.region.offset,
                    e.region.offset + e.region.length,
                    e.replacement.clone(),
                    k,
                ));
            }
            chosen.push(k);
        }
        if edits.is_empty() {
            break;
        }
        edits.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        for (s, t, r, _) in &edits {
            if *t <= text.len() && text.is_char_boundary(*s) && text.is_char_boundary(*t) {
                text.replace_range(*s..*t, r);
            }
        }
        applied.extend(chosen.into_iter().map(|k| report.findings[k].clone()));
    }
    let diff = if text == source {
        String::new()
    } else {
        diff::unified(name, source, &text)
    };
    Fixed {
        source: text,
        applied,
        diff,
    }
}
