//! The container lifecycle without a daemon, as podman does it: each
//! container has a state directory `<root>/containers/<id>/` (its record,
//! its state, its log) and, while it runs, a supervisor process of its own
//! (`commands/supervise.rs`). `ps`, `logs`, `exec`, `stop`, `kill`, `rm` and
//! `container prune` read those directories; nothing needs to stay running
//! besides the supervisors.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use strata_sandbox::supervise::{ContainerDir, LogReader, PortMap, State, Status};
use strata_sandbox::{ConsoleSize, Mount, Network, RootFs, Stream, User};

use crate::cli::{ContainerPruneArgs, ExecArgs, KillArgs, LogsArgs, PsArgs, RmArgs, StopArgs};
use crate::format::{object, print_items, Format};
use crate::settings::Settings;
use serde_json::json;

use super::{open_store, CmdResult};

/// The store's namespace for the content a container keeps alive.
pub(crate) const ROOT_NAMESPACE: &str = "containers";

/// What a container is: written once by `run`, read by its supervisor and
/// by every other command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: String,
    pub name: String,
    /// The image as given to `run`.
    pub image: String,
    pub image_id: String,
    /// Unix seconds.
    pub created: i64,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: User,
    pub hostname: String,
    pub mounts: Vec<Mount>,
    pub network: Network,
    pub ports: Vec<PortMap>,
    pub rootfs: RootFs,
    /// The snapshot holding the container's writable layer.
    pub snapshot: String,
    pub read_only: bool,
    pub tty: bool,
    pub interactive: bool,
    pub console_size: Option<ConsoleSize>,
    /// `--rm`: the supervisor removes the container when it exits.
    pub auto_remove: bool,
    pub security_opt: Vec<String>,
    /// auto, oci or builtin.
    pub isolation: String,
    /// The image's STOPSIGNAL.
    pub stop_signal: Option<String>,
}

pub(crate) const RECORD: &str = "config.json";

pub(crate) fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

/// A container found by name or ID.
pub(crate) struct Found {
    pub dir: ContainerDir,
    pub record: Record,
}

impl Found {
    pub fn state(&self) -> State {
        self.dir.state().unwrap_or_else(|_| {
            let mut s = State::created();
            s.status = Status::Exited;
            s
        })
    }
}

/// Every container with a readable record, newest first.
pub(crate) fn list(root: &Path) -> anyhow::Result<Vec<Found>> {
    let base = containers_dir(root);
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&base) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", base.display())),
    };
    for e in rd {
        let e = e.with_context(|| format!("cannot list {}", base.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let dir = ContainerDir::new(e.path());
        // A directory being made, or being removed, has no record: skip it.
        let Ok(record) = dir.read_json::<Record>(RECORD) else {
            continue;
        };
        out.push(Found { dir, record });
    }
    out.sort_by(|a, b| {
        b.record
            .created
            .cmp(&a.record.created)
            .then(a.record.id.cmp(&b.record.id))
    });
    Ok(out)
}

/// The container named `what` (a name, an ID, or a unique ID prefix).
pub(crate) fn find(root: &Path, what: &str) -> anyhow::Result<Found> {
    let all = list(root)?;
    let mut by_prefix = Vec::new();
    for f in all {
        if f.record.name == what || f.record.id == what {
            return Ok(f);
        }
        if !what.is_empty() && f.record.id.starts_with(what) {
            by_prefix.push(f);
        }
    }
    match by_prefix.len() {
        1 => Ok(by_prefix.remove(0)),
        0 => Err(crate::render::hinted(
            format!("no such container: {what}"),
            "`strata ps -a` lists the containers",
        )),
        n => bail!("{n} containers have IDs starting with {what:?}; give more of the ID"),
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn ago(secs: i64) -> String {
    let d = (strata_sandbox::supervise::now() - secs).max(0);
    match d {
        0 => "Less than a second".to_owned(),
        1..=59 => format!("{d} seconds"),
        60..=119 => "About a minute".to_owned(),
        120..=3599 => format!("{} minutes", d / 60),
        3600..=7199 => "About an hour".to_owned(),
        7200..=172_799 => format!("{} hours", d / 3600),
        _ => format!("{} days", d / 86400),
    }
}

/// docker's STATUS column.
fn status_text(state: &State) -> String {
    match state.status {
        Status::Created => "Created".to_owned(),
        Status::Running => format!(
            "Up {}",
            ago(state.started.unwrap_or_else(strata_sandbox::supervise::now))
        ),
        Status::Exited => {
            let code = state
                .exit_code
                .map_or_else(|| "unknown".to_owned(), |c| c.to_string());
            match state.finished {
                Some(t) => format!("Exited ({code}) {} ago", ago(t)),
                None => format!("Exited ({code})"),
            }
        }
    }
}

fn quote_command(args: &[String]) -> String {
    args.join(" ")
}

/// Columns padded as Go's tabwriter does for docker (3 spaces between).
pub fn ps(args: PsArgs, s: &Settings) -> CmdResult {
    let format = Format::parse(args.format.as_deref()).map_err(crate::render::usage)?;
    let all = list(&s.root)?;
    let mut items = Vec::new();
    let mut ids = Vec::new();
    for f in &all {
        let state = f.state();
        if !args.all && state.status != Status::Running {
            continue;
        }
        let id = if args.no_trunc {
            f.record.id.clone()
        } else {
            short(&f.record.id).to_owned()
        };
        let mut command = quote_command(&f.record.args);
        if !args.no_trunc && command.chars().count() > 20 {
            command = format!("{}…", command.chars().take(19).collect::<String>());
        }
        let ports = f
            .record
            .ports
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        // docker's `ps --format json` fields.
        items.push(object(vec![
            ("Command", json!(format!("\"{command}\""))),
            ("CreatedAt", json!(f.record.created)),
            ("ExitCode", json!(state.exit_code)),
            ("ID", json!(id)),
            ("Image", json!(f.record.image)),
            ("ImageID", json!(f.record.image_id)),
            ("Names", json!(f.record.name)),
            ("Pid", json!(state.target.as_ref().map(|t| t.pid))),
            ("Ports", json!(ports)),
            (
                "RunningFor",
                json!(format!("{} ago", ago(f.record.created))),
            ),
            (
                "State",
                json!(match state.status {
                    Status::Created => "created",
                    Status::Running => "running",
                    Status::Exited => "exited",
                }),
            ),
            ("Status", json!(status_text(&state))),
        ]));
        ids.push(id);
    }
    if args.ids_only || s.quiet {
        for id in ids {
            outln!("{id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let default = [
        ("CONTAINER ID", "ID"),
        ("IMAGE", "Image"),
        ("COMMAND", "Command"),
        ("CREATED", "RunningFor"),
        ("STATUS", "Status"),
        ("PORTS", "Ports"),
        ("NAMES", "Names"),
    ];
    print_items(&mut std::io::stdout().lock(), &format, &default, &items)?;
    Ok(ExitCode::SUCCESS)
}

pub fn logs(args: LogsArgs, s: &Settings) -> CmdResult {
    let f = find(&s.root, &args.container)?;
    let path = f.dir.log_path();
    let mut reader = loop {
        match LogReader::open(&path) {
            Ok(r) => break r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !args.follow || !f.dir.supervised() {
                    return Ok(ExitCode::SUCCESS);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    loop {
        // Look before reading: what was written before the supervisor went
        // away is read to the end.
        let alive = args.follow && f.dir.supervised();
        let mut any = false;
        while let Some((stream, data)) = reader.next_record()? {
            any = true;
            match stream {
                Stream::Stdout => stdout.lock().write_all(&data)?,
                Stream::Stderr => stderr.lock().write_all(&data)?,
            }
        }
        stdout.lock().flush()?;
        if !alive {
            return Ok(ExitCode::SUCCESS);
        }
        if !any {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Parses a signal name (`TERM`, `SIGTERM`) or number.
pub(crate) fn parse_signal(s: &str) -> anyhow::Result<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let name = t.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "ALRM" => libc::SIGALRM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "WINCH" => libc::SIGWINCH,
        "PIPE" => libc::SIGPIPE,
        _ => return Err(crate::render::usage(format!("invalid signal {s:?}"))),
    };
    Ok(n)
}

/// Sends `sig` to the container's first process, if it runs.
fn signal(f: &Found, sig: i32) -> anyhow::Result<bool> {
    let state = f.state();
    if state.status != Status::Running {
        return Ok(false);
    }
    let Some(t) = &state.target else {
        return Ok(false);
    };
    // The supervisor holds the lock while it has not reaped the process,
    // so the pid is still the container's.
    // SAFETY: kill(2) with a pid read from the container's state.
    let r = unsafe { libc::kill(t.pid, sig) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(false);
        }
        return Err(e).context(format!("cannot signal container {}", f.record.name));
    }
    Ok(true)
}

/// Waits until the container's supervisor is gone, at most `limit`.
fn wait_gone(f: &Found, limit: Duration) -> bool {
    let start = Instant::now();
    while f.dir.supervised() {
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

pub fn stop(args: StopArgs, s: &Settings) -> CmdResult {
    let mut failed = false;
    for c in &args.containers {
        let r = (|| -> anyhow::Result<()> {
            let f = find(&s.root, c)?;
            let sig = match args.signal.as_deref().or(f.record.stop_signal.as_deref()) {
                Some(name) => parse_signal(name)?,
                None => libc::SIGTERM,
            };
            if signal(&f, sig)? && !wait_gone(&f, Duration::from_secs(args.time)) {
                signal(&f, libc::SIGKILL)?;
                wait_gone(&f, Duration::from_secs(30));
            }
            Ok(())
        })();
        match r {
            Ok(()) => outln!("{c}"),
            Err(e) => {
                failed = true;
                eprint!("{}", crate::render::error_report(&e));
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn kill(args: KillArgs, s: &Settings) -> CmdResult {
    let sig = parse_signal(&args.signal)?;
    let mut failed = false;
    for c in &args.containers {
        let r = (|| -> anyhow::Result<()> {
            let f = find(&s.root, c)?;
            if !signal(&f, sig)? {
                bail!("container {c} is not running");
            }
            Ok(())
        })();
        match r {
            Ok(()) => outln!("{c}"),
            Err(e) => {
                failed = true;
                eprint!("{}", crate::render::error_report(&e));
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Removes a container that does not run: its writable layer, the content
/// it kept, its state directory.
pub(crate) fn remove(root: &Path, record: &Record, dir: &ContainerDir) -> anyhow::Result<()> {
    // A supervisor that died may have left its container running.
    if let Some(state) = dir.state().ok().filter(|s| s.exit_code.is_none()) {
        if let (Some(t), false) = (&state.target, dir.supervised()) {
            strata_sandbox::force_remove(t);
        }
    }
    let store = strata_oci::Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let snap = strata_layer::Snapshotter::new(&store)?;
    snap.remove(&record.snapshot)
        .with_context(|| format!("cannot remove the container layer {}", record.snapshot))?;
    store
        .release_active(&record.snapshot)
        .context("cannot release the container layer")?;
    match store.remove_root(ROOT_NAMESPACE, &record.id) {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e).context("cannot release the container's image"),
    }
    dir.remove()
        .with_context(|| format!("cannot remove {}", dir.path().display()))
}

pub fn rm(args: RmArgs, s: &Settings) -> CmdResult {
    let mut failed = false;
    for c in &args.containers {
        let r = (|| -> anyhow::Result<()> {
            let f = find(&s.root, c)?;
            if f.dir.supervised() {
                if !args.force {
                    return Err(crate::render::hinted(
                        format!("cannot remove container {c}: it is running"),
                        "stop it first (`strata stop`), or use `strata rm -f`",
                    ));
                }
                signal(&f, libc::SIGKILL)?;
                if !wait_gone(&f, Duration::from_secs(30)) {
                    bail!("container {c} did not exit after SIGKILL");
                }
                if !f.dir.path().exists() {
                    return Ok(()); // --rm: its supervisor removed it
                }
            }
            remove(&s.root, &f.record, &f.dir)
        })();
        match r {
            Ok(()) => outln!("{c}"),
            Err(e) => {
                failed = true;
                eprint!("{}", crate::render::error_report(&e));
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn prune(_args: ContainerPruneArgs, s: &Settings) -> CmdResult {
    let mut removed = Vec::new();
    for f in list(&s.root)? {
        if f.dir.supervised() {
            continue;
        }
        remove(&s.root, &f.record, &f.dir)?;
        removed.push(f.record.id);
    }
    if !removed.is_empty() {
        outln!("Deleted Containers:");
        for id in &removed {
            outln!("{id}");
        }
        outln!();
    }
    outln!("Total reclaimed containers: {}", removed.len());
    Ok(ExitCode::SUCCESS)
}

pub fn exec(args: ExecArgs, s: &Settings) -> CmdResult {
    match exec_inner(args, s) {
        Ok(code) => Ok(code),
        Err(e) => super::run::fail_with_docker_code(e),
    }
}

fn exec_inner(args: ExecArgs, s: &Settings) -> CmdResult {
    let f = find(&s.root, &args.container)?;
    let state = f.state();
    let Some(target) = state
        .target
        .clone()
        .filter(|_| state.status == Status::Running)
    else {
        bail!("container {} is not running", args.container);
    };
    let user = match &args.user {
        Some(u) => {
            let store = open_store(s)?;
            let image = store
                .find_image(&f.record.image_id)
                .context("cannot read the container's image")?;
            let snap = strata_layer::Snapshotter::new(&store)?;
            let view = strata_build::MergedView::new(snap.lowerdirs(&image)?);
            strata_build::container::resolve_user(&view, u)?.user
        }
        None => f.record.user.clone(),
    };
    let env = strata_sandbox::merge_env(&f.record.env, &args.env, |k| std::env::var(k).ok(), "/");
    let seccomp = match f.record.security_opt.last() {
        Some(o) => crate::cli::parse_security_opt(o).map_err(anyhow::Error::msg)?,
        None => strata_sandbox::Seccomp::Default,
    };
    let stdin_tty = rustix::termios::isatty(std::io::stdin());
    let spec = strata_sandbox::ExecSpec {
        args: args.args.clone(),
        env,
        cwd: args.workdir.clone().unwrap_or_else(|| f.record.cwd.clone()),
        user,
        terminal: args.tty,
        console_size: args
            .tty
            .then(|| strata_sandbox::pty::console_size(rustix::stdio::stdout()).ok())
            .flatten(),
        seccomp,
    };
    let executor = strata_sandbox::executor_for(&target, &s.run_dir);
    let raw = if args.tty && args.interactive && stdin_tty {
        Some(strata_sandbox::pty::RawMode::enable(rustix::stdio::stdin())?)
    } else {
        None
    };
    let mut started = executor.exec(&target, &spec)?;
    super::run::forward_signals_to(started.pid());
    let relay = started.take_console().map(|master| {
        super::run::set_winch_console(&master);
        let interactive = args.interactive;
        std::thread::spawn(move || {
            use std::os::fd::AsFd;
            let stdin = interactive.then(rustix::stdio::stdin);
            let _ = strata_sandbox::pty::relay_console(master.as_fd(), stdin, |b| {
                let _ = strata_sandbox::pty::write_all(rustix::stdio::stdout(), b);
            });
        })
    });
    let status = started.wait();
    if let Some(r) = relay {
        // The relay ends when the console closes (the command exited).
        let _ = r.join();
    }
    drop(raw);
    let status = status?;
    Ok(ExitCode::from(status.code().clamp(0, 255) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("BOGUS").is_err());
        assert!(parse_signal("0").is_err());
    }
}
