use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use strata_layer::{LayerOptions, Snapshotter};
use strata_oci::{
    format_rfc3339, parse_rfc3339, Compression, GcOptions, Image, ImageConfig, ImportOptions,
    Platform, Reference, Removed, SaveItem, Store,
};

use crate::cli::*;
use crate::format::{object, print_items, Format};
use crate::render::{human_bytes, usage};
use crate::settings::Settings;

use super::{open_store, parse_ref, CmdResult};

pub(crate) fn find(store: &Store, name: &str) -> anyhow::Result<Image> {
    find_for(store, name, None)
}

/// [`find`], choosing `platform` from a multi-platform image.
fn find_for(store: &Store, name: &str, platform: Option<&Platform>) -> anyhow::Result<Image> {
    store.find_image_for(name, platform).map_err(|e| {
        if e.is_not_found() {
            crate::render::hinted(
                format!("no such image: {name}"),
                "`strata images` lists the images in the store; `strata import` or `strata load` adds some",
            )
        } else {
            anyhow::Error::new(e).context(format!("cannot read image {name}"))
        }
    })
}

/// "3 days ago", as docker prints ages (go-units HumanDuration).
pub(super) fn ago(created: Option<&str>) -> String {
    let Some(t) = created.and_then(parse_rfc3339) else {
        return "N/A".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    format!("{} ago", human_duration((now - t).max(0)))
}

fn human_duration(secs: i64) -> String {
    let (mins, hours) = (secs / 60, secs / 3600);
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if mins == 1 => "About a minute".into(),
        _ if mins < 60 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// docker's HumanSizeWithPrecision(n, 3): `0B`, `1.24kB`, `4.26MB`.
pub(super) use strata_analyze::image::docker_size;

fn print_json(v: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// `repo` or `repo:tag` as `images REPOSITORY[:TAG]` filters (docker's
/// reference matching: the familiar name, and the tag when one is given).
fn matches_repository(filter: &str, r: &Option<Reference>) -> bool {
    let Some(r) = r else { return false };
    let (name, tag) = match filter.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (filter, None),
    };
    let name_ok = r.familiar_name() == name
        || name
            .parse::<Reference>()
            .is_ok_and(|f| f.familiar_name() == r.familiar_name());
    name_ok && tag.is_none_or(|t| r.tag() == Some(t))
}

/// docker's SIZE of a layer: the bytes of the files it adds, uncompressed
/// (the same however the layer is compressed or arrived); the blob's size
/// when the layer cannot be read.
fn layer_size(snap: Option<&Snapshotter>, l: &strata_oci::Layer) -> u64 {
    snap.and_then(|s| s.content_size(l).ok())
        .unwrap_or(l.descriptor.size)
}

/// docker's SIZE of an image: its layers' [`layer_size`]s.
fn image_size(snap: Option<&Snapshotter>, img: &Image) -> u64 {
    img.layers.iter().map(|l| layer_size(snap, l)).sum()
}

pub fn images(args: ImagesArgs, s: &Settings) -> CmdResult {
    let format = Format::parse(args.format.as_deref()).map_err(usage)?;
    let store = open_store(s)?;
    let mut list = store.images().context("cannot list images")?;
    let snap = Snapshotter::new(&store).ok();
    if let Some(f) = &args.repository {
        list.retain(|e| matches_repository(f, &e.entry.reference));
    }
    let id = |img: &Image| {
        if args.no_trunc {
            img.id().to_string()
        } else {
            img.id().short().to_owned()
        }
    };
    if args.ids_only || s.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for e in &list {
            if seen.insert(e.image.id().clone()) {
                outln!("{}", id(&e.image));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let items: Vec<Value> = list
        .iter()
        .map(|e| {
            let (repo, tag) = match &e.entry.reference {
                Some(r) => (r.familiar_name(), r.tag().unwrap_or("<none>").to_owned()),
                None => ("<none>".to_owned(), "<none>".to_owned()),
            };
            let digest = match &e.entry.reference {
                Some(r) if r.digest().is_some() => e.entry.descriptor.digest.to_string(),
                _ => "<none>".to_owned(),
            };
            let size = docker_size(image_size(snap.as_ref(), &e.image));
            object(vec![
                ("Containers", json!("N/A")),
                (
                    "CreatedAt",
                    json!(created_at(e.image.config.created.as_deref())),
                ),
                (
                    "CreatedSince",
                    json!(ago(e.image.config.created.as_deref())),
                ),
                ("Digest", json!(digest)),
                ("ID", json!(id(&e.image))),
                ("Repository", json!(repo)),
                ("SharedSize", json!("N/A")),
                ("Size", json!(size)),
                ("Tag", json!(tag)),
                ("UniqueSize", json!("N/A")),
                ("VirtualSize", json!(size)),
            ])
        })
        .collect();
    let default = [
        ("REPOSITORY", "Repository"),
        ("TAG", "Tag"),
        ("IMAGE ID", "ID"),
        ("CREATED", "CreatedSince"),
        ("SIZE", "Size"),
    ];
    print_items(&mut std::io::stdout().lock(), &format, &default, &items)?;
    Ok(ExitCode::SUCCESS)
}

/// docker's `CreatedAt` (Go's time format `2006-01-02 15:04:05 -0700 MST`).
fn created_at(created: Option<&str>) -> String {
    match created.and_then(parse_rfc3339) {
        Some(t) => {
            let iso = format_rfc3339(t);
            // 1970-01-01T00:00:00Z -> 1970-01-01 00:00:00 +0000 UTC
            format!("{} {} +0000 UTC", &iso[..10], &iso[11..19])
        }
        None => "N/A".to_owned(),
    }
}

fn inspect_json(store: &Store, img: &Image) -> anyhow::Result<Value> {
    let tags: Vec<String> = store
        .tags_of(img.id())?
        .iter()
        .map(Reference::familiar)
        .collect();
    let config: Value = serde_json::from_slice(&img.config_raw)?;
    let manifest: Value = serde_json::from_slice(&img.manifest_raw)?;
    let layers: Vec<Value> = img
        .layers
        .iter()
        .map(|l| {
            json!({
                "Digest": l.descriptor.digest.to_string(),
                "DiffID": l.diff_id.to_string(),
                "Size": l.descriptor.size,
                "MediaType": l.descriptor.media_type,
            })
        })
        .collect();
    let mut v = json!({
        "Id": img.id().to_string(),
        "RepoTags": tags,
        "Digest": img.top_descriptor().digest.to_string(),
        "ManifestDigest": img.descriptor.digest.to_string(),
        "Created": img.config.created,
        "Architecture": img.config.architecture,
        "Os": img.config.os,
        "Size": image_size(Snapshotter::new(store).ok().as_ref(), img),
        "Config": config.get("config").cloned().unwrap_or(Value::Null),
        "RootFS": config.get("rootfs").cloned().unwrap_or(Value::Null),
        "Layers": layers,
        "Manifest": manifest,
        "ImageConfig": config,
    });
    // docker shows the variant only when there is one.
    if let Some(variant) = &img.config.variant {
        v["Variant"] = json!(variant);
    }
    // A multi-platform image: the platforms its index lists (this object
    // describes one of them; `--platform` chooses which).
    if let Some(index) = &img.index {
        if let Ok(raw) = store.read_blob(&index.digest) {
            if let Ok(idx) = serde_json::from_slice::<strata_oci::Index>(&raw) {
                let manifests: Vec<Value> = idx
                    .manifests
                    .iter()
                    .map(|m| {
                        json!({
                            "Digest": m.digest.to_string(),
                            "Platform": m.platform.as_ref().map(|p| p.to_string()),
                            "Present": store.has(&m.digest),
                        })
                    })
                    .collect();
                v["Index"] = json!({
                    "Digest": index.digest.to_string(),
                    "MediaType": index.media_type,
                    "Manifests": manifests,
                });
            }
        }
    }
    Ok(v)
}

pub fn inspect(args: InspectArgs, s: &Settings) -> CmdResult {
    let template = match args.format.as_deref().map(str::trim) {
        None | Some("") | Some("json") => None,
        Some(t) => Some(
            crate::format::Template::parse(&t.replace("\\t", "\t").replace("\\n", "\n"))
                .map_err(usage)?,
        ),
    };
    let store = open_store(s)?;
    let platform = match &args.platform {
        Some(p) => Some(super::parse_platform("--platform", p)?),
        None => None,
    };
    let mut out = Vec::new();
    for name in &args.images {
        let img = find_for(&store, name, platform.as_ref())?;
        out.push(inspect_json(&store, &img)?);
    }
    match template {
        None => print_json(&Value::Array(out))?,
        Some(t) => {
            for item in &out {
                outln!("{}", crate::format::render(&t, item));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn history(args: HistoryArgs, s: &Settings) -> CmdResult {
    let format = Format::parse(args.format.as_deref()).map_err(usage)?;
    let store = open_store(s)?;
    let img = find(&store, &args.image)?;
    let snap = Snapshotter::new(&store).ok();
    let rows = img.history_rows(|l| layer_size(snap.as_ref(), l));
    if s.quiet {
        for r in &rows {
            match (&r.id, args.no_trunc) {
                (Some(id), true) => outln!("{id}"),
                (Some(_), false) => outln!("{}", img.id().short()),
                (None, _) => outln!("<missing>"),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let id = match (&r.id, args.no_trunc) {
                (Some(id), true) => id.to_string(),
                (Some(_), false) => img.id().short().to_owned(),
                (None, _) => "<missing>".into(),
            };
            let by = r.created_by.replace(['\n', '\t'], " ");
            let by = if args.no_trunc || by.chars().count() <= 45 {
                by
            } else {
                format!("{}…", by.chars().take(44).collect::<String>())
            };
            let size = if args.human {
                docker_size(r.size)
            } else {
                r.size.to_string()
            };
            object(vec![
                ("Comment", json!(r.comment)),
                ("CreatedAt", json!(created_at(r.created.as_deref()))),
                ("CreatedBy", json!(by)),
                ("CreatedSince", json!(ago(r.created.as_deref()))),
                ("ID", json!(id)),
                ("Size", json!(size)),
            ])
        })
        .collect();
    let default = [
        ("IMAGE", "ID"),
        ("CREATED", "CreatedSince"),
        ("CREATED BY", "CreatedBy"),
        ("SIZE", "Size"),
        ("COMMENT", "Comment"),
    ];
    print_items(&mut std::io::stdout().lock(), &format, &default, &items)?;
    Ok(ExitCode::SUCCESS)
}

pub fn import(args: ImportArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let reference = parse_ref(&args.reference)?;
    // The changes are Dockerfile instructions, applied as the builder does.
    let mut changed = ImageConfig::default();
    for ch in &args.changes {
        strata_build::apply_change(&mut changed, ch)?;
    }
    let cc = changed.config.unwrap_or_default();
    let platform: Platform = match &args.platform {
        Some(p) => super::parse_platform("--platform", p)?,
        None => Platform::host(),
    };
    let _lease = store.lease("import")?;
    let reader: Box<dyn std::io::Read> = if args.tarball == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&args.tarball)
                .with_context(|| format!("cannot open {}", args.tarball.display()))?,
        )
    };
    let mut opts = LayerOptions::new(Compression::Gzip);
    opts.timestamps = strata_layer::Timestamps::Epoch(s.epoch);
    let layer = strata_layer::import_tar_to_store(&store, reader, &opts)
        .with_context(|| format!("cannot import {}", args.tarball.display()))?;
    let config_desc = store.import_image(
        layer.descriptor(),
        layer.diff_id.clone(),
        &reference,
        ImportOptions {
            platform,
            config: cc,
            epoch: s.epoch,
            comment: args.message.clone(),
        },
    )?;
    outln!("{}", config_desc.digest);
    Ok(ExitCode::SUCCESS)
}

fn save_items(
    store: &Store,
    names: &[String],
    platform: Option<&Platform>,
) -> anyhow::Result<Vec<SaveItem>> {
    let mut items = Vec::new();
    for n in names {
        let image = find_for(store, n, platform)?;
        let mut names = Vec::new();
        if let Ok(r) = n.parse::<Reference>() {
            if r.digest().is_none() && store.resolve(&r).is_ok() {
                names.push(r);
            }
        }
        items.push(SaveItem { image, names });
    }
    Ok(items)
}

pub fn save(args: SaveArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let platform = match &args.platform {
        Some(p) => Some(super::parse_platform("--platform", p)?),
        None => None,
    };
    let items = save_items(&store, &args.images, platform.as_ref())?;
    export(&store, &items, &args.output, args.format)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `items` to `out` as a docker-archive or an OCI layout
/// ([`strata_oci::export_archive`]).
pub(crate) fn export(
    store: &Store,
    items: &[SaveItem],
    out: &Path,
    format: ArchiveFormat,
) -> anyhow::Result<()> {
    let format = match format {
        ArchiveFormat::Docker => strata_oci::ArchiveFormat::Docker,
        ArchiveFormat::Oci => strata_oci::ArchiveFormat::Oci,
    };
    strata_oci::export_archive(store, items, out, format)
        .with_context(|| format!("cannot write {}", out.display()))
}

pub fn load(args: LoadArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let loaded = strata_oci::load_archive(&store, &args.input)
        .with_context(|| format!("cannot load {}", args.input.display()))?;
    for l in loaded {
        if l.names.is_empty() {
            let id = store
                .image(&l.descriptor, None)
                .map(|i| i.id().to_string())
                .unwrap_or_else(|_| l.descriptor.digest.to_string());
            match l.ref_name {
                Some(r) => outln!("Loaded image ID: {id} (ref name {r:?})"),
                None => outln!("Loaded image ID: {id}"),
            }
        }
        for n in l.names {
            outln!("Loaded image: {}", n.familiar());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tag(args: TagArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let img = find(&store, &args.source)?;
    let target = parse_ref(&args.target)?;
    if target.digest().is_some() {
        bail!(
            "cannot tag with a digest reference ({}): give a name[:tag]",
            args.target
        );
    }
    store.tag(&target, img.top_descriptor())?;
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(args: RmiArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    for name in &args.images {
        let removed = store.remove_image(name, args.force).map_err(|e| match e {
            e if e.is_not_found() => crate::render::hinted(
                format!("no such image: {name}"),
                "`strata images` lists the images in the store; `strata import` or `strata load` adds some",
            ),
            e @ strata_oci::Error::Referenced { .. } => {
                crate::render::hinted(e.to_string(), "remove the names one by one, or pass -f")
            }
            e => anyhow::Error::new(e).context(format!("cannot remove image {name}")),
        })?;
        for r in removed {
            match r {
                Removed::Untagged(t) => outln!("Untagged: {}", t.familiar()),
                Removed::Deleted(id) => outln!("Deleted: {id}"),
            }
        }
    }
    store
        .gc(GcOptions::default())
        .context("cannot remove unreferenced content")?;
    Ok(ExitCode::SUCCESS)
}

pub fn prune(args: PruneArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let rep = store
        .gc(GcOptions {
            remove_cache: args.all,
            remove_untagged: args.all,
            remove_ingests: args.all,
            remove_released: true,
            dry_run: args.dry_run,
        })
        .context("prune failed")?;
    // The build's synced copies of contexts for read-only binds: made again
    // when a build needs them.
    let bind_bytes = if args.dry_run {
        0
    } else {
        strata_build::prune_bind_trees(&store)
    };
    let verb = if args.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    if s.verbosity > 0 || args.dry_run {
        for (d, n) in &rep.blobs {
            outln!("{verb} blob {d} ({})", human_bytes(*n));
        }
        for sn in &rep.snapshots {
            outln!("{verb} snapshot {sn}");
        }
        for r in &rep.roots {
            outln!("{verb} cache root {r}");
        }
        for u in &rep.untagged {
            outln!("{verb} untagged image {u}");
        }
    }
    if !s.quiet {
        outln!(
            "{verb} {} blobs, {} snapshots, {} cache roots, {} untagged images, {} sidecar files; {} reclaimed",
            rep.blobs.len(),
            rep.snapshots.len(),
            rep.roots.len(),
            rep.untagged.len(),
            rep.sidecars,
            human_bytes(rep.reclaimed() + bind_bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn verify(args: StoreVerifyArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let rep = store.verify().context("cannot verify the store")?;
    if args.format == ListFormat::Json {
        print_json(&serde_json::to_value(&rep)?)?;
    } else {
        for p in &rep.problems {
            outln!("{p}");
        }
        if !s.quiet {
            eprintln!(
                "checked {} blobs ({}) and {} tags: {}",
                rep.blobs,
                human_bytes(rep.bytes),
                rep.tags,
                if rep.problems.is_empty() {
                    "ok".to_owned()
                } else {
                    format!("{} problems", rep.problems.len())
                }
            );
        }
    }
    Ok(if rep.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
