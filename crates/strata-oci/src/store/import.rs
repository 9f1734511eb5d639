//! Images made of one imported layer (`strata import`, docker's `import`):
//! the config and manifest around a root filesystem tarball's layer.

use super::Store;
use crate::{
    format_rfc3339, media_type, ContainerConfig, Descriptor, Digest, History, ImageConfig,
    Manifest, Platform, Reference, Result,
};

/// What an imported image's config holds besides its layer.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The platform recorded in the config.
    pub platform: Platform,
    /// How to run it (`--change` instructions applied by the caller).
    pub config: ContainerConfig,
    /// Its creation time, Unix seconds (SOURCE_DATE_EPOCH, or 0).
    pub epoch: i64,
    /// The history comment (`--message`); a default says where it came from.
    pub comment: Option<String>,
}

impl Store {
    /// Store an image made of the single layer `layer` (a blob already in
    /// the store; `diff_id` is its uncompressed digest), tag it `reference`
    /// and return its config's descriptor (the image ID is its digest).
    /// Blobs are stored before the manifest and the manifest before the
    /// tag, so the tag never points at missing content.
    pub fn import_image(
        &self,
        layer: Descriptor,
        diff_id: Digest,
        reference: &Reference,
        opts: ImportOptions,
    ) -> Result<Descriptor> {
        let created = format_rfc3339(opts.epoch);
        let mut config = ImageConfig {
            created: Some(created.clone()),
            architecture: opts.platform.architecture,
            os: opts.platform.os,
            variant: opts.platform.variant,
            config: Some(opts.config),
            ..Default::default()
        };
        config.rootfs.diff_ids.push(diff_id);
        config.history.push(History {
            created: Some(created),
            created_by: Some("strata import".into()),
            comment: Some(
                opts.comment
                    .unwrap_or_else(|| "Imported from a root filesystem tarball".into()),
            ),
            ..Default::default()
        });
        let config_desc = self.put_json(media_type::OCI_CONFIG, &config.to_json())?;
        let manifest = Manifest::oci(config_desc.clone(), vec![layer]);
        let desc = self.put_json(media_type::OCI_MANIFEST, &manifest.to_json())?;
        self.tag(reference, &desc)?;
        Ok(config_desc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_imported_image_holds_its_layer_config_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = b"not really a tar, the store does not care";
        let d = store.put_blob(blob).unwrap();
        let layer = Descriptor::new(media_type::OCI_LAYER_TAR, d.clone(), blob.len() as u64);
        let r: Reference = "example.com/rootfs:1".parse().unwrap();
        let opts = ImportOptions {
            platform: "linux/arm/v7".parse().unwrap(),
            config: ContainerConfig {
                cmd: Some(vec!["/bin/sh".into()]),
                ..Default::default()
            },
            epoch: 86_400,
            comment: None,
        };
        let id = store
            .import_image(layer.clone(), d.clone(), &r, opts)
            .unwrap();
        let img = store.find_image("example.com/rootfs:1").unwrap();
        assert_eq!(img.id(), &id.digest);
        assert_eq!(img.layers.len(), 1);
        assert_eq!(img.layers[0].descriptor, layer);
        assert_eq!(img.layers[0].diff_id, d);
        let c = &img.config;
        assert_eq!((c.os.as_str(), c.architecture.as_str()), ("linux", "arm"));
        assert_eq!(c.variant.as_deref(), Some("v7"));
        assert_eq!(c.created.as_deref(), Some("1970-01-02T00:00:00Z"));
        assert_eq!(
            c.config.as_ref().and_then(|c| c.cmd.clone()),
            Some(vec!["/bin/sh".to_owned()])
        );
        assert_eq!(c.history.len(), 1);
        assert_eq!(c.history[0].created_by.as_deref(), Some("strata import"));
        assert_eq!(
            c.history[0].comment.as_deref(),
            Some("Imported from a root filesystem tarball")
        );
    }
}
