//! OCI/Docker image types, references, the content-addressed store, OCI layout and docker-archive import/export.
//!
//! Part of [strata](https://github.com/strata-build/strata); see DESIGN.md for
//! where this crate sits in the data flow.
#![deny(missing_docs)]
