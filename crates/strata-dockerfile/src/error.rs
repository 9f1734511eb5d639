//! Errors for people: each names the file, line and column, carries the
//! span of the offending part and the source (for a snippet), and says what
//! was expected.

use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

use crate::span::Span;

/// What went wrong while reading the Dockerfile's syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Nothing but comments and blank lines.
    #[error("file with no instructions")]
    NoInstructions,
    /// A physical line of 64 KiB or more.
    #[error("dockerfile line greater than max allowed size of 65535")]
    LineTooLong,
    /// A parser directive given twice.
    #[error("only one {0} parser directive can be used")]
    RepeatedDirective(String),
    /// `# escape=` with something other than `\` or `` ` ``.
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscape(String),
    /// `ENV NAME` / `LABEL NAME` without a value.
    #[error("{0} must have two arguments")]
    MissingValue(&'static str),
    /// `ENV a=1 b` in the `NAME=VALUE` form.
    #[error("Syntax error - can't find = in {}. Must be of the form: name=value", crate::go::quote(.0))]
    MissingEquals(String),
    /// A JSON array with something other than strings in it.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStrings,
    /// A here-document whose delimiter line never comes.
    #[error("unterminated heredoc {0}")]
    UnterminatedHeredoc(String),
    /// A here-document delimiter that cannot be read.
    #[error("{0}")]
    BadHeredoc(String),
}

impl ParseErrorKind {
    fn expected(&self) -> Option<&'static str> {
        Some(match self {
            ParseErrorKind::NoInstructions => "expected at least one instruction, such as FROM",
            ParseErrorKind::LineTooLong => "expected lines shorter than 64 KiB",
            ParseErrorKind::RepeatedDirective(_) => "expected each parser directive at most once",
            ParseErrorKind::InvalidEscape(_) => "expected `# escape=\\` or `# escape=``",
            ParseErrorKind::MissingValue(_) => "expected `NAME VALUE` or `NAME=VALUE ...`",
            ParseErrorKind::MissingEquals(_) => "expected every word to be `NAME=VALUE`",
            ParseErrorKind::JsonNotStrings => {
                "expected a JSON array of strings, such as [\"executable\", \"arg\"]"
            }
            ParseErrorKind::UnterminatedHeredoc(_) => {
                "expected a line holding only the here-document's delimiter"
            }
            ParseErrorKind::BadHeredoc(_) => "expected a here-document delimiter such as <<EOF",
        })
    }

    fn label(&self) -> &'static str {
        match self {
            ParseErrorKind::NoInstructions | ParseErrorKind::LineTooLong => "here",
            ParseErrorKind::RepeatedDirective(_) => "repeated directive",
            ParseErrorKind::InvalidEscape(_) => "invalid escape character",
            ParseErrorKind::MissingValue(_) => "no value",
            ParseErrorKind::MissingEquals(_) => "no `=` in this word",
            ParseErrorKind::JsonNotStrings => "not an array of strings",
            ParseErrorKind::UnterminatedHeredoc(_) => "here-document starts here",
            ParseErrorKind::BadHeredoc(_) => "bad here-document",
        }
    }
}

/// The file an error is in (boxed to keep errors small).
#[derive(Debug, Clone)]
struct Origin {
    file: String,
    source_code: NamedSource<Arc<str>>,
}

impl Origin {
    fn new(file: &str, src: &Arc<str>) -> Box<Self> {
        Box::new(Origin {
            file: file.to_string(),
            source_code: NamedSource::new(file, Arc::clone(src)),
        })
    }
}

/// A Dockerfile that BuildKit's parser would reject.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}:{}:{}: {kind}", origin.file, span.line, span.column)]
pub struct ParseError {
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// The offending part (with its line and column).
    pub span: Span,
    origin: Box<Origin>,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, file: &str, src: &Arc<str>, span: Span) -> Self {
        ParseError {
            kind,
            span,
            origin: Origin::new(file, src),
        }
    }

    /// The file name given to [`crate::parse_named`] (`Dockerfile` otherwise).
    pub fn file(&self) -> &str {
        &self.origin.file
    }

    /// 1-based line of the offending part.
    pub fn line(&self) -> usize {
        self.span.line
    }

    /// 1-based column of the offending part.
    pub fn column(&self) -> usize {
        self.span.column
    }

    /// What was expected instead.
    pub fn expected(&self) -> Option<&'static str> {
        self.kind.expected()
    }
}

impl Diagnostic for ParseError {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new("dockerfile::parse"))
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.origin.source_code)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(self.kind.label().to_string()),
            self.span,
        ))))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.expected()
            .map(|e| Box::new(e) as Box<dyn std::fmt::Display + 'a>)
    }
}

/// What is wrong with an instruction (BuildKit's `instructions` package).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstructionErrorKind {
    /// A keyword that is not an instruction.
    #[error("unknown instruction: {name}")]
    UnknownInstruction {
        /// The keyword as written.
        name: String,
        /// A close instruction name, if any.
        suggestion: Option<&'static str>,
    },
    /// A flag the instruction does not take.
    #[error("unknown flag: {flag}")]
    UnknownFlag {
        /// The instruction (upper case).
        instruction: String,
        /// The flag name, without dashes.
        flag: String,
        /// The flags the instruction takes.
        allowed: Vec<&'static str>,
    },
    /// A flag given twice.
    #[error("duplicate flag specified: {0}")]
    DuplicateFlag(String),
    /// `--flag` without `=value` where a value is needed.
    #[error("missing a value on flag: {0}")]
    MissingFlagValue(String),
    /// A boolean flag with a value other than true or false.
    #[error("expecting boolean value for flag {flag}, not: {value}")]
    NotABool {
        /// The flag name.
        flag: String,
        /// The value given.
        value: String,
    },
    /// Wrong number or shape of arguments.
    #[error("{0}")]
    Arguments(String),
    /// A value that does not parse (mount options, durations, modes...).
    #[error("{0}")]
    InvalidValue(String),
    /// An instruction before the first `FROM` (other than `ARG`).
    #[error("no build stage in current context")]
    NoStage,
}

/// An instruction BuildKit would refuse to build.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}:{}:{}: {kind}", origin.file, span.line, span.column)]
pub struct InstructionError {
    /// What is wrong.
    pub kind: InstructionErrorKind,
    /// The offending part (the flag, argument or whole instruction).
    pub span: Span,
    origin: Box<Origin>,
}

impl InstructionError {
    pub(crate) fn new(kind: InstructionErrorKind, file: &str, src: &Arc<str>, span: Span) -> Self {
        InstructionError {
            kind,
            span,
            origin: Origin::new(file, src),
        }
    }

    /// The file name.
    pub fn file(&self) -> &str {
        &self.origin.file
    }

    /// 1-based line of the offending part.
    pub fn line(&self) -> usize {
        self.span.line
    }

    /// 1-based column of the offending part.
    pub fn column(&self) -> usize {
        self.span.column
    }

    fn hint(&self) -> Option<String> {
        match &self.kind {
            InstructionErrorKind::UnknownInstruction {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean {s}?")),
            InstructionErrorKind::UnknownInstruction { .. } => {
                Some("expected an instruction such as FROM, RUN, COPY or ENV".into())
            }
            InstructionErrorKind::UnknownFlag {
                instruction,
                allowed,
                ..
            } if allowed.is_empty() => Some(format!("{instruction} takes no flags")),
            InstructionErrorKind::UnknownFlag {
                instruction,
                allowed,
                ..
            } => Some(format!(
                "{instruction} takes {}",
                allowed
                    .iter()
                    .map(|a| format!("--{a}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            InstructionErrorKind::MissingFlagValue(f) => Some(format!("expected --{f}=VALUE")),
            InstructionErrorKind::NotABool { flag, .. } => Some(format!(
                "expected --{flag}, --{flag}=true or --{flag}=false"
            )),
            InstructionErrorKind::NoStage => {
                Some("expected FROM before any instruction other than ARG".into())
            }
            _ => None,
        }
    }
}

impl Diagnostic for InstructionError {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new("dockerfile::instruction"))
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.origin.source_code)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let text = match &self.kind {
            InstructionErrorKind::UnknownInstruction { .. } => "unknown instruction",
            InstructionErrorKind::UnknownFlag { .. } => "unknown flag",
            InstructionErrorKind::DuplicateFlag(_) => "given again here",
            InstructionErrorKind::MissingFlagValue(_) => "no value",
            InstructionErrorKind::NotABool { .. } => "not true or false",
            InstructionErrorKind::NoStage => "before any FROM",
            _ => "here",
        };
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(text.to_string()),
            self.span,
        ))))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.hint()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display + 'a>)
    }
}
