//! `strata diff`: what two images share, and what a push of the second
//! sends to a registry that holds the first.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{LayerMeta, Tree};

/// One layer of the second image, compared with the first.
#[derive(Debug, Clone, Serialize)]
pub struct DiffLayer {
    /// Position in the second image.
    pub index: usize,
    /// Blob digest.
    pub digest: String,
    /// Uncompressed digest.
    pub diff_id: String,
    /// Blob size.
    pub compressed_size: u64,
    /// `shared` (same blob in the first image), `same-content` (same
    /// diffID, different compression: a push still sends it) or `new`.
    pub status: String,
    /// History of the layer.
    pub created_by: Option<String>,
}

/// A path that differs between the two final filesystems.
#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// The path (no leading `/`).
    pub path: String,
    /// Size in the first image.
    pub from_size: Option<u64>,
    /// Size in the second image.
    pub to_size: Option<u64>,
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// Schema version (docs/analyze.md).
    pub schema: u32,
    /// The image the registry holds.
    pub from: String,
    /// The image compared with it.
    pub to: String,
    /// Layers of `from` not in `to` (by blob digest).
    pub only_in_from: Vec<String>,
    /// Layers of `to`, in order.
    pub layers: Vec<DiffLayer>,
    /// Number of `to` layers the registry already has.
    pub shared_layers: usize,
    /// Their bytes.
    pub shared_bytes: u64,
    /// Number of `to` layers a push sends.
    pub new_layers: usize,
    /// Bytes of layer blobs a push sends.
    pub new_layer_bytes: u64,
    /// Whether the config differs (then it is sent).
    pub config_changed: bool,
    /// Bytes of the manifests (and index) a push of `to` puts: a registry
    /// receives them whatever it holds.
    pub manifest_bytes: u64,
    /// Everything a push of `to` sends to a registry holding `from`: the
    /// blobs of `to` that `from` lacks (new layers, the config when it
    /// differs, and for an image pushed with its whole index those of the
    /// other platforms) and the manifests. `strata push` reports the same
    /// number.
    pub push_bytes: u64,
    /// Changed files (with `--files`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileChange>>,
}

/// What [`diff_images`] needs of one image.
#[derive(Debug, Clone)]
pub struct DiffSide<'a> {
    /// As the user named it.
    pub name: &'a str,
    /// Layers, bottom first.
    pub layers: &'a [LayerMeta],
    /// Config digest.
    pub config_digest: &'a str,
    /// Every blob a push of the image sends (digest, size), each once: the
    /// config and layers of each manifest it puts.
    pub blobs: &'a [(String, u64)],
    /// Bytes of the manifests (and index) a push of the image puts.
    pub manifest_bytes: u64,
}

/// Compare two images; `trees` (the final filesystems) adds file changes.
pub fn diff_images(from: &DiffSide, to: &DiffSide, trees: Option<(&Tree, &Tree)>) -> DiffReport {
    let from_blobs: BTreeSet<&str> = from.layers.iter().map(|l| l.digest.as_str()).collect();
    let from_diffs: BTreeSet<&str> = from.layers.iter().map(|l| l.diff_id.as_str()).collect();
    let to_blobs: BTreeSet<&str> = to.layers.iter().map(|l| l.digest.as_str()).collect();
    let mut layers = Vec::new();
    let (mut shared_layers, mut shared_bytes, mut new_layers, mut new_layer_bytes) = (0, 0, 0, 0);
    let mut sent: BTreeSet<&str> = BTreeSet::new();
    for (i, l) in to.layers.iter().enumerate() {
        let status = if from_blobs.contains(l.digest.as_str()) {
            shared_layers += 1;
            shared_bytes += l.compressed_size;
            "shared"
        } else {
            new_layers += 1;
            // The same blob twice in one image is pushed once.
            if sent.insert(l.digest.as_str()) {
                new_layer_bytes += l.compressed_size;
            }
            if from_diffs.contains(l.diff_id.as_str()) {
                "same-content"
            } else {
                "new"
            }
        };
        layers.push(DiffLayer {
            index: i,
            digest: l.digest.clone(),
            diff_id: l.diff_id.clone(),
            compressed_size: l.compressed_size,
            status: status.to_owned(),
            created_by: l.created_by.clone(),
        });
    }
    let config_changed = from.config_digest != to.config_digest;
    // A registry holding `from` holds every blob a push of `from` sent.
    let held: BTreeSet<&str> = from.blobs.iter().map(|(d, _)| d.as_str()).collect();
    let mut pushed: BTreeSet<&str> = BTreeSet::new();
    let blob_bytes: u64 = to
        .blobs
        .iter()
        .filter(|(d, _)| !held.contains(d.as_str()) && pushed.insert(d.as_str()))
        .map(|(_, size)| size)
        .sum();
    let push_bytes = blob_bytes + to.manifest_bytes;
    let files = trees.map(|(a, b)| file_changes(a, b));
    DiffReport {
        schema: 1,
        from: from.name.to_owned(),
        to: to.name.to_owned(),
        only_in_from: from
            .layers
            .iter()
            .filter(|l| !to_blobs.contains(l.digest.as_str()))
            .map(|l| l.digest.clone())
            .collect(),
        layers,
        shared_layers,
        shared_bytes,
        new_layers,
        new_layer_bytes,
        config_changed,
        manifest_bytes: to.manifest_bytes,
        push_bytes,
        files,
    }
}

/// Paths whose kind, size or content differ between two final filesystems
/// (directories only when added or removed).
pub fn file_changes(a: &Tree, b: &Tree) -> Vec<FileChange> {
    let mut out = Vec::new();
    let an = a.nodes();
    let bn = b.nodes();
    let keys: BTreeSet<&String> = an.keys().chain(bn.keys()).collect();
    for k in keys {
        match (an.get(k), bn.get(k)) {
            (Some(x), None) => out.push(FileChange {
                change: "removed".into(),
                path: k.clone(),
                from_size: Some(x.size),
                to_size: None,
            }),
            (None, Some(y)) => out.push(FileChange {
                change: "added".into(),
                path: k.clone(),
                from_size: None,
                to_size: Some(y.size),
            }),
            (Some(x), Some(y)) => {
                if x.dir && y.dir {
                    continue;
                }
                if x.dir != y.dir
                    || x.regular != y.regular
                    || x.size != y.size
                    || x.sha256 != y.sha256
                {
                    out.push(FileChange {
                        change: "changed".into(),
                        path: k.clone(),
                        from_size: Some(x.size),
                        to_size: Some(y.size),
                    });
                }
            }
            (None, None) => {}
        }
    }
    out
}
