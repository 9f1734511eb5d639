//! Changes as layer entries: from an overlay upper directory, or by comparing
//! two trees (the fallback without overlayfs). Both give the same entries
//! for the same change, so the same layer bytes.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::writer::{entry_from_meta, keep_xattr, read_xattrs};
use crate::{Entry, EntryKind, Error, MergedView, Result};

/// What marks an opaque directory in an upper directory: the kernel's
/// overlay (`trusted.`, or `user.` when mounted `userxattr`) and
/// fuse-overlayfs where it may not set `trusted.*` (it also leaves a
/// `.wh..wh..opq` file there, [`FUSE_OPAQUE_FILE`]).
pub(crate) const OPAQUE_XATTRS: [&str; 3] = [
    "trusted.overlay.opaque",
    "user.overlay.opaque",
    "user.fuseoverlayfs.opaque",
];

/// The file fuse-overlayfs creates in every directory it makes opaque.
pub(crate) const FUSE_OPAQUE_FILE: &str = ".wh..wh..opq";

/// Whether `meta` (named `name`) is one of fuse-overlayfs's own files in
/// an upper directory: its opaque marker, or the whiteout of a name
/// `.wh..opq` it makes beside it (both stand for the directory's opacity).
pub(crate) fn is_fuse_marker(name: &[u8], meta: &fs::Metadata) -> bool {
    (name == FUSE_OPAQUE_FILE.as_bytes() && meta.file_type().is_file())
        || (name == b".wh..opq" && is_overlay_whiteout(meta))
}

/// The name a fuse-overlayfs fallback whiteout (an empty `.wh.NAME` file,
/// made where the kernel refuses a 0/0 device) hides.
pub(crate) fn fuse_whiteout_target<'a>(name: &'a [u8], meta: &fs::Metadata) -> Option<&'a [u8]> {
    let rest = name.strip_prefix(b".wh.")?;
    (meta.file_type().is_file()
        && meta.len() == 0
        && !rest.is_empty()
        && !rest.starts_with(b".wh."))
    .then_some(rest)
}

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

fn xattr_value(path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    crate::writer::get_xattr(path, name)
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

/// The layer entries of an overlay upper directory over `lowers` (top
/// first), in the one canonical form [`diff_dirs`] also gives, so the
/// overlay and the copy snapshotter write the same layer for the same
/// change:
///
/// - what a copy-up left identical to the lower layers is left out (a
///   `chown` to the owner a file already has, an open for writing that wrote
///   nothing, a directory copied up only to hold a file that was created and
///   removed again: a directory's mtime alone does not count);
/// - an opaque directory (overlay's record of `rm -rf d && mkdir d`) becomes
///   a whiteout for each lower entry it hides, as comparing the trees finds
///   them, and no opaque marker.
pub fn upper_to_entries_against(
    upper: &Path,
    lowers: &MergedView,
    xattrs: bool,
) -> Result<Vec<Entry>> {
    let raw = upper_to_entries(upper, xattrs)?;
    let opaque: BTreeSet<PathBuf> = raw
        .iter()
        .filter(|e| e.path.file_name().is_some_and(|n| n == ".wh..wh..opq"))
        .filter_map(|e| e.path.parent().map(Path::to_owned))
        .collect();
    let comps_of =
        |p: &Path| -> Vec<String> { p.iter().map(|c| c.to_string_lossy().into_owned()).collect() };
    let under_opaque = |p: &Path| p.ancestors().any(|a| opaque.contains(a));
    let mut entries = Vec::with_capacity(raw.len());
    for e in raw {
        if e.path.file_name().is_some_and(|n| n == ".wh..wh..opq") {
            continue;
        }
        let is_dir = e.kind == EntryKind::Dir;
        let path = e.path.clone();
        entries.push(e);
        if is_dir && under_opaque(&path) {
            // Whiteouts for what the lower layers have here and the upper
            // directory does not: what the opaque directory hides.
            let comps = comps_of(&path);
            let lower_dir = lowers
                .stat_exact(&comps)
                .ctx("look up", &path)?
                .is_some_and(|m| m.is_dir());
            if lower_dir {
                let here: BTreeSet<Vec<u8>> = sorted_names(&upper.join(&path))?
                    .into_iter()
                    .map(|n| n.as_bytes().to_vec())
                    .collect();
                for name in lowers.read_dir(&comps).ctx("list", &path)? {
                    if !here.contains(name.as_bytes()) {
                        entries.push(whiteout(&path, &OsString::from(name)));
                    }
                }
            }
        }
    }
    let mut keep = vec![true; entries.len()];
    for (i, e) in entries.iter().enumerate() {
        if e.path
            .file_name()
            .is_some_and(|n| n.as_bytes().starts_with(b".wh."))
        {
            continue;
        }
        if let Some(found) = lowers
            .lookup_exact(&comps_of(&e.path))
            .ctx("look up", &e.path)?
        {
            keep[i] = !same_as_lower(e, &found.real, &found.meta, upper, xattrs)?;
        }
    }
    // Parents of what is kept stay, as an upper directory holds them.
    let mut parents: BTreeSet<PathBuf> = BTreeSet::new();
    for (e, _) in entries.iter().zip(&keep).filter(|(_, k)| **k) {
        let mut cur = e.path.parent();
        while let Some(d) = cur {
            if d.as_os_str().is_empty() || !parents.insert(d.to_owned()) {
                break;
            }
            cur = d.parent();
        }
    }
    let mut out: Vec<Entry> = entries
        .into_iter()
        .zip(keep)
        .filter(|(e, k)| *k || parents.contains(&e.path))
        .map(|(e, _)| e)
        .collect();
    out.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    Ok(out)
}

/// Whether upper entry `e` equals the lower file at `lp` in everything a
/// layer records (type, mode, owner, mtime in seconds except for
/// directories, content or target, device numbers, xattrs).
fn same_as_lower(
    e: &Entry,
    lp: &Path,
    l: &crate::Meta,
    upper: &Path,
    xattrs: bool,
) -> Result<bool> {
    if e.mode != l.mode()
        || e.uid != l.uid()
        || e.gid != l.gid()
        || (e.mtime != l.mtime() && e.kind != EntryKind::Dir)
    {
        return Ok(false);
    }
    let lt = l.file_type();
    let same_kind = match &e.kind {
        EntryKind::Dir => lt.is_dir(),
        EntryKind::File { size, .. } => {
            let up = upper.join(&e.path);
            // A file with other links in the upper dir stays (its links
            // refer to it).
            let single = fs::symlink_metadata(&up).ctx("stat", &up)?.nlink() == 1;
            single && lt.is_file() && l.len() == *size && same_content(lp, &up)?
        }
        EntryKind::Symlink(t) => {
            lt.is_symlink()
                && match l.link_target() {
                    Some(lt) => lt == t,
                    None => &fs::read_link(lp).ctx("read link", lp)? == t,
                }
        }
        EntryKind::Char { major, minor } => {
            lt.is_char_device()
                && (rustix::fs::major(l.rdev()), rustix::fs::minor(l.rdev())) == (*major, *minor)
        }
        EntryKind::Block { major, minor } => {
            lt.is_block_device()
                && (rustix::fs::major(l.rdev()), rustix::fs::minor(l.rdev())) == (*major, *minor)
        }
        EntryKind::Fifo => lt.is_fifo(),
        EntryKind::Hardlink(_) => false,
    };
    if !same_kind {
        return Ok(false);
    }
    if xattrs {
        let mut mine = e.xattrs.clone();
        mine.sort();
        return Ok(kept_xattrs(lp)? == mine);
    }
    Ok(true)
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
        if is_fuse_marker(name.as_bytes(), &meta) {
            continue; // the directory was found opaque
        }
        if is_overlay_whiteout(&meta) {
            out.push(whiteout(rel, &name));
            continue;
        }
        if let Some(hidden) = fuse_whiteout_target(name.as_bytes(), &meta) {
            out.push(whiteout(rel, &OsString::from(OsStr::from_bytes(hidden))));
            continue;
        }
        // One listing per entry answers every xattr question below; most
        // files have none, and then nothing else is asked.
        let names = crate::writer::list_xattrs(&abs)?;
        for bad in [
            "trusted.overlay.redirect",
            "trusted.overlay.metacopy",
            "user.overlay.redirect",
            "user.overlay.metacopy",
        ] {
            if names.iter().any(|n| n == bad) && xattr_value(&abs, bad)?.is_some() {
                return Err(Error::invalid(
                    abs.display().to_string(),
                    format!("has {bad}: the overlay was mounted with redirect_dir or metacopy on; mount it with redirect_dir=off,metacopy=off"),
                ));
            }
        }
        let entry = crate::writer::entry_from_listed(
            &abs,
            rel_path.clone(),
            &meta,
            xattrs.then_some(&names[..]),
            seen,
        )?;
        let is_dir = entry.kind == EntryKind::Dir;
        out.push(entry);
        if is_dir {
            let mut opaque = false;
            for x in OPAQUE_XATTRS {
                if names.iter().any(|n| n == x) {
                    opaque |= xattr_value(&abs, x)?.as_deref() == Some(b"y");
                }
            }
            let marker = abs.join(FUSE_OPAQUE_FILE);
            opaque |= fs::symlink_metadata(&marker).is_ok_and(|m| m.file_type().is_file());
            if opaque {
                out.push(opaque_marker(&rel_path));
            }
            upper_walk(root, &rel_path, xattrs, seen, out)?;
        }
    }
    Ok(())
}

/// The layer entries that turn tree `lower` into tree `upper`, found by
/// comparing them (type, mode, owner, size and content, link target, device
/// numbers, xattrs, and for all but directories the mtime in whole seconds,
/// as overlayfs copies a file up when only its times change). A directory
/// whose only change is its mtime (a file created and removed in it) is not
/// a change, as in [`upper_to_entries_against`]. Directories are included when they
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
                        // A directory where a file was: nothing below it
                        // to hide.
                        out.push(entry);
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
        || (l.mtime() != u.mtime() && !u.is_dir())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn set(p: &Path, name: &str, value: &[u8]) -> bool {
        rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty()).is_ok()
    }

    /// The walk lists each entry's xattrs once and answers from that list:
    /// an upper made with metacopy is still refused, an opaque directory
    /// still found, kept xattrs still carried, and files without any still
    /// have none.
    #[test]
    fn one_listing_answers_every_xattr_question() {
        // In the target directory: /tmp may be a tmpfs without user xattrs.
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
        fs::create_dir_all(&base).unwrap();
        let t = tempfile::tempdir_in(&base).unwrap();
        let up = t.path();
        fs::create_dir(up.join("d")).unwrap();
        fs::write(up.join("d/f"), b"x").unwrap();
        fs::write(up.join("plain"), b"y").unwrap();
        if !set(&up.join("d"), "user.overlay.opaque", b"y") {
            panic!("user xattrs unsupported under {}", base.display());
        }
        assert!(set(&up.join("d/f"), "user.keep", b"v"));
        let entries = upper_to_entries(up, true).unwrap();
        let names: Vec<String> = entries
            .iter()
            .map(|e| e.path.display().to_string())
            .collect();
        assert_eq!(names, ["d", "d/.wh..wh..opq", "d/f", "plain"]);
        let f = entries.iter().find(|e| e.path == Path::new("d/f")).unwrap();
        assert_eq!(f.xattrs, vec![("user.keep".to_owned(), b"v".to_vec())]);
        let plain = entries
            .iter()
            .find(|e| e.path == Path::new("plain"))
            .unwrap();
        assert!(plain.xattrs.is_empty());
        // Without xattrs wanted: none carried, the opaque marker still found.
        let bare = upper_to_entries(up, false).unwrap();
        assert!(bare.iter().all(|e| e.xattrs.is_empty()));
        assert_eq!(bare.len(), 4);

        assert!(set(&up.join("plain"), "user.overlay.metacopy", b""));
        let err = upper_to_entries(up, true).unwrap_err().to_string();
        assert!(err.contains("user.overlay.metacopy"), "{err}");
    }
}
