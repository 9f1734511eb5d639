//! Errors of layer writing, reading and applying, each naming its entry or path.

use std::io;
use std::path::PathBuf;

/// A layer error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An entry would create or modify something outside the target, or is
    /// otherwise unsafe to apply. The whole layer is refused.
    #[error("layer entry {entry:?} refused: {reason}")]
    Unsafe {
        /// The entry's name in the tar.
        entry: String,
        /// What it tried.
        reason: String,
    },
    /// A malformed entry or an invalid argument.
    #[error("{what}: {reason}")]
    Invalid {
        /// The entry or input concerned.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading the tar stream failed.
    #[error("reading the layer{}", entry.as_ref().map(|e| format!(" at entry {e:?}")).unwrap_or_default())]
    Read {
        /// The entry being read, when known.
        entry: Option<String>,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// An I/O error at a path.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] strata_oci::Error),
}

/// `Result<T, strata_layer::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn unsafe_entry(entry: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Unsafe {
            entry: entry.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Whether the layer was refused as unsafe.
    pub fn is_unsafe(&self) -> bool {
        matches!(self, Error::Unsafe { .. })
    }
}

pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            op,
            path: path.into(),
            source,
        })
    }
}

impl<T> IoContext<T> for std::result::Result<T, rustix::io::Errno> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::Io {
            op,
            path: path.into(),
            source: e.into(),
        })
    }
}
