//! The privileged system calls of the sandbox, behind a trait (as youki does),
//! so the logic that sequences them is unit-testable without root: tests use
//! a recording double, the sandbox uses [`Real`].
//!
//! [`Real`]'s methods run in a forked child of a possibly multi-threaded
//! process, where only async-signal-safe operations are allowed: each is one
//! system call on data prepared before the fork, with no allocation, no
//! locks and no panics.

use std::ffi::CStr;

/// An errno value.
pub(crate) type Errno = i32;
/// A raw file descriptor.
pub(crate) type Fd = i32;
/// Result of one call.
pub(crate) type Res<T = ()> = Result<T, Errno>;

/// A path, or an open file (`/proc/self/fd/N`) for mount sources and targets.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Loc<'a> {
    Path(&'a CStr),
    Fd(Fd),
}

/// The calls the setup needs.
pub(crate) trait Syscalls {
    fn unshare(&mut self, flags: i32) -> Res;
    fn mount(
        &mut self,
        source: Option<Loc<'_>>,
        target: Loc<'_>,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> Res;
    fn umount_detach(&mut self, target: &CStr) -> Res;
    /// `open(path, O_PATH|O_DIRECTORY)` of a host path.
    fn open_dir(&mut self, path: &CStr) -> Res<Fd>;
    /// `openat2(root, path, O_PATH, RESOLVE_IN_ROOT)`.
    fn open_in_root(&mut self, root: Fd, path: &CStr) -> Res<Fd>;
    fn mkdir_at(&mut self, dir: Fd, name: &CStr, mode: u32) -> Res;
    /// Creates an empty regular file (`O_CREAT|O_EXCL`).
    fn create_at(&mut self, dir: Fd, name: &CStr) -> Res;
    fn symlink_at(&mut self, target: &CStr, dir: Fd, name: &CStr) -> Res;
    fn is_dir(&mut self, fd: Fd) -> Res<bool>;
    fn close(&mut self, fd: Fd);
    fn chdir(&mut self, path: &CStr) -> Res;
    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Res;
    fn sethostname(&mut self, name: &CStr) -> Res;
    /// Brings the loopback interface of the current network namespace up.
    fn loopback_up(&mut self) -> Res;
    /// `prctl(PR_CAPBSET_DROP, cap)`; `EINVAL` past the last capability.
    fn drop_bounding_cap(&mut self, cap: u32) -> Res;
    /// `capset`: effective = permitted = `caps`, inheritable empty.
    fn set_caps(&mut self, caps: u64) -> Res;
    fn clear_ambient_caps(&mut self) -> Res;
    fn set_no_new_privs(&mut self) -> Res;
    fn set_groups(&mut self, gids: &[libc::gid_t]) -> Res;
    fn set_gid(&mut self, gid: u32) -> Res;
    fn set_uid(&mut self, uid: u32) -> Res;
    fn set_rlimit(&mut self, resource: u32, soft: u64, hard: u64) -> Res;
    /// `execve`; returns only on failure.
    fn exec(
        &mut self,
        path: &CStr,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> Errno;
}

fn errno() -> Errno {
    // SAFETY: reading the thread's errno.
    unsafe { *libc::__errno_location() }
}

fn check(r: libc::c_long) -> Res {
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// `/proc/self/fd/N` in a stack buffer.
pub(crate) struct FdPath {
    buf: [u8; 32],
}

impl FdPath {
    pub(crate) fn new(fd: Fd) -> FdPath {
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

/// The real system calls.
pub(crate) struct Real;

impl Syscalls for Real {
    fn unshare(&mut self, flags: i32) -> Res {
        // SAFETY: plain syscall.
        check(unsafe { libc::unshare(flags) } as libc::c_long)
    }

    fn mount(
        &mut self,
        source: Option<Loc<'_>>,
        target: Loc<'_>,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> Res {
        let src_fd;
        let src = match source {
            None => std::ptr::null(),
            Some(Loc::Path(p)) => p.as_ptr(),
            Some(Loc::Fd(fd)) => {
                src_fd = FdPath::new(fd);
                src_fd.as_cstr().as_ptr()
            }
        };
        let tgt_fd;
        let tgt = match target {
            Loc::Path(p) => p.as_ptr(),
            Loc::Fd(fd) => {
                tgt_fd = FdPath::new(fd);
                tgt_fd.as_cstr().as_ptr()
            }
        };
        // SAFETY: all pointers are NUL-terminated strings or null.
        check(unsafe {
            libc::mount(
                src,
                tgt,
                fstype.map_or(std::ptr::null(), |f| f.as_ptr()),
                flags as libc::c_ulong,
                data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
            )
        } as libc::c_long)
    }

    fn umount_detach(&mut self, target: &CStr) -> Res {
        // SAFETY: valid path.
        check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } as libc::c_long)
    }

    fn open_dir(&mut self, path: &CStr) -> Res<Fd> {
        // SAFETY: valid path.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            Err(errno())
        } else {
            Ok(fd)
        }
    }

    fn open_in_root(&mut self, root: Fd, path: &CStr) -> Res<Fd> {
        let fd = crate::fsutil::openat2_in_root(root, path, libc::O_PATH);
        if fd < 0 {
            Err(errno())
        } else {
            Ok(fd)
        }
    }

    fn mkdir_at(&mut self, dir: Fd, name: &CStr, mode: u32) -> Res {
        // SAFETY: valid fd and name.
        check(unsafe { libc::mkdirat(dir, name.as_ptr(), mode) } as libc::c_long)
    }

    fn create_at(&mut self, dir: Fd, name: &CStr) -> Res {
        // SAFETY: valid fd and name.
        let fd = unsafe {
            libc::openat(
                dir,
                name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644,
            )
        };
        if fd < 0 {
            return Err(errno());
        }
        // SAFETY: closing the fd just opened.
        unsafe { libc::close(fd) };
        Ok(())
    }

    fn symlink_at(&mut self, target: &CStr, dir: Fd, name: &CStr) -> Res {
        // SAFETY: valid strings and fd.
        check(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) } as libc::c_long)
    }

    fn is_dir(&mut self, fd: Fd) -> Res<bool> {
        // SAFETY: zeroed stat is valid.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and buffer.
        check(
            unsafe { libc::fstatat(fd, c"".as_ptr(), &mut st, libc::AT_EMPTY_PATH) }
                as libc::c_long,
        )?;
        Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
    }

    fn close(&mut self, fd: Fd) {
        // SAFETY: closing a descriptor we opened.
        unsafe { libc::close(fd) };
    }

    fn chdir(&mut self, path: &CStr) -> Res {
        // SAFETY: valid path.
        check(unsafe { libc::chdir(path.as_ptr()) } as libc::c_long)
    }

    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Res {
        // SAFETY: valid paths.
        check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
    }

    fn sethostname(&mut self, name: &CStr) -> Res {
        let b = name.to_bytes();
        // SAFETY: valid buffer and length.
        check(unsafe { libc::sethostname(b.as_ptr().cast(), b.len()) } as libc::c_long)
    }

    fn loopback_up(&mut self) -> Res {
        // SAFETY: socket + two ioctls on a zeroed ifreq naming "lo".
        unsafe {
            let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if sock < 0 {
                return Err(errno());
            }
            let mut req: libc::ifreq = std::mem::zeroed();
            req.ifr_name[0] = b'l' as libc::c_char;
            req.ifr_name[1] = b'o' as libc::c_char;
            let mut r = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
            if r == 0 {
                req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                r = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
            }
            let e = errno();
            libc::close(sock);
            if r < 0 {
                return Err(e);
            }
        }
        Ok(())
    }

    fn drop_bounding_cap(&mut self, cap: u32) -> Res {
        // SAFETY: plain prctl.
        check(
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) }
                as libc::c_long,
        )
    }

    fn set_caps(&mut self, caps: u64) -> Res {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let lo = caps as u32;
        let hi = (caps >> 32) as u32;
        let data = [
            Data {
                effective: lo,
                permitted: lo,
                inheritable: 0,
            },
            Data {
                effective: hi,
                permitted: hi,
                inheritable: 0,
            },
        ];
        // SAFETY: header and two data structs as the v3 ABI requires.
        check(unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) })
    }

    fn clear_ambient_caps(&mut self) -> Res {
        // SAFETY: plain prctl.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        // Kernels without ambient capabilities have nothing to clear.
        if r < 0 && errno() != libc::EINVAL {
            return Err(errno());
        }
        Ok(())
    }

    fn set_no_new_privs(&mut self) -> Res {
        // SAFETY: plain prctl.
        check(
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) }
                as libc::c_long,
        )
    }

    fn set_groups(&mut self, gids: &[libc::gid_t]) -> Res {
        // Raw syscall: glibc's setgroups() broadcasts to all threads (setxid),
        // which a forked single-threaded child does not need.
        // SAFETY: valid buffer and length.
        check(unsafe { libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) })
    }

    fn set_gid(&mut self, gid: u32) -> Res {
        // SAFETY: plain syscall.
        check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })
    }

    fn set_uid(&mut self, uid: u32) -> Res {
        // SAFETY: plain syscall.
        check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })
    }

    fn set_rlimit(&mut self, resource: u32, soft: u64, hard: u64) -> Res {
        let lim = libc::rlimit64 {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: valid struct; prlimit on ourselves.
        check(unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                0,
                resource,
                &lim as *const libc::rlimit64,
                std::ptr::null_mut::<libc::rlimit64>(),
            )
        })
    }

    fn exec(
        &mut self,
        path: &CStr,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> Errno {
        // SAFETY: argv and envp are NULL-terminated arrays of C strings that
        // outlive this call (prepared before the fork).
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        errno()
    }
}

/// A path inside the container prepared for [`ensure`]: the prefixes to
/// create one by one (`a`, `a/b`), each with its parent and last component.
#[derive(Debug, Clone)]
pub(crate) struct InRoot {
    /// Display form, `/a/b/c`.
    pub display: String,
    /// `a/b/c` (or `.` for the root itself).
    pub path: std::ffi::CString,
    /// For each prefix including the path itself: (prefix, parent, name).
    pub steps: Vec<(std::ffi::CString, std::ffi::CString, std::ffi::CString)>,
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
        let c = |s: &str| {
            std::ffi::CString::new(s).map_err(|_| format!("path {path:?} contains a NUL byte"))
        };
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
pub(crate) fn ensure(sys: &mut impl Syscalls, root: Fd, p: &InRoot, leaf: Leaf) -> Res {
    let n = p.steps.len();
    for (i, (prefix, parent, name)) in p.steps.iter().enumerate() {
        match sys.open_in_root(root, prefix) {
            Ok(fd) => {
                sys.close(fd);
                continue;
            }
            Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let pfd = sys.open_in_root(root, parent)?;
        let r = if i + 1 == n && leaf == Leaf::File {
            sys.create_at(pfd, name)
        } else {
            sys.mkdir_at(pfd, name, 0o755)
        };
        sys.close(pfd);
        match r {
            Ok(()) | Err(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod recording {
    //! A [`Syscalls`] double that records calls and can fail chosen ones.
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub(crate) struct Recorder {
        pub calls: Vec<String>,
        next_fd: Fd,
        fds: BTreeMap<Fd, String>,
        /// Paths (inside root) that exist, and whether they are directories.
        pub existing: BTreeMap<String, bool>,
        /// Fail the first call whose record starts with this prefix.
        pub fail: Option<(String, Errno)>,
    }

    impl Recorder {
        pub(crate) fn new() -> Recorder {
            Recorder {
                next_fd: 100,
                ..Default::default()
            }
        }

        fn rec(&mut self, s: String) -> Res {
            let fail = self
                .fail
                .as_ref()
                .filter(|(p, _)| s.starts_with(p.as_str()))
                .map(|(_, e)| *e);
            self.calls.push(s);
            if let Some(e) = fail {
                self.fail = None;
                return Err(e);
            }
            Ok(())
        }

        fn loc(&self, l: Loc<'_>) -> String {
            match l {
                Loc::Path(p) => p.to_string_lossy().into_owned(),
                Loc::Fd(fd) => format!("<{}>", self.fds.get(&fd).cloned().unwrap_or_default()),
            }
        }

        fn new_fd(&mut self, name: String) -> Fd {
            self.next_fd += 1;
            self.fds.insert(self.next_fd, name);
            self.next_fd
        }

        /// Calls that changed something (no opens/closes).
        pub(crate) fn effects(&self) -> Vec<&str> {
            self.calls
                .iter()
                .map(|s| s.as_str())
                .filter(|s| {
                    !s.starts_with("open") && !s.starts_with("close") && !s.starts_with("isdir")
                })
                .collect()
        }
    }

    fn s(c: &CStr) -> String {
        c.to_string_lossy().into_owned()
    }

    impl Syscalls for Recorder {
        fn unshare(&mut self, flags: i32) -> Res {
            self.rec(format!("unshare {flags:#x}"))
        }
        fn mount(
            &mut self,
            source: Option<Loc<'_>>,
            target: Loc<'_>,
            fstype: Option<&CStr>,
            flags: u64,
            data: Option<&CStr>,
        ) -> Res {
            let src = source.map(|l| self.loc(l)).unwrap_or_else(|| "-".into());
            let tgt = self.loc(target);
            self.rec(format!(
                "mount {src} {tgt} {} {flags:#x} {}",
                fstype.map(s).unwrap_or_else(|| "-".into()),
                data.map(s).unwrap_or_else(|| "-".into())
            ))
        }
        fn umount_detach(&mut self, target: &CStr) -> Res {
            self.rec(format!("umount {}", s(target)))
        }
        fn open_dir(&mut self, path: &CStr) -> Res<Fd> {
            self.rec(format!("open_dir {}", s(path)))?;
            Ok(self.new_fd(s(path)))
        }
        fn open_in_root(&mut self, _root: Fd, path: &CStr) -> Res<Fd> {
            let p = s(path);
            self.rec(format!("open {p}"))?;
            if p != "." && !self.existing.contains_key(&p) {
                return Err(libc::ENOENT);
            }
            Ok(self.new_fd(p))
        }
        fn mkdir_at(&mut self, dir: Fd, name: &CStr, _mode: u32) -> Res {
            let parent = self.fds.get(&dir).cloned().unwrap_or_default();
            let p = if parent == "." {
                s(name)
            } else {
                format!("{parent}/{}", s(name))
            };
            self.rec(format!("mkdir {p}"))?;
            self.existing.insert(p, true);
            Ok(())
        }
        fn create_at(&mut self, dir: Fd, name: &CStr) -> Res {
            let parent = self.fds.get(&dir).cloned().unwrap_or_default();
            let p = if parent == "." {
                s(name)
            } else {
                format!("{parent}/{}", s(name))
            };
            self.rec(format!("create {p}"))?;
            self.existing.insert(p, false);
            Ok(())
        }
        fn symlink_at(&mut self, target: &CStr, dir: Fd, name: &CStr) -> Res {
            let parent = self.fds.get(&dir).cloned().unwrap_or_default();
            self.rec(format!("symlink {parent}/{} -> {}", s(name), s(target)))
        }
        fn is_dir(&mut self, fd: Fd) -> Res<bool> {
            let p = self.fds.get(&fd).cloned().unwrap_or_default();
            self.rec(format!("isdir {p}"))?;
            Ok(self.existing.get(&p).copied().unwrap_or(true))
        }
        fn close(&mut self, fd: Fd) {
            self.fds.remove(&fd);
        }
        fn chdir(&mut self, path: &CStr) -> Res {
            self.rec(format!("chdir {}", s(path)))
        }
        fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Res {
            self.rec(format!("pivot_root {} {}", s(new_root), s(put_old)))
        }
        fn sethostname(&mut self, name: &CStr) -> Res {
            self.rec(format!("sethostname {}", s(name)))
        }
        fn loopback_up(&mut self) -> Res {
            self.rec("loopback_up".into())
        }
        fn drop_bounding_cap(&mut self, cap: u32) -> Res {
            if cap > 40 {
                return Err(libc::EINVAL);
            }
            self.rec(format!("capbset_drop {cap}"))
        }
        fn set_caps(&mut self, caps: u64) -> Res {
            self.rec(format!("capset {caps:#x}"))
        }
        fn clear_ambient_caps(&mut self) -> Res {
            self.rec("ambient_clear".into())
        }
        fn set_no_new_privs(&mut self) -> Res {
            self.rec("no_new_privs".into())
        }
        fn set_groups(&mut self, gids: &[libc::gid_t]) -> Res {
            self.rec(format!("setgroups {gids:?}"))
        }
        fn set_gid(&mut self, gid: u32) -> Res {
            self.rec(format!("setgid {gid}"))
        }
        fn set_uid(&mut self, uid: u32) -> Res {
            self.rec(format!("setuid {uid}"))
        }
        fn set_rlimit(&mut self, resource: u32, soft: u64, hard: u64) -> Res {
            self.rec(format!("rlimit {resource} {soft} {hard}"))
        }
        fn exec(
            &mut self,
            path: &CStr,
            _argv: &[*const libc::c_char],
            _envp: &[*const libc::c_char],
        ) -> Errno {
            let p = s(path);
            let ok = self.existing.contains_key(p.trim_start_matches('/'));
            let _ = self.rec(format!("exec {p}"));
            if ok {
                0
            } else {
                libc::ENOENT
            }
        }
    }
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
    }

    #[test]
    fn ensure_creates_missing_parents_then_leaf() {
        let mut r = Recorder::new();
        r.existing.insert("run".into(), true);
        let p = InRoot::new("/run/secrets/id").unwrap();
        ensure(&mut r, 3, &p, Leaf::File).unwrap();
        assert_eq!(
            r.effects(),
            vec!["mkdir run/secrets", "create run/secrets/id"]
        );
        // second time: nothing to do
        let mut r2 = Recorder::new();
        r2.existing = r.existing.clone();
        ensure(&mut r2, 3, &p, Leaf::File).unwrap();
        assert!(r2.effects().is_empty());
    }
}
