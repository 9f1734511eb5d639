//! The privileged system calls of the sandbox, behind a trait (youki's
//! `syscall/` shape), so the logic that sequences them is unit-testable
//! without root: [`linux::Linux`] makes the calls through rustix, and tests
//! use [`recording::Recorder`], a double that records them and can fail
//! chosen ones.
//!
//! The calls take typed arguments (rustix's `MountFlags`, `CapabilitySet`,
//! `Uid`, `Gid`, ...) rather than raw integers, and open files are the
//! implementation's own type ([`Syscalls::Fd`]: an `OwnedFd` for the real
//! thing, closed when dropped).
//!
//! The real calls run in a forked child of a possibly multi-threaded
//! process, where only async-signal-safe operations are allowed: each is
//! one system call on data prepared before the fork, with no allocation, no
//! locks and no panics.

use std::ffi::{CStr, CString};

use rustix::fs::Mode;
use rustix::mount::MountFlags;
use rustix::process::{Gid, Resource, Rlimit, Uid};
use rustix::thread::{CapabilitySet, UnshareFlags};

pub(crate) mod linux;
#[cfg(test)]
pub(crate) mod recording;

pub(crate) use rustix::io::Errno;

/// Result of one call.
pub(crate) type Res<T = ()> = Result<T, Errno>;

/// A path, or an open file (reached as `/proc/self/fd/N`), for mount
/// sources and targets.
pub(crate) enum Loc<'a, F> {
    Path(&'a CStr),
    Fd(&'a F),
}

impl<F> Clone for Loc<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for Loc<'_, F> {}

/// The calls the setup needs.
pub(crate) trait Syscalls {
    /// An open file.
    type Fd;

    /// `unshare(flags)`.
    fn unshare(&mut self, flags: UnshareFlags) -> Res;
    /// `mount(NULL, target, NULL, MS_REC|MS_PRIVATE, NULL)`: no mount event
    /// propagates to or from the host below `target`.
    fn make_rprivate(&mut self, target: &CStr) -> Res;
    /// Mounts a new filesystem instance (`proc`, `tmpfs`, `overlay`, ...).
    fn mount(
        &mut self,
        source: &CStr,
        target: Loc<'_, Self::Fd>,
        fstype: &CStr,
        flags: MountFlags,
        data: Option<&CStr>,
    ) -> Res;
    /// `mount(source, target, NULL, MS_BIND [|MS_REC], NULL)`.
    fn bind(
        &mut self,
        source: Loc<'_, Self::Fd>,
        target: Loc<'_, Self::Fd>,
        recursive: bool,
    ) -> Res;
    /// `mount(NULL, target, NULL, MS_REMOUNT|flags, NULL)`; `flags` holds
    /// `BIND` to change only the mount's own flags.
    fn remount(&mut self, target: Loc<'_, Self::Fd>, flags: MountFlags) -> Res;
    /// `umount2(target, MNT_DETACH)`.
    fn unmount_detach(&mut self, target: &CStr) -> Res;
    /// `open(path, O_PATH|O_DIRECTORY)` of a host path.
    fn open_dir(&mut self, path: &CStr) -> Res<Self::Fd>;
    /// `openat2(root, path, O_PATH, RESOLVE_IN_ROOT)`.
    fn open_in_root(&mut self, root: &Self::Fd, path: &CStr) -> Res<Self::Fd>;
    fn mkdir_at(&mut self, dir: &Self::Fd, name: &CStr, mode: Mode) -> Res;
    /// Creates an empty regular file (`O_CREAT|O_EXCL`).
    fn create_at(&mut self, dir: &Self::Fd, name: &CStr) -> Res;
    fn symlink_at(&mut self, target: &CStr, dir: &Self::Fd, name: &CStr) -> Res;
    fn is_dir(&mut self, fd: &Self::Fd) -> Res<bool>;
    fn chdir(&mut self, path: &CStr) -> Res;
    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Res;
    fn sethostname(&mut self, name: &CStr) -> Res;
    /// Brings the loopback interface of the current network namespace up.
    fn loopback_up(&mut self) -> Res;
    /// `prctl(PR_CAPBSET_DROP, cap)`; `EINVAL` past the last capability.
    fn drop_bounding_cap(&mut self, cap: u32) -> Res;
    /// `capset`: effective = permitted = `caps`, inheritable empty.
    fn set_caps(&mut self, caps: CapabilitySet) -> Res;
    fn clear_ambient_caps(&mut self) -> Res;
    fn set_no_new_privs(&mut self) -> Res;
    /// `setgroups` of the calling thread only (the child is single-threaded).
    fn set_groups(&mut self, gids: &[Gid]) -> Res;
    /// `setresgid(gid, gid, gid)` of the calling thread.
    fn set_gid(&mut self, gid: Gid) -> Res;
    /// `setresuid(uid, uid, uid)` of the calling thread.
    fn set_uid(&mut self, uid: Uid) -> Res;
    fn set_rlimit(&mut self, resource: Resource, limit: Rlimit) -> Res;
    /// Installs a seccomp BPF filter on the calling thread
    /// (`seccomp(SECCOMP_SET_MODE_FILTER)`; needs `no_new_privs` or
    /// CAP_SYS_ADMIN).
    fn set_seccomp(&mut self, program: &[seccompiler::sock_filter]) -> Res;
    /// `execve`; returns only on failure.
    fn exec(
        &mut self,
        path: &CStr,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> Errno;
}

/// `/proc/self/fd/N` in a stack buffer.
pub(crate) struct FdPath {
    buf: [u8; 32],
}

impl FdPath {
    pub(crate) fn new(fd: i32) -> FdPath {
        let mut buf = [0u8; 32];
        let prefix = b"/proc/self/fd/";
        buf[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 12];
        let mut n = fd.unsigned_abs();
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 || len == digits.len() {
                break;
            }
        }
        for i in 0..len {
            buf[prefix.len() + i] = digits[len - 1 - i];
        }
        FdPath { buf }
    }

    pub(crate) fn as_cstr(&self) -> &CStr {
        // The buffer always holds a NUL after the digits.
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"/proc/self/fd/")
    }
}

/// A path inside the container prepared for [`ensure`]: the prefixes to
/// create one by one (`a`, `a/b`), each with its parent and last component.
#[derive(Debug, Clone)]
pub(crate) struct InRoot {
    /// Display form, `/a/b/c`.
    pub display: String,
    /// `a/b/c` (or `.` for the root itself).
    pub path: CString,
    /// For each prefix including the path itself: (prefix, parent, name).
    pub steps: Vec<(CString, CString, CString)>,
}

impl InRoot {
    /// Prepares `path` (absolute inside the container; `..` is not allowed).
    pub(crate) fn new(path: &str) -> Result<InRoot, String> {
        let comps: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if comps.contains(&"..") {
            return Err(format!("path {path:?} contains \"..\""));
        }
        let c = |s: &str| CString::new(s).map_err(|_| format!("path {path:?} contains a NUL byte"));
        let mut steps = Vec::new();
        for i in 0..comps.len() {
            let parent = if i == 0 {
                ".".to_string()
            } else {
                comps[..i].join("/")
            };
            steps.push((c(&comps[..=i].join("/"))?, c(&parent)?, c(comps[i])?));
        }
        let joined = comps.join("/");
        Ok(InRoot {
            display: format!("/{joined}"),
            path: c(if joined.is_empty() { "." } else { &joined })?,
            steps,
        })
    }
}

/// What [`ensure`] creates at the end of the path when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaf {
    Dir,
    File,
}

/// Creates `p` (and its missing parents, as directories) inside `root`,
/// resolving every step inside `root`. Existing entries are kept.
pub(crate) fn ensure<S: Syscalls>(sys: &mut S, root: &S::Fd, p: &InRoot, leaf: Leaf) -> Res {
    let n = p.steps.len();
    for (i, (prefix, parent, name)) in p.steps.iter().enumerate() {
        match sys.open_in_root(root, prefix) {
            Ok(_) => continue,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
        let pfd = sys.open_in_root(root, parent)?;
        let r = if i + 1 == n && leaf == Leaf::File {
            sys.create_at(&pfd, name)
        } else {
            sys.mkdir_at(&pfd, name, Mode::from_bits_truncate(0o755))
        };
        match r {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::recording::Recorder;
    use super::*;

    #[test]
    fn fd_path_formats() {
        assert_eq!(FdPath::new(7).as_cstr(), c"/proc/self/fd/7");
        assert_eq!(FdPath::new(1234).as_cstr(), c"/proc/self/fd/1234");
        assert_eq!(FdPath::new(0).as_cstr(), c"/proc/self/fd/0");
    }

    #[test]
    fn in_root_rejects_dotdot() {
        assert!(InRoot::new("/a/../b").is_err());
        let p = InRoot::new("//run/./secrets/id").unwrap();
        assert_eq!(p.display, "/run/secrets/id");
        assert_eq!(p.steps.len(), 3);
        assert_eq!(InRoot::new("/").unwrap().path.as_c_str(), c".");
        assert!(InRoot::new("/a\0b").is_err());
    }

    #[test]
    fn ensure_creates_missing_parents_then_leaf() {
        let mut r = Recorder::new();
        r.existing.insert("run".into(), true);
        let root = r.root();
        let p = InRoot::new("/run/secrets/id").unwrap();
        ensure(&mut r, &root, &p, Leaf::File).unwrap();
        assert_eq!(
            r.effects(),
            vec!["mkdir run/secrets 0o755", "create run/secrets/id"]
        );
        // second time: nothing to do
        let mut r2 = Recorder::new();
        r2.existing = r.existing.clone();
        ensure(&mut r2, &root, &p, Leaf::File).unwrap();
        assert!(r2.effects().is_empty());
    }

    #[test]
    fn ensure_tolerates_a_racing_creator_and_reports_other_errors() {
        // EEXIST from mkdir: someone else created it meanwhile; fine
        let mut r = Recorder::new();
        r.fail = Some(("mkdir a".into(), Errno::EXIST));
        let root = r.root();
        ensure(&mut r, &root, &InRoot::new("/a/b").unwrap(), Leaf::Dir).unwrap();
        assert_eq!(r.effects(), vec!["mkdir a 0o755", "mkdir a/b 0o755"]);
        // any other failure stops the walk
        let mut r = Recorder::new();
        r.fail = Some(("mkdir a".into(), Errno::ROFS));
        let e = ensure(&mut r, &root, &InRoot::new("/a/b").unwrap(), Leaf::Dir);
        assert_eq!(e, Err(Errno::ROFS));
        assert_eq!(r.effects(), vec!["mkdir a 0o755"]);
        // and so does a failure to look a component up
        let mut r = Recorder::new();
        r.fail = Some(("open a".into(), Errno::ACCESS));
        let e = ensure(&mut r, &root, &InRoot::new("/a/b").unwrap(), Leaf::Dir);
        assert_eq!(e, Err(Errno::ACCESS));
    }
}
