//! Rendering errors for people: `error: ...`, `caused by: ...` lines, a source
//! snippet with the offending part marked when an error in the chain carries
//! one (a [`miette::Diagnostic`] with labels), and `hint: ...` lines.

use std::error::Error as StdError;
use std::fmt::Write as _;

use miette::{Diagnostic, LabeledSpan, SourceCode};

/// Errors from the library crates that carry spans or hints. The CLI knows
/// every library, so it can look for them in an `anyhow` chain by type.
fn as_diagnostic<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a dyn Diagnostic> {
    macro_rules! try_types {
        ($($t:ty),* $(,)?) => {
            $(if let Some(d) = err.downcast_ref::<$t>() { return Some(d); })*
        };
    }
    try_types!(
        Hinted,
        strata_context::ContextError,
        strata_context::PatternError,
        strata_dockerfile::ParseError,
        strata_dockerfile::InstructionError,
        strata_registry::Error,
        strata_registry::CacheError,
        strata_build::Error,
        strata_build::EmulationError,
    );
    None
}

/// An error with a hint for the user, for the CLI's own errors:
/// `Err(hinted("no Dockerfile in .", "pass -f FILE"))`.
#[derive(Debug)]
pub struct Hinted {
    message: String,
    hint: String,
}

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
impl StdError for Hinted {}
impl Diagnostic for Hinted {
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(&self.hint))
    }
}

/// A usage error found after the arguments parsed (a malformed `--output`,
/// an invalid reference): exit code 2, as clap's own usage errors.
#[derive(Debug)]
pub struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl StdError for Usage {}

/// An [`anyhow::Error`] that is a usage error (exit code 2).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// The exit code for a failed command: 2 when a usage error is anywhere in
/// the chain, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|c| c.is::<Usage>()) {
        2
    } else {
        1
    }
}

/// Whether the error is a write to a closed pipe (handled once, in `main`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let pipe = Some(std::io::ErrorKind::BrokenPipe);
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().map(|e| e.kind()) == pipe
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|e| e.io_error_kind())
                == pipe
    })
}

/// An [`anyhow::Error`] carrying a hint.
pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        message: message.into(),
        hint: hint.into(),
    })
}

/// The whole report for `err`, as printed on standard error.
pub fn error_report(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut hints = Vec::new();
    let mut snippet_done = false;
    for (i, cause) in err.chain().enumerate() {
        let text = cause.to_string();
        if i == 0 {
            let _ = writeln!(out, "error: {text}");
        } else {
            let _ = writeln!(out, "  caused by: {text}");
        }
        if let Some(diag) = as_diagnostic(cause) {
            if !snippet_done {
                if let (Some(src), Some(labels)) = (diag.source_code(), diag.labels()) {
                    for label in labels {
                        out.push_str(&snippet(src, &label));
                        snippet_done = true;
                    }
                }
            }
            if let Some(help) = diag.help() {
                hints.push(help.to_string());
            }
        }
    }
    for hint in hints {
        let _ = writeln!(out, "hint: {hint}");
    }
    out
}

/// A rustc-style snippet: `--> name:line:col`, the line, and carets under the span.
fn snippet(src: &dyn SourceCode, label: &LabeledSpan) -> String {
    // One line of context before makes miette start the contents at the
    // beginning of a line (with none, they start at the span itself).
    let Ok(contents) = src.read_span(label.inner(), 1, 1) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(contents.data());
    let rel = label
        .offset()
        .saturating_sub(contents.span().offset())
        .min(text.len());
    let rel = (0..=rel)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let before = &text[..rel];
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_no = contents.line() + before.matches('\n').count() + 1;
    let line_text = text[line_start..]
        .split('\n')
        .next()
        .unwrap_or("")
        .trim_end_matches('\r');
    let col_chars = text[line_start..rel].chars().count();
    let span_chars = text[rel..]
        .chars()
        .take_while(|c| *c != '\n')
        .take(label.len().max(1))
        .count()
        .max(1);
    let name = contents.name().unwrap_or("<input>");
    let gutter = line_no.to_string().len();
    let pad = " ".repeat(gutter);
    let mut out = String::new();
    let _ = writeln!(out, "{pad}--> {name}:{line_no}:{}", col_chars + 1);
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(out, "{line_no} | {}", line_text.replace('\t', " "));
    let _ = write!(
        out,
        "{pad} | {}{}",
        " ".repeat(col_chars),
        "^".repeat(span_chars)
    );
    match label.label() {
        Some(l) => {
            let _ = writeln!(out, " {l}");
        }
        None => out.push('\n'),
    }
    out
}

/// Bytes for people (one formatter for the whole tool: strata-analyze's).
pub use strata_analyze::image::human as human_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_and_hint() {
        let err = hinted("no Dockerfile found", "pass -f FILE").context("cannot build");
        let report = error_report(&err);
        assert_eq!(
            report,
            "error: cannot build\n  caused by: no Dockerfile found\nhint: pass -f FILE\n"
        );
    }
}
