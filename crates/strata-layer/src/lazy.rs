//! Snapshots made from what is at hand, and only when needed.
//!
//! A layer's snapshot directory costs a file create per entry, and this
//! machine's file system may create as few as a thousand files a second.
//! So a layer is extracted only when something needs its files, and then
//! from what is already there instead of the stored blob:
//!
//! - every layer written here gets its [`LayerIndex`] (kept under
//!   `snapshots/.index/`), which answers the builder's lookups;
//! - a layer written for a later step that will need its files is
//!   extracted while it is written, from the uncompressed tar stream on its
//!   way to the compressor ([`Snapshotter::write_layer`]);
//! - a RUN step's overlay upper directory becomes the snapshot of its layer
//!   in place: renamed, and made exactly what extracting the layer would
//!   make ([`Snapshotter::adopt_upper`]);
//! - anything else is extracted from its blob on first need
//!   ([`Snapshotter::ensure_layer`], through [`ViewLayer`](crate::ViewLayer)).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, XattrFlags};
use rustix::io::Errno;
use strata_oci::{Digest, Layer};

use crate::apply::{apply_tar, dir_flags, list_dir, remove_at, DirStack};
use crate::error::IoContext;
use crate::writer::{keep_xattr, prepare_entries, scan_dir, tar_mtime, write_sorted_to_store};
use crate::{
    ApplyMode, Entry, EntryKind, Error, LayerIndex, LayerInfo, LayerOptions, LayerSource, Result,
    Snapshotter,
};

impl Snapshotter {
    fn index_path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(".index").join(diff_id.hex())
    }

    fn remember(&self, diff_id: &Digest, index: LayerIndex) -> Arc<LayerIndex> {
        let index = Arc::new(index);
        self.indexes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(diff_id.clone(), index.clone());
        index
    }

    /// Records `index` as the index of layer `diff_id` (in memory and
    /// beside the snapshots; a failed write only costs a later re-read).
    pub(crate) fn keep_index(&self, diff_id: &Digest, index: LayerIndex) {
        let _ = index.save(&self.index_path(diff_id));
        self.remember(diff_id, index);
    }

    /// The bytes of regular files `layer` adds, what docker calls a layer's
    /// size (`images`, `history`): the same whatever the layer's compression
    /// or how it arrived. Read from its blob once, then kept beside its
    /// index (`snapshots/.index/<diff id>.size`). An error for a layer left
    /// in a registry (callers show the blob's size).
    pub fn content_size(&self, layer: &Layer) -> Result<u64> {
        let path = self
            .dir
            .join(".index")
            .join(format!("{}.size", layer.diff_id.hex()));
        if let Some(n) = fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            return Ok(n);
        }
        let rd = |source| Error::Read {
            entry: None,
            source,
        };
        // A layer left in a registry is not downloaded to be measured.
        if self.store.remote_blob(&layer.descriptor.digest).is_some() {
            return Err(Error::Store(strata_oci::Error::NotFound {
                what: format!("blob {} (left in a registry)", layer.descriptor.digest),
            }));
        }
        let blob = self.store.open_blob(&layer.descriptor.digest)?;
        let (_, plain) = crate::decompress(io::BufReader::new(blob)).map_err(rd)?;
        let mut ar = tar::Archive::new(plain);
        let mut total = 0u64;
        for e in ar.entries().map_err(rd)? {
            let e = e.map_err(rd)?;
            let t = e.header().entry_type();
            if t.is_file() || t == tar::EntryType::Continuous {
                total += e.header().size().map_err(rd)?;
            }
        }
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
            let tmp = path.with_extension(format!("tmp-{}", crate::snapshot::unique()));
            if fs::write(&tmp, total.to_string()).is_ok() && fs::rename(&tmp, &path).is_err() {
                let _ = fs::remove_file(&tmp);
            }
        }
        Ok(total)
    }

    /// The index of `layer`: recorded when it was written here, else read
    /// from its blob once (and kept). `None` when the layer cannot be
    /// indexed (a path through a symlink of its own, say): extract it.
    pub fn index(&self, layer: &Layer) -> Result<Option<Arc<LayerIndex>>> {
        if let Some(i) = self
            .indexes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&layer.diff_id)
        {
            return Ok(Some(i.clone()));
        }
        if let Some(i) = LayerIndex::load(&self.index_path(&layer.diff_id)) {
            return Ok(Some(self.remember(&layer.diff_id, i)));
        }
        let blob = self.store.open_blob(&layer.descriptor.digest)?;
        let (_, plain) =
            crate::decompress(io::BufReader::new(blob)).map_err(|source| Error::Read {
                entry: None,
                source,
            })?;
        let (index, diff_id) = match LayerIndex::from_tar(plain) {
            Ok(v) => v,
            Err(Error::Invalid { .. } | Error::Unsafe { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if diff_id != layer.diff_id {
            return Err(Error::Store(strata_oci::Error::DigestMismatch {
                what: format!("uncompressed layer {}", layer.descriptor.digest),
                expected: layer.diff_id.to_string(),
                actual: diff_id.to_string(),
            }));
        }
        let _ = index.save(&self.index_path(&layer.diff_id));
        Ok(Some(self.remember(&layer.diff_id, index)))
    }

    /// Writes a layer into the store and records its index. With `extract`,
    /// the layer is also extracted into its snapshot directory while it is
    /// written, from the uncompressed stream (the blob is never read back);
    /// a snapshot that cannot be made so is left to be made on demand.
    pub fn write_layer(
        &self,
        source: LayerSource<'_>,
        opts: &LayerOptions,
        extract: bool,
    ) -> Result<LayerInfo> {
        let entries = match source {
            LayerSource::Dir(dir) => scan_dir(dir, opts.xattrs)?,
            LayerSource::Entries(e) => e,
        };
        let entries = prepare_entries(entries)?;
        let index = LayerIndex::from_entries(&entries, opts).ok();
        let info = if extract {
            self.write_extracting(&entries, opts)?
        } else {
            write_sorted_to_store(&self.store, &entries, opts, None)?
        };
        if let Some(index) = index {
            self.keep_index(&info.diff_id, index);
        }
        Ok(info)
    }

    fn write_extracting(&self, entries: &[Entry], opts: &LayerOptions) -> Result<LayerInfo> {
        // Held: if this process dies, the next command removes it.
        let Ok((tmp, _hold)) = self.store.hold_extraction() else {
            return write_sorted_to_store(&self.store, entries, opts, None);
        };
        if fs::create_dir(&tmp).is_err() {
            return write_sorted_to_store(&self.store, entries, opts, None);
        }
        let extractor = {
            let tmp = tmp.clone();
            crate::StreamThread::spawn("extract", move |r: &mut dyn Read| {
                apply_tar(r, &tmp, ApplyMode::Overlay)
            })
        };
        let mut tee = match extractor {
            Ok(t) => t,
            Err(_) => {
                let _ = strata_oci::remove_tree(&tmp);
                return write_sorted_to_store(&self.store, entries, opts, None);
            }
        };
        let written = write_sorted_to_store(&self.store, entries, opts, Some(&mut tee));
        let extracted = tee.finish();
        let info = match written {
            Ok(info) => info,
            Err(e) => {
                let _ = strata_oci::remove_tree(&tmp);
                return Err(e);
            }
        };
        match extracted {
            Some(Ok((diff_id, _, _))) if diff_id == info.diff_id => {
                let target = self.path(&info.diff_id);
                if self.publish(&tmp, &target).is_err() {
                    let _ = strata_oci::remove_tree(&tmp);
                }
            }
            _ => {
                let _ = strata_oci::remove_tree(&tmp);
            }
        }
        Ok(info)
    }

    /// Moves a finished snapshot directory `tmp` to `target` (unless another
    /// process got there first) and makes the rename durable.
    ///
    /// Keep in step with the end of [`Snapshotter::ensure_layer`].
    pub(crate) fn publish(&self, tmp: &Path, target: &Path) -> Result<()> {
        // Its files on disk before the name: a snapshot exists only whole.
        crate::snapshot::sync_tree(tmp)?;
        match fs::rename(tmp, target) {
            Ok(()) => {}
            // Another process finished first: theirs is as good as ours.
            Err(_) if target.is_dir() => {
                let _ = strata_oci::remove_tree(tmp);
            }
            Err(e) => return Err(e).ctx("rename into", target),
        }
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Makes `upper` (a RUN step's overlay upper directory, no longer
    /// mounted) the snapshot of the layer written from `entries` (sorted,
    /// as [`upper_to_entries_against`](crate::upper_to_entries_against)
    /// gave them) with `opts`, exactly as extracting that layer would make
    /// it: what the layer leaves out goes (copy-ups that changed nothing),
    /// whiteouts are added where an opaque directory hid lower entries,
    /// xattrs are those the layer records, and every time is the one the
    /// layer records. The files themselves are not copied.
    pub fn adopt_upper(
        &self,
        upper: &Path,
        entries: &[Entry],
        opts: &LayerOptions,
        diff_id: &Digest,
    ) -> Result<PathBuf> {
        let target = self.path(diff_id);
        if target.is_dir() {
            return Ok(target);
        }
        normalize_upper(upper, entries, opts)?;
        // A fresh root, as extraction has: the upper's own root is the
        // overlay's (its mode, owner and xattrs are not the layer's).
        let (tmp, _hold) = self.store.hold_extraction()?;
        fs::create_dir(&tmp).ctx("create", &tmp)?;
        let moved = (|| -> Result<()> {
            let from = rustix::fs::open(upper, dir_flags(), Mode::empty()).ctx("open", upper)?;
            let to = rustix::fs::open(&tmp, dir_flags(), Mode::empty()).ctx("open", &tmp)?;
            for name in list_dir(&from).ctx("list", upper)? {
                rustix::fs::renameat(&from, &name, &to, &name).ctx("move", upper.join(&name))?;
            }
            Ok(())
        })();
        if let Err(e) = moved.and_then(|()| self.publish(&tmp, &target)) {
            let _ = strata_oci::remove_tree(&tmp);
            return Err(e);
        }
        Ok(target)
    }
}

/// The path of `e` as bytes.
fn path_bytes(e: &Entry) -> &[u8] {
    e.path.as_os_str().as_bytes()
}

/// Splits a path into its parent's components and its name.
fn split(path: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut comps: Vec<Vec<u8>> = path
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect();
    let name = comps.pop().unwrap_or_default();
    (comps, name)
}

fn is_whiteout_at(dir: &OwnedFd, name: &OsStr) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
        FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
    })
}

/// Makes an unmounted overlay upper directory hold exactly what extracting
/// the layer written from `entries` with `opts` holds (see
/// [`Snapshotter::adopt_upper`]).
pub(crate) fn normalize_upper(upper: &Path, entries: &[Entry], opts: &LayerOptions) -> Result<()> {
    // What the layer has: its entries, and the names its whiteouts hide.
    let mut keep: HashMap<&[u8], &Entry> = HashMap::new();
    let mut victims: HashSet<Vec<u8>> = HashSet::new();
    let mut opaque: HashSet<Vec<u8>> = HashSet::new();
    for e in entries {
        let p = path_bytes(e);
        let (parent, name) = split(p);
        if name == b".wh..wh..opq" {
            opaque.insert(parent.join(&b'/'));
        } else if let Some(v) = name.strip_prefix(b".wh.") {
            let mut c = parent;
            c.push(v.to_vec());
            victims.insert(c.join(&b'/'));
        } else {
            keep.insert(p, e);
        }
    }
    let root = rustix::fs::open(upper, dir_flags(), Mode::empty()).ctx("open", upper)?;
    prune(&root, &mut Vec::new(), &keep, &victims, upper)?;

    // Whiteouts and xattrs, parents first.
    let mut stack = DirStack::default();
    for e in entries {
        let p = path_bytes(e);
        let (parent, name) = split(p);
        let shown = || upper.join(&e.path);
        if name == b".wh..wh..opq" {
            continue; // the directory keeps its opaque xattr
        }
        let dir = stack.open(&root, &parent, false, &String::from_utf8_lossy(p))?;
        if let Some(v) = name.strip_prefix(b".wh.") {
            let v = OsStr::from_bytes(v);
            if !is_whiteout_at(dir, v) {
                // A name an opaque directory hid: extraction writes a
                // whiteout for it.
                remove_at(dir, v).ctx("remove", shown())?;
                rustix::fs::mknodat(
                    dir,
                    v,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .ctx("create whiteout", shown())?;
            }
            continue;
        }
        if matches!(e.kind, EntryKind::Hardlink(_)) {
            continue; // its inode is its target's
        }
        let mut want: Vec<(&str, &[u8])> = if opts.xattrs {
            e.xattrs
                .iter()
                .filter(|(k, _)| keep_xattr(k))
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect()
        } else {
            Vec::new()
        };
        let joined = p.to_vec();
        if e.kind == EntryKind::Dir && opaque.contains(&joined) {
            want.push((crate::apply::overlay_opaque_xattr(), b"y"));
        }
        fix_xattrs(dir, OsStr::from_bytes(&name), &want, &shown())?;
    }

    // Times last, children before their directory.
    let mut stack = DirStack::default();
    for e in entries.iter().rev() {
        let p = path_bytes(e);
        let (parent, name) = split(p);
        if name.starts_with(b".wh.") || matches!(e.kind, EntryKind::Hardlink(_)) {
            continue;
        }
        let dir = stack.open(&root, &parent, false, &String::from_utf8_lossy(p))?;
        let t = rustix::fs::Timespec {
            tv_sec: tar_mtime(e, opts),
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            dir,
            OsStr::from_bytes(&name),
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .ctx("set times of", upper.join(&e.path))?;
    }
    Ok(())
}

/// Removes what the layer does not hold from the directory `dir` (at
/// `rel` under the upper dir).
fn prune(
    dir: &OwnedFd,
    rel: &mut Vec<u8>,
    keep: &HashMap<&[u8], &Entry>,
    victims: &HashSet<Vec<u8>>,
    upper: &Path,
) -> Result<()> {
    let shown = |rel: &[u8]| upper.join(OsStr::from_bytes(rel));
    for name in list_dir(dir).ctx("list", shown(rel))? {
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        if name.as_bytes().starts_with(b".wh.") {
            // fuse-overlayfs's own: its opaque marker (the directory gets
            // the opaque xattr), a fallback whiteout file (the whiteout
            // device is made below).
            let fuse_own = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .ok()
                .is_some_and(|st| {
                    let ft = FileType::from_raw_mode(st.st_mode);
                    let rest = &name.as_bytes()[4..];
                    let mut hidden = rel[..len].to_vec();
                    if !hidden.is_empty() {
                        hidden.push(b'/');
                    }
                    hidden.extend_from_slice(rest);
                    (name.as_bytes() == crate::diff::FUSE_OPAQUE_FILE.as_bytes()
                        && ft == FileType::RegularFile)
                        || (rest == b".opq" && ft == FileType::CharacterDevice && st.st_rdev == 0)
                        || (ft == FileType::RegularFile
                            && st.st_size == 0
                            && victims.contains(&hidden))
                });
            if fuse_own {
                remove_at(dir, &name).ctx("remove", shown(rel))?;
                rel.truncate(len);
                continue;
            }
            // The layer has it as a whiteout marker, extraction makes a
            // whiteout of it: not this file.
            return Err(Error::invalid(
                shown(rel).display().to_string(),
                "a file named like a whiteout cannot be adopted",
            ));
        }
        match keep.get(rel.as_slice()) {
            Some(e) if e.kind == EntryKind::Dir => {
                let sub = rustix::fs::openat(dir, &name, dir_flags(), Mode::empty())
                    .ctx("open", shown(rel))?;
                prune(&sub, rel, keep, victims, upper)?;
            }
            Some(_) => {}
            None if victims.contains(rel.as_slice()) && is_whiteout_at(dir, &name) => {}
            None => remove_at(dir, &name).ctx("remove", shown(rel))?,
        }
        rel.truncate(len);
    }
    Ok(())
}

/// Makes the xattrs of `name` in `dir` exactly `want` (values as the layer
/// records them, which are the file's own).
fn fix_xattrs(dir: &OwnedFd, name: &OsStr, want: &[(&str, &[u8])], shown: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let at = Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(&at, &mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(e).ctx("list xattrs of", shown),
        }
    };
    let have: Vec<&[u8]> = names[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .collect();
    for h in &have {
        if !want.iter().any(|(k, _)| k.as_bytes() == *h) {
            rustix::fs::lremovexattr(&at, OsStr::from_bytes(h)).ctx("remove an xattr of", shown)?;
        }
    }
    for (k, v) in want {
        if !have.contains(&k.as_bytes()) {
            rustix::fs::lsetxattr(&at, *k, v, XattrFlags::empty()).ctx("set an xattr of", shown)?;
        }
    }
    Ok(())
}
