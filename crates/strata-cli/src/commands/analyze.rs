//! `strata analyze` and `strata diff`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use strata_analyze::image as an;
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
    _tmp: Option<an::TempStore>,
}

fn resolve(spec: &str, s: &Settings, insecure: &[String]) -> anyhow::Result<Resolved> {
    if let Some(path) = an::archive_path(spec) {
        let an::Archived {
            store,
            image,
            images,
            dir,
        } = an::open_archive(path)?;
        if images > 1 {
            tracing::warn!(
                "{} holds {images} images; analysing the first",
                path.display()
            );
        }
        return Ok(Resolved {
            name: spec.to_owned(),
            store,
            image,
            _tmp: Some(dir),
        });
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

pub fn analyze(args: AnalyzeArgs, s: &Settings) -> CmdResult {
    let r = resolve(&args.image, s, &args.registry.insecure_registries)?;
    let lines = if let Some(df) = &args.dockerfile {
        let src =
            std::fs::read_to_string(df).with_context(|| format!("cannot read {}", df.display()))?;
        let parsed = strata_dockerfile::parse_named(&df.display().to_string(), &src)?;
        Some(an::dockerfile_lines(&parsed, r.image.config.history.len()))
    } else {
        None
    };
    // Lines from the build record when strata built the image.
    let lines =
        lines.or_else(|| strata_build::BuildInfo::load(&r.store, r.image.id()).map(|b| b.lines));
    let report = an::analyze_image(&r.store, &r.image, &r.name, lines.as_ref(), args.top)?;
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

pub fn diff(args: DiffArgs, s: &Settings) -> CmdResult {
    let a = resolve(&args.from, s, &[])?;
    let b = resolve(&args.to, s, &[])?;
    let la = an::layer_metas(&a.image, &BTreeMap::new());
    let lb = an::layer_metas(&b.image, &BTreeMap::new());
    let trees = if args.files {
        let ta = an::final_tree(&la, &mut an::layer_files_opener(&a.store, &a.image))?;
        let tb = an::final_tree(&lb, &mut an::layer_files_opener(&b.store, &b.image))?;
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
