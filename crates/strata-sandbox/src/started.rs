//! Containers that outlive a call: [`crate::Executor::start`] returns a
//! [`Started`] handle (its pid, its console, signals, waiting), and
//! [`crate::Executor::exec`] runs another process in a running container
//! found again through an [`ExecTarget`], from any process.

use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use crate::error::SandboxError;
use crate::spec::{ConsoleSize, ExitStatus, User};

/// A started container.
pub trait Started: Send {
    /// The host pid of the container's first process.
    fn pid(&self) -> i32;

    /// The master side of the container's terminal ([`crate::RunSpec::terminal`]),
    /// once.
    fn take_console(&mut self) -> Option<OwnedFd>;

    /// Sends signal `sig` to the container's first process.
    fn signal(&self, sig: i32) -> std::io::Result<()>;

    /// How to reach the container later for [`crate::Executor::exec`].
    fn exec_target(&self) -> ExecTarget;

    /// Waits for the container to exit and cleans up after it (the
    /// runtime's state, mount-point stubs). With the OCI runtimes the
    /// container's process is reparented to the caller only when the caller
    /// is a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`); otherwise its
    /// exit is noticed but its status is unknown (255).
    fn wait(self: Box<Self>) -> Result<ExitStatus, SandboxError>;
}

/// Where a running container is, for [`crate::Executor::exec`]: plain data,
/// kept in the container's state by whoever started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecTarget {
    /// `runc`, `crun` or `builtin`.
    pub executor: String,
    /// The runtime binary (OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<std::path::PathBuf>,
    /// The runtime's `--root` (OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_root: Option<std::path::PathBuf>,
    /// The runtime's container id (OCI).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The host pid of the container's first process.
    pub pid: i32,
}

/// A process to run in a running container (`docker exec`). It keeps the
/// container's capabilities and namespaces.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// Command and arguments (`args[0]` looked up in `PATH` from `env`).
    pub args: Vec<String>,
    /// Environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory (absolute).
    pub cwd: String,
    /// Who runs it.
    pub user: User,
    /// A new pseudo-terminal in the container, relayed to the caller's
    /// terminal (which the caller puts in raw mode).
    pub terminal: bool,
    /// The terminal's size.
    pub console_size: Option<ConsoleSize>,
    /// The seccomp filter (the built-in executor installs it; an OCI
    /// runtime applies the container's own).
    pub seccomp: crate::Seccomp,
}
