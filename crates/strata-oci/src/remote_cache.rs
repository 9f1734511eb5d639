//! The seam for build caches kept outside the store (`--cache-from` /
//! `--cache-to`): the builder asks a [`RemoteCache`] for a step's key and
//! hands it what it built; implementations keep entries in a registry
//! (strata-registry) or an OCI layout directory (this crate's
//! `LayoutCache`). The builder never depends on how an entry travels.
//!
//! An entry is what one step produced, addressed by the step's cache key:
//! its layer (descriptor and diffID) or nothing (a step that changed no
//! file). Never the step's inputs: they may hold build args, and a key is a
//! hash that reveals none of them. The format is in docs/cache.md.

use std::time::Duration;

use crate::{Descriptor, Digest, Store};

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRecord {
    /// The step's cache key.
    pub key: Digest,
    /// Its layer: the blob and its uncompressed digest; `None` when the step
    /// made no layer.
    pub layer: Option<(Descriptor, Digest)>,
    /// The key the build's chain of keys continues with after this step,
    /// when it is not `key`: a `COPY --from` entry found by the layers it
    /// copies from names the key of the files it copied.
    pub chain: Option<Digest>,
}

/// An entry found in a remote cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// What the step produced.
    pub record: CacheRecord,
    /// When the entry was written (RFC 3339), when the cache records it.
    pub created: Option<String>,
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Entries written.
    pub entries: usize,
    /// Entries already there (from this cache), left alone.
    pub present: usize,
    /// Layer blobs sent (uploaded or copied).
    pub blobs_sent: usize,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Layer blobs the destination already had, or got by a mount.
    pub blobs_skipped: usize,
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Entries removed.
    pub removed: usize,
    /// Entries kept.
    pub kept: usize,
}

/// The error of a remote cache operation (the implementation's own, typed).
pub type RemoteError = Box<dyn std::error::Error + Send + Sync>;

/// A build cache outside the store: a registry repository or an OCI layout.
///
/// Lookups cost one small request (or a file read) per step and never a
/// download of the whole cache; layers are fetched only when a build needs
/// their bytes ([`RemoteCache::fetch_blob`]). Exports accumulate: an entry
/// is written under its own key, so builds of other Dockerfiles, targets or
/// platforms exporting to the same place never evict each other.
pub trait RemoteCache: Send + Sync {
    /// How the user named it, for messages (`registry example.com/app:cache`).
    fn describe(&self) -> String;

    /// The entry for `key`, or `None`.
    fn lookup(&self, key: &Digest) -> Result<Option<RemoteEntry>, RemoteError>;

    /// Copies the blob `desc` (a layer of an entry this cache returned)
    /// into `store`, verified.
    fn fetch_blob(&self, store: &Store, desc: &Descriptor) -> Result<(), RemoteError>;

    /// Writes `records` (their blobs are in `store`, or, for a layer that
    /// came from this same cache, already there). `refresh` lists entries
    /// that were hits here and may have their creation time renewed (so a
    /// prune by age keeps what builds still use).
    fn export(
        &self,
        store: &Store,
        records: &[CacheRecord],
        refresh: &[Digest],
    ) -> Result<ExportReport, RemoteError>;

    /// Every entry, for `strata cache ls`.
    fn list(&self) -> Result<Vec<RemoteEntry>, RemoteError>;

    /// Removes entries written more than `older_than` ago.
    fn prune(&self, older_than: Duration) -> Result<PruneReport, RemoteError>;

    /// The registry and repository holding the layers, when a push to the
    /// same registry can mount them instead of sending bytes.
    fn mount_source(&self) -> Option<(String, String)> {
        None
    }
}
