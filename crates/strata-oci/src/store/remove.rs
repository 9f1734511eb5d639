//! Removing images (`strata rmi`), as docker decides what a name removes:
//! a tag is untagged; an ID (or digest) removes the image with every name
//! it has, unless it has several and removal is not forced. The content
//! goes with the next [`Store::gc`].

use super::Store;
use crate::{Digest, Error, Reference, Result};

/// One thing [`Store::remove_image`] did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A name was removed.
    Untagged(Reference),
    /// The image (by ID) was removed: it has no name left.
    Deleted(Digest),
}

impl Store {
    /// Remove what `rmi NAME` removes. A name that is a tag in the store
    /// (no digest) removes that tag only. Anything else ([`find_image`]
    /// syntax: an ID, an ID prefix, a digest reference) removes the image:
    /// every tag pointing at it and its untagged entries. An image with
    /// more than one name is only removed with `force`
    /// ([`Error::Referenced`] otherwise, before anything changed).
    ///
    /// [`find_image`]: Store::find_image
    pub fn remove_image(&self, name: &str, force: bool) -> Result<Vec<Removed>> {
        if let Ok(r) = name.parse::<Reference>() {
            if r.digest().is_none() && self.resolve(&r).is_ok() {
                self.untag(&r)?;
                return Ok(vec![Removed::Untagged(r)]);
            }
        }
        let img = self.find_image(name)?;
        let tags = self.tags_of(img.id())?;
        if tags.len() > 1 && !force {
            return Err(Error::Referenced {
                image: img.id().short().to_owned(),
                names: tags.iter().map(Reference::familiar).collect(),
            });
        }
        let mut done = Vec::new();
        for t in tags {
            self.untag(&t)?;
            done.push(Removed::Untagged(t));
        }
        for e in self.list_tags()? {
            if e.reference.is_none()
                && self
                    .image(&e.descriptor, None)
                    .is_ok_and(|i| i.id() == img.id())
            {
                self.remove_untagged(&e.descriptor.digest)?;
            }
        }
        done.push(Removed::Deleted(img.id().clone()));
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{media_type, Descriptor, ImageConfig, Manifest};

    fn put_image(s: &Store, layer: &[u8]) -> Descriptor {
        let ld = s.put_blob(layer).unwrap();
        let mut cfg = ImageConfig::default();
        cfg.rootfs.diff_ids.push(ld.clone());
        let cd = s.put_json(media_type::OCI_CONFIG, &cfg.to_json()).unwrap();
        let m = Manifest::oci(
            cd,
            vec![Descriptor::new(
                media_type::OCI_LAYER_TAR,
                ld,
                layer.len() as u64,
            )],
        );
        s.put_json(media_type::OCI_MANIFEST, &m.to_json()).unwrap()
    }

    fn r(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn a_name_removes_that_tag_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = put_image(&s, b"one");
        s.tag(&r("a:1"), &d).unwrap();
        s.tag(&r("b:1"), &d).unwrap();
        assert_eq!(
            s.remove_image("a:1", false).unwrap(),
            [Removed::Untagged(r("a:1"))]
        );
        assert!(s.resolve(&r("a:1")).is_err());
        assert!(s.resolve(&r("b:1")).is_ok());
    }

    #[test]
    fn an_id_with_several_names_needs_force() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = put_image(&s, b"two");
        s.tag(&r("a:1"), &d).unwrap();
        s.tag(&r("b:1"), &d).unwrap();
        let id = s.find_image("a:1").unwrap().id().clone();
        let err = s.remove_image(&id.to_string(), false).unwrap_err();
        assert!(matches!(err, Error::Referenced { .. }), "{err}");
        assert!(
            err.to_string().contains("referenced by 2 names (a:1, b:1)"),
            "{err}"
        );
        assert_eq!(s.list_tags().unwrap().len(), 2, "nothing removed");

        let done = s.remove_image(id.short(), true).unwrap();
        assert_eq!(
            done,
            [
                Removed::Untagged(r("a:1")),
                Removed::Untagged(r("b:1")),
                Removed::Deleted(id.clone())
            ]
        );
        assert!(s.list_tags().unwrap().is_empty());
        assert!(s
            .remove_image(&id.to_string(), false)
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn an_untagged_image_is_removed_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = put_image(&s, b"three");
        s.keep_untagged(&d).unwrap();
        let id = s.image(&d, None).unwrap().id().clone();
        assert_eq!(
            s.remove_image(&id.to_string(), false).unwrap(),
            [Removed::Deleted(id)]
        );
        assert!(s.list_tags().unwrap().is_empty());
    }
}
