//! Text rendering and CI gating of a [`Report`].

use std::fmt::Write as _;

use serde::Serialize;

use super::{human, BaseSource, Report, Share, WasteKind, WastedPath};
use crate::practices;

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

/// Evaluate the thresholds. They judge the waste the Dockerfile added
/// (`r.added`), not the base image's.
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
            value: human(r.added.wasted_bytes),
            pass: r.added.wasted_bytes <= t.highest_wasted_bytes,
        },
        CiCheck {
            name: "highest-user-wasted-percent".into(),
            limit: format!("{:.4}", t.highest_wasted_percent),
            value: format!("{:.4}", r.added.wasted_percent),
            pass: r.added.wasted_percent <= t.highest_wasted_percent,
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
    let base = if w.base_bytes == 0 {
        String::new()
    } else if w.base_bytes == w.bytes {
        " [base image]".to_owned()
    } else {
        format!(" [{} of it in the base image]", human(w.base_bytes))
    };
    let text = match w.kind {
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
    };
    text + &base
}

/// `layer 0`, `layers 0-3`, `layers 4-6` (for `n` layers from `first`).
fn layer_range(first: usize, n: usize) -> String {
    match n {
        0 => "no layers".to_owned(),
        1 => format!("layer {first}"),
        _ => format!("layers {first}-{}", first + n - 1),
    }
}

fn kinds(s: &Share) -> String {
    format!(
        "{} overwritten, {} removed later, {} duplicated",
        human(s.overwritten_bytes),
        human(s.removed_bytes),
        human(s.duplicate_bytes)
    )
}

/// The efficiency lines: the Dockerfile's waste, the base image's, both.
fn efficiency(o: &mut String, r: &Report) {
    let Some(source) = r.base_source else {
        let _ = writeln!(
            o,
            "Efficiency {:.1}%: {} wasted of {} ({})",
            r.efficiency * 100.0,
            human(r.wasted_bytes),
            human(r.total_file_bytes),
            kinds(&r.added)
        );
        let _ = writeln!(
            o,
            "  the base image's layers are not known (no build record, no CMD in the history): every layer counts as added"
        );
        let _ = writeln!(o, "  see: {}", practices::url("base-image"));
        return;
    };
    let _ = writeln!(
        o,
        "Efficiency {:.1}%: {} wasted by the Dockerfile's {} ({}), of {} in all layers",
        r.efficiency * 100.0,
        human(r.added.wasted_bytes),
        layer_range(r.base.layers, r.added.layers),
        kinds(&r.added),
        human(r.total_file_bytes)
    );
    let how = match source {
        BaseSource::Dockerfile => "before the Dockerfile's first step",
        BaseSource::History => "up to the last CMD/ENTRYPOINT in the history",
    };
    let _ = writeln!(
        o,
        "  from the base image ({}, {how}): {} wasted of {}, not counted in the efficiency",
        layer_range(0, r.base.layers),
        human(r.base.wasted_bytes),
        human(r.base.file_bytes)
    );
    let _ = writeln!(
        o,
        "  with the base image: {} wasted, efficiency {:.1}%",
        human(r.wasted_bytes),
        r.total_efficiency * 100.0
    );
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
                + if l.base { "  [base image]" } else { "" }
        );
    }
    let _ = writeln!(o);
    efficiency(&mut o, r);
    if !r.wasted_paths.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Largest wasted paths:");
        for w in &r.wasted_paths {
            let _ = writeln!(o, "  {:>9}  {}", human(w.bytes), describe(w));
        }
        let _ = writeln!(o, "  see: {}", practices::url("same-layer"));
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
            let base = if f.base_bytes == 0 {
                String::new()
            } else if f.base_bytes == f.bytes {
                " (in the base image)".to_owned()
            } else {
                format!(" ({} of it in the base image)", human(f.base_bytes))
            };
            let _ = writeln!(
                o,
                "  {:>9}  {} [{}]: {} files in {}{}{base}",
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
            let _ = writeln!(o, "             see: {}", f.doc);
        }
    }
    o
}

/// The few lines printed after `strata build`.
pub fn render_summary(r: &Report) -> String {
    let mut o = String::new();
    let base = if r.base_source.is_some() {
        format!(
            " by the Dockerfile (+ {} in the base image)",
            human(r.base.wasted_bytes)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        o,
        "analysis: {} in {} layers ({} compressed), efficiency {:.1}%, {} wasted{base}",
        human(r.size),
        r.layers.len(),
        human(r.compressed_size),
        r.efficiency * 100.0,
        human(r.added.wasted_bytes)
    );
    // What the Dockerfile wasted: the base's waste is in the full report.
    for w in r
        .wasted_paths
        .iter()
        .filter(|w| w.base_bytes < w.bytes)
        .take(3)
    {
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
