//! Measured analysis of an image's layers: sizes, waste, detectors, diffs
//! (`strata analyze`, `strata diff`).
//!
//! [`analyze`] reads every layer once, as a stream (never a whole layer in
//! memory), replays it over a model of the filesystem and counts:
//!
//! - per layer: tar size, blob size, the history entry that made it, files
//!   added / changed / removed;
//! - waste: every copy of a path except the one kept (a file overwritten by
//!   a later layer), everything under a path removed later (a whiteout of a
//!   file or a whole directory, an opaque directory, a directory replaced by
//!   a file), and duplicate content across paths of the final filesystem
//!   (same sha256, all copies but one; empty files and hard links ignored);
//! - known waste left in the final filesystem (the `detect` module's
//!   [`Finding`]s).
//!
//! Waste is split by where its bytes lie: in the base image's layers (the
//! Dockerfile did not add them; only another base reclaims them) or in the
//! layers the Dockerfile added. [`find_base`] says which layers are the
//! base's. Efficiency is `1 - added wasted / total`, where `total` is the
//! sum of the sizes of every regular file in every layer, so it (and the
//! `--ci` thresholds) judge what the Dockerfile added; the whole image's
//! figure stays in the report. An image with no waste scores 1.0.
//!
//! The JSON form of [`Report`] is documented in `docs/analyze.md`.

mod detect;
mod diff;
mod files;
mod html;
mod report;
mod source;
mod walk;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use serde::Serialize;

pub use detect::Finding;
pub use diff::{diff_images, file_changes, DiffLayer, DiffReport, DiffSide, FileChange};
pub use files::{
    layer_files, store_files, stored_files, summary_tap, Kind, LayerFiles, Record, FILES_SIDECAR,
};
pub use html::render_html;
pub use report::{ci_checks, render_summary, render_text, CiCheck, Thresholds};
pub use source::{
    analyze_image, archive_path, build_summary, dockerfile_lines, layer_files_opener, layer_metas,
    layer_opener, open_archive, Archived, TempStore, ARCHIVE_PREFIXES, SUMMARY_SIDECAR,
};
pub use walk::{FileInfo, Tree};

/// Version of the JSON form of [`Report`] (`docs/analyze.md`). 2: waste
/// split between the base image and the Dockerfile, `efficiency` counts
/// only the Dockerfile's.
pub const SCHEMA: u32 = 2;

/// What [`analyze`] needs to know of one layer besides its bytes.
#[derive(Debug, Clone)]
pub struct LayerMeta {
    /// The blob digest.
    pub digest: String,
    /// The uncompressed digest.
    pub diff_id: String,
    /// The blob size (as stored or pushed).
    pub compressed_size: u64,
    /// The history entry that made it (`created_by`), if known.
    pub created_by: Option<String>,
    /// The Dockerfile line of that instruction (strata-built images).
    pub line: Option<usize>,
}

/// Options for [`analyze`].
#[derive(Debug, Clone)]
pub struct Options {
    /// How many wasted paths to keep in the report.
    pub top: usize,
    /// Which bottom layers are the base image's ([`find_base`]); `None`
    /// counts every layer as added by the Dockerfile.
    pub base: Option<BaseLayers>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            top: 10,
            base: None,
        }
    }
}

/// How the base image's layers were told apart from the Dockerfile's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseSource {
    /// From the Dockerfile's history entries: everything below the first
    /// entry attributed to a Dockerfile line (the build record of an image
    /// strata built, or `-f Dockerfile`).
    Dockerfile,
    /// From the history alone: everything up to the last `CMD` or
    /// `ENTRYPOINT` entry that later entries add layers on (where a base
    /// image ends and the next Dockerfile begins).
    History,
}

/// The bottom layers that come from the base image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BaseLayers {
    /// How many layers, from the bottom.
    pub layers: usize,
    /// How that was found.
    pub source: BaseSource,
}

/// Whether a history entry is a `CMD` or `ENTRYPOINT` (as docker, BuildKit,
/// buildah and strata record them).
fn sets_command(h: &strata_oci::History) -> bool {
    let by = h.created_by.as_deref().unwrap_or("");
    let by = by
        .trim_start()
        .strip_prefix("/bin/sh -c #(nop)")
        .unwrap_or(by)
        .trim_start();
    let word = by.split_whitespace().next().unwrap_or("");
    word.eq_ignore_ascii_case("CMD") || word.eq_ignore_ascii_case("ENTRYPOINT")
}

/// Which bottom layers of an image are its base image's.
///
/// `lines` maps history indexes to Dockerfile lines (the build record, or
/// `-f Dockerfile` mapped onto the last history entries): the base is every
/// layer made before the first mapped entry, i.e. before the first step of
/// the Dockerfile (an empty map: the image is its base). Without it, the
/// history is read: a base image ends with its `CMD` or `ENTRYPOINT`, so the
/// base is every layer up to the last such entry that later entries add
/// layers on. `None` when neither tells.
pub fn find_base(
    history: &[strata_oci::History],
    lines: Option<&BTreeMap<usize, usize>>,
) -> Option<BaseLayers> {
    let layers_before = |end: usize| history.iter().take(end).filter(|h| !h.empty_layer).count();
    if let Some(lines) = lines {
        let first = lines.keys().next().copied().unwrap_or(history.len());
        return Some(BaseLayers {
            layers: layers_before(first),
            source: BaseSource::Dockerfile,
        });
    }
    let end = history.iter().enumerate().rev().find_map(|(i, h)| {
        let later_layer = history[i + 1..].iter().any(|x| !x.empty_layer);
        (h.empty_layer && sets_command(h) && later_layer).then_some(i + 1)
    })?;
    Some(BaseLayers {
        layers: layers_before(end),
        source: BaseSource::History,
    })
}

/// Why bytes are counted as waste.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WasteKind {
    /// The path was written again by a later layer.
    Overwritten,
    /// The path (a file, or a directory with everything under it) was
    /// removed by a later layer.
    Removed,
    /// The same content is in the final filesystem under another path.
    Duplicate,
}

/// One wasted path.
#[derive(Debug, Clone, Serialize)]
pub struct WastedPath {
    /// The path (no leading `/`; a directory when `files > 1`).
    pub path: String,
    /// Why it is waste.
    pub kind: WasteKind,
    /// Bytes that could be reclaimed.
    pub bytes: u64,
    /// Regular files counted.
    pub files: u64,
    /// The layers holding the wasted bytes (indexes, bottom first).
    pub layers: Vec<usize>,
    /// Their Dockerfile lines, where known.
    pub lines: Vec<usize>,
    /// The layer that removed or overwrote it (for duplicates: the layer of
    /// the copy that is kept).
    pub by_layer: Option<usize>,
    /// Its Dockerfile line, where known.
    pub by_line: Option<usize>,
    /// For duplicates: the path kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
    /// Of `bytes`, those in the base image's layers (all of them: waste
    /// the base image brought, not the Dockerfile).
    pub base_bytes: u64,
}

/// One layer of the report.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Position, bottom first.
    pub index: usize,
    /// Blob digest.
    pub digest: String,
    /// Uncompressed digest.
    pub diff_id: String,
    /// Uncompressed tar size.
    pub size: u64,
    /// Blob size.
    pub compressed_size: u64,
    /// The history entry.
    pub created_by: Option<String>,
    /// Its Dockerfile line.
    pub line: Option<usize>,
    /// Paths that did not exist below.
    pub files_added: u64,
    /// Paths that existed below and were written again.
    pub files_changed: u64,
    /// Paths that existed below and were removed (every file under a
    /// removed directory counts).
    pub files_removed: u64,
    /// Bytes of regular files in this layer.
    pub file_bytes: u64,
    /// Bytes of this layer that are waste by the end of the image.
    pub wasted_bytes: u64,
    /// Whether it is one of the base image's layers.
    pub base: bool,
}

/// The layers of one origin (the base image, or what the Dockerfile added)
/// and their waste.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Share {
    /// How many layers.
    pub layers: usize,
    /// Bytes of regular files in them.
    pub file_bytes: u64,
    /// Bytes in them that are waste by the end of the image.
    pub wasted_bytes: u64,
    /// Of which: overwritten copies.
    pub overwritten_bytes: u64,
    /// Of which: removed by a later layer.
    pub removed_bytes: u64,
    /// Of which: duplicate content.
    pub duplicate_bytes: u64,
    /// `wasted_bytes / file_bytes` (0 when there are no files).
    pub wasted_percent: f64,
}

impl Share {
    fn add(&mut self, kind: WasteKind, bytes: u64) {
        self.wasted_bytes += bytes;
        match kind {
            WasteKind::Overwritten => self.overwritten_bytes += bytes,
            WasteKind::Removed => self.removed_bytes += bytes,
            WasteKind::Duplicate => self.duplicate_bytes += bytes,
        }
    }
}

/// The whole analysis.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Schema version of this JSON (see docs/analyze.md).
    pub schema: u32,
    /// What was analysed, as the user named it.
    pub image: String,
    /// Image ID (config digest), when known.
    pub id: Option<String>,
    /// Layers, bottom first.
    pub layers: Vec<LayerReport>,
    /// Sum of the layers' uncompressed sizes.
    pub size: u64,
    /// Sum of the layers' blob sizes.
    pub compressed_size: u64,
    /// Sum of every regular file's size in every layer.
    pub total_file_bytes: u64,
    /// Bytes of the final filesystem's regular files.
    pub final_file_bytes: u64,
    /// Regular files in the final filesystem.
    pub final_files: u64,
    /// Bytes that could be reclaimed (overwritten + removed + duplicates).
    pub wasted_bytes: u64,
    /// Of which: overwritten copies.
    pub overwritten_bytes: u64,
    /// Of which: removed by a later layer.
    pub removed_bytes: u64,
    /// Of which: duplicate content.
    pub duplicate_bytes: u64,
    /// `wasted_bytes / total_file_bytes`.
    pub wasted_percent: f64,
    /// `1 - added.wasted_bytes / total_file_bytes`: the waste the
    /// Dockerfile added (what `--ci` judges).
    pub efficiency: f64,
    /// `1 - wasted_percent`: base image included.
    pub total_efficiency: f64,
    /// How the base image's layers were found (`None`: they were not, and
    /// every layer counts as added).
    pub base_source: Option<BaseSource>,
    /// The base image's layers and the waste in them.
    pub base: Share,
    /// The layers the Dockerfile added and the waste in them.
    pub added: Share,
    /// The largest wasted paths, largest first (at most `top`).
    pub wasted_paths: Vec<WastedPath>,
    /// Known waste in the final filesystem, largest first.
    pub findings: Vec<Finding>,
    /// Largest directories of the final filesystem (for the treemap):
    /// path -> bytes, two levels deep.
    pub largest_dirs: Vec<(String, u64)>,
}

/// An error while reading an image or one of its layers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A layer could not be read or is not a valid tar.
    #[error("layer {index} ({digest}): {source}")]
    Layer {
        /// Layer position.
        index: usize,
        /// Its digest.
        digest: String,
        /// What went wrong.
        source: io::Error,
    },
    /// An archive named to [`open_archive`] does not exist.
    #[error("{}: no such file or directory", path.display())]
    NoSuchFile {
        /// The path named.
        path: PathBuf,
    },
    /// The temporary directory for an archive's store could not be made.
    #[error("cannot create a temporary store")]
    TempStoreDir(#[source] io::Error),
    /// The temporary store for an archive could not be opened.
    #[error("cannot open a temporary store")]
    TempStore(#[source] strata_oci::Error),
    /// An archive could not be loaded.
    #[error("cannot read {}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// Why.
        source: strata_oci::Error,
    },
    /// An archive holds no image.
    #[error("{} holds no image", path.display())]
    NoImage {
        /// The archive.
        path: PathBuf,
    },
    /// The image in an archive could not be resolved.
    #[error("cannot read the image in {}", path.display())]
    ArchiveImage {
        /// The archive.
        path: PathBuf,
        /// Why.
        source: strata_oci::Error,
    },
    /// The store failed (the summary cache).
    #[error(transparent)]
    Store(#[from] strata_oci::Error),
}

/// Analyse an image given its layers' metadata and a function that gives
/// each layer's records by index ([`layer_files_opener`] for a stored image,
/// [`LayerFiles::scan_blob`] of a blob for others).
pub fn analyze(
    image: &str,
    id: Option<String>,
    layers: &[LayerMeta],
    open: &mut dyn FnMut(usize) -> io::Result<LayerFiles>,
    opts: &Options,
) -> Result<Report, Error> {
    let mut tree = Tree::default();
    let mut layer_reports = Vec::with_capacity(layers.len());
    let mut waste: Vec<walk::WasteEvent> = Vec::new();
    let base_n = opts.base.map(|b| b.layers.min(layers.len())).unwrap_or(0);
    for (i, meta) in layers.iter().enumerate() {
        let err = |source: io::Error| Error::Layer {
            index: i,
            digest: meta.digest.clone(),
            source,
        };
        let files = open(i).map_err(err)?;
        let stats = tree.apply_files(i, &files, &mut waste);
        layer_reports.push(LayerReport {
            index: i,
            digest: meta.digest.clone(),
            diff_id: meta.diff_id.clone(),
            size: stats.tar_bytes,
            compressed_size: meta.compressed_size,
            created_by: meta.created_by.clone(),
            line: meta.line,
            files_added: stats.added,
            files_changed: stats.changed,
            files_removed: stats.removed,
            file_bytes: stats.file_bytes,
            wasted_bytes: 0,
            base: i < base_n,
        });
    }
    let line_of = |l: usize| layers.get(l).and_then(|m| m.line);

    // Waste events -> wasted paths (removals grouped by the removed path).
    let mut wasted: Vec<WastedPath> = Vec::new();
    let mut base = Share::default();
    let mut added = Share::default();
    for ev in &waste {
        let mut base_bytes = 0;
        for (&l, &b) in &ev.per_layer {
            layer_reports[l].wasted_bytes += b;
            if l < base_n {
                base.add(ev.kind, b);
                base_bytes += b;
            } else {
                added.add(ev.kind, b);
            }
        }
        let ls: Vec<usize> = ev.per_layer.keys().copied().collect();
        wasted.push(WastedPath {
            path: ev.path.clone(),
            kind: ev.kind,
            bytes: ev.bytes,
            files: ev.files,
            lines: ls.iter().filter_map(|&l| line_of(l)).collect(),
            layers: ls,
            by_layer: Some(ev.by_layer),
            by_line: line_of(ev.by_layer),
            kept: None,
            base_bytes,
        });
    }

    // Duplicates in the final filesystem.
    type Group<'t> = Vec<(&'t String, &'t FileInfo)>;
    let mut by_hash: BTreeMap<([u8; 32], u64), Group> = BTreeMap::new();
    for (path, f) in tree.files() {
        if f.size > 0 && !f.hardlink {
            by_hash
                .entry((f.sha256, f.size))
                .or_default()
                .push((path, f));
        }
    }
    for ((_, size), mut group) in by_hash {
        if group.len() < 2 {
            continue;
        }
        // Keep the lowest copy (it was there first), then by path.
        group.sort_by(|a, b| (a.1.layer, a.0).cmp(&(b.1.layer, b.0)));
        let (kept_path, kept) = group[0];
        for (path, f) in &group[1..] {
            layer_reports[f.layer].wasted_bytes += size;
            let in_base = f.layer < base_n;
            if in_base {
                base.add(WasteKind::Duplicate, size);
            } else {
                added.add(WasteKind::Duplicate, size);
            }
            wasted.push(WastedPath {
                path: (*path).clone(),
                kind: WasteKind::Duplicate,
                bytes: size,
                files: 1,
                layers: vec![f.layer],
                lines: line_of(f.layer).into_iter().collect(),
                by_layer: Some(kept.layer),
                by_line: line_of(kept.layer),
                kept: Some(kept_path.clone()),
                base_bytes: if in_base { size } else { 0 },
            });
        }
    }
    // What the Dockerfile added first (the base's waste is not the
    // reader's to fix), then largest first.
    wasted.sort_by(|a, b| {
        (a.base_bytes == a.bytes)
            .cmp(&(b.base_bytes == b.bytes))
            .then(b.bytes.cmp(&a.bytes))
            .then_with(|| a.path.cmp(&b.path))
    });
    wasted.truncate(opts.top);

    let ratio = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    let total_file_bytes: u64 = layer_reports.iter().map(|l| l.file_bytes).sum();
    base.layers = base_n;
    base.file_bytes = layer_reports[..base_n].iter().map(|l| l.file_bytes).sum();
    base.wasted_percent = ratio(base.wasted_bytes, base.file_bytes);
    added.layers = layers.len() - base_n;
    added.file_bytes = total_file_bytes - base.file_bytes;
    added.wasted_percent = ratio(added.wasted_bytes, added.file_bytes);
    let overwritten_bytes = base.overwritten_bytes + added.overwritten_bytes;
    let removed_bytes = base.removed_bytes + added.removed_bytes;
    let duplicate_bytes = base.duplicate_bytes + added.duplicate_bytes;
    let wasted_bytes = base.wasted_bytes + added.wasted_bytes;
    let wasted_percent = ratio(wasted_bytes, total_file_bytes);
    let findings = detect::detect(&tree, &|l| line_of(l), base_n);
    let (final_files, final_file_bytes) = tree
        .files()
        .filter(|(_, f)| !f.hardlink)
        .fold((0, 0), |(n, b), (_, f)| (n + 1, b + f.size));
    Ok(Report {
        schema: SCHEMA,
        image: image.to_owned(),
        id,
        size: layer_reports.iter().map(|l| l.size).sum(),
        compressed_size: layer_reports.iter().map(|l| l.compressed_size).sum(),
        layers: layer_reports,
        total_file_bytes,
        final_file_bytes,
        final_files,
        wasted_bytes,
        overwritten_bytes,
        removed_bytes,
        duplicate_bytes,
        wasted_percent,
        efficiency: 1.0 - ratio(added.wasted_bytes, total_file_bytes),
        total_efficiency: 1.0 - wasted_percent,
        base_source: opts.base.map(|b| b.source),
        base,
        added,
        wasted_paths: wasted,
        findings,
        largest_dirs: tree.largest_dirs(2, 40),
    })
}

/// Replay the layers and return the final filesystem only (for file diffs).
pub fn final_tree(
    layers: &[LayerMeta],
    open: &mut dyn FnMut(usize) -> io::Result<LayerFiles>,
) -> Result<Tree, Error> {
    let mut tree = Tree::default();
    let mut waste = Vec::new();
    for (i, meta) in layers.iter().enumerate() {
        let err = |source: io::Error| Error::Layer {
            index: i,
            digest: meta.digest.clone(),
            source,
        };
        let files = open(i).map_err(err)?;
        tree.apply_files(i, &files, &mut waste);
    }
    Ok(tree)
}

/// `n` in decimal units (as docker counts): the value and its unit.
fn scaled(n: u64) -> (f64, &'static str) {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    (v, UNITS[u])
}

/// Bytes for people, in reports and messages: `1.5 MB`, `80.0 kB`,
/// `512 B` (decimal units, as docker prints sizes).
pub fn human(n: u64) -> String {
    match scaled(n) {
        (_, "B") => format!("{n} B"),
        (v, unit) if v >= 100.0 => format!("{v:.0} {unit}"),
        (v, unit) => format!("{v:.1} {unit}"),
    }
}

/// Bytes as docker's tables print them: three significant digits, no
/// space, no trailing zeros (`4.26MB`, `123MB`, `10kB`, `0B`).
pub fn docker_size(n: u64) -> String {
    let (v, unit) = scaled(n);
    let s = if unit == "B" {
        n.to_string()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    format!("{s}{unit}")
}

/// Parse `20MB`, `1.5GiB`, `300kB`, `1000` into bytes.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((v * mult).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        assert_eq!(parse_bytes("20MB"), Some(20_000_000));
        assert_eq!(parse_bytes("1.5 GiB"), Some(1_610_612_736));
        assert_eq!(parse_bytes("300"), Some(300));
        assert_eq!(parse_bytes("3 parsecs"), None);
        assert_eq!(human(999), "999 B");
        assert_eq!(human(83_886_080), "83.9 MB");
    }

    #[test]
    fn byte_formats() {
        for (n, prose, table) in [
            (0, "0 B", "0B"),
            (999, "999 B", "999B"),
            (1_240, "1.2 kB", "1.24kB"),
            (10_000, "10.0 kB", "10kB"),
            (80_000, "80.0 kB", "80kB"),
            (176_000, "176 kB", "176kB"),
            (4_260_000, "4.3 MB", "4.26MB"),
            (33_800_000, "33.8 MB", "33.8MB"),
            (123_456_789, "123 MB", "123MB"),
        ] {
            assert_eq!(human(n), prose, "{n}");
            assert_eq!(docker_size(n), table, "{n}");
        }
    }
}
