//! The store's error type: the classes callers branch on (containerd's
//! NotFound, AlreadyExists, FailedPrecondition, InvalidArgument), each with
//! its own context.

use std::io;
use std::path::PathBuf;

use crate::Digest;

/// A store, archive or image error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such blob, tag, image or lease.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for (`blob sha256:...`, `image busybox:latest`).
        what: String,
    },
    /// The thing already exists. For blob writes this is success for the
    /// caller who wanted it stored.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What exists.
        what: String,
    },
    /// Content does not match its expected digest or size (containerd's
    /// FailedPrecondition).
    #[error("{what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// What the caller expected.
        expected: String,
        /// What the content is.
        actual: String,
    },
    /// Bad input: a malformed document, an unsupported media type.
    #[error("{0}")]
    InvalidArgument(String),
    /// Another process holds the ingest for this ref.
    #[error("ingest {0:?} is in use by another writer")]
    Locked(String),
    /// An I/O error at `path`.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`create`, `read`, `rename`...).
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// `Result<T, strata_oci::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this is [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether this is [`Error::AlreadyExists`].
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::AlreadyExists { .. })
    }

    /// Whether this is [`Error::DigestMismatch`] (FailedPrecondition).
    pub fn is_digest_mismatch(&self) -> bool {
        matches!(self, Error::DigestMismatch { .. })
    }

    /// Whether this is [`Error::InvalidArgument`].
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, Error::InvalidArgument(_))
    }

    pub(crate) fn blob_not_found(d: &Digest) -> Error {
        Error::NotFound {
            what: format!("blob {d}"),
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Error {
        Error::InvalidArgument(msg.into())
    }
}

/// Attach a path and an operation to io errors.
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
