//! The built-in sandbox as data: what to mount and how to start the
//! process, computed before the fork (all allocation happens here), then
//! carried out step by step through [`Syscalls`] in the child.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::mount::MountFlags;
use rustix::process::{Gid, Resource, Rlimit, Uid};
use rustix::thread::CapabilitySet;

use crate::defaults::{nofile_limit, DEFAULT_CAP_MASK, DEVICES, MASKED_PATHS, READONLY_PATHS};
use crate::error::SandboxError;
use crate::seccomp::Program;
use crate::spec::{MountKind, RootFs, RunSpec};
use crate::sys::{ensure, Errno, InRoot, Leaf, Loc, Syscalls};

pub(crate) fn cstring(s: impl AsRef<[u8]>, what: &str) -> Result<CString, SandboxError> {
    CString::new(s.as_ref().to_vec())
        .map_err(|_| SandboxError::InvalidSpec(format!("{what} contains a NUL byte")))
}

fn path_c(p: &Path, what: &str) -> Result<CString, SandboxError> {
    cstring(p.as_os_str().as_bytes(), what)
}

/// Mounting the root filesystem at `target` (a host directory).
#[derive(Debug)]
pub(crate) struct RootMount {
    pub kind: RootKind,
    pub target: CString,
}

/// Options of the overlay a run's root is (see [`root_mount`]).
pub(crate) const OVERLAY_OPTIONS: &str = "redirect_dir=off,index=off,metacopy=off,volatile";

/// [`OVERLAY_OPTIONS`] in a user namespace: `user.overlay.*` xattrs, and
/// redirects neither made nor followed (`redirect_dir=off` means "follow"
/// there, which the kernel refuses with `userxattr`).
pub(crate) const OVERLAY_OPTIONS_USERNS: &str =
    "redirect_dir=nofollow,index=off,metacopy=off,volatile,userxattr";

/// What [`RootMount`] mounts.
#[derive(Debug)]
pub(crate) enum RootKind {
    /// A directory, bound recursively.
    Bind { source: CString },
    /// An overlay with these options.
    Overlay {
        /// Directory to chdir into first, so the options can use short
        /// relative paths (mount data is limited to one page).
        chdir: Option<CString>,
        data: CString,
    },
}

pub(crate) fn check_overlay_path(p: &Path) -> Result<(), SandboxError> {
    let b = p.as_os_str().as_bytes();
    if b.iter().any(|c| matches!(c, b',' | b':' | b'\\')) {
        return Err(SandboxError::InvalidSpec(format!(
            "overlay directory {} contains ',', ':' or '\\', which overlayfs options cannot carry",
            p.display()
        )));
    }
    if !p.is_absolute() {
        return Err(SandboxError::InvalidSpec(format!(
            "overlay directory {} is not absolute",
            p.display()
        )));
    }
    Ok(())
}

const MAX_MOUNT_DATA: usize = 4000;

/// How to mount `rootfs` at `target`; `empty_lower` stands in when there are
/// no lower layers (a build `FROM scratch`).
pub(crate) fn root_mount(
    rootfs: &RootFs,
    target: &Path,
    empty_lower: &Path,
) -> Result<RootMount, SandboxError> {
    root_mount_in(
        rootfs,
        target,
        empty_lower,
        crate::rootless::in_user_namespace(),
    )
}

/// [`root_mount`], for a process in a user namespace (`userns`) or not:
/// overlay there only reads and writes `user.overlay.*` xattrs (`userxattr`,
/// Linux >= 5.11), as the snapshots extracted in it were written.
pub(crate) fn root_mount_in(
    rootfs: &RootFs,
    target: &Path,
    empty_lower: &Path,
    userns: bool,
) -> Result<RootMount, SandboxError> {
    let target_c = path_c(target, "rootfs mount point")?;
    match rootfs {
        RootFs::Dir(dir) => Ok(RootMount {
            kind: RootKind::Bind {
                source: path_c(dir, "rootfs directory")?,
            },
            target: target_c,
        }),
        RootFs::FuseOverlay { .. } => Err(SandboxError::InvalidSpec(
            "a fuse-overlayfs root is mounted by the executor, then bound as a directory".into(),
        )),
        RootFs::Overlay {
            lowerdirs,
            upperdir,
            workdir,
        } => {
            let empty = [empty_lower.to_path_buf()];
            let lowers: &[std::path::PathBuf] = if lowerdirs.is_empty() {
                &empty
            } else {
                lowerdirs
            };
            for p in lowers.iter().chain([upperdir, workdir]) {
                check_overlay_path(p)?;
            }
            let data = |l: &[String], u: &str, w: &str| {
                // Every option the layer diff relies on is stated, never
                // left to the kernel's defaults: no redirects or metadata-only
                // copy-ups (their content would live in the lower layers), no
                // index.
                format!(
                    "lowerdir={},upperdir={u},workdir={w},{}",
                    l.join(":"),
                    if userns {
                        OVERLAY_OPTIONS_USERNS
                    } else {
                        OVERLAY_OPTIONS
                    }
                )
            };
            let s = |p: &Path| p.to_string_lossy().into_owned();
            let abs = data(
                &lowers.iter().map(|p| s(p)).collect::<Vec<_>>(),
                &s(upperdir),
                &s(workdir),
            );
            if abs.len() <= MAX_MOUNT_DATA {
                return Ok(RootMount {
                    kind: RootKind::Overlay {
                        chdir: None,
                        data: cstring(abs, "overlay options")?,
                    },
                    target: target_c,
                });
            }
            // Too long: relative to the longest common parent directory.
            let all: Vec<&Path> = lowers
                .iter()
                .map(|p| p.as_path())
                .chain([upperdir.as_path(), workdir.as_path()])
                .collect();
            let mut common = all[0].parent().unwrap_or(Path::new("/")).to_path_buf();
            while !all.iter().all(|p| p.starts_with(&common)) {
                if !common.pop() {
                    break;
                }
            }
            let rel = |p: &Path| s(p.strip_prefix(&common).unwrap_or(p));
            let short = data(
                &lowers.iter().map(|p| rel(p)).collect::<Vec<_>>(),
                &rel(upperdir),
                &rel(workdir),
            );
            if short.len() > MAX_MOUNT_DATA {
                return Err(SandboxError::InvalidSpec(format!(
                    "{} overlay layers: their paths do not fit in one overlay mount ({} bytes of options)",
                    lowers.len(),
                    short.len()
                )));
            }
            Ok(RootMount {
                kind: RootKind::Overlay {
                    chdir: Some(path_c(&common, "overlay parent directory")?),
                    data: cstring(short, "overlay options")?,
                },
                target: target_c,
            })
        }
    }
}

/// Where overlayfs records that a `volatile` mount was active.
fn volatile_marker(workdir: &Path) -> std::path::PathBuf {
    workdir.join("work/incompat")
}

/// Overlays are mounted `volatile`: no fsync on copy-up and no syncfs of the
/// upper filesystem at unmount (measurably faster RUN steps). A crash can
/// then lose upper-dir data, which is fine: a RUN's upper dir only becomes a
/// layer after the run ended cleanly, and the layer is written (and synced)
/// to the store from it. overlayfs leaves a marker in the work dir that makes
/// the next mount of the same pair fail; after a clean run we remove it, and
/// before a run we refuse a pair an interrupted run left behind.
pub(crate) fn overlay_before_run(rootfs: &RootFs) -> Result<(), SandboxError> {
    if let RootFs::Overlay {
        upperdir, workdir, ..
    } = rootfs
    {
        if volatile_marker(workdir).join("volatile").exists() {
            return Err(SandboxError::InvalidSpec(format!(
                "the overlay work directory {} was left by an interrupted run, so {} may be incomplete; use a fresh upper/work pair",
                workdir.display(),
                upperdir.display()
            )));
        }
    }
    Ok(())
}

/// See [`overlay_before_run`].
pub(crate) fn overlay_after_run(rootfs: &RootFs) {
    if let RootFs::Overlay { workdir, .. } = rootfs {
        let _ = std::fs::remove_dir_all(volatile_marker(workdir));
    }
}

/// Mounts the root filesystem (the caller is already in a private mount namespace).
pub(crate) fn mount_root<S: Syscalls>(sys: &mut S, rm: &RootMount) -> Result<(), Errno> {
    match &rm.kind {
        RootKind::Bind { source } => sys.bind(Loc::Path(source), Loc::Path(&rm.target), true),
        RootKind::Overlay { chdir, data } => {
            if let Some(dir) = chdir {
                sys.chdir(dir)?;
            }
            let r = sys.mount(
                c"overlay",
                Loc::Path(&rm.target),
                c"overlay",
                MountFlags::empty(),
                Some(data),
            );
            if chdir.is_some() {
                sys.chdir(c"/")?;
            }
            r
        }
    }
}

/// One setup step inside the new root.
#[derive(Debug)]
pub(crate) enum Step {
    Mount {
        target: InRoot,
        leaf: Leaf,
        how: How,
        /// Remount the bind read-only afterwards.
        readonly: bool,
    },
    /// Hide: /dev/null over a file, an empty read-only tmpfs over a directory.
    Mask(InRoot),
    /// Make read-only (bind onto itself, remount read-only).
    ReadOnly(InRoot),
    Symlink {
        link: InRoot,
        to: CString,
    },
    Mkdir(InRoot),
}

/// How a [`Step::Mount`] mounts.
#[derive(Debug)]
pub(crate) enum How {
    /// A new filesystem instance.
    Fs {
        source: CString,
        fstype: CString,
        flags: MountFlags,
        data: Option<CString>,
    },
    /// A bind mount of a host path.
    Bind { source: CString, recursive: bool },
}

impl Step {
    fn describe(&self) -> String {
        match self {
            Step::Mount { target, how, .. } => match how {
                How::Fs { source, fstype, .. } => format!(
                    "mount {} ({}) on {}",
                    source.to_string_lossy(),
                    fstype.to_string_lossy(),
                    target.display
                ),
                How::Bind { source, .. } => {
                    format!(
                        "mount {} (bind) on {}",
                        source.to_string_lossy(),
                        target.display
                    )
                }
            },
            Step::Mask(p) => format!("mask {}", p.display),
            Step::ReadOnly(p) => format!("make {} read-only", p.display),
            Step::Symlink { link, to } => {
                format!("symlink {} -> {}", link.display, to.to_string_lossy())
            }
            Step::Mkdir(p) => format!("create directory {}", p.display),
        }
    }
}

/// Where in the sequence a failure happened (reported through a pipe as numbers).
pub(crate) mod at {
    pub const PRIVATE: u32 = 0;
    pub const ROOT_MOUNT: u32 = 1;
    pub const ROOT_OPEN: u32 = 2;
    pub const READONLY_ROOT: u32 = 3;
    pub const HOSTNAME: u32 = 4;
    pub const PIVOT: u32 = 5;
    pub const FORK: u32 = 6;
    pub const STDIO: u32 = 7;
    pub const LOOPBACK: u32 = 8;
    pub const RLIMIT: u32 = 10;
    pub const CAPBSET: u32 = 11;
    pub const CAPSET: u32 = 12;
    pub const AMBIENT: u32 = 13;
    pub const GROUPS: u32 = 14;
    pub const GID: u32 = 15;
    pub const UID: u32 = 16;
    pub const NO_NEW_PRIVS: u32 = 17;
    pub const CHDIR: u32 = 18;
    pub const EXEC: u32 = 19;
    pub const SECCOMP: u32 = 20;
    pub const CONSOLE: u32 = 21;
    pub const SETNS: u32 = 22;
    pub const STEP: u32 = 100;
}

/// The mount side of a built-in run.
#[derive(Debug)]
pub(crate) struct SetupPlan {
    pub root: RootMount,
    pub steps: Vec<Step>,
    pub readonly_root: bool,
    pub hostname: CString,
    /// A new network namespace: bring `lo` up, as docker and the runtimes do.
    pub loopback_up: bool,
}

fn in_root(p: &str) -> Result<InRoot, SandboxError> {
    InRoot::new(p).map_err(SandboxError::InvalidSpec)
}

impl SetupPlan {
    pub(crate) fn new(
        spec: &RunSpec,
        root: RootMount,
        etc_files: &[(&'static str, std::path::PathBuf)],
    ) -> Result<SetupPlan, SandboxError> {
        let userns = crate::rootless::in_user_namespace();
        Self::new_in(
            spec,
            root,
            etc_files,
            userns,
            !userns || crate::rootless::gid_mapped(5),
        )
    }

    /// [`SetupPlan::new`] for a process in a user namespace (`userns`) or
    /// not: there sysfs can only be mounted in a network namespace of the
    /// same user namespace, so with the host's network the host's /sys is
    /// bound read-only instead (as rootless podman does). Terminals belong
    /// to group 5 (tty) when `tty_gid` (the group is mapped).
    pub(crate) fn new_in(
        spec: &RunSpec,
        root: RootMount,
        etc_files: &[(&'static str, std::path::PathBuf)],
        userns: bool,
        tty_gid: bool,
    ) -> Result<SetupPlan, SandboxError> {
        use MountFlags as F;
        let mut steps = Vec::new();
        let fs = |target: &str,
                  source: &str,
                  fstype: &str,
                  flags: MountFlags,
                  data: Option<&str>|
         -> Result<Step, SandboxError> {
            Ok(Step::Mount {
                target: in_root(target)?,
                leaf: Leaf::Dir,
                how: How::Fs {
                    source: cstring(source, "mount source")?,
                    fstype: cstring(fstype, "fs type")?,
                    flags,
                    data: data.map(|s| cstring(s, "mount options")).transpose()?,
                },
                readonly: false,
            })
        };
        let bind_file = |target: &str, source: &[u8]| -> Result<Step, SandboxError> {
            Ok(Step::Mount {
                target: in_root(target)?,
                leaf: Leaf::File,
                how: How::Bind {
                    source: cstring(source, "bind source")?,
                    recursive: false,
                },
                readonly: false,
            })
        };
        let nosuid_nodev_noexec = F::NOSUID | F::NODEV | F::NOEXEC;
        steps.push(fs("/proc", "proc", "proc", nosuid_nodev_noexec, None)?);
        if userns && spec.network != crate::spec::Network::None {
            steps.push(Step::Mount {
                target: in_root("/sys")?,
                leaf: Leaf::Dir,
                how: How::Bind {
                    source: cstring("/sys", "bind source")?,
                    recursive: true,
                },
                readonly: false,
            });
            steps.push(Step::ReadOnly(in_root("/sys")?));
        } else {
            steps.push(fs(
                "/sys",
                "sysfs",
                "sysfs",
                nosuid_nodev_noexec | F::RDONLY,
                None,
            )?);
        }
        steps.push(fs(
            "/dev",
            "tmpfs",
            "tmpfs",
            F::NOSUID | F::STRICTATIME,
            Some("mode=755,size=65536k"),
        )?);
        for dev in DEVICES {
            let p = format!("/dev/{dev}");
            steps.push(bind_file(&p, p.as_bytes())?);
        }
        steps.push(fs(
            "/dev/pts",
            "devpts",
            "devpts",
            F::NOSUID | F::NOEXEC,
            Some(if tty_gid {
                "newinstance,ptmxmode=0666,mode=0620,gid=5"
            } else {
                "newinstance,ptmxmode=0666,mode=0620"
            }),
        )?);
        steps.push(fs(
            "/dev/shm",
            "shm",
            "tmpfs",
            nosuid_nodev_noexec,
            Some("mode=1777,size=65536k"),
        )?);
        steps.push(fs(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            nosuid_nodev_noexec,
            None,
        )?);
        for (link, to) in [
            ("/dev/ptmx", "pts/ptmx"),
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
        ] {
            steps.push(Step::Symlink {
                link: in_root(link)?,
                to: cstring(to, "symlink")?,
            });
        }
        for (target, file) in etc_files {
            steps.push(bind_file(target, file.as_os_str().as_bytes())?);
        }
        for m in &spec.mounts {
            steps.push(match &m.kind {
                MountKind::Bind { source, readonly } => {
                    let meta =
                        std::fs::metadata(source).map_err(|e| SandboxError::prepare(source, e))?;
                    Step::Mount {
                        target: in_root(&m.target)?,
                        leaf: if meta.is_dir() { Leaf::Dir } else { Leaf::File },
                        how: How::Bind {
                            source: path_c(source, "bind source")?,
                            recursive: true,
                        },
                        readonly: *readonly,
                    }
                }
                MountKind::Tmpfs { size } => {
                    let data = size.map(|s| format!("size={s}"));
                    fs(
                        &m.target,
                        "tmpfs",
                        "tmpfs",
                        F::NOSUID | F::NODEV,
                        data.as_deref(),
                    )?
                }
            });
        }
        for p in READONLY_PATHS {
            steps.push(Step::ReadOnly(in_root(p)?));
        }
        for p in MASKED_PATHS {
            steps.push(Step::Mask(in_root(p)?));
        }
        steps.push(Step::Mkdir(in_root(&spec.cwd)?));
        Ok(SetupPlan {
            root,
            steps,
            readonly_root: spec.readonly_rootfs,
            hostname: cstring(&spec.hostname, "hostname")?,
            loopback_up: spec.network == crate::spec::Network::None,
        })
    }

    /// Text for a failure code.
    pub(crate) fn describe(&self, at_code: u32) -> String {
        match at_code {
            at::PRIVATE => "make the mount namespace private".into(),
            at::ROOT_MOUNT => match &self.root.kind {
                RootKind::Overlay { data, .. } => {
                    format!("mount the overlay ({})", data.to_string_lossy())
                }
                RootKind::Bind { source } => {
                    format!("bind-mount the root directory {}", source.to_string_lossy())
                }
            },
            at::ROOT_OPEN => "open the root mount".into(),
            at::READONLY_ROOT => "remount the root read-only".into(),
            at::HOSTNAME => "set the hostname".into(),
            at::PIVOT => "pivot_root into the container root".into(),
            at::FORK => "fork the command".into(),
            at::STDIO => "set up stdin/stdout/stderr".into(),
            at::LOOPBACK => "bring the loopback interface up".into(),
            at::RLIMIT => "set resource limits".into(),
            at::CAPBSET => "drop capabilities from the bounding set".into(),
            at::CAPSET => "set capabilities".into(),
            at::AMBIENT => "clear ambient capabilities".into(),
            at::GROUPS => "set supplementary groups".into(),
            at::GID => "set the group id".into(),
            at::UID => "set the user id".into(),
            at::NO_NEW_PRIVS => "set no_new_privs".into(),
            at::CHDIR => "change to the working directory".into(),
            at::EXEC => "execute the command".into(),
            at::SECCOMP => "install the seccomp filter".into(),
            at::CONSOLE => "open the container's terminal".into(),
            at::SETNS => "join the container's namespaces".into(),
            n if n >= at::STEP => self
                .steps
                .get((n - at::STEP) as usize)
                .map(Step::describe)
                .unwrap_or_else(|| format!("setup step {n}")),
            n => format!("setup step {n}"),
        }
    }

    /// Everything up to and including pivot_root. The caller is in new
    /// mount/pid/ipc/uts(/net) namespaces.
    pub(crate) fn apply<S: Syscalls>(&self, sys: &mut S) -> Result<(), (u32, Errno)> {
        sys.make_rprivate(c"/").map_err(|e| (at::PRIVATE, e))?;
        mount_root(sys, &self.root).map_err(|e| (at::ROOT_MOUNT, e))?;
        let root = sys
            .open_dir(&self.root.target)
            .map_err(|e| (at::ROOT_OPEN, e))?;
        self.apply_steps(sys, &root)?;
        drop(root);
        if self.readonly_root {
            sys.remount(
                Loc::Path(&self.root.target),
                MountFlags::BIND | MountFlags::RDONLY,
            )
            .map_err(|e| (at::READONLY_ROOT, e))?;
        }
        sys.sethostname(&self.hostname)
            .map_err(|e| (at::HOSTNAME, e))?;
        if self.loopback_up {
            sys.loopback_up().map_err(|e| (at::LOOPBACK, e))?;
        }
        // pivot_root(".", "."): the old root ends up stacked on the new one
        // and is detached right away; no directory is needed in the rootfs.
        sys.chdir(&self.root.target).map_err(|e| (at::PIVOT, e))?;
        sys.pivot_root(c".", c".").map_err(|e| (at::PIVOT, e))?;
        sys.unmount_detach(c".").map_err(|e| (at::PIVOT, e))?;
        sys.chdir(c"/").map_err(|e| (at::PIVOT, e))?;
        Ok(())
    }

    fn apply_steps<S: Syscalls>(&self, sys: &mut S, root: &S::Fd) -> Result<(), (u32, Errno)> {
        for (i, step) in self.steps.iter().enumerate() {
            let code = at::STEP + i as u32;
            apply_step(sys, root, step).map_err(|e| (code, e))?;
        }
        Ok(())
    }
}

fn apply_step<S: Syscalls>(sys: &mut S, root: &S::Fd, step: &Step) -> Result<(), Errno> {
    use MountFlags as F;
    match step {
        Step::Mount {
            target,
            leaf,
            how,
            readonly,
        } => {
            ensure(sys, root, target, *leaf)?;
            let fd = sys.open_in_root(root, &target.path)?;
            match how {
                How::Fs {
                    source,
                    fstype,
                    flags,
                    data,
                } => sys.mount(source, Loc::Fd(&fd), fstype, *flags, data.as_deref())?,
                How::Bind { source, recursive } => {
                    sys.bind(Loc::Path(source), Loc::Fd(&fd), *recursive)?
                }
            }
            if *readonly {
                // reopen: the new fd refers to the new mount's root
                let fd = sys.open_in_root(root, &target.path)?;
                sys.remount(Loc::Fd(&fd), F::BIND | F::REC | F::RDONLY)?;
            }
            Ok(())
        }
        Step::Mask(p) => {
            let fd = match sys.open_in_root(root, &p.path) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => return Ok(()),
                Err(e) => return Err(e),
            };
            if sys.is_dir(&fd)? {
                sys.mount(c"tmpfs", Loc::Fd(&fd), c"tmpfs", F::RDONLY, None)
            } else {
                sys.bind(Loc::Path(c"/dev/null"), Loc::Fd(&fd), false)
            }
        }
        Step::ReadOnly(p) => {
            let fd = match sys.open_in_root(root, &p.path) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => return Ok(()),
                Err(e) => return Err(e),
            };
            sys.bind(Loc::Fd(&fd), Loc::Fd(&fd), true)?;
            drop(fd);
            let fd = sys.open_in_root(root, &p.path)?;
            sys.remount(
                Loc::Fd(&fd),
                F::BIND | F::REC | F::RDONLY | F::NOSUID | F::NODEV | F::NOEXEC,
            )
        }
        Step::Symlink { link, to } => {
            let Some((_, parent, name)) = link.steps.last() else {
                return Err(Errno::INVAL);
            };
            let pfd = sys.open_in_root(root, parent)?;
            match sys.symlink_at(to, &pfd, name) {
                Ok(()) | Err(Errno::EXIST) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Step::Mkdir(p) => ensure(sys, root, p, Leaf::Dir),
    }
}

/// The process side of a built-in run: credentials, capabilities, exec.
pub(crate) struct ProcessPlan {
    pub cwd: CString,
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
    /// `setgroups` is denied (a single-id user namespace) and there are
    /// no groups to set: skip the call.
    pub skip_groups: bool,
    pub caps: CapabilitySet,
    pub nofile: Rlimit,
    /// Seccomp filters, installed in order just before `execve`.
    pub seccomp: Vec<Program>,
    pub program: String,
    /// Candidate paths for `args[0]` (PATH lookup done inside the container).
    pub candidates: Vec<CString>,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

impl ProcessPlan {
    pub(crate) fn new(spec: &RunSpec) -> Result<ProcessPlan, SandboxError> {
        let program = spec
            .args
            .first()
            .ok_or_else(|| SandboxError::InvalidSpec("no command to run".into()))?
            .clone();
        if program.is_empty() {
            return Err(SandboxError::InvalidSpec(
                "the command is an empty string".into(),
            ));
        }
        let argv = spec
            .args
            .iter()
            .map(|a| cstring(a, "argument"))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = spec
            .env
            .iter()
            .map(|e| cstring(e, "environment entry"))
            .collect::<Result<Vec<_>, _>>()?;
        let candidates = if program.contains('/') {
            vec![cstring(&program, "command")?]
        } else {
            spec.path_env()
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| {
                    cstring(
                        format!("{}/{program}", d.trim_end_matches('/')),
                        "PATH entry",
                    )
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        Ok(ProcessPlan {
            skip_groups: spec.user.additional_gids.is_empty()
                && crate::rootless::setgroups_denied(),
            cwd: cstring(&spec.cwd, "working directory")?,
            uid: Uid::from_raw(spec.user.uid),
            gid: Gid::from_raw(spec.user.gid),
            groups: spec
                .user
                .additional_gids
                .iter()
                .map(|&g| Gid::from_raw(g))
                .collect(),
            caps: CapabilitySet::from_bits_retain(DEFAULT_CAP_MASK),
            seccomp: spec.seccomp.programs()?,
            nofile: {
                let (soft, hard) = nofile_limit();
                Rlimit {
                    current: Some(soft),
                    maximum: Some(hard),
                }
            },
            program,
            candidates,
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            envp_ptrs,
        })
    }

    /// Drops privileges and executes; returns only on failure.
    pub(crate) fn exec<S: Syscalls>(&self, sys: &mut S) -> (u32, Errno) {
        if let Err(e) = sys.set_rlimit(Resource::Nofile, self.nofile) {
            return (at::RLIMIT, e);
        }
        // Bounding set first, while we still hold CAP_SETPCAP.
        for cap in 0..64u32 {
            if self.caps.bits() & (1 << cap) != 0 {
                continue;
            }
            match sys.drop_bounding_cap(cap) {
                Ok(()) => {}
                Err(Errno::INVAL) => break, // past the kernel's last capability
                Err(e) => return (at::CAPBSET, e),
            }
        }
        if let Err(e) = sys.set_caps(self.caps) {
            return (at::CAPSET, e);
        }
        if let Err(e) = sys.clear_ambient_caps() {
            return (at::AMBIENT, e);
        }
        if !self.skip_groups {
            if let Err(e) = sys.set_groups(&self.groups) {
                return (at::GROUPS, e);
            }
        }
        if let Err(e) = sys.set_gid(self.gid) {
            return (at::GID, e);
        }
        // Switching from uid 0 clears permitted/effective capabilities (no
        // KEEPCAPS), as for a docker container run with -u.
        if let Err(e) = sys.set_uid(self.uid) {
            return (at::UID, e);
        }
        if let Err(e) = sys.set_no_new_privs() {
            return (at::NO_NEW_PRIVS, e);
        }
        if let Err(e) = sys.chdir(&self.cwd) {
            return (at::CHDIR, e);
        }
        // Last, as runc does, so the filter sees only the command's calls.
        for program in &self.seccomp {
            if let Err(e) = sys.set_seccomp(program) {
                return (at::SECCOMP, e);
            }
        }
        let mut denied = false;
        for path in &self.candidates {
            match sys.exec(path, &self.argv_ptrs, &self.envp_ptrs) {
                Errno::NOENT | Errno::NOTDIR => {}
                Errno::ACCESS => denied = true,
                e => return (at::EXEC, e),
            }
        }
        (at::EXEC, if denied { Errno::ACCESS } else { Errno::NOENT })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Mount, User};
    use crate::sys::recording::Recorder;

    fn spec() -> RunSpec {
        let mut s = RunSpec::new(
            RootFs::Dir("/rootfs".into()),
            vec!["sh".into(), "-c".into(), "true".into()],
        );
        s.cwd = "/work".into();
        s.hostname = "box".into();
        s
    }

    fn plan(s: &RunSpec) -> SetupPlan {
        let rm = root_mount(
            &s.rootfs,
            Path::new("/state/run/rootfs"),
            Path::new("/state/empty"),
        )
        .unwrap();
        SetupPlan::new(s, rm, &[("/etc/hosts", "/state/run/hosts".into())]).unwrap()
    }

    fn existing(r: &mut Recorder) {
        for d in [
            "proc",
            "sys",
            "dev",
            "etc",
            "tmp",
            "proc/sys",
            "proc/kcore",
            "proc/acpi",
            "sys/firmware",
        ] {
            r.existing.insert(d.into(), !d.ends_with("kcore"));
        }
    }

    #[test]
    fn setup_sequence() {
        let s = spec();
        let p = plan(&s);
        let mut r = Recorder::new();
        existing(&mut r);
        p.apply(&mut r).unwrap();
        let e = r.effects();
        let pos = |needle: &str| {
            e.iter()
                .position(|c| c.starts_with(needle))
                .unwrap_or_else(|| panic!("{needle:?} not in {e:#?}"))
        };
        assert_eq!(e[0], "make_rprivate /", "private first");
        assert_eq!(e[1], "bind /rootfs /state/run/rootfs rec");
        assert!(
            pos("mount proc <proc> proc NODEV|NOEXEC|NOSUID -")
                < pos("bind /dev/null <proc/kcore>")
        );
        assert!(pos("mount tmpfs <dev> tmpfs") < pos("create dev/null"));
        assert!(pos("create dev/null") < pos("bind /dev/null <dev/null>"));
        assert!(
            e.contains(&"bind /dev/null <dev/null>"),
            "devices: not recursive"
        );
        pos("mount tmpfs <proc/acpi> tmpfs RDONLY -"); // masked dir: ro tmpfs
        pos("mount tmpfs <sys/firmware> tmpfs RDONLY -");
        pos("bind <proc/sys> <proc/sys> rec"); // read-only path: bind on itself...
        pos("remount <proc/sys> BIND|NODEV|NOEXEC|NOSUID|RDONLY|REC"); // ...then remount ro,nosuid,nodev,noexec
        pos("create etc/hosts");
        assert!(e.contains(&"bind /state/run/hosts <etc/hosts>"));
        pos("symlink dev/ptmx -> pts/ptmx");
        pos("mkdir work 0o755");
        // missing masked paths are skipped, not created
        assert!(!e.iter().any(|c| c.contains("timer_list")));
        let tail: Vec<&str> = e[e.len() - 5..].to_vec();
        assert_eq!(
            tail,
            vec![
                "sethostname box",
                "chdir /state/run/rootfs",
                "pivot_root . .",
                "umount .",
                "chdir /"
            ]
        );
    }

    #[test]
    fn user_mounts_and_readonly_root() {
        let t = tempfile::tempdir().unwrap();
        let mut s = spec();
        s.readonly_rootfs = true;
        s.mounts = vec![
            Mount::bind(t.path(), "/cache", false),
            Mount::bind(t.path(), "/ro", true),
            Mount::tmpfs("/scratch", Some(1 << 20)),
        ];
        let p = plan(&s);
        let mut r = Recorder::new();
        existing(&mut r);
        p.apply(&mut r).unwrap();
        let e = r.effects();
        let tp = t.path().to_string_lossy();
        assert!(e.contains(&format!("bind {tp} <cache> rec").as_str()));
        assert!(e.contains(&format!("bind {tp} <ro> rec").as_str()));
        assert!(e.contains(&"remount <ro> BIND|RDONLY|REC"), "{e:#?}");
        assert!(
            !e.iter().any(|c| c.starts_with("remount <cache>")),
            "rw bind stays rw"
        );
        assert!(e.contains(&"mount tmpfs <scratch> tmpfs NODEV|NOSUID size=1048576"));
        assert!(e.contains(&"mkdir cache 0o755") && e.contains(&"mkdir scratch 0o755"));
        let ro = e
            .iter()
            .position(|c| *c == "remount /state/run/rootfs BIND|RDONLY")
            .unwrap();
        let last_mount = e.iter().rposition(|c| c.starts_with("mkdir work")).unwrap();
        assert!(
            ro > last_mount,
            "the root goes read-only after the mount points exist"
        );
    }

    #[test]
    fn interrupted_volatile_overlay_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let rootfs = RootFs::Overlay {
            lowerdirs: vec![t.path().join("l")],
            upperdir: t.path().join("u"),
            workdir: t.path().join("w"),
        };
        overlay_before_run(&rootfs).unwrap();
        std::fs::create_dir_all(t.path().join("w/work/incompat/volatile")).unwrap();
        let e = overlay_before_run(&rootfs).unwrap_err().to_string();
        assert!(e.contains("interrupted run"), "{e}");
        overlay_after_run(&rootfs);
        overlay_before_run(&rootfs).unwrap();
    }

    #[test]
    fn in_a_user_namespace_sys_is_bound_and_overlay_uses_user_xattrs() {
        let mut s = spec();
        let setup = |s: &RunSpec| {
            let rm = root_mount_in(&s.rootfs, Path::new("/m"), Path::new("/e"), true).unwrap();
            let p = SetupPlan::new_in(s, rm, &[], true, true).unwrap();
            let mut r = Recorder::new();
            existing(&mut r);
            p.apply(&mut r).unwrap();
            r.effects()
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        };
        let e = setup(&s);
        assert!(!e.iter().any(|c| c.contains("sysfs")), "{e:#?}");
        let bind = e.iter().position(|c| c == "bind /sys <sys> rec");
        let ro = e
            .iter()
            .position(|c| c == "remount <sys> BIND|NODEV|NOEXEC|NOSUID|RDONLY|REC");
        assert!(matches!((bind, ro), (Some(b), Some(r)) if b < r), "{e:#?}");
        // with a network namespace of its own, sysfs can be mounted
        s.network = crate::spec::Network::None;
        assert!(setup(&s)
            .iter()
            .any(|c| c.starts_with("mount sysfs <sys> sysfs")));
        let rootfs = RootFs::Overlay {
            lowerdirs: vec!["/l".into()],
            upperdir: "/u".into(),
            workdir: "/w".into(),
        };
        let (data, _) =
            overlay(root_mount_in(&rootfs, Path::new("/m"), Path::new("/e"), true).unwrap());
        assert!(
            data.ends_with(",redirect_dir=nofollow,index=off,metacopy=off,volatile,userxattr"),
            "{data}"
        );
        let (data, _) =
            overlay(root_mount_in(&rootfs, Path::new("/m"), Path::new("/e"), false).unwrap());
        assert!(!data.contains("userxattr"), "{data}");
    }

    #[test]
    fn network_none_brings_loopback_up() {
        let mut s = spec();
        let mut r = Recorder::new();
        existing(&mut r);
        plan(&s).apply(&mut r).unwrap();
        assert!(!r.effects().contains(&"loopback_up"));
        s.network = crate::spec::Network::None;
        let mut r = Recorder::new();
        existing(&mut r);
        plan(&s).apply(&mut r).unwrap();
        assert!(r.effects().contains(&"loopback_up"));
    }

    #[test]
    fn failure_reports_the_step() {
        let s = spec();
        let p = plan(&s);
        let mut r = Recorder::new();
        existing(&mut r);
        r.fail = Some(("mount sysfs".into(), Errno::PERM));
        let (code, errno) = p.apply(&mut r).unwrap_err();
        assert_eq!(errno, Errno::PERM);
        assert_eq!(p.describe(code), "mount sysfs (sysfs) on /sys");
    }

    /// The overlay options and chdir of a root mount (panics on a bind).
    fn overlay(rm: RootMount) -> (String, Option<String>) {
        match rm.kind {
            RootKind::Overlay { chdir, data } => (
                data.to_str().unwrap().to_string(),
                chdir.map(|c| c.to_str().unwrap().to_string()),
            ),
            RootKind::Bind { .. } => panic!("not an overlay"),
        }
    }

    #[test]
    fn overlay_options_and_long_paths() {
        let lowers: Vec<std::path::PathBuf> =
            (0..3).map(|i| format!("/s/snap/{i}").into()).collect();
        let rootfs = RootFs::Overlay {
            lowerdirs: lowers,
            upperdir: "/s/up".into(),
            workdir: "/s/work".into(),
        };
        let rm = root_mount(&rootfs, Path::new("/m"), Path::new("/e")).unwrap();
        let (data, chdir) = overlay(rm);
        assert_eq!(
            data,
            "lowerdir=/s/snap/0:/s/snap/1:/s/snap/2,upperdir=/s/up,workdir=/s/work,redirect_dir=off,index=off,metacopy=off,volatile"
        );
        assert!(chdir.is_none());
        let long = "/var/lib/strata/snapshots/sha256";
        let lowers: Vec<std::path::PathBuf> =
            (0..60).map(|i| format!("{long}/{i:064}").into()).collect();
        let rootfs = RootFs::Overlay {
            lowerdirs: lowers,
            upperdir: format!("{long}/up").into(),
            workdir: format!("{long}/work").into(),
        };
        let rm = root_mount(&rootfs, Path::new("/m"), Path::new("/e")).unwrap();
        let (data, chdir) = overlay(rm);
        assert_eq!(chdir.as_deref(), Some(long));
        assert!(data.starts_with("lowerdir=0000"));
        // no layers (FROM scratch): an empty lower stands in
        let rootfs = RootFs::Overlay {
            lowerdirs: vec![],
            upperdir: "/u".into(),
            workdir: "/w".into(),
        };
        let rm = root_mount(&rootfs, Path::new("/m"), Path::new("/e")).unwrap();
        assert!(overlay(rm).0.starts_with("lowerdir=/e,"));
        let bad = RootFs::Overlay {
            lowerdirs: vec!["/a,b".into()],
            upperdir: "/u".into(),
            workdir: "/w".into(),
        };
        assert!(root_mount(&bad, Path::new("/m"), Path::new("/e")).is_err());
    }

    #[test]
    fn overlay_root_with_a_long_chdir_goes_back_to_slash() {
        let long = "/var/lib/strata/snapshots/sha256";
        let rootfs = RootFs::Overlay {
            lowerdirs: (0..60).map(|i| format!("{long}/{i:064}").into()).collect(),
            upperdir: format!("{long}/up").into(),
            workdir: format!("{long}/work").into(),
        };
        let rm = root_mount(&rootfs, Path::new("/m"), Path::new("/e")).unwrap();
        let mut r = Recorder::new();
        mount_root(&mut r, &rm).unwrap();
        assert_eq!(r.calls.len(), 3);
        assert_eq!(r.calls[0], format!("chdir {long}"));
        assert!(r.calls[1].starts_with("mount overlay /m overlay - lowerdir=0000"));
        assert_eq!(r.calls[2], "chdir /");
        // a failed mount still returns to /
        let mut r = Recorder::new();
        r.fail = Some(("mount overlay".into(), Errno::INVAL));
        assert_eq!(mount_root(&mut r, &rm), Err(Errno::INVAL));
        assert_eq!(r.calls.last().map(String::as_str), Some("chdir /"));
    }

    #[test]
    fn process_drops_caps_then_ids_then_execs_along_path() {
        let mut s = spec();
        s.user = User {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![50],
        };
        s.env = vec!["PATH=/usr/bin:/bin".into()];
        let p = ProcessPlan::new(&s).unwrap();
        let mut r = Recorder::new();
        r.existing.insert("bin/sh".into(), false);
        let (code, _) = p.exec(&mut r);
        let e = r.effects();
        // caps outside docker's set leave the bounding set
        assert!(e.contains(&"capbset_drop 2") && e.contains(&"capbset_drop 21"));
        assert!(!e.contains(&"capbset_drop 0"));
        let pos = |n: &str| e.iter().position(|c| c.starts_with(n)).unwrap();
        assert!(pos("capbset_drop") < pos("capset 0xa80425fb"));
        assert!(pos("capset") < pos("setgroups [50]"));
        assert!(pos("setgroups") < pos("setgid 1000"));
        assert!(pos("setgid") < pos("setuid 1000"));
        assert!(pos("setuid") < pos("no_new_privs"));
        assert!(pos("no_new_privs") < pos("chdir /work"));
        // docker's profile: the base filter then the ENOSYS one, last before exec
        let filters: Vec<usize> = (0..e.len())
            .filter(|&i| e[i].starts_with("seccomp "))
            .collect();
        assert_eq!(filters.len(), 2, "{e:#?}");
        assert!(pos("chdir /work") < filters[0] && filters[1] + 1 == pos("exec"));
        assert_eq!(&e[e.len() - 2..], &["exec /usr/bin/sh", "exec /bin/sh"]);
        // the double's exec "succeeds" for /bin/sh by returning EXDEV, an errno
        // the loop does not know, so it stops there
        assert_eq!(code, at::EXEC);
    }

    #[test]
    fn unconfined_installs_no_filter_and_a_refused_filter_stops_the_run() {
        let mut s = spec();
        s.seccomp = crate::Seccomp::Unconfined;
        let p = ProcessPlan::new(&s).unwrap();
        let mut r = Recorder::new();
        r.existing.insert("bin/sh".into(), false);
        p.exec(&mut r);
        assert!(!r.calls.iter().any(|c| c.starts_with("seccomp")));
        let p = ProcessPlan::new(&spec()).unwrap();
        let mut r = Recorder::new();
        r.existing.insert("bin/sh".into(), false);
        r.fail = Some(("seccomp".into(), Errno::INVAL));
        assert_eq!(p.exec(&mut r), (at::SECCOMP, Errno::INVAL));
        assert!(!r.calls.iter().any(|c| c.starts_with("exec")));
    }

    #[test]
    fn process_not_found() {
        let mut s = spec();
        s.args = vec!["nope".into()];
        let p = ProcessPlan::new(&s).unwrap();
        let mut r = Recorder::new();
        assert_eq!(p.exec(&mut r), (at::EXEC, Errno::NOENT));
        s.args = vec![];
        assert!(ProcessPlan::new(&s).is_err());
    }
}
