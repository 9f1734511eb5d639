//! Reading Dockerfiles exactly as Docker's BuildKit reads them.
//!
//! - [`parse`] / [`parse_named`]: the syntax tree ([`Dockerfile`], one
//!   [`Node`] per instruction) with a [`Span`] on every instruction, flag and
//!   argument; parser directives (`# syntax=`, `# escape=`, `# check=`), line
//!   continuations with the active escape character, comments, JSON (exec)
//!   versus shell form with BuildKit's fallback, `ENV`/`LABEL`/`ARG` forms
//!   and here-documents. [`Dockerfile::dump`] prints BuildKit's
//!   `Node.Dump()` format.
//! - [`Dockerfile::stages`]: typed instructions grouped into stages, with
//!   flags, `RUN --mount` options and `HEALTHCHECK` durations parsed, and
//!   unknown instructions or flags rejected as BuildKit rejects them.
//! - [`shell::Lexer`]: BuildKit's shell-word expansion (`$V`, `${V:-x}`,
//!   `${V#pat}`, `${V/a/b}`, quotes, escapes) and word splitting.
//!
//! Errors ([`ParseError`], [`InstructionError`]) carry the file name, line,
//! column and span, and implement [`miette::Diagnostic`] so a snippet can be
//! shown. No input makes this crate panic. It does no I/O.
//!
//! ```
//! use strata_dockerfile::{parse_named, InstructionKind, ShellOrExec};
//!
//! let src = "# syntax=docker/dockerfile:1\n\
//!            ARG BASE=alpine\n\
//!            FROM $BASE AS build\n\
//!            RUN --mount=type=cache,target=/root/.cache \\\n    make all\n\
//!            CMD [\"/app\"]\n";
//! let df = parse_named("Dockerfile", src).unwrap();
//! assert_eq!(df.directive("syntax"), Some("docker/dockerfile:1"));
//! assert_eq!(
//!     df.dump(),
//!     "(arg \"BASE=alpine\")\n(from \"$BASE\" \"AS\" \"build\")\n\
//!      (run [\"--mount=type=cache,target=/root/.cache\"] \"make all\")\n(cmd \"/app\")"
//! );
//! let run = &df.nodes[2];
//! assert_eq!((run.span.line, df.text(run.flags[0].span)), (4, "--mount=type=cache,target=/root/.cache"));
//!
//! let stages = df.stages().unwrap();
//! assert_eq!(stages.meta_args[0].args[0].name.value, "BASE");
//! let stage = &stages.stages[0];
//! assert_eq!((stage.name.as_deref(), stage.base.value.as_str()), (Some("build"), "$BASE"));
//! match &stage.instructions[0].kind {
//!     InstructionKind::Run(run) => {
//!         assert_eq!(run.cmd, ShellOrExec::Shell("make all".into()));
//!         assert_eq!(run.mounts[0].target.as_deref(), Some("/root/.cache"));
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//!
//! let err = parse_named("bad.Dockerfile", "FROM a\nENV PATH\n").unwrap_err();
//! assert_eq!(err.to_string(), "bad.Dockerfile:2:5: ENV must have two arguments");
//! ```
#![deny(missing_docs)]

mod ast;
mod error;
mod go;
mod instructions;
mod json;
mod line_parsers;
mod parser;
pub mod shell;
mod span;
mod unicode_tables;

pub use ast::{Arg, Directive, Flag, Heredoc, Node, Warning};
pub use error::{InstructionError, InstructionErrorKind, ParseError, ParseErrorKind};
pub use instructions::{
    parse_go_duration, ArgDef, ArgInstruction, BuildStages, CacheSharing, CopyAdd, Healthcheck,
    HeredocSource, Instruction, InstructionKind, KeyValue, MountSpec, MountType, NetworkMode,
    Onbuild, Run, SecurityMode, ShellOrExec, Spanned, Stage,
};
pub use parser::{chomp_heredoc_content, parse, parse_named, Dockerfile};
pub use span::Span;

/// Go's `strconv.Quote`, as used by [`Dockerfile::dump`] (handy for
/// printing values the way BuildKit does).
pub fn go_quote(s: &str) -> String {
    go::quote(s)
}
