//! Rootless mode (DESIGN.md decision 8): an ordinary user's strata runs in a
//! user namespace of its own, where it is root over the ids it was given.
//!
//! [`enter`] is called by the binary before anything else happens (one
//! thread, nothing open but stdio): it forks; the child unshares a user and
//! a mount namespace and waits while the parent maps it with `newuidmap` and
//! `newgidmap` (Debian's `uidmap`), from the user's `/etc/subuid` and
//! `/etc/subgid` ranges: the user becomes 0, the first subordinate id 1, and
//! so on, so a RUN step can `chown` to any id the image uses and a stat in
//! the namespace shows the in-container ids that go into layer tar headers
//! (the digests equal root's). Without subordinate ids (or without the
//! tools) the child maps only the user, to 0 ([`Mapping::Single`]): every
//! other id is then unavailable, and [`SUBID_HINT`] says how to fix that.
//! The parent waits for the child and exits with its status; the child goes
//! on as the real strata, with [`ENV`] telling it (and whatever it starts,
//! such as a container supervisor) that it is already inside.
//!
//! A later command that must reach a running container (`exec`, `stop`,
//! `kill`, `rm`) [`join`]s the user namespace of that container's
//! supervisor instead: a process of another user namespace, even of the
//! same user, cannot enter the container's namespaces nor signal its
//! processes of other ids.
//!
//! Inside, the kernel forbids a few things root may otherwise do: mount
//! sysfs without a network namespace of its own (the sandbox binds the
//! host's read-only instead), create device nodes (layers skip them with a
//! warning), and use `trusted.*` xattrs (overlay is mounted with
//! `userxattr`, opaque directories carry `user.overlay.opaque`).

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

/// Set in the environment of a strata process that runs in its user
/// namespace: `<host uid>:<host gid>:<subids|single>:<user name>`.
pub const ENV: &str = "_STRATA_ROOTLESS";

/// A range of subordinate ids, as `/etc/subuid` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First host id of the range.
    pub start: u32,
    /// How many ids.
    pub count: u32,
}

/// How the user namespace maps ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// The user to 0, the subordinate ranges from 1 on.
    SubIds,
    /// Only the user, to 0.
    Single,
}

/// What the current process knows about the rootless mode it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootless {
    /// The user's id outside.
    pub host_uid: u32,
    /// The user's group outside.
    pub host_gid: u32,
    /// How ids are mapped.
    pub mapping: Mapping,
    /// The user's name (or its uid when it has none).
    pub user: String,
}

impl Rootless {
    /// The hint for a failure that the single-id mapping may explain.
    pub fn hint(&self) -> Option<String> {
        (self.mapping == Mapping::Single).then(|| subid_hint(&self.user))
    }
}

/// What a user without subordinate ids is told.
pub const SUBID_HINT: &str = "strata runs rootless with only your own id mapped (no range for you in /etc/subuid and /etc/subgid), so a chown to any other id fails";

/// [`SUBID_HINT`] with the command that fixes it for `user`.
pub fn subid_hint(user: &str) -> String {
    format!(
        "{SUBID_HINT}; as root run: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user} (and install newuidmap/newgidmap: apt-get install uidmap)"
    )
}

/// Errors entering the user namespace.
#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    /// A system call failed.
    #[error("cannot {what}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a user namespace.
    #[error("cannot create a user namespace (is kernel.unprivileged_userns_clone or user.max_user_namespaces 0?)")]
    Unshare(#[source] std::io::Error),
}

/// The rootless state of this process: `Some` when it runs in strata's user
/// namespace (see [`ENV`]).
pub fn current() -> Option<Rootless> {
    static CURRENT: std::sync::OnceLock<Option<Rootless>> = std::sync::OnceLock::new();
    CURRENT
        .get_or_init(|| {
            if !rustix::process::geteuid().is_root() {
                return None;
            }
            parse_env(&std::env::var(ENV).ok()?)
        })
        .clone()
}

fn parse_env(v: &str) -> Option<Rootless> {
    let mut it = v.splitn(4, ':');
    let host_uid = it.next()?.parse().ok()?;
    let host_gid = it.next()?.parse().ok()?;
    let mapping = match it.next()? {
        "subids" => Mapping::SubIds,
        "single" => Mapping::Single,
        _ => return None,
    };
    let user = it.next()?.to_owned();
    Some(Rootless {
        host_uid,
        host_gid,
        mapping,
        user,
    })
}

/// Whether this process runs in a user namespace other than the initial
/// one (ours, or any container's): overlay then needs `userxattr`, sysfs a
/// network namespace, and device nodes cannot be made.
pub fn in_user_namespace() -> bool {
    static IN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN.get_or_init(|| match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(s) => !is_initial_map(&s),
        Err(_) => false,
    })
}

fn is_initial_map(map: &str) -> bool {
    let f: Vec<&str> = map.split_whitespace().collect();
    f == ["0", "0", "4294967295"]
}

/// Whether group `gid` is mapped in this process's user namespace.
pub(crate) fn gid_mapped(gid: u32) -> bool {
    std::fs::read_to_string("/proc/self/gid_map").is_ok_and(|m| id_in_map(&m, gid))
}

fn id_in_map(map: &str, id: u32) -> bool {
    map.lines().any(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        matches!(f[..], [inside, _, count] if (inside..inside + count).contains(&u64::from(id)))
    })
}

/// Whether `setgroups` is denied in this user namespace (single-id
/// mapping written by the process itself).
pub(crate) fn setgroups_denied() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny")
}

/// The ranges of `user` (or of its numeric `id`) in a `/etc/subuid` or
/// `/etc/subgid` text (`name:start:count` lines).
pub fn parse_subids(text: &str, user: &str, id: u32) -> Vec<IdRange> {
    let id = id.to_string();
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let mut f = l.split(':');
            let (name, start, count) = (f.next()?, f.next()?, f.next()?);
            if name != user && name != id {
                return None;
            }
            let r = IdRange {
                start: start.trim().parse().ok()?,
                count: count.trim().parse().ok()?,
            };
            (r.count > 0).then_some(r)
        })
        .collect()
}

/// The arguments of `newuidmap PID ...` / `newgidmap PID ...` after the pid:
/// `own` to 0, the ranges from 1 on.
pub fn map_args(own: u32, ranges: &[IdRange]) -> Vec<String> {
    let mut args = vec!["0".to_owned(), own.to_string(), "1".to_owned()];
    let mut next: u64 = 1;
    for r in ranges {
        if next + u64::from(r.count) > u64::from(u32::MAX) {
            break;
        }
        args.extend([next.to_string(), r.start.to_string(), r.count.to_string()]);
        next += u64::from(r.count);
    }
    args
}

/// The name of user `uid` from `/etc/passwd`.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _ = f.next()?;
        (f.next()? == uid.to_string()).then(|| name.to_owned())
    })
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// What [`enter`] found for this user, before forking.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The user's id.
    pub uid: u32,
    /// The user's group.
    pub gid: u32,
    /// Its name (or uid).
    pub user: String,
    /// `/etc/subuid` ranges.
    pub subuids: Vec<IdRange>,
    /// `/etc/subgid` ranges.
    pub subgids: Vec<IdRange>,
    /// `newuidmap` and `newgidmap`, when installed.
    pub tools: Option<(PathBuf, PathBuf)>,
}

impl Plan {
    /// What this host offers the current user.
    pub fn detect() -> Plan {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let user = user_name(uid).unwrap_or_else(|| uid.to_string());
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Plan {
            uid,
            gid,
            subuids: parse_subids(&read("/etc/subuid"), &user, uid),
            subgids: parse_subids(&read("/etc/subgid"), &user, uid),
            tools: find_tool("newuidmap").zip(find_tool("newgidmap")),
            user,
        }
    }

    /// The mapping this plan asks for.
    pub fn mapping(&self) -> Mapping {
        if self.tools.is_some() && !self.subuids.is_empty() && !self.subgids.is_empty() {
            Mapping::SubIds
        } else {
            Mapping::Single
        }
    }
}

/// Whether [`enter`] is needed: not root, and not already inside.
pub fn needed() -> bool {
    !rustix::process::geteuid().is_root()
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

fn sys_err(what: &'static str) -> RootlessError {
    RootlessError::Sys {
        what,
        source: std::io::Error::last_os_error(),
    }
}

fn pipe() -> Result<(std::fs::File, std::fs::File), RootlessError> {
    let mut fds = [0; 2];
    // SAFETY: a valid two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(sys_err("create a pipe"));
    }
    // SAFETY: both descriptors were just created and are ours.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((r.into(), w.into()))
}

/// Enters a user namespace (see the module docs). Must be called while the
/// process has a single thread. Returns `Ok(None)` in the process that is
/// now inside (it carries on), `Ok(Some(code))` in the parent once that one
/// exited (the caller exits with `code`).
pub fn enter() -> Result<Option<u8>, RootlessError> {
    let plan = Plan::detect();
    let (mut ready_r, mut ready_w) = pipe()?;
    let (mut go_r, mut go_w) = pipe()?;
    // SAFETY: the process has one thread (the caller's contract); the
    // child only makes system calls until it carries on as strata.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(sys_err("fork"));
    }
    if pid == 0 {
        drop(ready_r);
        drop(go_w);
        child(&plan, &mut ready_w, &mut go_r)?;
        return Ok(None);
    }
    drop(ready_w);
    drop(go_r);
    CHILD.store(pid, Ordering::Relaxed);
    // The terminal's signals reach the child too (same process group);
    // a kill of the parent alone is passed on.
    // SAFETY: installing handlers that only call kill.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGQUIT] {
            libc::signal(sig, libc::SIG_IGN);
        }
        for sig in [libc::SIGTERM, libc::SIGHUP] {
            libc::signal(sig, forward as *const () as libc::sighandler_t);
        }
    }
    let mut b = [0u8; 1];
    let go = match ready_r.read(&mut b) {
        Ok(1) => parent_map(&plan, pid),
        // The child could not unshare and says why itself.
        _ => b'X',
    };
    let _ = go_w.write_all(&[go]);
    drop(go_w);
    let mut status = 0;
    loop {
        // SAFETY: waiting for our child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(sys_err("wait for the namespaced strata"));
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok(Some(code as u8))
}

/// In the parent: maps the child's ids. `M` when mapped, `S` when the child
/// maps itself (single id), `G` when only its gids are left to it, `U`
/// when only its uids are.
fn parent_map(plan: &Plan, pid: i32) -> u8 {
    let Some((newuidmap, newgidmap)) = &plan.tools else {
        return b'S';
    };
    if plan.mapping() == Mapping::Single {
        return b'S';
    }
    // Both at once: each is a setuid program's start (a few milliseconds
    // every rootless command pays).
    let spawn = |tool: &Path, own: u32, ranges: &[IdRange]| {
        Command::new(tool)
            .arg(pid.to_string())
            .args(map_args(own, ranges))
            .spawn()
    };
    let done = |c: std::io::Result<std::process::Child>| {
        c.and_then(|mut c| c.wait()).is_ok_and(|s| s.success())
    };
    let uids = spawn(newuidmap, plan.uid, &plan.subuids);
    let gids = spawn(newgidmap, plan.gid, &plan.subgids);
    match (done(uids), done(gids)) {
        (true, true) => b'M',
        (true, false) => b'G',
        // The child maps only its own uid (the kernel takes each map
        // once: the gid map newgidmap wrote stays).
        (false, true) => b'U',
        (false, false) => b'S',
    }
}

/// `ioctl(NS_GET_OWNER_UID)` on a user namespace's file: its owner.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// Joins the user namespace of process `pid` instead of making a new one
/// (see [`enter`]): a rootless container's supervisor, started by this same
/// user, keeps the user namespace its container runs in, and a later
/// `exec`, `stop`, `kill` or `rm` must be in it to reach the container (to
/// `setns` into its namespaces, to signal a process of another id). The
/// owner of a user namespace has every capability in it, so a process of
/// the same user may join it. Then, as in [`enter`], the process is uid 0
/// there, in a private mount namespace of its own, with [`ENV`] set.
///
/// `Ok(false)` (nothing changed) when `pid` is gone, or its user
/// namespace is the initial one, this process's own, or another user's.
/// Must be called while the process has a single thread.
pub fn join(pid: i32) -> Result<bool, RootlessError> {
    use std::os::fd::AsRawFd;
    let Ok(ns) = std::fs::File::open(format!("/proc/{pid}/ns/user")) else {
        return Ok(false);
    };
    let Ok(uid_map) = std::fs::read_to_string(format!("/proc/{pid}/uid_map")) else {
        return Ok(false);
    };
    let same = |a: &str, b: &str| {
        let ino = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        matches!((ino(a), ino(b)), (Ok(x), Ok(y)) if x == y)
    };
    if is_initial_map(&uid_map) || same(&format!("/proc/{pid}/ns/user"), "/proc/self/ns/user") {
        return Ok(false);
    }
    let mut owner: libc::uid_t = u32::MAX;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t.
    if unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_OWNER_UID as _, &mut owner) } != 0 {
        return Ok(false);
    }
    let plan = Plan::detect();
    if owner != plan.uid {
        return Ok(false);
    }
    let gid_map = std::fs::read_to_string(format!("/proc/{pid}/gid_map")).unwrap_or_default();
    // Only a namespace mapped as `enter` maps ours (not, say, another
    // tool's namespace of this user behind a recycled pid).
    let mapping = match (map_triples(&uid_map), map_triples(&gid_map)) {
        (u, g)
            if u == want_triples(plan.uid, &plan.subuids)
                && g == want_triples(plan.gid, &plan.subgids) =>
        {
            Mapping::SubIds
        }
        (u, g) if u == [[0, plan.uid, 1]] && g == [[0, plan.gid, 1]] => Mapping::Single,
        _ => return Ok(false),
    };
    // SAFETY: one thread (the caller's contract); plain system calls.
    unsafe {
        if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUSER) != 0 {
            return Err(sys_err("join the container's user namespace"));
        }
    }
    drop(ns);
    become_root(mapping)?;
    set_env(&plan, mapping);
    Ok(true)
}

/// The `inside outside count` lines of a `/proc/PID/uid_map`.
fn map_triples(map: &str) -> Vec<[u32; 3]> {
    map.lines()
        .filter_map(|l| {
            let f: Vec<u32> = l
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            <[u32; 3]>::try_from(f).ok()
        })
        .collect()
}

/// The map [`enter`] asks `newuidmap` for ([`map_args`]), as triples.
fn want_triples(own: u32, ranges: &[IdRange]) -> Vec<[u32; 3]> {
    let args: Vec<u32> = map_args(own, ranges)
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    args.chunks(3)
        .filter_map(|c| <[u32; 3]>::try_from(c).ok())
        .collect()
}

/// In a user namespace just entered: uid and gid 0, no unmapped
/// supplementary groups, a private mount namespace.
fn become_root(mapping: Mapping) -> Result<(), RootlessError> {
    // SAFETY: plain system calls on our own ids.
    unsafe {
        if libc::setresgid(0, 0, 0) != 0 {
            return Err(sys_err("become gid 0 in the user namespace"));
        }
        if libc::setresuid(0, 0, 0) != 0 {
            return Err(sys_err("become uid 0 in the user namespace"));
        }
        if mapping == Mapping::SubIds {
            // The host's supplementary groups are unmapped (nogroup) here.
            libc::setgroups(0, std::ptr::null());
        }
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(sys_err("create a mount namespace"));
        }
        // Nothing mounted here propagates back to the host.
        if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(sys_err("make the mount namespace private"));
        }
    }
    Ok(())
}

fn set_env(plan: &Plan, mapping: Mapping) {
    let m = match mapping {
        Mapping::SubIds => "subids",
        Mapping::Single => "single",
    };
    // SAFETY (set_var): the process has a single thread.
    std::env::set_var(ENV, format!("{}:{}:{m}:{}", plan.uid, plan.gid, plan.user));
}

fn child(
    plan: &Plan,
    ready_w: &mut std::fs::File,
    go_r: &mut std::fs::File,
) -> Result<(), RootlessError> {
    // SAFETY: plain system calls.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: one thread (see `enter`).
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        return Err(RootlessError::Unshare(std::io::Error::last_os_error()));
    }
    ready_w
        .write_all(&[1])
        .map_err(|source| RootlessError::Sys {
            what: "signal the parent",
            source,
        })?;
    let mut b = [0u8; 1];
    go_r.read_exact(&mut b)
        .map_err(|source| RootlessError::Sys {
            what: "wait for the id mapping",
            source,
        })?;
    let write = |file: &str, text: String| {
        std::fs::write(file, text).map_err(|source| RootlessError::Sys {
            what: "write the id mapping",
            source,
        })
    };
    let mut mapping = Mapping::SubIds;
    match b[0] {
        b'M' => {}
        b'S' => {
            write("/proc/self/setgroups", "deny".into())?;
            write("/proc/self/uid_map", format!("0 {} 1", plan.uid))?;
            write("/proc/self/gid_map", format!("0 {} 1", plan.gid))?;
            mapping = Mapping::Single;
        }
        b'G' => {
            write("/proc/self/setgroups", "deny".into())?;
            write("/proc/self/gid_map", format!("0 {} 1", plan.gid))?;
            mapping = Mapping::Single;
        }
        b'U' => {
            write("/proc/self/uid_map", format!("0 {} 1", plan.uid))?;
            mapping = Mapping::Single;
        }
        _ => {
            return Err(RootlessError::Sys {
                what: "map ids in the user namespace",
                source: std::io::Error::other("the parent gave up"),
            })
        }
    }
    become_root(mapping)?;
    set_env(plan, mapping);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_lines() {
        let text = "# comment\nalice:100000:65536\nbob:165536:65536\n1001:231072:1000\nalice:300000:10\nbad:line\nalice:1:0\n";
        assert_eq!(
            parse_subids(text, "alice", 1000),
            vec![
                IdRange {
                    start: 100000,
                    count: 65536
                },
                IdRange {
                    start: 300000,
                    count: 10
                }
            ]
        );
        assert_eq!(
            parse_subids(text, "carol", 1001),
            vec![IdRange {
                start: 231072,
                count: 1000
            }]
        );
        assert!(parse_subids(text, "dave", 7).is_empty());
    }

    #[test]
    fn map_args_put_the_user_at_0_and_ranges_after() {
        let r = [
            IdRange {
                start: 100000,
                count: 65536,
            },
            IdRange {
                start: 300000,
                count: 10,
            },
        ];
        assert_eq!(
            map_args(1000, &r),
            ["0", "1000", "1", "1", "100000", "65536", "65537", "300000", "10"]
        );
        assert_eq!(map_args(5, &[]), ["0", "5", "1"]);
    }

    #[test]
    fn env_round_trip_and_initial_map() {
        assert_eq!(
            parse_env("1000:1000:single:al:ice"),
            Some(Rootless {
                host_uid: 1000,
                host_gid: 1000,
                mapping: Mapping::Single,
                user: "al:ice".into()
            })
        );
        assert_eq!(parse_env("1000:x:single:a"), None);
        assert_eq!(parse_env("1:1:other:a"), None);
        assert!(is_initial_map("         0          0 4294967295\n"));
        assert!(id_in_map("0 1000 1\n1 100000 65536\n", 5));
        let r = [IdRange {
            start: 100000,
            count: 65536,
        }];
        assert_eq!(
            map_triples("         0       1000          1\n         1     100000      65536\n"),
            want_triples(1000, &r)
        );
        assert_ne!(map_triples("0 1000 1\n"), want_triples(1000, &r));
        assert!(!id_in_map("0 1000 1\n", 5));
        assert!(!is_initial_map("         0       1000          1\n"));
        let hint = subid_hint("alice");
        assert!(hint.contains("/etc/subuid"), "{hint}");
        assert!(
            hint.contains("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice")
        );
    }
}
