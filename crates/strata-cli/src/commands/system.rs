//! `strata version`, `strata info` and `strata system df`: what this strata
//! is, what it will use on this host and why, and where the store's bytes go.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Value};

use super::{open_store, CmdResult};
use crate::cli::{InfoArgs, SystemDfArgs};
use crate::format::{object, print_items, Format};
use crate::render::{human_bytes, usage};
use crate::settings::Settings;
use strata_analyze::image::docker_size;

/// `strata version`.
pub fn version(_s: &Settings) -> CmdResult {
    outln!("strata {}", env!("CARGO_PKG_VERSION"));
    outln!(" OS/Arch:  {}/{}", std::env::consts::OS, go_arch());
    outln!(" Kernel:   {}", kernel());
    Ok(ExitCode::SUCCESS)
}

/// The architecture as Go (and so OCI and docker) names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// `strata info`: the facts a bug report needs.
pub fn info(args: InfoArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let images = store.images()?;
    let ids: BTreeSet<_> = images.iter().map(|e| e.image.id().clone()).collect();
    let uid = rustix::process::geteuid().as_raw();
    let (user, rootless) = match strata_sandbox::rootless::current() {
        Some(r) => (
            format!("{} (uid {}), rootless", r.user, r.host_uid),
            match r.mapping {
                strata_sandbox::rootless::Mapping::SubIds => {
                    "user namespace, ids mapped from /etc/subuid and /etc/subgid (newuidmap)"
                        .to_owned()
                }
                strata_sandbox::rootless::Mapping::Single => format!(
                    "user namespace, only uid {} mapped: {}",
                    r.host_uid,
                    strata_sandbox::rootless::subid_hint(&r.user)
                ),
            },
        ),
        None if uid == 0 => ("root".to_owned(), "no".to_owned()),
        None => (
            format!("uid {uid} (rootless)"),
            "not in a user namespace".to_owned(),
        ),
    };
    let (kind, why) = strata_build::snapshotter_choice(s.snapshots);
    let fuse = (uid != 0 || strata_sandbox::rootless::current().is_some()).then(fuse_overlayfs);
    let executor = strata_sandbox::pick(strata_sandbox::Isolation::Auto, &s.run_dir)
        .map(|e| e.name().to_owned())
        .unwrap_or_else(|e| format!("none ({e})"));
    let cgroup = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1 (or hybrid)"
    };
    let info = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "StoreRoot": store.root().display().to_string(),
        "Images": ids.len(),
        "Tags": images.iter().filter(|e| e.entry.reference.is_some()).count(),
        "User": user,
        "Rootless": rootless,
        "Snapshotter": kind.name(),
        "SnapshotterReason": why,
        "FuseOverlayfs": fuse,
        "Executor": executor,
        "Seccomp": "docker's default profile",
        "Kernel": kernel(),
        "OSType": std::env::consts::OS,
        "Architecture": go_arch(),
        "CgroupVersion": cgroup,
        "CPUs": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    match args.format.as_deref() {
        Some("json") => outln!("{info}"),
        Some(t) => {
            let t = crate::format::Template::parse(t).map_err(usage)?;
            outln!("{}", crate::format::render(&t, &info));
        }
        None => {
            outln!("strata {}", env!("CARGO_PKG_VERSION"));
            outln!(" Store:        {}", store.root().display());
            outln!(" Images:       {} ({} tags)", info["Images"], info["Tags"]);
            outln!(" User:         {}", info["User"].as_str().unwrap_or(""));
            if uid != 0 || info["Rootless"] != "no" {
                outln!(" Rootless:     {}", info["Rootless"].as_str().unwrap_or(""));
            }
            outln!(
                " Snapshotter:  {} ({why})",
                info["Snapshotter"].as_str().unwrap_or("")
            );
            if let Some(f) = &fuse {
                outln!(" FUSE:         {f}");
            }
            outln!(" Executor:     {executor}");
            outln!(" Seccomp:      docker's default profile");
            outln!(
                " Kernel:       {} ({}, cgroup {cgroup})",
                info["Kernel"].as_str().unwrap_or(""),
                go_arch()
            );
            outln!(" CPUs:         {}", info["CPUs"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Rootless: whether fuse-overlayfs can serve (the snapshotter after the
/// kernel's overlayfs).
fn fuse_overlayfs() -> String {
    let tool = match strata_sandbox::fuse::program() {
        Some(p) => format!("fuse-overlayfs installed ({})", p.display()),
        None => "fuse-overlayfs not installed".to_owned(),
    };
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse");
    let dev = match dev {
        Ok(_) => "/dev/fuse usable".to_owned(),
        Err(e) => format!("/dev/fuse not usable by this user ({e})"),
    };
    format!("{tool}, {dev}")
}

/// Bytes and files under `dir` (not following symlinks), 0 when missing.
fn du(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0;
    let mut entries = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            entries += 1;
            bytes += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, entries)
}

/// `strata system df`: docker's columns for what strata keeps.
pub fn df(args: SystemDfArgs, s: &Settings) -> CmdResult {
    let format = Format::parse(args.format.as_deref()).map_err(usage)?;
    let store = open_store(s)?;
    let images = store.images()?;
    let mut ids = BTreeSet::new();
    let mut tagged = BTreeSet::new();
    let mut blobs = BTreeSet::new();
    let mut tagged_blobs = BTreeSet::new();
    let mut image_bytes = 0u64;
    let mut reclaimable = 0u64;
    for e in &images {
        ids.insert(e.image.id().clone());
        if e.entry.reference.is_some() {
            tagged.insert(e.image.id().clone());
            for l in &e.image.layers {
                tagged_blobs.insert(l.descriptor.digest.clone());
            }
        }
    }
    for e in &images {
        for l in &e.image.layers {
            if blobs.insert(l.descriptor.digest.clone()) {
                image_bytes += l.descriptor.size;
                if !tagged_blobs.contains(&l.descriptor.digest) {
                    reclaimable += l.descriptor.size;
                }
            }
        }
    }
    let cache_dir = store.root().join("build-cache");
    let (cache_bytes, _) = du(&cache_dir);
    let cache_entries = std::fs::read_dir(cache_dir.join("keys"))
        .map(|d| d.count())
        .unwrap_or(0);
    let (snap_bytes, _) = du(&store.snapshots_dir());
    let pct = |part: u64, whole: u64| -> String {
        match (part * 100).checked_div(whole) {
            Some(p) => format!("{} ({p}%)", docker_size(part)),
            None => "0B".to_owned(),
        }
    };
    let rows: Vec<Value> = vec![
        object(vec![
            ("Type", json!("Images")),
            ("TotalCount", json!(ids.len().to_string())),
            ("Active", json!(tagged.len().to_string())),
            ("Size", json!(docker_size(image_bytes))),
            ("Reclaimable", json!(pct(reclaimable, image_bytes))),
        ]),
        object(vec![
            ("Type", json!("Snapshots")),
            (
                "TotalCount",
                json!(std::fs::read_dir(store.snapshots_dir())
                    .map(|d| d
                        .flatten()
                        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                        .count())
                    .unwrap_or(0)
                    .to_string()),
            ),
            ("Active", json!("-")),
            ("Size", json!(docker_size(snap_bytes))),
            ("Reclaimable", json!("-")),
        ]),
        object(vec![
            ("Type", json!("Build Cache")),
            ("TotalCount", json!(cache_entries.to_string())),
            ("Active", json!("0")),
            ("Size", json!(docker_size(cache_bytes))),
            ("Reclaimable", json!(docker_size(cache_bytes))),
        ]),
    ];
    let default = [
        ("TYPE", "Type"),
        ("TOTAL", "TotalCount"),
        ("ACTIVE", "Active"),
        ("SIZE", "Size"),
        ("RECLAIMABLE", "Reclaimable"),
    ];
    print_items(&mut std::io::stdout().lock(), &format, &default, &rows)?;
    if format == Format::Table && !s.quiet {
        eprintln!(
            "(image sizes are the compressed layers the store holds; {} in all under {})",
            human_bytes(du(store.root()).0),
            store.root().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
