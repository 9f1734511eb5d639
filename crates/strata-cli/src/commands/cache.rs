//! `strata cache ls` and `strata cache prune`: the store's own build cache
//! (entries under `<store>/build-cache/keys`), a registry cache or an OCI
//! layout cache (docs/cache.md).
//!
//! [`parse_cache_spec`] reads a cache as users name it, here and in
//! `--cache-from` / `--cache-to`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{json, Value};
use strata_oci::{
    format_rfc3339, Descriptor, Digest, GcOptions, LayoutCache, RemoteCache, RemoteEntry, Store,
    CACHE_NAMESPACE,
};
use strata_registry::{AuthConfig, ClientOptions, RegistryCache};

use crate::cli::{CacheLsArgs, CachePruneArgs, RegistryOptions};
use crate::format::{object, print_items, Format};
use crate::render::{human_bytes, usage};
use crate::settings::Settings;

use super::{open_store, CmdResult};

/// Where a cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CacheLocation {
    /// A registry repository: `REGISTRY/REPO[:TAG]` as written.
    Registry(String),
    /// An OCI layout directory.
    Local(PathBuf),
}

/// A cache as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheSpec {
    /// Where.
    pub location: CacheLocation,
    /// Other `key=value` attributes (`mode=max`, `ignore-error=true`), in order.
    pub attrs: Vec<(String, String)>,
}

/// Read `REF`, `DIR`, `type=registry,ref=REF[,k=v...]` or
/// `type=local,src=DIR` / `type=local,dest=DIR[,k=v...]`. A bare argument is
/// a directory when it exists or starts with `.` or `/`, else a registry
/// reference.
pub(crate) fn parse_cache_spec(s: &str) -> Result<CacheSpec, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("an empty cache name".into());
    }
    if !s.split(',').any(|p| p.trim_start().starts_with("type=")) {
        let location = if s.starts_with('.') || s.starts_with('/') || Path::new(s).exists() {
            CacheLocation::Local(PathBuf::from(s))
        } else {
            CacheLocation::Registry(s.to_owned())
        };
        return Ok(CacheSpec {
            location,
            attrs: Vec::new(),
        });
    }
    let mut kind = None;
    let mut place: Option<(&str, String)> = None;
    let mut attrs = Vec::new();
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: {part:?} is not key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        match k {
            "type" => kind = Some(v.to_owned()),
            "ref" | "src" | "dest" => {
                if place.is_some() {
                    return Err(format!("{s:?}: more than one of ref=, src=, dest="));
                }
                place = Some((k, v.to_owned()));
            }
            _ => attrs.push((k.to_owned(), v.to_owned())),
        }
    }
    let location = match (kind.as_deref(), place) {
        (Some("registry"), Some(("ref", r))) if !r.is_empty() => CacheLocation::Registry(r),
        (Some("registry"), _) => return Err(format!("{s:?}: type=registry needs ref=REF")),
        (Some("local"), Some(("src" | "dest", d))) if !d.is_empty() => {
            CacheLocation::Local(PathBuf::from(d))
        }
        (Some("local"), _) => return Err(format!("{s:?}: type=local needs src=DIR or dest=DIR")),
        (Some(other), _) => {
            return Err(format!(
                "{s:?}: unknown cache type {other:?} (registry or local)"
            ))
        }
        (None, _) => return Err(format!("{s:?}: no type=")),
    };
    Ok(CacheSpec { location, attrs })
}

/// `key=value` attributes of a cache spec, in order.
pub(crate) type Attrs = Vec<(String, String)>;

/// A `--cache-from` / `--cache-to` cache, opened, and its attributes other
/// than where it is (`mode=`, `ignore-error=`). A registry cache records in
/// `store` where its layers live (a push to the same registry mounts them);
/// a missing `--cache-from` directory is an empty cache.
pub(crate) fn open_build_cache(
    spec: &str,
    insecure: &[String],
    store: &Store,
    from: bool,
) -> anyhow::Result<(std::sync::Arc<dyn RemoteCache>, Attrs)> {
    let flag = if from { "--cache-from" } else { "--cache-to" };
    let parsed = parse_cache_spec(spec).map_err(|e| usage(format!("{flag} {spec}: {e}")))?;
    let cache: std::sync::Arc<dyn RemoteCache> = match parsed.location {
        CacheLocation::Registry(r) => {
            let opts = ClientOptions {
                insecure_registries: insecure.to_vec(),
                auth: AuthConfig::from_env(),
                ..ClientOptions::default()
            };
            let cache = RegistryCache::new(&r, opts)
                .map_err(|e| usage(format!("{flag} {spec}: {}", chain_text(&e))))?;
            std::sync::Arc::new(cache.with_origins(store.clone()))
        }
        CacheLocation::Local(d) => std::sync::Arc::new(LayoutCache::new(d)),
    };
    Ok((cache, parsed.attrs))
}

/// A cache named on the command line, opened.
enum Remote {
    Registry(RegistryCache),
    Local(LayoutCache),
}

impl Remote {
    fn open(spec: &str, registry: &RegistryOptions) -> anyhow::Result<Remote> {
        let spec = parse_cache_spec(spec).map_err(usage)?;
        // Build-only attributes are accepted (a --cache-to spec pasted
        // here); others are mistakes.
        if let Some((k, _)) = spec
            .attrs
            .iter()
            .find(|(k, _)| !matches!(k.as_str(), "mode" | "ignore-error"))
        {
            return Err(usage(format!("unknown cache attribute {k:?}")));
        }
        Ok(match spec.location {
            CacheLocation::Registry(r) => {
                let opts = ClientOptions {
                    insecure_registries: registry.insecure_registries.clone(),
                    auth: AuthConfig::from_env(),
                    ..ClientOptions::default()
                };
                let cache = RegistryCache::new(&r, opts).map_err(|e| {
                    usage(format!("invalid cache reference {r:?}: {}", chain_text(&e)))
                })?;
                Remote::Registry(cache)
            }
            CacheLocation::Local(d) => {
                // (A build's --cache-from of a missing directory is an
                // empty cache; here it is a mistyped name.)
                if !d.is_dir() {
                    anyhow::bail!("no cache directory {}", d.display());
                }
                Remote::Local(LayoutCache::new(d))
            }
        })
    }

    fn describe(&self) -> String {
        match self {
            Remote::Registry(c) => c.describe(),
            Remote::Local(c) => c.describe(),
        }
    }

    fn list(&self) -> anyhow::Result<Vec<RemoteEntry>> {
        let what = || format!("cannot list the {}", self.describe());
        match self {
            Remote::Registry(c) => c.entries().with_context(what),
            Remote::Local(c) => c
                .list()
                .map_err(anyhow::Error::from_boxed)
                .with_context(what),
        }
    }

    fn prune(&self, older_than: Duration) -> anyhow::Result<strata_oci::PruneReport> {
        let what = || format!("cannot prune the {}", self.describe());
        match self {
            Remote::Registry(c) => c.prune_older_than(older_than).with_context(what),
            Remote::Local(c) => c
                .prune(older_than)
                .map_err(anyhow::Error::from_boxed)
                .with_context(what),
        }
    }
}

/// An error and its causes, `: `-separated.
fn chain_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One row of `cache ls`.
fn item(
    key: &str,
    layer: Option<&(Descriptor, Digest)>,
    created: Option<&str>,
    no_trunc: bool,
) -> Value {
    let short_key = if no_trunc {
        key.to_owned()
    } else {
        key.chars().take(12).collect()
    };
    let (layer_s, size_s, size, diff_id) = match layer {
        Some((d, diff)) => (
            if no_trunc {
                d.digest.to_string()
            } else {
                format!("sha256:{}", &d.digest.hex()[..12.min(d.digest.hex().len())])
            },
            super::image::docker_size(d.size),
            json!(d.size),
            json!(diff.to_string()),
        ),
        None => ("no layer".into(), "0B".into(), json!(0), Value::Null),
    };
    object(vec![
        ("Key", json!(key)),
        ("ID", json!(short_key)),
        ("Layer", json!(layer_s)),
        (
            "LayerDigest",
            json!(layer.map(|(d, _)| d.digest.to_string())),
        ),
        ("DiffID", diff_id),
        ("Size", json!(size_s)),
        ("Bytes", size),
        ("CreatedAt", json!(created)),
        ("CreatedSince", json!(super::image::ago(created))),
    ])
}

const DEFAULT_COLUMNS: [(&str, &str); 4] = [
    ("KEY", "ID"),
    ("LAYER", "Layer"),
    ("SIZE", "Size"),
    ("CREATED", "CreatedSince"),
];

pub fn ls(args: CacheLsArgs, s: &Settings) -> CmdResult {
    let format = Format::parse(args.format.as_deref()).map_err(usage)?;
    let (items, what) = match &args.cache {
        Some(spec) => {
            let remote = Remote::open(spec, &args.registry)?;
            let entries = remote.list()?;
            let items: Vec<Value> = entries
                .iter()
                .map(|e| {
                    item(
                        e.record.key.hex(),
                        e.record.layer.as_ref(),
                        e.created.as_deref(),
                        args.no_trunc,
                    )
                })
                .collect();
            (items, remote.describe())
        }
        None => {
            let store = open_store(s)?;
            let entries = local_entries(&store)?;
            let items = entries
                .iter()
                .map(|e| {
                    item(
                        &e.key_hex,
                        e.layer.as_ref(),
                        Some(&format_rfc3339(e.mtime)),
                        args.no_trunc,
                    )
                })
                .collect();
            (items, format!("build cache of {}", store.root().display()))
        }
    };
    print_items(
        &mut std::io::stdout().lock(),
        &format,
        &DEFAULT_COLUMNS,
        &items,
    )?;
    if format == Format::Table && !s.quiet {
        let bytes: u64 = items
            .iter()
            .filter_map(|i| i.get("Bytes").and_then(Value::as_u64))
            .sum();
        eprintln!(
            "{} entries in the {what}, {} in layers",
            items.len(),
            human_bytes(bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn prune(args: CachePruneArgs, s: &Settings) -> CmdResult {
    let age = args.older_than;
    match &args.cache {
        Some(spec) => {
            let remote = Remote::open(spec, &args.registry)?;
            let r = remote.prune(age)?;
            if !s.quiet {
                outln!(
                    "removed {} entries from the {} (kept {})",
                    r.removed,
                    remote.describe(),
                    r.kept
                );
            }
            if matches!(remote, Remote::Registry(_)) && r.removed > 0 && !s.quiet {
                eprintln!("(the registry frees their layers in its own garbage collection)");
            }
        }
        None => {
            let store = open_store(s)?;
            let (removed, kept) = prune_local(&store, age)?;
            let gc = if removed > 0 {
                Some(
                    store
                        .gc(GcOptions::default())
                        .context("cannot remove unreferenced content")?,
                )
            } else {
                None
            };
            if !s.quiet {
                let freed = gc.as_ref().map_or(String::new(), |g| {
                    format!(
                        "; {} blobs, {} snapshots, {} reclaimed",
                        g.blobs.len(),
                        g.snapshots.len(),
                        human_bytes(g.bytes)
                    )
                });
                outln!(
                    "removed {removed} entries from the build cache of {} (kept {kept}){freed}",
                    store.root().display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An entry of the store's build cache, as the builder writes it:
/// `build-cache/keys/<key hex>.json` = `{"layer": {"descriptor": ..,
/// "diff_id": ..} | null}`.
struct LocalEntry {
    key_hex: String,
    layer: Option<(Descriptor, Digest)>,
    mtime: i64,
    path: PathBuf,
}

fn keys_dir(store: &Store) -> PathBuf {
    store.root().join("build-cache").join("keys")
}

fn local_entries(store: &Store) -> anyhow::Result<Vec<LocalEntry>> {
    #[derive(serde::Deserialize)]
    struct Layer {
        descriptor: Descriptor,
        diff_id: Digest,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        layer: Option<Layer>,
    }
    let dir = keys_dir(store);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(hex) = name.strip_suffix(".json") else {
            continue; // temp files of a build writing an entry
        };
        let path = e.path();
        let Ok(meta) = e.metadata() else { continue };
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let layer = match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
        {
            Some(entry) => entry.layer.map(|l| (l.descriptor, l.diff_id)),
            None => {
                tracing::warn!("{}: not a build cache entry", path.display());
                continue;
            }
        };
        out.push(LocalEntry {
            key_hex: hex.to_owned(),
            layer,
            mtime,
            path,
        });
    }
    out.sort_by(|a, b| a.key_hex.cmp(&b.key_hex));
    Ok(out)
}

/// Remove the entries of the store's build cache whose files were written
/// `age` ago or earlier, and the store roots that kept their layers.
fn prune_local(store: &Store, age: Duration) -> anyhow::Result<(usize, usize)> {
    let cutoff = unix_now().saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
    let (mut removed, mut kept) = (0, 0);
    for e in local_entries(store)? {
        if e.mtime > cutoff {
            kept += 1;
            continue;
        }
        match std::fs::remove_file(&e.path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("cannot remove {}", e.path.display()))
            }
        }
        match store.remove_root(CACHE_NAMESPACE, &e.key_hex) {
            Ok(()) => {}
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err).context("cannot remove a build cache root"),
        }
        removed += 1;
    }
    Ok((removed, kept))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reg(s: &str) -> CacheLocation {
        CacheLocation::Registry(s.into())
    }

    fn local(s: &str) -> CacheLocation {
        CacheLocation::Local(s.into())
    }

    #[test]
    fn cache_specs() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("ci-cache");
        std::fs::create_dir(&existing).unwrap();
        let existing_s = existing.to_str().unwrap().to_owned();
        for (input, want, attrs) in [
            (
                "localhost:5000/app:cache",
                reg("localhost:5000/app:cache"),
                vec![],
            ),
            ("ghcr.io/org/app", reg("ghcr.io/org/app"), vec![]),
            ("./cache", local("./cache"), vec![]),
            ("/var/cache/strata", local("/var/cache/strata"), vec![]),
            (existing_s.as_str(), local(&existing_s), vec![]),
            (
                "type=registry,ref=localhost:5000/app:ci,mode=max",
                reg("localhost:5000/app:ci"),
                vec![("mode".to_owned(), "max".to_owned())],
            ),
            ("type=local,src=ci-cache", local("ci-cache"), vec![]),
            (
                "type=local,dest=/tmp/c,ignore-error=true",
                local("/tmp/c"),
                vec![("ignore-error".to_owned(), "true".to_owned())],
            ),
        ] {
            let got = parse_cache_spec(input).unwrap();
            assert_eq!(got.location, want, "{input}");
            assert_eq!(got.attrs, attrs, "{input}");
        }
        for bad in [
            "",
            "type=registry",
            "type=registry,src=x",
            "type=local,ref=x",
            "type=s3,ref=x",
            "type=local,src=a,dest=b",
            "type=local,src",
        ] {
            assert!(parse_cache_spec(bad).is_err(), "{bad:?}");
        }
    }
}
