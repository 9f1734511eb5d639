//! What [`analyze`](super::analyze) reads of a stored image, and where the
//! image comes from when it is not in the store.
//!
//! - Archives: `oci:DIR`, `oci-archive:FILE` and `docker-archive:FILE`
//!   ([`archive_path`]) are loaded into a temporary store that lives as long
//!   as the [`Archived`] image ([`open_archive`]).
//! - Layers: each layer's [`LayerMeta`] (digests, size, the history entry
//!   that made it and its Dockerfile line) and an opener that streams its
//!   blob ([`layer_metas`], [`layer_opener`]).
//! - Dockerfile lines: for images strata built, the build record holds
//!   them; for others, [`dockerfile_lines`] maps the final stage's
//!   instructions onto the last history entries.
//! - [`build_summary`]: the summary printed after `strata build`, cached in
//!   the store's `analysis` sidecar so a fully cached rebuild does not read
//!   the layers again.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;

use strata_dockerfile::Dockerfile;
use strata_oci::{Image, Platform, Store};

use super::{
    analyze, find_base, layer_files, render_summary, Error, LayerFiles, LayerMeta, Options, Report,
    SCHEMA,
};

/// The prefixes that name an archive instead of an image in the store.
pub const ARCHIVE_PREFIXES: [&str; 3] = ["oci:", "oci-archive:", "docker-archive:"];

/// The path in `oci:PATH`, `oci-archive:PATH` or `docker-archive:PATH`;
/// `None` for an image name. (skopeo's `oci:DIR:TAG` is not needed here:
/// everything after the prefix is the path.)
pub fn archive_path(spec: &str) -> Option<&Path> {
    ARCHIVE_PREFIXES
        .iter()
        .find_map(|p| spec.strip_prefix(p))
        .map(Path::new)
}

/// The store's sidecar kind the post-build summaries are kept under.
pub const SUMMARY_SIDECAR: &str = "analysis";

/// An image loaded from an archive into a temporary store, removed when
/// this is dropped.
#[derive(Debug)]
pub struct Archived {
    /// The temporary store holding it.
    pub store: Store,
    /// The image (the host's platform when the archive holds an index).
    pub image: Image,
    /// How many images the archive holds; the first is [`Archived::image`].
    pub images: usize,
    /// The temporary store's directory.
    pub dir: TempStore,
}

/// The directory of a temporary store, removed on drop.
#[derive(Debug)]
pub struct TempStore(tempfile::TempDir);

impl TempStore {
    /// Where it is.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Load the archive (or OCI layout directory) at `path` into a temporary
/// store and resolve its first image.
pub fn open_archive(path: &Path) -> Result<Archived, Error> {
    if !path.exists() {
        return Err(Error::NoSuchFile {
            path: path.to_owned(),
        });
    }
    let tmp = tempfile::Builder::new()
        .prefix("strata-analyze-")
        .tempdir()
        .map_err(Error::TempStoreDir)?;
    let store = Store::open(tmp.path()).map_err(Error::TempStore)?;
    let archive = |source| Error::Archive {
        path: path.to_owned(),
        source,
    };
    let loaded = strata_oci::load_archive(&store, path).map_err(archive)?;
    let Some(first) = loaded.first() else {
        return Err(Error::NoImage {
            path: path.to_owned(),
        });
    };
    let image = store
        .image(&first.descriptor, Some(&Platform::host()))
        .or_else(|_| store.image(&first.descriptor, None))
        .map_err(|source| Error::ArchiveImage {
            path: path.to_owned(),
            source,
        })?;
    Ok(Archived {
        store,
        image,
        images: loaded.len(),
        dir: TempStore(tmp),
    })
}

/// Each layer's metadata, bottom first, with the history entry that made
/// it and that entry's Dockerfile line (`lines`: history index -> line).
pub fn layer_metas(image: &Image, lines: &BTreeMap<usize, usize>) -> Vec<LayerMeta> {
    // The k-th entry that made a layer made layer k.
    let mut made_by = image
        .history_layers()
        .enumerate()
        .filter(|(_, (_, layer))| layer.is_some())
        .map(|(hi, (h, _))| (h.created_by.clone(), lines.get(&hi).copied()));
    image
        .layers
        .iter()
        .map(|l| {
            let (created_by, line) = made_by.next().unwrap_or_default();
            LayerMeta {
                digest: l.descriptor.digest.to_string(),
                diff_id: l.diff_id.to_string(),
                compressed_size: l.descriptor.size,
                created_by,
                line,
            }
        })
        .collect()
}

/// A function that opens layer `i` of `image` (its blob, buffered), as
/// [`analyze`](super::analyze) and [`final_tree`](super::final_tree) take it.
pub fn layer_opener<'a>(
    store: &'a Store,
    image: &'a Image,
) -> impl FnMut(usize) -> io::Result<Box<dyn Read>> + 'a {
    move |i| {
        let layer = image.layers.get(i).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("the image has no layer {i}"),
            )
        })?;
        let f = store
            .open_blob(&layer.descriptor.digest)
            .map_err(io::Error::other)?;
        Ok(Box::new(io::BufReader::with_capacity(256 * 1024, f)) as Box<dyn Read>)
    }
}

/// A function that gives the records of layer `i` of `image`, as
/// [`analyze`](super::analyze) and [`final_tree`](super::final_tree) take
/// it: those kept in the store (written while the builder wrote the layer,
/// or at an earlier analysis), else scanned from the blob and kept.
pub fn layer_files_opener<'a>(
    store: &'a Store,
    image: &'a Image,
) -> impl FnMut(usize) -> io::Result<LayerFiles> + 'a {
    let mut open = layer_opener(store, image);
    move |i| {
        let digest = &image
            .layers
            .get(i)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("the image has no layer {i}"),
                )
            })?
            .descriptor
            .digest;
        layer_files(store, digest, || open(i))
    }
}

/// For images strata did not build: map the final stage's instructions
/// onto the last `history_len` history entries (one entry per instruction,
/// as docker and BuildKit record them). History index -> 1-based line.
pub fn dockerfile_lines(df: &Dockerfile, history_len: usize) -> BTreeMap<usize, usize> {
    let mut stage: Vec<usize> = Vec::new();
    for node in &df.nodes {
        if node.keyword.eq_ignore_ascii_case("from") {
            stage.clear();
        } else {
            stage.push(node.start_line);
        }
    }
    stage
        .iter()
        .rev()
        .take(history_len)
        .enumerate()
        .map(|(k, line)| (history_len - 1 - k, *line))
        .collect()
}

/// Analyse an image in `store`. `lines` maps history indexes to Dockerfile
/// lines (the build record, or [`dockerfile_lines`]); without them the
/// base image is told apart by its history alone.
pub fn analyze_image(
    store: &Store,
    image: &Image,
    name: &str,
    lines: Option<&BTreeMap<usize, usize>>,
    top: usize,
) -> Result<Report, Error> {
    let metas = layer_metas(image, lines.unwrap_or(&BTreeMap::new()));
    let base = find_base(&image.config.history, lines);
    let mut open = layer_files_opener(store, image);
    analyze(
        name,
        Some(image.id().to_string()),
        &metas,
        &mut open,
        &Options { top, base },
    )
}

/// The summary printed after `strata build`. An image's analysis depends
/// only on its layers and the line map, so it is kept beside the store (its
/// [`SUMMARY_SIDECAR`] sidecar, keyed by name and lines) and a fully cached
/// rebuild does not read the layers again.
pub fn build_summary(
    store: &Store,
    image: &Image,
    name: &str,
    lines: &BTreeMap<usize, usize>,
) -> Result<String, Error> {
    let key = strata_oci::Digest::sha256(format!("schema {SCHEMA}\0{name}\0{lines:?}").as_bytes());
    let key = &key.hex()[..16];
    let cache = store.sidecar(SUMMARY_SIDECAR)?;
    if let Some(cached) = cache
        .get(image.id(), Some(key))
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
    {
        return Ok(cached);
    }
    let report = analyze_image(store, image, name, Some(lines), 3)?;
    let summary = render_summary(&report);
    // Best effort: a cache that cannot be written only costs time.
    let _ = cache.put(image.id(), Some(key), summary.as_bytes());
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::FILES_SIDECAR;
    use strata_oci::{media_type, Descriptor, History, ImageConfig, Manifest, Reference};

    /// A one-file uncompressed layer tar.
    fn layer_tar(name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
        b.into_inner().unwrap()
    }

    fn entry(by: &str, empty: bool) -> History {
        History {
            created_by: Some(by.to_owned()),
            empty_layer: empty,
            ..Default::default()
        }
    }

    /// An image of `layers` with `history`, tagged `name` in `store`.
    fn put_image(store: &Store, name: &str, layers: &[Vec<u8>], history: Vec<History>) -> Image {
        let mut config = ImageConfig {
            architecture: Platform::host().architecture,
            os: "linux".into(),
            history,
            ..Default::default()
        };
        let mut descs = Vec::new();
        for l in layers {
            let d = store.put_blob(l).unwrap();
            config.rootfs.diff_ids.push(d.clone());
            descs.push(Descriptor::new(
                media_type::OCI_LAYER_TAR,
                d,
                l.len() as u64,
            ));
        }
        let cd = store
            .put_json(media_type::OCI_CONFIG, &config.to_json())
            .unwrap();
        let md = store
            .put_json(
                media_type::OCI_MANIFEST,
                &Manifest::oci(cd, descs).to_json(),
            )
            .unwrap();
        let r: Reference = name.parse().unwrap();
        store.tag(&r, &md).unwrap();
        store.find_image(name).unwrap()
    }

    fn two_layer_image(store: &Store) -> Image {
        put_image(
            store,
            "app:1",
            &[
                layer_tar("big.bin", &[7; 4096]),
                layer_tar("copy.bin", &[7; 4096]),
            ],
            vec![
                entry("ADD rootfs /", false),
                entry("ENV A=1", true),
                entry("COPY copy.bin /", false),
                entry("CMD [\"sh\"]", true),
            ],
        )
    }

    #[test]
    fn archive_prefixes_name_paths() {
        for (spec, want) in [
            ("oci:/tmp/layout", Some("/tmp/layout")),
            ("oci-archive:a.tar", Some("a.tar")),
            ("docker-archive:./x.tar", Some("./x.tar")),
            ("busybox:latest", None),
            ("localhost:5000/oci:1", None),
        ] {
            assert_eq!(archive_path(spec), want.map(Path::new), "{spec}");
        }
    }

    #[test]
    fn metas_pair_layers_with_their_steps_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let image = two_layer_image(&store);
        let lines = BTreeMap::from([(2, 5), (3, 6)]);
        let metas = layer_metas(&image, &lines);
        assert_eq!(metas.len(), 2);
        assert_eq!(metas[0].created_by.as_deref(), Some("ADD rootfs /"));
        assert_eq!(metas[0].line, None);
        assert_eq!(metas[1].created_by.as_deref(), Some("COPY copy.bin /"));
        assert_eq!(metas[1].line, Some(5));
        assert_eq!(metas[1].diff_id, image.layers[1].diff_id.to_string());
    }

    #[test]
    fn dockerfile_lines_map_the_final_stage_onto_the_last_entries() {
        let df = strata_dockerfile::parse(
            "FROM golang AS build\nRUN make\nFROM alpine\nCOPY --from=build /app /app\n\nCMD [\"/app\"]\n",
        )
        .unwrap();
        assert_eq!(dockerfile_lines(&df, 4), BTreeMap::from([(2, 4), (3, 6)]));
        // More instructions than history entries: the oldest are dropped.
        assert_eq!(dockerfile_lines(&df, 1), BTreeMap::from([(0, 6)]));
        assert_eq!(dockerfile_lines(&df, 0), BTreeMap::new());
    }

    #[test]
    fn analyze_image_reads_the_layers_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let image = two_layer_image(&store);
        let report = analyze_image(&store, &image, "app:1", None, 10).unwrap();
        assert_eq!(report.layers.len(), 2);
        assert_eq!(report.duplicate_bytes, 4096);
        assert_eq!(report.id.as_deref(), Some(image.id().to_string().as_str()));
    }

    #[test]
    fn the_build_summary_is_cached_beside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let image = two_layer_image(&store);
        let lines = BTreeMap::from([(2, 3)]);
        let first = build_summary(&store, &image, "app:1", &lines).unwrap();
        assert!(first.contains("analysis"), "{first}");
        // The second call must not read the layers: remove them.
        for l in &image.layers {
            std::fs::remove_file(
                dir.path()
                    .join("blobs/sha256")
                    .join(l.descriptor.digest.hex()),
            )
            .unwrap();
        }
        // The layers' files were recorded by the first analysis: it can
        // be made again without them.
        let again = analyze_image(&store, &image, "app:1", Some(&lines), 3).unwrap();
        assert_eq!(render_summary(&again), first);
        std::fs::remove_dir_all(dir.path().join("sidecars").join(FILES_SIDECAR)).unwrap();
        assert!(analyze_image(&store, &image, "app:1", Some(&lines), 3).is_err());
        assert_eq!(
            build_summary(&store, &image, "app:1", &lines).unwrap(),
            first
        );
        // Other lines are another key.
        assert!(build_summary(&store, &image, "app:1", &BTreeMap::new()).is_err());
    }

    #[test]
    fn archives_load_into_a_temporary_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let image = two_layer_image(&store);
        let out = dir.path().join("layout");
        let item = strata_oci::SaveItem {
            image: image.clone(),
            names: vec!["app:1".parse().unwrap()],
        };
        strata_oci::save_oci_layout(&store, &[item], &out, false).unwrap();
        let a = open_archive(&out).unwrap();
        assert_eq!(a.image.id(), image.id());
        assert_eq!(a.images, 1);
        let tmp = a.dir.path().to_owned();
        assert!(tmp.exists());
        drop(a);
        assert!(!tmp.exists());

        let missing = open_archive(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, Error::NoSuchFile { .. }), "{missing}");
        assert!(missing.to_string().contains("nope"));
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let not_layout = open_archive(&dir.path().join("empty")).unwrap_err();
        assert!(matches!(not_layout, Error::Archive { .. }), "{not_layout}");
    }
}
