//! Mount points that exist only because a mount needed them.
//!
//! A bind mount of `/run/secrets/id` or of a generated `/etc/hosts` needs a
//! file or directory to mount on. When the image has none, the executor (or
//! the runtime) creates one, in the writable layer. Those stubs must not end
//! up in the layer the builder commits, so, as BuildKit does, we note before
//! the run which mount targets are missing and afterwards remove what was
//! created for them, when it is still an empty file or an empty directory,
//! together with parent directories created for them and directories that
//! overlayfs only copied up to hold the stub.

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::spec::RootFs;

/// A path (relative, components) that did not exist before the run, plus the
/// first ancestor that existed (relative; empty = root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stub {
    /// Path relative to the root, e.g. `run/secrets/id`.
    pub path: String,
    /// The deepest ancestor that existed before, e.g. `run` (or "" for root).
    pub existing_ancestor: String,
}

/// Where changes land (upper dir or the rootfs dir) and the layers below it.
pub(crate) struct StubCleaner {
    write_dir: PathBuf,
    lower: Vec<PathBuf>,
    stubs: Vec<Stub>,
    /// For a directory rootfs, which concurrent runs may share: a shared
    /// `flock` on the directory, held for the run. Stubs are removed only
    /// when no other run holds it (one run must not pull the `/etc/hosts`
    /// stub from under another that is about to mount on it).
    dir_lock: Option<OwnedFd>,
}

/// Opens `dir` and takes a shared `flock` on it (None when it cannot).
fn lock_shared(dir: &Path) -> Option<OwnedFd> {
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    rustix::fs::flock(&fd, FlockOperation::LockShared)
        .ok()
        .map(|()| fd)
}

fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

#[derive(PartialEq, Eq, Debug, Clone, Copy)]
enum Presence {
    Present,
    Whiteout,
    Absent,
    /// A symlink or something else on the way: we cannot tell; assume present.
    Unknown,
}

/// Opens `rel` below `dir` without following any symlink.
fn open_beneath(dir: &Path, rel: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    let dfd = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if rel.is_empty() {
        return Ok(dfd);
    }
    rustix::fs::openat2(
        &dfd,
        rel,
        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

fn presence_in(dir: &Path, rel: &str) -> Presence {
    match open_beneath(dir, rel, OFlags::PATH) {
        Ok(fd) => match rustix::fs::fstat(&fd) {
            Ok(st)
                if FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice
                    && st.st_rdev == 0 =>
            {
                Presence::Whiteout
            }
            Ok(_) => Presence::Present,
            Err(_) => Presence::Unknown,
        },
        Err(Errno::NOENT | Errno::NOTDIR) => Presence::Absent,
        Err(_) => Presence::Unknown,
    }
}

impl StubCleaner {
    /// Notes which of `targets` (absolute container paths) are missing in `rootfs`.
    pub(crate) fn before_run(rootfs: &RootFs, targets: &[&str]) -> StubCleaner {
        let (write_dir, lower, dir_lock) = match rootfs {
            RootFs::Dir(d) => (d.clone(), Vec::new(), lock_shared(d)),
            RootFs::Overlay {
                lowerdirs,
                upperdir,
                ..
            }
            | RootFs::FuseOverlay {
                lowerdirs,
                upperdir,
                ..
            } => (upperdir.clone(), lowerdirs.clone(), None),
        };
        let mut c = StubCleaner {
            write_dir,
            lower,
            stubs: Vec::new(),
            dir_lock,
        };
        for t in targets {
            let comps = components(t);
            let mut existing = String::new();
            for i in 1..=comps.len() {
                let prefix = comps[..i].join("/");
                if c.exists(&prefix) {
                    existing = prefix;
                } else {
                    let stub = Stub {
                        path: comps.join("/"),
                        existing_ancestor: existing.clone(),
                    };
                    if !c.stubs.contains(&stub) {
                        c.stubs.push(stub);
                    }
                    break;
                }
            }
        }
        c
    }

    fn layers(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.write_dir.as_path()).chain(self.lower.iter().map(|p| p.as_path()))
    }

    /// Whether `rel` exists in the merged view (whiteouts hide lower entries).
    fn exists(&self, rel: &str) -> bool {
        for layer in self.layers() {
            match presence_in(layer, rel) {
                Presence::Present | Presence::Unknown => return true,
                Presence::Whiteout => return false,
                Presence::Absent => {}
            }
        }
        false
    }

    #[cfg(test)]
    pub(crate) fn stubs(&self) -> &[Stub] {
        &self.stubs
    }

    /// Removes the stubs (deepest first) if they are still empty.
    /// On a shared directory rootfs, only the last run out removes them;
    /// a stub left behind by overlapping runs is an empty file or directory.
    pub(crate) fn after_run(&self) {
        if let Some(fd) = &self.dir_lock {
            // Converts our shared lock; never blocks.
            if rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive).is_err() {
                return;
            }
        }
        for stub in &self.stubs {
            let comps = components(&stub.path);
            let keep = components(&stub.existing_ancestor).len();
            // the stub and the parents created for it
            for depth in (keep + 1..=comps.len()).rev() {
                let rel = comps[..depth].join("/");
                if !remove_if_empty(&self.write_dir, &rel) {
                    break;
                }
            }
            // directories only copied up to hold the stub (overlay)
            if !self.lower.is_empty() {
                for depth in (1..=keep).rev() {
                    let rel = comps[..depth].join("/");
                    if !self.copied_up_unchanged(&rel) || !remove_if_empty(&self.write_dir, &rel) {
                        break;
                    }
                }
            }
        }
    }

    /// `rel` is a directory in the write dir whose mode and owner equal the
    /// first lower layer's copy of it.
    fn copied_up_unchanged(&self, rel: &str) -> bool {
        let Ok(upper) = open_beneath(&self.write_dir, rel, OFlags::PATH) else {
            return false;
        };
        let Ok(ust) = rustix::fs::fstat(&upper) else {
            return false;
        };
        for layer in &self.lower {
            if let Ok(fd) = open_beneath(layer, rel, OFlags::PATH) {
                return rustix::fs::fstat(&fd).is_ok_and(|lst| {
                    lst.st_mode == ust.st_mode
                        && lst.st_uid == ust.st_uid
                        && lst.st_gid == ust.st_gid
                }) && !has_overlay_opaque(&self.write_dir.join(rel));
            }
        }
        false
    }
}

fn has_overlay_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 4];
    [
        c"trusted.overlay.opaque",
        c"user.overlay.opaque",
        c"user.fuseoverlayfs.opaque",
    ]
    .into_iter()
    .any(|name| rustix::fs::lgetxattr(path, name, &mut buf).is_ok_and(|n| n > 0))
}

/// Removes `rel` under `dir` when it is an empty regular file or an empty
/// directory; never follows symlinks. True when it was removed (or is gone).
fn remove_if_empty(dir: &Path, rel: &str) -> bool {
    let (parent, name) = match rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", rel),
    };
    let Ok(pfd) = open_beneath(dir, parent, OFlags::PATH | OFlags::DIRECTORY) else {
        return false;
    };
    let st = match rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(e) => return e == Errno::NOENT,
    };
    let flags = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile if st.st_size == 0 => AtFlags::empty(),
        FileType::Directory => {
            remove_fuse_markers(&pfd, name);
            AtFlags::REMOVEDIR
        }
        _ => return false,
    };
    // rmdir fails on a non-empty directory
    rustix::fs::unlinkat(&pfd, name, flags).is_ok()
}

/// fuse-overlayfs makes every directory it creates opaque, with a
/// `.wh..wh..opq` file and a whiteout named `.wh..opq` in it: when those are
/// all the directory `name` in `parent` holds, they go (it is empty then).
fn remove_fuse_markers(parent: &OwnedFd, name: &str) {
    let Ok(dir) = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let Ok(entries) = rustix::fs::Dir::read_from(&dir) else {
        return;
    };
    let mut markers = Vec::new();
    for e in entries.flatten() {
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        let marker =
            rustix::fs::statat(&dir, e.file_name(), AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::RegularFile => n == b".wh..wh..opq" && st.st_size == 0,
                    FileType::CharacterDevice => n == b".wh..opq" && st.st_rdev == 0,
                    _ => false,
                }
            });
        if !marker {
            return;
        }
        markers.push(e.file_name().to_owned());
    }
    for m in markers {
        let _ = rustix::fs::unlinkat(&dir, &m, AtFlags::empty());
    }
}

/// Metadata helper for tests and callers: whether `path` is an overlay
/// whiteout (a 0/0 character device).
pub fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn records_missing_targets_and_removes_empty_stubs() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        let upper = t.path().join("upper");
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::create_dir_all(lower.join("run")).unwrap();
        fs::write(lower.join("etc/hosts"), "x").unwrap();
        fs::create_dir_all(&upper).unwrap();
        let rootfs = RootFs::Overlay {
            lowerdirs: vec![lower.clone()],
            upperdir: upper.clone(),
            workdir: t.path().join("work"),
        };
        let c = StubCleaner::before_run(
            &rootfs,
            &[
                "/etc/hosts",
                "/etc/resolv.conf",
                "/run/secrets/id",
                "/cache/x",
                "/cache/y",
            ],
        );
        let got: Vec<(&str, &str)> = c
            .stubs()
            .iter()
            .map(|s| (s.path.as_str(), s.existing_ancestor.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("etc/resolv.conf", "etc"),
                ("run/secrets/id", "run"),
                ("cache/x", ""),
                ("cache/y", "")
            ]
        );
        // what a runtime leaves behind in the upper dir
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/resolv.conf"), "").unwrap();
        fs::create_dir_all(upper.join("run/secrets")).unwrap();
        fs::write(upper.join("run/secrets/id"), "").unwrap();
        fs::create_dir_all(upper.join("cache/x")).unwrap();
        fs::create_dir_all(upper.join("cache/y")).unwrap();
        fs::write(upper.join("cache/y/data"), "kept").unwrap();
        // copy-up keeps the lower's mode
        let mode = fs::metadata(lower.join("etc")).unwrap().mode();
        fs::set_permissions(
            upper.join("etc"),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .unwrap();
        fs::set_permissions(
            upper.join("run"),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .unwrap();
        c.after_run();
        assert!(
            !upper.join("etc").exists(),
            "copied-up etc holding only the stub is gone"
        );
        assert!(!upper.join("run").exists());
        assert!(!upper.join("cache/x").exists());
        assert!(upper.join("cache/y/data").exists(), "non-empty stays");
    }

    #[test]
    fn whiteout_hides_lower_entry() {
        if !strata_testkit::is_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        let upper = t.path().join("upper");
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::write(lower.join("etc/hosts"), "x").unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("etc/hosts"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let rootfs = RootFs::Overlay {
            lowerdirs: vec![lower],
            upperdir: upper,
            workdir: t.path().join("work"),
        };
        let c = StubCleaner::before_run(&rootfs, &["/etc/hosts"]);
        assert_eq!(c.stubs().len(), 1);
    }

    /// fuse-overlayfs makes each directory it creates opaque, with marker
    /// files in it: a stub directory holding only those is still empty.
    #[test]
    fn fuse_overlayfs_stub_directories_are_removed() {
        if !strata_testkit::is_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        let upper = t.path().join("upper");
        fs::create_dir_all(&lower).unwrap();
        fs::create_dir_all(&upper).unwrap();
        let rootfs = RootFs::FuseOverlay {
            lowerdirs: vec![lower],
            upperdir: upper.clone(),
            workdir: t.path().join("work"),
        };
        let c = StubCleaner::before_run(&rootfs, &["/proc", "/kept"]);
        for d in ["proc", "kept"] {
            let dir = upper.join(d);
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join(".wh..wh..opq"), "").unwrap();
            rustix::fs::mknodat(
                rustix::fs::CWD,
                dir.join(".wh..opq"),
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o700),
                0,
            )
            .unwrap();
        }
        // The run wrote into /kept: it stays, markers and all.
        fs::write(upper.join("kept/data"), "d").unwrap();
        c.after_run();
        assert!(!upper.join("proc").exists());
        assert!(upper.join("kept/data").exists());
        assert!(upper.join("kept/.wh..wh..opq").exists());
    }
}
