//! OCI and Docker image types, image references, the content-addressed store,
//! and OCI layout / docker-archive import and export.
//!
//! ```
//! use strata_oci::{media_type, Descriptor, Digest, Reference, Store};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path()).unwrap();
//!
//! // Blobs stream in through a writer and are verified on commit.
//! let mut w = store.writer("my-upload", None).unwrap();
//! std::io::Write::write_all(&mut w, b"hello").unwrap();
//! let digest = w.commit(Some(5), Some(&Digest::sha256(b"hello"))).unwrap();
//! assert_eq!(store.read_blob(&digest).unwrap(), b"hello");
//!
//! // References are normalised as docker does.
//! let r: Reference = "busybox".parse().unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
//! # let _ = (Descriptor::new(media_type::OCI_CONFIG, digest, 5),);
//! ```
//!
//! # Public API for other crates
//!
//! - [`Store::open`]`(root)`; blobs: [`Store::writer`]`(ref_key, expected)`
//!   -> [`Writer`] (`Write`; [`Writer::offset`] for resumed ingests;
//!   [`Writer::commit`]`(size, digest)`), [`Store::put_reader`],
//!   [`Store::put_blob`], [`Store::put_json`]`(media_type, bytes)`,
//!   [`Store::open_blob`] (a `File`: `Read + Seek`, `FileExt::read_at` for
//!   ranges), [`Store::read_blob`], [`Store::has`], [`Store::blob_size`].
//! - Tags: [`Store::tag`], [`Store::untag`], [`Store::resolve`],
//!   [`Store::list_tags`], [`Store::keep_untagged`]; [`Store::remove_image`]
//!   (what `rmi` removes) and [`Store::import_image`] (an image of one
//!   imported layer).
//! - Images: [`Store::image`]`(descriptor, platform)` and
//!   [`Store::find_image`]`("busybox" | "sha256:..." | id prefix)` -> [`Image`]
//!   (manifest, config, layers with diffIDs, and the raw bytes of both
//!   documents), [`Store::images`]; [`Image::history_layers`] pairs history
//!   entries with the layers they made, [`Image::history_rows`] gives
//!   `strata history`'s rows.
//! - Leases and roots: [`Store::lease`] -> [`Lease`] (drop to release);
//!   [`Store::set_root`]`(namespace, name, RootSet)` for persistent roots such
//!   as the build cache ([`CACHE_NAMESPACE`]).
//! - Sidecars: [`Store::sidecar`]`(kind)` -> [`Sidecars`] (`put`/`get`/`remove`
//!   by image ID): per-image files other tools keep beside the store.
//! - Referrers (OCI 1.1): [`Manifest::artifact`] builds an artifact
//!   manifest, [`Store::put_referrer`] stores it beside its subject,
//!   [`Store::referrers`]`(subject, artifact_type)` lists them; they live as
//!   long as their subject and never change its digest.
//! - [`Store::verify`] -> [`VerifyReport`]; [`Store::gc`]`(GcOptions)` -> [`GcReport`].
//! - Archives: [`save_docker_archive`], [`save_oci_layout`], [`load_archive`];
//!   [`export_archive`] writes either to a path, through [`OutputFile`] (an
//!   output that appears only complete).
//! - Build caches outside the store: the [`RemoteCache`] seam, its format
//!   ([`cache_entry_tag`], [`cache_entry_manifest`], [`parse_cache_entry`];
//!   docs/cache.md) and [`LayoutCache`] (an OCI layout directory).
//!
//! # On-disk layout
//!
//! ```text
//! <root>/
//!   blobs/sha256/<hex>      content, named by its digest (sha512/ accepted)
//!   ingest/<sha256(ref)>/   a blob being written: data, ref, lock (flock)
//!   refs.json               tags: full reference -> manifest/index descriptor,
//!                           and untagged images; replaced atomically
//!   refs.lock               flock held while refs.json is rewritten
//!   gc.lock                 shared by writers (commit, tag, lease), exclusive for gc
//!   leases/<id>.lock|.json  a live process's lease (the .lock is flocked by it)
//!   roots/<ns>/<name>.json  persistent roots (the build cache is roots/cache/)
//!   sidecars/<kind>/<alg>-<hex>[.<key>]
//!                           per-image files of other tools, by image ID
//!   referrers/<alg>-<subject hex>/<alg>-<hex>
//!                           a referrer's descriptor, by subject manifest
//!   snapshots/<diffID hex>/ a layer extracted with overlay whiteouts (strata-layer),
//!                           synced to disk before it is renamed into place
//!   snapshots/.tmp-<pid>-<n>/ and .lock
//!                           an extraction in progress, held ([`Store::hold_extraction`])
//!   snapshots/.active/<key>/ and <key>.lock
//!                           a RUN step's or a container's writable layer, held
//!                           by a flock on <key>.lock ([`Store::hold_active`])
//!   tmp/<kind>-<pid>-<n>/ and .lock
//!                           scratch files of a live process (a build's copies of
//!                           --secret files), held the same way ([`Store::temp_dir`])
//! ```
//!
//! Crash safety: a blob appears under `blobs/` only by `rename` after its
//! content was fsynced and its digest verified, so a killed process never
//! leaves a blob whose content does not match its name. Writers store blobs
//! before the manifests that reference them, and manifests before the tags,
//! and `refs.json` is replaced atomically, so no tag ever points at missing
//! content. Concurrent processes coordinate with `flock`: ingests by ref key,
//! the tag database, and garbage collection against writers and leases.
//!
//! Temporary state is held the same way, with the lock taken before the
//! state exists and dropped after it is gone: when a holder dies (even by
//! `kill -9`) the kernel drops its lock, and every [`Store::open`] removes
//! what it held, so a secret does not outlive a crash beyond the next strata
//! command. Garbage collection with [`GcOptions::remove_released`] (what
//! `strata prune` does) also removes the container layers `strata run`
//! kept. Nothing is removed while a mount point lies under it. A full disk
//! is [`Error::NoSpace`], naming the path in the store.
#![deny(missing_docs)]

mod archive;
mod cache_format;
mod descriptor;
mod error;
mod history;
mod image;
mod layout_cache;
mod output;
mod platform;
mod reference;
mod remote_cache;
pub mod signature;
mod store;
mod time;

pub use archive::{load_archive, save_docker_archive, save_oci_layout, LoadedImage, SaveItem};
pub use cache_format::{
    cache_created_now, cache_entry_manifest, cache_entry_older_than, cache_entry_tag,
    empty_descriptor, is_cache_entry_tag, parse_cache_entry, valid_cache_tag, CacheEntryError,
    ANNOTATION_CACHE_CHAIN, ANNOTATION_CACHE_DIFFID, ANNOTATION_CACHE_KEY, ANNOTATION_CREATED,
    ANNOTATION_REF_NAME, CACHE_ARTIFACT_TYPE, CACHE_REFRESH_AGE, DEFAULT_CACHE_TAG, EMPTY_JSON,
};
pub use descriptor::{media_type, Compression, Descriptor};
pub use error::{is_no_space, Error, Result};
pub use history::HistoryRow;
pub use image::{
    sniff_media_type, ContainerConfig, Extra, Healthcheck, History, ImageConfig, Index, Manifest,
    RootFs,
};
pub use layout_cache::LayoutCache;
pub use output::{export_archive, ArchiveFormat, OutputFile};
pub use platform::{Platform, PlatformError};
pub use reference::{Reference, ReferenceError, DEFAULT_DOMAIN};
pub use remote_cache::{
    CacheRecord, ExportReport, PruneReport, RemoteCache, RemoteEntry, RemoteError,
};
pub use store::{
    remove_tree, write_atomic, write_atomic_if_changed, BlobFetcher, GcOptions, GcReport, Hold,
    Image, ImageSummary, ImportOptions, Layer, Lease, Problem, Removed, RootSet, Sidecars, Store,
    TagEntry, TempDir, VerifyReport, Writer, CACHE_NAMESPACE, MAX_DOCUMENT_SIZE,
};
pub use strata_digest::{Algorithm, Digest, DigestError, Hasher, HashingReader, HashingWriter};
pub use time::{format_rfc3339, parse_rfc3339};
