//! Leases (holds on content by a live process, stale once its `flock` is
//! released) and persistent roots (content kept until the root is removed,
//! such as the build cache).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use super::{
    lock_file, now_nanos, read_dir_sorted, write_atomic, write_atomic_volatile, FileLock, Store,
};
use crate::error::IoContext;
use crate::{Digest, Error, Result};

/// Content a root (like the build cache) keeps alive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootSet {
    /// Blobs (manifests and indexes are followed to what they reference).
    #[serde(default)]
    pub digests: BTreeSet<Digest>,
    /// Snapshot names (diffID hex).
    #[serde(default)]
    pub snapshots: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct LeaseData {
    pub(super) id: String,
    pub(super) pid: u32,
    pub(super) label: String,
    /// Unix time in nanoseconds: content written after this is protected.
    pub(super) created: u128,
    #[serde(flatten)]
    pub(super) set: RootSet,
}

/// A hold on content while a process works with it.
///
/// While a lease lives, garbage collection removes nothing written since the
/// lease was taken, nor anything added to it. The lease is a pair of files
/// under `leases/`; its `.lock` file is `flock`ed by this process, so a lease
/// whose process died (even by `kill -9`) is seen as stale and ignored.
#[derive(Debug)]
pub struct Lease {
    store: Store,
    data: LeaseData,
    json: PathBuf,
    lock_path: PathBuf,
    _lock: FileLock,
}

impl Lease {
    /// Lease id.
    pub fn id(&self) -> &str {
        &self.data.id
    }

    /// Protect a blob (and, for manifests and indexes, what they reference).
    pub fn add_digest(&mut self, digest: &Digest) -> Result<()> {
        if self.data.set.digests.insert(digest.clone()) {
            self.save()?;
        }
        Ok(())
    }

    /// Protect a snapshot (by name).
    pub fn add_snapshot(&mut self, name: &str) -> Result<()> {
        if self.data.set.snapshots.insert(name.to_owned()) {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let _gc = self.store.gc_shared()?;
        self.write()
    }

    /// Write the record (the caller holds the GC lock). Not synced: a
    /// lease lives as long as its process, and after a crash garbage
    /// collection finds it unlocked (stale) and removes it unread.
    fn write(&self) -> Result<()> {
        let bytes = serde_json::to_vec(&self.data).unwrap_or_default();
        write_atomic_volatile(&self.json, &bytes)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.json);
        let _ = fs::remove_file(&self.lock_path);
    }
}

impl Store {
    /// Take a lease (see [`Lease`]).
    pub fn lease(&self, label: &str) -> Result<Lease> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "{}-{}-{}",
            std::process::id(),
            now_nanos(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = self.root.join("leases");
        let lock_path = dir.join(format!("{id}.lock"));
        // The lock file and the record appear under the GC lock: a
        // collection sees both (a live lease) or neither, never a lock file
        // it could take for a dead process's between our open and our flock.
        let _gc = self.gc_shared()?;
        let lock = lock_file(&lock_path, FlockOperation::NonBlockingLockExclusive)?
            .ok_or_else(|| Error::Locked(id.clone()))?;
        let lease = Lease {
            store: self.clone(),
            data: LeaseData {
                id: id.clone(),
                pid: std::process::id(),
                label: label.to_owned(),
                created: now_nanos(),
                set: RootSet::default(),
            },
            json: dir.join(format!("{id}.json")),
            lock_path,
            _lock: lock,
        };
        lease.write()?;
        Ok(lease)
    }

    fn root_path(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let ok = |s: &str| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        };
        if !ok(namespace) || !ok(name) {
            return Err(Error::invalid(format!(
                "root {namespace}/{name}: names are letters, digits, '-', '_', '.'"
            )));
        }
        Ok(self
            .root
            .join("roots")
            .join(namespace)
            .join(format!("{name}.json")))
    }

    /// Register (or replace) a persistent root: content kept until the root
    /// is removed. The builder keeps its cache under [`CACHE_NAMESPACE`](super::CACHE_NAMESPACE),
    /// which `prune --all` drops.
    pub fn set_root(&self, namespace: &str, name: &str, set: &RootSet) -> Result<()> {
        let p = self.root_path(namespace, name)?;
        let dir = p.parent().unwrap_or(&self.root).to_owned();
        fs::create_dir_all(&dir).ctx("create", &dir)?;
        let _gc = self.gc_shared()?;
        write_atomic(&p, &serde_json::to_vec(set).unwrap_or_default())
    }

    /// Remove a root.
    pub fn remove_root(&self, namespace: &str, name: &str) -> Result<()> {
        let p = self.root_path(namespace, name)?;
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound {
                what: format!("root {namespace}/{name}"),
            }),
            Err(e) => Err(e).ctx("remove", p),
        }
    }

    /// Every root: `(namespace, name, set)`.
    pub fn list_roots(&self) -> Result<Vec<(String, String, RootSet)>> {
        let mut out = Vec::new();
        let base = self.root.join("roots");
        for ns in read_dir_sorted(&base)? {
            let nsdir = base.join(&ns);
            if !nsdir.is_dir() {
                continue;
            }
            for f in read_dir_sorted(&nsdir)? {
                let Some(name) = f.strip_suffix(".json") else {
                    continue;
                };
                let p = nsdir.join(&f);
                let bytes = fs::read(&p).ctx("read", &p)?;
                let set: RootSet = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::invalid(format!("{}: {e}", p.display())))?;
                out.push((ns.clone(), name.to_owned(), set));
            }
        }
        Ok(out)
    }
}
