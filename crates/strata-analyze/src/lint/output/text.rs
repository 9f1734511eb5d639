//! rustc-style text: header, location, the source lines with carets under
//! the span, then why, how to fix, and the link to the practice explained.

use std::fmt::Write as _;

use super::super::findings::Finding;
use super::super::Report;

/// Renders the findings of several files; `color` adds ANSI colours.
pub fn text(reports: &[Report], color: bool) -> String {
    let mut out = String::new();
    let (mut e, mut w, mut i) = (0, 0, 0);
    for r in reports {
        for f in &r.findings {
            match f.severity {
                super::super::Severity::Error => e += 1,
                super::super::Severity::Warning => w += 1,
                super::super::Severity::Info => i += 1,
            }
            render(&mut out, r, f, color);
        }
    }
    let files = reports.len();
    let _ = writeln!(
        out,
        "{} file{} checked: {e} error{}, {w} warning{}, {i} info",
        files,
        if files == 1 { "" } else { "s" },
        if e == 1 { "" } else { "s" },
        if w == 1 { "" } else { "s" },
    );
    out
}

fn paint(s: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn render(out: &mut String, r: &Report, f: &Finding, color: bool) {
    let sev = f.severity.as_str();
    let code = match f.severity {
        super::super::Severity::Error => "1;31",
        super::super::Severity::Warning => "1;33",
        super::super::Severity::Info => "1;36",
    };
    let aliases = if f.aliases.is_empty() {
        String::new()
    } else {
        format!(" ({})", f.aliases.join(", "))
    };
    let _ = writeln!(
        out,
        "{}: {}",
        paint(
            &format!("{sev}[{} {}]{aliases}", f.rule.id, f.rule.name),
            code,
            color
        ),
        f.message
    );
    let (sl, sc) = (f.region.start.line, f.region.start.column);
    let width = f.region.end.line.max(sl).to_string().len();
    let pad = " ".repeat(width);
    let _ = writeln!(
        out,
        "{pad}{} {}:{sl}:{sc}",
        paint("-->", "1;34", color),
        r.name
    );
    let _ = writeln!(out, "{pad} {}", paint("|", "1;34", color));
    let lines: Vec<&str> = r.source.lines().collect();
    let last = f.region.end.line.max(sl);
    // At most 4 lines of a long span.
    let shown: Vec<usize> = (sl..=last).take(4).collect();
    for ln in &shown {
        let Some(src) = lines.get(ln - 1) else {
            continue;
        };
        let _ = writeln!(out, "{:>width$} {} {}", ln, paint("|", "1;34", color), src);
        let chars = src.chars().count();
        let from = if *ln == sl {
            sc
        } else {
            1 + src.chars().take_while(|c| c.is_whitespace()).count()
        };
        let to = if *ln == f.region.end.line {
            f.region.end.column.max(from + 1)
        } else {
            chars + 1
        };
        let to = if to <= from { from + 1 } else { to };
        let carets = "^".repeat(to - from);
        let _ = writeln!(
            out,
            "{pad} {} {}{}",
            paint("|", "1;34", color),
            " ".repeat(from - 1),
            paint(&carets, code, color)
        );
    }
    if last > sl + 3 {
        let _ = writeln!(out, "{pad} {} ...", paint("|", "1;34", color));
    }
    let _ = writeln!(
        out,
        "{pad} {} why: {}",
        paint("=", "1;34", color),
        f.rule.why
    );
    let safe = if f.fix.safe {
        " (strata lint --fix applies it)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "{pad} {} fix: {}{safe}",
        paint("=", "1;34", color),
        f.fix.description
    );
    let _ = writeln!(
        out,
        "{pad} {} see: {}",
        paint("=", "1;34", color),
        f.rule.doc_url()
    );
    out.push('\n');
}
