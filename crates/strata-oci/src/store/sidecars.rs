//! Sidecars: small per-image (or per-blob) files that tools keep beside
//! the store (the builder's Dockerfile line map, a cached analysis, a
//! layer's file records), never inside an image, so they never change a
//! digest.
//!
//! The store does not know who writes them. A writer names a *kind*
//! (`build-info`, `analysis`, `layer-files`); its files live under
//! `sidecars/<kind>/`, one per blob digest (an image ID, which is its
//! config's digest, or a layer's) and optional key. Garbage collection
//! sweeps every kind the same way, as containerd's metadata GC sweeps by
//! resource kind: a sidecar goes once the blob it names is gone.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::{write_atomic_if_changed, Store};
use crate::error::IoContext;
use crate::{Algorithm, Digest, Error, Result};

/// Directory under the store root holding one directory per sidecar kind.
pub(super) const SIDECARS_DIR: &str = "sidecars";

/// The sidecar files of one kind ([`Store::sidecar`]).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = strata_oci::Store::open(dir.path()).unwrap();
/// let id = store.put_blob(b"{}").unwrap(); // an image config
/// let notes = store.sidecar("notes").unwrap();
/// notes.put(&id, None, b"built on a Tuesday").unwrap();
/// notes.put(&id, Some("v2"), b"a variant").unwrap();
/// assert_eq!(notes.get(&id, None).unwrap().as_deref(), Some(&b"built on a Tuesday"[..]));
/// assert_eq!(notes.get(&id, Some("v3")).unwrap(), None);
/// notes.remove(&id).unwrap();
/// assert_eq!(notes.get(&id, Some("v2")).unwrap(), None);
/// ```
#[derive(Debug, Clone)]
pub struct Sidecars {
    store: Store,
    kind: String,
    dir: PathBuf,
}

/// Kinds and keys are short names: letters, digits, `-`, `_`.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
}

/// `<alg>-<hex>` or `<alg>-<hex>.<key>`.
fn file_name(image: &Digest, key: Option<&str>) -> String {
    let base = format!("{}-{}", image.algorithm().as_str(), image.hex());
    match key {
        Some(k) => format!("{base}.{k}"),
        None => base,
    }
}

/// The image a sidecar file belongs to, from its name.
pub(super) fn image_of(name: &str) -> Option<Digest> {
    let base = name.split('.').next()?;
    let (alg, hex) = base.split_once('-')?;
    let algorithm = match alg {
        "sha256" => Algorithm::Sha256,
        "sha512" => Algorithm::Sha512,
        _ => return None,
    };
    Digest::new(algorithm, hex).ok()
}

impl Store {
    /// The sidecar files of `kind` (letters, digits, `-`, `_`). A writer
    /// registers its kind by using it; garbage collection removes a kind's
    /// file once the image it belongs to (its config blob) is gone.
    pub fn sidecar(&self, kind: &str) -> Result<Sidecars> {
        if !valid_name(kind) {
            return Err(Error::invalid(format!(
                "sidecar kind {kind:?}: names are 1 to 64 letters, digits, '-', '_'"
            )));
        }
        Ok(Sidecars {
            store: self.clone(),
            kind: kind.to_owned(),
            dir: self.root.join(SIDECARS_DIR).join(kind),
        })
    }
}

impl Sidecars {
    /// The kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    fn path(&self, image: &Digest, key: Option<&str>) -> Result<PathBuf> {
        if let Some(k) = key {
            if !valid_name(k) {
                return Err(Error::invalid(format!(
                    "sidecar key {k:?}: keys are 1 to 64 letters, digits, '-', '_'"
                )));
            }
        }
        Ok(self.dir.join(file_name(image, key)))
    }

    /// Store `bytes` for `image` (its ID, the config digest) under `key`
    /// (`None` for the image's one file of this kind), replacing what was
    /// there; atomic and durable (and nothing is written when the same
    /// bytes are there already).
    pub fn put(&self, image: &Digest, key: Option<&str>, bytes: &[u8]) -> Result<()> {
        let p = self.path(image, key)?;
        fs::create_dir_all(&self.dir).ctx("create", &self.dir)?;
        let _gc = self.store.gc_shared()?;
        write_atomic_if_changed(&p, bytes)
    }

    /// What was stored for `image` under `key`, if anything.
    pub fn get(&self, image: &Digest, key: Option<&str>) -> Result<Option<Vec<u8>>> {
        let p = self.path(image, key)?;
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx("read", p),
        }
    }

    /// Remove every file of this kind for `image`.
    pub fn remove(&self, image: &Digest) -> Result<()> {
        let base = file_name(image, None);
        for name in super::read_dir_sorted(&self.dir)? {
            if name == base || name.strip_prefix(&base).is_some_and(|r| r.starts_with('.')) {
                let p = self.dir.join(&name);
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).ctx("remove", p),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        let d = Digest::sha256(b"x");
        assert_eq!(image_of(&file_name(&d, None)), Some(d.clone()));
        assert_eq!(image_of(&file_name(&d, Some("k-1"))), Some(d.clone()));
        for bad in ["", ".tmp-x", "sha256-abc", "md5-00", "x.y"] {
            assert_eq!(image_of(bad), None, "{bad}");
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        for kind in ["", "../x", "a/b", ".hidden", "a.b"] {
            assert!(s.sidecar(kind).is_err(), "{kind:?} accepted");
        }
        let sc = s.sidecar("k").unwrap_or_else(|e| panic!("{e}"));
        for key in ["", "../x", "a.b", "a/b"] {
            assert!(sc.put(&d, Some(key), b"x").is_err(), "{key:?} accepted");
        }
    }
}
