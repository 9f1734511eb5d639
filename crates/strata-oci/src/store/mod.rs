//! The content-addressed store, split by concern as containerd splits its
//! content store and metadata database:
//!
//! - `content`: blobs, ingests and the [`Writer`] that commits them;
//! - `refs`: the tag database (`refs.json`);
//! - `images`: resolving manifests and indexes to [`Image`]s;
//! - `import`: images made of one imported layer;
//! - `remove`: what removing an image by name or ID removes;
//! - `leases`: [`Lease`]s held by live processes and persistent roots;
//! - `verify`: re-hashing blobs and checking references;
//! - `sidecars`: per-image files other tools keep beside the store;
//! - `referrers`: OCI 1.1 artifact manifests listed by their subject;
//! - `gc`: mark and sweep.
//!
//! This module holds the [`Store`] handle and the file-system helpers they
//! share (locks, atomic writes). The on-disk layout is documented in the
//! crate doc.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::FlockOperation;

use crate::error::IoContext;
use crate::{Algorithm, Digest, Error, Hasher, Result};

mod content;
mod gc;
mod images;
mod import;
mod leases;
mod referrers;
mod refs;
mod remote;
mod remove;
mod sidecars;
mod temp;
mod verify;

pub use content::Writer;
pub use gc::{GcOptions, GcReport};
pub use images::{Image, ImageSummary, Layer};
pub use import::ImportOptions;
pub use leases::{Lease, RootSet};
pub use refs::TagEntry;
pub use remote::BlobFetcher;
pub use remove::Removed;
pub use sidecars::Sidecars;
pub use temp::{Hold, TempDir};
pub use verify::{Problem, VerifyReport};

/// Namespace of the build cache's roots (removed by `prune --all`).
pub const CACHE_NAMESPACE: &str = "cache";

/// Largest JSON document (manifest, index, config) strata reads into memory.
pub const MAX_DOCUMENT_SIZE: u64 = 32 << 20;

/// A content store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Downloads remote blobs on first read ([`Store::with_fetcher`]).
    fetcher: Option<std::sync::Arc<dyn BlobFetcher>>,
}

/// An exclusive or shared `flock` held for as long as the value lives.
#[derive(Debug)]
struct FileLock {
    _file: File,
}

fn lock_file(path: &Path, op: FlockOperation) -> Result<Option<FileLock>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .ctx("open lock", path)?;
    match rustix::fs::flock(file.as_fd(), op) {
        Ok(()) => Ok(Some(FileLock { _file: file })),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e).ctx("lock", path),
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsync", dir)
}

/// Write `data` to `path` atomically and durably: a uniquely named temp
/// file beside it (`.tmp-*`, so concurrent writers of the same path never
/// collide), fsync, rename over `path`, fsync the directory. Readers see the
/// old content or the new, never a mix; after a crash, one of the two.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    replace_file(path, data, true)
}

/// [`write_atomic`], unless `path` already holds exactly `data` (written
/// by an earlier `write_atomic`, so already durable): a rebuild that
/// changes nothing then rewrites and syncs nothing. Only for files whose
/// modification time means nothing.
pub fn write_atomic_if_changed(path: &Path, data: &[u8]) -> Result<()> {
    if fs::read(path).is_ok_and(|old| old == data) {
        return Ok(());
    }
    write_atomic(path, data)
}

/// Write `data` to `path` atomically but not durably (no fsync): for
/// records that only live as long as their process, which a crash makes
/// stale anyway (leases). Readers see the old content or the new.
pub(crate) fn write_atomic_volatile(path: &Path, data: &[u8]) -> Result<()> {
    replace_file(path, data, false)
}

/// A uniquely named temp file beside `path` (`.tmp-*`) renamed over it;
/// `durable`: the file synced before the rename and the directory after.
fn replace_file(path: &Path, data: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .ctx("create temp file in", dir)?;
    tmp.write_all(data).ctx("write", tmp.path())?;
    if durable {
        tmp.as_file().sync_all().ctx("fsync", tmp.path())?;
    }
    tmp.persist(path)
        .map_err(|e| Error::io("rename", path.to_owned(), e.error))?;
    if durable {
        fsync_dir(dir)?;
    }
    Ok(())
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn mtime_nanos(meta: &fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn touch(path: &Path) {
    if let Ok(f) = File::open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

fn hash_reader(mut r: impl Read, alg: Algorithm) -> io::Result<(Digest, u64)> {
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finish(), n))
}

impl Store {
    /// Open (creating when missing) the store at `root`, and remove the
    /// temporary state of processes that died ([`Store::temp_dir`],
    /// [`Store::hold_active`]).
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for d in ["blobs/sha256", "ingest", "leases", "roots", "snapshots"] {
            let p = root.join(d);
            fs::create_dir_all(&p).ctx("create", &p)?;
        }
        let store = Store {
            root,
            fetcher: None,
        };
        // Temporary state of processes that died (scratch files that can
        // hold secrets, RUN layers): cheap when there is none; a failure
        // here only leaves it for the next command or `prune`.
        let _ = store.sweep_held(false, false);
        Ok(store)
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Bytes free for unprivileged writers on the file system holding the
    /// store (to tell a user whose build failed that the disk is full).
    pub fn available_space(&self) -> Result<u64> {
        let st = rustix::fs::statvfs(&self.root).ctx("statvfs", &self.root)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Where snapshot directories live (`<root>/snapshots`); strata-layer's
    /// snapshotter owns its content, [`Store::gc`] removes unreachable ones.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    fn gc_shared(&self) -> Result<FileLock> {
        let p = self.root.join("gc.lock");
        lock_file(&p, FlockOperation::LockShared)?.ok_or_else(|| Error::Locked("gc".into()))
    }

    fn gc_exclusive(&self) -> Result<FileLock> {
        let p = self.root.join("gc.lock");
        lock_file(&p, FlockOperation::LockExclusive)?.ok_or_else(|| Error::Locked("gc".into()))
    }
}

/// Remove a directory tree, making directories writable first (snapshot
/// trees can hold read-only directories).
pub fn remove_tree(p: &Path) -> Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(p);
            fs::remove_dir_all(p).ctx("remove", p)
        }
    }
}

/// Bytes of the regular files and symlinks under `p` (not following
/// symlinks nor crossing into other file systems; hard links once).
fn dir_size(p: &Path) -> u64 {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = fs::symlink_metadata(p) else {
        return 0;
    };
    let dev = top.dev();
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![p.to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            if let Ok(rd) = fs::read_dir(&path) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if meta.nlink() < 2 || seen.insert(meta.ino()) {
            total += meta.len();
        }
    }
    total
}

fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::symlink_metadata(p) {
        if meta.is_dir() {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    make_writable(&e.path());
                }
            }
        }
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx("list", dir),
    };
    let mut names = Vec::new();
    for e in rd {
        let e = e.ctx("list", dir)?;
        if let Some(n) = e.file_name().to_str() {
            names.push(n.to_owned());
        }
    }
    names.sort();
    Ok(names)
}
