//! `strata analyze` and `strata diff`.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use strata_analyze::image::{self as an, LayerMeta, Report};
use strata_build::BaseResolver as _;
use strata_oci::{Image, Platform, Store};

use crate::cli::*;
use crate::settings::Settings;

use super::{open_store, CmdResult};

/// An image to analyse, wherever it lives; `_tmp` keeps a temporary store
/// (for `oci:` and `docker-archive:` sources) alive while it is read.
struct Resolved {
    name: String,
    store: Store,
    image: Image,
    _tmp: Option<tempfile::TempDir>,
}

fn load_into_temp(path: &Path, name: &str) -> anyhow::Result<Resolved> {
    if !path.exists() {
        bail!("{}: no such file or directory", path.display());
    }
    let tmp = tempfile::Builder::new()
        .prefix("strata-analyze-")
        .tempdir()
        .context("cannot create a temporary store")?;
    let store = Store::open(tmp.path()).context("cannot open a temporary store")?;
    let loaded = strata_oci::load_archive(&store, path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let Some(first) = loaded.first() else {
        bail!("{} holds no image", path.display());
    };
    if loaded.len() > 1 {
        tracing::warn!(
            "{} holds {} images; analysing the first",
            path.display(),
            loaded.len()
        );
    }
    let image = store
        .image(&first.descriptor, Some(&Platform::host()))
        .or_else(|_| store.image(&first.descriptor, None))
        .with_context(|| format!("cannot read the image in {}", path.display()))?;
    Ok(Resolved {
        name: name.to_owned(),
        store,
        image,
        _tmp: Some(tmp),
    })
}

fn resolve(spec: &str, s: &Settings, insecure: &[String]) -> anyhow::Result<Resolved> {
    for prefix in ["oci:", "oci-archive:", "docker-archive:"] {
        if let Some(rest) = spec.strip_prefix(prefix) {
            // skopeo-style `oci:DIR:TAG` is not needed here: take the path.
            return load_into_temp(&PathBuf::from(rest), spec);
        }
    }
    let store = open_store(s)?;
    let image = match store.find_image(spec) {
        Ok(i) => i,
        Err(e) if !e.is_not_found() => return Err(e.into()),
        Err(_) => {
            let resolver = super::registry::PullResolver::new(s, insecure);
            resolver
                .resolve(&store, spec, &Platform::host())
                .map_err(anyhow::Error::from_boxed)
                .with_context(|| format!("image {spec} is not in the store and cannot be pulled"))?
        }
    };
    Ok(Resolved {
        name: spec.to_owned(),
        store,
        image,
        _tmp: None,
    })
}

/// Layer metadata, with each layer's history entry and Dockerfile line.
pub(crate) fn layer_metas(image: &Image, lines: &BTreeMap<usize, usize>) -> Vec<LayerMeta> {
    let mut metas: Vec<LayerMeta> = image
        .layers
        .iter()
        .map(|l| LayerMeta {
            digest: l.descriptor.digest.to_string(),
            diff_id: l.diff_id.to_string(),
            compressed_size: l.descriptor.size,
            created_by: None,
            line: None,
        })
        .collect();
    let mut next = 0;
    for (hi, h) in image.config.history.iter().enumerate() {
        if h.empty_layer {
            continue;
        }
        if let Some(m) = metas.get_mut(next) {
            m.created_by = h.created_by.clone();
            m.line = lines.get(&hi).copied();
        }
        next += 1;
    }
    metas
}

pub(crate) fn opener<'a>(
    store: &'a Store,
    image: &'a Image,
) -> impl FnMut(usize) -> io::Result<Box<dyn Read>> + 'a {
    move |i| {
        let d = &image.layers[i].descriptor.digest;
        let f = store
            .open_blob(d)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Box::new(io::BufReader::with_capacity(256 * 1024, f)) as Box<dyn Read>)
    }
}

/// Analyse an image in `store`; lines from its BuildInfo when strata built it.
pub(crate) fn analyze_image(
    store: &Store,
    image: &Image,
    name: &str,
    lines: Option<&BTreeMap<usize, usize>>,
    top: usize,
) -> anyhow::Result<Report> {
    let info;
    let lines = match lines {
        Some(l) => Some(l),
        None => {
            info = strata_build::BuildInfo::load(store, image.id()).map(|b| b.lines);
            info.as_ref()
        }
    };
    let metas = layer_metas(image, lines.unwrap_or(&BTreeMap::new()));
    let base = an::find_base(&image.config.history, lines);
    let mut open = opener(store, image);
    Ok(an::analyze(
        name,
        Some(image.id().to_string()),
        &metas,
        &mut open,
        &an::Options { top, base },
    )?)
}

/// The summary printed after `strata build`. An image's analysis depends
/// only on its layers and the line map, so it is kept beside the store (its
/// `analysis` sidecar, keyed by name and lines) and a fully cached rebuild
/// does not read the layers again.
pub(crate) fn build_summary(
    store: &Store,
    image: &Image,
    name: &str,
    lines: &BTreeMap<usize, usize>,
) -> anyhow::Result<String> {
    let key =
        strata_oci::Digest::sha256(format!("schema {}\0{name}\0{lines:?}", an::SCHEMA).as_bytes());
    let key = &key.hex()[..16];
    let cache = store.sidecar("analysis")?;
    if let Some(cached) = cache
        .get(image.id(), Some(key))
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
    {
        return Ok(cached);
    }
    let report = analyze_image(store, image, name, Some(lines), 3)?;
    let summary = an::render_summary(&report);
    // Best effort: a cache that cannot be written only costs time.
    let _ = cache.put(image.id(), Some(key), summary.as_bytes());
    Ok(summary)
}

pub fn analyze(args: AnalyzeArgs, s: &Settings) -> CmdResult {
    let r = resolve(&args.image, s, &args.registry.insecure_registries)?;
    let lines = if let Some(df) = &args.dockerfile {
        Some(lines_from_dockerfile(df, &r.image)?)
    } else {
        None
    };
    let report = analyze_image(&r.store, &r.image, &r.name, lines.as_ref(), args.top)?;
    match args.format {
        AnalyzeFormat::Text => out!("{}", an::render_text(&report)),
        AnalyzeFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        AnalyzeFormat::Html => {
            let path = args.output.clone().unwrap_or_else(|| {
                let safe: String = args
                    .image
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                PathBuf::from(format!("{safe}-analysis.html"))
            });
            std::fs::write(&path, an::render_html(&report))
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    if let (Some(path), AnalyzeFormat::Text | AnalyzeFormat::Json) = (&args.output, args.format) {
        let body = match args.format {
            AnalyzeFormat::Json => serde_json::to_string_pretty(&report)?,
            _ => an::render_text(&report),
        };
        std::fs::write(path, body).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.ci {
        let Some(max_bytes) = an::parse_bytes(&args.highest_wasted_bytes) else {
            bail!(
                "--highest-wasted-bytes {:?}: expected a size like 20MB",
                args.highest_wasted_bytes
            );
        };
        let checks = an::ci_checks(
            &report,
            &an::Thresholds {
                lowest_efficiency: args.lowest_efficiency,
                highest_wasted_bytes: max_bytes,
                highest_wasted_percent: args.highest_user_wasted_percent,
            },
        );
        let mut failed = 0;
        // Human-readable verdicts go to stderr so `--format json --ci` stays parseable.
        for c in &checks {
            eprintln!(
                "  {}: {}  (value {}, limit {})",
                if c.pass { "PASS" } else { "FAIL" },
                c.name,
                c.value,
                c.limit
            );
            if !c.pass {
                failed += 1;
            }
        }
        if failed > 0 {
            eprintln!("Result: FAIL [{failed} of {} checks]", checks.len());
            return Ok(ExitCode::from(1));
        }
        eprintln!("Result: PASS");
    }
    Ok(ExitCode::SUCCESS)
}

/// For images strata did not build: map the final stage's instructions onto
/// the last history entries (one entry per instruction, as docker and
/// BuildKit record them).
fn lines_from_dockerfile(path: &Path, image: &Image) -> anyhow::Result<BTreeMap<usize, usize>> {
    let src =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let df = strata_dockerfile::parse_named(&path.display().to_string(), &src)?;
    let mut stage: Vec<usize> = Vec::new();
    for node in &df.nodes {
        if node.keyword.eq_ignore_ascii_case("from") {
            stage.clear();
        } else {
            stage.push(node.start_line);
        }
    }
    let hist = image.config.history.len();
    let mut out = BTreeMap::new();
    for (k, line) in stage.iter().rev().enumerate() {
        if k >= hist {
            break;
        }
        out.insert(hist - 1 - k, *line);
    }
    Ok(out)
}

pub fn diff(args: DiffArgs, s: &Settings) -> CmdResult {
    let a = resolve(&args.from, s, &[])?;
    let b = resolve(&args.to, s, &[])?;
    let la = layer_metas(&a.image, &BTreeMap::new());
    let lb = layer_metas(&b.image, &BTreeMap::new());
    let trees = if args.files {
        let ta = an::final_tree(&la, &mut opener(&a.store, &a.image))?;
        let tb = an::final_tree(&lb, &mut opener(&b.store, &b.image))?;
        Some((ta, tb))
    } else {
        None
    };
    // What a push of each sends, as `strata push` decides it.
    let push_side = |r: &Resolved| -> anyhow::Result<(Vec<(String, u64)>, u64)> {
        let content = strata_registry::PushContent::of(&r.store, &r.image)
            .with_context(|| format!("cannot read what a push of {} sends", r.name))?;
        Ok((
            content
                .blobs()
                .map(|d| (d.digest.to_string(), d.size))
                .collect(),
            content.manifest_bytes(),
        ))
    };
    let (blobs_a, manifests_a) = push_side(&a)?;
    let (blobs_b, manifests_b) = push_side(&b)?;
    let ca = a.image.id().to_string();
    let cb = b.image.id().to_string();
    let report = an::diff_images(
        &an::DiffSide {
            name: &a.name,
            layers: &la,
            config_digest: &ca,
            blobs: &blobs_a,
            manifest_bytes: manifests_a,
        },
        &an::DiffSide {
            name: &b.name,
            layers: &lb,
            config_digest: &cb,
            blobs: &blobs_b,
            manifest_bytes: manifests_b,
        },
        trees.as_ref().map(|(x, y)| (x, y)),
    );
    match args.format {
        ListFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        ListFormat::Table => {
            outln!("{} -> {}", report.from, report.to);
            outln!(
                "  {:>3}  {:<14} {:>9}  {:<12}  CREATED BY",
                "#",
                "DIGEST",
                "SIZE",
                "STATUS"
            );
            for l in &report.layers {
                let d = l.digest.strip_prefix("sha256:").unwrap_or(&l.digest);
                outln!(
                    "  {:>3}  {:<14} {:>9}  {:<12}  {}",
                    l.index,
                    &d[..d.len().min(12)],
                    an::human(l.compressed_size),
                    l.status,
                    l.created_by
                        .as_deref()
                        .unwrap_or("-")
                        .chars()
                        .take(60)
                        .collect::<String>()
                );
            }
            outln!(
                "shared: {} layers ({}); new: {} layers ({}); config {}",
                report.shared_layers,
                an::human(report.shared_bytes),
                report.new_layers,
                an::human(report.new_layer_bytes),
                if report.config_changed {
                    "changed"
                } else {
                    "same"
                }
            );
            if !report.only_in_from.is_empty() {
                outln!(
                    "layers only in {}: {}",
                    report.from,
                    report.only_in_from.len()
                );
            }
            outln!(
                "a push of {} to a registry holding {} sends {} ({} bytes: new layers, config, manifest)",
                report.to,
                report.from,
                an::human(report.push_bytes),
                report.push_bytes
            );
            if let Some(files) = &report.files {
                outln!();
                for f in files {
                    let sign = match f.change.as_str() {
                        "added" => "+",
                        "removed" => "-",
                        _ => "~",
                    };
                    outln!(
                        "{sign} /{}  {}",
                        f.path,
                        match (f.from_size, f.to_size) {
                            (Some(x), Some(y)) => format!("{} -> {}", an::human(x), an::human(y)),
                            (None, Some(y)) => an::human(y),
                            (Some(x), None) => an::human(x),
                            _ => String::new(),
                        }
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
