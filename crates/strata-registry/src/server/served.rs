//! What a repository name serves: the repository's own links (`repo`) and
//! the store's own tags, so that `strata serve` serves the store it is given.
//! An image built, pulled or loaded into the store is pullable by its name,
//! and an image pushed to the server shows up in `strata images`.
//!
//! **Names.** A store tag is served under its repository path without the
//! registry host, and under its familiar name: `app:dev`
//! (`docker.io/library/app:dev`) as `app` and `library/app`,
//! `example.com/team/app:1` as `team/app` and `example.com/team/app`. When
//! several store tags serve one `name:tag`, the one a push of `name:tag`
//! creates wins (`app:dev` for `app`), then `docker.io`, then the store's
//! order (sorted by full reference). The catalog lists each store tag once,
//! under the name without the registry host (`app`, `team/app`).
//!
//! **Reads** (manifests by tag or digest, blobs, tag lists, the catalog)
//! see both: a tag is looked up in the store first, then among the
//! repository's own tags; a manifest or blob is served when the repository
//! links it or when it belongs to an image a store tag serves under the
//! name (the tagged manifest or index, the platform manifests of an index
//! that the store holds, their configs and layers, and the store's
//! referrers of those manifests, which the referrers API lists).
//!
//! **Writes.** A tag lives in one place. A manifest put by tag that is an
//! image (`strata images` can list it) tags the store with the reference a
//! push of `name:tag` names (`app:dev` for `app`, `docker.io/team/app:1`
//! for `team/app`); anything else (signatures, charts, other artifacts) is
//! a tag of the repository only, and replaces store tags served as that
//! `name:tag`. Deleting a tag removes it from both; deleting a manifest by
//! digest removes the store tags served under the name that point at it.
//! Content that only the store's tags provide is linked into the
//! repository when a pushed manifest or index references it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;

use strata_oci::{media_type, Descriptor, Digest, Index, Manifest, Reference, DEFAULT_DOMAIN};

use super::repo::{valid_name, Repos};

/// Whether the store reference `r` is served as repository `name`.
pub(crate) fn serves(r: &Reference, name: &str) -> bool {
    r.path() == name || r.familiar_name() == name
}

/// The name the catalog lists for a store reference: its path without the
/// registry host, and without `library/` for docker.io's official images.
fn catalog_name(r: &Reference) -> String {
    if r.domain() == DEFAULT_DOMAIN {
        r.familiar_name()
    } else {
        r.path().to_owned()
    }
}

/// The store reference a push of `name:tag` creates: `name:tag` read as
/// docker reads it (`app:dev` is `docker.io/library/app:dev`), when that is
/// served as `name` again (a name too long for a reference is not).
pub(crate) fn push_reference(name: &str, tag: &str) -> Option<Reference> {
    Reference::new(name, Some(tag), None)
        .ok()
        .filter(|r| serves(r, name))
}

fn io_error(op: &'static str, repos: &Repos, e: io::Error) -> strata_oci::Error {
    strata_oci::Error::Io {
        op,
        path: repos.store().root().join("registry"),
        source: e,
    }
}

/// Manifests and blobs of the store's images served under one name.
#[derive(Debug, Default)]
struct Content {
    /// Manifests and indexes, with their media types.
    manifests: HashMap<Digest, String>,
    /// Configs and layers.
    blobs: HashSet<Digest>,
}

/// One repository name's view of the registry and the store, for the
/// length of a request (the store's tags are read once, when first needed).
pub(crate) struct Served<'a> {
    repos: &'a Repos,
    name: &'a str,
    tags: Option<Vec<(Reference, Descriptor)>>,
    content: Option<Content>,
}

impl<'a> Served<'a> {
    pub(crate) fn new(repos: &'a Repos, name: &'a str) -> Served<'a> {
        Served {
            repos,
            name,
            tags: None,
            content: None,
        }
    }

    /// The store's tags served as this name, best first (see the module
    /// docs for the order).
    fn store_tags(&mut self) -> strata_oci::Result<&[(Reference, Descriptor)]> {
        if self.tags.is_none() {
            let mut tags: Vec<(Reference, Descriptor)> = self
                .repos
                .store()
                .list_tags()?
                .into_iter()
                .filter_map(|e| Some((e.reference?, e.descriptor)))
                .filter(|(r, _)| serves(r, self.name))
                .collect();
            let name = self.name;
            let rank = |r: &Reference| {
                if r.tag()
                    .and_then(|t| push_reference(name, t))
                    .is_some_and(|p| &p == r)
                {
                    0
                } else if r.domain() == DEFAULT_DOMAIN {
                    1
                } else {
                    2
                }
            };
            // Stable: the store's order within a rank.
            tags.sort_by_key(|(r, _)| rank(r));
            self.tags = Some(tags);
        }
        Ok(self.tags.as_deref().unwrap_or_default())
    }

    /// The store tags served as `name:tag`, best first.
    fn store_candidates(&mut self, tag: &str) -> strata_oci::Result<Vec<(Reference, Descriptor)>> {
        Ok(self
            .store_tags()?
            .iter()
            .filter(|(r, _)| r.tag() == Some(tag))
            .cloned()
            .collect())
    }

    fn content(&mut self) -> strata_oci::Result<&Content> {
        if self.content.is_none() {
            let tops: Vec<Descriptor> = self.store_tags()?.iter().map(|(_, d)| d.clone()).collect();
            let mut c = Content::default();
            for d in &tops {
                self.add_document(&mut c, d, 0)?;
            }
            self.content = Some(c);
        }
        Ok(self.content.get_or_insert_with(Content::default))
    }

    /// Add a manifest or index the store holds, and what it references
    /// that the store holds too.
    fn add_document(
        &self,
        c: &mut Content,
        desc: &Descriptor,
        depth: usize,
    ) -> strata_oci::Result<()> {
        let store = self.repos.store();
        if depth > 5 || c.manifests.contains_key(&desc.digest) || !store.has(&desc.digest) {
            return Ok(());
        }
        let raw = match store.read_blob(&desc.digest) {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let mt = if desc.media_type.is_empty() {
            strata_oci::sniff_media_type(&raw).unwrap_or_default()
        } else {
            desc.media_type.clone()
        };
        c.manifests.insert(desc.digest.clone(), mt.clone());
        if media_type::is_index(&mt) {
            if let Ok(index) = serde_json::from_slice::<Index>(&raw) {
                for m in &index.manifests {
                    self.add_document(c, m, depth + 1)?;
                }
            }
        } else if let Ok(m) = serde_json::from_slice::<Manifest>(&raw) {
            for b in std::iter::once(&m.config).chain(&m.layers) {
                if store.has(&b.digest) {
                    c.blobs.insert(b.digest.clone());
                }
            }
        }
        // Its referrers (SBOMs, provenance, signatures) are served with it.
        for r in store.referrers(&desc.digest, None)? {
            self.add_document(c, &r, depth + 1)?;
        }
        Ok(())
    }

    /// Whether the name has anything: the repository's links or a store tag.
    pub(crate) fn exists(&mut self) -> strata_oci::Result<bool> {
        Ok(self.repos.exists(self.name) || !self.store_tags()?.is_empty())
    }

    /// What `tag` points at: the best store tag served as `name:tag`, else
    /// the repository's own tag.
    pub(crate) fn tag(&mut self, tag: &str) -> strata_oci::Result<Option<Descriptor>> {
        if let Some((_, d)) = self.store_candidates(tag)?.into_iter().next() {
            return Ok(Some(d));
        }
        Ok(self.repos.tag(self.name, tag))
    }

    /// Every tag, sorted.
    pub(crate) fn tags(&mut self) -> strata_oci::Result<Vec<String>> {
        let mut all: BTreeSet<String> = self
            .repos
            .tags(self.name)
            .map_err(|e| io_error("list", self.repos, e))?
            .into_iter()
            .collect();
        all.extend(
            self.store_tags()?
                .iter()
                .filter_map(|(r, _)| r.tag().map(str::to_owned)),
        );
        Ok(all.into_iter().collect())
    }

    /// The media type of a manifest or index served under the name.
    pub(crate) fn manifest(&mut self, d: &Digest) -> strata_oci::Result<Option<String>> {
        if let Some(mt) = self.repos.manifest_type(self.name, d) {
            return Ok(Some(mt));
        }
        Ok(self.content()?.manifests.get(d).cloned())
    }

    /// Whether a blob (config or layer) is served under the name.
    pub(crate) fn blob(&mut self, d: &Digest) -> strata_oci::Result<bool> {
        Ok(self.repos.has_blob(self.name, d) || self.store_blob(d)?)
    }

    /// Whether a blob belongs to an image a store tag serves under the name.
    pub(crate) fn store_blob(&mut self, d: &Digest) -> strata_oci::Result<bool> {
        Ok(self.content()?.blobs.contains(d))
    }

    /// Whether a manifest belongs to an image a store tag serves under the
    /// name (the tagged document or a platform manifest of it).
    pub(crate) fn store_manifest(&mut self, d: &Digest) -> strata_oci::Result<bool> {
        Ok(self.content()?.manifests.contains_key(d))
    }

    fn changed(&mut self) {
        self.tags = None;
        self.content = None;
    }

    /// Point `name:tag` at a manifest or index just stored and linked (see
    /// the module docs: an image tags the store, anything else the
    /// repository).
    pub(crate) fn set_tag(&mut self, tag: &str, desc: &Descriptor) -> strata_oci::Result<()> {
        let store = self.repos.store();
        let is_image = store.image(desc, None).is_ok();
        match push_reference(self.name, tag).filter(|_| is_image) {
            Some(r) => {
                store.tag(&r, desc)?;
                self.repos
                    .remove_tag(self.name, tag)
                    .map_err(|e| io_error("remove", self.repos, e))?;
            }
            None => {
                for (r, _) in self.store_candidates(tag)? {
                    untag(store, &r)?;
                }
                self.repos
                    .set_tag(self.name, tag, desc)
                    .map_err(|e| io_error("write", self.repos, e))?;
            }
        }
        self.changed();
        Ok(())
    }

    /// Remove `name:tag` from the repository and the store; whether it was
    /// anywhere.
    pub(crate) fn remove_tag(&mut self, tag: &str) -> strata_oci::Result<bool> {
        let mut removed = self
            .repos
            .remove_tag(self.name, tag)
            .map_err(|e| io_error("remove", self.repos, e))?;
        for (r, _) in self.store_candidates(tag)? {
            removed |= untag(self.repos.store(), &r)?;
        }
        self.changed();
        Ok(removed)
    }

    /// Remove the store tags served under the name that point at `d`; how
    /// many there were.
    pub(crate) fn remove_store_tags_of(&mut self, d: &Digest) -> strata_oci::Result<usize> {
        let hits: Vec<Reference> = self
            .store_tags()?
            .iter()
            .filter(|(_, desc)| &desc.digest == d)
            .map(|(r, _)| r.clone())
            .collect();
        let mut n = 0;
        for r in &hits {
            if untag(self.repos.store(), r)? {
                n += 1;
            }
        }
        self.changed();
        Ok(n)
    }
}

/// Remove a store tag; false when it was already gone.
fn untag(store: &strata_oci::Store, r: &Reference) -> strata_oci::Result<bool> {
    match store.untag(r) {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every repository name with content: the repositories' own and the
/// store's tags (each under its name without the registry host), sorted.
pub(crate) fn catalog(repos: &Repos) -> strata_oci::Result<Vec<String>> {
    let mut all: BTreeSet<String> = repos
        .catalog()
        .map_err(|e| io_error("list", repos, e))?
        .into_iter()
        .collect();
    for e in repos.store().list_tags()? {
        if let Some(r) = e.reference {
            let n = catalog_name(&r);
            if valid_name(&n) {
                all.insert(n);
            }
        }
    }
    Ok(all.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_served_and_pushed() {
        for (reference, name, served) in [
            ("app:dev", "app", true),
            ("app:dev", "library/app", true),
            ("app:dev", "other", false),
            ("team/app:1", "team/app", true),
            ("example.com/team/app:1", "team/app", true),
            ("example.com/team/app:1", "example.com/team/app", true),
            ("example.com/team/app:1", "app", false),
            ("localhost:5000/app:1", "app", true),
            ("example.com/library/app:1", "app", false),
        ] {
            let r: Reference = reference.parse().unwrap();
            assert_eq!(serves(&r, name), served, "{reference} as {name}");
        }
        for (name, reference) in [
            ("app", "docker.io/library/app:t"),
            ("library/app", "docker.io/library/app:t"),
            ("team/app", "docker.io/team/app:t"),
            ("example.com/app", "example.com/app:t"),
            ("localhost/app", "localhost/app:t"),
        ] {
            assert_eq!(
                push_reference(name, "t").map(|r| r.to_string()).as_deref(),
                Some(reference),
                "{name}"
            );
        }
        for (reference, name) in [
            ("app:1", "app"),
            ("team/app:1", "team/app"),
            ("example.com/team/app:1", "team/app"),
            ("localhost:5000/app:1", "app"),
        ] {
            assert_eq!(catalog_name(&reference.parse().unwrap()), name);
        }
    }
}
