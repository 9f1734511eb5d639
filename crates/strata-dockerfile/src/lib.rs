//! Dockerfile lexer, parser (BuildKit-compatible), AST with spans and shell-word expansion.
//!
//! Part of [strata](https://github.com/strata-build/strata); see DESIGN.md for
//! where this crate sits in the data flow.
#![deny(missing_docs)]
