//! The build cache on disk, under `<store>/build-cache/`:
//!
//! - `keys/<key hex>.json`: a step's result ([`CacheEntry`]): the layer it
//!   made (or none). The layer blob is kept alive by a store root in the
//!   cache namespace, so `strata prune` keeps it and `prune --all` drops it.
//! - `steps/<id hex>.json`: the inputs of the last build of a step
//!   ([`StepRecord`]), keyed by (Dockerfile, stage, step index), for
//!   `--explain`.
//! - `mounts/<id hex>/`: `RUN --mount=type=cache` directories.
//!
//! Every file is written to a temp name and renamed, so a killed build never
//! leaves a half-written entry; an entry whose blob is gone is a miss.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_oci::{Descriptor, Digest, RootSet, Store};

use crate::error::{Error, Result};
use crate::key::Inputs;

/// A layer made by a cached step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The blob (compressed).
    pub descriptor: Descriptor,
    /// The uncompressed digest.
    pub diff_id: Digest,
}

/// What a cache key maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The layer, or `None` when the step changed no file.
    pub layer: Option<LayerRecord>,
    /// The key the chain continues with, when it is not the entry's own
    /// (a `COPY --from` found by the layers it copies from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<Digest>,
}

/// The last build of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Its key then.
    pub key: String,
    /// What was hashed.
    pub inputs: Inputs,
}

/// Handle on the cache directory of a store.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    store: Store,
}

impl Cache {
    /// The cache of `store` (created if missing).
    pub fn open(store: &Store) -> Result<Cache> {
        let dir = store.root().join("build-cache");
        for sub in ["keys", "steps", "mounts"] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).map_err(|e| Error::io("create", &d, e))?;
        }
        Ok(Cache {
            dir,
            store: store.clone(),
        })
    }

    /// The entry for `key`, if there is one whose layer is still stored.
    /// `Err(())` in the `Ok` means: recorded, but the blob was pruned.
    pub fn get(&self, key: &Digest) -> Option<std::result::Result<CacheEntry, ()>> {
        let path = self.dir.join("keys").join(format!("{}.json", key.hex()));
        let data = fs::read(path).ok()?;
        let entry: CacheEntry = serde_json::from_slice(&data).ok()?;
        if let Some(layer) = &entry.layer {
            // A layer left in a registry (downloaded when read) is there.
            let d = &layer.descriptor.digest;
            if !self.store.has(d) && self.store.remote_blob(d).is_none() {
                return Some(Err(()));
            }
        }
        Some(Ok(entry))
    }

    /// Record `entry` for `key`, and root its blob in the store.
    pub fn put(&self, key: &Digest, entry: &CacheEntry) -> Result<()> {
        if let Some(layer) = &entry.layer {
            let mut set = RootSet::default();
            set.digests.insert(layer.descriptor.digest.clone());
            set.snapshots.insert(layer.diff_id.hex().to_owned());
            self.store
                .set_root(strata_oci::CACHE_NAMESPACE, key.hex(), &set)?;
        }
        let path = self.dir.join("keys").join(format!("{}.json", key.hex()));
        write_atomic(&path, &serde_json::to_vec(entry).unwrap_or_default())
    }

    /// The cache's directory (`<store>/build-cache`).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last recorded build of step `id`.
    pub fn step(&self, id: &Digest) -> Option<StepRecord> {
        let path = self.dir.join("steps").join(format!("{}.json", id.hex()));
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    /// Record the inputs of step `id`.
    pub fn put_step(&self, id: &Digest, record: &StepRecord) -> Result<()> {
        let path = self.dir.join("steps").join(format!("{}.json", id.hex()));
        // A rebuild that changed nothing records the same inputs again.
        Ok(strata_oci::write_atomic_if_changed(
            &path,
            &serde_json::to_vec(record).unwrap_or_default(),
        )?)
    }

    /// The key a cache mount's contents have in a remote cache
    /// (`mounts=true`): its id and initial owner and mode, as
    /// [`Cache::mount_dir_with`] names its directory.
    pub fn mount_key(id: &str, uid: u32, gid: u32, mode: u32) -> Digest {
        Digest::sha256(format!("strata cache mount v1\0{id}\0{uid}:{gid}:{mode:o}").as_bytes())
    }

    /// The persistent directory of a cache mount: one per id and initial
    /// owner and mode, created with them (as BuildKit keys a cache mount by
    /// the directory it starts from, changing `uid=` gives a new cache, not
    /// the old one with another owner).
    /// `fill` is called on a directory it creates, before anyone else can
    /// see it (to seed it from a remote cache).
    pub fn mount_dir_with(
        &self,
        id: &str,
        uid: u32,
        gid: u32,
        mode: u32,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let name = format!("{id}\0{uid}:{gid}:{mode:o}");
        let d = self
            .dir
            .join("mounts")
            .join(Digest::sha256(name.as_bytes()).hex());
        if d.is_dir() {
            return Ok(d);
        }
        let tmp = d.with_extension(format!(
            "tmp-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("chmod", &tmp, e))?;
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))
            .map_err(|e| Error::io("chown", &tmp, e))?;
        if let Err(e) = fill(&tmp) {
            let _ = strata_oci::remove_tree(&tmp);
            return Err(e);
        }
        if let Err(e) = fs::rename(&tmp, &d) {
            let _ = strata_oci::remove_tree(&tmp);
            if !d.is_dir() {
                return Err(Error::io("rename", &d, e));
            }
        }
        Ok(d)
    }
}

/// Write `data` to `path` through a unique temp file, fsync and a rename.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    Ok(strata_oci::write_atomic(path, data)?)
}
