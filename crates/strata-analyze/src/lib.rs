//! Dockerfile lint rules and image analysis (waste, duplicates, efficiency), diffs and reports.
//!
//! Part of [strata](https://github.com/strata-build/strata); see DESIGN.md for
//! where this crate sits in the data flow.
#![deny(missing_docs)]
