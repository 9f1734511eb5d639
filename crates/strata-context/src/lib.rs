//! Build context selection: .dockerignore matching (moby semantics), context walk and content index.
//!
//! Part of [strata](https://github.com/strata-build/strata); see DESIGN.md for
//! where this crate sits in the data flow.
#![deny(missing_docs)]
