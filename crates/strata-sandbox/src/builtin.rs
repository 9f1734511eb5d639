//! The built-in namespace sandbox (no runtime installed).
//!
//! Why fork (clone) instead of re-executing a helper binary: this crate is a
//! library used by the `strata` binary, by test binaries and by benches; a
//! re-exec helper would need a hook in every `main`. Instead, everything the
//! child needs (C strings, pointer arrays, mount options, the PATH
//! candidates) is computed before the fork in [`SetupPlan`] and
//! [`ProcessPlan`], and the child only makes system calls on that data: no
//! allocation, no locks, no panicking paths, so it is safe in a
//! multi-threaded parent.
//!
//! Process tree: the caller clones a child into new mount, pid, ipc, uts
//! (and, for `Network::None`, net) namespaces. That child is pid 1 of the
//! sandbox: it mounts the root filesystem (in its private mount namespace:
//! nothing is visible on the host, and everything disappears with the
//! namespace, even after a crash), sets up /proc, /dev, /sys, the /etc
//! files, user mounts and masked paths, pivots into the root, then forks
//! the command. The command drops capabilities and ids and executes. Pid 1
//! blocks all signals, forwards the ones it receives to the command, reaps
//! every child, and exits with the command's status (128+N for a signal).
//! When it exits the kernel kills whatever is left in the pid namespace.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, Signal, WaitOptions};

use crate::error::SandboxError;
use crate::etc::write_etc_files;
use crate::interrupt::{wait_pid, InterruptGuard};
use crate::plan::{at, root_mount, ProcessPlan, SetupPlan};
use crate::pump::spawn_pump;
use crate::spec::{ConsoleSize, ExitStatus, Network, RootFs, RunSpec, Stdio, Stream};
use crate::started::{ExecSpec, ExecTarget, Started};
use crate::stubs::StubCleaner;
use crate::sys::linux::{last_errno, Linux};
use crate::Executor;

/// The built-in namespace executor.
#[derive(Debug, Clone)]
pub struct BuiltinExecutor {
    state_dir: PathBuf,
}

impl BuiltinExecutor {
    /// An executor keeping its per-run scratch directories under `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> BuiltinExecutor {
        BuiltinExecutor {
            state_dir: state_dir.into(),
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .map_err(|e| SandboxError::io("cannot create a pipe", e.into()))?;
    Ok((high(r)?, high(w)?))
}

/// `fd` moved to a number >= 10, so the child's dup2 onto 0-2 can never
/// clobber it (a caller with a closed stdin gets pipes at 0).
fn high(fd: OwnedFd) -> Result<OwnedFd, SandboxError> {
    rustix::io::fcntl_dupfd_cloexec(&fd, 10)
        .map_err(|e| SandboxError::io("cannot duplicate a descriptor", e.into()))
}

/// Failure report written by the child: code (see [`at`]) and errno.
fn report(fd: BorrowedFd<'_>, code: u32, errno: Errno) {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&code.to_ne_bytes());
    buf[4..].copy_from_slice(&errno.raw_os_error().to_ne_bytes());
    // A pipe write of 8 bytes is atomic; nothing to do if it fails.
    let _ = rustix::io::write(fd, &buf);
}

/// Leaves the child at once: no destructors, no atexit handlers (neither is
/// async-signal-safe).
fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always sound to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// The descriptors the command gets as 0, 1, 2 (None: keep the inherited one).
struct ChildStdio<'a> {
    fds: [Option<BorrowedFd<'a>>; 3],
}

/// A terminal to open in the container: the socket its master side goes
/// back over, and its size.
#[derive(Clone, Copy)]
struct ConsoleReq<'a> {
    sock: BorrowedFd<'a>,
    size: Option<ConsoleSize>,
}

/// Closes every descriptor from 3 up except `keep` (allocation-free).
fn close_from_3_except(keep: &mut [i32]) {
    keep.sort_unstable();
    let mut from: i32 = 3;
    for &k in keep.iter() {
        if k < from {
            continue;
        }
        if k > from {
            // SAFETY: closes a range of descriptors this child does not use.
            unsafe { libc::syscall(libc::SYS_close_range, from as u32, (k - 1) as u32, 0u32) };
        }
        from = k + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from as u32, u32::MAX, 0u32) };
}

/// Pid 1 of the sandbox. Never returns.
fn init(
    setup: &SetupPlan,
    process: &ProcessPlan,
    stdio: &ChildStdio<'_>,
    err: BorrowedFd<'_>,
    console: Option<ConsoleReq<'_>>,
) -> ! {
    let mut sys = Linux;
    // Die with the caller (a crash or kill -9 of strata takes the sandbox along).
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    let dup2 = [
        rustix::stdio::dup2_stdin::<BorrowedFd<'_>>,
        rustix::stdio::dup2_stdout,
        rustix::stdio::dup2_stderr,
    ];
    for (fd, dup2) in stdio.fds.iter().zip(dup2) {
        if let Some(fd) = fd {
            if let Err(e) = dup2(*fd) {
                report(err, at::STDIO, e);
                exit_now(1);
            }
        }
    }
    // Drop every other descriptor of the caller: pid 1 never executes, so
    // close-on-exec would not help, and a copy of another concurrent run's
    // pipe would keep that run's reader from seeing EOF.
    let mut keep = [err.as_raw_fd(), console.map_or(-1, |c| c.sock.as_raw_fd())];
    close_from_3_except(&mut keep);
    if let Err((code, errno)) = setup.apply(&mut sys) {
        report(err, code, errno);
        exit_now(1);
    }
    let mut slave = None;
    if let Some(c) = console {
        // In the container's own devpts, so `tty` names a /dev/pts entry
        // that exists in the container.
        match crate::pty::open_console(c.size) {
            Ok((master, s)) => {
                if let Err(e) = crate::pty::send_fd(c.sock, master.as_fd()) {
                    report(err, at::CONSOLE, e);
                    exit_now(1);
                }
                slave = Some(s);
            }
            Err(e) => {
                report(err, at::CONSOLE, e);
                exit_now(1);
            }
        }
    }
    fork_command_and_wait(process, slave, err)
}

/// Forks the command (with `slave` as its controlling terminal when given),
/// then forwards signals to it and reaps children until it exits, and exits
/// with its status. What pid 1 of a sandbox, and the process that enters a
/// container for `exec`, end with.
fn fork_command_and_wait(process: &ProcessPlan, slave: Option<OwnedFd>, err: BorrowedFd<'_>) -> ! {
    let mut sys = Linux;
    let err_fd = err.as_raw_fd();
    // Block everything before forking so no signal is lost: pid 1 collects
    // them with sigwaitinfo; the command restores the old mask.
    // SAFETY: sigset operations on stack storage.
    let (all, old) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
        (all, old)
    };
    // A raw fork-like clone, not glibc's fork(): that one runs atfork
    // handlers and takes malloc's locks, which another thread of the caller
    // may have held at the moment of our own clone (they would never be
    // released in this copy).
    // SAFETY: fork semantics (no CLONE_VM); the child only makes system calls.
    let child = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    } as libc::pid_t;
    if child < 0 {
        report(err, at::FORK, last_errno());
        exit_now(1);
    }
    if child == 0 {
        // The command: default dispositions (the caller may ignore SIGPIPE,
        // and ignored signals survive exec), the caller's signal mask, no
        // inherited descriptors beyond 0-2 (the report pipe is close-on-exec).
        // SAFETY: plain syscalls on stack data.
        unsafe {
            for sig in 1..libc::SIGRTMIN() {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        }
        if let Some(slave) = &slave {
            if let Err(e) = crate::pty::become_console(slave.as_fd()) {
                report(err, at::CONSOLE, e);
                exit_now(1);
            }
        }
        // SAFETY: marks descriptors close-on-exec.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
        }
        let (code, errno) = process.exec(&mut sys);
        report(err, code, errno);
        let status = match errno {
            Errno::NOENT | Errno::NOTDIR if code == at::EXEC => 127,
            Errno::ACCESS if code == at::EXEC => 126,
            _ => 1,
        };
        exit_now(status);
    }
    // pid 1: keep only what is needed to wait.
    drop(slave);
    // SAFETY: closing our copies of the report pipe and of 0-2 (the command
    // holds its own); nothing below uses them.
    unsafe {
        libc::close(err_fd);
        for fd in 0..3 {
            libc::close(fd);
        }
    }
    loop {
        // SAFETY: zeroed siginfo is valid storage.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid set and storage.
        let sig = unsafe { libc::sigwaitinfo(&all, &mut info) };
        if sig == libc::SIGCHLD {
            // Any child (-1): the command may lead a session of its own
            // (a terminal's), out of our process group.
            while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
                if pid.as_raw_nonzero().get() == child {
                    let code = if let Some(code) = status.exit_status() {
                        code
                    } else if let Some(sig) = status.terminating_signal() {
                        128 + sig
                    } else {
                        255
                    };
                    // The kernel kills the rest of the namespace.
                    exit_now(code);
                }
            }
        } else if sig > 0 {
            // SAFETY: forwarding a signal to the command, our child.
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// Sends `sig` (a termination signal, or SIGKILL) to `pid`, our child.
fn signal_child(pid: Pid, sig: i32) {
    if let Some(sig) = Signal::from_named_raw(sig) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn devnull() -> Result<OwnedFd, SandboxError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| SandboxError::prepare("/dev/null", e))?;
    high(OwnedFd::from(f))
}

/// A unix stream socket pair (close-on-exec), moved to high descriptors.
fn socketpair() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let (a, b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| SandboxError::io("cannot create a socket pair", e.into()))?;
    Ok((high(a)?, high(b)?))
}

/// The descriptors a sandbox's pid 1 starts with, chosen from the spec.
#[derive(Default)]
struct StdioPlan {
    /// Child ends, closed in the parent after the fork.
    keep: Vec<OwnedFd>,
    /// Indexes into `keep` for 0, 1, 2.
    fds: [Option<usize>; 3],
    /// Output pipes to read into a capture.
    readers: Vec<(OwnedFd, Stream)>,
}

impl StdioPlan {
    fn new(spec: &RunSpec) -> Result<StdioPlan, SandboxError> {
        let mut p = StdioPlan::default();
        if spec.terminal {
            // The command gets the terminal; pid 1 needs nothing.
            p.keep.push(devnull()?);
            p.fds = [Some(0); 3];
            return Ok(p);
        }
        match &spec.stdio {
            Stdio::Inherit => {}
            Stdio::Null => {
                p.keep.push(devnull()?);
                p.fds = [Some(0); 3];
            }
            Stdio::Capture(_) => {
                p.keep.push(devnull()?);
                p.fds[0] = Some(0);
                for (i, stream) in [(1, Stream::Stdout), (2, Stream::Stderr)] {
                    let (r, w) = pipe()?;
                    p.fds[i] = Some(p.keep.len());
                    p.keep.push(w);
                    p.readers.push((r, stream));
                }
            }
            Stdio::Fds(f) => {
                for (i, fd) in [&f.stdin, &f.stdout, &f.stderr].into_iter().enumerate() {
                    let fd = rustix::io::fcntl_dupfd_cloexec(fd.as_fd(), 10)
                        .map_err(|e| SandboxError::io("cannot duplicate a descriptor", e.into()))?;
                    p.fds[i] = Some(p.keep.len());
                    p.keep.push(fd);
                }
            }
        }
        Ok(p)
    }
}

/// A sandbox cloned and running; what is needed to wait for it and clean up.
struct Launched {
    pid: Pid,
    err_r: OwnedFd,
    /// Our end of the console socket.
    console: Option<OwnedFd>,
    readers: Vec<(OwnedFd, Stream)>,
    setup: SetupPlan,
    program: String,
    stubs: StubCleaner,
    rootfs: RootFs,
    /// The fuse-overlayfs root, mounted under `_tmp` (so dropped first).
    fuse: Option<crate::fuse::FuseMount>,
    _tmp: tempfile::TempDir,
}

impl BuiltinExecutor {
    /// Everything up to and including the clone of pid 1.
    fn launch(&self, spec: &RunSpec) -> Result<Launched, SandboxError> {
        crate::validate(spec)?;
        crate::plan::overlay_before_run(&spec.rootfs)?;
        std::fs::create_dir_all(&self.state_dir)
            .map_err(|e| SandboxError::prepare(&self.state_dir, e))?;
        let tmp = tempfile::Builder::new()
            .prefix("builtin-")
            .tempdir_in(&self.state_dir)
            .map_err(|e| SandboxError::prepare(&self.state_dir, e))?;
        let mnt = tmp.path().join("rootfs");
        let empty = tmp.path().join("empty");
        for d in [&mnt, &empty] {
            std::fs::create_dir(d).map_err(|e| SandboxError::prepare(d, e))?;
        }
        let etc = write_etc_files(tmp.path(), spec)?;
        let fuse = crate::fuse::mount_for(&spec.rootfs, tmp.path(), &empty)?;
        let rm = match &fuse {
            Some(f) => root_mount(&RootFs::Dir(f.target().to_owned()), &mnt, &empty)?,
            None => root_mount(&spec.rootfs, &mnt, &empty)?,
        };
        let setup = SetupPlan::new(spec, rm, &etc.files)?;
        let process = ProcessPlan::new(spec)?;
        let stubs = StubCleaner::before_run(&spec.rootfs, &crate::mount_targets(spec));

        let (err_r, err_w) = pipe()?;
        let StdioPlan {
            keep,
            fds: stdio_fds,
            readers,
        } = StdioPlan::new(spec)?;
        let console = if spec.terminal {
            Some(socketpair()?)
        } else {
            None
        };
        let mut flags =
            libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
        if spec.network == Network::None {
            flags |= libc::CLONE_NEWNET;
        }
        let stdio = ChildStdio {
            fds: stdio_fds.map(|i| i.and_then(|i| keep.get(i)).map(|fd| fd.as_fd())),
        };
        let req = console.as_ref().map(|(_, child)| ConsoleReq {
            sock: child.as_fd(),
            size: spec.console_size,
        });
        // SAFETY: a fork-like clone (no CLONE_VM, no new stack): the child
        // gets a copy of this address space and only runs `init`, which makes
        // system calls on data prepared above and never returns.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if pid == 0 {
            init(&setup, &process, &stdio, err_w.as_fd(), req);
        }
        let pid = match pid {
            // pid 0 is the child, which never gets here
            1.. => Pid::from_raw(pid as libc::pid_t),
            _ => None,
        };
        let Some(pid) = pid else {
            return Err(SandboxError::Spawn {
                program: "sandbox".into(),
                source: std::io::Error::last_os_error(),
            });
        };
        drop(err_w);
        drop(keep);
        Ok(Launched {
            pid,
            err_r,
            console: console.map(|(ours, _child)| ours),
            readers,
            setup,
            program: process.program.clone(),
            stubs,
            rootfs: spec.rootfs.clone(),
            fuse,
            _tmp: tmp,
        })
    }
}

impl Launched {
    /// The failure the sandbox reported, if any (reads the report pipe to
    /// its end: until the command executed, or everything exited).
    fn failure(&self) -> Option<SandboxError> {
        let mut buf = Vec::new();
        let r = self.err_r.try_clone().ok()?;
        let _ = std::fs::File::from(r).read_to_end(&mut buf);
        if buf.len() < 8 {
            return None;
        }
        let code = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let source = std::io::Error::from_raw_os_error(errno);
        if code == at::EXEC {
            return Some(SandboxError::Exec {
                program: self.program.clone(),
                source,
            });
        }
        Some(SandboxError::Setup {
            step: self.setup.describe(code),
            source,
        })
    }

    fn cleanup(&self) {
        if let Some(f) = &self.fuse {
            // Before the stubs are looked at: every write is in the upper
            // directory once the daemon is gone.
            let _ = f.unmount();
        }
        self.stubs.after_run();
        crate::plan::overlay_after_run(&self.rootfs);
    }
}

/// Waits for `pid` (our child) without looking at signals.
fn wait_plain(pid: Pid) -> std::io::Result<i32> {
    let options = WaitOptions::from_bits_retain(libc::__WALL as u32);
    loop {
        match rustix::process::waitpid(Some(pid), options) {
            Ok(Some((_, status))) => return Ok(status.as_raw()),
            Ok(None) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A container started by [`BuiltinExecutor`]'s `start`.
struct BuiltinStarted {
    launched: Launched,
    console: Option<OwnedFd>,
    pumps: Vec<std::thread::JoinHandle<()>>,
}

impl Started for BuiltinStarted {
    fn pid(&self) -> i32 {
        self.launched.pid.as_raw_nonzero().get()
    }

    fn take_console(&mut self) -> Option<OwnedFd> {
        self.console.take()
    }

    fn signal(&self, sig: i32) -> std::io::Result<()> {
        let sig = Signal::from_named_raw(sig)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        rustix::process::kill_process(self.launched.pid, sig).map_err(Into::into)
    }

    fn exec_target(&self) -> ExecTarget {
        ExecTarget {
            executor: "builtin".into(),
            runtime: None,
            runtime_root: None,
            id: String::new(),
            pid: self.pid(),
        }
    }

    fn wait(self: Box<Self>) -> Result<ExitStatus, SandboxError> {
        let waited = wait_plain(self.launched.pid);
        for p in self.pumps {
            let _ = p.join();
        }
        self.launched.cleanup();
        let status = waited.map_err(|e| SandboxError::io("cannot wait for the sandbox", e))?;
        if let Some(e) = self.launched.failure() {
            return Err(e);
        }
        Ok(ExitStatus::from_wait_status(status))
    }
}

fn spawn_pumps(readers: Vec<(OwnedFd, Stream)>, stdio: &Stdio) -> Vec<std::thread::JoinHandle<()>> {
    readers
        .into_iter()
        .filter_map(|(r, stream)| match stdio {
            Stdio::Capture(c) => Some(spawn_pump(std::fs::File::from(r), stream, c.clone())),
            _ => None,
        })
        .collect()
}

/// `exec` in a container of the built-in executor: a child joins the
/// namespaces of the container's pid 1 (its mount namespace puts it in the
/// container's root), opens a terminal there when asked, and forks the
/// command inside the pid namespace; it forwards signals and exits with the
/// command's status.
fn exec_builtin(target: &ExecTarget, spec: &ExecSpec) -> Result<Box<dyn Started>, SandboxError> {
    let mut run = RunSpec::new(RootFs::Dir("/".into()), spec.args.clone());
    run.env = spec.env.clone();
    run.cwd = spec.cwd.clone();
    run.user = spec.user.clone();
    run.seccomp = spec.seccomp.clone();
    let process = ProcessPlan::new(&run)?;
    let mut ns = Vec::new();
    // The mount namespace last: it changes the root the others are opened from.
    for name in ["ipc", "uts", "net", "pid", "mnt"] {
        let p = format!("/proc/{}/ns/{name}", target.pid);
        // One it shares with us (the host's network) is not joined: in a
        // user namespace (rootless) joining the host's is refused even so.
        let id = |p: &str| {
            std::fs::metadata(p)
                .map(|m| {
                    (
                        std::os::unix::fs::MetadataExt::dev(&m),
                        std::os::unix::fs::MetadataExt::ino(&m),
                    )
                })
                .ok()
        };
        if id(&p).is_some() && id(&p) == id(&format!("/proc/self/ns/{name}")) {
            continue;
        }
        let f = std::fs::File::open(&p).map_err(|e| SandboxError::prepare(&p, e))?;
        ns.push(high(OwnedFd::from(f))?);
    }
    let (err_r, err_w) = pipe()?;
    let console = if spec.terminal {
        Some(socketpair()?)
    } else {
        None
    };
    let req = console.as_ref().map(|(_, child)| ConsoleReq {
        sock: child.as_fd(),
        size: spec.console_size,
    });
    // SAFETY: fork semantics (no CLONE_VM); the child only makes system
    // calls on data prepared above and never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        let err = err_w.as_fd();
        let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
        for fd in &ns {
            if let Err(e) = rustix::thread::move_into_link_name_space(fd.as_fd(), None) {
                report(err, at::SETNS, e);
                exit_now(1);
            }
        }
        let mut slave = None;
        if let Some(c) = req {
            match crate::pty::open_console(c.size) {
                Ok((master, s)) => {
                    if let Err(e) = crate::pty::send_fd(c.sock, master.as_fd()) {
                        report(err, at::CONSOLE, e);
                        exit_now(1);
                    }
                    slave = Some(s);
                }
                Err(e) => {
                    report(err, at::CONSOLE, e);
                    exit_now(1);
                }
            }
        }
        fork_command_and_wait(&process, slave, err);
    }
    let Some(pid) = (pid > 0)
        .then(|| Pid::from_raw(pid as libc::pid_t))
        .flatten()
    else {
        return Err(SandboxError::Spawn {
            program: "exec".into(),
            source: std::io::Error::last_os_error(),
        });
    };
    drop(err_w);
    drop(ns);
    let console = match console {
        Some((ours, child)) => {
            drop(child);
            crate::pty::recv_fd(ours.as_fd())
                .map_err(|e| SandboxError::io("cannot receive the terminal", e))?
        }
        None => None,
    };
    Ok(Box::new(ExecStarted {
        pid,
        err_r,
        console,
        program: process.program.clone(),
    }))
}

/// A process started by `exec_builtin`.
struct ExecStarted {
    pid: Pid,
    err_r: OwnedFd,
    console: Option<OwnedFd>,
    program: String,
}

impl Started for ExecStarted {
    fn pid(&self) -> i32 {
        self.pid.as_raw_nonzero().get()
    }

    fn take_console(&mut self) -> Option<OwnedFd> {
        self.console.take()
    }

    fn signal(&self, sig: i32) -> std::io::Result<()> {
        let sig = Signal::from_named_raw(sig)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        rustix::process::kill_process(self.pid, sig).map_err(Into::into)
    }

    fn exec_target(&self) -> ExecTarget {
        ExecTarget {
            executor: "builtin".into(),
            runtime: None,
            runtime_root: None,
            id: String::new(),
            pid: self.pid(),
        }
    }

    fn wait(self: Box<Self>) -> Result<ExitStatus, SandboxError> {
        let status =
            wait_plain(self.pid).map_err(|e| SandboxError::io("cannot wait for exec", e))?;
        let mut buf = Vec::new();
        let _ = std::fs::File::from(self.err_r).read_to_end(&mut buf);
        if buf.len() >= 8 {
            let code = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
            let source = std::io::Error::from_raw_os_error(errno);
            if code == at::EXEC {
                return Err(SandboxError::Exec {
                    program: self.program,
                    source,
                });
            }
            return Err(SandboxError::Setup {
                step: if code == at::SETNS {
                    "join the container's namespaces".into()
                } else if code == at::CONSOLE {
                    "open a terminal in the container".into()
                } else {
                    format!("exec setup step {code}")
                },
                source,
            });
        }
        Ok(ExitStatus::from_wait_status(status))
    }
}

impl Executor for BuiltinExecutor {
    fn name(&self) -> &str {
        "builtin"
    }

    fn run(&self, spec: &RunSpec) -> Result<ExitStatus, SandboxError> {
        if spec.terminal {
            return Err(SandboxError::InvalidSpec(
                "a terminal needs a started container (Executor::start)".into(),
            ));
        }
        let mut guard = InterruptGuard::install();
        let mut launched = self.launch(spec)?;
        let pid = launched.pid;
        let pumps = spawn_pumps(std::mem::take(&mut launched.readers), &spec.stdio);
        let waited = wait_pid(pid, &mut guard, |sig, nth| {
            signal_child(pid, if nth > 1 { libc::SIGKILL } else { sig });
        });
        drop(guard);
        for p in pumps {
            let _ = p.join();
        }
        let failure = launched.failure();
        launched.cleanup();
        let status = waited.map_err(|e| SandboxError::io("cannot wait for the sandbox", e))?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(ExitStatus::from_wait_status(status))
    }

    fn start(&self, spec: &RunSpec) -> Result<Box<dyn Started>, SandboxError> {
        let mut launched = self.launch(spec)?;
        let pumps = spawn_pumps(std::mem::take(&mut launched.readers), &spec.stdio);
        let console = match launched.console.take() {
            Some(sock) => crate::pty::recv_fd(sock.as_fd())
                .map_err(|e| SandboxError::io("cannot receive the terminal", e))?,
            None => None,
        };
        // The report pipe ends when the command executed (close-on-exec),
        // or carries why it could not.
        if let Some(e) = launched.failure() {
            let _ = wait_plain(launched.pid);
            for p in pumps {
                let _ = p.join();
            }
            launched.cleanup();
            return Err(e);
        }
        Ok(Box::new(BuiltinStarted {
            launched,
            console,
            pumps,
        }))
    }

    fn exec(&self, target: &ExecTarget, spec: &ExecSpec) -> Result<Box<dyn Started>, SandboxError> {
        exec_builtin(target, spec)
    }
}
