//! OCI distribution client (minimal traffic push/pull) and the embedded registry server.
//!
//! Part of [strata](https://github.com/strata-build/strata); see DESIGN.md for
//! where this crate sits in the data flow.
#![deny(missing_docs)]
