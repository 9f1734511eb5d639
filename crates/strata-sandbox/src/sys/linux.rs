//! [`Syscalls`] for real, through rustix (raw system calls on Linux: no
//! allocation, no locks, so they are safe in a forked child).

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use rustix::process::{Gid, Resource, Rlimit, Uid};
use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};

use super::{Errno, FdPath, Loc, Res, Syscalls};

/// The real system calls.
pub(crate) struct Linux;

/// A mount source or target as a path (open files as `/proc/self/fd/N`).
enum LocPath<'a> {
    Path(&'a CStr),
    Fd(FdPath),
}

impl LocPath<'_> {
    fn of<'a>(l: Loc<'a, OwnedFd>) -> LocPath<'a> {
        match l {
            Loc::Path(p) => LocPath::Path(p),
            Loc::Fd(fd) => LocPath::Fd(FdPath::new(fd.as_raw_fd())),
        }
    }

    fn as_cstr(&self) -> &CStr {
        match self {
            LocPath::Path(p) => p,
            LocPath::Fd(f) => f.as_cstr(),
        }
    }
}

/// `open_in_root`'s resolution: symlinks and `..` are resolved as if the
/// directory were `/`, so nothing outside it is reachable.
pub(crate) const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

impl Syscalls for Linux {
    type Fd = OwnedFd;

    fn unshare(&mut self, flags: UnshareFlags) -> Res {
        // SAFETY: unsafe only for `UnshareFlags::FILES` (another thread could
        // be left holding descriptors from the old table); the callers run
        // this in a forked, single-threaded child.
        unsafe { rustix::thread::unshare_unsafe(flags) }
    }

    fn make_rprivate(&mut self, target: &CStr) -> Res {
        rustix::mount::mount_change(
            target,
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )
    }

    fn mount(
        &mut self,
        source: &CStr,
        target: Loc<'_, OwnedFd>,
        fstype: &CStr,
        flags: MountFlags,
        data: Option<&CStr>,
    ) -> Res {
        let target = LocPath::of(target);
        rustix::mount::mount(source, target.as_cstr(), fstype, flags, data)
    }

    fn bind(&mut self, source: Loc<'_, OwnedFd>, target: Loc<'_, OwnedFd>, recursive: bool) -> Res {
        let (source, target) = (LocPath::of(source), LocPath::of(target));
        if recursive {
            rustix::mount::mount_bind_recursive(source.as_cstr(), target.as_cstr())
        } else {
            rustix::mount::mount_bind(source.as_cstr(), target.as_cstr())
        }
    }

    fn remount(&mut self, target: Loc<'_, OwnedFd>, flags: MountFlags) -> Res {
        let target = LocPath::of(target);
        rustix::mount::mount_remount(target.as_cstr(), flags, c"")
    }

    fn unmount_detach(&mut self, target: &CStr) -> Res {
        rustix::mount::unmount(target, UnmountFlags::DETACH)
    }

    fn open_dir(&mut self, path: &CStr) -> Res<OwnedFd> {
        rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }

    fn open_in_root(&mut self, root: &OwnedFd, path: &CStr) -> Res<OwnedFd> {
        rustix::fs::openat2(
            root,
            path,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )
    }

    fn mkdir_at(&mut self, dir: &OwnedFd, name: &CStr, mode: Mode) -> Res {
        rustix::fs::mkdirat(dir, name, mode)
    }

    fn create_at(&mut self, dir: &OwnedFd, name: &CStr) -> Res {
        rustix::fs::openat(
            dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        )
        .map(drop)
    }

    fn symlink_at(&mut self, target: &CStr, dir: &OwnedFd, name: &CStr) -> Res {
        rustix::fs::symlinkat(target, dir, name)
    }

    fn is_dir(&mut self, fd: &OwnedFd) -> Res<bool> {
        let st = rustix::fs::fstat(fd)?;
        Ok(rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
    }

    fn chdir(&mut self, path: &CStr) -> Res {
        rustix::process::chdir(path)
    }

    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Res {
        rustix::process::pivot_root(new_root, put_old)
    }

    fn sethostname(&mut self, name: &CStr) -> Res {
        rustix::system::sethostname(name.to_bytes())
    }

    fn loopback_up(&mut self) -> Res {
        let sock = rustix::net::socket_with(
            AddressFamily::INET,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        // An ifreq naming "lo": read its flags, add IFF_UP, write them back.
        // SAFETY: an all-zero ifreq is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let fd = sock.as_fd().as_raw_fd();
        // SAFETY: both requests take a pointer to an ifreq, which `req` is,
        // on a socket we own.
        let r = unsafe {
            if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) == 0 {
                req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                libc::ioctl(fd, libc::SIOCSIFFLAGS, &req)
            } else {
                -1
            }
        };
        if r < 0 {
            return Err(last_errno());
        }
        Ok(())
    }

    fn drop_bounding_cap(&mut self, cap: u32) -> Res {
        if cap >= 64 {
            return Err(Errno::INVAL);
        }
        rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1 << cap,
        ))
    }

    fn set_caps(&mut self, caps: CapabilitySet) -> Res {
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: caps,
                permitted: caps,
                inheritable: CapabilitySet::empty(),
            },
        )
    }

    fn clear_ambient_caps(&mut self) -> Res {
        match rustix::thread::clear_ambient_capability_set() {
            // Kernels without ambient capabilities have nothing to clear.
            Ok(()) | Err(Errno::INVAL) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn set_no_new_privs(&mut self) -> Res {
        rustix::thread::set_no_new_privs(true)
    }

    fn set_groups(&mut self, gids: &[Gid]) -> Res {
        // The thread variant is the raw syscall: glibc's setgroups()
        // broadcasts to all threads (setxid), which the child does not need.
        rustix::thread::set_thread_groups(gids)
    }

    fn set_gid(&mut self, gid: Gid) -> Res {
        rustix::thread::set_thread_res_gid(gid, gid, gid)
    }

    fn set_uid(&mut self, uid: Uid) -> Res {
        rustix::thread::set_thread_res_uid(uid, uid, uid)
    }

    fn set_rlimit(&mut self, resource: Resource, limit: Rlimit) -> Res {
        rustix::process::setrlimit(resource, limit)
    }

    fn set_seccomp(&mut self, program: &[seccompiler::sock_filter]) -> Res {
        match seccompiler::apply_filter(program) {
            Ok(()) => Ok(()),
            Err(seccompiler::Error::Seccomp(e) | seccompiler::Error::Prctl(e)) => {
                Err(Errno::from_io_error(&e).unwrap_or(Errno::INVAL))
            }
            Err(_) => Err(Errno::INVAL),
        }
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
        last_errno()
    }
}

/// The calling thread's `errno` (after a libc call), as a rustix [`Errno`].
pub(crate) fn last_errno() -> Errno {
    // `last_os_error` reads errno into an `Os` variant: no allocation.
    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO)
}
