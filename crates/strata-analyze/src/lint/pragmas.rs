//! Ignores: `# strata ignore=ID[,ID]` and `# hadolint ignore=DLxxxx` on
//! the comment lines directly above an instruction apply to it;
//! `# strata global ignore=ID` (or `# hadolint global ignore=`) anywhere
//! applies to the whole file; the config file and `--ignore` add more.
//! Configured severities are applied here too.

use strata_dockerfile::parse_named;

use super::findings::Finding;
use super::LintOptions;

/// Whether `key` names the finding's rule (id, name or one of its aliases).
pub(crate) fn names(f: &Finding, key: &str) -> bool {
    let key = key.trim();
    f.rule.id.eq_ignore_ascii_case(key)
        || f.rule.name.eq_ignore_ascii_case(key)
        || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(key))
}

/// The ids listed by a pragma comment (without `#`), if it is one:
/// (global, ids).
fn pragma(comment: &str) -> Option<(bool, Vec<String>)> {
    let c = comment.trim().trim_start_matches('#').trim();
    let lower = c.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("strata")
        .or_else(|| lower.strip_prefix("hadolint"))?
        .trim_start();
    let (global, rest) = match rest.strip_prefix("global") {
        Some(r) => (true, r.trim_start()),
        None => (false, rest),
    };
    let ids = rest
        .strip_prefix("ignore")?
        .trim_start()
        .strip_prefix('=')?;
    // The ids as written (lower-casing kept the byte offsets).
    let ids = &c[c.len() - ids.len()..];
    let ids = ids
        .split(|ch: char| ch == ',' || ch.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| s.to_string())
        .collect();
    Some((global, ids))
}

/// Drops ignored findings and applies configured severities.
pub(crate) fn apply(source: &str, opts: &LintOptions, findings: &mut Vec<Finding>) {
    let mut global: Vec<String> = opts.config.ignore.clone();
    for line in source.lines() {
        if line.trim_start().starts_with('#') {
            if let Some((true, ids)) = pragma(line) {
                global.extend(ids);
            }
        }
    }
    let nodes = parse_named("Dockerfile", source)
        .map(|d| d.nodes)
        .unwrap_or_default();
    findings.retain(|f| {
        if global.iter().any(|k| names(f, k)) {
            return false;
        }
        if let Some(n) = f.node.and_then(|n| nodes.get(n)) {
            for c in &n.comments {
                if let Some((false, ids)) = pragma(c) {
                    if ids.iter().any(|k| names(f, k)) {
                        return false;
                    }
                }
            }
        }
        true
    });
    for f in findings.iter_mut() {
        for (key, sev) in &opts.config.severity {
            if names(f, key) {
                if let Some(s) = sev {
                    f.severity = *s;
                }
            }
        }
    }
    findings.retain(|f| {
        !opts
            .config
            .severity
            .iter()
            .any(|(k, s)| s.is_none() && names(f, k))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pragmas() {
        assert_eq!(
            pragma(" hadolint ignore=DL3008,DL3015"),
            Some((false, vec!["DL3008".into(), "DL3015".into()]))
        );
        assert_eq!(
            pragma("# strata global ignore=SL001 SL002"),
            Some((true, vec!["SL001".into(), "SL002".into()]))
        );
        assert_eq!(
            pragma(" strata ignore = apt-lists-not-removed"),
            Some((false, vec!["apt-lists-not-removed".into()]))
        );
        assert_eq!(pragma(" ignore=SL001"), None);
        assert_eq!(pragma(" just a comment"), None);
    }
}
