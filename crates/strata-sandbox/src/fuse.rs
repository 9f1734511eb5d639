//! `fuse-overlayfs` (Debian's package of that name) as a container's root
//! filesystem: the rootless snapshotter where the kernel's overlayfs cannot
//! be mounted in the user namespace (Linux < 5.11).
//!
//! The executor mounts it on the host side of the sandbox ([`FuseMount`]),
//! in strata's own mount namespace (private in rootless mode), and binds
//! the mount point as the container's root. The daemon runs in the
//! foreground as strata's child with `PR_SET_PDEATHSIG`: it ends with the
//! thread that mounted it, or when the mount is unmounted (the executor does
//! that when the container ended), so no daemon outlives strata; a mount
//! of a daemon that died is gone with the mount namespace.
//!
//! Its upper directory holds what the kernel's overlay writes (0/0
//! character devices for whiteouts, `redirect_dir` and `metacopy` never
//! used), except for opaque directories: `user.fuseoverlayfs.opaque` (or
//! `trusted.overlay.opaque` as real root) plus a `.wh..wh..opq` file, and,
//! on kernels that refuse a whiteout device in a user namespace (< 5.8),
//! `.wh.NAME` files for whiteouts. The layer diff reads all of these.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::SandboxError;
use crate::spec::RootFs;

/// The program's name.
pub const PROGRAM: &str = "fuse-overlayfs";

/// `statfs` type of a FUSE mount.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// How long a mount may take before it counts as failed.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the daemon may take to exit once unmounted.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `fuse-overlayfs` binary on `PATH` (or in `/usr/bin`), if installed.
pub fn program() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(PROGRAM))
        .find(|p| p.is_file())
}

/// Why `fuse-overlayfs` cannot serve here, or `None` when it can: the
/// program is installed and `/dev/fuse` opens for reading and writing.
pub fn unusable() -> Option<String> {
    if program().is_none() {
        return Some(format!(
            "{PROGRAM} is not installed (apt-get install {PROGRAM})"
        ));
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/fuse is not usable by this user ({e})")),
    }
}

/// A `fuse-overlayfs` mount; unmounted (and its daemon waited for) by
/// [`FuseMount::unmount`] or when dropped.
#[derive(Debug)]
pub struct FuseMount {
    target: PathBuf,
    lowerdirs: Vec<PathBuf>,
    upperdir: PathBuf,
    daemon: Mutex<Option<Child>>,
}

/// The `-o` argument: `lowerdir=` (top first), `upperdir=`, `workdir=`,
/// and no fsync (as the kernel overlay's `volatile`: the upper directory
/// only becomes a layer after the run ended, and the layer is written and
/// synced from it).
pub(crate) fn options(
    lowerdirs: &[PathBuf],
    upperdir: &Path,
    workdir: &Path,
) -> Result<String, SandboxError> {
    for p in lowerdirs
        .iter()
        .chain([&upperdir.to_path_buf(), &workdir.to_path_buf()])
    {
        crate::plan::check_overlay_path(p)?;
    }
    if lowerdirs.is_empty() {
        return Err(SandboxError::InvalidSpec(
            "fuse-overlayfs needs at least one lower directory".into(),
        ));
    }
    let lower: Vec<String> = lowerdirs
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    Ok(format!(
        "lowerdir={},upperdir={},workdir={},fsync=0",
        lower.join(":"),
        upperdir.display(),
        workdir.display()
    ))
}

// `f_type`'s type differs between architectures (i64 here, u32 on s390x).
#[allow(clippy::unnecessary_cast)]
fn is_fuse(target: &Path) -> bool {
    rustix::fs::statfs(target).is_ok_and(|s| s.f_type as i64 == FUSE_SUPER_MAGIC)
}

/// For an executor: mounts a [`RootFs::FuseOverlay`] root at `dir/fuse`
/// (`empty` stands in for no lower layers); `None` for other roots.
pub(crate) fn mount_for(
    rootfs: &RootFs,
    dir: &Path,
    empty: &Path,
) -> Result<Option<FuseMount>, SandboxError> {
    let RootFs::FuseOverlay {
        lowerdirs,
        upperdir,
        workdir,
    } = rootfs
    else {
        return Ok(None);
    };
    let target = dir.join("fuse");
    std::fs::create_dir(&target).map_err(|e| SandboxError::prepare(&target, e))?;
    let lowers = if lowerdirs.is_empty() {
        vec![empty.to_owned()]
    } else {
        lowerdirs.clone()
    };
    FuseMount::mount(&lowers, upperdir, workdir, &target).map(Some)
}

impl FuseMount {
    /// Mounts `lowerdirs` (top first) under `upperdir` at `target` (an
    /// empty directory), returning once the mount is in place.
    pub fn mount(
        lowerdirs: &[PathBuf],
        upperdir: &Path,
        workdir: &Path,
        target: &Path,
    ) -> Result<FuseMount, SandboxError> {
        let opts = options(lowerdirs, upperdir, workdir)?;
        let program = program().ok_or_else(|| SandboxError::Spawn {
            program: PROGRAM.into(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("not installed (apt-get install {PROGRAM})"),
            ),
        })?;
        if is_fuse(target) {
            return Err(SandboxError::InvalidSpec(format!(
                "{} is already a FUSE mount",
                target.display()
            )));
        }
        let mut cmd = Command::new(&program);
        cmd.arg("-f")
            .arg("-o")
            .arg(&opts)
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
        // What it says goes nowhere unless it fails (it complains about
        // mount options it ignores, such as `lazytime`).
        let stderr = child.stderr.take();
        let said = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut e) = stderr {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        let started = Instant::now();
        let mut delay = Duration::from_micros(200);
        loop {
            if is_fuse(target) {
                return Ok(FuseMount {
                    target: target.to_owned(),
                    lowerdirs: lowerdirs.to_vec(),
                    upperdir: upperdir.to_owned(),
                    daemon: Mutex::new(Some(child)),
                });
            }
            let failed = match child.try_wait() {
                Ok(Some(status)) => Some(format!("exited with {status}")),
                Ok(None) if started.elapsed() > MOUNT_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    Some(format!("did not mount within {MOUNT_TIMEOUT:?}"))
                }
                Ok(None) => None,
                Err(e) => Some(e.to_string()),
            };
            if let Some(how) = failed {
                let said = said.join().unwrap_or_default();
                let said: Vec<&str> = said
                    .lines()
                    .filter(|l| !l.starts_with("unknown argument ignored"))
                    .collect();
                return Err(SandboxError::Setup {
                    step: format!("mount {PROGRAM} on {}", target.display()),
                    source: std::io::Error::other(if said.is_empty() {
                        how
                    } else {
                        format!("{how}: {}", said.join("; "))
                    }),
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(20));
        }
    }

    /// Where it is mounted.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts and waits for the daemon to exit, so every write reached
    /// the upper directory. Idempotent.
    pub fn unmount(&self) -> Result<(), SandboxError> {
        let mut daemon = self.daemon.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut child) = daemon.take() else {
            return Ok(());
        };
        let target = self.target.as_os_str().as_bytes();
        let mut result = Ok(());
        if let Ok(c) = std::ffi::CString::new(target) {
            // SAFETY: a valid C string.
            let r = unsafe { libc::umount2(c.as_ptr(), 0) };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                // Busy (a process still in it): detach; anything else but
                // "not mounted" is reported after the daemon is gone.
                // SAFETY: as above.
                let detached = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0;
                if !detached && e.raw_os_error() != Some(libc::EINVAL) {
                    result = Err(SandboxError::io(
                        format!("cannot unmount {PROGRAM} at {}", self.target.display()),
                        e,
                    ));
                }
            }
        }
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if started.elapsed() > EXIT_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        if result.is_ok() {
            restore_dir_times(&self.lowerdirs, &self.upperdir, Path::new(""));
        }
        result
    }
}

/// The copy-up xattr fuse-overlayfs puts on a file it copied up.
const ORIGIN_XATTR: &str = "user.fuseoverlayfs.origin";

fn has_xattr(path: &Path, name: &str) -> bool {
    rustix::fs::lgetxattr(path, name, &mut [0u8; 0]).is_ok()
}

/// Whether `dir` is opaque as fuse-overlayfs marks it.
fn opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.fuseoverlayfs.opaque"]
        .iter()
        .any(|x| has_xattr(dir, x))
        || dir.join(".wh..wh..opq").is_file()
}

/// The first lower directory's `rel`, when it is a directory there.
fn lower_dir(lowerdirs: &[PathBuf], rel: &Path) -> Option<std::fs::Metadata> {
    lowerdirs
        .iter()
        .find_map(|l| std::fs::symlink_metadata(l.join(rel)).ok())
        .filter(|m| m.is_dir())
}

/// The kernel's overlay gives a directory that a copy-up brought into
/// the upper directory its lower times back (`ovl_set_timestamps`);
/// fuse-overlayfs (1.10) leaves the time of the copy-up's rename. So a
/// directory whose entries were not created, removed or renamed keeps,
/// as with the kernel, its lower times: every entry in it is a copy-up (a
/// file carrying fuse-overlayfs's origin xattr, a directory the lower has
/// too and not made opaque), none a whiteout. A temporary file created
/// and removed again in such a directory leaves no trace and is missed.
fn restore_dir_times(lowerdirs: &[PathBuf], upper: &Path, rel: &Path) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let dir = upper.join(rel);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let lower = if rel.as_os_str().is_empty() || opaque(&dir) {
        None
    } else {
        lower_dir(lowerdirs, rel)
    };
    let mut changed = false;
    for e in entries.flatten() {
        let name = e.file_name();
        let child_rel = rel.join(&name);
        let child = dir.join(&name);
        let Ok(m) = std::fs::symlink_metadata(&child) else {
            changed = true;
            continue;
        };
        if m.is_dir() {
            if opaque(&child) || lower_dir(lowerdirs, &child_rel).is_none() {
                changed = true;
            }
            restore_dir_times(lowerdirs, upper, &child_rel);
        } else if name.as_bytes().starts_with(b".wh.")
            || (m.file_type().is_char_device() && m.rdev() == 0)
            || !has_xattr(&child, ORIGIN_XATTR)
        {
            changed = true;
        }
    }
    if let (Some(l), false) = (lower, changed) {
        let t = |s: i64, ns: i64| rustix::fs::Timespec {
            tv_sec: s,
            tv_nsec: ns as _,
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            &dir,
            &rustix::fs::Timestamps {
                last_access: t(l.atime(), l.atime_nsec()),
                last_modification: t(l.mtime(), l.mtime_nsec()),
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        let _ = self.unmount();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_every_directory() {
        let o = options(
            &["/s/b".into(), "/s/a".into()],
            Path::new("/s/up"),
            Path::new("/s/work"),
        )
        .unwrap();
        assert_eq!(
            o,
            "lowerdir=/s/b:/s/a,upperdir=/s/up,workdir=/s/work,fsync=0"
        );
        assert!(options(&[], Path::new("/u"), Path::new("/w")).is_err());
        assert!(options(&["/a,b".into()], Path::new("/u"), Path::new("/w")).is_err());
        assert!(options(&["rel".into()], Path::new("/u"), Path::new("/w")).is_err());
    }

    #[test]
    fn mounts_unmounts_and_leaves_no_daemon() {
        if !strata_testkit::require_root() || !strata_testkit::require_tool(PROGRAM) {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let [lower, upper, work, target] =
            ["lower", "upper", "work", "target"].map(|d| t.path().join(d));
        for d in [&lower, &upper, &work, &target] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(lower.join("f"), "lower").unwrap();
        for d in ["a/b", "c"] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
            std::fs::write(lower.join(d).join("f"), "old").unwrap();
        }
        let old = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        for d in ["a/b", "a", "c"] {
            std::fs::File::open(lower.join(d))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let m = FuseMount::mount(std::slice::from_ref(&lower), &upper, &work, &target).unwrap();
        assert!(is_fuse(&target));
        assert_eq!(std::fs::read_to_string(target.join("f")).unwrap(), "lower");
        std::fs::write(target.join("g"), "upper").unwrap();
        // Changed in place: a/b and a are only copied up; c gets an entry.
        std::fs::write(target.join("a/b/f"), "new").unwrap();
        std::fs::write(target.join("c/f"), "new").unwrap();
        std::fs::write(target.join("c/new"), "new").unwrap();
        let pid = m.daemon.lock().unwrap().as_ref().unwrap().id();
        m.unmount().unwrap();
        assert!(!is_fuse(&target));
        // Reaped: no such process any more.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        // Every write is in the upper directory once unmounted.
        assert_eq!(std::fs::read_to_string(upper.join("g")).unwrap(), "upper");
        // Directories only copied up have their lower times, as with the
        // kernel's overlay; one that got an entry has the time of that.
        let mtime = |p: &str| {
            std::fs::metadata(upper.join(p))
                .unwrap()
                .modified()
                .unwrap()
        };
        assert_eq!(mtime("a"), old);
        assert_eq!(mtime("a/b"), old);
        assert_ne!(mtime("c"), old);
        m.unmount().unwrap();
        // A mount that cannot be made says why.
        let e = FuseMount::mount(&[t.path().join("missing")], &upper, &work, &target)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fuse-overlayfs"), "{e}");
        assert!(!is_fuse(&target));
    }
}
