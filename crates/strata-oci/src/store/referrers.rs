//! Referrers (OCI 1.1): artifact manifests (an SBOM, a provenance
//! statement, a signature) whose `subject` is a manifest in the store. They
//! live beside the image, never inside it, so the image's manifest and
//! index digests do not change; the store lists them by subject and keeps
//! them while the subject lives (garbage collection marks a manifest's
//! referrers with it and sweeps the records of subjects that are gone).
//!
//! One record per referrer, so that concurrent writers never rewrite a
//! shared list: `referrers/<alg>-<subject hex>/<alg>-<hex>` holds the
//! referrer's descriptor as the referrers API returns it (`artifactType`
//! and the manifest's annotations included).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use super::{read_dir_sorted, write_atomic, Store};
use crate::error::IoContext;
use crate::{
    cache_format::empty_descriptor, media_type, Descriptor, Digest, Error, Manifest, Result,
    EMPTY_JSON,
};

/// Directory under the store root holding one directory per subject.
pub(super) const REFERRERS_DIR: &str = "referrers";

fn digest_name(d: &Digest) -> String {
    format!("{}-{}", d.algorithm().as_str(), d.hex())
}

/// A subject (or referrer) digest from its record name.
pub(super) fn digest_of(name: &str) -> Option<Digest> {
    super::sidecars::image_of(name).filter(|d| digest_name(d) == name)
}

impl Manifest {
    /// An OCI 1.1 artifact manifest: `artifact_type`, the empty config
    /// (`application/vnd.oci.empty.v1+json`), `layers` (the artifact's
    /// blobs), `subject` the manifest it describes, and `annotations`.
    pub fn artifact(
        artifact_type: &str,
        subject: Descriptor,
        layers: Vec<Descriptor>,
        annotations: BTreeMap<String, String>,
    ) -> Manifest {
        let mut subject = subject;
        // The subject descriptor names the manifest; nothing else.
        subject.platform = None;
        subject.annotations.clear();
        subject.urls.clear();
        subject.data = None;
        subject.artifact_type = None;
        let mut m = Manifest::oci(empty_descriptor(), layers);
        m.artifact_type = Some(artifact_type.to_owned());
        m.subject = Some(subject);
        m.annotations = annotations;
        m
    }

    /// The descriptor the referrers API lists for this manifest stored as
    /// `digest` (`size` bytes): its `artifactType` (else the config's media
    /// type) and its annotations.
    pub fn referrer_descriptor(&self, digest: Digest, size: u64) -> Descriptor {
        let mut d = Descriptor::new(
            self.media_type
                .clone()
                .unwrap_or_else(|| media_type::OCI_MANIFEST.to_owned()),
            digest,
            size,
        );
        d.artifact_type = Some(
            self.artifact_type
                .clone()
                .unwrap_or_else(|| self.config.media_type.clone()),
        );
        d.annotations = self.annotations.clone();
        d
    }
}

impl Store {
    fn referrers_dir(&self, subject: &Digest) -> PathBuf {
        self.root.join(REFERRERS_DIR).join(digest_name(subject))
    }

    /// Store the artifact manifest `raw` (bytes kept exactly) as a referrer
    /// of its `subject`. Its config and layers must already be in the store
    /// (the empty config is stored here); the subject need not be (a
    /// referrer may arrive first), but garbage collection keeps a referrer
    /// only while its subject lives. Returns the referrer's descriptor.
    pub fn put_referrer(&self, raw: &[u8]) -> Result<Descriptor> {
        let m: Manifest = serde_json::from_slice(raw)
            .map_err(|e| Error::invalid(format!("artifact manifest: {e}")))?;
        let subject = m
            .subject
            .as_ref()
            .ok_or_else(|| Error::invalid("artifact manifest without a subject"))?;
        if m.config.digest == empty_descriptor().digest {
            self.put_blob(EMPTY_JSON)?;
        }
        for b in std::iter::once(&m.config).chain(&m.layers) {
            if !self.has(&b.digest) {
                return Err(Error::NotFound {
                    what: format!("blob {} of artifact manifest", b.digest),
                });
            }
        }
        let d = self.put_blob(raw)?;
        let desc = m.referrer_descriptor(d, raw.len() as u64);
        self.add_referrer(&subject.digest, &desc)?;
        Ok(desc)
    }

    /// Record the stored manifest `desc` as a referrer of `subject`.
    pub fn add_referrer(&self, subject: &Digest, desc: &Descriptor) -> Result<()> {
        let dir = self.referrers_dir(subject);
        fs::create_dir_all(&dir).ctx("create", &dir)?;
        let _gc = self.gc_shared()?;
        let bytes = serde_json::to_vec(desc).unwrap_or_default();
        write_atomic(&dir.join(digest_name(&desc.digest)), &bytes)
    }

    /// Forget the referrer `referrer` of `subject` (its manifest goes with
    /// the next garbage collection).
    pub fn remove_referrer(&self, subject: &Digest, referrer: &Digest) -> Result<()> {
        let p = self.referrers_dir(subject).join(digest_name(referrer));
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx("remove", p),
        }
    }

    /// The referrers of `subject` whose manifests the store holds, sorted by
    /// digest; with `artifact_type`, only those of that type.
    pub fn referrers(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let dir = self.referrers_dir(subject);
        let mut out = Vec::new();
        for name in read_dir_sorted(&dir)? {
            let Some(d) = digest_of(&name) else { continue };
            if !self.has(&d) {
                continue;
            }
            let p = dir.join(&name);
            let bytes = match fs::read(&p) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx("read", p),
            };
            let Ok(desc) = serde_json::from_slice::<Descriptor>(&bytes) else {
                continue;
            };
            if desc.digest != d {
                continue;
            }
            if artifact_type.is_some_and(|t| desc.artifact_type.as_deref() != Some(t)) {
                continue;
            }
            out.push(desc);
        }
        Ok(out)
    }

    /// Every subject with referrer records (for garbage collection).
    pub(super) fn referrer_subjects(&self) -> Result<Vec<(String, Digest)>> {
        Ok(read_dir_sorted(&self.root.join(REFERRERS_DIR))?
            .into_iter()
            .filter_map(|n| digest_of(&n).map(|d| (n, d)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GcOptions, Reference};

    fn ok<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> T {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    /// A tagged image with no layers; returns its manifest descriptor.
    fn image(store: &Store, tag: &str) -> Descriptor {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c = ok(store.put_json(media_type::OCI_CONFIG, config));
        let m = Manifest::oci(c, vec![]).to_json();
        let m = ok(store.put_json(media_type::OCI_MANIFEST, &m));
        ok(store.tag(&ok(tag.parse::<Reference>()), &m));
        m
    }

    fn sbom(store: &Store, subject: &Descriptor, text: &[u8]) -> Descriptor {
        let blob = ok(store.put_json("application/spdx+json", text));
        let m = Manifest::artifact(
            "application/spdx+json",
            subject.clone(),
            vec![blob],
            BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        );
        ok(store.put_referrer(&m.to_json()))
    }

    #[test]
    fn referrers_are_listed_by_subject_and_filtered_by_type() {
        let dir = ok(tempfile::tempdir());
        let store = ok(Store::open(dir.path()));
        let subject = image(&store, "app:1");
        let r = sbom(&store, &subject, b"{\"a\":1}");
        assert_eq!(r.artifact_type.as_deref(), Some("application/spdx+json"));
        assert_eq!(r.annotations.get("k").map(String::as_str), Some("v"));
        let listed = ok(store.referrers(&subject.digest, None));
        assert_eq!(listed, vec![r.clone()]);
        assert!(ok(store.referrers(&subject.digest, Some("other/type"))).is_empty());
        assert_eq!(
            ok(store.referrers(&subject.digest, Some("application/spdx+json"))).len(),
            1
        );
        // The subject's bytes are untouched.
        assert_eq!(ok(store.resolve(&ok("app:1".parse()))), subject);
        ok(store.remove_referrer(&subject.digest, &r.digest));
        assert!(ok(store.referrers(&subject.digest, None)).is_empty());
    }

    #[test]
    fn a_manifest_without_subject_or_with_missing_blobs_is_refused() {
        let dir = ok(tempfile::tempdir());
        let store = ok(Store::open(dir.path()));
        let plain = Manifest::oci(empty_descriptor(), vec![]).to_json();
        assert!(store.put_referrer(&plain).is_err());
        let subject = image(&store, "app:1");
        let missing = Descriptor::new("x/y", Digest::sha256(b"absent"), 6);
        let m = Manifest::artifact("x/y", subject, vec![missing], BTreeMap::new());
        assert!(store.put_referrer(&m.to_json()).is_err());
    }

    #[test]
    fn gc_keeps_referrers_while_the_subject_lives() {
        let dir = ok(tempfile::tempdir());
        let store = ok(Store::open(dir.path()));
        let subject = image(&store, "app:1");
        let r = sbom(&store, &subject, b"{\"a\":2}");
        // A referrer of the referrer (a signature of the SBOM).
        let sig = sbom(&store, &r, b"{\"sig\":1}");
        let report = ok(store.gc(GcOptions::default()));
        assert!(report.blobs.is_empty(), "{:?}", report.blobs);
        assert!(store.has(&r.digest) && store.has(&sig.digest));
        assert_eq!(ok(store.referrers(&r.digest, None)), vec![sig.clone()]);
        // Untag the image: the image, its referrers and their records go.
        ok(store.untag(&ok("app:1".parse())));
        let report = ok(store.gc(GcOptions::default()));
        assert!(!store.has(&subject.digest));
        assert!(!store.has(&r.digest) && !store.has(&sig.digest));
        assert!(report.referrers >= 2, "{report:?}");
        assert!(ok(store.referrers(&subject.digest, None)).is_empty());
        assert!(!store
            .root()
            .join(REFERRERS_DIR)
            .join(digest_name(&subject.digest))
            .exists());
    }
}
