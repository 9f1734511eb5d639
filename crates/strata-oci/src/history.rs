//! An image's history entries paired with the layers they made, and the
//! rows `strata history` prints from them (docker's `image history`).
//!
//! The config's `history` lists every step, `rootfs.diff_ids` (and the
//! manifest) only the steps that made a layer: the n-th entry not marked
//! `empty_layer` made the n-th layer, bottom first, as docker pairs them.
//! Everything that attributes layers to steps (history, analyze, SBOMs)
//! goes through [`Image::history_layers`].

use crate::{Digest, History, Image, Layer};

/// One row of `strata history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The image ID on the newest row (docker shows `<missing>` on the
    /// others: their intermediate images are not in the store).
    pub id: Option<Digest>,
    /// When the step ran (RFC 3339), if recorded.
    pub created: Option<String>,
    /// The instruction that made it (empty when not recorded).
    pub created_by: String,
    /// The size of the layer it made (0 for an empty entry).
    pub size: u64,
    /// Its comment (empty when none).
    pub comment: String,
    /// True when the step made no layer.
    pub empty: bool,
}

impl Image {
    /// Each history entry, oldest first, with the layer it made: `None`
    /// for an `empty_layer` entry, and for a non-empty entry past the last
    /// layer (a config that records more steps than it has layers). Layers
    /// past the last non-empty entry are not visited.
    pub fn history_layers(&self) -> impl Iterator<Item = (&History, Option<&Layer>)> + '_ {
        let mut layers = self.layers.iter();
        self.config.history.iter().map(move |h| {
            let layer = if h.empty_layer { None } else { layers.next() };
            (h, layer)
        })
    }

    /// The rows of `strata history`, newest first: one per history entry
    /// with its layer's `size` (the caller's measure: the blob size, or
    /// docker's uncompressed content size); an image without history gets
    /// one row per layer. The newest row carries the image ID.
    pub fn history_rows(&self, size: impl Fn(&Layer) -> u64) -> Vec<HistoryRow> {
        let mut rows: Vec<HistoryRow> = if self.config.history.is_empty() {
            self.layers
                .iter()
                .rev()
                .map(|l| HistoryRow {
                    id: None,
                    created: None,
                    created_by: String::new(),
                    size: size(l),
                    comment: String::new(),
                    empty: false,
                })
                .collect()
        } else {
            let mut rows: Vec<HistoryRow> = self
                .history_layers()
                .map(|(h, l)| HistoryRow {
                    id: None,
                    created: h.created.clone(),
                    created_by: h.created_by.clone().unwrap_or_default(),
                    size: l.map_or(0, &size),
                    comment: h.comment.clone().unwrap_or_default(),
                    empty: h.empty_layer,
                })
                .collect();
            rows.reverse();
            rows
        };
        if let Some(first) = rows.first_mut() {
            first.id = Some(self.id().clone());
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use crate::{media_type, Descriptor, Digest, History, Image, ImageConfig, Layer, Manifest};

    fn layer(size: u64) -> Layer {
        let d = Digest::sha256(size.to_string().as_bytes());
        Layer {
            descriptor: Descriptor::new(media_type::OCI_LAYER_GZIP, d.clone(), size),
            diff_id: d,
        }
    }

    fn entry(by: &str, empty: bool) -> History {
        History {
            created_by: Some(by.to_owned()),
            empty_layer: empty,
            ..Default::default()
        }
    }

    fn image(history: Vec<History>, sizes: &[u64]) -> Image {
        let config = ImageConfig {
            history,
            ..Default::default()
        };
        let config_raw = config.to_json();
        let cd = Descriptor::new(
            media_type::OCI_CONFIG,
            Digest::sha256(&config_raw),
            config_raw.len() as u64,
        );
        let layers: Vec<Layer> = sizes.iter().map(|&s| layer(s)).collect();
        let manifest = Manifest::oci(cd, layers.iter().map(|l| l.descriptor.clone()).collect());
        let manifest_raw = manifest.to_json();
        Image {
            index: None,
            descriptor: Descriptor::new(
                media_type::OCI_MANIFEST,
                Digest::sha256(&manifest_raw),
                manifest_raw.len() as u64,
            ),
            manifest,
            manifest_raw,
            config,
            config_raw,
            layers,
        }
    }

    #[test]
    fn non_empty_entries_take_the_layers_in_order() {
        let img = image(
            vec![
                entry("ADD rootfs", false),
                entry("ENV A=1", true),
                entry("RUN make", false),
                entry("CMD sh", true),
            ],
            &[10, 20],
        );
        let pairs: Vec<(&str, Option<u64>)> = img
            .history_layers()
            .map(|(h, l)| {
                (
                    h.created_by.as_deref().unwrap(),
                    l.map(|l| l.descriptor.size),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("ADD rootfs", Some(10)),
                ("ENV A=1", None),
                ("RUN make", Some(20)),
                ("CMD sh", None)
            ]
        );
    }

    #[test]
    fn more_steps_than_layers_leaves_the_last_without_one() {
        let img = image(vec![entry("a", false), entry("b", false)], &[7]);
        let sizes: Vec<Option<u64>> = img
            .history_layers()
            .map(|(_, l)| l.map(|l| l.descriptor.size))
            .collect();
        assert_eq!(sizes, [Some(7), None]);
    }

    #[test]
    fn rows_are_newest_first_with_the_id_on_top() {
        let img = image(
            vec![entry("ADD rootfs", false), entry("CMD sh", true)],
            &[10],
        );
        let rows = img.history_rows(|l| l.descriptor.size);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id.as_ref(), Some(img.id()));
        assert_eq!((rows[0].created_by.as_str(), rows[0].size), ("CMD sh", 0));
        assert!(rows[0].empty);
        assert_eq!(rows[1].id, None);
        assert_eq!(
            (rows[1].created_by.as_str(), rows[1].size),
            ("ADD rootfs", 10)
        );
    }

    #[test]
    fn an_image_without_history_gets_a_row_per_layer() {
        let img = image(Vec::new(), &[1, 2, 3]);
        let sizes: Vec<u64> = img
            .history_rows(|l| l.descriptor.size)
            .iter()
            .map(|r| r.size)
            .collect();
        assert_eq!(sizes, [3, 2, 1]);
        assert!(img.history_rows(|_| 0)[0].id.is_some());
    }
}
