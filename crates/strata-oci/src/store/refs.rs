//! The tag database: `refs.json` maps full references to manifest or index
//! descriptors (and keeps untagged images), replaced atomically under
//! `refs.lock`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use super::{lock_file, Store};
use crate::error::IoContext;
use crate::image::sniff_media_type;
use crate::{Descriptor, Digest, Error, Reference, Result};

/// What the tag database holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct RefsDb {
    pub(super) version: u32,
    /// Full reference (`docker.io/library/busybox:latest`) -> manifest or
    /// index descriptor.
    #[serde(default)]
    pub(super) refs: BTreeMap<String, Descriptor>,
    /// Images kept without a name (loaded untagged), by manifest digest.
    #[serde(default)]
    pub(super) untagged: BTreeMap<String, Descriptor>,
}

/// A tag or an untagged image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagEntry {
    /// The name, or `None` for an image kept without one.
    pub reference: Option<Reference>,
    /// The manifest or index it points at.
    pub descriptor: Descriptor,
}

impl Store {
    pub(super) fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    pub(super) fn load_refs(&self) -> Result<RefsDb> {
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
        // A tag that already points where it is set changes nothing.
        super::write_atomic_if_changed(&self.refs_path(), &bytes)?;
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
}
