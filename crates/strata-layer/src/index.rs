//! What a layer holds, path by path, without its content: the tree that
//! applying the layer in overlay mode makes (whiteouts and opaque
//! directories included), as metadata only.
//!
//! The builder looks at a stage's file system far more often than it needs
//! a file's bytes: does `/app` exist, is it a directory, where does this
//! symlink lead, who owns `/srv`. An index answers those questions for a
//! layer that was never extracted, so a snapshot directory is made only
//! when something needs the files themselves (a RUN step, `strata run`, a
//! `--mount=from`, a `COPY --from`).
//!
//! An index is made while the layer is written (from the entries, with the
//! very values the tar records) or by reading a layer's tar headers; both
//! follow the applier's rules, so the index describes what
//! [`apply_layer`](crate::apply_layer) in [`ApplyMode::Overlay`](crate::ApplyMode)
//! would make. Indexes are kept beside the snapshots
//! (`snapshots/.index/<diffID hex>`), one line per path.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, Metadata};
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use strata_oci::{Algorithm, Digest, HashingReader};

use crate::apply::{clean_path, entry_meta};
use crate::error::IoContext;
use crate::writer::tar_mtime;
use crate::{Entry, EntryKind, Error, LayerOptions, Result};

/// The type of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device (a 0/0 one is an overlay whiteout).
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

impl FileKind {
    /// A regular file.
    pub fn is_file(self) -> bool {
        self == FileKind::File
    }
    /// A directory.
    pub fn is_dir(self) -> bool {
        self == FileKind::Dir
    }
    /// A symbolic link.
    pub fn is_symlink(self) -> bool {
        self == FileKind::Symlink
    }
    /// A character device.
    pub fn is_char_device(self) -> bool {
        self == FileKind::Char
    }
    /// A block device.
    pub fn is_block_device(self) -> bool {
        self == FileKind::Block
    }
    /// A named pipe.
    pub fn is_fifo(self) -> bool {
        self == FileKind::Fifo
    }

    fn letter(self) -> u8 {
        match self {
            FileKind::File => b'f',
            FileKind::Dir => b'd',
            FileKind::Symlink => b'l',
            FileKind::Char => b'c',
            FileKind::Block => b'b',
            FileKind::Fifo => b'p',
            FileKind::Socket => b's',
        }
    }

    fn from_letter(c: u8) -> Option<FileKind> {
        Some(match c {
            b'f' => FileKind::File,
            b'd' => FileKind::Dir,
            b'l' => FileKind::Symlink,
            b'c' => FileKind::Char,
            b'b' => FileKind::Block,
            b'p' => FileKind::Fifo,
            b's' => FileKind::Socket,
            _ => return None,
        })
    }
}

/// A file's metadata as a layer records it (what `lstat` would show of the
/// extracted file, in whole seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    kind: FileKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    size: u64,
    rdev: u64,
    link: Option<PathBuf>,
}

impl Meta {
    /// The metadata of a file on disk (`link` is the symlink's target when
    /// the caller read it).
    pub fn from_std(m: &Metadata, link: Option<PathBuf>) -> Meta {
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_char_device() {
            FileKind::Char
        } else if ft.is_block_device() {
            FileKind::Block
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else if ft.is_socket() {
            FileKind::Socket
        } else {
            FileKind::File
        };
        Meta {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.mtime(),
            size: if kind == FileKind::File { m.len() } else { 0 },
            rdev: m.rdev(),
            link,
        }
    }

    /// The file's type.
    pub fn file_type(&self) -> FileKind {
        self.kind
    }
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.kind.is_dir()
    }
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.kind.is_file()
    }
    /// A symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.kind.is_symlink()
    }
    /// Permission bits, with setuid/setgid/sticky.
    pub fn mode(&self) -> u32 {
        self.mode
    }
    /// Owner.
    pub fn uid(&self) -> u32 {
        self.uid
    }
    /// Group.
    pub fn gid(&self) -> u32 {
        self.gid
    }
    /// Modification time (Unix seconds).
    pub fn mtime(&self) -> i64 {
        self.mtime
    }
    /// Size of a regular file's content (0 for anything else).
    pub fn len(&self) -> u64 {
        self.size
    }
    /// Whether the content is empty (or this is not a regular file).
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    /// Device numbers (`makedev`) of a device.
    pub fn rdev(&self) -> u64 {
        self.rdev
    }
    /// A symlink's target, when known without reading the disk.
    pub fn link_target(&self) -> Option<&Path> {
        self.link.as_deref()
    }
    /// An overlay whiteout (a 0/0 character device).
    pub fn is_whiteout(&self) -> bool {
        self.kind == FileKind::Char && self.rdev == 0
    }
}

/// A path of an index.
#[derive(Debug, Clone)]
enum Node {
    Dir(DirNode),
    Leaf(Meta),
    /// An overlay whiteout: hides this name in the layers below.
    Whiteout,
}

#[derive(Debug, Clone)]
struct DirNode {
    meta: Meta,
    opaque: bool,
    children: BTreeMap<Vec<u8>, Node>,
}

impl DirNode {
    /// A directory the applier makes for an entry whose parent is not
    /// listed (its time is the clock's there; the index says 0).
    fn implicit() -> DirNode {
        DirNode {
            meta: Meta {
                kind: FileKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 0,
                size: 0,
                rdev: 0,
                link: None,
            },
            opaque: false,
            children: BTreeMap::new(),
        }
    }
}

/// What a path of a layer is, for the merged view.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup<'a> {
    /// A directory (`opaque`: it hides the layers below).
    Dir(&'a Meta, bool),
    /// Anything else.
    Leaf(&'a Meta),
    /// A whiteout.
    Whiteout,
}

/// The metadata tree of one layer (see the module docs).
#[derive(Debug, Clone)]
pub struct LayerIndex {
    root: DirNode,
    /// Paths (and their parents) the layer created, joined with `/`, while
    /// it is being built: whiteouts apply to lower layers only.
    created: HashSet<Vec<u8>>,
}

impl Default for LayerIndex {
    fn default() -> LayerIndex {
        LayerIndex {
            root: DirNode::implicit(),
            created: HashSet::new(),
        }
    }
}

/// What one tar entry is, as the index needs it.
pub(crate) struct IndexEntry<'a> {
    pub(crate) path: &'a [u8],
    pub(crate) kind: tar::EntryType,
    pub(crate) meta: Meta,
    /// Symlink or hard link target.
    pub(crate) link: Option<&'a [u8]>,
}

impl LayerIndex {
    /// The index of an uncompressed layer tar, and the tar's diffID.
    pub fn from_tar(reader: impl Read) -> Result<(LayerIndex, Digest)> {
        let mut hashing = HashingReader::new(reader, Algorithm::Sha256);
        let mut index = LayerIndex::default();
        {
            let mut ar = tar::Archive::new(&mut hashing);
            let rd = |entry: Option<String>| move |source| Error::Read { entry, source };
            let mut last: Option<String> = None;
            for e in ar.entries().map_err(rd(None))? {
                let mut e = e.map_err(rd(last.clone()))?;
                let raw = e.path_bytes().into_owned();
                let name = String::from_utf8_lossy(&raw).into_owned();
                let kind = e.header().entry_type();
                let m = entry_meta(&mut e).map_err(rd(Some(name.clone())))?;
                let link = e.link_name_bytes().map(|l| l.into_owned());
                let (uid, gid) = (u32::try_from(m.uid), u32::try_from(m.gid));
                let (Ok(uid), Ok(gid)) = (uid, gid) else {
                    return Err(Error::invalid(name, "uid or gid out of range"));
                };
                let size = e.header().entry_size().unwrap_or(0);
                let rdev = rustix::fs::makedev(
                    e.header().device_major().ok().flatten().unwrap_or(0),
                    e.header().device_minor().ok().flatten().unwrap_or(0),
                );
                index.add(IndexEntry {
                    path: &raw,
                    kind,
                    meta: Meta {
                        kind: FileKind::File,
                        mode: m.mode,
                        uid,
                        gid,
                        mtime: m.mtime,
                        size,
                        rdev,
                        link: None,
                    },
                    link: link.as_deref(),
                })?;
                last = Some(name);
            }
        }
        io::copy(&mut hashing, &mut io::sink()).map_err(|source| Error::Read {
            entry: None,
            source,
        })?;
        let (diff_id, _) = hashing.finish();
        index.created = HashSet::new();
        Ok((index, diff_id))
    }

    /// The index of the layer [`write_layer`](crate::write_layer) makes of
    /// `entries` (sorted, as the writer sorts them) with `opts`.
    pub(crate) fn from_entries(entries: &[Entry], opts: &LayerOptions) -> Result<LayerIndex> {
        let mut index = LayerIndex::default();
        for e in entries {
            index.add_entry(e, opts)?;
        }
        index.created = HashSet::new();
        Ok(index)
    }

    /// Adds an entry the writer writes, with the values it writes.
    fn add_entry(&mut self, e: &Entry, opts: &LayerOptions) -> Result<()> {
        let path = e.path.as_os_str().as_bytes();
        let (kind, size, link, rdev): (_, u64, Option<&[u8]>, u64) = match &e.kind {
            EntryKind::File { size, .. } => (tar::EntryType::Regular, *size, None, 0),
            EntryKind::Dir => (tar::EntryType::Directory, 0, None, 0),
            EntryKind::Symlink(t) => (
                tar::EntryType::Symlink,
                0,
                Some(t.as_os_str().as_bytes()),
                0,
            ),
            EntryKind::Hardlink(t) => (tar::EntryType::Link, 0, Some(t.as_os_str().as_bytes()), 0),
            EntryKind::Char { major, minor } => (
                tar::EntryType::Char,
                0,
                None,
                rustix::fs::makedev(*major, *minor),
            ),
            EntryKind::Block { major, minor } => (
                tar::EntryType::Block,
                0,
                None,
                rustix::fs::makedev(*major, *minor),
            ),
            EntryKind::Fifo => (tar::EntryType::Fifo, 0, None, 0),
        };
        self.add(IndexEntry {
            path,
            kind,
            meta: Meta {
                kind: FileKind::File,
                mode: e.mode & 0o7777,
                uid: e.uid,
                gid: e.gid,
                mtime: tar_mtime(e, opts),
                size,
                rdev,
                link: None,
            },
            link,
        })
    }

    fn mark_created(&mut self, comps: &[Vec<u8>]) {
        for i in (1..=comps.len()).rev() {
            if !self.created.insert(comps[..i].join(&b'/')) {
                break;
            }
        }
    }

    /// The directory `comps`, made (as the applier makes missing parents)
    /// when absent. A symlink or file on the way cannot be indexed.
    fn dir_mut(&mut self, comps: &[Vec<u8>], entry: &str) -> Result<&mut DirNode> {
        let mut cur = &mut self.root;
        for c in comps {
            let node = cur
                .children
                .entry(c.clone())
                .or_insert_with(|| Node::Dir(DirNode::implicit()));
            if let Node::Whiteout = node {
                // The applier's mkdir finds the whiteout device there.
                return Err(Error::invalid(entry, "a parent is a whiteout"));
            }
            match node {
                Node::Dir(d) => cur = d,
                _ => {
                    return Err(Error::invalid(
                        entry,
                        "a parent is not a directory (the index does not follow links)",
                    ))
                }
            }
        }
        Ok(cur)
    }

    fn get(&self, comps: &[Vec<u8>]) -> Option<&Node> {
        let (last, parents) = comps.split_last()?;
        let mut cur = &self.root;
        for c in parents {
            match cur.children.get(c)? {
                Node::Dir(d) => cur = d,
                _ => return None,
            }
        }
        cur.children.get(last)
    }

    /// Adds one tar entry, as the applier applies it in overlay mode.
    pub(crate) fn add(&mut self, e: IndexEntry<'_>) -> Result<()> {
        let entry = String::from_utf8_lossy(e.path).into_owned();
        if matches!(
            e.kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let Some(comps) = clean_path(e.path, &entry)? else {
            return Ok(());
        };
        let (parent, base) = comps.split_at(comps.len() - 1);
        let base = &base[0];
        if base == b".wh..wh..opq" {
            self.dir_mut(parent, &entry)?.opaque = true;
            return Ok(());
        }
        if let Some(victim) = base.strip_prefix(b".wh.") {
            if victim.is_empty() || victim == b"." || victim == b".." {
                return Err(Error::unsafe_entry(&entry, "malformed whiteout"));
            }
            let mut vcomps = parent.to_vec();
            vcomps.push(victim.to_vec());
            if self.created.contains(&vcomps.join(&b'/')) {
                return Ok(());
            }
            self.dir_mut(parent, &entry)?
                .children
                .insert(victim.to_vec(), Node::Whiteout);
            return Ok(());
        }
        self.mark_created(&comps);
        let mut meta = e.meta;
        let node = match e.kind {
            tar::EntryType::Directory => {
                meta.kind = FileKind::Dir;
                meta.size = 0;
                let dir = self.dir_mut(parent, &entry)?;
                if let Some(Node::Dir(d)) = dir.children.get_mut(base) {
                    // Merged with what is there.
                    d.meta = meta;
                    return Ok(());
                }
                Node::Dir(DirNode {
                    meta,
                    opaque: false,
                    children: BTreeMap::new(),
                })
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                meta.kind = FileKind::File;
                Node::Leaf(meta)
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link
                    .ok_or_else(|| Error::invalid(&entry, "symlink without a target"))?;
                meta.kind = FileKind::Symlink;
                meta.size = 0;
                meta.link = Some(PathBuf::from(std::ffi::OsStr::from_bytes(target)));
                Node::Leaf(meta)
            }
            tar::EntryType::Link => {
                let target = e
                    .link
                    .ok_or_else(|| Error::invalid(&entry, "hard link without a target"))?;
                let tcomps = clean_path(target, &entry)?.ok_or_else(|| {
                    Error::unsafe_entry(&entry, "hard link to the root directory")
                })?;
                match self.get(&tcomps) {
                    Some(Node::Leaf(m)) if tcomps != comps => Node::Leaf(m.clone()),
                    Some(Node::Dir(_)) => {
                        return Err(Error::unsafe_entry(&entry, "hard link to a directory"))
                    }
                    _ => {
                        return Err(Error::invalid(
                            &entry,
                            "hard link target does not exist (or is not indexed)",
                        ))
                    }
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                meta.kind = match e.kind {
                    tar::EntryType::Char => FileKind::Char,
                    tar::EntryType::Block => FileKind::Block,
                    _ => FileKind::Fifo,
                };
                meta.size = 0;
                Node::Leaf(meta)
            }
            other => {
                return Err(Error::invalid(
                    &entry,
                    format!("unsupported tar entry type {other:?}"),
                ))
            }
        };
        self.dir_mut(parent, &entry)?
            .children
            .insert(base.clone(), node);
        Ok(())
    }

    /// What `comps` is in this layer alone.
    pub(crate) fn lookup(&self, comps: &[String]) -> Option<Lookup<'_>> {
        let mut cur = &self.root;
        if comps.is_empty() {
            return Some(Lookup::Dir(&cur.meta, cur.opaque));
        }
        for (i, c) in comps.iter().enumerate() {
            let node = cur.children.get(c.as_bytes())?;
            let last = i + 1 == comps.len();
            match node {
                Node::Whiteout => return Some(Lookup::Whiteout),
                Node::Leaf(m) => return last.then_some(Lookup::Leaf(m)),
                Node::Dir(d) => {
                    if last {
                        return Some(Lookup::Dir(&d.meta, d.opaque));
                    }
                    cur = d;
                }
            }
        }
        None
    }

    /// The names in directory `comps` (whiteouts included, flagged), or
    /// `None` when this layer has no directory there.
    pub(crate) fn children(&self, comps: &[String]) -> Option<Vec<(String, bool)>> {
        let mut cur = &self.root;
        for c in comps {
            match cur.children.get(c.as_bytes())? {
                Node::Dir(d) => cur = d,
                _ => return None,
            }
        }
        Some(
            cur.children
                .iter()
                .map(|(n, node)| {
                    (
                        String::from_utf8_lossy(n).into_owned(),
                        matches!(node, Node::Whiteout),
                    )
                })
                .collect(),
        )
    }

    /// Paths in the index.
    pub fn len(&self) -> usize {
        fn count(d: &DirNode) -> usize {
            d.children
                .values()
                .map(|n| match n {
                    Node::Dir(d) => 1 + count(d),
                    _ => 1,
                })
                .sum()
        }
        count(&self.root)
    }

    /// Whether the layer holds no path.
    pub fn is_empty(&self) -> bool {
        self.root.children.is_empty()
    }

    /// Writes the index to `path` (through a temporary file and a rename;
    /// its last line says it is whole, so no fsync is needed).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension(format!("tmp-{}", crate::snapshot::unique()));
        let res = (|| {
            let f = fs::File::create(&tmp)?;
            let mut w = io::BufWriter::new(f);
            w.write_all(b"strata-layer-index v1\n")?;
            let mut prefix = Vec::new();
            write_dir(&mut w, &mut prefix, &self.root)?;
            // No fsync: a file cut short by a crash lacks this line and is
            // not loaded (the index is read from the blob again).
            writeln!(w, "end {}", self.len())?;
            w.into_inner().map_err(|e| e.into_error())?;
            fs::rename(&tmp, path)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.ctx("write", path)
    }

    /// Reads an index [`LayerIndex::save`] wrote; `None` when there is
    /// none (or it is not one this version reads).
    pub fn load(path: &Path) -> Option<LayerIndex> {
        let f = fs::File::open(path).ok()?;
        let mut lines = io::BufReader::new(f).split(b'\n');
        if lines.next()?.ok()? != b"strata-layer-index v1" {
            return None;
        }
        let mut index = LayerIndex::default();
        for (count, line) in lines.enumerate() {
            let line = line.ok()?;
            if let Some(n) = line.strip_prefix(b"end ") {
                // The last line: the file is whole.
                let n: usize = std::str::from_utf8(n).ok()?.parse().ok()?;
                return (n == count).then_some(index);
            }
            let f: Vec<&[u8]> = line.split(|b| *b == b'\t').collect();
            let [kind, mode, uid, gid, mtime, size, rdev, opaque, path, link] = f[..] else {
                return None;
            };
            let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<i64>().ok();
            let path = hex::decode(path).ok()?;
            let comps: Vec<Vec<u8>> = path.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
            let (name, parent) = comps.split_last()?;
            let node = if kind == b"w" {
                Node::Whiteout
            } else {
                let link = if link.is_empty() {
                    None
                } else {
                    Some(PathBuf::from(std::ffi::OsStr::from_bytes(
                        &hex::decode(link).ok()?,
                    )))
                };
                let meta = Meta {
                    kind: FileKind::from_letter(*kind.first()?)?,
                    mode: u32::try_from(num(mode)?).ok()?,
                    uid: u32::try_from(num(uid)?).ok()?,
                    gid: u32::try_from(num(gid)?).ok()?,
                    mtime: num(mtime)?,
                    size: u64::try_from(num(size)?).ok()?,
                    rdev: u64::try_from(num(rdev)?).ok()?,
                    link,
                };
                if meta.kind == FileKind::Dir {
                    Node::Dir(DirNode {
                        meta,
                        opaque: opaque == b"1",
                        children: BTreeMap::new(),
                    })
                } else {
                    Node::Leaf(meta)
                }
            };
            let mut cur = &mut index.root;
            for c in parent {
                match cur.children.get_mut(c)? {
                    Node::Dir(d) => cur = d,
                    _ => return None,
                }
            }
            cur.children.insert(name.clone(), node);
        }
        None
    }
}

fn write_dir(w: &mut impl Write, prefix: &mut Vec<u8>, d: &DirNode) -> io::Result<()> {
    for (name, node) in &d.children {
        let len = prefix.len();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(name);
        match node {
            Node::Whiteout => writeln!(w, "w\t0\t0\t0\t0\t0\t0\t0\t{}\t", hex::encode(&prefix))?,
            Node::Leaf(m) => write_meta(w, prefix, m, false)?,
            Node::Dir(sub) => {
                write_meta(w, prefix, &sub.meta, sub.opaque)?;
                write_dir(w, prefix, sub)?;
            }
        }
        prefix.truncate(len);
    }
    Ok(())
}

fn write_meta(w: &mut impl Write, path: &[u8], m: &Meta, opaque: bool) -> io::Result<()> {
    let link = m
        .link
        .as_ref()
        .map(|l| hex::encode(l.as_os_str().as_bytes()))
        .unwrap_or_default();
    w.write_all(&[m.kind.letter()])?;
    writeln!(
        w,
        "\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{link}",
        m.mode,
        m.uid,
        m.gid,
        m.mtime,
        m.size,
        m.rdev,
        u8::from(opaque),
        hex::encode(path)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{write_layer, Timestamps};
    use strata_oci::Compression;

    fn c(s: &str) -> Vec<String> {
        crate::clean_components(s)
    }

    fn sample() -> Vec<Entry> {
        let mut f = Entry::file("usr/bin/tool", "x");
        f.mode = 0o4755;
        f.uid = 7;
        f.mtime = 1_900_000_000;
        let mut old = Entry::file("usr/lib/old", "y");
        old.mtime = 100;
        vec![
            Entry::new("usr", EntryKind::Dir),
            Entry::new("usr/bin", EntryKind::Dir),
            f,
            Entry::new("usr/bin/zlink", EntryKind::Hardlink("usr/bin/tool".into())),
            Entry::new("bin", EntryKind::Symlink("usr/bin".into())),
            Entry::new("usr/lib", EntryKind::Dir),
            old,
            Entry::new("dev", EntryKind::Dir),
            Entry::new("dev/null", EntryKind::Char { major: 1, minor: 3 }),
            Entry::file("etc/.wh.gone", ""),
            Entry::file("opt/.wh..wh..opq", ""),
            Entry::new("opt/new", EntryKind::Fifo),
        ]
    }

    fn opts() -> LayerOptions {
        LayerOptions {
            compression: Compression::None,
            level: None,
            timestamps: Timestamps::Clamp {
                since: 1_000_000_000,
                to: 5,
            },
            xattrs: true,
            foreign_times: Default::default(),
            tap: None,
        }
    }

    fn describe(i: &LayerIndex) -> Vec<u8> {
        let mut out = Vec::new();
        write_dir(&mut out, &mut Vec::new(), &i.root).unwrap();
        out
    }

    #[test]
    fn the_index_of_the_entries_is_the_index_of_their_tar() {
        let (info, tar) =
            write_layer(crate::LayerSource::Entries(sample()), &opts(), Vec::new()).unwrap();
        let (from_tar, diff_id) = LayerIndex::from_tar(&tar[..]).unwrap();
        assert_eq!(diff_id, info.diff_id);
        let mut sorted = sample();
        sorted.sort_by(|a, b| crate::writer::path_order(&a.path, &b.path));
        let from_entries = LayerIndex::from_entries(&sorted, &opts()).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&describe(&from_tar)),
            String::from_utf8_lossy(&describe(&from_entries))
        );
        // What the index says.
        let i = from_entries;
        let Some(Lookup::Leaf(m)) = i.lookup(&c("usr/bin/tool")) else {
            panic!("no tool")
        };
        assert_eq!((m.mode(), m.uid(), m.mtime(), m.len()), (0o4755, 7, 5, 1));
        let Some(Lookup::Leaf(m)) = i.lookup(&c("usr/bin/zlink")) else {
            panic!("no link")
        };
        assert_eq!(m.mode(), 0o4755);
        let Some(Lookup::Leaf(m)) = i.lookup(&c("usr/lib/old")) else {
            panic!("no old")
        };
        assert_eq!(m.mtime(), 100);
        let Some(Lookup::Leaf(m)) = i.lookup(&c("bin")) else {
            panic!("no bin")
        };
        assert_eq!(m.link_target(), Some(Path::new("usr/bin")));
        assert!(matches!(i.lookup(&c("etc/gone")), Some(Lookup::Whiteout)));
        assert!(matches!(i.lookup(&c("opt")), Some(Lookup::Dir(_, true))));
        assert!(matches!(i.lookup(&c("usr")), Some(Lookup::Dir(_, false))));
        assert!(i.lookup(&c("usr/missing")).is_none());
        assert!(i.lookup(&c("bin/tool")).is_none());
        assert_eq!(
            i.children(&c("usr/bin")).unwrap(),
            [("tool".to_owned(), false), ("zlink".to_owned(), false)]
        );
        assert_eq!(i.children(&c("etc")).unwrap(), [("gone".to_owned(), true)]);
    }

    #[test]
    fn saved_and_loaded_it_is_the_same() {
        let mut sorted = sample();
        sorted.sort_by(|a, b| crate::writer::path_order(&a.path, &b.path));
        let i = LayerIndex::from_entries(&sorted, &opts()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("idx");
        i.save(&p).unwrap();
        let back = LayerIndex::load(&p).unwrap();
        assert_eq!(describe(&back), describe(&i));
        assert_eq!(back.len(), i.len());
        // Cut short (a crash before the data reached the disk): not loaded.
        let whole = fs::read(&p).unwrap();
        fs::write(&p, &whole[..whole.len() - 8]).unwrap();
        assert!(LayerIndex::load(&p).is_none());
        fs::write(&p, b"something else\n").unwrap();
        assert!(LayerIndex::load(&p).is_none());
    }

    #[test]
    fn whiteouts_of_what_the_layer_made_are_ignored_and_files_replace_dirs() {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind) in [
            ("a/", tar::EntryType::Directory),
            ("a/x", tar::EntryType::Regular),
            ("a/.wh.x", tar::EntryType::Regular),
            ("a", tar::EntryType::Regular),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_size(0);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &[][..]).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let (i, _) = LayerIndex::from_tar(&tar[..]).unwrap();
        assert!(matches!(i.lookup(&c("a")), Some(Lookup::Leaf(_))));
        assert!(i.lookup(&c("a/x")).is_none());
    }
}
