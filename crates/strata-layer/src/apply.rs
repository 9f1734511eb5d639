//! Applying a layer to a directory, safely.
//!
//! Every path is resolved from a descriptor of the target directory, one
//! component at a time with `O_NOFOLLOW`; a symlink in a parent path is
//! followed only through `openat2(RESOLVE_BENEATH)`, which fails when the
//! link leads out of the target (absolute targets, `..` past the top). The
//! final component is never followed: whatever is there is removed first and
//! new files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`, so no entry can
//! write through a symlink or a hard link planted earlier. Hard link targets
//! are resolved the same way. An entry that tries to leave the target gets
//! the whole layer refused with [`Error::Unsafe`] naming the entry.

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
    /// an overlay lowerdir). Needs root.
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

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
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
        let c = OsStr::from_bytes(&comps[i]);
        let sub = join(&comps[..=i]);
        match rustix::fs::openat(&cur, c, dir_flags(), Mode::empty()) {
            Ok(fd) => cur = fd,
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&cur, c, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e).ctx("create directory", sub),
                }
                cur = rustix::fs::openat(&cur, c, dir_flags(), Mode::empty()).ctx("open", &sub)?;
            }
            Err(Errno::NOENT) => {
                return Err(Error::invalid(
                    entry,
                    format!("{} does not exist", sub.display()),
                ))
            }
            Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                let st =
                    rustix::fs::statat(&cur, c, AtFlags::SYMLINK_NOFOLLOW).ctx("stat", &sub)?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                    return Err(Error::invalid(
                        entry,
                        format!("{} is not a directory", sub.display()),
                    ));
                }
                match rustix::fs::openat2(
                    root,
                    &sub,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
                ) {
                    Ok(fd) => cur = fd,
                    Err(Errno::XDEV) => {
                        return Err(Error::unsafe_entry(
                            entry,
                            format!("{} is a symlink that leads outside the target", sub.display()),
                        ))
                    }
                    Err(Errno::NOSYS) => {
                        return Err(Error::unsafe_entry(
                            entry,
                            format!("{} is a symlink (this kernel lacks openat2 to follow it safely)", sub.display()),
                        ))
                    }
                    Err(e) => {
                        return Err(Error::unsafe_entry(
                            entry,
                            format!("{} is a symlink that does not lead to a directory inside the target ({e})", sub.display()),
                        ))
                    }
                }
            }
            Err(e) => return Err(e).ctx("open", sub),
        }
    }
    Ok(cur)
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

struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn entry_meta<R: Read>(e: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
    let h = e.header();
    let mut m = Meta {
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
    /// Paths (and their parents) this layer created.
    created: HashSet<Vec<Vec<u8>>>,
    /// Directories to finish (mode, mtime) once their children are in.
    dirs: Vec<(Vec<Vec<u8>>, Meta)>,
    skipped: u64,
}

impl Applier {
    fn mark_created(&mut self, comps: &[Vec<u8>]) {
        for i in 1..=comps.len() {
            self.created.insert(comps[..i].to_vec());
        }
    }

    fn owners(&mut self, dir: &OwnedFd, name: &OsStr, m: &Meta, entry: &str) -> Result<()> {
        if !self.privileged {
            return Ok(());
        }
        let (uid, gid) = (u32::try_from(m.uid), u32::try_from(m.gid));
        let (Ok(uid), Ok(gid)) = (uid, gid) else {
            return Err(Error::invalid(entry, "uid or gid out of range"));
        };
        rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::invalid(entry, format!("cannot set owner {uid}:{gid}: {e}")))
    }

    fn xattrs(&mut self, dir: &OwnedFd, name: &OsStr, m: &Meta, entry: &str) -> Result<()> {
        for (k, v) in &m.xattrs {
            if k.starts_with("trusted.overlay.") {
                // Never let a layer forge overlay metadata.
                continue;
            }
            if !set_xattr(dir, name, k, v, entry)? {
                self.skipped += 1;
            }
        }
        Ok(())
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
        let base_os = OsStr::from_bytes(&base[0]).to_owned();
        let base_str = String::from_utf8_lossy(&base[0]).into_owned();
        let meta = entry_meta(e).map_err(|source| Error::Read {
            entry: Some(entry.clone()),
            source,
        })?;

        // Whiteouts.
        if base_str == OPAQUE {
            let dir = resolve_dir(&self.root, parent, true, &entry)?;
            match self.mode {
                ApplyMode::Overlay => {
                    rustix::fs::fsetxattr(
                        &dir,
                        "trusted.overlay.opaque",
                        b"y",
                        XattrFlags::empty(),
                    )
                    .map_err(|e| {
                        Error::invalid(&entry, format!("cannot mark the directory opaque: {e}"))
                    })?;
                }
                ApplyMode::Plain => self.clear_lower(&dir, parent)?,
            }
            return Ok(());
        }
        if let Some(victim) = base_str.strip_prefix(WHITEOUT_PREFIX) {
            if victim.is_empty() || victim == "." || victim == ".." {
                return Err(Error::unsafe_entry(&entry, "malformed whiteout"));
            }
            let victim_os = OsStr::from_bytes(&base[0][WHITEOUT_PREFIX.len()..]).to_owned();
            let mut vcomps = parent.to_vec();
            vcomps.push(victim_os.as_bytes().to_vec());
            if self.created.contains(&vcomps) {
                return Ok(()); // whiteouts apply to lower layers only
            }
            let dir = match resolve_dir(&self.root, parent, self.mode == ApplyMode::Overlay, &entry)
            {
                Ok(d) => d,
                Err(Error::Invalid { .. }) if self.mode == ApplyMode::Plain => return Ok(()),
                Err(e) => return Err(e),
            };
            match self.mode {
                ApplyMode::Plain => remove_at(&dir, &victim_os).ctx("remove", join(&vcomps))?,
                ApplyMode::Overlay => {
                    remove_at(&dir, &victim_os).ctx("remove", join(&vcomps))?;
                    rustix::fs::mknodat(
                        &dir,
                        &victim_os,
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
            }
            return Ok(());
        }

        let dir = resolve_dir(&self.root, parent, true, &entry)?;
        let existing = rustix::fs::statat(&dir, &base_os, AtFlags::SYMLINK_NOFOLLOW).ok();
        let existing_is_dir = existing
            .as_ref()
            .is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
        let is_dir_entry = kind == tar::EntryType::Directory;
        if existing.is_some() && !(is_dir_entry && existing_is_dir) {
            remove_at(&dir, &base_os).ctx("remove", join(&comps))?;
        }
        self.mark_created(&comps);
        let path_for_err = join(&comps);
        match kind {
            tar::EntryType::Directory => {
                if !existing_is_dir {
                    rustix::fs::mkdirat(&dir, &base_os, Mode::from_raw_mode(0o700))
                        .ctx("create directory", &path_for_err)?;
                }
                self.owners(&dir, &base_os, &meta, &entry)?;
                self.xattrs(&dir, &base_os, &meta, &entry)?;
                self.dirs.push((comps.clone(), meta));
                return Ok(());
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = rustix::fs::openat(
                    &dir,
                    &base_os,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .ctx("create", &path_for_err)?;
                let mut f = std::fs::File::from(fd);
                io::copy(e, &mut f).map_err(|source| Error::Read {
                    entry: Some(entry.clone()),
                    source,
                })?;
                f.flush().ctx("write", &path_for_err)?;
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| Error::invalid(&entry, "symlink without a target"))?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &dir, &base_os)
                    .ctx("create symlink", &path_for_err)?;
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| Error::invalid(&entry, "hard link without a target"))?;
                let tcomps = clean_path(&target, &entry)?.ok_or_else(|| {
                    Error::unsafe_entry(&entry, "hard link to the root directory")
                })?;
                let (tparent, tbase) = tcomps.split_at(tcomps.len() - 1);
                let tdir = resolve_dir(&self.root, tparent, false, &entry)?;
                let tname = OsStr::from_bytes(&tbase[0]);
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
                rustix::fs::linkat(&tdir, tname, &dir, &base_os, AtFlags::empty())
                    .ctx("create hard link", &path_for_err)?;
                // A hard link shares its target's inode: no metadata of its own.
                return Ok(());
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
                match rustix::fs::mknodat(&dir, &base_os, ft, Mode::from_raw_mode(0o600), dev) {
                    Ok(()) => {}
                    Err(Errno::PERM) if !self.privileged => {
                        self.skipped += 1;
                        return Ok(());
                    }
                    Err(err) => return Err(err).ctx("create device", &path_for_err),
                }
            }
            other => {
                return Err(Error::invalid(
                    &entry,
                    format!("unsupported tar entry type {other:?}"),
                ));
            }
        }
        // Owner before mode (chown clears set-id bits), then xattrs, then times.
        self.owners(&dir, &base_os, &meta, &entry)?;
        if kind != tar::EntryType::Symlink {
            rustix::fs::chmodat(
                &dir,
                &base_os,
                Mode::from_raw_mode(meta.mode),
                AtFlags::empty(),
            )
            .ctx("chmod", &path_for_err)?;
        }
        self.xattrs(&dir, &base_os, &meta, &entry)?;
        rustix::fs::utimensat(&dir, &base_os, &ts(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .ctx("set times of", &path_for_err)?;
        Ok(())
    }

    /// Plain-mode opaque directory: remove everything in it that this layer
    /// did not create.
    fn clear_lower(&mut self, dir: &OwnedFd, comps: &[Vec<u8>]) -> Result<()> {
        for child in list_dir(dir).ctx("list", join(comps))? {
            let mut c = comps.to_vec();
            c.push(child.as_bytes().to_vec());
            if !self.created.contains(&c) {
                remove_at(dir, &child).ctx("remove", join(&c))?;
            } else if let Ok(sub) = rustix::fs::openat(dir, &child, dir_flags(), Mode::empty()) {
                self.clear_lower(&sub, &c)?;
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (comps, meta) in dirs.iter().rev() {
            let entry = join(comps).display().to_string();
            let (parent, base) = comps.split_at(comps.len() - 1);
            let dir = resolve_dir(&self.root, parent, false, &entry)?;
            let name = OsStr::from_bytes(&base[0]);
            rustix::fs::chmodat(&dir, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .ctx("chmod", join(comps))?;
            rustix::fs::utimensat(&dir, name, &ts(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
                .ctx("set times of", join(comps))?;
        }
        Ok(())
    }
}

/// Apply a layer (plain tar, gzip or zstd, detected by magic) to `target`.
pub fn apply_layer(reader: impl Read, target: &Path, mode: ApplyMode) -> Result<ApplyStats> {
    let root = rustix::fs::open(
        target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open", target)?;
    let (compression, plain) = decompress(reader).map_err(|source| Error::Read {
        entry: None,
        source,
    })?;
    let mut hashing = HashingReader::new(plain, Algorithm::Sha256);
    let mut applier = Applier {
        root,
        mode,
        privileged: is_root(),
        created: HashSet::new(),
        dirs: Vec::new(),
        skipped: 0,
    };
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
    Ok(ApplyStats {
        diff_id,
        entries: count,
        skipped: applier.skipped,
        compression,
    })
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
