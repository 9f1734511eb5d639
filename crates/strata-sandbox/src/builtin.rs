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
use crate::spec::{ExitStatus, Network, RunSpec, Stdio, Stream};
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

/// Pid 1 of the sandbox. Never returns.
fn init(
    setup: &SetupPlan,
    process: &ProcessPlan,
    stdio: &ChildStdio<'_>,
    err: BorrowedFd<'_>,
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
    let err_fd = err.as_raw_fd();
    // Drop every other descriptor of the caller: pid 1 never executes, so
    // close-on-exec would not help, and a copy of another concurrent run's
    // pipe would keep that run's reader from seeing EOF.
    // SAFETY: closes descriptor ranges of this (single-threaded) child; 0-2
    // and the report pipe stay, and nothing below uses the others.
    unsafe {
        if err_fd > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (err_fd - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (err_fd + 1) as u32, u32::MAX, 0u32);
    }
    if let Err((code, errno)) = setup.apply(&mut sys) {
        report(err, code, errno);
        exit_now(1);
    }
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
            while let Ok(Some((pid, status))) = rustix::process::waitpid(None, WaitOptions::NOHANG)
            {
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

impl Executor for BuiltinExecutor {
    fn name(&self) -> &str {
        "builtin"
    }

    fn run(&self, spec: &RunSpec) -> Result<ExitStatus, SandboxError> {
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
        let rm = root_mount(&spec.rootfs, &mnt, &empty)?;
        let setup = SetupPlan::new(spec, rm, &etc.files)?;
        let process = ProcessPlan::new(spec)?;
        let stubs = StubCleaner::before_run(&spec.rootfs, &crate::mount_targets(spec));

        let (err_r, err_w) = pipe()?;
        let mut keep: Vec<OwnedFd> = Vec::new(); // child ends, closed after the fork
        let mut readers: Vec<(OwnedFd, Stream)> = Vec::new();
        let mut stdio_fds: [Option<usize>; 3] = [None; 3]; // indexes into `keep`
        let devnull = || -> Result<OwnedFd, SandboxError> {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| SandboxError::prepare("/dev/null", e))?;
            high(OwnedFd::from(f))
        };
        match &spec.stdio {
            Stdio::Inherit => {}
            Stdio::Null => {
                keep.push(devnull()?);
                stdio_fds = [Some(0); 3];
            }
            Stdio::Capture(_) => {
                keep.push(devnull()?);
                stdio_fds[0] = Some(0);
                for (i, stream) in [(1, Stream::Stdout), (2, Stream::Stderr)] {
                    let (r, w) = pipe()?;
                    stdio_fds[i] = Some(keep.len());
                    keep.push(w);
                    readers.push((r, stream));
                }
            }
        }

        let mut flags =
            libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
        if spec.network == Network::None {
            flags |= libc::CLONE_NEWNET;
        }
        let stdio = ChildStdio {
            fds: stdio_fds.map(|i| i.and_then(|i| keep.get(i)).map(|fd| fd.as_fd())),
        };
        let mut guard = InterruptGuard::install();
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
            init(&setup, &process, &stdio, err_w.as_fd());
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
        let pumps: Vec<_> = readers
            .into_iter()
            .filter_map(|(r, stream)| match &spec.stdio {
                Stdio::Capture(c) => Some(spawn_pump(std::fs::File::from(r), stream, c.clone())),
                _ => None,
            })
            .collect();
        let waited = wait_pid(pid, &mut guard, |sig, nth| {
            signal_child(pid, if nth > 1 { libc::SIGKILL } else { sig });
        });
        drop(guard);
        for p in pumps {
            let _ = p.join();
        }
        let mut buf = Vec::new();
        let _ = std::fs::File::from(err_r).read_to_end(&mut buf);
        stubs.after_run();
        crate::plan::overlay_after_run(&spec.rootfs);
        let status = waited.map_err(|e| SandboxError::io("cannot wait for the sandbox", e))?;
        if buf.len() >= 8 {
            let code = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
            let source = std::io::Error::from_raw_os_error(errno);
            if code == at::EXEC {
                return Err(SandboxError::Exec {
                    program: process.program.clone(),
                    source,
                });
            }
            return Err(SandboxError::Setup {
                step: setup.describe(code),
                source,
            });
        }
        Ok(ExitStatus::from_wait_status(status))
    }
}
