//! Deterministic layer tar writing, safe layer application, whiteouts, snapshots and diffs.
//!
//! Part of [strata](https://github.com/strata-build/strata); see DESIGN.md for
//! where this crate sits in the data flow.
#![deny(missing_docs)]
