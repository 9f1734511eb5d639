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

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
    let d = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: NUL-terminated path.
    let fd = unsafe {
        libc::open(
            d.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: just opened, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: valid fd.
    (unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_SH) } == 0).then_some(fd)
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

fn open_beneath(dir: &Path, rel: &str, flags: i32) -> Result<OwnedFd, i32> {
    let d = CString::new(dir.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
    // SAFETY: NUL-terminated path.
    let dfd = unsafe {
        libc::open(
            d.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dfd < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    // SAFETY: just opened, owned here.
    let dfd = unsafe { OwnedFd::from_raw_fd(dfd) };
    if rel.is_empty() {
        return Ok(dfd);
    }
    let r = CString::new(rel).map_err(|_| libc::EINVAL)?;
    // SAFETY: zeroed open_how is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid open_how and path.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dfd.as_raw_fd(),
            r.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    // SAFETY: just opened, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn fstat(fd: &OwnedFd) -> Option<libc::stat> {
    // SAFETY: zeroed stat is valid; fd is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and buffer; AT_EMPTY_PATH stats the fd itself.
    let r = unsafe { libc::fstatat(fd.as_raw_fd(), c"".as_ptr(), &mut st, libc::AT_EMPTY_PATH) };
    (r == 0).then_some(st)
}

fn presence_in(dir: &Path, rel: &str) -> Presence {
    match open_beneath(dir, rel, libc::O_PATH) {
        Ok(fd) => match fstat(&fd) {
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0 => {
                Presence::Whiteout
            }
            Some(_) => Presence::Present,
            None => Presence::Unknown,
        },
        Err(libc::ENOENT) => Presence::Absent,
        Err(libc::ENOTDIR) => Presence::Absent,
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
            // SAFETY: valid fd; converts our shared lock, never blocks.
            if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
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
        let Ok(upper) = open_beneath(&self.write_dir, rel, libc::O_PATH) else {
            return false;
        };
        let Some(ust) = fstat(&upper) else {
            return false;
        };
        for layer in &self.lower {
            if let Ok(fd) = open_beneath(layer, rel, libc::O_PATH) {
                return fstat(&fd).is_some_and(|lst| {
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
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    let mut buf = [0u8; 4];
    for name in [c"trusted.overlay.opaque", c"user.overlay.opaque"] {
        // SAFETY: valid path, name and buffer.
        let r = unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if r > 0 {
            return true;
        }
    }
    false
}

/// Removes `rel` under `dir` when it is an empty regular file or an empty
/// directory; never follows symlinks. True when it was removed (or is gone).
fn remove_if_empty(dir: &Path, rel: &str) -> bool {
    let (parent, name) = match rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", rel),
    };
    let Ok(pfd) = open_beneath(dir, parent, libc::O_PATH | libc::O_DIRECTORY) else {
        return false;
    };
    let Ok(name_c) = CString::new(name) else {
        return false;
    };
    // SAFETY: zeroed stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, name, buffer.
    if unsafe {
        libc::fstatat(
            pfd.as_raw_fd(),
            name_c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } != 0
    {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT);
    }
    let flags = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG if st.st_size == 0 => 0,
        libc::S_IFDIR => libc::AT_REMOVEDIR,
        _ => return false,
    };
    // SAFETY: valid fd and name; rmdir fails on non-empty directories.
    unsafe { libc::unlinkat(pfd.as_raw_fd(), name_c.as_ptr(), flags) == 0 }
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
        let p = CString::new(upper.join("etc/hosts").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid path.
        assert_eq!(
            unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o600, 0) },
            0
        );
        let rootfs = RootFs::Overlay {
            lowerdirs: vec![lower],
            upperdir: upper,
            workdir: t.path().join("work"),
        };
        let c = StubCleaner::before_run(&rootfs, &["/etc/hosts"]);
        assert_eq!(c.stubs().len(), 1);
    }
}
