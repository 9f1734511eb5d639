//! What a check reports: [`Finding`]s with their exact position, severity
//! and (when one exists) a [`Fix`].

use serde::Serialize;

use super::rules::Rule;

/// How serious a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; never fails a build with the default threshold.
    Info,
    /// A practice is not followed; the image is bigger, slower or less
    /// reproducible than it needs to be.
    Warning,
    /// Something that leaks secrets or breaks builds.
    Error,
}

impl Severity {
    /// `info`, `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// Reads `info`, `warning` (or `warn`), `error`, case-insensitively.
    pub fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_lowercase().as_str() {
            "info" | "note" | "style" => Some(Severity::Info),
            "warning" | "warn" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }

    /// The SARIF `level` for this severity.
    pub fn sarif_level(self) -> &'static str {
        match self {
            Severity::Info => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// A region of the Dockerfile: byte range plus start and end positions
/// (`end` is exclusive: the position just after the last character).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Region {
    /// Byte offset of the first byte.
    pub offset: usize,
    /// Length in bytes.
    pub length: usize,
    /// Where the region starts.
    pub start: Position,
    /// Just past where it ends.
    pub end: Position,
}

/// One replacement of a byte range by new text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edit {
    /// The bytes replaced (empty for an insertion).
    pub region: Region,
    /// The text put in their place.
    pub replacement: String,
}

/// How to fix a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    /// What to do, in words (always present).
    pub description: String,
    /// The edits that do it, when they can be computed. Empty when the fix
    /// needs a human (a version to pin, a stage to split).
    pub edits: Vec<Edit>,
    /// Whether `strata lint --fix` applies the edits (they never change
    /// what the build installs or runs, only how).
    pub safe: bool,
}

/// One problem found in a Dockerfile.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The rule that fired.
    #[serde(serialize_with = "rule_id")]
    pub rule: &'static Rule,
    /// Its severity (the rule's default, or as configured).
    pub severity: Severity,
    /// What was found, naming the things involved.
    pub message: String,
    /// Exactly where.
    pub region: Region,
    /// Other linters' codes for the same check (hadolint `DLxxxx`,
    /// BuildKit check names).
    pub aliases: Vec<&'static str>,
    /// The fix.
    pub fix: Fix,
    /// First line of the instruction the finding is in (what hadolint
    /// reports as the line), if any.
    pub instruction_line: Option<usize>,
    /// Index of the instruction node the finding is about (pragmas above it
    /// apply), if any.
    #[serde(skip)]
    pub node: Option<usize>,
}

fn rule_id<S: serde::Serializer>(r: &&'static Rule, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.id)
}
