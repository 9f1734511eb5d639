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
    /// An image to remove has several names and removal was not forced
    /// (containerd's FailedPrecondition).
    #[error("image {image} is referenced by {} names ({})", names.len(), names.join(", "))]
    Referenced {
        /// The image ID (short).
        image: String,
        /// Its names, familiar form.
        names: Vec<String>,
    },
    /// Another process holds the ingest for this ref.
    #[error("ingest {0:?} is in use by another writer")]
    Locked(String),
    /// The file system holding `path` is full (or the user's quota is).
    #[error("no space left to {op} {path}")]
    NoSpace {
        /// What was being done (`write`, `create`...).
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error (ENOSPC or EDQUOT).
        #[source]
        source: io::Error,
    },
    /// A remote blob ([`Store::note_remote`](crate::Store::note_remote))
    /// could not be downloaded.
    #[error("cannot download {what}")]
    Fetch {
        /// What (`layer sha256:...`).
        what: String,
        /// Why: the fetcher's error, with its causes.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
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

    /// Whether this is [`Error::NoSpace`]: the disk holding the store is full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::NoSpace { .. })
    }

    /// An I/O error at `path`, classified: [`Error::NoSpace`] when the file
    /// system is full, else [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        if is_no_space_errno(&source) {
            Error::NoSpace { op, path, source }
        } else {
            Error::Io { op, path, source }
        }
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
        self.map_err(|source| Error::io(op, path, source))
    }
}

impl<T> IoContext<T> for std::result::Result<T, rustix::io::Errno> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e.into()))
    }
}

fn is_no_space_errno(e: &io::Error) -> bool {
    let no_space = [rustix::io::Errno::NOSPC, rustix::io::Errno::DQUOT];
    e.raw_os_error()
        .is_some_and(|n| no_space.iter().any(|x| x.raw_os_error() == n))
}

/// Whether `err` or any error in its `source()` chain says the file system
/// is full (an [`Error::NoSpace`], or an OS error ENOSPC or EDQUOT): lets a
/// crate above the store tell a full disk from other failures.
pub fn is_no_space(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(e) = e.downcast_ref::<Error>() {
            if e.is_no_space() {
                return true;
            }
        }
        if let Some(e) = e.downcast_ref::<io::Error>() {
            if is_no_space_errno(e) {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_apart_anywhere_in_a_chain() {
        let full = io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error());
        let e = Error::io("write", "/store/ingest/x/data", full);
        assert!(e.is_no_space());
        assert_eq!(e.to_string(), "no space left to write /store/ingest/x/data");
        let other = Error::io("write", "/x", io::Error::other("boom"));
        assert!(!other.is_no_space() && !is_no_space(&other));
        // Wrapped by a caller that only keeps the source.
        #[derive(Debug, thiserror::Error)]
        #[error("reading the layer")]
        struct Wrapper(#[source] io::Error);
        let wrapped = Wrapper(io::Error::from_raw_os_error(
            rustix::io::Errno::DQUOT.raw_os_error(),
        ));
        assert!(is_no_space(&wrapped));
        assert!(!is_no_space(&Wrapper(io::Error::other("x"))));
    }
}
