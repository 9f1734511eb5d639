//! The typed instructions and their parts (BuildKit's `commands.go`).

use std::time::Duration;

use serde::Serialize;

use super::MountSpec;
use crate::ast::{Arg, Heredoc};
use crate::go;
use crate::span::Span;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it is in the source.
    pub span: Span,
}

impl<T> Spanned<T> {
    pub(super) fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

/// The Dockerfile as stages: `ARG`s before the first `FROM`, then one
/// [`Stage`] per `FROM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildStages {
    /// `ARG` instructions before the first `FROM` (usable in `FROM` lines).
    pub meta_args: Vec<ArgInstruction>,
    /// The stages in file order.
    pub stages: Vec<Stage>,
}

impl BuildStages {
    /// The stage named `name` (case-insensitive), or with that index.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        let lower = go::to_lower(name);
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
    }
}

/// An `ARG` instruction before the first `FROM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgInstruction {
    /// The arguments it declares.
    pub args: Vec<ArgDef>,
    /// The whole instruction.
    pub span: Span,
    /// The instruction's logical line.
    pub original: String,
}

/// One `NAME` or `NAME=default` of an `ARG`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDef {
    /// The name.
    pub name: Spanned<String>,
    /// The default value, unexpanded (quotes kept).
    pub default: Option<Spanned<String>>,
}

/// One `FROM` and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The base image or stage, unexpanded.
    pub base: Spanned<String>,
    /// `--platform=...`, unexpanded.
    pub platform: Option<Spanned<String>>,
    /// The instructions of the stage.
    pub instructions: Vec<Instruction>,
    /// The `FROM` instruction.
    pub span: Span,
    /// The `FROM` instruction's logical line.
    pub original: String,
    /// Index of the `FROM` in [`crate::Dockerfile::nodes`].
    pub node: usize,
}

/// One instruction inside a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// What it is, with its parsed fields.
    pub kind: InstructionKind,
    /// The keyword as written.
    pub keyword: String,
    /// The whole instruction (continuations and here-documents included).
    pub span: Span,
    /// The logical line (continuations joined), as BuildKit keeps it.
    pub original: String,
    /// Index of its syntax node in [`crate::Dockerfile::nodes`] (for an `ONBUILD`
    /// trigger: the `ONBUILD`'s), where the raw flags and arguments are.
    pub node: usize,
}

/// Every instruction with its parsed fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "instruction", rename_all = "lowercase")]
pub enum InstructionKind {
    /// `RUN`.
    Run(Run),
    /// `COPY`.
    Copy(CopyAdd),
    /// `ADD`.
    Add(CopyAdd),
    /// `ENV` pairs.
    Env(Vec<KeyValue>),
    /// `ARG` definitions.
    Arg(Vec<ArgDef>),
    /// `LABEL` pairs.
    Label(Vec<KeyValue>),
    /// `EXPOSE` ports, as written.
    Expose(Vec<Spanned<String>>),
    /// `VOLUME` paths (trimmed).
    Volume(Vec<Spanned<String>>),
    /// `USER`.
    User(Spanned<String>),
    /// `WORKDIR`.
    Workdir(Spanned<String>),
    /// `CMD`.
    Cmd(ShellOrExec),
    /// `ENTRYPOINT`.
    Entrypoint(ShellOrExec),
    /// `SHELL` (always JSON form).
    Shell(Vec<String>),
    /// `STOPSIGNAL`.
    StopSignal(Spanned<String>),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `ONBUILD`.
    Onbuild(Onbuild),
    /// `MAINTAINER` (deprecated).
    Maintainer(Spanned<String>),
}

/// A command in shell form (run by the stage's shell) or exec form (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "value", rename_all = "lowercase")]
pub enum ShellOrExec {
    /// Shell form: the text handed to the shell.
    Shell(String),
    /// Exec (JSON) form: the argument vector.
    Exec(Vec<String>),
}

impl ShellOrExec {
    /// Whether the JSON (exec) form was used.
    pub fn is_json(&self) -> bool {
        matches!(self, ShellOrExec::Exec(_))
    }

    pub(super) fn from_args(args: &[&Arg], json: bool) -> Self {
        if json {
            ShellOrExec::Exec(args.iter().map(|a| a.value.clone()).collect())
        } else {
            ShellOrExec::Shell(
                args.iter()
                    .map(|a| a.value.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        }
    }
}

/// `KEY=VALUE` of `ENV` or `LABEL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key.
    pub key: Spanned<String>,
    /// The value, unexpanded (quotes kept).
    pub value: Spanned<String>,
    /// Written in the legacy `KEY VALUE` form.
    pub legacy: bool,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The command.
    pub cmd: ShellOrExec,
    /// Here-documents (files or the script itself).
    pub heredocs: Vec<Heredoc>,
    /// `--mount` options, parsed.
    pub mounts: Vec<MountSpec>,
    /// `--network`.
    pub network: NetworkMode,
    /// `--security`.
    pub security: SecurityMode,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The builder's default.
    #[default]
    Default,
    /// No network.
    None,
    /// The host's network.
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    /// The default sandbox.
    #[default]
    Sandbox,
    /// All capabilities (needs the builder's permission).
    Insecure,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    /// `HEALTHCHECK [OPTIONS] CMD ...`.
    Cmd {
        /// The test command (shell form is `CMD-SHELL` in the image config).
        test: ShellOrExec,
        /// `--interval`.
        interval: Option<Duration>,
        /// `--timeout`.
        timeout: Option<Duration>,
        /// `--start-period`.
        start_period: Option<Duration>,
        /// `--start-interval`.
        start_interval: Option<Duration>,
        /// `--retries`.
        retries: Option<u32>,
    },
}

/// `ONBUILD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    /// The trigger text stored in the image (`RUN make`), here-documents
    /// appended as BuildKit does.
    pub expression: String,
    /// The trigger, parsed; `None` when it would only fail in the image
    /// that runs it (see `trigger_error`).
    pub trigger: Option<Box<Instruction>>,
    /// Why the trigger does not parse, if it does not.
    pub trigger_error: Option<String>,
}

/// `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CopyAdd {
    /// Source paths (or URLs for ADD), unexpanded.
    pub sources: Vec<Spanned<String>>,
    /// Sources given as here-documents (`COPY <<EOF /dst`).
    pub heredocs: Vec<HeredocSource>,
    /// The destination, unexpanded.
    pub dest: Spanned<String>,
    /// `--from` (COPY).
    pub from: Option<Spanned<String>>,
    /// `--chown`.
    pub chown: Option<Spanned<String>>,
    /// `--chmod`.
    pub chmod: Option<Spanned<String>>,
    /// `--link`.
    pub link: bool,
    /// `--parents` (COPY).
    pub parents: bool,
    /// `--exclude` (repeatable).
    pub exclude: Vec<Spanned<String>>,
    /// `--checksum` (ADD).
    pub checksum: Option<Spanned<String>>,
    /// `--keep-git-dir` (ADD).
    pub keep_git_dir: bool,
    /// `--unpack` (ADD), when given.
    pub unpack: Option<bool>,
    /// Whether the JSON form was used.
    pub json: bool,
}

/// A here-document used as a COPY/ADD source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeredocSource {
    /// The file name (the delimiter).
    pub name: String,
    /// The content, leading tabs removed for `<<-`.
    pub content: String,
    /// Whether variables are expanded in it.
    pub expand: bool,
    /// Where the content is.
    pub span: Span,
}
