//! One self-contained HTML page for a [`Report`]: inline CSS and SVG, no
//! script, no network.

use std::fmt::Write as _;

use super::{human, Report};

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[derive(Clone, Copy)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

/// Squarified layout (Bruls et al.) of `sizes` (largest first) in `r`.
fn squarify(sizes: &[f64], r: Rect) -> Vec<Rect> {
    let total: f64 = sizes.iter().sum();
    if sizes.is_empty() || total <= 0.0 {
        return vec![];
    }
    let scale = r.w * r.h / total;
    let areas: Vec<f64> = sizes.iter().map(|s| s * scale).collect();
    let mut out = Vec::with_capacity(areas.len());
    let mut rest = r;
    let mut i = 0;
    while i < areas.len() {
        let side = rest.w.min(rest.h);
        let mut row = vec![areas[i]];
        let worst = |row: &[f64]| {
            let s: f64 = row.iter().sum();
            let (mx, mn) = row
                .iter()
                .fold((0f64, f64::MAX), |(a, b), &v| (a.max(v), b.min(v)));
            ((side * side * mx) / (s * s)).max((s * s) / (side * side * mn))
        };
        let mut j = i + 1;
        while j < areas.len() {
            let mut cand = row.clone();
            cand.push(areas[j]);
            if worst(&cand) > worst(&row) {
                break;
            }
            row = cand;
            j += 1;
        }
        let s: f64 = row.iter().sum();
        if rest.w >= rest.h {
            let w = if rest.h > 0.0 { s / rest.h } else { 0.0 };
            let mut y = rest.y;
            for a in &row {
                let h = if w > 0.0 { a / w } else { 0.0 };
                out.push(Rect { x: rest.x, y, w, h });
                y += h;
            }
            rest = Rect {
                x: rest.x + w,
                w: (rest.w - w).max(0.0),
                ..rest
            };
        } else {
            let h = if rest.w > 0.0 { s / rest.w } else { 0.0 };
            let mut x = rest.x;
            for a in &row {
                let w = if h > 0.0 { a / h } else { 0.0 };
                out.push(Rect { x, y: rest.y, w, h });
                x += w;
            }
            rest = Rect {
                y: rest.y + h,
                h: (rest.h - h).max(0.0),
                ..rest
            };
        }
        i = j;
    }
    out
}

const COLORS: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

fn treemap(r: &Report) -> String {
    let (w, h) = (960.0, 420.0);
    let top: Vec<&(String, u64)> = r
        .largest_dirs
        .iter()
        .filter(|(p, _)| !p.contains('/'))
        .take(12)
        .collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="treemap" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="largest paths">"#
    );
    let sizes: Vec<f64> = top.iter().map(|(_, b)| *b as f64).collect();
    let rects = squarify(
        &sizes,
        Rect {
            x: 0.0,
            y: 0.0,
            w,
            h,
        },
    );
    for (k, ((dir, bytes), rc)) in top.iter().zip(rects).enumerate() {
        let color = COLORS[k % COLORS.len()];
        let _ = write!(
            svg,
            r##"<g class="dir"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}" stroke="#fff" stroke-width="2"><title>/{} {}</title></rect>"##,
            rc.x,
            rc.y,
            rc.w,
            rc.h,
            esc(dir),
            human(*bytes)
        );
        // Second level inside, lighter.
        let prefix = format!("{dir}/");
        let kids: Vec<&(String, u64)> = r
            .largest_dirs
            .iter()
            .filter(|(p, _)| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
            .take(10)
            .collect();
        let inner = Rect {
            x: rc.x + 3.0,
            y: rc.y + 18.0,
            w: (rc.w - 6.0).max(0.0),
            h: (rc.h - 21.0).max(0.0),
        };
        if inner.w > 20.0 && inner.h > 20.0 {
            let mut ks: Vec<f64> = kids.iter().map(|(_, b)| *b as f64).collect();
            let covered: f64 = ks.iter().sum();
            if (*bytes as f64) > covered {
                ks.push(*bytes as f64 - covered);
            }
            for ((p, b), kr) in kids.iter().zip(squarify(&ks, inner)) {
                let name = &p[prefix.len()..];
                let _ = write!(
                    svg,
                    r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#ffffff" fill-opacity="0.22" stroke="{color}"><title>/{} {}</title></rect>"##,
                    kr.x,
                    kr.y,
                    kr.w,
                    kr.h,
                    esc(p),
                    human(*b)
                );
                if kr.w > 60.0 && kr.h > 14.0 {
                    let _ = write!(
                        svg,
                        r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#fff">{}</text>"##,
                        kr.x + 3.0,
                        kr.y + 12.0,
                        esc(name)
                    );
                }
            }
        }
        if rc.w > 50.0 && rc.h > 16.0 {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" font-size="13" font-weight="bold" fill="#fff">/{} {}</text>"##,
                rc.x + 4.0,
                rc.y + 14.0,
                esc(dir),
                human(*bytes)
            );
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    svg
}

/// Render the report as one HTML page.
pub fn render_html(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>strata analyze: {img}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}}
h1{{font-size:1.4em}} h2{{font-size:1.15em;margin-top:1.6em}}
table{{border-collapse:collapse;width:100%;font-size:.9em}}
td,th{{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}}
td.n{{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}}
.bar{{height:14px;background:#4e79a7;display:inline-block;vertical-align:middle}}
.bar.w{{background:#e15759}}
.score{{font-size:2em;font-weight:bold}}
code{{background:#f4f4f4;padding:0 3px}}
</style></head><body>
<h1>strata analyze: <code>{img}</code></h1>
<p id="summary"><span class="score">{eff:.1}%</span> efficiency &mdash; {wasted} wasted by the Dockerfile's layers, of {total};
{n} layers, {size} uncompressed, {comp} compressed; final filesystem {fin} in {files} files.</p>
<p id="base">{base}</p>
"#,
        img = esc(&r.image),
        eff = r.efficiency * 100.0,
        wasted = human(r.added.wasted_bytes),
        total = human(r.total_file_bytes),
        base = match r.base_source {
            Some(_) => format!(
                "From the base image ({} layer{}, marked <em>base</em> below): {} wasted of {}, not counted in the efficiency. With it: {} wasted, {:.1}% efficiency. <a href=\"{}\">Why</a>.",
                r.base.layers,
                if r.base.layers == 1 { "" } else { "s" },
                human(r.base.wasted_bytes),
                human(r.base.file_bytes),
                human(r.wasted_bytes),
                r.total_efficiency * 100.0,
                esc(&crate::practices::url("base-image"))
            ),
            None => format!(
                "The base image's layers are not known: every layer counts as added. <a href=\"{}\">Why</a>.",
                esc(&crate::practices::url("base-image"))
            ),
        },
        n = r.layers.len(),
        size = human(r.size),
        comp = human(r.compressed_size),
        fin = human(r.final_file_bytes),
        files = r.final_files,
    );
    let max = r.layers.iter().map(|l| l.size).max().unwrap_or(1).max(1) as f64;
    o.push_str("<h2>Layers</h2>\n<table id=\"layers\"><tr><th>#</th><th>size</th><th>compressed</th><th></th><th>added</th><th>changed</th><th>removed</th><th>wasted</th><th>created by</th></tr>\n");
    for l in &r.layers {
        let bw = 300.0 * l.size as f64 / max;
        let ww = 300.0 * l.wasted_bytes.min(l.size) as f64 / max;
        let _ = writeln!(
            o,
            r##"<tr class="layer"><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td><span class="bar" style="width:{:.0}px"></span><span class="bar w" style="width:{:.0}px"></span></td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td><code>{}</code>{}</td></tr>"##,
            l.index,
            human(l.size),
            human(l.compressed_size),
            (bw - ww).max(if l.size > 0 { 1.0 } else { 0.0 }),
            ww,
            l.files_added,
            l.files_changed,
            l.files_removed,
            human(l.wasted_bytes),
            esc(l.created_by.as_deref().unwrap_or("-")),
            l.line.map(|n| format!(" (line {n})")).unwrap_or_default()
                + if l.base { " <em>base</em>" } else { "" }
        );
    }
    o.push_str("</table>\n<h2>Largest paths</h2>\n");
    o.push_str(&treemap(r));
    o.push_str("\n<h2>Wasted paths</h2>\n");
    if r.wasted_paths.is_empty() {
        o.push_str("<p>None: every byte in the layers is in the final filesystem once.</p>\n");
    } else {
        o.push_str("<table id=\"waste\"><tr><th>bytes</th><th>path</th><th>why</th><th>layers</th><th>by layer</th></tr>\n");
        for w in &r.wasted_paths {
            let why = match w.kind {
                super::WasteKind::Removed => "removed later".to_owned(),
                super::WasteKind::Overwritten => "overwritten later".to_owned(),
                super::WasteKind::Duplicate => {
                    format!("duplicate of /{}", esc(w.kept.as_deref().unwrap_or("?")))
                }
            };
            let _ = writeln!(
                o,
                "<tr class=\"wasted\"><td class=\"n\">{}</td><td><code>/{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                human(w.bytes),
                esc(&w.path),
                if w.files > 1 { format!(" ({} files)", w.files) } else { String::new() },
                why + &if w.base_bytes == 0 {
                    String::new()
                } else if w.base_bytes == w.bytes {
                    " <em>base</em>".to_owned()
                } else {
                    format!(" ({} in the base image)", human(w.base_bytes))
                },
                w.layers
                    .iter()
                    .zip(w.lines.iter().map(Some).chain(std::iter::repeat(None)))
                    .map(|(l, n)| match n {
                        Some(n) => format!("{l} (line {n})"),
                        None => l.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                w.by_layer
                    .map(|l| format!(
                        "{l}{}",
                        w.by_line.map(|n| format!(" (line {n})")).unwrap_or_default()
                    ))
                    .unwrap_or_default()
            );
        }
        o.push_str("</table>\n");
    }
    o.push_str("<h2>Findings</h2>\n");
    if r.findings.is_empty() {
        o.push_str("<p>No known waste in the final filesystem.</p>\n");
    } else {
        o.push_str("<table id=\"findings\"><tr><th>bytes</th><th>what</th><th>where</th><th>fix</th></tr>\n");
        for f in &r.findings {
            let _ = writeln!(
                o,
                "<tr class=\"finding\"><td class=\"n\">{}</td><td>{} <code>{}</code> ({} files)</td><td>{}</td><td>{} <a href=\"{}\">Why</a></td></tr>",
                human(f.bytes),
                esc(&f.title),
                esc(&f.id),
                f.files,
                f.paths
                    .iter()
                    .map(|(p, b)| format!("<code>/{}</code> {}", esc(p), human(*b)))
                    .collect::<Vec<_>>()
                    .join("<br>"),
                esc(&f.fix),
                esc(&f.doc)
            );
        }
        o.push_str("</table>\n");
    }
    o.push_str(
        "<p><small>strata analyze; JSON schema in docs/analyze.md</small></p>\n</body></html>\n",
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squarify_fills_the_rectangle() {
        let r = Rect {
            x: 0.0,
            y: 0.0,
            w: 100.0,
            h: 50.0,
        };
        let out = squarify(&[50.0, 30.0, 15.0, 5.0], r);
        assert_eq!(out.len(), 4);
        let area: f64 = out.iter().map(|q| q.w * q.h).sum();
        assert!((area - 5000.0).abs() < 1e-6, "{area}");
        for q in &out {
            assert!(
                q.x >= -1e-9
                    && q.y >= -1e-9
                    && q.x + q.w <= 100.0 + 1e-6
                    && q.y + q.h <= 50.0 + 1e-6
            );
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&"), "&lt;a href=&quot;x&quot;&gt;&amp;");
    }
}
