//! The built-in sandbox as data: what to mount and how to start the
//! process, computed before the fork (all allocation happens here), then
//! carried out step by step through [`Syscalls`] in the child.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::defaults::{nofile_limit, DEFAULT_CAP_MASK, DEVICES, MASKED_PATHS, READONLY_PATHS};
use crate::error::SandboxError;
use crate::spec::{MountKind, RootFs, RunSpec};
use crate::sys::{ensure, Errno, Fd, InRoot, Leaf, Loc, Syscalls};

const MS_RDONLY: u64 = libc::MS_RDONLY;
const MS_NOSUID: u64 = libc::MS_NOSUID;
const MS_NODEV: u64 = libc::MS_NODEV;
const MS_NOEXEC: u64 = libc::MS_NOEXEC;
const MS_BIND: u64 = libc::MS_BIND;
const MS_REC: u64 = libc::MS_REC;
const MS_REMOUNT: u64 = libc::MS_REMOUNT;
const MS_PRIVATE: u64 = libc::MS_PRIVATE;
const MS_STRICTATIME: u64 = libc::MS_STRICTATIME;

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
    /// Directory to chdir into first, so the overlay options can use short
    /// relative paths (mount data is limited to one page).
    pub chdir: Option<CString>,
    pub source: CString,
    pub fstype: Option<CString>,
    pub flags: u64,
    pub data: Option<CString>,
    pub target: CString,
}

/// Options of the overlay a run's root is (see [`root_mount`]).
pub(crate) const OVERLAY_OPTIONS: &str = "redirect_dir=off,index=off,metacopy=off,volatile";

fn check_overlay_path(p: &Path) -> Result<(), SandboxError> {
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
    let target_c = path_c(target, "rootfs mount point")?;
    match rootfs {
        RootFs::Dir(dir) => Ok(RootMount {
            chdir: None,
            source: path_c(dir, "rootfs directory")?,
            fstype: None,
            flags: MS_BIND | MS_REC,
            data: None,
            target: target_c,
        }),
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
                    "lowerdir={},upperdir={u},workdir={w},{OVERLAY_OPTIONS}",
                    l.join(":")
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
                    chdir: None,
                    source: c"overlay".into(),
                    fstype: Some(c"overlay".into()),
                    flags: 0,
                    data: Some(cstring(abs, "overlay options")?),
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
                chdir: Some(path_c(&common, "overlay parent directory")?),
                source: c"overlay".into(),
                fstype: Some(c"overlay".into()),
                flags: 0,
                data: Some(cstring(short, "overlay options")?),
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
pub(crate) fn mount_root(sys: &mut impl Syscalls, rm: &RootMount) -> Result<(), Errno> {
    if let Some(dir) = &rm.chdir {
        sys.chdir(dir)?;
    }
    let r = sys.mount(
        Some(Loc::Path(&rm.source)),
        Loc::Path(&rm.target),
        rm.fstype.as_deref(),
        rm.flags,
        rm.data.as_deref(),
    );
    if rm.chdir.is_some() {
        sys.chdir(c"/")?;
    }
    r
}

/// One setup step inside the new root.
#[derive(Debug)]
pub(crate) enum Step {
    Mount {
        target: InRoot,
        leaf: Leaf,
        source: Option<CString>,
        fstype: Option<CString>,
        flags: u64,
        data: Option<CString>,
        /// Extra flags for a `MS_BIND|MS_REMOUNT` after the mount (read-only binds).
        remount: Option<u64>,
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

impl Step {
    fn describe(&self) -> String {
        match self {
            Step::Mount {
                target,
                source,
                fstype,
                ..
            } => format!(
                "mount {} ({}) on {}",
                source
                    .as_deref()
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default(),
                fstype
                    .as_deref()
                    .map(|s| s.to_string_lossy())
                    .unwrap_or("bind".into()),
                target.display
            ),
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
        let mut steps = Vec::new();
        let mount = |target: &str,
                     leaf,
                     source: Option<&str>,
                     fstype: Option<&str>,
                     flags,
                     data: Option<&str>|
         -> Result<Step, SandboxError> {
            Ok(Step::Mount {
                target: in_root(target)?,
                leaf,
                source: source.map(|s| cstring(s, "mount source")).transpose()?,
                fstype: fstype.map(|s| cstring(s, "fs type")).transpose()?,
                flags,
                data: data.map(|s| cstring(s, "mount options")).transpose()?,
                remount: None,
            })
        };
        steps.push(mount(
            "/proc",
            Leaf::Dir,
            Some("proc"),
            Some("proc"),
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            None,
        )?);
        steps.push(mount(
            "/sys",
            Leaf::Dir,
            Some("sysfs"),
            Some("sysfs"),
            MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
            None,
        )?);
        steps.push(mount(
            "/dev",
            Leaf::Dir,
            Some("tmpfs"),
            Some("tmpfs"),
            MS_NOSUID | MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        )?);
        for dev in DEVICES {
            let p = format!("/dev/{dev}");
            steps.push(mount(&p, Leaf::File, Some(&p), None, MS_BIND, None)?);
        }
        steps.push(mount(
            "/dev/pts",
            Leaf::Dir,
            Some("devpts"),
            Some("devpts"),
            MS_NOSUID | MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        )?);
        steps.push(mount(
            "/dev/shm",
            Leaf::Dir,
            Some("shm"),
            Some("tmpfs"),
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            Some("mode=1777,size=65536k"),
        )?);
        steps.push(mount(
            "/dev/mqueue",
            Leaf::Dir,
            Some("mqueue"),
            Some("mqueue"),
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
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
            let src = file.to_string_lossy();
            steps.push(mount(target, Leaf::File, Some(&src), None, MS_BIND, None)?);
        }
        for m in &spec.mounts {
            steps.push(match &m.kind {
                MountKind::Bind { source, readonly } => {
                    let meta =
                        std::fs::metadata(source).map_err(|e| SandboxError::prepare(source, e))?;
                    Step::Mount {
                        target: in_root(&m.target)?,
                        leaf: if meta.is_dir() { Leaf::Dir } else { Leaf::File },
                        source: Some(path_c(source, "bind source")?),
                        fstype: None,
                        flags: MS_BIND | MS_REC,
                        data: None,
                        remount: readonly.then_some(MS_RDONLY),
                    }
                }
                MountKind::Tmpfs { size } => {
                    let data = size.map(|s| format!("size={s}"));
                    mount(
                        &m.target,
                        Leaf::Dir,
                        Some("tmpfs"),
                        Some("tmpfs"),
                        MS_NOSUID | MS_NODEV,
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
            at::ROOT_MOUNT => match &self.root.fstype {
                Some(_) => format!(
                    "mount the overlay ({})",
                    self.root
                        .data
                        .as_deref()
                        .map(|d| d.to_string_lossy())
                        .unwrap_or_default()
                ),
                None => format!(
                    "bind-mount the root directory {}",
                    self.root.source.to_string_lossy()
                ),
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
    pub(crate) fn apply(&self, sys: &mut impl Syscalls) -> Result<(), (u32, Errno)> {
        sys.mount(None, Loc::Path(c"/"), None, MS_REC | MS_PRIVATE, None)
            .map_err(|e| (at::PRIVATE, e))?;
        mount_root(sys, &self.root).map_err(|e| (at::ROOT_MOUNT, e))?;
        let root = sys
            .open_dir(&self.root.target)
            .map_err(|e| (at::ROOT_OPEN, e))?;
        let r = self.apply_steps(sys, root);
        sys.close(root);
        r?;
        if self.readonly_root {
            sys.mount(
                None,
                Loc::Path(&self.root.target),
                None,
                MS_BIND | MS_REMOUNT | MS_RDONLY,
                None,
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
        sys.umount_detach(c".").map_err(|e| (at::PIVOT, e))?;
        sys.chdir(c"/").map_err(|e| (at::PIVOT, e))?;
        Ok(())
    }

    fn apply_steps(&self, sys: &mut impl Syscalls, root: Fd) -> Result<(), (u32, Errno)> {
        for (i, step) in self.steps.iter().enumerate() {
            let code = at::STEP + i as u32;
            apply_step(sys, root, step).map_err(|e| (code, e))?;
        }
        Ok(())
    }
}

fn apply_step(sys: &mut impl Syscalls, root: Fd, step: &Step) -> Result<(), Errno> {
    match step {
        Step::Mount {
            target,
            leaf,
            source,
            fstype,
            flags,
            data,
            remount,
        } => {
            ensure(sys, root, target, *leaf)?;
            let fd = sys.open_in_root(root, &target.path)?;
            let r = sys.mount(
                source.as_deref().map(Loc::Path),
                Loc::Fd(fd),
                fstype.as_deref(),
                *flags,
                data.as_deref(),
            );
            sys.close(fd);
            r?;
            if let Some(extra) = remount {
                // reopen: the new fd refers to the new mount's root
                let fd = sys.open_in_root(root, &target.path)?;
                let r = sys.mount(
                    None,
                    Loc::Fd(fd),
                    None,
                    MS_BIND | MS_REMOUNT | MS_REC | extra,
                    None,
                );
                sys.close(fd);
                r?;
            }
            Ok(())
        }
        Step::Mask(p) => {
            let fd = match sys.open_in_root(root, &p.path) {
                Ok(fd) => fd,
                Err(libc::ENOENT) => return Ok(()),
                Err(e) => return Err(e),
            };
            let r = match sys.is_dir(fd) {
                Ok(true) => sys.mount(
                    Some(Loc::Path(c"tmpfs")),
                    Loc::Fd(fd),
                    Some(c"tmpfs"),
                    MS_RDONLY,
                    None,
                ),
                Ok(false) => sys.mount(
                    Some(Loc::Path(c"/dev/null")),
                    Loc::Fd(fd),
                    None,
                    MS_BIND,
                    None,
                ),
                Err(e) => Err(e),
            };
            sys.close(fd);
            r
        }
        Step::ReadOnly(p) => {
            let fd = match sys.open_in_root(root, &p.path) {
                Ok(fd) => fd,
                Err(libc::ENOENT) => return Ok(()),
                Err(e) => return Err(e),
            };
            let r = sys.mount(Some(Loc::Fd(fd)), Loc::Fd(fd), None, MS_BIND | MS_REC, None);
            sys.close(fd);
            r?;
            let fd = sys.open_in_root(root, &p.path)?;
            let r = sys.mount(
                None,
                Loc::Fd(fd),
                None,
                MS_BIND | MS_REMOUNT | MS_REC | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                None,
            );
            sys.close(fd);
            r
        }
        Step::Symlink { link, to } => {
            let Some((_, parent, name)) = link.steps.last() else {
                return Err(libc::EINVAL);
            };
            let pfd = sys.open_in_root(root, parent)?;
            let r = sys.symlink_at(to, pfd, name);
            sys.close(pfd);
            match r {
                Ok(()) | Err(libc::EEXIST) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Step::Mkdir(p) => ensure(sys, root, p, Leaf::Dir),
    }
}

/// The process side of a built-in run: credentials, capabilities, exec.
pub(crate) struct ProcessPlan {
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    pub caps: u64,
    pub nofile: (u64, u64),
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
            cwd: cstring(&spec.cwd, "working directory")?,
            uid: spec.user.uid,
            gid: spec.user.gid,
            groups: spec.user.additional_gids.clone(),
            caps: DEFAULT_CAP_MASK,
            nofile: nofile_limit(),
            program,
            candidates,
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            envp_ptrs,
        })
    }

    /// Drops privileges and executes; returns only on failure.
    pub(crate) fn exec(&self, sys: &mut impl Syscalls) -> (u32, Errno) {
        if let Err(e) = sys.set_rlimit(libc::RLIMIT_NOFILE, self.nofile.0, self.nofile.1) {
            return (at::RLIMIT, e);
        }
        // Bounding set first, while we still hold CAP_SETPCAP.
        for cap in 0..64u32 {
            if self.caps & (1 << cap) != 0 {
                continue;
            }
            match sys.drop_bounding_cap(cap) {
                Ok(()) => {}
                Err(libc::EINVAL) => break, // past the kernel's last capability
                Err(e) => return (at::CAPBSET, e),
            }
        }
        if let Err(e) = sys.set_caps(self.caps) {
            return (at::CAPSET, e);
        }
        if let Err(e) = sys.clear_ambient_caps() {
            return (at::AMBIENT, e);
        }
        if let Err(e) = sys.set_groups(&self.groups) {
            return (at::GROUPS, e);
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
        let mut denied = false;
        for path in &self.candidates {
            match sys.exec(path, &self.argv_ptrs, &self.envp_ptrs) {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => denied = true,
                e => return (at::EXEC, e),
            }
        }
        (at::EXEC, if denied { libc::EACCES } else { libc::ENOENT })
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
        assert_eq!(e[0], "mount - / - 0x44000 -", "private first");
        assert_eq!(e[1], "mount /rootfs /state/run/rootfs - 0x5000 -");
        assert!(pos("mount proc <proc> proc") < pos("mount /dev/null <proc/kcore>"));
        assert!(pos("mount tmpfs <dev> tmpfs") < pos("create dev/null"));
        assert!(pos("create dev/null") < pos("mount /dev/null <dev/null> - 0x1000"));
        pos("mount tmpfs <proc/acpi> tmpfs 0x1"); // masked dir: ro tmpfs
        pos("mount tmpfs <sys/firmware> tmpfs 0x1");
        pos("mount <proc/sys> <proc/sys> - 0x5000"); // read-only path: bind on itself...
        pos("mount - <proc/sys> - 0x502f"); // ...then remount ro,nosuid,nodev,noexec
        pos("create etc/hosts");
        pos("mount /state/run/hosts <etc/hosts> - 0x1000");
        pos("symlink dev/ptmx -> pts/ptmx");
        pos("mkdir work");
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
        assert!(e.contains(&format!("mount {tp} <cache> - 0x5000 -").as_str()));
        assert!(e.contains(&format!("mount {tp} <ro> - 0x5000 -").as_str()));
        assert!(e.contains(&"mount - <ro> - 0x5021 -"), "{e:#?}");
        assert!(e.contains(&"mount tmpfs <scratch> tmpfs 0x6 size=1048576"));
        assert!(e.contains(&"mkdir cache") && e.contains(&"mkdir scratch"));
        let ro = e
            .iter()
            .position(|c| *c == "mount - /state/run/rootfs - 0x1021 -")
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
        r.fail = Some(("mount sysfs".into(), libc::EPERM));
        let (code, errno) = p.apply(&mut r).unwrap_err();
        assert_eq!(errno, libc::EPERM);
        assert_eq!(p.describe(code), "mount sysfs (sysfs) on /sys");
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
        assert_eq!(
            rm.data.unwrap().to_str().unwrap(),
            "lowerdir=/s/snap/0:/s/snap/1:/s/snap/2,upperdir=/s/up,workdir=/s/work,redirect_dir=off,index=off,metacopy=off,volatile"
        );
        assert!(rm.chdir.is_none());
        let long = "/var/lib/strata/snapshots/sha256";
        let lowers: Vec<std::path::PathBuf> =
            (0..60).map(|i| format!("{long}/{i:064}").into()).collect();
        let rootfs = RootFs::Overlay {
            lowerdirs: lowers,
            upperdir: format!("{long}/up").into(),
            workdir: format!("{long}/work").into(),
        };
        let rm = root_mount(&rootfs, Path::new("/m"), Path::new("/e")).unwrap();
        assert_eq!(rm.chdir.unwrap().to_str().unwrap(), long);
        assert!(rm
            .data
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("lowerdir=0000"));
        // no layers (FROM scratch): an empty lower stands in
        let rootfs = RootFs::Overlay {
            lowerdirs: vec![],
            upperdir: "/u".into(),
            workdir: "/w".into(),
        };
        let rm = root_mount(&rootfs, Path::new("/m"), Path::new("/e")).unwrap();
        assert!(rm
            .data
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("lowerdir=/e,"));
        let bad = RootFs::Overlay {
            lowerdirs: vec!["/a,b".into()],
            upperdir: "/u".into(),
            workdir: "/w".into(),
        };
        assert!(root_mount(&bad, Path::new("/m"), Path::new("/e")).is_err());
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
        assert_eq!(&e[e.len() - 2..], &["exec /usr/bin/sh", "exec /bin/sh"]);
        // the double's exec "succeeds" for /bin/sh by returning 0, an unknown errno
        assert_eq!(code, at::EXEC);
    }

    #[test]
    fn process_not_found() {
        let mut s = spec();
        s.args = vec!["nope".into()];
        let p = ProcessPlan::new(&s).unwrap();
        let mut r = Recorder::new();
        assert_eq!(p.exec(&mut r), (at::EXEC, libc::ENOENT));
        s.args = vec![];
        assert!(ProcessPlan::new(&s).is_err());
    }
}
