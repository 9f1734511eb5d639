//! `strata manifest create|inspect|push`: multi-platform indexes assembled
//! from images in the store (what `docker manifest` and `buildah manifest`
//! do), inspected as stored, pushed whole.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use strata_oci::{media_type, Descriptor, Index, Platform, Store};

use crate::cli::{ManifestCreateArgs, ManifestInspectArgs};
use crate::render::usage;
use crate::settings::Settings;

use super::{open_store, parse_ref, CmdResult};

/// The platform manifests `name` brings: every present entry of its index,
/// or its own manifest with the platform its config declares.
fn entries(store: &Store, name: &str) -> anyhow::Result<Vec<Descriptor>> {
    let img = store
        .find_image(name)
        .with_context(|| format!("no such image: {name}"))?;
    if let Some(idx) = &img.index {
        let index: Index = serde_json::from_slice(&store.read_blob(&idx.digest)?)
            .with_context(|| format!("index of {name}"))?;
        return Ok(index
            .manifests
            .into_iter()
            .filter(|m| store.has(&m.digest) && media_type::is_manifest(&m.media_type))
            .filter(|m| m.platform.as_ref().is_some_and(|p| p.os != "unknown"))
            .collect());
    }
    let mut d = Descriptor::new(
        img.descriptor.media_type.clone(),
        img.descriptor.digest.clone(),
        img.descriptor.size,
    );
    let p = img.config.platform();
    d.platform = Some(Platform {
        os_version: img.config.os_version.clone(),
        ..p.normalized()
    });
    Ok(vec![d])
}

pub fn create(args: ManifestCreateArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let list =
        parse_ref(&args.list).map_err(|e| usage(format!("invalid name {:?}: {e}", args.list)))?;
    let _lease = store.lease("manifest")?;
    let mut manifests: Vec<Descriptor> = Vec::new();
    for name in &args.images {
        for d in entries(&store, name)? {
            let p = d.platform.clone().unwrap_or_else(Platform::host);
            if let Some(other) = manifests
                .iter()
                .find(|m| m.platform.as_ref() == Some(&p) && m.digest != d.digest)
            {
                return Err(usage(format!(
                    "{name}: two images for {p} ({} and {}); an index holds one per platform",
                    other.digest, d.digest
                )));
            }
            if !manifests.iter().any(|m| m.digest == d.digest) {
                manifests.push(d);
            }
        }
    }
    let index = Index::oci(manifests);
    let desc = store.put_json(media_type::OCI_INDEX, &index.to_json())?;
    store
        .tag(&list, &desc)
        .with_context(|| format!("cannot tag {}", list.familiar()))?;
    outln!("{}", desc.digest);
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(args: ManifestInspectArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let list =
        parse_ref(&args.list).map_err(|e| usage(format!("invalid name {:?}: {e}", args.list)))?;
    let desc = store
        .resolve(&list)
        .with_context(|| format!("no such manifest: {}", list.familiar()))?;
    let raw = store.read_blob(&desc.digest)?;
    let v: serde_json::Value = serde_json::from_slice(&raw)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &v)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}
