//! Text rendering and CI gating of a [`Report`].

use std::fmt::Write as _;

use serde::Serialize;

use super::{human, Report, WasteKind, WastedPath};

/// `--ci` limits (like dive's `.dive-ci`).
#[derive(Debug, Clone)]
pub struct Thresholds {
    /// Lowest efficiency accepted (0..1).
    pub lowest_efficiency: f64,
    /// Most wasted bytes accepted.
    pub highest_wasted_bytes: u64,
    /// Most wasted share accepted (0..1).
    pub highest_wasted_percent: f64,
}

/// One `--ci` check.
#[derive(Debug, Clone, Serialize)]
pub struct CiCheck {
    /// Which limit.
    pub name: String,
    /// The limit, as given.
    pub limit: String,
    /// The measured value.
    pub value: String,
    /// Whether the image is within it.
    pub pass: bool,
}

/// Evaluate the thresholds.
pub fn ci_checks(r: &Report, t: &Thresholds) -> Vec<CiCheck> {
    vec![
        CiCheck {
            name: "lowest-efficiency".into(),
            limit: format!("{:.4}", t.lowest_efficiency),
            value: format!("{:.4}", r.efficiency),
            pass: r.efficiency >= t.lowest_efficiency,
        },
        CiCheck {
            name: "highest-wasted-bytes".into(),
            limit: human(t.highest_wasted_bytes),
            value: human(r.wasted_bytes),
            pass: r.wasted_bytes <= t.highest_wasted_bytes,
        },
        CiCheck {
            name: "highest-user-wasted-percent".into(),
            limit: format!("{:.4}", t.highest_wasted_percent),
            value: format!("{:.4}", r.wasted_percent),
            pass: r.wasted_percent <= t.highest_wasted_percent,
        },
    ]
}

fn one_line(s: &str, max: usize) -> String {
    let s = s
        .trim_start_matches("/bin/sh -c #(nop) ")
        .trim_start_matches("|0 ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if s.chars().count() > max {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        s
    }
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" (Dockerfile:{l})"))
        .unwrap_or_default()
}

fn describe(w: &WastedPath) -> String {
    let layers = w
        .layers
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let lines = if w.lines.is_empty() {
        String::new()
    } else {
        format!(
            " Dockerfile:{}",
            w.lines
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let by = w.by_layer.map(|l| l.to_string()).unwrap_or_default();
    let files = if w.files > 1 {
        format!(", {} files", w.files)
    } else {
        String::new()
    };
    match w.kind {
        WasteKind::Removed => format!(
            "/{} removed in layer {by}{} but kept in layer {layers}{lines}{files}",
            w.path,
            at_line(w.by_line)
        ),
        WasteKind::Overwritten => format!(
            "/{} overwritten in layer {by}{}, old copy kept in layer {layers}{lines}",
            w.path,
            at_line(w.by_line)
        ),
        WasteKind::Duplicate => format!(
            "/{} duplicates /{} (layer {layers}{lines})",
            w.path,
            w.kept.as_deref().unwrap_or("?")
        ),
    }
}

/// The full text report.
pub fn render_text(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Image {}{}",
        r.image,
        r.id.as_deref()
            .map(|i| format!(" ({})", &i[..i.len().min(19)]))
            .unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "  {} layers, {} uncompressed, {} compressed; final filesystem {} in {} files",
        r.layers.len(),
        human(r.size),
        human(r.compressed_size),
        human(r.final_file_bytes),
        r.final_files
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  {:>3} {:>9} {:>9} {:>7} {:>7} {:>7} {:>9}  CREATED BY",
        "#", "SIZE", "COMPR", "ADDED", "CHANGED", "REMOVED", "WASTED"
    );
    for l in &r.layers {
        let by = l
            .created_by
            .as_deref()
            .map(|c| one_line(c, 60))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            o,
            "  {:>3} {:>9} {:>9} {:>7} {:>7} {:>7} {:>9}  {}{}",
            l.index,
            human(l.size),
            human(l.compressed_size),
            l.files_added,
            l.files_changed,
            l.files_removed,
            human(l.wasted_bytes),
            by,
            l.line.map(|n| format!("  [line {n}]")).unwrap_or_default()
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Efficiency {:.1}%: {} wasted of {} ({} overwritten, {} removed later, {} duplicated)",
        r.efficiency * 100.0,
        human(r.wasted_bytes),
        human(r.total_file_bytes),
        human(r.overwritten_bytes),
        human(r.removed_bytes),
        human(r.duplicate_bytes)
    );
    if !r.wasted_paths.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Largest wasted paths:");
        for w in &r.wasted_paths {
            let _ = writeln!(o, "  {:>9}  {}", human(w.bytes), describe(w));
        }
    }
    if !r.findings.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Found in the final filesystem:");
        for f in &r.findings {
            let lines = if f.lines.is_empty() {
                String::new()
            } else {
                format!(
                    ", Dockerfile:{}",
                    f.lines
                        .iter()
                        .map(|l| l.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            };
            let _ = writeln!(
                o,
                "  {:>9}  {} [{}]: {} files in {}{}",
                human(f.bytes),
                f.title,
                f.id,
                f.files,
                f.paths
                    .iter()
                    .take(3)
                    .map(|(p, _)| if p.contains(' ') {
                        p.clone()
                    } else {
                        format!("/{p}")
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                lines
            );
            let _ = writeln!(o, "             fix: {}", f.fix);
        }
    }
    o
}

/// The few lines printed after `strata build`.
pub fn render_summary(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "analysis: {} in {} layers ({} compressed), efficiency {:.1}%, {} wasted",
        human(r.size),
        r.layers.len(),
        human(r.compressed_size),
        r.efficiency * 100.0,
        human(r.wasted_bytes)
    );
    for w in r.wasted_paths.iter().take(3) {
        let _ = writeln!(o, "  {:>9}  {}", human(w.bytes), describe(w));
    }
    for f in r.findings.iter().take(3) {
        let _ = writeln!(
            o,
            "  {:>9}  {} [{}] in {}",
            human(f.bytes),
            f.title,
            f.id,
            f.paths
                .iter()
                .take(2)
                .map(|(p, _)| if p.contains(' ') {
                    p.clone()
                } else {
                    format!("/{p}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !r.wasted_paths.is_empty() || !r.findings.is_empty() {
        let _ = writeln!(
            o,
            "  (strata analyze {} for the details and fixes)",
            r.image
        );
    }
    o
}
