//! Deterministic layer tar writing, safe layer application, whiteouts,
//! snapshots and diffs.
//!
//! Part of [strata](https://github.com/strata-build/strata); see DESIGN.md for
//! where this crate sits in the data flow.
//!
//! ```
//! use strata_layer::{apply_layer, write_layer, ApplyMode, Entry, LayerOptions, LayerSource};
//! use strata_oci::Compression;
//!
//! let entries = vec![Entry::file("etc/motd", "hello\n")];
//! let opts = LayerOptions::new(Compression::Gzip);
//! let (info, blob) = write_layer(LayerSource::Entries(entries), &opts, Vec::new()).unwrap();
//! assert_eq!(info.size, blob.len() as u64);
//!
//! let dir = tempfile::tempdir().unwrap();
//! let stats = apply_layer(&blob[..], dir.path(), ApplyMode::Plain).unwrap();
//! assert_eq!(stats.diff_id, info.diff_id);
//! assert_eq!(std::fs::read(dir.path().join("etc/motd")).unwrap(), b"hello\n");
//! ```
//!
//! # Public API for other crates
//!
//! - [`write_layer`]`(LayerSource::Dir(path) | LayerSource::Entries(vec), &LayerOptions, impl Write)
//!   -> (LayerInfo, W)` and [`write_layer_to_store`]`(&Store, source, &opts) -> LayerInfo`
//!   ([`LayerInfo`] `{ diff_id, digest, size, uncompressed_size, media_type }`).
//! - [`apply_layer`]`(impl Read, target, ApplyMode::Plain | ApplyMode::Overlay) -> ApplyStats`
//!   (with the diffID of what was read).
//! - [`Snapshotter`]: `ensure_layer`, `lowerdirs`, `prepare`/`commit`/`remove` with
//!   mounts as plain data ([`Mount`]).
//! - [`diff_dirs`]`(lower, upper) -> Vec<Entry>` and [`upper_to_entries`]`(upper)`;
//!   either list goes to [`write_layer`] (the overlay and the copy-and-compare
//!   paths give the same bytes for the same change).
//!
//! # Determinism
//!
//! Entries are sorted (parents first, siblings by byte order), mtimes are
//! `SOURCE_DATE_EPOCH` (or 0) unless [`Timestamps::Preserve`] (or, with
//! [`Timestamps::Clamp`], only those newer than a RUN step's start), there are no
//! atime/ctime records, owners are numeric only (no user/group names), PAX
//! records appear only for long names, big values and xattrs, hard links are
//! written as links (found by device and inode), and the gzip header is fixed
//! (no name, no mtime, OS byte 255) at a fixed level.
#![deny(missing_docs)]

mod apply;
mod diff;
mod error;
mod export;
mod index;
mod lazy;
mod pgzip;
mod snapshot;
mod stream;
mod view;
mod writer;

pub use apply::{
    apply_layer, decompress, in_user_namespace, overlay_opaque_xattr, ApplyMode, ApplyStats,
};
pub use diff::{diff_dirs, upper_to_entries, upper_to_entries_against};
pub use error::{Error, Result};
pub use export::{unpack_layers, write_rootfs_tar};
pub use index::{FileKind, LayerIndex, Meta};
pub use snapshot::{Mount, Snapshotter};
pub use stream::StreamThread;
pub use view::{clean_components, is_whiteout, Found, MergedView, ViewLayer};
pub use writer::{
    get_xattr, import_tar, import_tar_to_store, scan_dir, write_layer, write_layer_to_store, Entry,
    EntryKind, FileSource, LayerInfo, LayerOptions, LayerSource, TapFactory, TarTap, Timestamps,
    GZIP_LEVEL,
};
