//! Blobs: reading them, and writing them through an ingest (a resumable
//! [`Writer`] that verifies size and digest and renames into
//! `blobs/<alg>/<hex>`), as containerd's local content store does.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::FlockOperation;

use super::{
    fsync_dir, hash_reader, lock_file, now_nanos, touch, FileLock, Store, MAX_DOCUMENT_SIZE,
};
use crate::error::IoContext;
use crate::{Algorithm, Descriptor, Digest, Error, Hasher, Result};

/// Ingest keys of [`Store::unique_writer`]: unique to one writer, so nobody
/// can resume them and garbage collection removes them as soon as they are
/// unlocked (their writer finished or died).
pub(super) const ONE_SHOT_PREFIX: &str = "unique-";

fn unique_key() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{ONE_SHOT_PREFIX}{}-{}-{}",
        std::process::id(),
        now_nanos(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
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
    /// The ingest's data file (for errors that name where).
    pub fn path(&self) -> &Path {
        &self.data_path
    }

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

impl Store {
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
            Err(e) if e.kind() == io::ErrorKind::NotFound => match self.open_or_fetch(d)? {
                Some(f) => Ok(f),
                None => Err(Error::blob_not_found(d)),
            },
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
        // Under the GC lock, so a collection never sees the ingest
        // before its lock is held.
        let (lock, created) = {
            let _gc = self.gc_shared()?;
            let created = !dir.exists();
            fs::create_dir_all(&dir).ctx("create", &dir)?;
            match lock_file(&dir.join("lock"), FlockOperation::NonBlockingLockExclusive) {
                Ok(Some(lock)) => (lock, created),
                Ok(None) => return Err(Error::Locked(ref_key.to_owned())),
                Err(e) => {
                    if created {
                        let _ = fs::remove_dir_all(&dir);
                    }
                    return Err(e);
                }
            }
        };
        // From here the ingest is ours (locked): one this call made and
        // could not set up (a full disk) goes again, so nothing half-made
        // is left behind.
        let opened = (|| -> Result<(fs::File, Hasher, u64)> {
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
            Ok((file, hasher, offset))
        })();
        let (file, hasher, offset) = match opened {
            Ok(o) => o,
            Err(e) => {
                if created {
                    let _ = fs::remove_dir_all(&dir);
                }
                return Err(e);
            }
        };
        let data_path = dir.join("data");
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

    /// A writer for content made here (a layer being written, an archive
    /// being loaded): its ingest key is unique, so it cannot be resumed, and
    /// if this process dies the next garbage collection removes it.
    pub fn unique_writer(&self) -> Result<Writer> {
        self.writer(&unique_key(), None)
    }

    /// Copy `reader` into the store (verifying `expected` when given).
    pub fn put_reader(
        &self,
        mut reader: impl Read,
        expected: Option<&Descriptor>,
    ) -> Result<Digest> {
        let mut w = match self.writer(&unique_key(), expected) {
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
            return Err(Error::io(
                "copy into the store",
                self.root.join("ingest"),
                e,
            ));
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
}
