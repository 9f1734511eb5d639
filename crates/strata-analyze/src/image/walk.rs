//! Replaying layers over a model of the filesystem, streaming.

use std::collections::BTreeMap;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::files::{Kind, LayerFiles};
use super::WasteKind;

/// What the model keeps of one path.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// The layer that last wrote it.
    pub layer: usize,
    /// Content size (regular files; a hard link has its target's size).
    pub size: u64,
    /// sha256 of the content (regular files).
    pub sha256: [u8; 32],
    /// A hard link to another path (its bytes are counted there).
    pub hardlink: bool,
    /// Regular file (not a directory, symlink or device).
    pub regular: bool,
    /// Directory.
    pub dir: bool,
    /// For archives (`.jar`, `.war`): how many nested library jars it holds
    /// (`BOOT-INF/lib/*.jar`, `WEB-INF/lib/*.jar`).
    pub nested_jars: u64,
    /// A Spring-Boot-style jar (has `BOOT-INF/classes/`).
    pub boot_classes: bool,
}

/// One layer's counts.
#[derive(Debug, Default, Clone)]
pub struct LayerStats {
    /// Uncompressed tar bytes read.
    pub tar_bytes: u64,
    /// New non-directory paths.
    pub added: u64,
    /// Non-directory paths written again.
    pub changed: u64,
    /// Non-directory paths removed from lower layers.
    pub removed: u64,
    /// Bytes of regular files (hard links not counted).
    pub file_bytes: u64,
}

/// Bytes that became waste at one point of the replay.
#[derive(Debug, Clone)]
pub struct WasteEvent {
    /// The path removed or overwritten.
    pub path: String,
    /// Why.
    pub kind: WasteKind,
    /// Bytes made waste.
    pub bytes: u64,
    /// Regular files made waste.
    pub files: u64,
    /// Where those bytes live: layer -> bytes.
    pub per_layer: BTreeMap<usize, u64>,
    /// The layer that removed or overwrote them.
    pub by_layer: usize,
}

/// The filesystem as the layers so far make it.
#[derive(Debug, Default)]
pub struct Tree {
    nodes: BTreeMap<String, FileInfo>,
}

pub(super) fn normalize(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut parts: Vec<&str> = Vec::new();
    for p in s.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn split_parent(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// The exclusive end of the key range of everything under `dir/`.
fn subtree(dir: &str) -> (String, String) {
    if dir.is_empty() {
        (String::new(), "\u{10FFFF}".to_owned())
    } else {
        (format!("{dir}/"), format!("{dir}0"))
    }
}

const JAR_MARKERS: [&[u8]; 2] = [b"BOOT-INF/lib/", b"WEB-INF/lib/"];
const BOOT_CLASSES: &[u8] = b"BOOT-INF/classes/";

/// Hash a file's content and, for archives, count nested library entries,
/// in one streaming pass.
pub(super) fn read_content(r: &mut dyn Read, jar: bool) -> io::Result<([u8; 32], u64, u64, bool)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    let mut hits = 0u64;
    let mut boot = false;
    let keep = 32;
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
        if jar {
            let mut window = std::mem::take(&mut tail);
            let start = window.len();
            window.extend_from_slice(&buf[..k]);
            for m in JAR_MARKERS {
                hits += count_new(&window, m, start);
            }
            if !boot && count_new(&window, BOOT_CLASSES, start) > 0 {
                boot = true;
            }
            let from = window.len().saturating_sub(keep);
            tail = window[from..].to_vec();
        }
    }
    // A zip names each entry twice: local header and central directory.
    // Entries of a nested-lib dir that end in ".jar" are what we want; the
    // directory entry itself is named once each way too, so subtract it.
    let nested = (hits / 2).saturating_sub(1);
    Ok((h.finalize().into(), n, nested, boot))
}

/// Occurrences of `pat` in `w` that end after `start` (so matches wholly in
/// the carried-over tail are not counted twice).
fn count_new(w: &[u8], pat: &[u8], start: usize) -> u64 {
    if w.len() < pat.len() {
        return 0;
    }
    w.windows(pat.len())
        .enumerate()
        .filter(|(i, win)| i + pat.len() > start && *win == pat)
        .count() as u64
}

impl Tree {
    /// Regular files of the final filesystem (hard links included, marked).
    pub fn files(&self) -> impl Iterator<Item = (&String, &FileInfo)> {
        self.nodes.iter().filter(|(_, f)| f.regular)
    }

    /// Every path (files, directories, links).
    pub fn nodes(&self) -> &BTreeMap<String, FileInfo> {
        &self.nodes
    }

    /// Remove `path` and everything under it that lower layers wrote;
    /// returns the waste event (None when nothing with bytes went).
    fn remove_lower(
        &mut self,
        path: &str,
        layer: usize,
        include_self: bool,
        stats: &mut LayerStats,
    ) -> Option<WasteEvent> {
        let (lo, hi) = subtree(path);
        let mut doomed: Vec<String> = self
            .nodes
            .range(lo..hi)
            .filter(|(_, f)| f.layer < layer)
            .map(|(k, _)| k.clone())
            .collect();
        if include_self && self.nodes.get(path).is_some_and(|f| f.layer < layer) {
            doomed.push(path.to_owned());
        }
        let mut ev = WasteEvent {
            path: path.to_owned(),
            kind: WasteKind::Removed,
            bytes: 0,
            files: 0,
            per_layer: BTreeMap::new(),
            by_layer: layer,
        };
        for k in doomed {
            let f = self.nodes.remove(&k).expect("listed above");
            if !f.dir {
                stats.removed += 1;
            }
            if f.regular && !f.hardlink {
                ev.files += 1;
                if f.size > 0 {
                    ev.bytes += f.size;
                    *ev.per_layer.entry(f.layer).or_default() += f.size;
                }
            }
        }
        (ev.bytes > 0).then_some(ev)
    }

    /// Replay one layer blob (gzip, zstd or plain tar).
    pub fn apply(
        &mut self,
        layer: usize,
        blob: Box<dyn Read>,
        waste: &mut Vec<WasteEvent>,
    ) -> io::Result<LayerStats> {
        Ok(self.apply_files(layer, &LayerFiles::scan_blob(blob)?, waste))
    }

    /// Replay one layer from its records.
    pub fn apply_files(
        &mut self,
        layer: usize,
        files: &LayerFiles,
        waste: &mut Vec<WasteEvent>,
    ) -> LayerStats {
        let mut stats = LayerStats {
            tar_bytes: files.tar_bytes,
            ..Default::default()
        };
        for rec in &files.records {
            let path = &rec.path;
            let (parent, name) = split_parent(path);
            if name == ".wh..wh..opq" {
                let parent = parent.to_owned();
                if let Some(ev) = self.remove_lower(&parent, layer, false, &mut stats) {
                    waste.push(ev);
                }
                continue;
            }
            if let Some(victim) = name.strip_prefix(".wh.") {
                let target = if parent.is_empty() {
                    victim.to_owned()
                } else {
                    format!("{parent}/{victim}")
                };
                if let Some(ev) = self.remove_lower(&target, layer, true, &mut stats) {
                    waste.push(ev);
                }
                continue;
            }
            let dir = rec.kind == Kind::Dir;
            let hardlink = matches!(rec.kind, Kind::HardLink(_));
            let mut info = FileInfo {
                layer,
                size: 0,
                sha256: [0; 32],
                hardlink,
                regular: matches!(rec.kind, Kind::File { .. } | Kind::HardLink(_)),
                dir,
                nested_jars: 0,
                boot_classes: false,
            };
            match &rec.kind {
                Kind::HardLink(target) => {
                    if let Some(t) = self.nodes.get(target) {
                        info.size = t.size;
                        info.sha256 = t.sha256;
                    }
                }
                Kind::File {
                    size,
                    sha256,
                    nested_jars,
                    boot_classes,
                } => {
                    info.sha256 = *sha256;
                    info.size = *size;
                    info.nested_jars = *nested_jars;
                    info.boot_classes = *boot_classes;
                    stats.file_bytes += size;
                }
                Kind::Dir | Kind::Other => {}
            }
            match self.nodes.get(path) {
                Some(old) => {
                    if old.dir && dir {
                        // A directory listed again (its metadata): no change to count.
                        self.nodes.insert(path.clone(), FileInfo { layer, ..info });
                        continue;
                    }
                    if !dir && old.layer < layer {
                        stats.changed += 1;
                    } else if !dir {
                        // Written twice in one layer: both copies are in the tar.
                    }
                    if old.regular && !old.hardlink && old.size > 0 {
                        let mut per_layer = BTreeMap::new();
                        per_layer.insert(old.layer, old.size);
                        waste.push(WasteEvent {
                            path: path.clone(),
                            kind: WasteKind::Overwritten,
                            bytes: old.size,
                            files: 1,
                            per_layer,
                            by_layer: layer,
                        });
                    }
                    if old.dir && !dir {
                        if let Some(ev) = self.remove_lower(path, layer, false, &mut stats) {
                            waste.push(ev);
                        }
                    }
                }
                None => {
                    if !dir {
                        stats.added += 1;
                    }
                }
            }
            self.nodes.insert(path.clone(), info);
        }
        stats
    }

    /// Bytes of the final filesystem per directory, `depth` levels deep,
    /// largest first (at most `n` per level).
    pub fn largest_dirs(&self, depth: usize, n: usize) -> Vec<(String, u64)> {
        let mut sums: BTreeMap<String, u64> = BTreeMap::new();
        for (path, f) in self.files() {
            if f.hardlink || f.size == 0 {
                continue;
            }
            let parts: Vec<&str> = path.split('/').collect();
            for d in 1..=depth.min(parts.len()) {
                let key = if d == parts.len() {
                    path.clone()
                } else {
                    parts[..d].join("/")
                };
                *sums.entry(key).or_default() += f.size;
            }
        }
        let mut out: Vec<(String, u64)> = Vec::new();
        for level in 1..=depth {
            let mut lv: Vec<(String, u64)> = sums
                .iter()
                .filter(|(k, _)| k.split('/').count() == level)
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            lv.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            lv.truncate(n);
            out.extend(lv);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize(b"./usr/bin/"), "usr/bin");
        assert_eq!(normalize(b"/etc//passwd"), "etc/passwd");
        assert_eq!(normalize(b"a/../b"), "b");
    }

    #[test]
    fn markers_across_chunk_edges_count_once() {
        let w = b"xxBOOT-INF/lib/yy";
        assert_eq!(count_new(w, b"BOOT-INF/lib/", 0), 1);
        // The match ends inside the carried tail only: not new.
        assert_eq!(count_new(w, b"BOOT-INF/lib/", 16), 0);
    }
}
