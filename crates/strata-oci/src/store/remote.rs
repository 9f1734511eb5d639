//! Layers left in a registry until something reads them.
//!
//! A build that takes a step from a registry cache (`--cache-from`) knows
//! the step's layer by its descriptor; its bytes are needed only when
//! something reads them (a later RUN, `strata run`, a save), and a push to
//! the registry holding the cache mounts them without ever downloading
//! them. The store records such a layer as a *remote blob*: its descriptor
//! under `remote/<alg>/<hex>`, so the images that reference it stay whole
//! (`verify` accepts it, `gc` keeps the record while something references
//! it). Reading it ([`Store::open_blob`]) downloads it first, through the
//! [`BlobFetcher`] the program installed ([`Store::with_fetcher`]); where
//! the blob lives (which registry repositories) is the fetcher's business.

use std::fs::{self, File};
use std::sync::Arc;

use rustix::fs::FlockOperation;

use super::{lock_file, write_atomic, Store};
use crate::error::IoContext;
use crate::{Descriptor, Digest, Error, RemoteError, Result};

/// Downloads a remote blob into a store.
pub trait BlobFetcher: Send + Sync + std::fmt::Debug {
    /// Copies the blob `desc` into `store` (through [`Store::writer`], which
    /// verifies it), from wherever it is known to live.
    fn fetch(&self, store: &Store, desc: &Descriptor) -> std::result::Result<(), RemoteError>;
}

const REMOTE_DIR: &str = "remote";

impl Store {
    /// This store, reading remote blobs through `fetcher`.
    pub fn with_fetcher(mut self, fetcher: Arc<dyn BlobFetcher>) -> Store {
        self.fetcher = Some(fetcher);
        self
    }

    fn remote_path(&self, d: &Digest) -> std::path::PathBuf {
        self.root
            .join(REMOTE_DIR)
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    /// Records `desc` as a blob that lives in a registry and is downloaded
    /// on first read. Nothing is recorded for a blob the store has.
    pub fn note_remote(&self, desc: &Descriptor) -> Result<()> {
        if self.has(&desc.digest) {
            return Ok(());
        }
        let p = self.remote_path(&desc.digest);
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir).ctx("create", dir)?;
        }
        let json = serde_json::to_vec(desc).map_err(|e| Error::invalid(e.to_string()))?;
        write_atomic(&p, &json)
    }

    /// The descriptor of a remote blob ([`Store::note_remote`]) the store
    /// does not have; `None` for a blob it has or knows nothing of.
    pub fn remote_blob(&self, d: &Digest) -> Option<Descriptor> {
        if self.has(d) {
            return None;
        }
        let raw = fs::read(self.remote_path(d)).ok()?;
        serde_json::from_slice::<Descriptor>(&raw)
            .ok()
            .filter(|desc| desc.digest == *d)
    }

    /// Every remote blob recorded (present or not), for `gc`.
    pub(crate) fn remote_records(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        let dir = self.root.join(REMOTE_DIR);
        for alg in super::read_dir_sorted(&dir)? {
            let algorithm = match alg.as_str() {
                "sha256" => crate::Algorithm::Sha256,
                "sha512" => crate::Algorithm::Sha512,
                _ => continue,
            };
            for name in super::read_dir_sorted(&dir.join(&alg))? {
                if let Ok(d) = Digest::new(algorithm, &name) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// Drops the record of remote blob `d` (the store has it now, or
    /// nothing references it).
    pub(crate) fn forget_remote(&self, d: &Digest) -> Result<()> {
        let p = self.remote_path(d);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("remove", &p),
            _ => Ok(()),
        }
    }

    /// Downloads remote blob `d` into the store if it is one: `Ok(true)`
    /// when the store has it afterwards, `Ok(false)` when `d` is not a
    /// remote blob. One process at a time fetches a given blob; the others
    /// wait and find it there.
    pub fn fetch_remote(&self, d: &Digest) -> Result<bool> {
        let Some(desc) = self.remote_blob(d) else {
            return Ok(self.has(d));
        };
        let Some(fetcher) = &self.fetcher else {
            return Err(Error::NotFound {
                what: format!(
                    "blob {d} (a layer left in a registry by a cached build step, and this command cannot download it)"
                ),
            });
        };
        let lock = self.remote_path(d).with_extension("lock");
        let _held = lock_file(&lock, FlockOperation::LockExclusive)?;
        if !self.has(d) {
            fetcher.fetch(self, &desc).map_err(|source| Error::Fetch {
                what: format!("layer {d}"),
                source,
            })?;
            if !self.has(d) {
                return Err(Error::blob_not_found(d));
            }
        }
        let _ = fs::remove_file(&lock);
        self.forget_remote(d)?;
        Ok(true)
    }

    /// Opens blob `d`, downloading it first when it is a remote blob.
    pub(crate) fn open_or_fetch(&self, d: &Digest) -> Result<Option<File>> {
        if self.fetch_remote(d)? {
            let p = self.blob_path(d);
            return File::open(&p).map(Some).ctx("open", p);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{media_type, Digest};

    #[derive(Debug, Default)]
    struct FromMemory {
        data: Vec<u8>,
        calls: AtomicUsize,
    }

    impl BlobFetcher for FromMemory {
        fn fetch(&self, store: &Store, desc: &Descriptor) -> std::result::Result<(), RemoteError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut w = store.writer(&format!("fetch-{}", desc.digest.hex()), Some(desc))?;
            std::io::Write::write_all(&mut w, &self.data)?;
            w.commit(Some(desc.size), Some(&desc.digest))?;
            Ok(())
        }
    }

    #[test]
    fn a_remote_blob_is_downloaded_on_first_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"layer bytes".to_vec();
        let desc = Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::sha256(&data), 11);
        let fetcher = Arc::new(FromMemory {
            data: data.clone(),
            calls: AtomicUsize::new(0),
        });
        let plain = Store::open(dir.path()).unwrap();
        plain.note_remote(&desc).unwrap();
        assert!(!plain.has(&desc.digest));
        assert_eq!(plain.remote_blob(&desc.digest), Some(desc.clone()));
        // Without a fetcher: an error that says what the blob is.
        let e = plain.open_blob(&desc.digest).unwrap_err().to_string();
        assert!(e.contains("left in a registry"), "{e}");

        let store = Store::open(dir.path())
            .unwrap()
            .with_fetcher(fetcher.clone());
        let mut got = Vec::new();
        store
            .open_blob(&desc.digest)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, data);
        store.open_blob(&desc.digest).unwrap();
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1);
        assert_eq!(store.remote_blob(&desc.digest), None);
        assert!(store.remote_records().unwrap().is_empty());
    }

    #[test]
    fn a_fetch_that_fails_names_the_layer_and_leaves_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let desc = Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::sha256(b"x"), 1);
        // Gives other bytes than the descriptor's: the writer refuses them.
        let store = Store::open(dir.path())
            .unwrap()
            .with_fetcher(Arc::new(FromMemory {
                data: b"y".to_vec(),
                calls: AtomicUsize::new(0),
            }));
        store.note_remote(&desc).unwrap();
        let e = store.open_blob(&desc.digest).unwrap_err();
        assert!(e.to_string().contains("cannot download layer"), "{e}");
        assert!(!store.has(&desc.digest));
        assert_eq!(store.remote_blob(&desc.digest), Some(desc));
    }

    #[test]
    fn gc_drops_the_records_nothing_references() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let desc = Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::sha256(b"gone"), 4);
        store.note_remote(&desc).unwrap();
        store.gc(crate::GcOptions::default()).unwrap();
        assert_eq!(store.remote_blob(&desc.digest), None);
        assert!(store.remote_records().unwrap().is_empty());
    }
}
