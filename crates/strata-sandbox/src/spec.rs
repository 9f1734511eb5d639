//! What to run: plain data shared by both executors.

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::seccomp::Seccomp;

/// Everything an executor needs to run one command. Plain data: the builder
/// (a RUN step) and `strata run` fill it in, an [`crate::Executor`] runs it.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The root filesystem.
    pub rootfs: RootFs,
    /// The command and its arguments; `args[0]` is looked up in the
    /// container's `PATH` (from `env`) when it has no slash.
    pub args: Vec<String>,
    /// The environment, `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Working directory inside the container (absolute; created when missing, as docker does).
    pub cwd: String,
    /// Who runs the command; see [`crate::resolve_user`].
    pub user: User,
    /// The container's hostname (its own UTS namespace).
    pub hostname: String,
    /// Network mode.
    pub network: Network,
    /// Extra mounts, applied in order after the standard ones.
    pub mounts: Vec<Mount>,
    /// Where the command's input and output go.
    pub stdio: Stdio,
    /// Mount the root filesystem read-only.
    pub readonly_rootfs: bool,
    /// Give the command a pseudo-terminal of its own, allocated in the
    /// container's /dev/pts and made its controlling terminal (stdin,
    /// stdout and stderr). Only [`crate::Executor::start`] honours it: the
    /// master side is [`crate::Started::take_console`].
    pub terminal: bool,
    /// The terminal's initial size, with [`RunSpec::terminal`].
    pub console_size: Option<ConsoleSize>,
    /// The seccomp filter: docker's default profile unless told otherwise.
    pub seccomp: Seccomp,
}

impl RunSpec {
    /// A spec with docker's defaults: root user, `/` as working directory,
    /// a default `PATH`, host network, hostname `strata`, output inherited,
    /// docker's default seccomp profile.
    pub fn new(rootfs: RootFs, args: Vec<String>) -> RunSpec {
        RunSpec {
            rootfs,
            args,
            env: vec![DEFAULT_PATH_ENV.to_string()],
            cwd: "/".to_string(),
            user: User::root(),
            hostname: "strata".to_string(),
            network: Network::Host,
            mounts: Vec::new(),
            stdio: Stdio::Inherit,
            readonly_rootfs: false,
            terminal: false,
            console_size: None,
            seccomp: Seccomp::Default,
        }
    }

    /// The value of `PATH` in [`RunSpec::env`], or docker's default.
    pub fn path_env(&self) -> &str {
        self.env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(&DEFAULT_PATH_ENV[5..])
    }
}

/// Docker's default `PATH` for Linux containers.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSize {
    /// Lines.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// The root filesystem of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootFs {
    /// A prepared directory, bind-mounted as `/` (writes go to it).
    Dir(PathBuf),
    /// An overlay the executor mounts in its own mount namespace (nothing
    /// is mounted on the host, nothing to clean up after a crash).
    Overlay {
        /// Read-only layers, top first (snapshot directories).
        lowerdirs: Vec<PathBuf>,
        /// The writable directory that receives every change (overlay
        /// whiteouts for deletions): the new layer.
        upperdir: PathBuf,
        /// overlayfs' work directory, empty, on the same filesystem as `upperdir`.
        workdir: PathBuf,
    },
    /// The same overlay served by `fuse-overlayfs` (rootless, where the
    /// kernel's overlayfs cannot be mounted in the user namespace): the
    /// executor mounts it on its side before the run and unmounts it after.
    FuseOverlay {
        /// Read-only layers, top first.
        lowerdirs: Vec<PathBuf>,
        /// The writable directory that receives every change.
        upperdir: PathBuf,
        /// fuse-overlayfs' work directory, on the same filesystem as `upperdir`.
        workdir: PathBuf,
    },
}

/// User and groups of the command (numeric, already resolved).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
}

impl User {
    /// uid 0, gid 0, no supplementary groups.
    pub fn root() -> User {
        User::default()
    }
}

/// Network mode of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Network {
    /// Share the host's network namespace (the default, so package managers work).
    #[default]
    Host,
    /// A fresh network namespace with only a loopback interface.
    None,
}

impl std::str::FromStr for Network {
    type Err = String;

    /// `host` or `none`, as docker's `--network` takes them.
    fn from_str(s: &str) -> Result<Network, String> {
        match s {
            "host" => Ok(Network::Host),
            "none" => Ok(Network::None),
            other => Err(format!(
                "unsupported network {other:?} (strata supports host and none)"
            )),
        }
    }
}

/// One extra mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// What to mount.
    pub kind: MountKind,
    /// Absolute path inside the container; created when missing (and removed
    /// again afterwards when it was created only to be a mount point).
    pub target: String,
}

/// The kinds of [`Mount`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// Bind a host file or directory (recursively).
    Bind {
        /// Host path.
        source: PathBuf,
        /// Refuse writes.
        readonly: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Size limit in bytes (`None`: the kernel default, half of RAM).
        size: Option<u64>,
    },
}

impl Mount {
    /// A bind mount of `source` at `target`.
    pub fn bind(source: impl Into<PathBuf>, target: impl Into<String>, readonly: bool) -> Mount {
        Mount {
            kind: MountKind::Bind {
                source: source.into(),
                readonly,
            },
            target: target.into(),
        }
    }

    /// A tmpfs at `target`.
    pub fn tmpfs(target: impl Into<String>, size: Option<u64>) -> Mount {
        Mount {
            kind: MountKind::Tmpfs { size },
            target: target.into(),
        }
    }
}

/// Where the command's stdin/stdout/stderr go.
#[derive(Debug, Clone, Default)]
pub enum Stdio {
    /// The caller's stdin, stdout and stderr.
    #[default]
    Inherit,
    /// stdin from /dev/null, output discarded.
    Null,
    /// stdin from /dev/null; output lines go to a [`Capture`].
    Capture(Capture),
    /// These descriptors become the command's stdin, stdout and stderr.
    Fds(StdioFds),
}

/// The descriptors of [`Stdio::Fds`] (shared, so the spec stays cheap to clone).
#[derive(Debug, Clone)]
pub struct StdioFds {
    /// Standard input.
    pub stdin: Arc<OwnedFd>,
    /// Standard output.
    pub stdout: Arc<OwnedFd>,
    /// Standard error.
    pub stderr: Arc<OwnedFd>,
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

type LineCallback = dyn Fn(Stream, &str) + Send + Sync;

/// Collects the output of a run line by line: keeps the last lines (bounded,
/// for "the last lines of a failing step") and hands every line to an
/// optional callback as it arrives (for progress). Cheap to clone: clones
/// share the same buffer.
#[derive(Clone)]
pub struct Capture {
    inner: Arc<CaptureInner>,
}

struct CaptureInner {
    keep: usize,
    lines: Mutex<VecDeque<(Stream, String)>>,
    callback: Option<Box<LineCallback>>,
}

impl Default for Capture {
    fn default() -> Self {
        Capture::new()
    }
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("keep", &self.inner.keep)
            .field("callback", &self.inner.callback.is_some())
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Keeps the last 1000 lines.
    pub fn new() -> Capture {
        Capture::keeping(1000)
    }

    /// Keeps the last `keep` lines.
    pub fn keeping(keep: usize) -> Capture {
        Capture {
            inner: Arc::new(CaptureInner {
                keep,
                lines: Mutex::new(VecDeque::new()),
                callback: None,
            }),
        }
    }

    /// Keeps the last `keep` lines and also calls `f` for every line as it arrives
    /// (without its newline; invalid UTF-8 replaced).
    pub fn with_callback(keep: usize, f: impl Fn(Stream, &str) + Send + Sync + 'static) -> Capture {
        Capture {
            inner: Arc::new(CaptureInner {
                keep,
                lines: Mutex::new(VecDeque::new()),
                callback: Some(Box::new(f)),
            }),
        }
    }

    pub(crate) fn push(&self, stream: Stream, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(cb) = &self.inner.callback {
            cb(stream, line);
        }
        if self.inner.keep == 0 {
            return;
        }
        let mut lines = self
            .inner
            .lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if lines.len() == self.inner.keep {
            lines.pop_front();
        }
        lines.push_back((stream, line.to_string()));
    }

    /// The kept lines of both streams, in arrival order.
    pub fn lines(&self) -> Vec<(Stream, String)> {
        self.inner
            .lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The last `n` kept lines of both streams.
    pub fn tail(&self, n: usize) -> Vec<(Stream, String)> {
        let lines = self.lines();
        let skip = lines.len().saturating_sub(n);
        lines.into_iter().skip(skip).collect()
    }

    /// The kept lines of one stream joined with newlines (each line ends with `\n`).
    pub fn text(&self, stream: Stream) -> String {
        let mut out = String::new();
        for (s, line) in self.lines() {
            if s == stream {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }

    /// [`Capture::text`] of stdout.
    pub fn stdout(&self) -> String {
        self.text(Stream::Stdout)
    }

    /// [`Capture::text`] of stderr.
    pub fn stderr(&self) -> String {
        self.text(Stream::Stderr)
    }
}

/// How a command ended: its exit code, or 128+N when signal N killed it
/// (as docker and shells report it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus(pub i32);

impl ExitStatus {
    /// The code (0-255).
    pub fn code(self) -> i32 {
        self.0
    }

    /// Exit code 0.
    pub fn success(self) -> bool {
        self.0 == 0
    }

    /// The signal that killed the command, when the code is 129..=192.
    pub fn signal(self) -> Option<i32> {
        (129..=192).contains(&self.0).then_some(self.0 - 128)
    }

    pub(crate) fn from_wait_status(status: i32) -> ExitStatus {
        if libc::WIFEXITED(status) {
            ExitStatus(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            ExitStatus(128 + libc::WTERMSIG(status))
        } else {
            ExitStatus(255)
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.signal() {
            Some(sig) => write!(f, "exit code {} (signal {sig})", self.0),
            None => write!(f, "exit code {}", self.0),
        }
    }
}

/// Which executor to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// The OCI runtime when one is installed, else the built-in sandbox.
    #[default]
    Auto,
    /// runc or crun (crun preferred when both are installed: it starts faster).
    Oci,
    /// The built-in namespace sandbox.
    Builtin,
    /// runc, and only runc.
    Runc,
    /// crun, and only crun.
    Crun,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_signals() {
        for (code, sig) in [
            (0, None),
            (1, None),
            (128, None),
            (130, Some(2)),
            (137, Some(9)),
        ] {
            assert_eq!(ExitStatus(code).signal(), sig, "{code}");
        }
    }

    #[test]
    fn capture_keeps_last_lines_and_calls_back() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let c = Capture::with_callback(2, move |s, l| {
            s2.lock().unwrap().push((s, l.to_string()));
        });
        c.push(Stream::Stdout, b"a\n");
        c.push(Stream::Stderr, b"b\r\n");
        c.push(Stream::Stdout, b"c");
        assert_eq!(
            c.lines(),
            vec![
                (Stream::Stderr, "b".to_string()),
                (Stream::Stdout, "c".to_string())
            ]
        );
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!(c.stdout(), "c\n");
        assert_eq!(c.tail(1), vec![(Stream::Stdout, "c".to_string())]);
    }

    #[test]
    fn path_env_default_and_override() {
        let mut s = RunSpec::new(RootFs::Dir("/x".into()), vec!["true".into()]);
        assert!(s.path_env().starts_with("/usr/local/sbin"));
        s.env.push("PATH=/bin".into());
        assert_eq!(s.path_env(), "/bin");
    }
}
