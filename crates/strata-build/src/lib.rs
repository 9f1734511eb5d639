//! The Dockerfile builder: plan, instruction evaluation, content-keyed cache, progress events, explain.
//!
//! Part of [strata](https://github.com/strata-build/strata); see DESIGN.md for
//! where this crate sits in the data flow.
#![deny(missing_docs)]
