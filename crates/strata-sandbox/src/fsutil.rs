//! Small filesystem helpers that stay inside a root directory.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `openat2(dirfd, path, flags, RESOLVE_IN_ROOT)`: symlinks and `..` are
/// resolved as if `dirfd` were `/`, so nothing outside it is reachable.
/// Async-signal-safe (one syscall); used by forked children too.
pub(crate) fn openat2_in_root(
    dirfd: libc::c_int,
    path: &std::ffi::CStr,
    flags: i32,
) -> libc::c_int {
    let mut how: libc::open_how = unsafe_zeroed_open_how();
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `how` is a valid open_how of the size passed; `path` is NUL-terminated.
    unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        ) as libc::c_int
    }
}

fn unsafe_zeroed_open_how() -> libc::open_how {
    // SAFETY: open_how is a plain C struct of integers; all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// Opens `rel` (a path inside `root`, leading `/` allowed) for reading,
/// resolving symlinks inside `root`. `Ok(None)` when it does not exist.
pub(crate) fn read_in_root(root: &Path, rel: &str) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let root_c = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let rel_c = CString::new(rel.trim_start_matches('/'))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: plain open of a NUL-terminated path.
    let dirfd = unsafe {
        libc::open(
            root_c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dirfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: dirfd was just opened and is owned here.
    let dir = unsafe { OwnedFd::from_raw_fd(dirfd) };
    let fd = openat2_in_root(
        std::os::fd::AsRawFd::as_raw_fd(&dir),
        &rel_c,
        libc::O_RDONLY,
    );
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: fd was just opened and is owned by the File.
    let mut f = unsafe { File::from_raw_fd(fd) };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(Some(buf))
}
