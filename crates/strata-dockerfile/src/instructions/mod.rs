//! Typed instructions (BuildKit's `instructions` package): the syntax tree
//! turned into build stages with parsed flags, mounts and durations.
//!
//! Values stay unexpanded (quotes and `$VARS` as written); the builder
//! expands them with [`crate::shell::Lexer`] once ARG/ENV values are known.
//!
//! Split as BuildKit splits `frontend/dockerfile/instructions/`:
//! `commands` (the types, `commands.go`), `parse` (syntax tree to typed
//! commands, `parse.go`), `flags` (`--flag` parsing, `bflag.go`) and
//! `mounts` (`RUN --mount`, `commands_runmount.go`).

use crate::error::InstructionErrorKind;
use crate::span::Span;

mod commands;
mod flags;
mod mounts;
mod parse;

pub use commands::{
    ArgDef, ArgInstruction, BuildStages, CopyAdd, Healthcheck, HeredocSource, Instruction,
    InstructionKind, KeyValue, NetworkMode, Onbuild, Run, SecurityMode, ShellOrExec, Spanned,
    Stage,
};
pub use mounts::{CacheSharing, MountSpec, MountType};
pub use parse::parse_go_duration;

pub(super) type IResult<T> = Result<T, (InstructionErrorKind, Span)>;

pub(super) fn args_err<T>(msg: impl Into<String>, span: Span) -> IResult<T> {
    Err((InstructionErrorKind::Arguments(msg.into()), span))
}

pub(super) fn value_err<T>(msg: impl Into<String>, span: Span) -> IResult<T> {
    Err((InstructionErrorKind::InvalidValue(msg.into()), span))
}

#[cfg(test)]
pub(super) mod testutil {
    use super::{BuildStages, InstructionKind};
    use crate::parse;

    pub(in crate::instructions) fn stages(src: &str) -> Result<BuildStages, String> {
        let df = parse(src).map_err(|e| e.to_string())?;
        df.stages().map_err(|e| e.to_string())
    }

    pub(in crate::instructions) fn first(src: &str) -> InstructionKind {
        let s = stages(src).unwrap_or_else(|e| panic!("{e}"));
        s.stages[0].instructions[0].kind.clone()
    }
}
