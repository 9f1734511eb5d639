//! Running a command in a root filesystem: an OCI runtime backend (runc or
//! crun with a generated `config.json`) and a built-in namespace backend,
//! behind one [`Executor`] trait (DESIGN.md decision 4).
//!
//! The input is plain data, a [`RunSpec`]: the root filesystem (a directory,
//! or an overlay of layer snapshots with a fresh upper directory that
//! receives every change), the command, environment, working directory,
//! user, hostname, network mode, extra mounts and where output goes. Both
//! executors give the command Docker's default environment: new mount, pid,
//! ipc and uts namespaces (plus network for [`Network::None`]), a minimal
//! /dev, /proc with Docker's masked and read-only paths, read-only /sys,
//! generated /etc/hosts, /etc/hostname and /etc/resolv.conf, Docker's
//! default capability set, `no_new_privs` and docker's default seccomp
//! profile ([`Seccomp`]). The exit status is passed
//! through (128+N when signal N killed the command).
//!
//! [`Executor::run`] runs a command to its end (a build's RUN step);
//! [`Executor::start`] leaves a container running behind a [`Started`]
//! handle, with a terminal of its own allocated in the container's devpts
//! when asked ([`pty`]), and [`Executor::exec`] joins a running one. What
//! a per-container supervisor needs beside (state directory, log, port
//! forwarding) is in [`supervise`].
//!
//! ```
//! use strata_sandbox::{container_args, resolve_user_with, Isolation, RootFs, RunSpec, Capture, Stdio};
//!
//! // docker run semantics for ENTRYPOINT / CMD / arguments
//! let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
//! let args = container_args(&s(&["/docker-entrypoint.sh"]), &s(&["nginx"]), &s(&["sh"]), None);
//! assert_eq!(args, s(&["/docker-entrypoint.sh", "sh"]));
//!
//! // USER app:staff against the image's /etc/passwd and /etc/group
//! let user = resolve_user_with("app", Some("app:x:1000:1000::/home/app:/bin/sh\n"), Some("staff:x:50:app\n")).unwrap();
//! assert_eq!((user.user.uid, user.user.gid, user.user.additional_gids.clone()), (1000, 1000, vec![50]));
//!
//! // What a RUN step hands to an executor (running it needs root):
//! let capture = Capture::new();
//! let mut spec = RunSpec::new(
//!     RootFs::Overlay { lowerdirs: vec!["/snapshots/1".into()], upperdir: "/run/up".into(), workdir: "/run/work".into() },
//!     s(&["/bin/sh", "-c", "echo hi"]),
//! );
//! spec.user = user.user;
//! spec.stdio = Stdio::Capture(capture.clone());
//! # let _ = Isolation::Auto;
//! // let status = strata_sandbox::pick(Isolation::Auto, "/var/lib/strata/run").run(&spec)?;
//! // assert_eq!(capture.stdout(), "hi\n");
//! ```
#![deny(missing_docs)]

mod args;
mod builtin;
mod cli_rules;
mod defaults;
mod error;
mod etc;
mod fsutil;
pub mod fuse;
mod interrupt;
mod oci;
mod plan;
pub mod pty;
mod pump;
pub mod rootless;
mod seccomp;
mod spec;
mod started;
mod stubs;
pub mod supervise;
mod sys;
mod user;

use std::path::Path;

pub use args::container_args;
pub use builtin::BuiltinExecutor;
pub use cli_rules::{merge_env, parse_volume};
pub use defaults::{DEFAULT_CAPS, DEFAULT_CAP_MASK, MASKED_PATHS, READONLY_PATHS};
pub use error::{SandboxError, UserError};
pub use oci::OciExecutor;
pub use seccomp::{
    Action as SeccompAction, ArchMap, Arg as SeccompArg, Filter as SeccompFilter, LinuxSeccomp,
    LinuxSyscall, Op as SeccompOp, Seccomp, SeccompError, SeccompProfile, SyscallRule,
};
pub use spec::{
    Capture, ConsoleSize, ExitStatus, Isolation, Mount, MountKind, Network, RootFs, RunSpec, Stdio,
    StdioFds, Stream, User, DEFAULT_PATH_ENV,
};
pub use started::{ExecSpec, ExecTarget, Started};
pub use stubs::is_whiteout;
pub use user::{resolve_user, resolve_user_with, ResolvedUser};

/// Runs a [`RunSpec`]. Implementations: [`OciExecutor`], [`BuiltinExecutor`].
pub trait Executor: Send + Sync {
    /// Runs the command to completion and returns its exit status. Setup
    /// failures (a mount, the runtime itself) and a command that cannot be
    /// executed ([`SandboxError::Exec`], docker's exit codes 127/126) are
    /// errors; a command that runs and fails is an `Ok` non-zero status.
    /// Termination signals that reach the caller meanwhile (Ctrl-C) are
    /// forwarded to the command, a second one kills it; the container is
    /// always cleaned up before this returns.
    fn run(&self, spec: &RunSpec) -> Result<ExitStatus, SandboxError>;

    /// Starts the command and returns once it executed (a command that
    /// cannot be executed is a [`SandboxError::Exec`] here), leaving it
    /// running: the [`Started`] handle has its pid, its terminal
    /// ([`RunSpec::terminal`]) and waits for it. Signals are not forwarded:
    /// the caller decides. Output goes where [`RunSpec::stdio`] says;
    /// [`Stdio::Capture`] only with the built-in executor (give an OCI
    /// runtime descriptors, [`Stdio::Fds`]).
    fn start(&self, spec: &RunSpec) -> Result<Box<dyn Started>, SandboxError>;

    /// Starts another process in the running container `target` (`docker
    /// exec`), with the caller's stdin, stdout and stderr unless
    /// `spec.terminal`, when the handle's console is the new terminal's
    /// master side (or `None` when the runtime relays the caller's
    /// terminal itself, as runc and crun do).
    fn exec(&self, target: &ExecTarget, spec: &ExecSpec) -> Result<Box<dyn Started>, SandboxError>;

    /// `runc`, `crun` or `builtin`.
    fn name(&self) -> &str;
}

/// OCI runtimes in order of preference (crun starts faster than runc).
pub const RUNTIMES: &[&str] = &["crun", "runc"];

/// The executor that started the container `target` (for `exec`): the same
/// runtime binary with the same state, or the built-in executor (keeping
/// scratch files under `state_dir`).
pub fn executor_for(target: &ExecTarget, state_dir: impl AsRef<Path>) -> Box<dyn Executor> {
    let state_dir = target.runtime_root.as_deref().unwrap_or(state_dir.as_ref());
    match &target.runtime {
        Some(rt) => Box::new(OciExecutor::new(rt, state_dir)),
        None => Box::new(BuiltinExecutor::new(state_dir)),
    }
}

/// The executor for `isolation`: [`Isolation::Oci`] and [`Isolation::Auto`]
/// use crun or runc when one is on PATH ([`Isolation::Runc`] and
/// [`Isolation::Crun`] that one); `Auto` falls back to the built-in
/// sandbox, `Oci` fails with [`SandboxError::NoRuntime`]. Per-run scratch
/// directories (OCI bundles, generated /etc files) and the runtime's state
/// live under `state_dir`.
pub fn pick(
    isolation: Isolation,
    state_dir: impl AsRef<Path>,
) -> Result<Box<dyn Executor>, SandboxError> {
    let state_dir = state_dir.as_ref();
    match isolation {
        Isolation::Builtin => Ok(Box::new(BuiltinExecutor::new(state_dir))),
        Isolation::Oci => OciExecutor::find(RUNTIMES, state_dir)
            .map(|e| Box::new(e) as Box<dyn Executor>)
            .ok_or(SandboxError::NoRuntime),
        Isolation::Runc | Isolation::Crun => {
            let name = if isolation == Isolation::Runc {
                "runc"
            } else {
                "crun"
            };
            OciExecutor::find(&[name], state_dir)
                .map(|e| Box::new(e) as Box<dyn Executor>)
                .ok_or(SandboxError::NoRuntime)
        }
        // Rootless, runc and crun work (asked for by name or `Oci`), but
        // the built-in sandbox needs no other binary and starts a
        // container sooner (`run --rm busybox true`: 87 ms against crun's
        // 136 ms, fastest of 20, debug build).
        Isolation::Auto if rootless::current().is_some() => {
            Ok(Box::new(BuiltinExecutor::new(state_dir)))
        }
        Isolation::Auto => Ok(match OciExecutor::find(RUNTIMES, state_dir) {
            Some(e) => Box::new(e),
            None => Box::new(BuiltinExecutor::new(state_dir)),
        }),
    }
}

/// Makes sure nothing of the container `target` runs any more: for an OCI
/// runtime, `delete --force` of its container (which kills what is left, as
/// after a supervisor that died with its container running); the built-in
/// executor's containers die with the process that started them.
pub fn force_remove(target: &ExecTarget) {
    if let (Some(rt), Some(root)) = (&target.runtime, &target.runtime_root) {
        if target.id.is_empty() {
            return;
        }
        OciExecutor::new(rt, root).force_delete(&target.id);
    }
}

/// Checks what both executors rely on.
pub(crate) fn validate(spec: &RunSpec) -> Result<(), SandboxError> {
    let bad = |m: String| Err(SandboxError::InvalidSpec(m));
    if spec.args.is_empty() {
        return bad("no command to run".into());
    }
    if !spec.cwd.starts_with('/') {
        return bad(format!("working directory {:?} is not absolute", spec.cwd));
    }
    for m in &spec.mounts {
        if !m.target.starts_with('/') {
            return bad(format!("mount target {:?} is not absolute", m.target));
        }
        if m.target.split('/').any(|c| c == "..") {
            return bad(format!("mount target {:?} contains \"..\"", m.target));
        }
        if let MountKind::Bind { source, .. } = &m.kind {
            if !source.exists() {
                return bad(format!(
                    "bind mount source {} does not exist",
                    source.display()
                ));
            }
        }
    }
    if spec.hostname.len() > 64 || spec.hostname.contains(['/', '\0']) {
        return bad(format!("invalid hostname {:?}", spec.hostname));
    }
    for e in &spec.env {
        if !e.contains('=') {
            return bad(format!("environment entry {e:?} is not KEY=VALUE"));
        }
    }
    Ok(())
}

/// Every path the executors mount on inside the container.
pub(crate) fn mount_targets(spec: &RunSpec) -> Vec<&str> {
    let mut v: Vec<&str> = vec![
        "/proc",
        "/sys",
        "/dev",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
    ];
    v.extend(spec.mounts.iter().map(|m| m.target.as_str()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_bad_specs() {
        let ok = RunSpec::new(RootFs::Dir("/".into()), vec!["true".into()]);
        assert!(validate(&ok).is_ok());
        type Edit = Box<dyn Fn(&mut RunSpec)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("no command", Box::new(|s| s.args.clear())),
            ("not absolute", Box::new(|s| s.cwd = "rel".into())),
            (
                "mount target",
                Box::new(|s| s.mounts.push(Mount::tmpfs("x", None))),
            ),
            (
                "contains \"..\"",
                Box::new(|s| s.mounts.push(Mount::tmpfs("/a/../b", None))),
            ),
            (
                "does not exist",
                Box::new(|s| s.mounts.push(Mount::bind("/nonexistent/x", "/x", false))),
            ),
            ("KEY=VALUE", Box::new(|s| s.env.push("JUSTKEY".into()))),
        ];
        for (want, f) in cases {
            let mut s = ok.clone();
            f(&mut s);
            let e = validate(&s).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn pick_builtin_and_names() {
        let e = pick(Isolation::Builtin, "/tmp/x").unwrap();
        assert_eq!(e.name(), "builtin");
        if let Ok(e) = pick(Isolation::Oci, "/tmp/x") {
            assert!(RUNTIMES.contains(&e.name()));
        }
    }
}
