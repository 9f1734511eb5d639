//! Applying a layer to a directory, safely.
//!
//! Every path is resolved from a descriptor of the target directory, one
//! component at a time with `O_NOFOLLOW`; a symlink in a parent path is
//! followed only through `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`,
//! which fails when the link leads out of the target (absolute targets,
//! `..` past the top). The final component is never followed: whatever is
//! there is removed first and new files are created with `O_CREAT | O_EXCL
//! | O_NOFOLLOW`, so no entry can write through a symlink or a hard link
//! planted earlier. Hard link targets are resolved the same way. An entry
//! that tries to leave the target gets the whole layer refused with
//! [`Error::Unsafe`] naming the entry.
//!
//! The walk is paid once per directory, not once per entry: the open
//! directories along the last entry's path are kept, and the next entry
//! (layers list parents first, siblings together) starts from the deepest
//! one it shares. A file's owner, mode, xattrs and times are set through
//! its open descriptor.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use strata_oci::{Algorithm, Compression, Digest, HashingReader};

use crate::error::IoContext;
use crate::{Error, Result};

/// How whiteouts are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Whiteouts delete what they name (unpacking a root filesystem).
    Plain,
    /// Whiteouts are kept as overlay whiteouts: 0/0 character devices, and
    /// `trusted.overlay.opaque=y` on opaque directories (a snapshot used as
    /// an overlay lowerdir). Needs root, or root in a user namespace (Linux
    /// 5.8 and later let it make whiteouts), where opaque directories get
    /// `user.overlay.opaque=y` ([`overlay_opaque_xattr`]).
    Overlay,
}

/// What applying a layer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// sha256 of the uncompressed tar stream (check it against the config).
    pub diff_id: Digest,
    /// Entries applied.
    pub entries: u64,
    /// Entries skipped because they need privileges we lack (devices, owners).
    pub skipped: u64,
    /// Compression that was detected.
    pub compression: Compression,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Wrap `reader` in the decompressor its magic bytes call for.
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut r = BufReader::with_capacity(256 * 1024, reader);
    let head = r.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((
            Compression::Gzip,
            Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        ))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok((
            Compression::Zstd,
            Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        ))
    } else if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bzip2 and xz layers are not supported (gzip, zstd and plain tar are)",
        ))
    } else {
        Ok((Compression::None, Box::new(r)))
    }
}

/// A layer path made safe to join: relative, no `.`/`..`, no empty parts.
/// Returns `None` for the root itself.
pub(crate) fn clean_path(raw: &[u8], entry: &str) -> Result<Option<Vec<Vec<u8>>>> {
    if raw.starts_with(b"/") {
        return Err(Error::unsafe_entry(entry, "absolute path"));
    }
    let mut comps = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(Error::unsafe_entry(entry, "path contains '..'")),
            c => comps.push(c.to_vec()),
        }
    }
    Ok(if comps.is_empty() { None } else { Some(comps) })
}

fn join(comps: &[Vec<u8>]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&comps.join(&b'/')))
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether this process runs in a user namespace other than the initial
/// one (rootless strata, or root in a container): `trusted.*` xattrs and
/// device nodes are then out of reach, and overlay is mounted `userxattr`.
pub fn in_user_namespace() -> bool {
    static IN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map")
            .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
    })
}

/// The xattr marking an opaque directory in snapshots this process
/// extracts: `trusted.overlay.opaque`, or in a user namespace (where the
/// overlays are mounted `userxattr`) `user.overlay.opaque`.
pub fn overlay_opaque_xattr() -> &'static str {
    if in_user_namespace() {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

/// Overlay's own xattrs, which no layer may set.
fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.")
        || name.starts_with("user.overlay.")
        || name.starts_with("user.fuseoverlayfs.")
}

pub(crate) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Open one component `c` of the directory `sub` from `cur` (the already
/// resolved directory that holds it), creating it when missing and
/// `create`. A symlink is followed only through
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` from `root`, which
/// fails when it leads out. Returns the directory and whether a symlink was
/// followed.
fn open_component(
    root: &OwnedFd,
    cur: &OwnedFd,
    c: &OsStr,
    sub: &Path,
    create: bool,
    entry: &str,
) -> Result<(OwnedFd, bool)> {
    match rustix::fs::openat(cur, c, dir_flags(), Mode::empty()) {
        Ok(fd) => Ok((fd, false)),
        Err(Errno::NOENT) if create => {
            match rustix::fs::mkdirat(cur, c, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e).ctx("create directory", sub),
            }
            let fd = rustix::fs::openat(cur, c, dir_flags(), Mode::empty()).ctx("open", sub)?;
            Ok((fd, false))
        }
        Err(Errno::NOENT) => Err(Error::invalid(
            entry,
            format!("{} does not exist", sub.display()),
        )),
        Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
            let st = rustix::fs::statat(cur, c, AtFlags::SYMLINK_NOFOLLOW).ctx("stat", sub)?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                return Err(Error::invalid(
                    entry,
                    format!("{} is not a directory", sub.display()),
                ));
            }
            match rustix::fs::openat2(
                root,
                sub,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => Ok((fd, true)),
                Err(Errno::XDEV) => Err(Error::unsafe_entry(
                    entry,
                    format!(
                        "{} is a symlink that leads outside the target",
                        sub.display()
                    ),
                )),
                Err(Errno::NOSYS) => Err(Error::unsafe_entry(
                    entry,
                    format!(
                        "{} is a symlink (this kernel lacks openat2 to follow it safely)",
                        sub.display()
                    ),
                )),
                Err(e) => Err(Error::unsafe_entry(
                    entry,
                    format!(
                        "{} is a symlink that does not lead to a directory inside the target ({e})",
                        sub.display()
                    ),
                )),
            }
        }
        Err(e) => Err(e).ctx("open", sub),
    }
}

/// Open the directory `comps` under `root`, creating missing ones when
/// `create`. Symlinks are followed only while they stay beneath `root`.
pub(crate) fn resolve_dir(
    root: &OwnedFd,
    comps: &[Vec<u8>],
    create: bool,
    entry: &str,
) -> Result<OwnedFd> {
    let mut cur = root.try_clone().ctx("dup", "target")?;
    for i in 0..comps.len() {
        let sub = join(&comps[..=i]);
        let (fd, _) = open_component(
            root,
            &cur,
            OsStr::from_bytes(&comps[i]),
            &sub,
            create,
            entry,
        )?;
        cur = fd;
    }
    Ok(cur)
}

/// The open directories along the path of the entry being applied, kept
/// from one entry to the next: entries come sorted (parents first), so
/// most share their parent with the entry before and open nothing.
///
/// Safe to keep because an entry only ever changes its own path (and what
/// is below it), never one of its parents, and the stack is cut back to
/// the entry's parent before anything is changed. A directory reached
/// through a symlink is never kept past its entry: what the link leads to
/// is not one of the entry's parents by name, so a later entry could
/// replace it.
#[derive(Default)]
pub(crate) struct DirStack {
    /// (component, open directory of the path up to it, reached through a
    /// symlink).
    open: Vec<(Vec<u8>, OwnedFd, bool)>,
}

impl DirStack {
    /// The directory `comps` (parents of an entry), opened from the deepest
    /// directory this stack shares with it.
    pub(crate) fn open<'s>(
        &'s mut self,
        root: &'s OwnedFd,
        comps: &[Vec<u8>],
        create: bool,
        entry: &str,
    ) -> Result<&'s OwnedFd> {
        let mut keep = 0;
        while keep < self.open.len()
            && keep < comps.len()
            && !self.open[keep].2
            && self.open[keep].0 == comps[keep]
        {
            keep += 1;
        }
        self.open.truncate(keep);
        for i in keep..comps.len() {
            let sub = join(&comps[..=i]);
            let cur = match self.open.last() {
                Some((_, fd, _)) => fd,
                None => root,
            };
            let (fd, followed) =
                open_component(root, cur, OsStr::from_bytes(&comps[i]), &sub, create, entry)?;
            self.open.push((comps[i].clone(), fd, followed));
        }
        Ok(match self.open.last() {
            Some((_, fd, _)) => fd,
            None => root,
        })
    }
}

/// Remove `name` in `dir` (recursively for directories), never following links.
pub(crate) fn remove_at(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = match rustix::fs::openat(dir, name, dir_flags(), Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
            return rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(Into::into)
        }
        Err(e) => return Err(e.into()),
    };
    for child in list_dir(&sub)? {
        remove_at(&sub, &child)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(Into::into)
}

pub(crate) fn list_dir(dir: &OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
    let mut out = Vec::new();
    let d = rustix::fs::Dir::read_from(dir)?;
    for e in d {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn proc_path(dir: &OwnedFd, name: &OsStr) -> PathBuf {
    use std::os::fd::AsRawFd;
    Path::new(&format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd())).join(name)
}

fn set_xattr(dir: &OwnedFd, name: &OsStr, key: &str, value: &[u8], entry: &str) -> Result<bool> {
    match rustix::fs::lsetxattr(proc_path(dir, name), key, value, XattrFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOTSUP) => Ok(false),
        Err(Errno::PERM) | Err(Errno::ACCESS) if !is_root() => Ok(false),
        Err(e) => Err(Error::invalid(
            entry,
            format!("cannot set xattr {key}: {e}"),
        )),
    }
}

fn ts(secs: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

pub(crate) struct EntryMeta {
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) mtime: i64,
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
}

/// An entry's mode, owner, mtime and xattrs (from its PAX records too).
pub(crate) fn entry_meta<R: Read>(e: &mut tar::Entry<'_, R>) -> io::Result<EntryMeta> {
    let h = e.header();
    let mut m = EntryMeta {
        mode: h.mode().unwrap_or(0o644) & 0o7777,
        uid: h.uid().unwrap_or(0),
        gid: h.gid().unwrap_or(0),
        mtime: h.mtime().unwrap_or(0) as i64,
        xattrs: Vec::new(),
    };
    if let Some(exts) = e.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            let val = ext.value_bytes();
            let num = || {
                std::str::from_utf8(val)
                    .ok()
                    .and_then(|s| s.split('.').next()?.parse::<i64>().ok())
            };
            match key {
                "uid" => m.uid = num().unwrap_or(m.uid as i64) as u64,
                "gid" => m.gid = num().unwrap_or(m.gid as i64) as u64,
                "mtime" => m.mtime = num().unwrap_or(m.mtime),
                k => {
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        m.xattrs.push((name.to_owned(), val.to_vec()));
                    }
                }
            }
        }
    }
    Ok(m)
}

struct Applier {
    root: OwnedFd,
    mode: ApplyMode,
    privileged: bool,
    /// Paths (and their parents) this layer created, joined with `/`.
    created: HashSet<Vec<u8>>,
    /// Directories to finish (mode, mtime) once their children are in.
    dirs: Vec<(Vec<Vec<u8>>, EntryMeta)>,
    /// The open parents of the last entry.
    stack: DirStack,
    /// Copy buffer for file content.
    buf: Vec<u8>,
    skipped: u64,
}

/// Size of the buffer file content is copied through (few large writes).
const COPY_BUF: usize = 256 * 1024;

impl Applier {
    fn new(root: OwnedFd, mode: ApplyMode) -> Applier {
        Applier {
            root,
            mode,
            privileged: is_root(),
            created: HashSet::new(),
            dirs: Vec::new(),
            stack: DirStack::default(),
            buf: Vec::new(),
            skipped: 0,
        }
    }

    fn mark_created(&mut self, comps: &[Vec<u8>]) {
        // Longest first: once a path is known, so are its parents.
        for i in (1..=comps.len()).rev() {
            if !self.created.insert(comps[..i].join(&b'/')) {
                break;
            }
        }
    }

    fn was_created(&self, comps: &[Vec<u8>]) -> bool {
        self.created.contains(&comps.join(&b'/'))
    }

    fn apply_entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = e.path_bytes().into_owned();
        let entry = String::from_utf8_lossy(&raw).into_owned();
        let kind = e.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let Some(comps) = clean_path(&raw, &entry)? else {
            return Ok(()); // the root itself
        };
        let (parent, base) = comps.split_at(comps.len() - 1);
        let base_os = OsStr::from_bytes(&base[0]);
        let meta = entry_meta(e).map_err(|source| Error::Read {
            entry: Some(entry.clone()),
            source,
        })?;

        // Whiteouts.
        if base[0] == OPAQUE.as_bytes() {
            match self.mode {
                ApplyMode::Overlay => {
                    let dir = self.stack.open(&self.root, parent, true, &entry)?;
                    rustix::fs::fsetxattr(dir, overlay_opaque_xattr(), b"y", XattrFlags::empty())
                        .map_err(|e| {
                        Error::invalid(&entry, format!("cannot mark the directory opaque: {e}"))
                    })?;
                }
                ApplyMode::Plain => {
                    let dir = self.stack.open(&self.root, parent, true, &entry)?;
                    clear_lower(&self.created, dir, parent)?;
                }
            }
            return Ok(());
        }
        if let Some(victim) = base[0].strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if victim.is_empty() || victim == b"." || victim == b".." {
                return Err(Error::unsafe_entry(&entry, "malformed whiteout"));
            }
            let victim_os = OsStr::from_bytes(victim);
            let mut vcomps = parent.to_vec();
            vcomps.push(victim.to_vec());
            if self.was_created(&vcomps) {
                return Ok(()); // whiteouts apply to lower layers only
            }
            let overlay = self.mode == ApplyMode::Overlay;
            let dir = match self.stack.open(&self.root, parent, overlay, &entry) {
                Ok(d) => d,
                Err(Error::Invalid { .. }) if !overlay => return Ok(()),
                Err(e) => return Err(e),
            };
            remove_at(dir, victim_os).ctx("remove", join(&vcomps))?;
            if overlay {
                rustix::fs::mknodat(
                    dir,
                    victim_os,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|e| {
                    Error::invalid(
                        &entry,
                        format!("cannot create the overlay whiteout (needs root): {e}"),
                    )
                })?;
            }
            return Ok(());
        }

        self.mark_created(&comps);
        let path_for_err = || join(&comps);
        // The hard link target, resolved before anything at this path goes.
        let link_target = if kind == tar::EntryType::Link {
            let target = e
                .link_name_bytes()
                .ok_or_else(|| Error::invalid(&entry, "hard link without a target"))?;
            let tcomps = clean_path(&target, &entry)?
                .ok_or_else(|| Error::unsafe_entry(&entry, "hard link to the root directory"))?;
            let (tparent, tbase) = tcomps.split_at(tcomps.len() - 1);
            let tdir = resolve_dir(&self.root, tparent, false, &entry)?;
            Some((tdir, tbase[0].clone(), tcomps))
        } else {
            None
        };
        let privileged = self.privileged;
        let skipped = &mut self.skipped;
        let dir = self.stack.open(&self.root, parent, true, &entry)?;
        match kind {
            tar::EntryType::Directory => {
                loop {
                    match rustix::fs::mkdirat(dir, base_os, Mode::from_raw_mode(0o700)) {
                        Ok(()) => break,
                        Err(Errno::EXIST) => {
                            let st = rustix::fs::statat(dir, base_os, AtFlags::SYMLINK_NOFOLLOW)
                                .ctx("stat", path_for_err())?;
                            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                                break; // merged with what is there
                            }
                            remove_at(dir, base_os).ctx("remove", path_for_err())?;
                        }
                        Err(err) => return Err(err).ctx("create directory", path_for_err()),
                    }
                }
                set_owners(privileged, dir, base_os, &meta, &entry)?;
                set_xattrs(dir, base_os, &meta, &entry, skipped)?;
                self.dirs.push((comps.clone(), meta));
                Ok(())
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = create_replacing(dir, base_os, path_for_err, |d, n| {
                    rustix::fs::openat(
                        d,
                        n,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                })?;
                let mut f = std::fs::File::from(fd);
                if self.buf.len() < COPY_BUF {
                    self.buf.resize(COPY_BUF, 0);
                }
                loop {
                    let n = match e.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                        Err(source) => {
                            return Err(Error::Read {
                                entry: Some(entry.clone()),
                                source,
                            })
                        }
                    };
                    f.write_all(&self.buf[..n]).ctx("write", path_for_err())?;
                }
                // Owner before mode (chown clears set-id bits), then
                // xattrs, then times: all through the open file.
                if privileged {
                    let (uid, gid) = ids(&meta, &entry)?;
                    rustix::fs::fchown(&f, Some(uid), Some(gid)).map_err(|e| {
                        Error::invalid(&entry, format!("cannot set owner {uid:?}:{gid:?}: {e}"))
                    })?;
                }
                rustix::fs::fchmod(&f, Mode::from_raw_mode(meta.mode))
                    .ctx("chmod", path_for_err())?;
                for (k, v) in &meta.xattrs {
                    if is_overlay_xattr(k) {
                        continue;
                    }
                    match rustix::fs::fsetxattr(&f, k.as_str(), v, XattrFlags::empty()) {
                        Ok(()) => {}
                        Err(Errno::NOTSUP) => *skipped += 1,
                        Err(Errno::PERM) | Err(Errno::ACCESS) if !privileged => *skipped += 1,
                        Err(err) => {
                            return Err(Error::invalid(
                                &entry,
                                format!("cannot set xattr {k}: {err}"),
                            ))
                        }
                    }
                }
                rustix::fs::futimens(&f, &ts(meta.mtime)).ctx("set times of", path_for_err())?;
                Ok(())
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| Error::invalid(&entry, "symlink without a target"))?;
                let target = OsStr::from_bytes(&target);
                create_replacing(dir, base_os, path_for_err, |d, n| {
                    rustix::fs::symlinkat(target, d, n)
                })?;
                set_owners(privileged, dir, base_os, &meta, &entry)?;
                set_xattrs(dir, base_os, &meta, &entry, skipped)?;
                rustix::fs::utimensat(dir, base_os, &ts(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .ctx("set times of", path_for_err())?;
                Ok(())
            }
            tar::EntryType::Link => {
                let Some((tdir, tname, tcomps)) = link_target else {
                    return Err(Error::invalid(&entry, "hard link without a target"));
                };
                let tname = OsStr::from_bytes(&tname);
                let st =
                    rustix::fs::statat(&tdir, tname, AtFlags::SYMLINK_NOFOLLOW).map_err(|_| {
                        Error::invalid(
                            &entry,
                            format!(
                                "hard link target {} does not exist",
                                join(&tcomps).display()
                            ),
                        )
                    })?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    return Err(Error::unsafe_entry(&entry, "hard link to a directory"));
                }
                if tcomps == comps {
                    // A link to itself: what it names goes before it is linked.
                    return Err(Error::invalid(
                        &entry,
                        format!(
                            "hard link target {} does not exist",
                            join(&tcomps).display()
                        ),
                    ));
                }
                create_replacing(dir, base_os, path_for_err, |d, n| {
                    rustix::fs::linkat(&tdir, tname, d, n, AtFlags::empty())
                })?;
                // A hard link shares its target's inode: no metadata of its own.
                Ok(())
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(
                    e.header().device_major().ok().flatten().unwrap_or(0),
                    e.header().device_minor().ok().flatten().unwrap_or(0),
                );
                let made = create_replacing(dir, base_os, path_for_err, |d, n| {
                    rustix::fs::mknodat(d, n, ft, Mode::from_raw_mode(0o600), dev)
                });
                match made {
                    Ok(()) => {}
                    Err(Error::Io { source, .. })
                        if source.raw_os_error() == Some(Errno::PERM.raw_os_error())
                            && (!privileged || kind != tar::EntryType::Fifo) =>
                    {
                        // Root in a user namespace (rootless) may not make
                        // device nodes either: the layer still counts by
                        // its digest, the node is just absent here.
                        if privileged {
                            tracing::warn!(
                                "{}: device node skipped (the kernel does not allow creating it here: rootless)",
                                path_for_err().display()
                            );
                        }
                        *skipped += 1;
                        return Ok(());
                    }
                    Err(err) => return Err(err),
                }
                set_owners(privileged, dir, base_os, &meta, &entry)?;
                rustix::fs::chmodat(
                    dir,
                    base_os,
                    Mode::from_raw_mode(meta.mode),
                    AtFlags::empty(),
                )
                .ctx("chmod", path_for_err())?;
                set_xattrs(dir, base_os, &meta, &entry, skipped)?;
                rustix::fs::utimensat(dir, base_os, &ts(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .ctx("set times of", path_for_err())?;
                Ok(())
            }
            other => Err(Error::invalid(
                &entry,
                format!("unsupported tar entry type {other:?}"),
            )),
        }
    }

    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        let mut stack = DirStack::default();
        for (comps, meta) in dirs.iter().rev() {
            let entry = join(comps).display().to_string();
            let (parent, base) = comps.split_at(comps.len() - 1);
            let dir = stack.open(&self.root, parent, false, &entry)?;
            let name = OsStr::from_bytes(&base[0]);
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .ctx("chmod", join(comps))?;
            rustix::fs::utimensat(dir, name, &ts(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
                .ctx("set times of", join(comps))?;
        }
        Ok(())
    }
}

/// Sets the owner of `name` in `dir` (not following a symlink) when we
/// may.
fn set_owners(
    privileged: bool,
    dir: &OwnedFd,
    name: &OsStr,
    m: &EntryMeta,
    entry: &str,
) -> Result<()> {
    if !privileged {
        return Ok(());
    }
    let (uid, gid) = ids(m, entry)?;
    rustix::fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::invalid(entry, format!("cannot set owner {uid:?}:{gid:?}: {e}")))
}

/// Sets the xattrs of `name` in `dir`, counting those this file system or
/// our privileges do not allow in `skipped`.
fn set_xattrs(
    dir: &OwnedFd,
    name: &OsStr,
    m: &EntryMeta,
    entry: &str,
    skipped: &mut u64,
) -> Result<()> {
    for (k, v) in &m.xattrs {
        if is_overlay_xattr(k) {
            // Never let a layer forge overlay metadata.
            continue;
        }
        if !set_xattr(dir, name, k, v, entry)? {
            *skipped += 1;
        }
    }
    Ok(())
}

/// Plain-mode opaque directory: remove everything in it that this layer
/// did not create.
fn clear_lower(created: &HashSet<Vec<u8>>, dir: &OwnedFd, comps: &[Vec<u8>]) -> Result<()> {
    for child in list_dir(dir).ctx("list", join(comps))? {
        let mut c = comps.to_vec();
        c.push(child.as_bytes().to_vec());
        if !created.contains(&c.join(&b'/')) {
            remove_at(dir, &child).ctx("remove", join(&c))?;
        } else if let Ok(sub) = rustix::fs::openat(dir, &child, dir_flags(), Mode::empty()) {
            clear_lower(created, &sub, &c)?;
        }
    }
    Ok(())
}

/// The numeric owner of an entry.
fn ids(m: &EntryMeta, entry: &str) -> Result<(rustix::fs::Uid, rustix::fs::Gid)> {
    match (u32::try_from(m.uid), u32::try_from(m.gid)) {
        (Ok(u), Ok(g)) => Ok((rustix::fs::Uid::from_raw(u), rustix::fs::Gid::from_raw(g))),
        _ => Err(Error::invalid(entry, "uid or gid out of range")),
    }
}

/// Runs `create` for `name` in `dir`; when something is already there, it is
/// removed (never followed) and `create` runs again.
fn create_replacing<T>(
    dir: &OwnedFd,
    name: &OsStr,
    path: impl Fn() -> PathBuf,
    create: impl Fn(&OwnedFd, &OsStr) -> rustix::io::Result<T>,
) -> Result<T> {
    match create(dir, name) {
        Ok(v) => Ok(v),
        Err(Errno::EXIST) => {
            remove_at(dir, name).ctx("remove", path())?;
            create(dir, name).ctx("create", path())
        }
        Err(e) => Err(e).ctx("create", path()),
    }
}

/// Apply a layer (plain tar, gzip or zstd, detected by magic) to `target`.
pub fn apply_layer(reader: impl Read, target: &Path, mode: ApplyMode) -> Result<ApplyStats> {
    let (compression, plain) = decompress(reader).map_err(|source| Error::Read {
        entry: None,
        source,
    })?;
    let (diff_id, entries, skipped) = apply_tar(plain, target, mode)?;
    Ok(ApplyStats {
        diff_id,
        entries,
        skipped,
        compression,
    })
}

/// Apply an uncompressed tar stream to `target`: (diffID of what was read,
/// entries, entries skipped).
pub(crate) fn apply_tar(
    plain: impl Read,
    target: &Path,
    mode: ApplyMode,
) -> Result<(Digest, u64, u64)> {
    let root = rustix::fs::open(
        target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open", target)?;
    let mut hashing = HashingReader::new(plain, Algorithm::Sha256);
    let mut applier = Applier::new(root, mode);
    let mut count = 0u64;
    {
        let mut ar = tar::Archive::new(&mut hashing);
        let entries = ar.entries().map_err(|source| Error::Read {
            entry: None,
            source,
        })?;
        let mut last: Option<String> = None;
        for e in entries {
            let mut e = e.map_err(|source| Error::Read {
                entry: last.clone(),
                source,
            })?;
            last = Some(String::from_utf8_lossy(&e.path_bytes()).into_owned());
            applier.apply_entry(&mut e)?;
            count += 1;
        }
    }
    // Hash whatever follows the end-of-archive blocks.
    io::copy(&mut hashing, &mut io::sink()).map_err(|source| Error::Read {
        entry: None,
        source,
    })?;
    applier.finish_dirs()?;
    let (diff_id, _) = hashing.finish();
    Ok((diff_id, count, applier.skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        let ok = |s: &str| {
            clean_path(s.as_bytes(), s)
                .unwrap()
                .map(|c| join(&c).display().to_string())
        };
        assert_eq!(ok("./a//b/"), Some("a/b".into()));
        assert_eq!(ok("./"), None);
        assert!(clean_path(b"/etc/passwd", "x").unwrap_err().is_unsafe());
        assert!(clean_path(b"a/../../b", "x").unwrap_err().is_unsafe());
    }
}
