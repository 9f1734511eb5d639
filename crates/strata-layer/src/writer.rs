//! The deterministic layer writer: a directory tree or a list of entries
//! becomes a tar stream, hashed (diffID), compressed and hashed again
//! (digest) in one pass.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use strata_oci::{Compression, Descriptor, Digest, HashingWriter, Store};

use crate::error::IoContext;
use crate::{Error, Result};

/// File timestamps written into layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    /// Every mtime is this Unix time (SOURCE_DATE_EPOCH, or 0).
    Epoch(i64),
    /// Keep the files' mtimes (whole seconds).
    Preserve,
    /// Files modified at or after `since` get `to`; older mtimes are kept.
    ///
    /// For a RUN step's changes: what the command wrote has the build's
    /// clock time and gets SOURCE_DATE_EPOCH, while what it brought from
    /// its inputs keeps the time those carry (dpkg and tar restore the
    /// packaged mtimes; a copied-up file keeps its lower layer's). Python's
    /// `.pyc` files record their source's mtime, so flattening the packaged
    /// times would make every interpreter start recompile the stdlib.
    Clamp {
        /// The step's start (Unix seconds).
        since: i64,
        /// The time written for newer files.
        to: i64,
    },
}

/// The gzip level layers are written at. 5, not zlib's default 6: on
/// layers of binaries, text and packages (measured in bench/README.md) it
/// takes a fifth less CPU for 0.15-0.3 % more bytes. Changing it changes
/// every layer digest (never a diffID or image ID).
pub const GZIP_LEVEL: i32 = 5;

/// How to write a layer.
#[derive(Debug, Clone)]
pub struct LayerOptions {
    /// Compression of the blob.
    pub compression: Compression,
    /// Compression level (gzip 0-9, default [`GZIP_LEVEL`]; zstd 1-19,
    /// default 3).
    pub level: Option<i32>,
    /// File timestamps.
    pub timestamps: Timestamps,
    /// Write extended attributes (always without `trusted.overlay.*` and
    /// `security.selinux`, which describe the host, not the image).
    pub xattrs: bool,
    /// With [`Timestamps::Clamp`]: mtimes (whole seconds) that also get the
    /// clamp's time, however old: the times files in a step's cache mounts
    /// carry, which a `cp -p` out of the mount would bring into the layer
    /// although no key holds them.
    pub foreign_times: std::collections::BTreeSet<i64>,
    /// Something to show each layer's uncompressed tar to while it is
    /// written (the post-build analysis), so nobody has to read it back.
    pub tap: Option<TapFactory>,
}

/// Sees a layer's uncompressed tar while it is written
/// ([`LayerOptions::tap`]).
pub trait TarTap: Send {
    /// The next bytes of the tar stream (the bytes the diffID hashes).
    fn write(&mut self, data: &[u8]);
    /// The layer is complete and in its destination. A tap dropped without
    /// this saw a layer that failed.
    fn finish(self: Box<Self>, info: &LayerInfo);
}

/// Makes one [`TarTap`] for each layer written.
#[derive(Clone)]
pub struct TapFactory(pub std::sync::Arc<dyn Fn() -> Box<dyn TarTap> + Send + Sync>);

impl std::fmt::Debug for TapFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TapFactory")
    }
}

/// A finished layer's tap, waiting for the layer to be committed
/// ([`Tapped::done`]); dropped, it tells the tap the layer failed.
#[must_use]
pub(crate) struct Tapped(Option<Box<dyn TarTap>>);

impl Tapped {
    pub(crate) fn done(self, info: &LayerInfo) {
        if let Some(t) = self.0 {
            t.finish(info);
        }
    }
}

impl Default for LayerOptions {
    fn default() -> LayerOptions {
        LayerOptions::new(Compression::Gzip)
    }
}

impl LayerOptions {
    /// Options with `compression`, every mtime 0 (set `timestamps` for
    /// another epoch: the caller resolves `SOURCE_DATE_EPOCH`), xattrs on.
    pub fn new(compression: Compression) -> LayerOptions {
        LayerOptions {
            compression,
            level: None,
            timestamps: Timestamps::Epoch(0),
            xattrs: true,
            foreign_times: Default::default(),
            tap: None,
        }
    }
}

/// What a written layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 of the blob.
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// Uncompressed tar size.
    pub uncompressed_size: u64,
    /// The OCI layer media type for the compression.
    pub media_type: String,
}

impl LayerInfo {
    /// The blob's descriptor.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.media_type.clone(), self.digest.clone(), self.size)
    }
}

/// Where a regular file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A file on disk (opened without following symlinks).
    Path(PathBuf),
    /// Bytes in memory.
    Bytes(Vec<u8>),
}

/// The kind of a layer entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file of `size` bytes.
    File {
        /// Content.
        source: FileSource,
        /// Exact size (the content must have it).
        size: u64,
    },
    /// A directory.
    Dir,
    /// A symbolic link to this target.
    Symlink(PathBuf),
    /// A hard link to an earlier entry (path inside the layer).
    Hardlink(PathBuf),
    /// A character device.
    Char {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    Block {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// One entry of a layer, for [`write_layer`] with [`LayerSource::Entries`]
/// (what COPY produces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the layer, relative (`usr/bin/x`), no `..`.
    pub path: PathBuf,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits, with setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (used with [`Timestamps::Preserve`] and
    /// [`Timestamps::Clamp`]).
    pub mtime: i64,
    /// Extended attributes, by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// An entry with mode 0o644 (0o755 for directories), root-owned, no xattrs.
    pub fn new(path: impl Into<PathBuf>, kind: EntryKind) -> Entry {
        let mode = if kind == EntryKind::Dir { 0o755 } else { 0o644 };
        Entry {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
        }
    }

    /// A regular file with in-memory content.
    pub fn file(path: impl Into<PathBuf>, data: impl Into<Vec<u8>>) -> Entry {
        let data = data.into();
        let size = data.len() as u64;
        Entry::new(
            path,
            EntryKind::File {
                source: FileSource::Bytes(data),
                size,
            },
        )
    }
}

/// What a layer is written from.
#[derive(Debug)]
pub enum LayerSource<'a> {
    /// Every entry under a directory (not the directory itself).
    Dir(&'a Path),
    /// An explicit list (sorted by the writer).
    Entries(Vec<Entry>),
}

/// Compare paths component by component: parents before children, siblings
/// in byte order (the order of a sorted directory walk).
pub(crate) fn path_order(a: &Path, b: &Path) -> std::cmp::Ordering {
    a.components()
        .map(|c| c.as_os_str().as_bytes())
        .cmp(b.components().map(|c| c.as_os_str().as_bytes()))
}

/// Whether an xattr is written into layers.
pub(crate) fn keep_xattr(name: &str) -> bool {
    !(name.starts_with("trusted.overlay.")
        || name == "security.selinux"
        || name.starts_with("user.overlay.")
        || name.starts_with("user.fuseoverlayfs."))
}

/// The xattr holding a file's capabilities.
const FCAP_XATTR: &str = "security.capability";

/// A `security.capability` value in the portable form layers carry:
/// revision 3 (what the kernel stores for a capability set in a user
/// namespace, with that namespace's root id; what root reads of a file
/// set so elsewhere) becomes revision 2, without the root id, as setcap
/// run as root writes it; so a rootless build's layer equals root's.
/// Anything else is kept as it is.
pub(crate) fn portable_fcap(v: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const REVISION_MASK: u32 = 0xff00_0000;
    const REVISION_2: u32 = 0x0200_0000;
    const REVISION_3: u32 = 0x0300_0000;
    match v {
        [a, b, c, d, rest @ ..] if rest.len() == 20 => {
            let magic = u32::from_le_bytes([*a, *b, *c, *d]);
            if magic & REVISION_MASK != REVISION_3 {
                return std::borrow::Cow::Borrowed(v);
            }
            let magic = (magic & !REVISION_MASK) | REVISION_2;
            let mut out = magic.to_le_bytes().to_vec();
            out.extend_from_slice(&rest[..16]);
            std::borrow::Cow::Owned(out)
        }
        _ => std::borrow::Cow::Borrowed(v),
    }
}

/// One xattr of a path (not following symlinks): `None` when it is not set
/// or the file system has none. The buffer grows to the value's size, so a
/// long value is read whole, never taken for "absent".
pub fn get_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let mut value = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut value[..]) {
            Ok(len) => {
                value.truncate(len);
                return Ok(Some(value));
            }
            Err(rustix::io::Errno::RANGE) if value.len() < 1 << 20 => {
                let want = rustix::fs::lgetxattr(path, name, &mut [0u8; 0][..]).unwrap_or(0);
                value.resize(want.max(value.len() * 4), 0);
            }
            Err(rustix::io::Errno::NODATA)
            | Err(rustix::io::Errno::NOTSUP)
            | Err(rustix::io::Errno::PERM) => return Ok(None),
            Err(e) => return Err(e).ctx("read xattr of", path),
        }
    }
}

/// Read a path's xattrs (not following symlinks), sorted by name.
pub(crate) fn read_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    read_named_xattrs(path, &list_xattrs(path)?)
}

/// The names of `path`'s extended attributes (none where the file system
/// has none or refuses to list them).
pub(crate) fn list_xattrs(path: &Path) -> Result<Vec<String>> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) | Err(rustix::io::Errno::PERM) => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx("list xattrs of", path),
        }
    };
    Ok(names[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|raw| std::str::from_utf8(raw).ok())
        .map(str::to_owned)
        .collect())
}

/// The values of the attributes `names` of `path` (those still there),
/// sorted by name.
fn read_named_xattrs(path: &Path, names: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in names {
        if let Some(value) = get_xattr(path, name)? {
            out.push((name.clone(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Entries of a directory tree, sorted, hard links detected by device and
/// inode (the first path in order carries the content).
pub fn scan_dir(root: &Path, xattrs: bool) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut seen: HashMap<(u64, u64), PathBuf> = HashMap::new();
    scan_into(root, Path::new(""), xattrs, &mut seen, &mut out)?;
    Ok(out)
}

fn scan_into(
    root: &Path,
    rel: &Path,
    xattrs: bool,
    seen: &mut HashMap<(u64, u64), PathBuf>,
    out: &mut Vec<Entry>,
) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .ctx("list", &dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .ctx("list", &dir)?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let rel_path = rel.join(&name);
        let abs = root.join(&rel_path);
        let meta = fs::symlink_metadata(&abs).ctx("stat", &abs)?;
        let entry = entry_from_meta(&abs, rel_path.clone(), &meta, xattrs, seen)?;
        let is_dir = entry.kind == EntryKind::Dir;
        out.push(entry);
        if is_dir {
            scan_into(root, &rel_path, xattrs, seen, out)?;
        }
    }
    Ok(())
}

pub(crate) fn entry_from_meta(
    abs: &Path,
    rel: PathBuf,
    meta: &fs::Metadata,
    xattrs: bool,
    seen: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<Entry> {
    let names = if xattrs {
        Some(list_xattrs(abs)?)
    } else {
        None
    };
    entry_from_listed(abs, rel, meta, names.as_deref(), seen)
}

/// [`entry_from_meta`] with the file's xattr names already listed (`None`:
/// no xattrs wanted).
pub(crate) fn entry_from_listed(
    abs: &Path,
    rel: PathBuf,
    meta: &fs::Metadata,
    xattr_names: Option<&[String]>,
    seen: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<Entry> {
    let ft = meta.file_type();
    let rdev = meta.rdev();
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let mut kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink(fs::read_link(abs).ctx("read link", abs)?)
    } else if ft.is_file() {
        EntryKind::File {
            source: FileSource::Path(abs.to_owned()),
            size: meta.len(),
        }
    } else if ft.is_char_device() {
        EntryKind::Char { major, minor }
    } else if ft.is_block_device() {
        EntryKind::Block { major, minor }
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else {
        return Err(Error::invalid(
            abs.display().to_string(),
            "sockets cannot be stored in a layer",
        ));
    };
    if !ft.is_dir() && meta.nlink() > 1 {
        match seen.get(&(meta.dev(), meta.ino())) {
            Some(first) => kind = EntryKind::Hardlink(first.clone()),
            None => {
                seen.insert((meta.dev(), meta.ino()), rel.clone());
            }
        }
    }
    let xattrs = match xattr_names {
        Some(names) => {
            let kept: Vec<String> = names.iter().filter(|n| keep_xattr(n)).cloned().collect();
            if kept.is_empty() {
                Vec::new()
            } else {
                read_named_xattrs(abs, &kept)?
            }
        }
        None => Vec::new(),
    };
    Ok(Entry {
        path: rel,
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        xattrs,
    })
}

/// The compressor in the middle of the pipeline.
enum Compressor<W: Write> {
    None(W),
    Gzip(crate::pgzip::ParGzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> Compressor<W> {
    fn new(inner: W, compression: Compression, level: Option<i32>) -> io::Result<Compressor<W>> {
        Ok(match compression {
            Compression::None => Compressor::None(inner),
            Compression::Gzip => {
                let level = level.unwrap_or(GZIP_LEVEL).clamp(0, 9) as u32;
                // Fixed header (no name, no mtime, OS byte 255), blocks
                // compressed in parallel with a fixed block size.
                Compressor::Gzip(crate::pgzip::ParGzEncoder::new(inner, level))
            }
            Compression::Zstd => Compressor::Zstd(zstd::stream::write::Encoder::new(
                inner,
                level.unwrap_or(3),
            )?),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(w) => w.finish(),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

/// Feeds its inner writer in fixed-size chunks whatever the caller's write
/// sizes, so the compressor sees the same calls for the same bytes (zlib-rs
/// output depends on how input is split).
struct Chunker<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

const CHUNK: usize = 128 * 1024;

impl<W: Write> Chunker<W> {
    fn new(inner: W) -> Self {
        Chunker {
            inner,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf)?;
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for Chunker<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        if !self.buf.is_empty() {
            let take = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK {
                self.inner.write_all(&self.buf)?;
                self.buf.clear();
            }
        }
        while data.len() >= CHUNK {
            self.inner.write_all(&data[..CHUNK])?;
            data = &data[CHUNK..];
        }
        self.buf.extend_from_slice(data);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing would split the stream differently; data goes at finish.
        Ok(())
    }
}

/// A tar stream being written with hashes on both sides of the compressor.
pub(crate) struct TarSink<W: Write> {
    out: HashingWriter<Chunker<Compressor<HashingWriter<W>>>>,
    compression: Compression,
    tap: Option<Box<dyn TarTap>>,
}

impl<W: Write> TarSink<W> {
    pub(crate) fn new(out: W, opts: &LayerOptions) -> io::Result<TarSink<W>> {
        Ok(TarSink {
            out: HashingWriter::new(Chunker::new(Compressor::new(
                HashingWriter::new(out),
                opts.compression,
                opts.level,
            )?)),
            compression: opts.compression,
            tap: opts.tap.as_ref().map(|f| (f.0)()),
        })
    }

    pub(crate) fn finish(mut self) -> io::Result<(LayerInfo, W, Tapped)> {
        // End of archive: two zero blocks.
        self.write_all(&[0u8; 1024])?;
        self.finish_raw()
    }

    /// Finish without adding end-of-archive blocks (for passed-through tars).
    pub(crate) fn finish_raw(self) -> io::Result<(LayerInfo, W, Tapped)> {
        let tapped = Tapped(self.tap);
        let (chunker, diff_id, uncompressed_size) = self.out.finish();
        let inner = chunker.finish()?.finish()?;
        let (mut w, digest, size) = inner.finish();
        w.flush()?;
        Ok((
            LayerInfo {
                diff_id,
                digest,
                size,
                uncompressed_size,
                media_type: self.compression.oci_media_type().to_owned(),
            },
            w,
            tapped,
        ))
    }
}

impl<W: Write> Write for TarSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        if let Some(t) = &mut self.tap {
            t.write(&buf[..n]);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

const OCTAL_MAX_7: u64 = 0o7777777;
const OCTAL_MAX_11: u64 = 0o77777777777;

fn put_octal(field: &mut [u8], v: u64) {
    // width-1 digits, NUL terminated.
    let n = field.len();
    let s = format!("{:0width$o}", v, width = n - 1);
    field[..n - 1].copy_from_slice(s.as_bytes());
    field[n - 1] = 0;
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "%d %s=%s\n", the length counting itself.
    let base = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = base + 1;
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

#[allow(clippy::too_many_arguments)]
fn header_block(
    name: &[u8],
    typeflag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: &[u8],
    dev: (u32, u32),
) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    put_octal(&mut h[100..108], u64::from(mode & 0o7777));
    put_octal(&mut h[108..116], uid.min(OCTAL_MAX_7));
    put_octal(&mut h[116..124], gid.min(OCTAL_MAX_7));
    put_octal(&mut h[124..136], size.min(OCTAL_MAX_11));
    put_octal(&mut h[136..148], mtime.min(OCTAL_MAX_11));
    h[156] = typeflag;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    if matches!(typeflag, b'3' | b'4') {
        put_octal(&mut h[329..337], u64::from(dev.0));
        put_octal(&mut h[337..345], u64::from(dev.1));
    }
    // Checksum: sum of bytes with the field as spaces, "%06o\0 ".
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// The mtime the tar records for `e` with `opts`.
pub(crate) fn tar_mtime(e: &Entry, opts: &LayerOptions) -> i64 {
    match opts.timestamps {
        Timestamps::Epoch(t) => t,
        Timestamps::Preserve => e.mtime,
        Timestamps::Clamp { since, to } => {
            if e.mtime >= since || opts.foreign_times.contains(&e.mtime) {
                to
            } else {
                e.mtime
            }
        }
    }
}

/// Write one entry's header(s) and content.
pub(crate) fn write_entry<W: Write>(out: &mut W, e: &Entry, opts: &LayerOptions) -> Result<()> {
    let ename = || e.path.display().to_string();
    let mut name = e.path.as_os_str().as_bytes().to_vec();
    if name.is_empty()
        || name.starts_with(b"/")
        || e.path.components().any(|c| c.as_os_str() == "..")
    {
        return Err(Error::invalid(
            ename(),
            "layer entry paths are relative and have no '..'",
        ));
    }
    let (typeflag, size, link): (u8, u64, Vec<u8>) = match &e.kind {
        EntryKind::File { size, .. } => (b'0', *size, Vec::new()),
        EntryKind::Dir => {
            name.push(b'/');
            (b'5', 0, Vec::new())
        }
        EntryKind::Symlink(t) => (b'2', 0, t.as_os_str().as_bytes().to_vec()),
        EntryKind::Hardlink(t) => (b'1', 0, t.as_os_str().as_bytes().to_vec()),
        EntryKind::Char { .. } => (b'3', 0, Vec::new()),
        EntryKind::Block { .. } => (b'4', 0, Vec::new()),
        EntryKind::Fifo => (b'6', 0, Vec::new()),
    };
    let dev = match e.kind {
        EntryKind::Char { major, minor } | EntryKind::Block { major, minor } => (major, minor),
        _ => (0, 0),
    };
    let mtime = tar_mtime(e, opts);
    let mut pax = Vec::new();
    if name.len() > 100 {
        pax.extend(pax_record("path", &name));
    }
    if link.len() > 100 {
        pax.extend(pax_record("linkpath", &link));
    }
    if size > OCTAL_MAX_11 {
        pax.extend(pax_record("size", size.to_string().as_bytes()));
    }
    if u64::from(e.uid) > OCTAL_MAX_7 {
        pax.extend(pax_record("uid", e.uid.to_string().as_bytes()));
    }
    if u64::from(e.gid) > OCTAL_MAX_7 {
        pax.extend(pax_record("gid", e.gid.to_string().as_bytes()));
    }
    if mtime < 0 || mtime as u64 > OCTAL_MAX_11 {
        pax.extend(pax_record("mtime", mtime.to_string().as_bytes()));
    }
    if opts.xattrs {
        let mut xs: Vec<&(String, Vec<u8>)> =
            e.xattrs.iter().filter(|(n, _)| keep_xattr(n)).collect();
        xs.sort();
        for (k, v) in xs {
            let v = if k == FCAP_XATTR {
                portable_fcap(v)
            } else {
                std::borrow::Cow::Borrowed(v.as_slice())
            };
            pax.extend(pax_record(&format!("SCHILY.xattr.{k}"), &v));
        }
    }
    let write = |out: &mut W, data: &[u8]| {
        out.write_all(data).map_err(|source| Error::Read {
            entry: Some(ename()),
            source,
        })
    };
    let mt = mtime.max(0) as u64;
    if !pax.is_empty() {
        // Name like Go's archive/tar: dir/PaxHeaders.0/base, cut to 100 bytes.
        let p = Path::new(OsStr::from_bytes(name.strip_suffix(b"/").unwrap_or(&name)));
        let base = p
            .file_name()
            .map(|b| b.as_bytes().to_vec())
            .unwrap_or_default();
        let mut pname = p
            .parent()
            .map(|d| d.as_os_str().as_bytes().to_vec())
            .unwrap_or_default();
        if !pname.is_empty() {
            pname.push(b'/');
        }
        pname.extend_from_slice(b"PaxHeaders.0/");
        pname.extend_from_slice(&base);
        pname.truncate(100);
        let h = header_block(&pname, b'x', 0o644, 0, 0, pax.len() as u64, mt, &[], (0, 0));
        write(out, &h)?;
        write(out, &pax)?;
        write(out, &vec![0u8; padding(pax.len() as u64)])?;
    }
    let h = header_block(
        &name,
        typeflag,
        e.mode,
        u64::from(e.uid),
        u64::from(e.gid),
        size,
        mt,
        &link,
        dev,
    );
    write(out, &h)?;
    if let EntryKind::File { source, size } = &e.kind {
        let copied = match source {
            FileSource::Bytes(b) => {
                if b.len() as u64 != *size {
                    return Err(Error::invalid(
                        ename(),
                        "content length differs from the entry size",
                    ));
                }
                write(out, b)?;
                *size
            }
            FileSource::Path(p) => {
                let f = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(p)
                    .ctx("open", p)?;
                copy_file(f.take(*size), out).ctx("read", p)?
            }
        };
        if copied != *size {
            return Err(Error::invalid(
                ename(),
                format!("file changed while being read ({copied} of {size} bytes)"),
            ));
        }
        write(out, &vec![0u8; padding(*size)])?;
    }
    Ok(())
}

/// Copies a file's content in 128 KiB reads (`io::copy` would make 8 KiB
/// ones): few syscalls, and whole chunks for the compressor.
fn copy_file(mut r: impl Read, out: &mut impl Write) -> io::Result<u64> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.len() < CHUNK {
            buf.resize(CHUNK, 0);
        }
        let mut total = 0u64;
        loop {
            let n = match r.read(&mut buf[..]) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            out.write_all(&buf[..n])?;
            total += n as u64;
        }
    })
}

fn padding(n: u64) -> usize {
    ((512 - n % 512) % 512) as usize
}

/// Sort entries (parents first, siblings by name) and check them.
pub(crate) fn prepare_entries(mut entries: Vec<Entry>) -> Result<Vec<Entry>> {
    entries.sort_by(|a, b| path_order(&a.path, &b.path));
    for w in entries.windows(2) {
        if path_order(&w[0].path, &w[1].path).is_eq() {
            return Err(Error::invalid(
                w[0].path.display().to_string(),
                "appears twice in the entry list",
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for e in &entries {
        if let EntryKind::Hardlink(t) = &e.kind {
            if !seen.contains(t.as_path()) {
                return Err(Error::invalid(
                    e.path.display().to_string(),
                    format!("hard link to {} which is not an earlier entry", t.display()),
                ));
            }
        }
        seen.insert(e.path.as_path());
    }
    Ok(entries)
}

/// Write a layer from `source` to `out`, computing its diffID and digest in
/// the same pass. The same input always gives the same bytes.
pub fn write_layer<W: Write>(
    source: LayerSource<'_>,
    opts: &LayerOptions,
    out: W,
) -> Result<(LayerInfo, W)> {
    let entries = match source {
        LayerSource::Dir(dir) => scan_dir(dir, opts.xattrs)?,
        LayerSource::Entries(e) => e,
    };
    let entries = prepare_entries(entries)?;
    let mut sink = TarSink::new(out, opts).map_err(|source| Error::Read {
        entry: None,
        source,
    })?;
    for e in &entries {
        write_entry(&mut sink, e, opts)?;
    }
    let (info, out, tapped) = sink.finish().map_err(|source| Error::Read {
        entry: None,
        source,
    })?;
    tapped.done(&info);
    Ok((info, out))
}

/// Pass a tar stream (plain, gzip or zstd) through as a layer: the
/// uncompressed bytes are kept as they are (so the diffID is the sha256 of
/// the input tar) and recompressed with the fixed settings of `opts`, so the
/// same input always gives the same digest. Every entry is checked on the
/// way: a name that is absolute or climbs with `..` refuses the tarball.
pub fn import_tar<R: Read, W: Write>(
    reader: R,
    opts: &LayerOptions,
    out: W,
) -> Result<(LayerInfo, W)> {
    let (info, out, tapped) = import_tar_tapped(reader, opts, out)?;
    tapped.done(&info);
    Ok((info, out))
}

/// [`import_tar`], leaving the tap to the caller.
fn import_tar_tapped<R: Read, W: Write>(
    reader: R,
    opts: &LayerOptions,
    out: W,
) -> Result<(LayerInfo, W, Tapped)> {
    struct Tee<'a, R: Read, W: Write> {
        inner: R,
        sink: &'a mut TarSink<W>,
    }
    impl<R: Read, W: Write> Read for Tee<'_, R, W> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.sink.write_all(&buf[..n])?;
            Ok(n)
        }
    }
    let rd = |source| Error::Read {
        entry: None,
        source,
    };
    let (_, plain) = crate::decompress(reader).map_err(rd)?;
    let mut sink = TarSink::new(out, opts).map_err(rd)?;
    {
        let mut tee = Tee {
            inner: plain,
            sink: &mut sink,
        };
        {
            let mut ar = tar::Archive::new(&mut tee);
            let mut last: Option<String> = None;
            for e in ar.entries().map_err(rd)? {
                let mut e = e.map_err(|source| Error::Read {
                    entry: last.clone(),
                    source,
                })?;
                let raw = e.path_bytes().into_owned();
                let name = String::from_utf8_lossy(&raw).into_owned();
                crate::apply::clean_path(&raw, &name)?;
                if e.header().entry_type() == tar::EntryType::Link {
                    if let Some(t) = e.link_name_bytes() {
                        crate::apply::clean_path(&t, &name)?;
                    }
                }
                io::copy(&mut e, &mut io::sink()).map_err(|source| Error::Read {
                    entry: Some(name.clone()),
                    source,
                })?;
                last = Some(name);
            }
        }
        io::copy(&mut tee, &mut io::sink()).map_err(rd)?;
    }
    sink.finish_raw().map_err(rd)
}

/// [`import_tar`] straight into the content store.
pub fn import_tar_to_store(
    store: &Store,
    reader: impl Read,
    opts: &LayerOptions,
) -> Result<LayerInfo> {
    let mut writer = store.unique_writer()?;
    let res = import_tar_tapped(
        reader,
        opts,
        io::BufWriter::with_capacity(256 * 1024, &mut writer),
    )
    .and_then(|(info, buf, tapped)| {
        buf.into_inner()
            .map(|_| (info, tapped))
            .map_err(|e| Error::Read {
                entry: None,
                source: e.into_error(),
            })
    });
    match res {
        Ok((info, tapped)) => {
            writer.commit(Some(info.size), Some(&info.digest))?;
            tapped.done(&info);
            Ok(info)
        }
        Err(e) => {
            let _ = writer.abort();
            Err(crate::snapshot::no_space_in_store(
                e,
                "write a layer into",
                &store.root().join("ingest"),
            ))
        }
    }
}

/// [`write_layer`] straight into the content store: one streaming pass,
/// committed with the computed size and digest.
pub fn write_layer_to_store(
    store: &Store,
    source: LayerSource<'_>,
    opts: &LayerOptions,
) -> Result<LayerInfo> {
    let entries = match source {
        LayerSource::Dir(dir) => scan_dir(dir, opts.xattrs)?,
        LayerSource::Entries(e) => e,
    };
    let entries = prepare_entries(entries)?;
    write_sorted_to_store(store, &entries, opts, None)
}

/// Writes entries (already sorted and checked by [`prepare_entries`]) into
/// the content store; the uncompressed tar stream also goes to `tee`.
pub(crate) fn write_sorted_to_store(
    store: &Store,
    entries: &[Entry],
    opts: &LayerOptions,
    tee: Option<&mut dyn Write>,
) -> Result<LayerInfo> {
    let mut writer = store.unique_writer()?;
    let res = (|| {
        let out = io::BufWriter::with_capacity(256 * 1024, &mut writer);
        let rd = |source| Error::Read {
            entry: None,
            source,
        };
        let mut sink = TarSink::new(out, opts).map_err(rd)?;
        match tee {
            None => {
                for e in entries {
                    write_entry(&mut sink, e, opts)?;
                }
            }
            Some(tee) => {
                let mut both = Tee {
                    sink: &mut sink,
                    tee,
                };
                for e in entries {
                    write_entry(&mut both, e, opts)?;
                }
                // End of archive, for the tee (the sink adds its own).
                both.tee.write_all(&[0u8; 1024]).map_err(rd)?;
            }
        }
        let (info, buf, tapped) = sink.finish().map_err(rd)?;
        buf.into_inner().map_err(|e| rd(e.into_error()))?;
        Ok((info, tapped))
    })();
    match res {
        Ok((info, tapped)) => {
            writer.commit(Some(info.size), Some(&info.digest))?;
            tapped.done(&info);
            Ok(info)
        }
        Err(e) => {
            let _ = writer.abort();
            Err(crate::snapshot::no_space_in_store(
                e,
                "write a layer into",
                &store.root().join("ingest"),
            ))
        }
    }
}

/// Writes to the layer and to a tee (which should not fail: its error
/// fails the layer).
struct Tee<'a, W: Write> {
    sink: &'a mut W,
    tee: &'a mut dyn Write,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.sink.write(buf)?;
        self.tee.write_all(&buf[..n])?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_does_not_depend_on_how_input_is_split() {
        struct Dribble<'a>(&'a [u8], usize);
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.1.min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let big: Vec<u8> = (0..600_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 % 7)
            .collect();
        let (_, tar_bytes) = write_layer(
            LayerSource::Entries(vec![Entry::file("big", big)]),
            &LayerOptions::new(Compression::None),
            Vec::new(),
        )
        .unwrap();
        for c in [Compression::Gzip, Compression::Zstd] {
            let opts = LayerOptions::new(c);
            let whole = import_tar(&tar_bytes[..], &opts, Vec::new()).unwrap();
            for step in [1usize, 511, 4096, 70_001] {
                let split = import_tar(Dribble(&tar_bytes, step), &opts, Vec::new()).unwrap();
                assert_eq!(split.0, whole.0, "{c:?} step {step}");
            }
        }
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for (k, v) in [
            ("path", "a".repeat(5)),
            ("path", "a".repeat(93)),
            ("path", "b".repeat(994)),
        ] {
            let r = pax_record(k, v.as_bytes());
            let s = String::from_utf8(r.clone()).unwrap();
            let n: usize = s.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(n, r.len(), "{s}");
        }
    }

    #[test]
    fn entries_are_sorted_parent_first_and_checked() {
        let e = |p: &str| Entry::file(p, "");
        let sorted = prepare_entries(vec![e("a-b"), e("a/b"), e("a"), e("B")]).unwrap();
        let names: Vec<_> = sorted
            .iter()
            .map(|e| e.path.display().to_string())
            .collect();
        assert_eq!(names, ["B", "a", "a/b", "a-b"]);
        assert!(prepare_entries(vec![e("x"), e("x")]).is_err());
        let link = Entry::new("a", EntryKind::Hardlink("z".into()));
        assert!(prepare_entries(vec![link, e("z")]).is_err());
    }

    #[test]
    fn clamp_keeps_older_mtimes_and_stamps_newer_ones() {
        let mut old = Entry::file("old", "o");
        old.mtime = 1_600_000_000;
        let mut new = Entry::file("new", "n");
        new.mtime = 1_800_000_000;
        let mut edge = Entry::file("edge", "e");
        edge.mtime = 1_700_000_000;
        // An old time that a file in a cache mount carries: stamped too.
        let mut foreign = Entry::file("foreign", "f");
        foreign.mtime = 42;
        let opts = LayerOptions {
            compression: Compression::None,
            level: None,
            timestamps: Timestamps::Clamp {
                since: 1_700_000_000,
                to: 5,
            },
            xattrs: false,
            foreign_times: [42].into(),
            tap: None,
        };
        let (_, bytes) = write_layer(
            LayerSource::Entries(vec![old, new, edge, foreign]),
            &opts,
            Vec::new(),
        )
        .unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        let got: Vec<(String, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let p = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                (p, e.header().mtime().unwrap())
            })
            .collect();
        assert_eq!(
            got,
            [
                ("edge".to_owned(), 5),
                ("foreign".to_owned(), 5),
                ("new".to_owned(), 5),
                ("old".to_owned(), 1_600_000_000)
            ]
        );
    }

    #[test]
    fn file_capabilities_are_written_in_revision_2() {
        // cap_net_bind_service+ep as setcap writes it (revision 2) ...
        let v2 = hex("0100000200040000000000000000000000000000");
        // ... as the kernel stores it for a user namespace whose root is
        // uid 1001 (revision 3, root id 0x3e9), and as root reads it.
        let v3 = hex("0100000300040000000000000000000000000000e9030000");
        assert_eq!(portable_fcap(&v3), v2);
        assert_eq!(portable_fcap(&v2), v2);
        // Not a capability value of a known shape: kept.
        assert_eq!(portable_fcap(&[1, 2, 3]).as_ref(), &[1u8, 2, 3][..]);
        let mut odd = v3.clone();
        odd.push(0);
        assert_eq!(portable_fcap(&odd), odd);

        let mut f = Entry::file("capbox", "x");
        f.xattrs.push(("security.capability".into(), v3));
        let opts = LayerOptions {
            compression: Compression::None,
            ..LayerOptions::default()
        };
        let (_, bytes) = write_layer(LayerSource::Entries(vec![f]), &opts, Vec::new()).unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut ent = ar.entries().unwrap().next().unwrap().unwrap();
        let exts: Vec<(String, Vec<u8>)> = ent
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| x.unwrap())
            .map(|x| (x.key().unwrap().to_owned(), x.value_bytes().to_vec()))
            .collect();
        assert!(
            exts.contains(&("SCHILY.xattr.security.capability".into(), v2)),
            "{exts:?}"
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn tar_crate_reads_what_we_write() {
        let long = format!("{}/file", "d".repeat(150));
        let mut f = Entry::file(&long, "hello");
        f.xattrs.push(("security.capability".into(), vec![1, 2, 3]));
        f.xattrs.push(("trusted.overlay.origin".into(), vec![9]));
        f.uid = 5_000_000;
        let entries = vec![
            Entry::new("d", EntryKind::Dir),
            f,
            Entry::new("l", EntryKind::Symlink("x".repeat(120).into())),
            Entry::new("h", EntryKind::Hardlink("d".into())),
        ];
        let opts = LayerOptions {
            compression: Compression::None,
            level: None,
            timestamps: Timestamps::Epoch(7),
            xattrs: true,
            foreign_times: Default::default(),
            tap: None,
        };
        let (info, bytes) = write_layer(LayerSource::Entries(entries), &opts, Vec::new()).unwrap();
        assert_eq!(info.diff_id, info.digest);
        assert_eq!(info.size, bytes.len() as u64);
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for ent in ar.entries().unwrap() {
            let mut ent = ent.unwrap();
            let path = String::from_utf8(ent.path_bytes().into_owned()).unwrap();
            assert_eq!(ent.header().mtime().unwrap(), 7);
            assert!(ent.header().username_bytes().is_none_or(|u| u.is_empty()));
            if path == long {
                let exts: Vec<(String, Vec<u8>)> = ent
                    .pax_extensions()
                    .unwrap()
                    .unwrap()
                    .map(|x| x.unwrap())
                    .map(|x| (x.key().unwrap().to_owned(), x.value_bytes().to_vec()))
                    .collect();
                assert!(exts.contains(&("SCHILY.xattr.security.capability".into(), vec![1, 2, 3])));
                assert!(exts.contains(&("uid".into(), b"5000000".to_vec())));
                assert!(!exts
                    .iter()
                    .any(|(k, _)| k.contains("overlay") || k == "atime" || k == "ctime"));
                let mut s = String::new();
                ent.read_to_string(&mut s).unwrap();
                assert_eq!(s, "hello");
            }
            if path == "l" {
                assert_eq!(ent.link_name_bytes().unwrap().len(), 120);
            }
            seen.push(path);
        }
        assert_eq!(seen, ["d/", &long, "h", "l"]);
    }
}
