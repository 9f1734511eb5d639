//! The content-addressed store: blobs, ingests, tags, leases, roots, verify
//! and garbage collection. The on-disk layout is documented in the crate doc.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::image::sniff_media_type;
use crate::{
    media_type, Algorithm, Descriptor, Digest, Error, Hasher, ImageConfig, Index, Manifest,
    Platform, Reference, Result,
};

/// Namespace of the build cache's roots (removed by `prune --all`).
pub const CACHE_NAMESPACE: &str = "cache";

/// Largest JSON document (manifest, index, config) strata reads into memory.
pub const MAX_DOCUMENT_SIZE: u64 = 32 << 20;

/// A content store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
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

/// Write `data` to `path` atomically: temp file beside it, fsync, rename,
/// fsync the directory.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .ctx("create temp file in", dir)?;
    tmp.write_all(data).ctx("write", tmp.path())?;
    tmp.as_file().sync_all().ctx("fsync", tmp.path())?;
    tmp.persist(path).map_err(|e| Error::Io {
        op: "rename",
        path: path.to_owned(),
        source: e.error,
    })?;
    fsync_dir(dir)
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

/// A blob being written: bytes are hashed as they stream to a temp file in
/// the store; [`Writer::commit`] verifies and moves it into place.
///
/// Ingests are resumable: a writer opened again with the same ref key (after
/// the process that started it died, or after it was dropped without commit)
/// continues at [`Writer::offset`].
pub struct Writer {
    store: Store,
    dir: PathBuf,
    data_path: PathBuf,
    file: File,
    hasher: Hasher,
    offset: u64,
    _lock: FileLock,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("dir", &self.dir)
            .field("offset", &self.offset)
            .finish()
    }
}

impl Writer {
    /// Bytes in the ingest so far (where a resumed download continues).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Forget what was written and start from zero.
    pub fn reset(&mut self) -> Result<()> {
        self.file.set_len(0).ctx("truncate", &self.data_path)?;
        self.file
            .seek(SeekFrom::Start(0))
            .ctx("seek", &self.data_path)?;
        self.hasher = Hasher::new(match &self.hasher {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        });
        self.offset = 0;
        Ok(())
    }

    /// Finish: fsync, check `size` and `expected` (when given), move the blob
    /// to `blobs/<alg>/<hex>` and fsync the directory. A blob that was
    /// already present is success. On a mismatch the ingest is removed.
    pub fn commit(mut self, size: Option<u64>, expected: Option<&Digest>) -> Result<Digest> {
        self.file.flush().ctx("write", &self.data_path)?;
        self.file.sync_all().ctx("fsync", &self.data_path)?;
        let hasher_alg = match &self.hasher {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        };
        let digest = match expected {
            Some(e) if e.algorithm() != hasher_alg => {
                let f = File::open(&self.data_path).ctx("open", &self.data_path)?;
                hash_reader(f, e.algorithm())
                    .ctx("read", &self.data_path)?
                    .0
            }
            _ => std::mem::replace(&mut self.hasher, Hasher::new(hasher_alg)).finish(),
        };
        if let Some(size) = size {
            if size != self.offset {
                let _ = fs::remove_dir_all(&self.dir);
                return Err(Error::DigestMismatch {
                    what: format!("size of blob {digest}"),
                    expected: size.to_string(),
                    actual: self.offset.to_string(),
                });
            }
        }
        if let Some(e) = expected {
            if *e != digest {
                let _ = fs::remove_dir_all(&self.dir);
                return Err(Error::DigestMismatch {
                    what: "blob content".to_owned(),
                    expected: e.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let target = self.store.blob_path(&digest);
        let target_dir = target.parent().unwrap_or(&self.store.root).to_owned();
        fs::create_dir_all(&target_dir).ctx("create", &target_dir)?;
        {
            let _gc = self.store.gc_shared()?;
            if target.exists() {
                touch(&target);
            } else {
                fs::rename(&self.data_path, &target).ctx("rename into", &target)?;
                fsync_dir(&target_dir)?;
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
        Ok(digest)
    }

    /// Drop the ingest and its data.
    pub fn abort(self) -> Result<()> {
        fs::remove_dir_all(&self.dir).ctx("remove", &self.dir)
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.offset += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
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

/// What the tag database holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RefsDb {
    version: u32,
    /// Full reference (`docker.io/library/busybox:latest`) -> manifest or
    /// index descriptor.
    #[serde(default)]
    refs: BTreeMap<String, Descriptor>,
    /// Images kept without a name (loaded untagged), by manifest digest.
    #[serde(default)]
    untagged: BTreeMap<String, Descriptor>,
}

/// A tag or an untagged image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagEntry {
    /// The name, or `None` for an image kept without one.
    pub reference: Option<Reference>,
    /// The manifest or index it points at.
    pub descriptor: Descriptor,
}

/// A layer of an image: its blob and its uncompressed digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The (usually compressed) blob.
    pub descriptor: Descriptor,
    /// sha256 of the uncompressed tar (from the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
}

/// An image resolved from the store: manifest, config and layers, with the
/// raw bytes of each document exactly as stored.
#[derive(Debug, Clone)]
pub struct Image {
    /// The index it was reached through, if any.
    pub index: Option<Descriptor>,
    /// The manifest's descriptor.
    pub descriptor: Descriptor,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The manifest bytes.
    pub manifest_raw: Vec<u8>,
    /// The parsed config.
    pub config: ImageConfig,
    /// The config bytes (the image ID is their digest).
    pub config_raw: Vec<u8>,
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
}

impl Image {
    /// The image ID: the config digest, as docker shows it.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }

    /// Config plus layer blob sizes.
    pub fn size(&self) -> u64 {
        self.manifest.config.size + self.layers.iter().map(|l| l.descriptor.size).sum::<u64>()
    }

    /// The descriptor a tag for this image would point at (the index when
    /// it came through one).
    pub fn top_descriptor(&self) -> &Descriptor {
        self.index.as_ref().unwrap_or(&self.descriptor)
    }
}

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
struct LeaseData {
    id: String,
    pid: u32,
    label: String,
    /// Unix time in nanoseconds: content written after this is protected.
    created: u128,
    #[serde(flatten)]
    set: RootSet,
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
        let bytes = serde_json::to_vec(&self.data).unwrap_or_default();
        write_atomic(&self.json, &bytes)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.json);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A blob whose content does not match its name.
    CorruptBlob {
        /// The name.
        digest: String,
        /// The content's digest.
        actual: String,
    },
    /// A file under `blobs/` that is not a digest name, or cannot be read.
    BadBlobFile {
        /// Where.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Referenced content is missing.
    Missing {
        /// Who references it (a tag, a manifest).
        referenced_by: String,
        /// What is missing.
        digest: String,
    },
    /// A manifest, index or config that does not parse.
    BadDocument {
        /// Its digest.
        digest: String,
        /// Who references it.
        referenced_by: String,
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::CorruptBlob { digest, actual } => {
                write!(f, "corrupt blob {digest}: content hashes to {actual}")
            }
            Problem::BadBlobFile { path, reason } => write!(f, "{}: {reason}", path.display()),
            Problem::Missing {
                referenced_by,
                digest,
            } => write!(f, "missing {digest}, referenced by {referenced_by}"),
            Problem::BadDocument {
                digest,
                referenced_by,
                reason,
            } => write!(
                f,
                "bad document {digest} (referenced by {referenced_by}): {reason}"
            ),
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Blobs re-hashed.
    pub blobs: usize,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Tags checked.
    pub tags: usize,
    /// Everything wrong.
    pub problems: Vec<Problem>,
}

/// What garbage collection should remove besides unreferenced content.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcOptions {
    /// Also drop the build cache's roots ([`CACHE_NAMESPACE`]).
    pub remove_cache: bool,
    /// Also drop images kept without a name.
    pub remove_untagged: bool,
    /// Also drop unlocked ingests however young (else only those older than a day).
    pub remove_ingests: bool,
    /// Report, change nothing.
    pub dry_run: bool,
}

/// What garbage collection removed (or would remove, on a dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Blobs and their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Snapshot directory names.
    pub snapshots: Vec<String>,
    /// Roots (`namespace/name`).
    pub roots: Vec<String>,
    /// Untagged images (manifest digests).
    pub untagged: Vec<Digest>,
    /// Abandoned ingests and temp dirs.
    pub ingests: usize,
    /// Bytes of blobs removed.
    pub bytes: u64,
    /// Sidecar files (see [`SIDECAR_DIRS`]) of images no longer stored.
    pub sidecars: usize,
}

/// Directories under the store root holding per-image files that other
/// crates keep beside the store (the builder's line map, the cached
/// post-build analysis). Each file's name starts with the hex of the image
/// id (its config digest); `gc` removes the file once that blob is gone.
pub const SIDECAR_DIRS: &[&str] = &["build-info", "analysis"];

/// An image as `strata images` lists it.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// Its tag entry.
    pub entry: TagEntry,
    /// The resolved image.
    pub image: Image,
}

impl Store {
    /// Open (creating when missing) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for d in ["blobs/sha256", "ingest", "leases", "roots", "snapshots"] {
            let p = root.join(d);
            fs::create_dir_all(&p).ctx("create", &p)?;
        }
        Ok(Store { root })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
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

    // ---- blobs ----------------------------------------------------------

    /// Path of a blob (present or not).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    /// Whether the blob is present.
    pub fn has(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Whether the blob is present; if so its mtime is refreshed (under the
    /// GC lock), so a live lease protects it from a concurrent prune.
    pub fn has_and_touch(&self, d: &Digest) -> Result<bool> {
        let _gc = self.gc_shared()?;
        let p = self.blob_path(d);
        if p.is_file() {
            touch(&p);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Size of a blob.
    pub fn blob_size(&self, d: &Digest) -> Result<u64> {
        let p = self.blob_path(d);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::blob_not_found(d)),
            Err(e) => Err(e).ctx("stat", p),
        }
    }

    /// Open a blob for reading. The `File` seeks, and
    /// `std::os::unix::fs::FileExt::read_at` reads ranges.
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.blob_path(d);
        match File::open(&p) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::blob_not_found(d)),
            Err(e) => Err(e).ctx("open", p),
        }
    }

    /// Read a small blob (a JSON document) whole, checking its digest.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let size = self.blob_size(d)?;
        if size > MAX_DOCUMENT_SIZE {
            return Err(Error::invalid(format!(
                "blob {d} is {size} bytes, too big to be a manifest or config"
            )));
        }
        let mut data = Vec::with_capacity(size as usize);
        let p = self.blob_path(d);
        self.open_blob(d)?.read_to_end(&mut data).ctx("read", &p)?;
        let mut h = Hasher::new(d.algorithm());
        h.update(&data);
        let actual = h.finish();
        if actual != *d {
            return Err(Error::DigestMismatch {
                what: format!("blob {}", p.display()),
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(data)
    }

    /// Start (or resume) writing a blob under the ingest key `ref_key`.
    /// With `expected`, a blob already present is reported as
    /// [`Error::AlreadyExists`] so the caller can skip the transfer.
    pub fn writer(&self, ref_key: &str, expected: Option<&Descriptor>) -> Result<Writer> {
        if let Some(e) = expected {
            if self.has_and_touch(&e.digest)? {
                return Err(Error::AlreadyExists {
                    what: format!("blob {}", e.digest),
                });
            }
        }
        let dir = self
            .root
            .join("ingest")
            .join(Digest::sha256(ref_key.as_bytes()).hex());
        fs::create_dir_all(&dir).ctx("create", &dir)?;
        let lock = lock_file(&dir.join("lock"), FlockOperation::NonBlockingLockExclusive)?
            .ok_or_else(|| Error::Locked(ref_key.to_owned()))?;
        let ref_path = dir.join("ref");
        if !ref_path.exists() {
            fs::write(&ref_path, ref_key).ctx("write", &ref_path)?;
        }
        let data_path = dir.join("data");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .ctx("open", &data_path)?;
        let alg = expected.map_or(Algorithm::Sha256, |e| e.digest.algorithm());
        // Resume: re-hash what is there.
        let mut hasher = Hasher::new(alg);
        let mut offset = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let k = file.read(&mut buf).ctx("read", &data_path)?;
            if k == 0 {
                break;
            }
            hasher.update(&buf[..k]);
            offset += k as u64;
        }
        Ok(Writer {
            store: self.clone(),
            dir,
            data_path,
            file,
            hasher,
            offset,
            _lock: lock,
        })
    }

    /// Copy `reader` into the store (verifying `expected` when given).
    pub fn put_reader(
        &self,
        mut reader: impl Read,
        expected: Option<&Descriptor>,
    ) -> Result<Digest> {
        let key = format!("put-{}-{}", std::process::id(), now_nanos());
        let mut w = match self.writer(&key, expected) {
            Ok(w) => w,
            Err(Error::AlreadyExists { .. }) => {
                return Ok(expected
                    .map(|e| e.digest.clone())
                    .unwrap_or_else(|| Digest::sha256(b"")))
            }
            Err(e) => return Err(e),
        };
        if let Err(e) = io::copy(&mut reader, &mut w) {
            let _ = w.abort();
            return Err(Error::Io {
                op: "copy into the store",
                path: self.root.join("ingest"),
                source: e,
            });
        }
        w.commit(expected.map(|e| e.size), expected.map(|e| &e.digest))
    }

    /// Store `data` as a blob; returns its sha256.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::sha256(data);
        if self.has_and_touch(&d)? {
            return Ok(d);
        }
        self.put_reader(data, Some(&Descriptor::new("", d, data.len() as u64)))
    }

    /// Store a JSON document (manifest, index, config) exactly as given.
    pub fn put_json(&self, media_type: &str, data: &[u8]) -> Result<Descriptor> {
        let d = self.put_blob(data)?;
        Ok(Descriptor::new(media_type, d, data.len() as u64))
    }

    // ---- tags -----------------------------------------------------------

    fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    fn load_refs(&self) -> Result<RefsDb> {
        let p = self.refs_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::invalid(format!("{}: not a strata tag database: {e}", p.display()))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RefsDb {
                version: 1,
                ..RefsDb::default()
            }),
            Err(e) => Err(e).ctx("read", p),
        }
    }

    /// Read-modify-write the tag database under its lock.
    fn update_refs<T>(&self, f: impl FnOnce(&mut RefsDb) -> Result<T>) -> Result<T> {
        let _gc = self.gc_shared()?;
        let _lock = lock_file(&self.root.join("refs.lock"), FlockOperation::LockExclusive)?;
        let mut db = self.load_refs()?;
        let out = f(&mut db)?;
        db.version = 1;
        let bytes = serde_json::to_vec_pretty(&db).unwrap_or_default();
        write_atomic(&self.refs_path(), &bytes)?;
        Ok(out)
    }

    /// Point `reference` at a manifest or index (which must be stored,
    /// with everything it references). Returns the previous target.
    pub fn tag(&self, reference: &Reference, desc: &Descriptor) -> Result<Option<Descriptor>> {
        if reference.tag().is_none() {
            return Err(Error::invalid(format!(
                "cannot tag {reference}: a tag name needs a tag, not only a digest"
            )));
        }
        if !self.has(&desc.digest) {
            return Err(Error::blob_not_found(&desc.digest));
        }
        let name = Reference::new(&reference.name(), reference.tag(), None)
            .map_err(|e| Error::invalid(e.to_string()))?;
        self.update_refs(|db| {
            db.untagged.remove(&desc.digest.to_string());
            Ok(db.refs.insert(name.to_string(), desc.clone()))
        })
    }

    /// Keep an image without a name (what `load` does for unnamed images).
    pub fn keep_untagged(&self, desc: &Descriptor) -> Result<()> {
        if !self.has(&desc.digest) {
            return Err(Error::blob_not_found(&desc.digest));
        }
        self.update_refs(|db| {
            if !db.refs.values().any(|d| d.digest == desc.digest) {
                db.untagged.insert(desc.digest.to_string(), desc.clone());
            }
            Ok(())
        })
    }

    /// Remove a tag; returns what it pointed at.
    pub fn untag(&self, reference: &Reference) -> Result<Descriptor> {
        let key = reference.to_string();
        self.update_refs(|db| {
            db.refs.remove(&key).ok_or_else(|| Error::NotFound {
                what: format!("image {}", reference.familiar()),
            })
        })
    }

    /// Forget an untagged image.
    pub fn remove_untagged(&self, digest: &Digest) -> Result<()> {
        self.update_refs(|db| {
            db.untagged.remove(&digest.to_string());
            Ok(())
        })
    }

    /// What a reference points at: a tag's descriptor, or for `name@digest`
    /// the stored manifest or index with that digest.
    pub fn resolve(&self, reference: &Reference) -> Result<Descriptor> {
        if let Some(d) = reference.digest() {
            let data = self.read_blob(d).map_err(|e| match e {
                Error::NotFound { .. } => Error::NotFound {
                    what: format!("image {}", reference.familiar()),
                },
                e => e,
            })?;
            let mt = sniff_media_type(&data)
                .ok_or_else(|| Error::invalid(format!("{d} is neither a manifest nor an index")))?;
            return Ok(Descriptor::new(mt, d.clone(), data.len() as u64));
        }
        let db = self.load_refs()?;
        db.refs
            .get(&reference.to_string())
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: format!("image {}", reference.familiar()),
            })
    }

    /// Every tag and untagged image, sorted by name (untagged last).
    pub fn list_tags(&self) -> Result<Vec<TagEntry>> {
        let db = self.load_refs()?;
        let mut out = Vec::new();
        for (k, d) in db.refs {
            let reference = k
                .parse::<Reference>()
                .map_err(|e| Error::invalid(format!("tag database: {e}")))?;
            out.push(TagEntry {
                reference: Some(reference),
                descriptor: d,
            });
        }
        for (_, d) in db.untagged {
            out.push(TagEntry {
                reference: None,
                descriptor: d,
            });
        }
        Ok(out)
    }

    // ---- images ---------------------------------------------------------

    /// Resolve a manifest or index descriptor to an image (for an index,
    /// the entry for `platform`, default the host's).
    pub fn image(&self, desc: &Descriptor, platform: Option<&Platform>) -> Result<Image> {
        let raw = self.read_blob(&desc.digest)?;
        let mt = if desc.media_type.is_empty() {
            sniff_media_type(&raw).unwrap_or_default()
        } else {
            desc.media_type.clone()
        };
        if media_type::is_index(&mt) {
            let index: Index = serde_json::from_slice(&raw)
                .map_err(|e| Error::invalid(format!("index {}: {e}", desc.digest)))?;
            let want = platform.cloned().unwrap_or_else(Platform::host);
            let candidates: Vec<&Descriptor> = index
                .manifests
                .iter()
                .filter(|m| self.has(&m.digest))
                .filter(|m| m.platform.as_ref().is_none_or(|p| p.os != "unknown"))
                .collect();
            let chosen = candidates
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| want.matches(p)))
                .or_else(|| {
                    if platform.is_none() {
                        candidates.first()
                    } else {
                        None
                    }
                })
                .ok_or_else(|| Error::NotFound {
                    what: format!("manifest for {want} in index {}", desc.digest),
                })?;
            let mut img = self.image(chosen, platform)?;
            if img.index.is_none() {
                img.index = Some(desc.clone());
            }
            return Ok(img);
        }
        if !mt.is_empty() && !media_type::is_manifest(&mt) {
            return Err(Error::invalid(format!(
                "{} is a {mt}, not an image manifest",
                desc.digest
            )));
        }
        let manifest: Manifest = serde_json::from_slice(&raw)
            .map_err(|e| Error::invalid(format!("manifest {}: {e}", desc.digest)))?;
        let config_raw = self.read_blob(&manifest.config.digest)?;
        let config: ImageConfig = serde_json::from_slice(&config_raw)
            .map_err(|e| Error::invalid(format!("config {}: {e}", manifest.config.digest)))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::invalid(format!(
                "manifest {} has {} layers but its config lists {} diff_ids",
                desc.digest,
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let layers = manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(d, id)| Layer {
                descriptor: d.clone(),
                diff_id: id.clone(),
            })
            .collect();
        let mut descriptor = desc.clone();
        descriptor.media_type = mt;
        Ok(Image {
            index: None,
            descriptor,
            manifest,
            manifest_raw: raw,
            config,
            config_raw,
            layers,
        })
    }

    /// Find an image the way docker's CLI does: by reference
    /// (`busybox`, `name@sha256:...`), by image ID (`sha256:<config>`), or
    /// by a unique prefix of the ID.
    pub fn find_image(&self, s: &str) -> Result<Image> {
        let not_found = || Error::NotFound {
            what: format!("image {s}"),
        };
        if let Ok(d) = s.parse::<Digest>() {
            for e in self.list_tags()? {
                if let Ok(img) = self.image(&e.descriptor, None) {
                    if img.id() == &d || img.descriptor.digest == d || e.descriptor.digest == d {
                        return Ok(img);
                    }
                }
            }
            return Err(not_found());
        }
        if let Ok(r) = s.parse::<Reference>() {
            match self.resolve(&r) {
                Ok(desc) => return self.image(&desc, None),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if !hex.is_empty() && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            let mut found: Option<Image> = None;
            for e in self.list_tags()? {
                if let Ok(img) = self.image(&e.descriptor, None) {
                    if img.id().hex().starts_with(hex) {
                        match &found {
                            Some(f) if f.id() != img.id() => {
                                return Err(Error::invalid(format!(
                                    "image ID prefix {s:?} is ambiguous"
                                )))
                            }
                            _ => found = Some(img),
                        }
                    }
                }
            }
            if let Some(img) = found {
                return Ok(img);
            }
        }
        Err(not_found())
    }

    /// All images, one per tag (and one per untagged image).
    pub fn images(&self) -> Result<Vec<ImageSummary>> {
        let mut out = Vec::new();
        for entry in self.list_tags()? {
            let image = self.image(&entry.descriptor, None)?;
            out.push(ImageSummary { entry, image });
        }
        Ok(out)
    }

    /// Tags pointing at the image with this ID.
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<Reference>> {
        let mut out = Vec::new();
        for s in self.images()? {
            if s.image.id() == id {
                if let Some(r) = s.entry.reference {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    // ---- leases and roots ----------------------------------------------

    /// Take a lease (see [`Lease`]).
    pub fn lease(&self, label: &str) -> Result<Lease> {
        let id = format!("{}-{}", std::process::id(), now_nanos());
        let dir = self.root.join("leases");
        let lock_path = dir.join(format!("{id}.lock"));
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
        lease.save()?;
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
    /// is removed. The builder keeps its cache under [`CACHE_NAMESPACE`],
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

    // ---- verify and gc ----------------------------------------------------

    /// Re-hash every blob and check every reference from the tags.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let blobs = self.root.join("blobs");
        for alg in read_dir_sorted(&blobs)? {
            let algorithm = match alg.as_str() {
                "sha256" => Algorithm::Sha256,
                "sha512" => Algorithm::Sha512,
                _ => {
                    report.problems.push(Problem::BadBlobFile {
                        path: blobs.join(&alg),
                        reason: "unknown digest algorithm directory".into(),
                    });
                    continue;
                }
            };
            for name in read_dir_sorted(&blobs.join(&alg))? {
                let path = blobs.join(&alg).join(&name);
                let Ok(digest) = Digest::new(algorithm, &name) else {
                    report.problems.push(Problem::BadBlobFile {
                        path,
                        reason: "not a digest name".into(),
                    });
                    continue;
                };
                match File::open(&path).and_then(|f| hash_reader(f, algorithm)) {
                    Ok((actual, n)) => {
                        report.blobs += 1;
                        report.bytes += n;
                        if actual != digest {
                            report.problems.push(Problem::CorruptBlob {
                                digest: digest.to_string(),
                                actual: actual.to_string(),
                            });
                        }
                    }
                    Err(e) => report.problems.push(Problem::BadBlobFile {
                        path,
                        reason: e.to_string(),
                    }),
                }
            }
        }
        let corrupt: BTreeSet<String> = report
            .problems
            .iter()
            .filter_map(|p| match p {
                Problem::CorruptBlob { digest, .. } => Some(digest.clone()),
                _ => None,
            })
            .collect();
        let mut checked = BTreeSet::new();
        for e in self.list_tags()? {
            report.tags += 1;
            let who = match &e.reference {
                Some(r) => format!("tag {}", r.familiar()),
                None => format!("untagged image {}", e.descriptor.digest),
            };
            self.check_tree(
                &e.descriptor,
                &who,
                &corrupt,
                &mut checked,
                &mut report.problems,
            );
        }
        Ok(report)
    }

    fn check_tree(
        &self,
        desc: &Descriptor,
        who: &str,
        corrupt: &BTreeSet<String>,
        checked: &mut BTreeSet<Digest>,
        problems: &mut Vec<Problem>,
    ) {
        if !checked.insert(desc.digest.clone()) {
            return;
        }
        if !self.has(&desc.digest) {
            problems.push(Problem::Missing {
                referenced_by: who.to_owned(),
                digest: desc.digest.to_string(),
            });
            return;
        }
        if corrupt.contains(&desc.digest.to_string()) {
            return;
        }
        let is_doc = media_type::is_manifest(&desc.media_type)
            || media_type::is_index(&desc.media_type)
            || desc.media_type.is_empty();
        if !is_doc {
            return;
        }
        let bad = |reason: String, problems: &mut Vec<Problem>| {
            problems.push(Problem::BadDocument {
                digest: desc.digest.to_string(),
                referenced_by: who.to_owned(),
                reason,
            })
        };
        let raw = match self.read_blob(&desc.digest) {
            Ok(r) => r,
            Err(e) => return bad(e.to_string(), problems),
        };
        let mt = if desc.media_type.is_empty() {
            sniff_media_type(&raw).unwrap_or_default()
        } else {
            desc.media_type.clone()
        };
        let me = format!(
            "{} {}",
            if media_type::is_index(&mt) {
                "index"
            } else {
                "manifest"
            },
            desc.digest
        );
        if media_type::is_index(&mt) {
            match serde_json::from_slice::<Index>(&raw) {
                // Index children may be absent (a pull keeps one platform).
                Ok(idx) => {
                    for m in idx.manifests.iter().filter(|m| self.has(&m.digest)) {
                        self.check_tree(m, &me, corrupt, checked, problems);
                    }
                }
                Err(e) => bad(e.to_string(), problems),
            }
            return;
        }
        let m: Manifest = match serde_json::from_slice(&raw) {
            Ok(m) => m,
            Err(e) => return bad(e.to_string(), problems),
        };
        for l in m.layers.iter().chain(std::iter::once(&m.config)) {
            if !self.has(&l.digest) {
                problems.push(Problem::Missing {
                    referenced_by: me.clone(),
                    digest: l.digest.to_string(),
                });
            }
        }
        if self.has(&m.config.digest) && !corrupt.contains(&m.config.digest.to_string()) {
            match self.read_blob(&m.config.digest).and_then(|c| {
                serde_json::from_slice::<ImageConfig>(&c).map_err(|e| Error::invalid(e.to_string()))
            }) {
                Ok(c) if c.rootfs.diff_ids.len() != m.layers.len() => {
                    problems.push(Problem::BadDocument {
                        digest: m.config.digest.to_string(),
                        referenced_by: me,
                        reason: format!(
                            "config lists {} diff_ids for {} layers",
                            c.rootfs.diff_ids.len(),
                            m.layers.len()
                        ),
                    })
                }
                Ok(_) => {}
                Err(e) => problems.push(Problem::BadDocument {
                    digest: m.config.digest.to_string(),
                    referenced_by: me,
                    reason: e.to_string(),
                }),
            }
        }
    }

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
        // 5. sweep snapshots.
        let sdir = self.snapshots_dir();
        for name in read_dir_sorted(&sdir)? {
            let p = sdir.join(&name);
            if let Some(rest) = name.strip_prefix(".tmp-") {
                let pid = rest.split('-').next().and_then(|s| s.parse::<u32>().ok());
                if pid.is_some_and(|pid| !pid_alive(pid)) {
                    report.ingests += 1;
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
            report.snapshots.push(name);
            if !opts.dry_run {
                remove_tree(&p)?;
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
            if opts.remove_ingests || old {
                report.ingests += 1;
                if !opts.dry_run {
                    let _ = fs::remove_dir_all(&p);
                }
            }
        }
        // 7. sidecars of images whose config blob is gone (or goes now).
        let removed: BTreeSet<&Digest> = report.blobs.iter().map(|(d, _)| d).collect();
        let mut stale = Vec::new();
        for dir in SIDECAR_DIRS {
            let sdir = self.root.join(dir);
            for name in read_dir_sorted(&sdir)? {
                let Some(hex) = name.get(..64) else { continue };
                let Ok(d) = Digest::new(Algorithm::Sha256, hex) else {
                    continue;
                };
                if self.has(&d) && !removed.contains(&d) {
                    continue;
                }
                let p = sdir.join(&name);
                if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
                    stale.push(p);
                }
            }
        }
        report.sidecars = stale.len();
        if !opts.dry_run {
            for p in stale {
                fs::remove_file(&p).ctx("remove", &p)?;
            }
        }
        Ok(report)
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
