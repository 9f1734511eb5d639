//! Changes as layer entries: from an overlay upper directory, or by comparing
//! two trees (the fallback without overlayfs). Both give the same entries
//! for the same change, so the same layer bytes.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::writer::{entry_from_meta, keep_xattr, read_xattrs};
use crate::{Entry, EntryKind, Error, Result};

const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

fn sorted_names(dir: &Path) -> Result<Vec<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .ctx("list", dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .ctx("list", dir)?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn whiteout(rel_parent: &Path, name: &OsString) -> Entry {
    let mut n = OsString::from(".wh.");
    n.push(name);
    Entry {
        mode: 0o644,
        ..Entry::file(rel_parent.join(n), Vec::new())
    }
}

fn opaque_marker(rel_dir: &Path) -> Entry {
    Entry {
        mode: 0o644,
        ..Entry::file(rel_dir.join(".wh..wh..opq"), Vec::new())
    }
}

fn is_overlay_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn xattr_value(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    rustix::fs::lgetxattr(path, name, &mut buf)
        .ok()
        .map(|n| buf[..n].to_vec())
}

/// The layer entries an overlay upper directory stands for: 0/0 character
/// devices become `.wh.NAME` files, directories with an opaque xattr get a
/// `.wh..wh..opq` marker, everything else is itself. Overlay's own xattrs
/// are dropped. Upper dirs made with `redirect_dir` or `metacopy` (whose
/// content lives partly in the lower layers) are refused: mount with
/// `redirect_dir=off,metacopy=off`.
pub fn upper_to_entries(upper: &Path, xattrs: bool) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    upper_walk(upper, Path::new(""), xattrs, &mut seen, &mut out)?;
    Ok(out)
}

fn upper_walk(
    root: &Path,
    rel: &Path,
    xattrs: bool,
    seen: &mut HashMap<(u64, u64), PathBuf>,
    out: &mut Vec<Entry>,
) -> Result<()> {
    for name in sorted_names(&root.join(rel))? {
        let rel_path = rel.join(&name);
        let abs = root.join(&rel_path);
        let meta = fs::symlink_metadata(&abs).ctx("stat", &abs)?;
        if is_overlay_whiteout(&meta) {
            out.push(whiteout(rel, &name));
            continue;
        }
        for bad in [
            "trusted.overlay.redirect",
            "trusted.overlay.metacopy",
            "user.overlay.redirect",
            "user.overlay.metacopy",
        ] {
            if xattr_value(&abs, bad).is_some() {
                return Err(Error::invalid(
                    abs.display().to_string(),
                    format!("has {bad}: the overlay was mounted with redirect_dir or metacopy on; mount it with redirect_dir=off,metacopy=off"),
                ));
            }
        }
        let entry = entry_from_meta(&abs, rel_path.clone(), &meta, xattrs, seen)?;
        let is_dir = entry.kind == EntryKind::Dir;
        out.push(entry);
        if is_dir {
            if OPAQUE_XATTRS
                .iter()
                .any(|x| xattr_value(&abs, x).as_deref() == Some(b"y"))
            {
                out.push(opaque_marker(&rel_path));
            }
            upper_walk(root, &rel_path, xattrs, seen, out)?;
        }
    }
    Ok(())
}

/// The layer entries that turn tree `lower` into tree `upper`, found by
/// comparing them (type, mode, owner, size and content, link target, device
/// numbers, xattrs; never mtimes). Directories are included when they
/// changed or hold a change, like an overlay upper directory holds them.
pub fn diff_dirs(lower: &Path, upper: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    diff_walk(lower, upper, Path::new(""), &mut seen, &mut out)?;
    Ok(out)
}

fn add_tree(
    root: &Path,
    rel: &Path,
    seen: &mut HashMap<(u64, u64), PathBuf>,
    out: &mut Vec<Entry>,
) -> Result<()> {
    let abs = root.join(rel);
    let meta = fs::symlink_metadata(&abs).ctx("stat", &abs)?;
    let e = entry_from_meta(&abs, rel.to_owned(), &meta, true, seen)?;
    let is_dir = e.kind == EntryKind::Dir;
    out.push(e);
    if is_dir {
        for name in sorted_names(&abs)? {
            add_tree(root, &rel.join(name), seen, out)?;
        }
    }
    Ok(())
}

fn diff_walk(
    lower: &Path,
    upper: &Path,
    rel: &Path,
    seen: &mut HashMap<(u64, u64), PathBuf>,
    out: &mut Vec<Entry>,
) -> Result<()> {
    let l_names: BTreeSet<Vec<u8>> = sorted_names(&lower.join(rel))?
        .into_iter()
        .map(|n| n.as_bytes().to_vec())
        .collect();
    let u_names: BTreeSet<Vec<u8>> = sorted_names(&upper.join(rel))?
        .into_iter()
        .map(|n| n.as_bytes().to_vec())
        .collect();
    for name in l_names.union(&u_names) {
        let name_os = OsString::from(std::ffi::OsStr::from_bytes(name));
        let rel_path = rel.join(&name_os);
        let lp = lower.join(&rel_path);
        let up = upper.join(&rel_path);
        let lm = fs::symlink_metadata(&lp).ok();
        let um = fs::symlink_metadata(&up).ok();
        match (lm, um) {
            (Some(_), None) => out.push(whiteout(rel, &name_os)),
            (None, Some(_)) => add_tree(upper, &rel_path, seen, out)?,
            (None, None) => {}
            (Some(l), Some(u)) => {
                if u.is_dir() {
                    let entry = entry_from_meta(&up, rel_path.clone(), &u, true, seen)?;
                    if !l.is_dir() {
                        // A directory where a file was: overlay makes it opaque.
                        out.push(entry);
                        out.push(opaque_marker(&rel_path));
                        for child in sorted_names(&up)? {
                            add_tree(upper, &rel_path.join(child), seen, out)?;
                        }
                        continue;
                    }
                    let changed = differs(&lp, &l, &up, &u)?;
                    let mut sub = Vec::new();
                    diff_walk(lower, upper, &rel_path, seen, &mut sub)?;
                    if changed || !sub.is_empty() {
                        out.push(entry);
                        out.extend(sub);
                    }
                } else if differs(&lp, &l, &up, &u)? {
                    let entry = entry_from_meta(&up, rel_path.clone(), &u, true, seen)?;
                    out.push(entry);
                } else if u.nlink() > 1 {
                    // Unchanged, but remember it for hard links of changed files.
                    seen.entry((u.dev(), u.ino())).or_insert(rel_path);
                }
            }
        }
    }
    Ok(())
}

fn kept_xattrs(p: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    Ok(read_xattrs(p)?
        .into_iter()
        .filter(|(n, _)| keep_xattr(n))
        .collect())
}

fn differs(lp: &Path, l: &fs::Metadata, up: &Path, u: &fs::Metadata) -> Result<bool> {
    if l.file_type() != u.file_type()
        || l.mode() & 0o7777 != u.mode() & 0o7777
        || l.uid() != u.uid()
        || l.gid() != u.gid()
    {
        return Ok(true);
    }
    let ft = u.file_type();
    if ft.is_symlink() {
        if fs::read_link(lp).ctx("read link", lp)? != fs::read_link(up).ctx("read link", up)? {
            return Ok(true);
        }
    } else if ft.is_file() {
        if l.len() != u.len() || !same_content(lp, up)? {
            return Ok(true);
        }
    } else if (ft.is_char_device() || ft.is_block_device()) && l.rdev() != u.rdev() {
        return Ok(true);
    }
    Ok(kept_xattrs(lp)? != kept_xattrs(up)?)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = io::BufReader::with_capacity(128 * 1024, fs::File::open(a).ctx("open", a)?);
    let mut fb = io::BufReader::with_capacity(128 * 1024, fs::File::open(b).ctx("open", b)?);
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba).ctx("read", a)?;
        let nb = read_full(&mut fb, &mut bb).ctx("read", b)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
