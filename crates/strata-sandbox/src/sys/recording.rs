//! A [`Syscalls`] double that records calls as text and can fail chosen
//! ones. It also models just enough of a filesystem (which paths exist
//! inside the root, and whether they are directories) for the setup logic
//! to take the paths it takes for real.

use std::collections::BTreeMap;
use std::ffi::CStr;

use rustix::fs::Mode;
use rustix::mount::MountFlags;
use rustix::process::{Gid, Resource, Rlimit, Uid};
use rustix::thread::{CapabilitySet, UnshareFlags};

use super::{Errno, Loc, Res, Syscalls};

/// The double's open file: the path it was opened by (relative to the root
/// for [`Syscalls::open_in_root`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FakeFd(pub String);

#[derive(Default)]
pub(crate) struct Recorder {
    pub calls: Vec<String>,
    /// Paths (inside root) that exist, and whether they are directories.
    pub existing: BTreeMap<String, bool>,
    /// Fail the first call whose record starts with this prefix.
    pub fail: Option<(String, Errno)>,
}

impl Recorder {
    pub(crate) fn new() -> Recorder {
        Recorder::default()
    }

    /// The container root, as `open_dir` would return it.
    pub(crate) fn root(&self) -> FakeFd {
        FakeFd(".".into())
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

    /// Calls that changed something (no opens or stats).
    pub(crate) fn effects(&self) -> Vec<&str> {
        self.calls
            .iter()
            .map(|s| s.as_str())
            .filter(|s| !s.starts_with("open") && !s.starts_with("isdir"))
            .collect()
    }
}

fn s(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

fn loc(l: Loc<'_, FakeFd>) -> String {
    match l {
        Loc::Path(p) => s(p),
        Loc::Fd(fd) => format!("<{}>", fd.0),
    }
}

fn child(dir: &FakeFd, name: &CStr) -> String {
    if dir.0 == "." {
        s(name)
    } else {
        format!("{}/{}", dir.0, s(name))
    }
}

/// `NOSUID|NODEV`, or `-` for none.
fn mount_flags(f: MountFlags) -> String {
    let names: Vec<&str> = f.iter_names().map(|(n, _)| n).collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join("|")
    }
}

impl Syscalls for Recorder {
    type Fd = FakeFd;

    fn unshare(&mut self, flags: UnshareFlags) -> Res {
        let names: Vec<&str> = flags.iter_names().map(|(n, _)| n).collect();
        self.rec(format!("unshare {}", names.join("|")))
    }
    fn make_rprivate(&mut self, target: &CStr) -> Res {
        self.rec(format!("make_rprivate {}", s(target)))
    }
    fn mount(
        &mut self,
        source: &CStr,
        target: Loc<'_, FakeFd>,
        fstype: &CStr,
        flags: MountFlags,
        data: Option<&CStr>,
    ) -> Res {
        self.rec(format!(
            "mount {} {} {} {} {}",
            s(source),
            loc(target),
            s(fstype),
            mount_flags(flags),
            data.map(s).unwrap_or_else(|| "-".into())
        ))
    }
    fn bind(&mut self, source: Loc<'_, FakeFd>, target: Loc<'_, FakeFd>, recursive: bool) -> Res {
        let rec = if recursive { " rec" } else { "" };
        self.rec(format!("bind {} {}{rec}", loc(source), loc(target)))
    }
    fn remount(&mut self, target: Loc<'_, FakeFd>, flags: MountFlags) -> Res {
        self.rec(format!("remount {} {}", loc(target), mount_flags(flags)))
    }
    fn unmount_detach(&mut self, target: &CStr) -> Res {
        self.rec(format!("umount {}", s(target)))
    }
    fn open_dir(&mut self, path: &CStr) -> Res<FakeFd> {
        self.rec(format!("open_dir {}", s(path)))?;
        Ok(FakeFd(".".into()))
    }
    fn open_in_root(&mut self, _root: &FakeFd, path: &CStr) -> Res<FakeFd> {
        let p = s(path);
        self.rec(format!("open {p}"))?;
        if p != "." && !self.existing.contains_key(&p) {
            return Err(Errno::NOENT);
        }
        Ok(FakeFd(p))
    }
    fn mkdir_at(&mut self, dir: &FakeFd, name: &CStr, mode: Mode) -> Res {
        let p = child(dir, name);
        let r = self.rec(format!("mkdir {p} {:#o}", mode.bits()));
        // EEXIST: another process created it meanwhile; it exists now.
        if matches!(r, Ok(()) | Err(Errno::EXIST)) {
            self.existing.insert(p, true);
        }
        r
    }
    fn create_at(&mut self, dir: &FakeFd, name: &CStr) -> Res {
        let p = child(dir, name);
        self.rec(format!("create {p}"))?;
        self.existing.insert(p, false);
        Ok(())
    }
    fn symlink_at(&mut self, target: &CStr, dir: &FakeFd, name: &CStr) -> Res {
        self.rec(format!("symlink {} -> {}", child(dir, name), s(target)))
    }
    fn is_dir(&mut self, fd: &FakeFd) -> Res<bool> {
        self.rec(format!("isdir {}", fd.0))?;
        Ok(self.existing.get(&fd.0).copied().unwrap_or(true))
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
        // CAP_CHECKPOINT_RESTORE (40) is the last one this "kernel" knows.
        if cap > 40 {
            return Err(Errno::INVAL);
        }
        self.rec(format!("capbset_drop {cap}"))
    }
    fn set_caps(&mut self, caps: CapabilitySet) -> Res {
        self.rec(format!("capset {:#x}", caps.bits()))
    }
    fn clear_ambient_caps(&mut self) -> Res {
        self.rec("ambient_clear".into())
    }
    fn set_no_new_privs(&mut self) -> Res {
        self.rec("no_new_privs".into())
    }
    fn set_groups(&mut self, gids: &[Gid]) -> Res {
        let gids: Vec<u32> = gids.iter().map(|g| g.as_raw()).collect();
        self.rec(format!("setgroups {gids:?}"))
    }
    fn set_gid(&mut self, gid: Gid) -> Res {
        self.rec(format!("setgid {}", gid.as_raw()))
    }
    fn set_uid(&mut self, uid: Uid) -> Res {
        self.rec(format!("setuid {}", uid.as_raw()))
    }
    fn set_rlimit(&mut self, resource: Resource, limit: Rlimit) -> Res {
        let n = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
        self.rec(format!(
            "rlimit {resource:?} {} {}",
            n(limit.current),
            n(limit.maximum)
        ))
    }
    fn set_seccomp(&mut self, program: &[seccompiler::sock_filter]) -> Res {
        self.rec(format!("seccomp {} instructions", program.len()))
    }
    fn exec(
        &mut self,
        path: &CStr,
        _argv: &[*const libc::c_char],
        _envp: &[*const libc::c_char],
    ) -> Errno {
        let p = s(path);
        let found = self.existing.contains_key(p.trim_start_matches('/'));
        if let Err(e) = self.rec(format!("exec {p}")) {
            return e;
        }
        // A "successful" exec returns to the caller here: EXDEV, an errno
        // execve never reports, marks it.
        if found {
            Errno::XDEV
        } else {
            Errno::NOENT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_typed_arguments_readably() {
        let mut r = Recorder::new();
        let fd = FakeFd("proc".into());
        r.mount(
            c"proc",
            Loc::Fd(&fd),
            c"proc",
            MountFlags::NOSUID | MountFlags::NODEV,
            None,
        )
        .unwrap();
        r.bind(Loc::Path(c"/a"), Loc::Fd(&fd), true).unwrap();
        r.remount(Loc::Fd(&fd), MountFlags::BIND | MountFlags::RDONLY)
            .unwrap();
        r.unshare(UnshareFlags::NEWNS).unwrap();
        r.set_rlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(1024),
                maximum: None,
            },
        )
        .unwrap();
        r.set_groups(&[Gid::from_raw(5), Gid::from_raw(50)])
            .unwrap();
        assert_eq!(
            r.effects(),
            vec![
                "mount proc <proc> proc NODEV|NOSUID -",
                "bind /a <proc> rec",
                "remount <proc> BIND|RDONLY",
                "unshare NEWNS",
                "rlimit Nofile 1024 unlimited",
                "setgroups [5, 50]",
            ]
        );
    }

    #[test]
    fn fails_the_first_matching_call_only() {
        let mut r = Recorder::new();
        r.fail = Some(("sethostname".into(), Errno::PERM));
        assert_eq!(r.chdir(c"/"), Ok(()));
        assert_eq!(r.sethostname(c"a"), Err(Errno::PERM));
        assert_eq!(r.sethostname(c"b"), Ok(()));
        assert_eq!(r.calls, vec!["chdir /", "sethostname a", "sethostname b"]);
    }

    #[test]
    fn models_existing_paths() {
        let mut r = Recorder::new();
        let root = r.root();
        assert_eq!(r.open_in_root(&root, c"etc"), Err(Errno::NOENT));
        r.mkdir_at(&root, c"etc", Mode::from_raw_mode(0o755))
            .unwrap();
        let etc = r.open_in_root(&root, c"etc").unwrap();
        assert_eq!(r.is_dir(&etc), Ok(true));
        r.create_at(&etc, c"hosts").unwrap();
        let hosts = r.open_in_root(&root, c"etc/hosts").unwrap();
        assert_eq!(r.is_dir(&hosts), Ok(false));
        r.existing.insert("bin/sh".into(), false);
        assert_eq!(r.exec(c"/bin/sh", &[], &[]), Errno::XDEV);
        assert_eq!(r.exec(c"/bin/bash", &[], &[]), Errno::NOENT);
        // past the last capability
        assert_eq!(r.drop_bounding_cap(41), Err(Errno::INVAL));
    }
}
