//! What a push or pull reports while it runs, and what it returns at the end.
//!
//! The library never prints: the CLI turns [`Event`]s into progress bars on a
//! terminal and plain lines when piped.

use std::time::Duration;

use strata_oci::{Digest, Reference};

/// What kind of blob an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// An image config.
    Config,
    /// A layer (or any other blob a manifest lists).
    Layer,
}

/// How a blob transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Push: the bytes were uploaded.
    Uploaded,
    /// Push: the registry already had it ("Layer already exists").
    Exists,
    /// Push: mounted from another repository of the same registry.
    Mounted {
        /// The repository it was mounted from.
        from: String,
    },
    /// Pull: the bytes were downloaded.
    Downloaded,
    /// Pull: the store already had it ("Already exists").
    AlreadyPresent,
}

/// A progress event.
#[derive(Debug, Clone)]
pub enum Event {
    /// The reference resolved to this manifest (or index).
    Resolved {
        /// What was asked.
        reference: Reference,
        /// The digest it points at.
        digest: Digest,
    },
    /// A blob transfer starts (or resumes at `offset`).
    BlobStart {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Config or layer.
        kind: BlobKind,
        /// Bytes already transferred by an earlier, interrupted attempt.
        offset: u64,
    },
    /// `bytes` more bytes of the blob went over the wire.
    BlobBytes {
        /// The blob.
        digest: Digest,
        /// How many bytes since the last event.
        bytes: u64,
    },
    /// A blob is done.
    BlobDone {
        /// The blob.
        digest: Digest,
        /// How.
        outcome: BlobOutcome,
    },
    /// A request failed in a way worth retrying; it is retried after `delay`.
    Retry {
        /// What was being done.
        what: String,
        /// Why (status or transport error).
        reason: String,
        /// Which retry this is (1-based).
        attempt: u32,
        /// Wait before the retry.
        delay: Duration,
    },
}

/// Receives progress events (from several tasks at once).
pub trait Progress: Send + Sync {
    /// Handle one event.
    fn event(&self, event: &Event);
}

/// Ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: &Event) {}
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushSummary {
    /// Where the image went.
    pub reference: Reference,
    /// Digest of the pushed manifest (or index).
    pub digest: Digest,
    /// Size of that manifest in bytes.
    pub size: u64,
    /// Blobs whose bytes were uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Manifests (and indexes) put.
    pub manifests: usize,
    /// Referrers put (SBOMs, provenance, signatures), counted in `manifests` too.
    pub referrers: usize,
    /// Bytes sent: blob bytes uploaded plus the manifests' (without HTTP
    /// overhead); what `strata diff` predicts for a registry holding the
    /// previous image.
    pub bytes_sent: u64,
    /// The manifests' (and index's) share of `bytes_sent`.
    pub manifest_bytes: u64,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullSummary {
    /// The reference pulled (a tag, or a digest).
    pub reference: Reference,
    /// Digest of the manifest or index the reference points at.
    pub digest: Digest,
    /// Digest of the image manifest chosen (differs from `digest` for indexes).
    pub manifest: Digest,
    /// The image ID (config digest).
    pub image_id: Digest,
    /// Blobs downloaded.
    pub downloaded: usize,
    /// Blobs that were already in the store.
    pub present: usize,
    /// Referrers stored with the image (SBOMs, provenance, signatures).
    pub referrers: usize,
    /// Blob bytes received.
    pub bytes_received: u64,
}
