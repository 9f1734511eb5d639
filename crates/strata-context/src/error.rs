//! Typed errors, each carrying what it is about (path, pattern, line).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

/// An ignore file's name and text, for snippets.
#[derive(Debug, Clone)]
pub(crate) struct SourceText {
    pub(crate) file: PathBuf,
    pub(crate) src: Arc<NamedSource<String>>,
}

/// What is wrong with a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternErrorKind {
    /// A `!` with nothing after it.
    LoneExclamation,
    /// `filepath.Match` syntax: an unclosed or malformed `[...]`, a
    /// trailing `\`.
    Syntax,
    /// Go's `regexp` refuses the expression the pattern becomes (a range
    /// like `[z-a]`, an escape like `\y`); Docker fails when the pattern is
    /// first tried against a path.
    Regex(String),
    /// A line of 64 KiB or more (Docker's reader fails on it).
    LineTooLong,
}

/// A `.dockerignore` (or `COPY --exclude`) pattern Docker would reject.
#[derive(Debug, Clone)]
pub struct PatternError {
    pub(crate) pattern: String,
    pub(crate) line: Option<usize>,
    pub(crate) kind: PatternErrorKind,
    pub(crate) origin: Option<SourceText>,
}

impl PatternError {
    /// The offending pattern as written (after trimming).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
    /// Its 1-based line in the ignore file, when it came from one.
    pub fn line(&self) -> Option<usize> {
        self.line
    }
    /// The ignore file, when the pattern came from one.
    pub fn file(&self) -> Option<&std::path::Path> {
        self.origin.as_ref().map(|o| o.file.as_path())
    }
    /// What is wrong.
    pub fn kind(&self) -> &PatternErrorKind {
        &self.kind
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.origin, self.line) {
            (Some(o), Some(line)) => write!(f, "{}:{line}: ", o.file.display())?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            _ => {}
        }
        match &self.kind {
            PatternErrorKind::LoneExclamation => {
                write!(f, "illegal exclusion pattern {:?}: `!` needs a pattern after it", self.pattern)
            }
            PatternErrorKind::Syntax => write!(
                f,
                "invalid pattern {:?}: syntax error in pattern (unclosed or malformed [...] class, or a trailing \\)",
                self.pattern
            ),
            PatternErrorKind::Regex(reason) => {
                write!(f, "invalid pattern {:?}: {reason}", self.pattern)
            }
            PatternErrorKind::LineTooLong => {
                write!(f, "line is 64 KiB or longer (starts {:?}); Docker cannot read it", self.pattern)
            }
        }
    }
}

impl std::error::Error for PatternError {}

impl Diagnostic for PatternError {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let hint = match &self.kind {
            PatternErrorKind::LoneExclamation => {
                "write the path to re-include after `!`, e.g. `!docs/README.md`, or delete the line"
            }
            PatternErrorKind::Syntax => {
                "a `[` needs a closing `]` with at least one character or range inside; `-` cannot start or end a range; write `\\[` for a literal bracket"
            }
            PatternErrorKind::Regex(_) => {
                "Docker turns patterns into Go regular expressions: ranges must go upwards (`[a-z]`), and `\\` may only escape punctuation"
            }
            PatternErrorKind::LineTooLong => "split the line; Docker reads at most 64 KiB per line",
        };
        Some(Box::new(hint))
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        let o = self.origin.as_ref()?;
        self.line?;
        Some(o.src.as_ref() as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let o = self.origin.as_ref()?;
        let line = self.line?;
        let text = o.src.inner().as_str();
        let mut start = 0;
        for (i, l) in text.split('\n').enumerate() {
            if i + 1 == line {
                let trimmed = l.trim_end_matches('\r');
                let lead = trimmed.len() - trimmed.trim_start().len();
                let len = trimmed.trim().len().max(1);
                return Some(Box::new(std::iter::once(LabeledSpan::new(
                    Some("this pattern".to_owned()),
                    start + lead,
                    len,
                ))));
            }
            start += l.len() + 1;
        }
        None
    }
}

/// Everything that can go wrong opening, walking, reading or indexing a
/// build context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// An ignore pattern Docker would reject.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A filesystem operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done (`read directory`, `open`, ...).
        op: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The context directory is not a directory.
    #[error("build context {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// A path that names nothing the builder receives.
    #[error("{path:?} is not in the build context")]
    NotFound {
        /// The context-relative path asked for.
        path: String,
    },
    /// A path the ignore file excludes: it must never reach a layer.
    #[error("{path:?} is excluded by {}", ignore_file.display())]
    Excluded {
        /// The context-relative path asked for.
        path: String,
        /// The ignore file that excludes it.
        ignore_file: PathBuf,
    },
    /// A path that leaves the context (`..`, an absolute symlink target
    /// outside, too many symlinks).
    #[error("{path:?} points outside the build context")]
    Escapes {
        /// The context-relative path asked for.
        path: String,
    },
    /// The path is not a regular file (for `open_file`).
    #[error("{path:?} is not a regular file")]
    NotAFile {
        /// The context-relative path asked for.
        path: String,
    },
    /// The file changed between the walk and the read (swapped for
    /// another file or a symlink).
    #[error("{path:?} changed while the context was being read")]
    Changed {
        /// The context-relative path.
        path: String,
    },
    /// A COPY source pattern that `filepath.Match` rejects.
    #[error("invalid source pattern {pattern:?}: syntax error in pattern")]
    SourcePattern {
        /// The pattern.
        pattern: String,
    },
}

impl ContextError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ContextError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether this is an I/O error.
    pub fn is_io(&self) -> bool {
        matches!(self, ContextError::Io { .. })
    }
}

impl Diagnostic for ContextError {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        match self {
            ContextError::Pattern(p) => p.help(),
            ContextError::Excluded { ignore_file, .. } => Some(Box::new(format!(
                "remove the pattern that matches it from {}, or add a `!path` exception after it",
                ignore_file.display()
            ))),
            _ => None,
        }
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        match self {
            ContextError::Pattern(p) => p.source_code(),
            _ => None,
        }
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        match self {
            ContextError::Pattern(p) => p.labels(),
            _ => None,
        }
    }
}
