//! Small filesystem helpers that stay inside a root directory.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::sys::linux::IN_ROOT;

/// Reads `rel` (a path inside `root`, leading `/` allowed), resolving
/// symlinks and `..` inside `root` (`openat2` with `RESOLVE_IN_ROOT`), so
/// nothing outside it is reachable. `Ok(None)` when it does not exist.
pub(crate) fn read_in_root(root: &Path, rel: &str) -> io::Result<Option<Vec<u8>>> {
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let fd = match rustix::fs::openat2(
        &dir,
        rel.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        IN_ROOT,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut buf = Vec::new();
    File::from(fd).read_to_end(&mut buf)?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inside_the_root_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "inside").unwrap();
        std::fs::write(t.path().join("passwd"), "outside").unwrap();
        // an absolute symlink and a .. walk both stay in the root
        std::os::unix::fs::symlink("/etc/passwd", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../passwd", root.join("etc/up")).unwrap();
        let read = |p: &str| read_in_root(&root, p).unwrap();
        assert_eq!(read("/etc/passwd").as_deref(), Some(&b"inside"[..]));
        assert_eq!(read("abs").as_deref(), Some(&b"inside"[..]));
        // ../../passwd from /etc is /passwd of the root, which does not exist
        assert_eq!(read("/etc/up"), None);
        assert_eq!(read("/../passwd"), None);
        assert!(read_in_root(&root, "/etc/passwd/x").unwrap().is_none());
        assert!(read_in_root(&t.path().join("nope"), "/x").is_err());
    }
}
