//! Garbage collection: mark from tags, roots and live leases, then sweep
//! blobs, snapshots, abandoned ingests and sidecar files (containerd's
//! metadata GC, by resource kind).

use std::collections::BTreeSet;
use std::fs;

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use super::leases::LeaseData;
use super::referrers::REFERRERS_DIR;
use super::sidecars::{image_of, SIDECARS_DIR};
use super::temp::EXTRACT_PREFIX;
use super::{
    dir_size, lock_file, mtime_nanos, now_nanos, pid_alive, read_dir_sorted, remove_tree,
    write_atomic, Store, CACHE_NAMESPACE, MAX_DOCUMENT_SIZE,
};
use crate::error::IoContext;
use crate::{media_type, Algorithm, Descriptor, Digest, Result};

/// What garbage collection should remove besides unreferenced content.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcOptions {
    /// Also drop the build cache's roots ([`CACHE_NAMESPACE`]).
    pub remove_cache: bool,
    /// Also drop images kept without a name.
    pub remove_untagged: bool,
    /// Also drop unlocked ingests however young (else only those older than a day).
    pub remove_ingests: bool,
    /// Also drop active snapshots their holder let go of (container layers
    /// `strata run` kept); those whose holder died always go.
    pub remove_released: bool,
    /// Report, change nothing.
    pub dry_run: bool,
}

/// What garbage collection removed (or would remove, on a dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Blobs and their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Snapshot directory names: committed snapshots (diffID hex) and
    /// active ones whose holder is gone or let go (`.active/<key>`, such as
    /// a container layer `strata run` kept).
    pub snapshots: Vec<String>,
    /// Roots (`namespace/name`).
    pub roots: Vec<String>,
    /// Untagged images (manifest digests).
    pub untagged: Vec<Digest>,
    /// Abandoned ingests and extractions.
    pub ingests: usize,
    /// Scratch directories of processes that died (`tmp/<name>`).
    pub temp: Vec<String>,
    /// Bytes of blobs removed.
    pub bytes: u64,
    /// Bytes of the snapshots removed.
    pub snapshot_bytes: u64,
    /// Bytes of ingests, extractions and scratch directories removed.
    pub temp_bytes: u64,
    /// Sidecar files ([`Store::sidecar`]) of images no longer stored.
    pub sidecars: usize,
    /// Referrer records ([`Store::referrers`]) of subjects no longer stored.
    pub referrers: usize,
}

impl GcReport {
    /// Every byte removed: blobs, snapshots and temporary state.
    pub fn reclaimed(&self) -> u64 {
        self.bytes + self.snapshot_bytes + self.temp_bytes
    }
}

impl Store {
    /// Mark `d` and, for documents, what they reference. Returns nothing;
    /// collects blobs and snapshot names (diffID hex).
    fn mark(
        &self,
        d: &Digest,
        hint: Option<&str>,
        blobs: &mut BTreeSet<Digest>,
        snaps: &mut BTreeSet<String>,
    ) {
        if !blobs.insert(d.clone()) {
            return;
        }
        let Ok(size) = self.blob_size(d) else { return };
        let doc_hint = hint.is_none_or(|mt| {
            mt.is_empty()
                || media_type::is_manifest(mt)
                || media_type::is_index(mt)
                || mt.contains("config")
                || mt.ends_with("+json")
        });
        if !doc_hint || size > MAX_DOCUMENT_SIZE {
            return;
        }
        let Ok(raw) = self.read_blob(d) else { return };
        if raw.first() != Some(&b'{') {
            return;
        }
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default)]
            manifests: Vec<Descriptor>,
            config: Option<Descriptor>,
            #[serde(default)]
            layers: Vec<Descriptor>,
            subject: Option<Descriptor>,
            rootfs: Option<crate::image::RootFs>,
        }
        let Ok(p) = serde_json::from_slice::<Probe>(&raw) else {
            return;
        };
        for c in p
            .manifests
            .iter()
            .chain(p.config.iter())
            .chain(p.layers.iter())
        {
            self.mark(&c.digest, Some(&c.media_type), blobs, snaps);
        }
        let _ = p.subject;
        // Referrers (SBOMs, signatures...) live as long as their subject.
        if let Ok(referrers) = self.referrers(d, None) {
            for r in referrers {
                self.mark(&r.digest, Some(&r.media_type), blobs, snaps);
            }
        }
        if let Some(rootfs) = p.rootfs {
            for id in rootfs.diff_ids {
                snaps.insert(id.hex().to_owned());
            }
        }
    }

    /// Remove blobs and snapshots that no tag, root or live lease reaches.
    pub fn gc(&self, opts: GcOptions) -> Result<GcReport> {
        let _gc = self.gc_exclusive()?;
        let mut report = GcReport::default();
        // 1. roots: tags (and untagged images unless dropped).
        let mut db = self.load_refs()?;
        if opts.remove_untagged && !db.untagged.is_empty() {
            report.untagged = db.untagged.values().map(|d| d.digest.clone()).collect();
            db.untagged.clear();
            if !opts.dry_run {
                let _lock = lock_file(&self.root.join("refs.lock"), FlockOperation::LockExclusive)?;
                let mut fresh = self.load_refs()?;
                fresh.untagged.clear();
                write_atomic(
                    &self.refs_path(),
                    &serde_json::to_vec_pretty(&fresh).unwrap_or_default(),
                )?;
                db = fresh;
            }
        }
        let mut blobs = BTreeSet::new();
        let mut snaps = BTreeSet::new();
        for d in db.refs.values().chain(db.untagged.values()) {
            self.mark(&d.digest, Some(&d.media_type), &mut blobs, &mut snaps);
        }
        // 2. persistent roots.
        for (ns, name, set) in self.list_roots()? {
            if opts.remove_cache && ns == CACHE_NAMESPACE {
                report.roots.push(format!("{ns}/{name}"));
                if !opts.dry_run {
                    self.remove_root(&ns, &name)?;
                }
                continue;
            }
            for d in &set.digests {
                self.mark(d, None, &mut blobs, &mut snaps);
            }
            snaps.extend(set.snapshots.iter().cloned());
        }
        // 3. live leases.
        let leases_dir = self.root.join("leases");
        let mut window: Option<u128> = None;
        for f in read_dir_sorted(&leases_dir)? {
            let Some(id) = f.strip_suffix(".lock") else {
                continue;
            };
            let lock_path = leases_dir.join(&f);
            let json = leases_dir.join(format!("{id}.json"));
            match lock_file(&lock_path, FlockOperation::NonBlockingLockExclusive)? {
                Some(_stale) => {
                    if !opts.dry_run {
                        let _ = fs::remove_file(&json);
                        let _ = fs::remove_file(&lock_path);
                    }
                }
                None => {
                    let data: LeaseData = match fs::read(&json)
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok())
                    {
                        Some(d) => d,
                        // Being created right now: protect everything recent.
                        None => LeaseData {
                            created: 0,
                            ..LeaseData::default()
                        },
                    };
                    window = Some(window.map_or(data.created, |w| w.min(data.created)));
                    for d in &data.set.digests {
                        self.mark(d, None, &mut blobs, &mut snaps);
                    }
                    snaps.extend(data.set.snapshots.iter().cloned());
                }
            }
        }
        // Content written since the oldest live lease began is protected
        // (2 s of slack for file-system timestamp granularity).
        let protected_since = window.map(|w| w.saturating_sub(2_000_000_000));
        let young = |meta: &fs::Metadata| protected_since.is_some_and(|w| mtime_nanos(meta) >= w);
        // 4. sweep blobs.
        let blob_root = self.root.join("blobs");
        for alg in read_dir_sorted(&blob_root)? {
            let algorithm = match alg.as_str() {
                "sha256" => Algorithm::Sha256,
                "sha512" => Algorithm::Sha512,
                _ => continue,
            };
            for name in read_dir_sorted(&blob_root.join(&alg))? {
                let Ok(d) = Digest::new(algorithm, &name) else {
                    continue;
                };
                if blobs.contains(&d) {
                    continue;
                }
                let p = blob_root.join(&alg).join(&name);
                let Ok(meta) = fs::symlink_metadata(&p) else {
                    continue;
                };
                if young(&meta) {
                    continue;
                }
                report.bytes += meta.len();
                report.blobs.push((d, meta.len()));
                if !opts.dry_run {
                    fs::remove_file(&p).ctx("remove", &p)?;
                }
            }
        }
        // Records of remote blobs: kept while referenced and not here.
        for d in self.remote_records()? {
            if (!blobs.contains(&d) || self.has(&d)) && !opts.dry_run {
                self.forget_remote(&d)?;
            }
        }
        // 5. sweep snapshots.
        let sdir = self.snapshots_dir();
        let names = read_dir_sorted(&sdir)?;
        for name in &names {
            let name = name.clone();
            let p = sdir.join(&name);
            if let Some(rest) = name.strip_prefix(".tmp-") {
                // Held extractions (with a lock file) are the sweep's, below;
                // this is for those of versions without holds.
                if name.ends_with(".lock") || names.contains(&format!("{name}.lock")) {
                    continue;
                }
                let pid = rest.split('-').next().and_then(|s| s.parse::<u32>().ok());
                if pid.is_some_and(|pid| !pid_alive(pid)) {
                    report.ingests += 1;
                    report.temp_bytes += dir_size(&p);
                    if !opts.dry_run {
                        remove_tree(&p)?;
                    }
                }
                continue;
            }
            if name.starts_with('.') || snaps.contains(&name) {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(&p) else {
                continue;
            };
            if young(&meta) {
                continue;
            }
            report.snapshot_bytes += dir_size(&p);
            report.snapshots.push(name);
            if !opts.dry_run {
                remove_tree(&p)?;
            }
        }
        // Active snapshots, extractions and scratch directories nobody holds.
        for (name, bytes) in self.sweep_held(opts.remove_released, opts.dry_run)?.names {
            match name.strip_prefix("snapshots/") {
                Some(extraction) if extraction.starts_with(EXTRACT_PREFIX) => {
                    report.ingests += 1;
                    report.temp_bytes += bytes;
                }
                Some(active) => {
                    report.snapshot_bytes += bytes;
                    report.snapshots.push(active.to_owned());
                }
                None => {
                    report.temp_bytes += bytes;
                    report.temp.push(name);
                }
            }
        }
        // 6. abandoned ingests.
        let idir = self.root.join("ingest");
        for name in read_dir_sorted(&idir)? {
            let p = idir.join(&name);
            let lock = lock_file(&p.join("lock"), FlockOperation::NonBlockingLockExclusive);
            let Ok(Some(_held)) = lock else { continue };
            let old = fs::metadata(p.join("data"))
                .map(|m| now_nanos().saturating_sub(mtime_nanos(&m)) > 86_400 * 1_000_000_000)
                .unwrap_or(true);
            // `put-*` ingests have a key nobody can resume.
            let unresumable = fs::read_to_string(p.join("ref"))
                .is_ok_and(|r| r.starts_with(super::content::ONE_SHOT_PREFIX));
            if opts.remove_ingests || old || unresumable {
                report.ingests += 1;
                report.temp_bytes += dir_size(&p);
                if !opts.dry_run {
                    let _ = fs::remove_dir_all(&p);
                }
            }
        }
        // 7. sidecars (every kind) of images whose config blob is gone (or
        // goes now); temp files of writes that never finished.
        let removed: BTreeSet<&Digest> = report.blobs.iter().map(|(d, _)| d).collect();
        let mut stale = Vec::new();
        let sidecars = self.root.join(SIDECARS_DIR);
        for kind in read_dir_sorted(&sidecars)? {
            let kdir = sidecars.join(&kind);
            if !kdir.is_dir() {
                continue;
            }
            for name in read_dir_sorted(&kdir)? {
                let p = kdir.join(&name);
                let Ok(meta) = fs::symlink_metadata(&p) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                match image_of(&name) {
                    Some(d) if self.has(&d) && !removed.contains(&d) => {}
                    Some(_) => stale.push(p),
                    None if name.starts_with(".tmp-")
                        && now_nanos().saturating_sub(mtime_nanos(&meta)) > 3_600_000_000_000 =>
                    {
                        stale.push(p)
                    }
                    None => {}
                }
            }
        }
        report.sidecars = stale.len();
        if !opts.dry_run {
            for p in stale {
                fs::remove_file(&p).ctx("remove", &p)?;
            }
        }
        // 8. referrer records of subjects that are gone (or go now).
        let rdir = self.root.join(REFERRERS_DIR);
        for (name, subject) in self.referrer_subjects()? {
            if self.has(&subject) && !removed.contains(&subject) {
                continue;
            }
            let p = rdir.join(&name);
            report.referrers += read_dir_sorted(&p)?.len();
            if !opts.dry_run {
                remove_tree(&p)?;
            }
        }
        Ok(report)
    }
}
