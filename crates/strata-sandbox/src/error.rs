//! Error types.

use std::io;
use std::path::PathBuf;

/// Resolving a user spec failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A user name with no /etc/passwd entry.
    #[error("unable to find user {name}: {}", if *no_file { "no /etc/passwd in the image" } else { "no matching entries in /etc/passwd" })]
    UnknownUser {
        /// The name.
        name: String,
        /// The image has no /etc/passwd at all.
        no_file: bool,
    },
    /// A group name with no /etc/group entry.
    #[error("unable to find group {name}: {}", if *no_file { "no /etc/group in the image" } else { "no matching entries in /etc/group" })]
    UnknownGroup {
        /// The name.
        name: String,
        /// The image has no /etc/group at all.
        no_file: bool,
    },
    /// A numeric id beyond 2147483647.
    #[error("user spec {spec:?}: uids and gids must be in range 0-2147483647")]
    OutOfRange {
        /// The spec.
        spec: String,
    },
    /// /etc/passwd or /etc/group could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Running a command failed before it could report an exit status.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec cannot be run as given.
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),
    /// No OCI runtime (runc, crun) is installed.
    #[error("no OCI runtime found (looked for crun and runc on PATH)")]
    NoRuntime,
    /// Preparing files on the host side (state dir, bundle, config.json) failed.
    #[error("cannot prepare {}", path.display())]
    Prepare {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Starting a process failed.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// A step of the sandbox setup failed inside the new namespaces.
    #[error("sandbox setup failed: {step}")]
    Setup {
        /// What was being done (e.g. `mount overlay on /`).
        step: String,
        /// Why.
        source: io::Error,
    },
    /// The command could not be executed (not found, not executable).
    #[error("cannot execute {program:?} in the container")]
    Exec {
        /// `args[0]`.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// The OCI runtime failed before the command ran.
    #[error("{runtime} failed: {message}")]
    Runtime {
        /// runc or crun.
        runtime: String,
        /// What it said.
        message: String,
    },
    /// The seccomp profile cannot be applied.
    #[error("cannot apply the seccomp profile")]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// Waiting for or talking to the sandbox failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        source: io::Error,
    },
}

impl SandboxError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> SandboxError {
        SandboxError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn prepare(path: impl Into<PathBuf>, source: io::Error) -> SandboxError {
        SandboxError::Prepare {
            path: path.into(),
            source,
        }
    }
}
