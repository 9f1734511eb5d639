//! The OCI runtime backend: runc or crun with a generated config.json.
//!
//! Root filesystem: for an overlay, the runtime is started in a private
//! mount namespace of its own (`unshare(CLONE_NEWNS)` between fork and exec)
//! in which we mount the overlay on the bundle's `rootfs` directory; the
//! runtime then treats it as a plain directory. This works the same with
//! runc and crun (an overlay passed as an OCI mount on `/` is not accepted
//! by runc, and is treated differently by each runtime), and nothing is ever
//! mounted on the host: when the runtime and the container exit, the
//! namespace and the overlay mount disappear, even if strata was killed.
//!
//! Hosts with hybrid cgroups whose v2 hierarchy has controllers enabled
//! make crun refuse to start ("cgroups in hybrid mode not supported"); in
//! that same private namespace we bind /dev/null over
//! `/sys/fs/cgroup/unified/cgroup.controllers` for crun, so it uses the v1
//! controllers like runc does. Nothing changes outside that namespace.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::process::{Pid, WaitOptions};
use rustix::thread::UnshareFlags;
use serde_json::{json, Value};

use crate::defaults::{nofile_limit, DEFAULT_CAPS, MASKED_PATHS, READONLY_PATHS};
use crate::error::SandboxError;
use crate::etc::write_etc_files;
use crate::interrupt::{wait_pid, InterruptGuard};
use crate::plan::{cstring, mount_root, root_mount, RootMount};
use crate::pump::spawn_pump;
use crate::spec::{ExitStatus, MountKind, Network, RootFs, RunSpec, Stdio, Stream};
use crate::started::{ExecSpec, ExecTarget, Started};
use crate::stubs::StubCleaner;
use crate::sys::linux::Linux;
use crate::sys::{ensure, InRoot, Leaf, Loc, Syscalls};
use crate::Executor;

/// An OCI runtime (runc, crun, or any runtime with their command line).
#[derive(Debug, Clone)]
pub struct OciExecutor {
    runtime: PathBuf,
    name: String,
    state_dir: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl OciExecutor {
    /// Uses the runtime binary `runtime`; bundles and the runtime's state live
    /// under `state_dir`.
    pub fn new(runtime: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> OciExecutor {
        let runtime = runtime.into();
        let name = runtime
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runtime".into());
        OciExecutor {
            runtime,
            name,
            state_dir: state_dir.into(),
        }
    }

    /// The first of `names` found on PATH.
    pub fn find(names: &[&str], state_dir: impl Into<PathBuf>) -> Option<OciExecutor> {
        let state_dir = state_dir.into();
        names
            .iter()
            .find_map(|n| which(n))
            .map(|p| OciExecutor::new(p, state_dir))
    }

    fn runtime_root(&self) -> PathBuf {
        self.state_dir.join(&self.name)
    }

    fn is_crun(&self) -> bool {
        self.name.contains("crun")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.runtime);
        c.arg("--root").arg(self.runtime_root());
        if crate::rootless::in_user_namespace() {
            // Root of a user namespace owns no cgroup: no cgroups at all
            // (runc, root in a user namespace, uses its rootless cgroup
            // manager, which skips what it may not write).
            if self.is_crun() {
                c.arg("--cgroup-manager=disabled");
            } else {
                c.arg("--rootless").arg("true");
            }
        }
        c
    }

    /// `delete --force ID`, quietly.
    pub(crate) fn force_delete(&self, id: &str) {
        self.quiet(&["delete", "-f", id]);
    }

    fn quiet(&self, args: &[&str]) {
        let _ = self
            .command()
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A watchdog for one container: a shell that waits on a pipe this process
/// holds. The pipe closes when this process ends, however it ends; unless
/// told `done` first (the container is gone), the watchdog deletes the
/// container with `--force` (a kill), again while the runtime lives, in
/// case it was still creating it. So a strata killed with SIGKILL never leaves the
/// runtime's container and the step's processes running (issue 24).
struct Watchdog(Option<std::process::Child>);

impl Watchdog {
    fn new(exec: &OciExecutor, id: &str, runtime_pid: u32) -> Watchdog {
        // $3 is the runtime's pid: while it lives (and is not a zombie) it
        // may still be creating the container, so the delete is repeated
        // until it is gone (a minute at most).
        const SCRIPT: &str = r#"read x
[ "$x" = done ] && exit 0
i=0
while [ $i -lt 600 ] && [ -r "/proc/$3/status" ] && ! grep -q '^State:.Z' "/proc/$3/status"; do
  "$0" --root "$1" delete -f "$2" >/dev/null 2>&1
  sleep 0.1
  i=$((i+1))
done
"$0" --root "$1" delete -f "$2" >/dev/null 2>&1"#;
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg(&exec.runtime)
            .arg(exec.runtime_root())
            .arg(id)
            .arg(runtime_pid.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Out of the terminal's process group: a Ctrl-C is this
            // process's to handle, and the watchdog must outlive it.
            .process_group(0)
            .spawn()
            .ok();
        Watchdog(child)
    }

    /// The container is gone: the watchdog exits without acting.
    fn done(mut self) {
        if let Some(mut c) = self.0.take() {
            if let Some(mut w) = c.stdin.take() {
                let _ = std::io::Write::write_all(&mut w, b"done\n");
            }
            let _ = c.wait();
        }
    }
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn opts(list: &[&str]) -> Value {
    json!(list)
}

/// The runtime-spec config.json for `spec`, with `root_path` as the root
/// directory and the generated /etc files.
pub(crate) fn config_json(
    spec: &RunSpec,
    root_path: &Path,
    etc_files: &[(&'static str, PathBuf)],
) -> Result<Value, SandboxError> {
    let nofile = nofile_limit();
    let caps: Vec<&str> = DEFAULT_CAPS.iter().map(|(n, _)| *n).collect();
    // In a user namespace (rootless strata) sysfs can only be mounted in
    // a network namespace of its own: the host's is bound read-only
    // instead, as the built-in sandbox does; devpts takes only a group
    // the namespace maps.
    let userns = crate::rootless::in_user_namespace();
    let sys = if userns && spec.network != Network::None {
        json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": opts(&["rbind", "nosuid", "noexec", "nodev", "ro"])})
    } else {
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": opts(&["nosuid", "noexec", "nodev", "ro"])})
    };
    let mut pts = vec![
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ];
    if !userns || crate::rootless::gid_mapped(5) {
        pts.push("gid=5");
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": opts(&["nosuid", "noexec", "nodev"])}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": opts(&["nosuid", "strictatime", "mode=755", "size=65536k"])}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": opts(&pts)}),
        sys,
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": opts(&["nosuid", "noexec", "nodev"])}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": opts(&["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])}),
    ];
    for (target, file) in etc_files {
        mounts.push(json!({"destination": target, "type": "bind", "source": file, "options": opts(&["rbind", "rprivate"])}));
    }
    for m in &spec.mounts {
        mounts.push(match &m.kind {
            MountKind::Bind { source, readonly } => {
                let mut o = vec!["rbind", "rprivate"];
                if *readonly {
                    o.push("ro");
                }
                json!({"destination": m.target, "type": "bind", "source": source, "options": o})
            }
            MountKind::Tmpfs { size } => {
                let mut o = vec!["nosuid".to_string(), "nodev".to_string()];
                if let Some(s) = size {
                    o.push(format!("size={s}"));
                }
                json!({"destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": o})
            }
        });
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if spec.network == Network::None {
        namespaces.push(json!({"type": "network"}));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    });
    if let Some(seccomp) = spec.seccomp.for_run()? {
        linux["seccomp"] = serde_json::to_value(seccomp)
            .map_err(|e| SandboxError::io("cannot encode the seccomp profile", e.into()))?;
    }
    let mut process_extra = serde_json::Map::new();
    if let (true, Some(size)) = (spec.terminal, spec.console_size) {
        process_extra.insert(
            "consoleSize".into(),
            json!({"height": size.rows, "width": size.cols}),
        );
    }
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": spec.terminal,
            "user": {
                "uid": spec.user.uid,
                "gid": spec.user.gid,
                "additionalGids": spec.user.additional_gids,
            },
            "args": spec.args,
            "env": spec.env,
            "cwd": spec.cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "inheritable": [],
                "ambient": [],
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": nofile.0, "hard": nofile.1}],
            "noNewPrivileges": true,
        },
        "root": {"path": root_path, "readonly": spec.readonly_rootfs},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": linux,
    });
    if let Some(p) = config["process"].as_object_mut() {
        p.extend(process_extra);
    }
    Ok(config)
}

/// What the child does between fork and exec of the runtime (all prepared
/// here; the closure only makes system calls).
struct PreExec {
    root_mount: Option<RootMount>,
    hide_cgroup_controllers: bool,
    root: CString,
    cwd: InRoot,
}

impl PreExec {
    fn run(&self) -> std::io::Result<()> {
        let mut sys = Linux;
        sys.unshare(UnshareFlags::NEWNS)?;
        sys.make_rprivate(c"/")?;
        if self.hide_cgroup_controllers {
            sys.bind(
                Loc::Path(c"/dev/null"),
                Loc::Path(c"/sys/fs/cgroup/unified/cgroup.controllers"),
                false,
            )?;
        }
        if let Some(rm) = &self.root_mount {
            mount_root(&mut sys, rm)?;
        }
        // docker creates a missing working directory
        let root = sys.open_dir(&self.root)?;
        ensure(&mut sys, &root, &self.cwd, Leaf::Dir)?;
        Ok(())
    }
}

fn hybrid_cgroup_controllers() -> bool {
    std::fs::read("/sys/fs/cgroup/unified/cgroup.controllers")
        .is_ok_and(|b| !b.trim_ascii().is_empty())
}

/// The runtime's own error (from its JSON log), if it logged one.
fn runtime_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("level").and_then(Value::as_str) == Some("error"))
        .filter_map(|v| v.get("msg").and_then(Value::as_str).map(str::to_string))
        .next()
}

/// Maps a runtime's exec failure message to an errno, as docker does.
fn exec_errno(msg: &str) -> Option<i32> {
    let m = msg.to_ascii_lowercase();
    if m.contains("not found in $path")
        || (m.contains("exec") && m.contains("no such file or directory"))
    {
        Some(libc::ENOENT)
    } else if m.contains("exec") && m.contains("permission denied") {
        Some(libc::EACCES)
    } else {
        None
    }
}

/// A bundle ready for the runtime: config.json written, the root mount
/// and the private-namespace setup prepared.
struct Bundle {
    /// The fuse-overlayfs root, mounted in the bundle (so dropped, and
    /// unmounted, before it).
    fuse: Option<crate::fuse::FuseMount>,
    dir: tempfile::TempDir,
    id: String,
    log: PathBuf,
    pre: Option<PreExec>,
    stubs: StubCleaner,
    rootfs: RootFs,
}

impl Bundle {
    /// After the container is gone: the fuse-overlayfs root unmounted
    /// (every write then in the upper directory), mount-point stubs
    /// removed, overlay's volatile marker cleared.
    fn after_run(&self) {
        if let Some(f) = &self.fuse {
            let _ = f.unmount();
        }
        self.stubs.after_run();
        crate::plan::overlay_after_run(&self.rootfs);
    }
}

impl OciExecutor {
    fn bundle(&self, spec: &RunSpec) -> Result<Bundle, SandboxError> {
        crate::validate(spec)?;
        crate::plan::overlay_before_run(&spec.rootfs)?;
        let root_dir = self.runtime_root();
        std::fs::create_dir_all(&root_dir).map_err(|e| SandboxError::prepare(&root_dir, e))?;
        let bundle = tempfile::Builder::new()
            .prefix("oci-")
            .tempdir_in(&self.state_dir)
            .map_err(|e| SandboxError::prepare(&self.state_dir, e))?;
        let suffix = bundle
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().trim_start_matches("oci-").to_string())
            .unwrap_or_default();
        let id = format!(
            "strata-{}-{}-{suffix}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let etc = write_etc_files(bundle.path(), spec)?;
        let fuse = match &spec.rootfs {
            RootFs::FuseOverlay { .. } => {
                let empty = bundle.path().join("empty");
                std::fs::create_dir(&empty).map_err(|e| SandboxError::prepare(&empty, e))?;
                crate::fuse::mount_for(&spec.rootfs, bundle.path(), &empty)?
            }
            _ => None,
        };
        let (root_path, root_mount) = match (&spec.rootfs, &fuse) {
            (_, Some(f)) => (f.target().to_owned(), None),
            (RootFs::Dir(d), None) => (d.clone(), None),
            (RootFs::Overlay { .. } | RootFs::FuseOverlay { .. }, None) => {
                let mnt = bundle.path().join("rootfs");
                let empty = bundle.path().join("empty");
                for d in [&mnt, &empty] {
                    std::fs::create_dir(d).map_err(|e| SandboxError::prepare(d, e))?;
                }
                let rm = root_mount(&spec.rootfs, &mnt, &empty)?;
                (mnt, Some(rm))
            }
        };
        let config = config_json(spec, &root_path, &etc.files)?;
        let config_path = bundle.path().join("config.json");
        std::fs::write(&config_path, config.to_string())
            .map_err(|e| SandboxError::prepare(&config_path, e))?;
        let stubs = StubCleaner::before_run(&spec.rootfs, &crate::mount_targets(spec));
        let pre = PreExec {
            root_mount,
            hide_cgroup_controllers: self.is_crun() && hybrid_cgroup_controllers(),
            root: cstring(root_path.as_os_str().as_bytes(), "rootfs path")?,
            cwd: InRoot::new(&spec.cwd).map_err(SandboxError::InvalidSpec)?,
        };
        let log = bundle.path().join("runtime.log");
        Ok(Bundle {
            dir: bundle,
            id,
            log,
            pre: Some(pre),
            stubs,
            rootfs: spec.rootfs.clone(),
            fuse,
        })
    }

    /// The runtime command with logging into `log`.
    fn logged(&self, log: &Path) -> Command {
        let mut cmd = self.command();
        if self.is_crun() {
            cmd.arg(format!("--log=file:{}", log.display()))
                .arg("--log-format=json");
        } else {
            cmd.arg("--log").arg(log).arg("--log-format").arg("json");
        }
        cmd
    }

    /// The error a failed runtime invocation logged, as a sandbox error.
    fn failure(&self, log: &Path, program: &str) -> Option<SandboxError> {
        let msg = runtime_error(log)?;
        if let Some(errno) = exec_errno(&msg) {
            return Some(SandboxError::Exec {
                program: program.to_owned(),
                source: std::io::Error::from_raw_os_error(errno),
            });
        }
        Some(SandboxError::Runtime {
            runtime: self.name.clone(),
            message: msg,
        })
    }
}

fn set_stdio(cmd: &mut Command, stdio: &Stdio) -> Result<(), SandboxError> {
    match stdio {
        Stdio::Inherit => {}
        Stdio::Null => {
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        }
        Stdio::Capture(_) => {
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
        }
        Stdio::Fds(f) => {
            let dup = |fd: &std::sync::Arc<std::os::fd::OwnedFd>| {
                fd.try_clone()
                    .map(std::process::Stdio::from)
                    .map_err(|e| SandboxError::io("cannot duplicate a descriptor", e))
            };
            cmd.stdin(dup(&f.stdin)?)
                .stdout(dup(&f.stdout)?)
                .stderr(dup(&f.stderr)?);
        }
    }
    Ok(())
}

impl Executor for OciExecutor {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, spec: &RunSpec) -> Result<ExitStatus, SandboxError> {
        if spec.terminal {
            return Err(SandboxError::InvalidSpec(
                "a terminal needs a started container (Executor::start)".into(),
            ));
        }
        let mut b = self.bundle(spec)?;
        let root_dir = self.runtime_root();
        let id = b.id.clone();
        let mut cmd = self.logged(&b.log);
        cmd.arg("run").arg("--bundle").arg(b.dir.path()).arg(&id);
        set_stdio(&mut cmd, &spec.stdio)?;
        if let Some(pre) = b.pre.take() {
            // SAFETY: PreExec::run only makes system calls on data prepared above.
            unsafe {
                cmd.pre_exec(move || pre.run());
            }
        }
        let mut guard = InterruptGuard::install();
        let mut child = cmd.spawn().map_err(|e| SandboxError::Spawn {
            program: format!(
                "{} (in a private mount namespace with the root filesystem mounted)",
                self.runtime.display()
            ),
            source: e,
        })?;
        let watchdog = Watchdog::new(self, &id, child.id());
        let mut pumps = Vec::new();
        if let Stdio::Capture(c) = &spec.stdio {
            if let Some(out) = child.stdout.take() {
                pumps.push(spawn_pump(out, Stream::Stdout, c.clone()));
            }
            if let Some(err) = child.stderr.take() {
                pumps.push(spawn_pump(err, Stream::Stderr, c.clone()));
            }
        }
        let pid = Pid::from_child(&child);
        let waited = wait_pid(pid, &mut guard, |sig, nth| {
            let sig = if nth > 1 { libc::SIGKILL } else { sig };
            self.quiet(&["kill", &id, &sig.to_string()]);
        });
        let interrupted = guard.received > 0;
        drop(guard);
        for p in pumps {
            let _ = p.join();
        }
        // `run` deletes the container when it ends normally; after a failure
        // or an interruption the state may remain.
        if interrupted || waited.is_err() || root_dir.join(&id).exists() {
            self.quiet(&["delete", "-f", &id]);
        }
        watchdog.done();
        b.after_run();
        let status = ExitStatus::from_wait_status(
            waited.map_err(|e| SandboxError::io(format!("cannot wait for {}", self.name), e))?,
        );
        if !status.success() {
            if let Some(e) = self.failure(&b.log, spec.args.first().map_or("", String::as_str)) {
                return Err(e);
            }
        }
        Ok(status)
    }

    fn start(&self, spec: &RunSpec) -> Result<Box<dyn Started>, SandboxError> {
        let mut b = self.bundle(spec)?;
        let id = b.id.clone();
        let pid_file = b.dir.path().join("container.pid");
        // `create` then `start`, as conmon drives a runtime: the container's
        // process waits in `create` until `start`, so it only runs once
        // `create` has exited and the process was reparented to the caller
        // (a subreaper), which then gets its exit status; with `run
        // --detach` a quick command could exit, and be reaped, while still
        // the runtime's child.
        let mut cmd = self.logged(&b.log);
        cmd.arg("create")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--bundle")
            .arg(b.dir.path());
        // The runtime connects to this socket and sends the terminal's
        // master side (its `--console-socket`).
        let listener = if spec.terminal {
            let sock = b.dir.path().join("console.sock");
            let l = std::os::unix::net::UnixListener::bind(&sock)
                .map_err(|e| SandboxError::prepare(&sock, e))?;
            cmd.arg("--console-socket").arg(&sock);
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            Some(l)
        } else {
            if matches!(spec.stdio, Stdio::Capture(_)) {
                return Err(SandboxError::InvalidSpec(
                    "a started container cannot capture output; give it descriptors".into(),
                ));
            }
            set_stdio(&mut cmd, &spec.stdio)?;
            None
        };
        cmd.arg(&id);
        if let Some(pre) = b.pre.take() {
            // SAFETY: PreExec::run only makes system calls on data prepared above.
            unsafe {
                cmd.pre_exec(move || pre.run());
            }
        }
        let cleanup = |b: &Bundle| {
            self.quiet(&["delete", "-f", &b.id]);
            b.after_run();
        };
        let status = cmd.status().map_err(|e| SandboxError::Spawn {
            program: format!(
                "{} (in a private mount namespace with the root filesystem mounted)",
                self.runtime.display()
            ),
            source: e,
        });
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                cleanup(&b);
                return Err(e);
            }
        };
        let program = spec.args.first().map_or("", String::as_str);
        let status = if status.success() {
            self.logged(&b.log)
                .arg("start")
                .arg(&id)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .map_err(|e| SandboxError::Spawn {
                    program: self.runtime.display().to_string(),
                    source: e,
                })
        } else {
            Ok(status)
        };
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => {
                let e = self
                    .failure(&b.log, program)
                    .unwrap_or(SandboxError::Runtime {
                        runtime: self.name.clone(),
                        message: format!("exited with {status}"),
                    });
                cleanup(&b);
                return Err(e);
            }
            Err(e) => {
                cleanup(&b);
                return Err(e);
            }
        }
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|p| *p > 0);
        let Some(pid) = pid else {
            cleanup(&b);
            return Err(SandboxError::Runtime {
                runtime: self.name.clone(),
                message: "wrote no pid file".into(),
            });
        };
        let console = match listener {
            Some(l) => {
                let received =
                    l.set_nonblocking(true)
                        .and_then(|()| l.accept())
                        .and_then(|(conn, _)| {
                            conn.set_nonblocking(false)?;
                            crate::pty::recv_fd(conn.as_fd())
                        });
                match received {
                    Ok(Some(fd)) => Some(fd),
                    Ok(None) | Err(_) => {
                        let _ = rustix::process::kill_process(
                            Pid::from_raw(pid).unwrap_or(Pid::INIT),
                            rustix::process::Signal::KILL,
                        );
                        cleanup(&b);
                        return Err(SandboxError::Runtime {
                            runtime: self.name.clone(),
                            message: "sent no terminal on the console socket".into(),
                        });
                    }
                }
            }
            None => None,
        };
        Ok(Box::new(OciStarted {
            exec: self.clone(),
            id,
            pid,
            console,
            bundle: b,
        }))
    }

    fn exec(&self, target: &ExecTarget, spec: &ExecSpec) -> Result<Box<dyn Started>, SandboxError> {
        let log_dir = tempfile::Builder::new()
            .prefix("exec-")
            .tempdir_in(&self.state_dir)
            .map_err(|e| SandboxError::prepare(&self.state_dir, e))?;
        let log = log_dir.path().join("runtime.log");
        let mut cmd = self.logged(&log);
        cmd.arg("exec");
        if spec.terminal {
            cmd.arg("--tty");
        }
        cmd.arg("--cwd").arg(&spec.cwd);
        cmd.arg("--user")
            .arg(format!("{}:{}", spec.user.uid, spec.user.gid));
        if !spec.user.additional_gids.is_empty() && !self.is_crun() {
            for g in &spec.user.additional_gids {
                cmd.arg("--additional-gids").arg(g.to_string());
            }
        }
        for e in &spec.env {
            cmd.arg("--env").arg(e);
        }
        cmd.arg(&target.id).args(&spec.args);
        let child = cmd.spawn().map_err(|e| SandboxError::Spawn {
            program: self.runtime.display().to_string(),
            source: e,
        })?;
        Ok(Box::new(OciExec {
            exec: self.clone(),
            child,
            log,
            _dir: log_dir,
            program: spec.args.first().cloned().unwrap_or_default(),
            target: target.clone(),
        }))
    }
}

/// A container started detached by an OCI runtime.
struct OciStarted {
    exec: OciExecutor,
    id: String,
    pid: i32,
    console: Option<std::os::fd::OwnedFd>,
    bundle: Bundle,
}

impl Started for OciStarted {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn take_console(&mut self) -> Option<std::os::fd::OwnedFd> {
        self.console.take()
    }

    fn signal(&self, sig: i32) -> std::io::Result<()> {
        let pid = Pid::from_raw(self.pid)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let sig = rustix::process::Signal::from_named_raw(sig)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        rustix::process::kill_process(pid, sig).map_err(Into::into)
    }

    fn exec_target(&self) -> ExecTarget {
        ExecTarget {
            executor: self.exec.name.clone(),
            runtime: Some(self.exec.runtime.clone()),
            runtime_root: Some(self.exec.state_dir.clone()),
            id: self.id.clone(),
            pid: self.pid,
        }
    }

    fn wait(self: Box<Self>) -> Result<ExitStatus, SandboxError> {
        let status = match Pid::from_raw(self.pid) {
            Some(pid) => wait_any(pid),
            None => ExitStatus(255),
        };
        self.exec.quiet(&["delete", "-f", &self.id]);
        self.bundle.after_run();
        Ok(status)
    }
}

/// Waits for `pid`: as its parent (a child subreaper inherits a detached
/// container) with its status, else until it is gone (status unknown: 255).
/// A subreaper also inherits what the runtime left behind, and reaps it
/// here: a zombie left in the container's pid namespace would keep the
/// namespace's pid 1 from ever finishing its exit.
fn wait_any(pid: Pid) -> ExitStatus {
    let all = WaitOptions::from_bits_retain(libc::__WALL as u32);
    let subreaper = rustix::process::child_subreaper().is_ok_and(|p| p.is_some());
    loop {
        let r = if subreaper {
            rustix::process::wait(all)
        } else {
            rustix::process::waitpid(Some(pid), all)
        };
        match r {
            Ok(Some((p, status))) if p == pid => {
                return ExitStatus::from_wait_status(status.as_raw())
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    if let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        loop {
            let mut fds = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut fds, None) {
                Err(rustix::io::Errno::INTR) => {}
                _ => break,
            }
        }
    }
    ExitStatus(255)
}

/// A process started by `runtime exec`.
struct OciExec {
    exec: OciExecutor,
    child: std::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    program: String,
    target: ExecTarget,
}

impl Started for OciExec {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn take_console(&mut self) -> Option<std::os::fd::OwnedFd> {
        None
    }

    fn signal(&self, sig: i32) -> std::io::Result<()> {
        // The runtime forwards what it receives to the process.
        let pid = Pid::from_child(&self.child);
        let sig = rustix::process::Signal::from_named_raw(sig)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        rustix::process::kill_process(pid, sig).map_err(Into::into)
    }

    fn exec_target(&self) -> ExecTarget {
        self.target.clone()
    }

    fn wait(mut self: Box<Self>) -> Result<ExitStatus, SandboxError> {
        let status = self
            .child
            .wait()
            .map_err(|e| SandboxError::io(format!("cannot wait for {}", self.exec.name), e))?;
        use std::os::unix::process::ExitStatusExt;
        let status = ExitStatus::from_wait_status(status.into_raw());
        if !status.success() {
            if let Some(e) = self.exec.failure(&self.log, &self.program) {
                return Err(e);
            }
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Mount, User};

    #[test]
    fn config_has_docker_defaults() {
        let mut s = RunSpec::new(RootFs::Dir("/r".into()), vec!["id".into()]);
        s.user = User {
            uid: 1000,
            gid: 100,
            additional_gids: vec![5],
        };
        s.network = Network::None;
        s.mounts = vec![
            Mount::bind("/host/cache", "/cache", false),
            Mount::bind("/host/s", "/run/secrets/x", true),
            Mount::tmpfs("/t", Some(1024)),
        ];
        let c = config_json(
            &s,
            Path::new("/b/rootfs"),
            &[("/etc/hosts", "/b/hosts".into())],
        )
        .unwrap();
        let caps = c["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(caps.len(), 14);
        assert!(caps.contains(&json!("CAP_NET_BIND_SERVICE")));
        assert_eq!(c["process"]["capabilities"]["inheritable"], json!([]));
        assert_eq!(c["process"]["noNewPrivileges"], json!(true));
        assert_eq!(
            c["process"]["user"],
            json!({"uid": 1000, "gid": 100, "additionalGids": [5]})
        );
        let ns: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network"]);
        assert!(c["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&json!("/proc/kcore")));
        assert!(c["linux"]["readonlyPaths"]
            .as_array()
            .unwrap()
            .contains(&json!("/proc/sys")));
        let mounts = c["mounts"].as_array().unwrap();
        let find = |d: &str| {
            mounts
                .iter()
                .find(|m| m["destination"] == json!(d))
                .unwrap()
                .clone()
        };
        assert_eq!(
            find("/sys")["options"],
            json!(["nosuid", "noexec", "nodev", "ro"])
        );
        assert_eq!(find("/etc/hosts")["source"], json!("/b/hosts"));
        assert_eq!(
            find("/run/secrets/x")["options"],
            json!(["rbind", "rprivate", "ro"])
        );
        assert_eq!(find("/cache")["options"], json!(["rbind", "rprivate"]));
        assert_eq!(
            find("/t")["options"],
            json!(["nosuid", "nodev", "size=1024"])
        );
        s.network = Network::Host;
        let c = config_json(&s, Path::new("/b/rootfs"), &[]).unwrap();
        assert_eq!(c["linux"]["namespaces"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn config_validates_against_runtime_spec_schema_fields() {
        // Every top-level key is one the runtime spec defines.
        let s = RunSpec::new(RootFs::Dir("/r".into()), vec!["true".into()]);
        let c = config_json(&s, Path::new("/r"), &[]).unwrap();
        for k in c.as_object().unwrap().keys() {
            assert!(
                [
                    "ociVersion",
                    "process",
                    "root",
                    "hostname",
                    "mounts",
                    "linux"
                ]
                .contains(&k.as_str()),
                "{k}"
            );
        }
    }

    #[test]
    fn config_carries_dockers_seccomp_profile_unless_unconfined() {
        let mut s = RunSpec::new(RootFs::Dir("/r".into()), vec!["true".into()]);
        let c = config_json(&s, Path::new("/r"), &[]).unwrap();
        let sc = &c["linux"]["seccomp"];
        assert_eq!(sc["defaultAction"], json!("SCMP_ACT_ERRNO"));
        assert_eq!(sc["defaultErrnoRet"], json!(1));
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                sc["architectures"],
                json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
            );
        }
        let rules = sc["syscalls"].as_array().unwrap();
        let rule = |name: &str| {
            rules
                .iter()
                .filter(|r| r["names"].as_array().unwrap().contains(&json!(name)))
                .cloned()
                .collect::<Vec<_>>()
        };
        // resolved for docker's default capabilities: no CAP_SYS_ADMIN rules
        assert!(rule("mount").is_empty() && rule("unshare").is_empty());
        assert!(rule("keyctl").is_empty() && rule("add_key").is_empty());
        assert_eq!(
            rule("clone3"),
            vec![json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38})]
        );
        assert_eq!(
            rule("clone")[0]["args"],
            json!([{"index": 0, "value": 2114060288u64, "op": "SCMP_CMP_MASKED_EQ"}])
        );
        assert_eq!(
            rule("chroot").len(),
            1,
            "CAP_SYS_CHROOT is a default capability"
        );
        assert_eq!(rule("personality").len(), 5);
        assert_eq!(rule("read")[0]["action"], json!("SCMP_ACT_ALLOW"));
        // no docker-only keys reach the runtime
        for r in rules {
            for k in r.as_object().unwrap().keys() {
                assert!(
                    ["names", "action", "errnoRet", "args"].contains(&k.as_str()),
                    "{k}"
                );
            }
        }
        s.seccomp = crate::Seccomp::Unconfined;
        let c = config_json(&s, Path::new("/r"), &[]).unwrap();
        assert!(c["linux"].get("seccomp").is_none());
    }

    #[test]
    fn runtime_messages_map_to_exec_errors() {
        assert_eq!(
            exec_errno(
                r#"runc run failed: unable to start container process: exec: "nonexist": executable file not found in $PATH"#
            ),
            Some(libc::ENOENT)
        );
        assert_eq!(
            exec_errno("executable file `nonexist` not found in $PATH: No such file or directory"),
            Some(libc::ENOENT)
        );
        assert_eq!(
            exec_errno(r#"exec: "/x": permission denied"#),
            Some(libc::EACCES)
        );
        assert_eq!(exec_errno("cgroups in hybrid mode not supported"), None);
    }
}
