//! A container's supervisor: `strata container-supervisor ID`, started by
//! `run` for every container, as podman's conmon. It detaches from the
//! client at once (fork, the parent exits; `setsid`), so killing the client
//! leaves it running; it becomes a child subreaper so the container's
//! process (which an OCI runtime started detached) is its child, holds the
//! container's lock for as long as it lives, starts the container, writes
//! its state (`running`, then `exited` with the code) atomically into the
//! state directory, copies the container's output into the log and, while
//! the client is attached, to the client's stdout/stderr (its stdin to the
//! container), forwards signals, serves published ports, and removes the
//! container at the end for `--rm`.
//!
//! It talks to the client over descriptor `--status-fd`, one line per
//! event: `pid N` (the supervisor), `started N` (the container's process),
//! `error {"code":C,"report":"..."}` (it could not start; docker's exit
//! code), `exit C`.

use std::io::Write as _;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use strata_sandbox::supervise::{forward_port, ContainerDir, LogWriter, State, Status};
use strata_sandbox::{RunSpec, SandboxError, Stdio, StdioFds, Stream};

use crate::cli::SuperviseArgs;
use crate::settings::Settings;

use super::container::{containers_dir, Record, RECORD};
use super::CmdResult;

/// The client's end of the conversation (nothing once it is gone).
struct Reporter {
    file: Option<std::fs::File>,
}

impl Reporter {
    fn line(&mut self, text: &str) {
        if let Some(f) = &mut self.file {
            if writeln!(f, "{text}").is_err() {
                self.file = None;
            }
        }
    }
}

pub fn supervise(a: SuperviseArgs, s: &Settings) -> CmdResult {
    // Detach from the client: it waits only for this first process.
    // SAFETY: nothing has started a thread yet in this process (a fresh
    // exec of strata that only parsed its arguments), so fork is sound.
    match unsafe { libc::fork() } {
        -1 => return Err(std::io::Error::last_os_error()).context("cannot fork the supervisor"),
        0 => {}
        // SAFETY: leave without running destructors that belong to the child.
        _ => unsafe { libc::_exit(0) },
    }
    let _ = rustix::process::setsid();
    // Keep no directory of the client's busy (every path in the record is absolute).
    let _ = std::env::set_current_dir("/");
    // SAFETY: the client put the write end of its status pipe at this
    // descriptor for us; nothing else owns it.
    let file = a
        .status_fd
        .filter(|fd| *fd > 2)
        .map(|fd| unsafe { std::fs::File::from_raw_fd(fd) });
    let mut report = Reporter { file };
    report.line(&format!("pid {}", std::process::id()));
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let dir = ContainerDir::new(containers_dir(&s.root).join(&a.id));
    let lock = match dir.lock() {
        Ok(l) => l,
        Err(e) => {
            let e = anyhow::Error::new(e).context(format!("cannot supervise container {}", a.id));
            report.line(&error_line(125, &e));
            return Ok(ExitCode::from(125));
        }
    };
    let record: Record = match dir.read_json(RECORD) {
        Ok(r) => r,
        Err(e) => {
            let e = anyhow::Error::new(e).context("cannot read the container's record");
            report.line(&error_line(125, &e));
            return Ok(ExitCode::from(125));
        }
    };
    let outcome = supervise_container(&dir, &record, &a, s, &mut report);
    let code = match &outcome {
        Ok(code) => *code,
        Err((code, e)) => {
            let mut state = State::created();
            state.status = Status::Exited;
            state.supervisor = std::process::id() as i32;
            state.finished = Some(strata_sandbox::supervise::now());
            state.exit_code = Some(*code as i32);
            state.error = Some(format!("{e:#}"));
            let _ = dir.write_state(&state);
            *code as i32
        }
    };
    // Let go of the client's terminal or pipes before cleaning up.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto 0-2, which this process owns.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    if record.auto_remove {
        if let Err(e) = super::container::remove(&s.root, &record, &dir) {
            tracing::warn!("cannot remove container {}: {e:#}", record.id);
        }
    }
    drop(lock);
    // Last, as docker's client returns once `--rm` removed the container.
    match &outcome {
        Ok(code) => report.line(&format!("exit {code}")),
        Err((code, e)) => report.line(&error_line(*code, e)),
    }
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

fn error_line(code: u8, e: &anyhow::Error) -> String {
    format!(
        "error {}",
        serde_json::json!({"code": code, "report": crate::render::error_report(e)})
    )
}

fn docker_code(e: &SandboxError) -> u8 {
    match e {
        SandboxError::Exec { source, .. } => {
            if source.kind() == std::io::ErrorKind::NotFound
                || source.raw_os_error() == Some(libc::ENOTDIR)
            {
                127
            } else {
                126
            }
        }
        _ => 125,
    }
}

static CONTAINER_PID: AtomicI32 = AtomicI32::new(0);
static CONSOLE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    super::signals::forward_or_resize(sig, &CONTAINER_PID, &CONSOLE, false);
}

fn install_forwarding() {
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGWINCH,
    ] {
        // SAFETY: a handler that only makes async-signal-safe calls.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as *const () as usize;
            act.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("cannot create a pipe")
}

/// Copies `from` until EOF into the log and, while it takes them, to `to`.
fn pump(
    from: OwnedFd,
    stream: Stream,
    log: Arc<Mutex<Option<LogWriter>>>,
    to: Option<i32>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut to = to;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match rustix::io::read(&from, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            };
            write_out(&log, stream, &buf[..n], &mut to);
        }
    })
}

fn write_out(log: &Mutex<Option<LogWriter>>, stream: Stream, data: &[u8], to: &mut Option<i32>) {
    if let Some(w) = log.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        let _ = w.write(stream, data);
    }
    if let Some(fd) = *to {
        // SAFETY: 1 and 2 stay open for the supervisor's life.
        let out = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if strata_sandbox::pty::write_all(out, data).is_err() {
            // The client's terminal or pipe is gone: keep logging only.
            *to = None;
        }
    }
}

/// Runs the container to its end; returns its exit code.
fn supervise_container(
    dir: &ContainerDir,
    record: &Record,
    a: &SuperviseArgs,
    s: &Settings,
    report: &mut Reporter,
) -> Result<i32, (u8, anyhow::Error)> {
    let fail = |_: &mut Reporter, code: u8, e: anyhow::Error| Err((code, e));
    let mut spec = RunSpec::new(record.rootfs.clone(), record.args.clone());
    spec.env = record.env.clone();
    spec.cwd = record.cwd.clone();
    spec.user = record.user.clone();
    spec.hostname = record.hostname.clone();
    spec.mounts = record.mounts.clone();
    spec.network = record.network;
    spec.readonly_rootfs = record.read_only;
    spec.terminal = record.tty;
    spec.console_size = record.console_size;
    if let Some(o) = record.security_opt.last() {
        match crate::cli::parse_security_opt(o) {
            Ok(sc) => spec.seccomp = sc,
            Err(e) => return fail(report, 125, anyhow::anyhow!(e)),
        }
    }
    // Ports first: a port in use stops the container from starting.
    let mut listeners = Vec::new();
    for p in &record.ports {
        match TcpListener::bind((p.host_ip, p.host_port)) {
            Ok(l) => listeners.push((l, p.container_port)),
            Err(e) => {
                return fail(
                    report,
                    125,
                    anyhow::Error::new(e).context(format!("cannot publish port {p}")),
                )
            }
        }
    }
    let log = match LogWriter::open(&dir.log_path()) {
        Ok(w) => Arc::new(Mutex::new(Some(w))),
        Err(e) => {
            return fail(
                report,
                125,
                anyhow::Error::new(e).context("cannot open the log"),
            )
        }
    };
    let mut readers = Vec::new();
    // Held for the container's life: a detached -i container's stdin stays open.
    let mut _stdin_writer = None;
    if !record.tty {
        let made = (|| -> anyhow::Result<StdioFds> {
            let stdin = if record.interactive && a.attach_stdin {
                rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)?
            } else if record.interactive {
                let (r, w) = pipe()?;
                _stdin_writer = Some(w);
                r
            } else {
                OwnedFd::from(std::fs::File::open("/dev/null")?)
            };
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            readers.push((out_r, Stream::Stdout));
            readers.push((err_r, Stream::Stderr));
            Ok(StdioFds {
                stdin: Arc::new(stdin),
                stdout: Arc::new(out_w),
                stderr: Arc::new(err_w),
            })
        })();
        match made {
            Ok(fds) => spec.stdio = Stdio::Fds(fds),
            Err(e) => return fail(report, 125, e),
        }
    }
    let isolation = match record.isolation.as_str() {
        "oci" => strata_sandbox::Isolation::Oci,
        "builtin" => strata_sandbox::Isolation::Builtin,
        "runc" => strata_sandbox::Isolation::Runc,
        "crun" => strata_sandbox::Isolation::Crun,
        _ => strata_sandbox::Isolation::Auto,
    };
    let executor = match strata_sandbox::pick(isolation, &s.run_dir) {
        Ok(e) => e,
        Err(e) => return fail(report, 125, e.into()),
    };
    let started = executor.start(&spec);
    // Our copies of the container's stdio: its output pipes end when it does.
    spec.stdio = Stdio::Null;
    let mut started = match started {
        Ok(st) => st,
        Err(e) => {
            let code = docker_code(&e);
            return fail(
                report,
                code,
                anyhow::Error::new(e).context("cannot start the container"),
            );
        }
    };
    let pid = started.pid();
    CONTAINER_PID.store(pid, Ordering::SeqCst);
    install_forwarding();
    let mut state = State::created();
    state.status = Status::Running;
    state.supervisor = std::process::id() as i32;
    state.target = Some(started.exec_target());
    state.started = Some(strata_sandbox::supervise::now());
    let _ = dir.write_state(&state);
    report.line(&format!("started {pid}"));
    for (l, port) in listeners {
        forward_port(l, pid, port);
    }
    let out_fd = a.attach_output.then_some(1);
    let err_fd = a.attach_output.then_some(2);
    let mut relays = Vec::new();
    if let Some(master) = started.take_console() {
        CONSOLE.store(master.as_raw_fd(), Ordering::SeqCst);
        let log = log.clone();
        let attach_stdin = a.attach_stdin;
        relays.push(std::thread::spawn(move || {
            let mut to = out_fd;
            let input = attach_stdin.then(rustix::stdio::stdin);
            let _ = strata_sandbox::pty::relay_console(master.as_fd(), input, |b| {
                write_out(&log, Stream::Stdout, b, &mut to)
            });
            CONSOLE.store(-1, Ordering::SeqCst);
            drop(master);
        }));
    }
    for (r, stream) in readers {
        let to = match stream {
            Stream::Stdout => out_fd,
            Stream::Stderr => err_fd,
        };
        relays.push(pump(r, stream, log.clone(), to));
    }
    let waited = started.wait();
    for r in relays {
        let _ = r.join();
    }
    *log.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let code = match waited {
        Ok(status) => status.code(),
        Err(e) => {
            let code = docker_code(&e);
            return fail(
                report,
                code,
                anyhow::Error::new(e).context("the container failed"),
            );
        }
    };
    state.status = Status::Exited;
    state.finished = Some(strata_sandbox::supervise::now());
    state.exit_code = Some(code);
    let _ = dir.write_state(&state);
    Ok(code)
}
