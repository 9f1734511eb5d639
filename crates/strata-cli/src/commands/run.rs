//! `strata run`: docker run semantics over the store. The container's
//! spec comes from the image's config and the flags (the library's
//! `strata_build::container`), its root filesystem from the snapshotter (an
//! overlay of the image's layers with a writable layer of its own, or a
//! copy where overlayfs cannot be used). The container then runs under a
//! supervisor process of its own (`commands/supervise.rs`), so it survives
//! this client: `run` attaches to it (the supervisor writes the
//! container's output to the client's stdout/stderr and to the log, and
//! reads its stdin), forwards signals to it, and exits with its status;
//! `run -d` prints its ID and returns.
//!
//! Exit codes as docker's: the command's own, 125 when strata fails, 126
//! when the command cannot be executed, 127 when it is not found.

use std::io::BufRead as _;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{bail, Context as _};
use strata_build::container::{
    find_init, parse_env_file, parse_mount, parse_volume, prepare_rootfs, process_spec, with_init,
    Overrides,
};
use strata_build::MergedView;
use strata_layer::Snapshotter;
use strata_sandbox::supervise::{ContainerDir, PortMap};
use strata_sandbox::{Network, RootFs, SandboxError};

use crate::cli::{Isolation, RunArgs};
use crate::settings::Settings;

use super::container::{containers_dir, Record, RECORD, ROOT_NAMESPACE};
use super::{open_store, CmdResult};

pub fn run(args: RunArgs, s: &Settings) -> CmdResult {
    match run_inner(args, s) {
        Ok(code) => Ok(code),
        Err(e) => fail_with_docker_code(e),
    }
}

/// Prints `err` and returns docker's exit code for it: 127 for a command
/// that is not found, 126 for one that cannot be executed, 125 for
/// everything else that went wrong before the command ran.
pub(crate) fn fail_with_docker_code(err: anyhow::Error) -> CmdResult {
    if crate::render::is_broken_pipe(&err) {
        return Ok(ExitCode::SUCCESS);
    }
    eprint!("{}", crate::render::error_report(&err));
    Ok(ExitCode::from(docker_code(&err)))
}

fn docker_code(err: &anyhow::Error) -> u8 {
    for c in err.chain() {
        if let Some(SandboxError::Exec { source, .. }) = c.downcast_ref::<SandboxError>() {
            return exec_code(source);
        }
        if let Some(code) = c.downcast_ref::<ContainerFailed>() {
            return code.code;
        }
    }
    125
}

fn exec_code(source: &std::io::Error) -> u8 {
    if source.kind() == std::io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ENOTDIR)
    {
        127
    } else {
        126
    }
}

/// The supervisor's report of a container that could not start.
#[derive(Debug)]
struct ContainerFailed {
    code: u8,
    report: String,
}

impl std::fmt::Display for ContainerFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.report)
    }
}
impl std::error::Error for ContainerFailed {}

/// A fresh container ID (64 hex digits).
fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut seed = [0u8; 16];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed));
    let mut input = format!("{}-{nanos}-", std::process::id()).into_bytes();
    input.extend_from_slice(&seed);
    strata_oci::Digest::sha256(&input).hex().to_owned()
}

/// A docker-like generated name: `adjective_noun`.
fn new_name(id: &str) -> String {
    const ADJ: &[&str] = &[
        "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "proud", "quiet", "rapid", "sharp", "tidy", "vivid", "witty", "young", "zen",
    ];
    const NOUN: &[&str] = &[
        "ada", "babbage", "curie", "darwin", "euler", "fermi", "gauss", "hopper", "turing",
        "knuth", "lovelace", "meitner", "noether", "pascal", "ritchie", "shannon", "thompson",
        "volta", "wozniak", "yalow",
    ];
    let n = u64::from_str_radix(&id[..id.len().min(12)], 16).unwrap_or(0);
    format!(
        "{}_{}",
        ADJ[(n % ADJ.len() as u64) as usize],
        NOUN[((n / 97) % NOUN.len() as u64) as usize]
    )
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn run_inner(args: RunArgs, s: &Settings) -> CmdResult {
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let volumes_dir = s.root.join("volumes");
    let mut env = Vec::new();
    for f in &args.env_files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the env file {}", f.display()))?;
        env.extend(parse_env_file(&text, f)?);
    }
    env.extend(args.env.iter().cloned());
    let mut mounts = Vec::new();
    for v in &args.volumes {
        mounts.push(parse_volume(v, &cwd, &volumes_dir)?);
    }
    for m in &args.mounts {
        mounts.push(parse_mount(m, &cwd, &volumes_dir)?);
    }
    let mut ports = Vec::new();
    for p in &args.publish {
        ports.push(PortMap::parse(p).map_err(anyhow::Error::msg)?);
    }
    for o in &args.security_opt {
        crate::cli::parse_security_opt(o).map_err(anyhow::Error::msg)?;
    }
    let network = match (args.network, ports.is_empty()) {
        (Some(Network::Host), false) => {
            if !s.quiet {
                eprintln!("warning: published ports are discarded when using host network mode");
            }
            ports.clear();
            Network::Host
        }
        (Some(Network::None), false) => {
            bail!("-p needs a network: with --network none the container has no reachable ports")
        }
        (Some(Network::Host) | None, true) => Network::Host,
        (Some(Network::None), true) => Network::None,
        // Published ports: a network namespace of the container's own,
        // reached through the supervisor's port forwarders.
        (None, false) => Network::None,
    };
    let init = if args.init {
        Some(find_init().ok_or_else(|| {
            crate::render::hinted(
                "--init needs a statically linked init on the host (tini-static, catatonit or docker-init)",
                "apt-get install tini (it ships /usr/bin/tini-static)",
            )
        })?)
    } else {
        None
    };

    let platform = match &args.platform {
        Some(p) => Some(super::parse_platform("--platform", p)?),
        None => None,
    };
    let store = open_store(s)?;
    let image = store
        .find_image_for(&args.image, platform.as_ref())
        .map_err(|e| {
            if e.is_not_found() {
                let what = match &platform {
                    Some(p) => format!("no image for {p} in {}", args.image),
                    None => format!("no such image: {}", args.image),
                };
                crate::render::hinted(
                    what,
                    "`strata images` lists the images in the store (one line per platform); \
                     build, pull, import or load one first",
                )
            } else {
                anyhow::Error::new(e).context(format!("cannot read image {}", args.image))
            }
        })?;
    check_platform(&args.image, &image, platform.as_ref(), s)?;
    let id = new_id();
    let taken: std::collections::BTreeMap<String, String> = super::container::list(&s.root)?
        .into_iter()
        .map(|f| (f.record.name, f.record.id))
        .collect();
    let name = match &args.name {
        Some(n) => {
            if !valid_name(n) {
                return Err(crate::render::usage(format!(
                    "invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
            if let Some(other) = taken.get(n) {
                return Err(crate::render::hinted(
                    format!(
                        "the container name {n:?} is already in use by container {}",
                        &other[..12]
                    ),
                    "remove that container (`strata rm`) or choose another --name",
                ));
            }
            n.clone()
        }
        None => (0..8)
            .map(|i| new_name(&id[i * 8..]))
            .find(|n| !taken.contains_key(n))
            .unwrap_or_else(|| format!("strata_{}", &id[..12])),
    };

    let snap = Snapshotter::new(&store)?;
    let mut lease = store.lease("run")?;
    let mut roots = strata_oci::RootSet::default();
    roots.digests.insert(image.descriptor.digest.clone());
    roots.digests.insert(image.id().clone());
    for l in &image.layers {
        lease.add_digest(&l.descriptor.digest)?;
        lease.add_snapshot(l.diff_id.hex())?;
        roots.digests.insert(l.descriptor.digest.clone());
        roots.snapshots.insert(l.diff_id.hex().to_owned());
    }
    let view = MergedView::new(
        snap.lowerdirs(&image)
            .context("cannot extract the image's layers")?,
    );
    let config = image.config.config.clone().unwrap_or_default();
    let overrides = Overrides {
        args: args.args.clone(),
        entrypoint: args.entrypoint.clone(),
        env,
        user: args.user.clone(),
        workdir: args.workdir.clone(),
    };
    let placeholder = RootFs::Dir(std::path::PathBuf::new());
    let mut spec = process_spec(&config, &view, placeholder, &overrides, |k| {
        std::env::var(k).ok()
    })?;
    spec.mounts = mounts;
    if let Some(init) = &init {
        with_init(&mut spec, init);
    }
    let kind = match s.snapshots.resolve() {
        Ok(k) => k,
        Err(why) => {
            if !s.quiet {
                eprintln!("warning: {why}: the container gets a copy of the image (slower)");
            }
            strata_build::RootfsKind::Copy
        }
    };
    let key = format!("ctr-{}", &id[..12]);
    // The container's layer outlives this command: kept until `strata rm`.
    store.keep_active(&key)?;
    let rootfs = prepare_rootfs(&snap, &key, &image.layers, kind)?;
    let cleanup_snapshot = |e: anyhow::Error| {
        let _ = snap.remove(&key);
        let _ = store.release_active(&key);
        e
    };
    let console_size = if args.tty {
        strata_sandbox::pty::console_size(rustix::stdio::stdout())
            .or_else(|_| strata_sandbox::pty::console_size(rustix::stdio::stdin()))
            .ok()
    } else {
        None
    };
    let record = Record {
        id: id.clone(),
        name,
        image: args.image.clone(),
        image_id: image.id().to_string(),
        created: strata_sandbox::supervise::now(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        cwd: spec.cwd.clone(),
        user: spec.user.clone(),
        hostname: args.hostname.clone().unwrap_or_else(|| id[..12].to_owned()),
        mounts: spec.mounts.clone(),
        network,
        ports,
        rootfs,
        snapshot: key.clone(),
        read_only: args.read_only,
        tty: args.tty,
        interactive: args.interactive,
        console_size,
        auto_remove: args.rm,
        security_opt: args.security_opt.clone(),
        isolation: match args.isolation {
            Isolation::Auto => "auto",
            Isolation::Oci => "oci",
            Isolation::Builtin => "builtin",
            Isolation::Runc => "runc",
            Isolation::Crun => "crun",
        }
        .to_owned(),
        stop_signal: config.stop_signal.clone(),
    };
    store
        .set_root(ROOT_NAMESPACE, &id, &roots)
        .map_err(|e| cleanup_snapshot(e.into()))?;
    let dir = containers_dir(&s.root).join(&id);
    let made = ContainerDir::create(&dir)
        .and_then(|d| d.write_json(RECORD, &record).map(|()| d))
        .with_context(|| format!("cannot create {}", dir.display()));
    let dir = match made {
        Ok(d) => d,
        Err(e) => {
            let _ = store.remove_root(ROOT_NAMESPACE, &id);
            let _ = ContainerDir::new(&dir).remove();
            return Err(cleanup_snapshot(e));
        }
    };
    drop(lease);
    attach(&record, &dir, &args, s)
}

/// The image's platform against the one asked for (docker refuses a
/// single-platform image of another), and, for another CPU's, qemu's
/// registration (checked as a build checks it before an emulated RUN).
fn check_platform(
    name: &str,
    image: &strata_oci::Image,
    wanted: Option<&strata_oci::Platform>,
    s: &Settings,
) -> anyhow::Result<()> {
    let actual = image.config.platform();
    if actual.architecture.is_empty() {
        // A config that names no architecture (hand-made): nothing to check.
        return Ok(());
    }
    match wanted {
        Some(w) if !w.matches(&actual) => {
            return Err(crate::render::hinted(
                format!("image {name} is for {actual}, not the requested {w}"),
                "build, pull or import the image for that platform, or drop --platform",
            ))
        }
        None if !actual.runs_natively() && !s.quiet => eprintln!(
            "warning: the image's platform ({actual}) does not match this machine's ({}) and \
             no platform was requested",
            strata_oci::Platform::host()
        ),
        _ => {}
    }
    strata_build::check_emulation(&actual, &s.binfmt_dir)
        .with_context(|| format!("cannot run {name} ({actual}) on this machine"))
}

/// Starts the container's supervisor and, unless detached, follows it to
/// the end.
fn attach(record: &Record, dir: &ContainerDir, args: &RunArgs, s: &Settings) -> CmdResult {
    let (status_r, status_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .context("cannot create a pipe")?;
    let exe = std::env::current_exe().context("cannot find the strata executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root")
        .arg(&s.root)
        .arg("container-supervisor")
        .arg(&record.id)
        .arg("--status-fd")
        .arg("3");
    let attached = !args.detach;
    if attached {
        cmd.arg("--attach-output");
        if args.interactive {
            cmd.arg("--attach-stdin");
        } else {
            cmd.stdin(std::process::Stdio::null());
        }
    } else {
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    }
    if s.quiet {
        cmd.arg("--quiet");
    }
    let raw_fd = status_w.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe; it only moves the pipe's write end
    // to descriptor 3 (clearing close-on-exec there) for the supervisor.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let raw = if args.tty
        && args.interactive
        && attached
        && rustix::termios::isatty(rustix::stdio::stdin())
    {
        Some(strata_sandbox::pty::RawMode::enable(rustix::stdio::stdin())?)
    } else {
        None
    };
    let mut child = cmd
        .spawn()
        .context("cannot start the container's supervisor")?;
    drop(status_w);
    // The first process forks the supervisor and exits at once.
    let _ = child.wait();
    let reader = std::io::BufReader::new(std::fs::File::from(status_r));
    let mut started = false;
    let mut exit = None;
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match word {
            "pid" => {
                if let Ok(pid) = rest.trim().parse::<i32>() {
                    forward_signals_to(pid);
                }
            }
            "started" => {
                started = true;
                if args.detach {
                    break;
                }
            }
            "error" => {
                let v: serde_json::Value = serde_json::from_str(rest).unwrap_or_default();
                let code = v["code"].as_u64().unwrap_or(125).clamp(1, 255) as u8;
                let report = v["report"]
                    .as_str()
                    .unwrap_or("the container could not start");
                drop(raw);
                eprint!("{report}");
                return Ok(ExitCode::from(code));
            }
            "exit" => {
                exit = rest.trim().parse::<i32>().ok();
                break;
            }
            _ => {}
        }
    }
    forward_signals_to(0);
    drop(raw);
    if args.detach {
        if !started {
            bail!("the container's supervisor exited before the container started");
        }
        outln!("{}", record.id);
        return Ok(ExitCode::SUCCESS);
    }
    match exit {
        Some(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        None => {
            let state = dir.state().ok();
            match state.and_then(|s| s.exit_code) {
                Some(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
                None => Err(crate::render::hinted(
                    "the container's supervisor went away; the container's exit status is unknown",
                    format!(
                        "`strata ps -a` and `strata logs {}` show what is known",
                        &record.id[..12]
                    ),
                )),
            }
        }
    }
}

static FORWARD_PID: AtomicI32 = AtomicI32::new(0);
static WINCH_MASTER: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_forward(sig: libc::c_int) {
    super::signals::forward_or_resize(sig, &FORWARD_PID, &WINCH_MASTER, true);
}

/// From now on, termination signals and SIGWINCH that reach this process
/// go to `pid` (0: nowhere; they are then ignored while the handler is in
/// place).
pub(crate) fn forward_signals_to(pid: i32) {
    FORWARD_PID.store(pid, Ordering::SeqCst);
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGWINCH,
        ] {
            // SAFETY: installs a handler that only makes async-signal-safe calls.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_forward as *const () as usize;
                act.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut act.sa_mask);
                libc::sigaction(sig, &act, std::ptr::null_mut());
            }
        }
    });
}

/// SIGWINCH resizes `master` (a console this process relays) to this
/// process's terminal size, which it also gets now.
pub(crate) fn set_winch_console(master: &OwnedFd) {
    if let Ok(size) = strata_sandbox::pty::console_size(rustix::stdio::stdout())
        .or_else(|_| strata_sandbox::pty::console_size(rustix::stdio::stdin()))
    {
        let _ = strata_sandbox::pty::set_console_size(master.as_fd(), size);
    }
    WINCH_MASTER.store(master.as_raw_fd(), Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        let n = new_name(&a);
        assert!(valid_name(&n) && n.contains('_'), "{n}");
        for bad in ["", "-x", "a b", "a/b", "_x"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name("web.1_a-b"));
    }

    #[test]
    fn docker_exit_codes() {
        let exec = |kind: std::io::Error| {
            anyhow::Error::new(SandboxError::Exec {
                program: "x".into(),
                source: kind,
            })
            .context("cannot run the container")
        };
        assert_eq!(
            docker_code(&exec(std::io::Error::from_raw_os_error(libc::ENOENT))),
            127
        );
        assert_eq!(
            docker_code(&exec(std::io::Error::from_raw_os_error(libc::EACCES))),
            126
        );
        assert_eq!(docker_code(&anyhow::anyhow!("no such image")), 125);
    }
}
