//! Dockerfile lint rules and image analysis (waste, duplicates, efficiency), diffs and reports.
//!
//! Part of [strata](https://github.com/strata-build/strata); see DESIGN.md for
//! where this crate sits in the data flow.
//!
//! - [`lint`]: static checks on a Dockerfile and its build context.
//! - [`image`]: measured analysis of a built image's layers, and image diffs.
//! - [`practices`]: the sections of `docs/practices.md` that every lint
//!   finding and image finding links to.
#![deny(missing_docs)]

pub mod image;
pub mod lint;
pub mod practices;
pub mod sbom;
