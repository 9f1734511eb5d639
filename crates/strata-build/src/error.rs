//! The builder's errors. Each one that comes from a Dockerfile instruction
//! carries the instruction's place (file, line, span) so the CLI can show a
//! snippet.

use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

/// What went wrong, without the location.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The Dockerfile does not parse.
    #[error(transparent)]
    Parse(#[from] strata_dockerfile::ParseError),
    /// The Dockerfile parses but its instructions are invalid.
    #[error(transparent)]
    Instruction(#[from] strata_dockerfile::InstructionError),
    /// A variable could not be expanded.
    #[error(transparent)]
    Expand(#[from] strata_dockerfile::shell::ExpandError),
    /// The build context could not be read.
    #[error(transparent)]
    Context(#[from] strata_context::ContextError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] strata_oci::Error),
    /// Writing or applying a layer failed.
    #[error(transparent)]
    Layer(#[from] strata_layer::Error),
    /// The sandbox could not run a command.
    #[error(transparent)]
    Sandbox(#[from] strata_sandbox::SandboxError),
    /// A user or group name could not be resolved.
    #[error(transparent)]
    User(#[from] strata_sandbox::UserError),
    /// A container or RUN root filesystem or process could not be made.
    #[error(transparent)]
    Container(#[from] crate::container::ContainerError),
    /// A RUN for a foreign architecture cannot be emulated here.
    #[error(transparent)]
    Emulation(#[from] crate::emulation::EmulationError),
    /// A RUN command exited with a non-zero status.
    #[error("process \"{command}\" did not complete successfully: exit code {code}{}", tail_text(.output))]
    RunFailed {
        /// The command as the user wrote it.
        command: String,
        /// Its exit code (128+N for signal N).
        code: i32,
        /// The last lines of its output.
        output: Vec<String>,
    },
    /// A base image is not in the store and could not be fetched.
    #[error("base image {reference} not found")]
    BaseImageNotFound {
        /// The reference as written after expansion.
        reference: String,
        /// Why fetching failed, when a fetch was tried.
        #[source]
        cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A COPY/ADD source matched nothing.
    #[error("{source_path}: not found{}", excluded_note(*.excluded))]
    SourceNotFound {
        /// The source as written (expanded).
        source_path: String,
        /// Whether .dockerignore excluded it.
        excluded: bool,
    },
    /// Anything else the Dockerfile asks for that cannot be done.
    #[error("{0}")]
    Invalid(String),
    /// An I/O error, with the path it concerns.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A download (ADD URL) failed.
    #[error("downloading {url}: {message}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The build was interrupted.
    #[error("build interrupted")]
    Interrupted,
    /// Exporting the build cache (`--cache-to`) failed.
    #[error("cannot export the build cache to {cache}")]
    CacheExport {
        /// The cache, as the user named it.
        cache: String,
        /// Why.
        #[source]
        source: strata_oci::RemoteError,
    },
}

fn tail_text(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        let mut s = String::from("\n  last output:");
        for l in lines {
            s.push_str("\n    ");
            s.push_str(l);
        }
        s
    }
}

fn excluded_note(excluded: bool) -> &'static str {
    if excluded {
        " (it is excluded by .dockerignore)"
    } else {
        ""
    }
}

/// Where in the Dockerfile an error happened.
#[derive(Debug, Clone)]
pub struct Location {
    /// The Dockerfile's name and text.
    pub source: Arc<NamedSource<String>>,
    /// Byte offset of the instruction (or the part of it at fault).
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
    /// 1-based line.
    pub line: usize,
    /// Stage and step, as progress shows it (`[build 2/5]`).
    pub step: String,
}

/// A build error, with the instruction it happened at when there is one.
///
/// Its message is the kind's, prefixed with the place; its
/// [`source`](std::error::Error::source) is the kind's cause, so the whole
/// chain (a registry's 401 behind "base image not found") can be walked and
/// printed, and no cause is repeated in a message.
#[derive(Debug)]
pub struct Error {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Where.
    pub location: Option<Box<Location>>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", prefix(&self.location), self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

fn prefix(loc: &Option<Box<Location>>) -> String {
    match loc {
        Some(l) => format!("{} {}:{}: ", l.step, l.source.name(), l.line),
        None => String::new(),
    }
}

impl Error {
    /// Attach a location unless one is already there.
    pub(crate) fn at(mut self, loc: impl FnOnce() -> Location) -> Error {
        if self.location.is_none() {
            self.location = Some(Box::new(loc()));
        }
        self
    }

    /// An [`ErrorKind::Invalid`] error.
    pub(crate) fn invalid(msg: impl Into<String>) -> Error {
        ErrorKind::Invalid(msg.into()).into()
    }

    /// An [`ErrorKind::Io`] error.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        ErrorKind::Io {
            action,
            path: path.into(),
            source,
        }
        .into()
    }

    /// Whether a RUN command failed (as opposed to the builder).
    pub fn is_run_failure(&self) -> bool {
        matches!(self.kind, ErrorKind::RunFailed { .. })
    }
}

impl<E: Into<ErrorKind>> From<E> for Error {
    fn from(e: E) -> Error {
        Error {
            kind: e.into(),
            location: None,
        }
    }
}

impl Diagnostic for Error {
    fn source_code(&self) -> Option<&dyn SourceCode> {
        match &self.kind {
            ErrorKind::Parse(e) => e.source_code(),
            ErrorKind::Instruction(e) => e.source_code(),
            _ => self
                .location
                .as_ref()
                .map(|l| l.source.as_ref() as &dyn SourceCode),
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        match &self.kind {
            ErrorKind::Parse(e) => e.labels(),
            ErrorKind::Instruction(e) => e.labels(),
            _ => {
                let l = self.location.as_ref()?;
                Some(Box::new(std::iter::once(LabeledSpan::new(
                    None,
                    l.offset,
                    l.len.max(1),
                ))))
            }
        }
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        match &self.kind {
            // When a pull was tried, its cause knows the fix (log in, allow
            // plain HTTP...): only an image never looked for gets this hint.
            ErrorKind::BaseImageNotFound {
                reference,
                cause: None,
            } => Some(Box::new(format!(
                "pull it with `strata pull {reference}`, or make one with `strata import ROOTFS.tar {reference}`"
            ))),
            ErrorKind::SourceNotFound { excluded: true, .. } => Some(Box::new(
                "remove the matching pattern from .dockerignore, or add an exception (!path)",
            )),
            ErrorKind::Parse(e) => e.help(),
            ErrorKind::Instruction(e) => e.help(),
            ErrorKind::Emulation(e) => Some(Box::new(e.hint())),
            _ => None,
        }
    }
}

/// The builder's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
