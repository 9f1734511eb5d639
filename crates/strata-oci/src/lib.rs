//! OCI and Docker image types, image references, the content-addressed store,
//! and OCI layout / docker-archive import and export.
//!
//! ```
//! use strata_oci::{Descriptor, Digest, media_type};
//!
//! let config = br#"{"architecture":"amd64","os":"linux"}"#;
//! let desc = Descriptor::new(media_type::OCI_CONFIG, Digest::sha256(config), config.len() as u64);
//! assert!(desc.digest.to_string().starts_with("sha256:"));
//! ```
#![deny(missing_docs)]

mod descriptor;
mod digest;

pub use descriptor::{media_type, Compression, Descriptor, Platform, PlatformError};
pub use digest::{Algorithm, Digest, DigestError, Hasher, HashingReader, HashingWriter};
