//! Running a command in a root filesystem: OCI runtime (runc/crun) and built-in namespace backends.
//!
//! Part of [strata](https://github.com/strata-build/strata); see DESIGN.md for
//! where this crate sits in the data flow.
#![deny(missing_docs)]
