//! Build context selection: `.dockerignore` matching with Docker's exact
//! semantics (moby/patternmatcher), the context walk, safe reads, and a
//! content index with a stat-hint cache.
//!
//! ```
//! use strata_context::{Context, ContextOptions, EntryKind};
//!
//! let dir = tempfile::tempdir()?;
//! std::fs::create_dir_all(dir.path().join("docs"))?;
//! std::fs::write(dir.path().join("docs/README.md"), "read me")?;
//! std::fs::write(dir.path().join("docs/notes.md"), "private")?;
//! std::fs::write(dir.path().join("app.py"), "print(1)")?;
//! std::fs::write(dir.path().join(".dockerignore"), "docs\n!docs/README.md\n")?;
//!
//! let ctx = Context::open(dir.path(), ContextOptions::default())?;
//! let paths: Vec<&str> = ctx.entries().iter().map(|e| e.path.as_str()).collect();
//! assert_eq!(paths, [".dockerignore", "app.py", "docs", "docs/README.md"]);
//! assert!(ctx.get("docs").unwrap().implicit); // excluded, but holds a re-included file
//! assert!(ctx.open_file("docs/notes.md").is_err()); // excluded files never reach a layer
//!
//! let index = ctx.index()?;
//! let readme = index.get("docs/README.md").unwrap();
//! assert_eq!(readme.entry.kind, EntryKind::File);
//! assert_eq!(readme.digest, Some(strata_oci::Digest::sha256(b"read me")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod context;
mod error;
mod gopath;
mod goregex;
mod ignorefile;
mod index;
mod pattern;
mod walk;

pub use context::{Context, ContextOptions, IgnoreSource};
pub use error::{ContextError, PatternError, PatternErrorKind};
pub use ignorefile::{read_ignore_file, IgnoreLine};
pub use index::{Index, IndexEntry, IndexStats, RACY_WINDOW};
pub use pattern::{Matcher, Pattern};
pub use walk::{Entry, EntryKind, Timestamp};

/// Go's `filepath.Match(pattern, name)` (what COPY source wildcards use):
/// `*` (not crossing `/`), `?`, `[...]`/`[^...]` classes, `\` escapes.
/// `None` when the pattern is malformed.
pub fn glob_match(pattern: &str, name: &str) -> Option<bool> {
    gopath::go_match(pattern, name).ok()
}

/// Whether a COPY source has wildcard characters (`*`, `?`, `[`).
pub fn has_wildcards(name: &str) -> bool {
    gopath::contains_wildcards(name)
}
