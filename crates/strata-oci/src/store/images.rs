//! Images: a manifest (or an index entry for a platform) resolved with its
//! config and layers, and finding images the way docker's CLI does.

use super::{Store, TagEntry};
use crate::image::sniff_media_type;
use crate::{
    media_type, Descriptor, Digest, Error, ImageConfig, Index, Manifest, Platform, Reference,
    Result,
};

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

/// An image as `strata images` lists it.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// Its tag entry.
    pub entry: TagEntry,
    /// The resolved image.
    pub image: Image,
}

impl Store {
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
        self.find_image_for(s, None)
    }

    /// [`Store::find_image`], choosing `platform`'s entry when the name is
    /// an index (NotFound when the index has none for it).
    pub fn find_image_for(&self, s: &str, platform: Option<&Platform>) -> Result<Image> {
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
                Ok(desc) => return self.image(&desc, platform),
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
}
