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
//! assert_eq!(readme.digest, Some(strata_digest::Digest::sha256(b"read me")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What Docker does, and what this crate does
//!
//! - **Ignore file**: `<Dockerfile>.dockerignore` beside the Dockerfile
//!   (also `Dockerfile.dockerignore` for the default Dockerfile) replaces
//!   the context root's `.dockerignore`, as BuildKit reads them. Lines are
//!   read as moby/patternmatcher's `ignorefile.ReadAll` does (BOM, CRLF,
//!   `#` only in column 1, trimming, `filepath.Clean`, leading `/` dropped;
//!   see [`read_ignore_file`]).
//! - **Patterns** behave as patternmatcher's: anchored at the root, `*`,
//!   `?`, `[...]`/`[^...]`, `\` escapes, `**`, and the pattern text is
//!   turned into the same Go regular expression patternmatcher builds and
//!   read with Go's regexp syntax (so even odd patterns like `[*]` or
//!   `a\d` mean what they mean to Docker). Malformed patterns fail with
//!   the file, line and pattern; patterns Go's regexp refuses fail when
//!   first tried against a path, exactly when Docker's fail.
//! - **Exclusion** is `MatchesOrParentMatches`: the last pattern matching
//!   the path or one of its parent directories decides; `!` re-includes.
//!   Docker's walkers (BuildKit's fsutil and the classic builder's tar)
//!   use `MatchesUsingParentResults`, which agrees on every conformance
//!   case but not when an exception naming a parent comes *after* a
//!   pattern naming the child (`x/y` then `!x`): Docker still excludes
//!   `x/y`, strata includes it (the last matching pattern wins, as the
//!   patterns say and patternmatcher documents).
//! - **Exceptions below excluded directories** work as with BuildKit,
//!   which walks into excluded directories when an exception has
//!   wildcards (`*` then `!*/keep` keeps `d/keep`; the classic builder
//!   loses such files because it only looks for exceptions that start
//!   with the directory's name).
//! - **Walk**: an excluded directory is entered only if some exception
//!   could match a path below it (decided per pattern: literal prefixes,
//!   and a lazy DFA of the regular expression run over `dir/`); otherwise
//!   it is skipped whole. An excluded directory that holds a re-included
//!   entry is itself received ([`Entry::implicit`]), as BuildKit does.
//!   Symlinks are listed, never followed.
//! - **The Dockerfile and the ignore file** are in the context (so `COPY
//!   . .` copies them) unless the patterns exclude them. The builder reads
//!   the Dockerfile from [`Context::dockerfile`] regardless. This is what
//!   both builders do: BuildKit loads the Dockerfile through a separate
//!   source, the classic builder receives both files and removes them
//!   from the context when excluded.
//! - **Index**: sha256 of content only; time stamps are a cache hint.
//!   A file changed within [`RACY_WINDOW`] of being hashed is hashed again
//!   next time (git's "racily clean" problem).
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
