//! The crate's error type. Every variant names the registry, the repository
//! and what was asked, so a message alone tells the user where things failed.

use std::path::PathBuf;

/// A registry client or server error.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// The registry could not be reached, or the connection broke (after retries).
    #[error("cannot reach registry {registry} ({what})")]
    Connect {
        /// Registry host.
        registry: String,
        /// What was being done.
        what: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry speaks only plain HTTP and is not allowed to.
    #[error("registry {registry} does not answer over https")]
    #[diagnostic(help(
        "plain HTTP is used only for localhost and for registries named with --insecure-registry {registry}"
    ))]
    InsecureRefused {
        /// Registry host.
        registry: String,
        /// Why https failed.
        #[source]
        source: reqwest::Error,
    },
    /// 401: no or wrong credentials.
    #[error("registry {registry} refused {what} in repository {repository}: authentication required{}", detail_suffix(.detail))]
    #[diagnostic(help("log in with `strata login {registry}` (or set STRATA_REGISTRY_USER and STRATA_REGISTRY_PASSWORD)"))]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was asked.
        what: String,
        /// The registry's message.
        detail: String,
    },
    /// 403: the credentials do not allow this.
    #[error("registry {registry} denied {what} in repository {repository}{}", detail_suffix(.detail))]
    #[diagnostic(help("check that your account may push to / pull from this repository"))]
    Denied {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was asked.
        what: String,
        /// The registry's message.
        detail: String,
    },
    /// 404: no such repository, tag, manifest or blob.
    #[error("registry {registry} has no {what} in repository {repository}{}", detail_suffix(.detail))]
    NotFound {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was asked.
        what: String,
        /// The registry's message.
        detail: String,
    },
    /// Any other unexpected answer.
    #[error("registry {registry} answered {status} to {what} in repository {repository}{}", detail_suffix(.detail))]
    Status {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was asked.
        what: String,
        /// HTTP status code.
        status: u16,
        /// The registry's message.
        detail: String,
    },
    /// Content does not hash to what it should.
    #[error(
        "{what} from {registry}/{repository}: digest mismatch: expected {expected}, got {actual}"
    )]
    DigestMismatch {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was checked.
        what: String,
        /// Expected digest.
        expected: String,
        /// What the content hashes to.
        actual: String,
    },
    /// The registry sent (or announced) a different number of bytes than the
    /// descriptor says.
    #[error("{what} from {registry}/{repository}: the registry sent {actual} bytes but the descriptor says {expected}")]
    SizeMismatch {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was transferred.
        what: String,
        /// Bytes the descriptor announces.
        expected: u64,
        /// Bytes the registry sent or announced.
        actual: u64,
    },
    /// A manifest or index that is not valid.
    #[error("{what} from {registry}/{repository} is not a valid manifest: {reason}")]
    InvalidManifest {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// Which document.
        what: String,
        /// Why.
        reason: String,
    },
    /// An index has no manifest for the wanted platform.
    #[error("{reference}: no manifest for platform {platform} (available: {available})")]
    #[diagnostic(help("choose one with --platform"))]
    NoPlatform {
        /// What was pulled.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// Platforms the index lists.
        available: String,
    },
    /// A reference that cannot be used here.
    #[error("{0}")]
    InvalidReference(String),
    /// A problem with the local content store.
    #[error("content store")]
    Store(#[from] strata_oci::Error),
    /// Reading or writing a credentials file failed.
    #[error("credentials file {path}: {reason}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `docker-credential-<name>` helper failed.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    CredentialHelper {
        /// Helper name.
        helper: String,
        /// Registry asked about.
        registry: String,
        /// What went wrong (never the secret).
        reason: String,
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
        source: std::io::Error,
    },
    /// The server could not start.
    #[error("cannot serve on {addr}")]
    Bind {
        /// Address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bad TLS certificate or key.
    #[error("TLS setup ({path}): {reason}")]
    Tls {
        /// Certificate or key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A bad htpasswd file.
    #[error("{path}:{line}: {reason}")]
    #[diagnostic(help("each line is `user:$2y$...` (bcrypt, as `htpasswd -B` writes)"))]
    Htpasswd {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

fn detail_suffix(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(": {d}")
    }
}

/// `Result<T, strata_registry::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the registry said the thing does not exist (404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether the registry refused the credentials (401/403).
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Unauthorized { .. } | Error::Denied { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
