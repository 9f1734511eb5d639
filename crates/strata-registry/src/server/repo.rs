//! The registry's namespace inside the content store: per repository, which
//! blobs and manifests it holds (links, like the reference registry), its
//! tags and the referrers of its manifests. Content itself lives once in the
//! store's blob pool; each repository's links are also a store root, so
//! `strata prune` keeps what the registry serves.
//!
//! ```text
//! <store>/registry/repos/<name>/_blobs/<alg>/<hex>        (empty)
//! <store>/registry/repos/<name>/_manifests/<alg>/<hex>    (media type)
//! <store>/registry/repos/<name>/_tags/<tag>               (descriptor JSON)
//! <store>/registry/repos/<name>/_referrers/<alg>/<subject hex>/<alg>-<hex> (descriptor JSON)
//! <store>/registry/uploads/<id>.json                      (upload session)
//! ```
//! Components of repository names start with a letter or digit, so the
//! `_` directories never clash with nested repositories.

use std::io;
use std::path::{Path, PathBuf};

use strata_oci::{Descriptor, Digest, RootSet, Store};

/// Root namespace under which each repository's links are registered.
pub(crate) const ROOT_NAMESPACE: &str = "registry";

/// Whether `name` is a repository name per the distribution spec:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
/// at most 255 characters.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// Whether `t` is a tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub(crate) fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// The on-disk namespace.
#[derive(Debug, Clone)]
pub(crate) struct Repos {
    store: Store,
    base: PathBuf,
}

fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        Digest::sha256(format!("{path:?}{:?}", std::time::SystemTime::now()).as_bytes()).short()
    ));
    // Nothing half-written stays behind (a full disk fails the write).
    let res = std::fs::write(&tmp, data).and_then(|()| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn digest_rel(d: &Digest) -> PathBuf {
    Path::new(d.algorithm().as_str()).join(d.hex())
}

fn remove_if_exists(p: &Path) -> io::Result<bool> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn list_dir(p: &Path) -> io::Result<Vec<String>> {
    match std::fs::read_dir(p) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| !n.starts_with('.'))
                .collect();
            v.sort();
            Ok(v)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn list_digests(dir: &Path) -> io::Result<Vec<Digest>> {
    let mut out = Vec::new();
    for alg in list_dir(dir)? {
        for hex in list_dir(&dir.join(&alg))? {
            if let Ok(d) = format!("{alg}:{hex}").parse::<Digest>() {
                out.push(d);
            }
        }
    }
    Ok(out)
}

impl Repos {
    pub(crate) fn new(store: Store) -> Repos {
        let base = store.root().join("registry");
        Repos { store, base }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn uploads_dir(&self) -> PathBuf {
        self.base.join("uploads")
    }

    fn repo_dir(&self, name: &str) -> PathBuf {
        self.base.join("repos").join(name)
    }

    /// Whether the repository has anything (a blob, a manifest).
    pub(crate) fn exists(&self, name: &str) -> bool {
        let d = self.repo_dir(name);
        d.join("_blobs").is_dir() || d.join("_manifests").is_dir()
    }

    pub(crate) fn has_blob(&self, name: &str, d: &Digest) -> bool {
        self.repo_dir(name)
            .join("_blobs")
            .join(digest_rel(d))
            .is_file()
            && self.store.has(d)
    }

    pub(crate) fn link_blob(&self, name: &str, d: &Digest) -> io::Result<()> {
        let p = self.repo_dir(name).join("_blobs").join(digest_rel(d));
        if !p.is_file() {
            write_atomic(&p, b"")?;
        }
        Ok(())
    }

    pub(crate) fn unlink_blob(&self, name: &str, d: &Digest) -> io::Result<bool> {
        remove_if_exists(&self.repo_dir(name).join("_blobs").join(digest_rel(d)))
    }

    /// The media type of a manifest linked in the repository.
    pub(crate) fn manifest_type(&self, name: &str, d: &Digest) -> Option<String> {
        let p = self.repo_dir(name).join("_manifests").join(digest_rel(d));
        let mt = std::fs::read_to_string(p).ok()?;
        self.store.has(d).then_some(mt)
    }

    pub(crate) fn link_manifest(&self, name: &str, d: &Digest, mt: &str) -> io::Result<()> {
        write_atomic(
            &self.repo_dir(name).join("_manifests").join(digest_rel(d)),
            mt.as_bytes(),
        )
    }

    pub(crate) fn unlink_manifest(&self, name: &str, d: &Digest) -> io::Result<bool> {
        let removed =
            remove_if_exists(&self.repo_dir(name).join("_manifests").join(digest_rel(d)))?;
        for t in self.tags(name)? {
            if self.tag(name, &t).is_some_and(|td| td.digest == *d) {
                remove_if_exists(&self.repo_dir(name).join("_tags").join(&t))?;
            }
        }
        Ok(removed)
    }

    pub(crate) fn tag(&self, name: &str, tag: &str) -> Option<Descriptor> {
        let b = std::fs::read(self.repo_dir(name).join("_tags").join(tag)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    pub(crate) fn set_tag(&self, name: &str, tag: &str, desc: &Descriptor) -> io::Result<()> {
        let bytes = serde_json::to_vec(desc).map_err(io::Error::other)?;
        write_atomic(&self.repo_dir(name).join("_tags").join(tag), &bytes)
    }

    pub(crate) fn remove_tag(&self, name: &str, tag: &str) -> io::Result<bool> {
        remove_if_exists(&self.repo_dir(name).join("_tags").join(tag))
    }

    pub(crate) fn tags(&self, name: &str) -> io::Result<Vec<String>> {
        list_dir(&self.repo_dir(name).join("_tags"))
    }

    pub(crate) fn add_referrer(
        &self,
        name: &str,
        subject: &Digest,
        desc: &Descriptor,
    ) -> io::Result<()> {
        let p = self
            .repo_dir(name)
            .join("_referrers")
            .join(digest_rel(subject))
            .join(format!(
                "{}-{}",
                desc.digest.algorithm().as_str(),
                desc.digest.hex()
            ));
        write_atomic(&p, &serde_json::to_vec(desc).map_err(io::Error::other)?)
    }

    pub(crate) fn remove_referrer(
        &self,
        name: &str,
        subject: &Digest,
        d: &Digest,
    ) -> io::Result<()> {
        let p = self
            .repo_dir(name)
            .join("_referrers")
            .join(digest_rel(subject))
            .join(format!("{}-{}", d.algorithm().as_str(), d.hex()));
        remove_if_exists(&p).map(|_| ())
    }

    pub(crate) fn referrers(&self, name: &str, subject: &Digest) -> io::Result<Vec<Descriptor>> {
        let dir = self
            .repo_dir(name)
            .join("_referrers")
            .join(digest_rel(subject));
        let mut out = Vec::new();
        for f in list_dir(&dir)? {
            if let Ok(b) = std::fs::read(dir.join(&f)) {
                if let Ok(d) = serde_json::from_slice::<Descriptor>(&b) {
                    // Only referrers still linked.
                    if self.manifest_type(name, &d.digest).is_some() {
                        out.push(d);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every repository with content, sorted.
    pub(crate) fn catalog(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let root = self.base.join("repos");
        let mut stack = vec![String::new()];
        while let Some(prefix) = stack.pop() {
            let dir = if prefix.is_empty() {
                root.clone()
            } else {
                root.join(&prefix)
            };
            for child in list_dir(&dir)? {
                if child.starts_with('_') {
                    continue;
                }
                let name = if prefix.is_empty() {
                    child.clone()
                } else {
                    format!("{prefix}/{child}")
                };
                if !dir.join(&child).is_dir() {
                    continue;
                }
                if self.exists(&name) {
                    out.push(name.clone());
                }
                stack.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Make the store keep everything the repository links (a store root).
    pub(crate) fn sync_root(&self, name: &str) -> strata_oci::Result<()> {
        let dir = self.repo_dir(name);
        let mut set = RootSet::default();
        let io_err = |e: io::Error| strata_oci::Error::Io {
            op: "list",
            path: dir.clone(),
            source: e,
        };
        set.digests
            .extend(list_digests(&dir.join("_manifests")).map_err(io_err)?);
        set.digests
            .extend(list_digests(&dir.join("_blobs")).map_err(io_err)?);
        let key = Digest::sha256(name.as_bytes());
        if set.digests.is_empty() {
            match self.store.remove_root(ROOT_NAMESPACE, key.hex()) {
                Ok(()) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(e),
            }
        } else {
            self.store.set_root(ROOT_NAMESPACE, key.hex(), &set)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags() {
        for (n, ok) in [
            ("a", true),
            ("library/busybox", true),
            ("a.b/c__d/e--f/g_h", true),
            ("a/blobs/uploads", true),
            ("A", false),
            ("a//b", false),
            ("/a", false),
            ("a/", false),
            ("a..b", false),
            ("a___b", false),
            ("-a", false),
            ("_tags", false),
            ("a/../b", false),
        ] {
            assert_eq!(valid_name(n), ok, "{n}");
        }
        assert!(!valid_name(&"a".repeat(256)));
        for (t, ok) in [
            ("latest", true),
            ("_x", true),
            ("V1.0-rc", true),
            (".x", false),
            ("-x", false),
            ("", false),
        ] {
            assert_eq!(valid_tag(t), ok, "{t}");
        }
        assert!(!valid_tag(&"a".repeat(129)));
    }
}
