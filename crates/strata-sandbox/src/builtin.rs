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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use crate::error::SandboxError;
use crate::etc::write_etc_files;
use crate::interrupt::{wait_pid, InterruptGuard};
use crate::plan::{at, root_mount, ProcessPlan, SetupPlan};
use crate::pump::spawn_pump;
use crate::spec::{ExitStatus, Network, RunSpec, Stdio, Stream};
use crate::stubs::StubCleaner;
use crate::sys::Real;
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
    let mut fds = [0; 2];
    // SAFETY: valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(SandboxError::io(
            "cannot create a pipe",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: both fds were just created and are owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((high(r)?, high(w)?))
}

/// `fd` moved to a number >= 10, so the child's dup2 onto 0-2 can never
/// clobber it (a caller with a closed stdin gets pipes at 0).
fn high(fd: OwnedFd) -> Result<OwnedFd, SandboxError> {
    // SAFETY: duplicating an open descriptor.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(SandboxError::io(
            "cannot duplicate a descriptor",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: just created, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Failure report written by the child: code (see [`at`]) and errno.
fn report(fd: i32, code: u32, errno: i32) {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&code.to_ne_bytes());
    buf[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: writing a stack buffer to a pipe; async-signal-safe.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
}

/// The descriptors the command gets as 0, 1, 2 (-1: keep the inherited one).
struct ChildStdio {
    fds: [i32; 3],
}

/// Pid 1 of the sandbox. Never returns.
fn init(setup: &SetupPlan, process: &ProcessPlan, stdio: &ChildStdio, err_fd: i32) -> ! {
    let mut sys = Real;
    // Die with the caller (a crash or kill -9 of strata takes the sandbox along).
    // SAFETY: plain prctl.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    for (target, &fd) in stdio.fds.iter().enumerate() {
        // SAFETY: dup2 of descriptors prepared before the fork.
        if fd >= 0 && unsafe { libc::dup2(fd, target as i32) } < 0 {
            // SAFETY: reading errno.
            report(err_fd, at::STDIO, unsafe { *libc::__errno_location() });
            // SAFETY: leaving the child without running destructors.
            unsafe { libc::_exit(1) };
        }
    }
    // Drop every other descriptor of the caller: pid 1 never executes, so
    // close-on-exec would not help, and a copy of another concurrent run's
    // pipe would keep that run's reader from seeing EOF.
    // SAFETY: closing descriptor ranges; 0-2 and the report pipe stay.
    unsafe {
        if err_fd > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (err_fd - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (err_fd + 1) as u32, u32::MAX, 0u32);
    }
    if let Err((code, errno)) = setup.apply(&mut sys) {
        report(err_fd, code, errno);
        // SAFETY: as above.
        unsafe { libc::_exit(1) };
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
        // SAFETY: reading errno, then leaving.
        unsafe {
            report(err_fd, at::FORK, *libc::__errno_location());
            libc::_exit(1)
        };
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
        report(err_fd, code, errno);
        let status = match errno {
            libc::ENOENT | libc::ENOTDIR if code == at::EXEC => 127,
            libc::EACCES if code == at::EXEC => 126,
            _ => 1,
        };
        // SAFETY: leaving without destructors.
        unsafe { libc::_exit(status) };
    }
    // pid 1: keep only what is needed to wait.
    // SAFETY: closing our copies; the command holds its own.
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
            loop {
                let mut status = 0;
                // SAFETY: reaping any child.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else if libc::WIFSIGNALED(status) {
                        128 + libc::WTERMSIG(status)
                    } else {
                        255
                    };
                    // SAFETY: leaving; the kernel kills the rest of the namespace.
                    unsafe { libc::_exit(code) };
                }
            }
        } else if sig > 0 {
            // SAFETY: forwarding a signal to the command.
            unsafe { libc::kill(child, sig) };
        }
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
        let mut stdio = ChildStdio { fds: [-1; 3] };
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
                let n = devnull()?;
                stdio.fds = [n.as_raw_fd(); 3];
                keep.push(n);
            }
            Stdio::Capture(_) => {
                let n = devnull()?;
                stdio.fds[0] = n.as_raw_fd();
                keep.push(n);
                for (i, stream) in [(1, Stream::Stdout), (2, Stream::Stderr)] {
                    let (r, w) = pipe()?;
                    stdio.fds[i] = w.as_raw_fd();
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
        let mut guard = InterruptGuard::install();
        let err_w_raw = err_w.as_raw_fd();
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
            init(&setup, &process, &stdio, err_w_raw);
        }
        if pid < 0 {
            return Err(SandboxError::Spawn {
                program: "sandbox".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        let pid = pid as libc::pid_t;
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
            let sig = if nth > 1 { libc::SIGKILL } else { sig };
            // SAFETY: signalling our own child (pid 1 of the sandbox).
            unsafe { libc::kill(pid, sig) };
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
