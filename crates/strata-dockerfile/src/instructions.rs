//! Typed instructions (BuildKit's `instructions` package): the syntax tree
//! turned into build stages with parsed flags, mounts and durations.
//!
//! Values stay unexpanded (quotes and `$VARS` as written); the builder
//! expands them with [`crate::shell::Lexer`] once ARG/ENV values are known.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::ast::{Arg, Flag, Heredoc, Node};
use crate::error::{InstructionError, InstructionErrorKind};
use crate::go;
use crate::parser::{chomp_heredoc_content, parse_heredoc, Dockerfile};
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
    fn new(value: T, span: Span) -> Self {
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
    /// Index of the `FROM` in [`Dockerfile::nodes`].
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
    /// Index of its syntax node in [`Dockerfile::nodes`] (for an `ONBUILD`
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

    fn from_args(args: &[&Arg], json: bool) -> Self {
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

/// `RUN --mount=type=...` kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A directory of the context or another stage (the default).
    #[default]
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A secret file (or environment variable).
    Secret,
    /// An SSH agent socket.
    Ssh,
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    /// Concurrent writers share it.
    Shared,
    /// Each writer gets its own when busy.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// Expands one mount option value (see [`MountSpec::parse`]).
pub type MountExpander<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// One `--mount=...` of a `RUN`, parsed as BuildKit does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MountSpec {
    /// `type=`.
    pub kind: MountType,
    /// `target=` / `dst=` / `destination=`.
    pub target: Option<String>,
    /// `source=` / `src=`.
    pub source: Option<String>,
    /// `from=`: a stage or image.
    pub from: Option<String>,
    /// `id=`.
    pub id: Option<String>,
    /// `sharing=`.
    pub sharing: Option<CacheSharing>,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `required` (secret and ssh).
    pub required: bool,
    /// Read-only (after `ro`/`rw` and the type's default).
    pub readonly: bool,
    /// `env=`: expose a secret as this environment variable.
    pub env: Option<String>,
    /// `size=` of a tmpfs, as written.
    pub size: Option<String>,
    /// Options whose value holds a variable: `(key, raw value)`, checked
    /// only once expanded (parse the flag again with an expander).
    pub deferred: Vec<(String, String)>,
    /// The flag's value as written (`type=cache,target=/x`).
    pub raw: String,
    /// Where the flag is.
    pub span: Span,
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

type IResult<T> = Result<T, (InstructionErrorKind, Span)>;

fn args_err<T>(msg: impl Into<String>, span: Span) -> IResult<T> {
    Err((InstructionErrorKind::Arguments(msg.into()), span))
}

fn value_err<T>(msg: impl Into<String>, span: Span) -> IResult<T> {
    Err((InstructionErrorKind::InvalidValue(msg.into()), span))
}

#[derive(Clone, Copy, PartialEq)]
enum FlagType {
    Bool,
    Str,
    Strings,
}

/// Parsed flags (BuildKit's `BFlags`).
struct Flags {
    used: HashMap<&'static str, Vec<(Option<String>, Span)>>,
}

impl Flags {
    fn parse(
        df: &Dockerfile,
        instruction: &str,
        flags: &[Flag],
        allowed: &[(&'static str, FlagType)],
    ) -> IResult<Flags> {
        let mut used: HashMap<&'static str, Vec<(Option<String>, Span)>> = HashMap::new();
        for f in flags {
            if f.text == "--" {
                break;
            }
            let body = f.text.strip_prefix("--").unwrap_or(&f.text);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(key, ty)) = allowed.iter().find(|(n, _)| *n == name) else {
                return Err((
                    InstructionErrorKind::UnknownFlag {
                        instruction: go::to_upper(instruction),
                        flag: name.to_string(),
                        allowed: allowed.iter().map(|(n, _)| *n).collect(),
                    },
                    f.span,
                ));
            };
            let entry = used.entry(key).or_default();
            if !entry.is_empty() && ty != FlagType::Strings {
                return Err((
                    InstructionErrorKind::DuplicateFlag(name.to_string()),
                    f.span,
                ));
            }
            let value_span = value_span(df, f);
            let v = match ty {
                FlagType::Bool => {
                    if value == Some("") {
                        return Err((InstructionErrorKind::MissingFlagValue(name.into()), f.span));
                    }
                    let lower = value.map(go::to_lower).unwrap_or_default();
                    match lower.as_str() {
                        "" => "true".to_string(),
                        "true" | "false" => lower,
                        _ => {
                            return Err((
                                InstructionErrorKind::NotABool {
                                    flag: name.into(),
                                    value: value.unwrap_or_default().into(),
                                },
                                value_span,
                            ))
                        }
                    }
                }
                FlagType::Str | FlagType::Strings => match value {
                    Some(v) => v.to_string(),
                    None => {
                        return Err((InstructionErrorKind::MissingFlagValue(name.into()), f.span))
                    }
                },
            };
            entry.push((Some(v), value_span));
        }
        Ok(Flags { used })
    }

    fn string(&self, name: &str) -> Option<Spanned<String>> {
        let (v, span) = self.used.get(name)?.first()?;
        Some(Spanned::new(v.clone().unwrap_or_default(), *span))
    }

    fn strings(&self, name: &str) -> Vec<Spanned<String>> {
        self.used
            .get(name)
            .map(|vs| {
                vs.iter()
                    .map(|(v, s)| Spanned::new(v.clone().unwrap_or_default(), *s))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|s| s.value == "true")
    }
}

/// The span of a flag's value when the flag is written plainly (no quotes
/// or escapes), else the whole flag.
fn value_span(df: &Dockerfile, f: &Flag) -> Span {
    let text = df.text(f.span);
    match (text == f.text, f.text.find('=')) {
        (true, Some(eq)) => df.span(f.span.offset + eq + 1, f.span.end()),
        _ => f.span,
    }
}

const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn suggest(name: &str) -> Option<&'static str> {
    let upper = go::to_upper(name);
    INSTRUCTIONS
        .iter()
        .map(|c| (levenshtein(&upper, c), *c))
        .filter(|(d, c)| *d <= 2 && *d < c.len())
        .min()
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// BuildKit's `nodeArgs`: the arguments, with an `ONBUILD` trigger flattened
/// to `[keyword, args...]`.
fn node_args(node: &Node) -> Vec<&Arg> {
    let mut out: Vec<&Arg> = node.args.iter().collect();
    if let Some(c) = &node.child {
        // The keyword is not an `Arg`; callers use the child directly.
        out.extend(c.args.iter());
    }
    out
}

/// What a typed instruction is: a stage start or a command.
enum Parsed {
    From(Box<Stage>),
    Cmd(Box<Instruction>),
}

impl Dockerfile {
    /// Converts the syntax tree into stages with typed instructions, as
    /// BuildKit's `instructions.Parse` does (meta `ARG`s before the first
    /// `FROM`, unknown instructions and flags rejected).
    pub fn stages(&self) -> Result<BuildStages, InstructionError> {
        let mut meta_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            let parsed = self
                .parse_instruction(node, index, &node.heredocs, 0)
                .map_err(|(kind, span)| self.instruction_error(kind, span))?;
            match parsed {
                Parsed::Cmd(inst)
                    if stages.is_empty() && matches!(inst.kind, InstructionKind::Arg(_)) =>
                {
                    let Instruction {
                        kind,
                        span,
                        original,
                        ..
                    } = *inst;
                    if let InstructionKind::Arg(args) = kind {
                        meta_args.push(ArgInstruction {
                            args,
                            span,
                            original,
                        });
                    }
                }
                Parsed::From(stage) => stages.push(*stage),
                Parsed::Cmd(inst) => match stages.last_mut() {
                    Some(stage) => stage.instructions.push(*inst),
                    None => {
                        return Err(self
                            .instruction_error(InstructionErrorKind::NoStage, node.keyword_span))
                    }
                },
            }
        }
        Ok(BuildStages { meta_args, stages })
    }

    fn instruction_error(&self, kind: InstructionErrorKind, span: Span) -> InstructionError {
        InstructionError::new(kind, &self.name, &self.source, span)
    }

    fn parse_instruction(
        &self,
        node: &Node,
        index: usize,
        heredocs: &[Heredoc],
        depth: usize,
    ) -> IResult<Parsed> {
        let args = node_args(node);
        let lower = node.instruction();
        let whole = node.span;
        let flags =
            |allowed: &[(&'static str, FlagType)]| Flags::parse(self, &lower, &node.flags, allowed);
        let exactly_one = |name: &str| -> IResult<Spanned<String>> {
            match args.as_slice() {
                [a] => Ok(Spanned::new(a.value.clone(), a.span)),
                _ => args_err(format!("{name} requires exactly one argument"), whole),
            }
        };
        let at_least_one = |name: &str| -> IResult<()> {
            if args.is_empty() {
                args_err(format!("{name} requires at least one argument"), whole)
            } else {
                Ok(())
            }
        };
        let kind = match lower.as_str() {
            "env" | "label" => {
                flags(&[])?;
                let name = if lower == "env" { "ENV" } else { "LABEL" };
                let kvs = key_values(&args, name, whole)?;
                if lower == "env" {
                    InstructionKind::Env(kvs)
                } else {
                    InstructionKind::Label(kvs)
                }
            }
            "maintainer" => {
                let v = exactly_one("MAINTAINER")?;
                flags(&[])?;
                InstructionKind::Maintainer(v)
            }
            "add" | "copy" => {
                let name = if lower == "add" { "ADD" } else { "COPY" };
                if args.len() < 2 {
                    return args_err(
                        format!("{name} requires at least two arguments, but only one was provided. Destination could not be determined"),
                        whole,
                    );
                }
                let ca = if lower == "add" {
                    let f = flags(&[
                        ("exclude", FlagType::Strings),
                        ("chown", FlagType::Str),
                        ("chmod", FlagType::Str),
                        ("link", FlagType::Bool),
                        ("keep-git-dir", FlagType::Bool),
                        ("checksum", FlagType::Str),
                        ("unpack", FlagType::Bool),
                    ])?;
                    CopyAdd {
                        chown: f.string("chown"),
                        chmod: f.string("chmod"),
                        link: f.bool("link").unwrap_or(false),
                        keep_git_dir: f.bool("keep-git-dir").unwrap_or(false),
                        checksum: f.string("checksum"),
                        exclude: f.strings("exclude"),
                        unpack: f.bool("unpack"),
                        ..Default::default()
                    }
                } else {
                    let f = flags(&[
                        ("exclude", FlagType::Strings),
                        ("parents", FlagType::Bool),
                        ("chown", FlagType::Str),
                        ("from", FlagType::Str),
                        ("chmod", FlagType::Str),
                        ("link", FlagType::Bool),
                    ])?;
                    CopyAdd {
                        chown: f.string("chown"),
                        chmod: f.string("chmod"),
                        from: f.string("from"),
                        link: f.bool("link").unwrap_or(false),
                        parents: f.bool("parents").unwrap_or(false),
                        exclude: f.strings("exclude"),
                        ..Default::default()
                    }
                };
                let ca = sources_and_dest(ca, &args, heredocs, name, node.json)?;
                if lower == "add" {
                    InstructionKind::Add(ca)
                } else {
                    InstructionKind::Copy(ca)
                }
            }
            "from" => {
                let name = stage_name(&args, whole)?;
                let f = flags(&[("platform", FlagType::Str)])?;
                let base = args
                    .first()
                    .map(|a| Spanned::new(a.value.clone(), a.span))
                    .unwrap_or_else(|| Spanned::new(String::new(), whole));
                return Ok(Parsed::From(Box::new(Stage {
                    name,
                    base,
                    platform: f.string("platform"),
                    instructions: Vec::new(),
                    span: whole,
                    original: go::trim_space(&node.original).to_string(),
                    node: index,
                })));
            }
            "onbuild" => {
                let Some(child) = &node.child else {
                    return args_err("ONBUILD requires at least one argument", whole);
                };
                flags(&[])?;
                let trigger = go::to_upper(go::trim_space(&child.keyword));
                match trigger.as_str() {
                    "ONBUILD" => {
                        return args_err(
                            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                            child.keyword_span,
                        )
                    }
                    "MAINTAINER" | "FROM" => {
                        return args_err(
                            format!("{trigger} isn't allowed as an ONBUILD trigger"),
                            child.keyword_span,
                        )
                    }
                    _ => {}
                }
                let mut expression = strip_onbuild(&node.original).to_string();
                for h in heredocs {
                    expression.push('\n');
                    expression.push_str(&h.content);
                    expression.push_str(&h.name);
                }
                let (trigger, trigger_error) = if depth > 8 {
                    (None, Some("ONBUILD triggers nested too deeply".to_string()))
                } else {
                    match self.parse_instruction(child, index, heredocs, depth + 1) {
                        Ok(Parsed::Cmd(i)) => (Some(i), None),
                        Ok(Parsed::From(_)) => (
                            None,
                            Some("FROM isn't allowed as an ONBUILD trigger".into()),
                        ),
                        Err((kind, _)) => (None, Some(kind.to_string())),
                    }
                };
                InstructionKind::Onbuild(Onbuild {
                    expression,
                    trigger,
                    trigger_error,
                })
            }
            "workdir" => {
                let v = exactly_one("WORKDIR")?;
                flags(&[])?;
                InstructionKind::Workdir(v)
            }
            "run" => {
                let f = flags(&[
                    ("mount", FlagType::Strings),
                    ("network", FlagType::Str),
                    ("security", FlagType::Str),
                ])?;
                let mut mounts = Vec::new();
                for m in f.strings("mount") {
                    let spec = MountSpec::parse(&m.value, None)
                        .map_err(|e| (InstructionErrorKind::InvalidValue(e), m.span))?;
                    mounts.push(MountSpec {
                        span: m.span,
                        ..spec
                    });
                }
                let network = match f.string("network") {
                    None => NetworkMode::Default,
                    Some(v) => match v.value.as_str() {
                        "default" => NetworkMode::Default,
                        "none" => NetworkMode::None,
                        "host" => NetworkMode::Host,
                        other => {
                            return value_err(
                                format!("unsupported network mode {}", go::quote(other)),
                                v.span,
                            )
                        }
                    },
                };
                let security = match f.string("security") {
                    None => SecurityMode::Sandbox,
                    Some(v) => match v.value.as_str() {
                        "sandbox" => SecurityMode::Sandbox,
                        "insecure" => SecurityMode::Insecure,
                        other => {
                            return value_err(
                                format!("unsupported security mode {}", go::quote(other)),
                                v.span,
                            )
                        }
                    },
                };
                InstructionKind::Run(Run {
                    cmd: ShellOrExec::from_args(&args, node.json),
                    heredocs: heredocs.to_vec(),
                    mounts,
                    network,
                    security,
                })
            }
            "cmd" => {
                flags(&[])?;
                InstructionKind::Cmd(ShellOrExec::from_args(&args, node.json))
            }
            "entrypoint" => {
                flags(&[])?;
                InstructionKind::Entrypoint(ShellOrExec::from_args(&args, node.json))
            }
            "healthcheck" => {
                at_least_one("HEALTHCHECK")?;
                let typ = go::to_upper(&args[0].value);
                let rest = &args[1..];
                if typ == "NONE" {
                    if !rest.is_empty() {
                        return args_err("HEALTHCHECK NONE takes no arguments", rest[0].span);
                    }
                    InstructionKind::Healthcheck(Healthcheck::None)
                } else {
                    let f = flags(&[
                        ("interval", FlagType::Str),
                        ("timeout", FlagType::Str),
                        ("start-period", FlagType::Str),
                        ("start-interval", FlagType::Str),
                        ("retries", FlagType::Str),
                    ])?;
                    if typ != "CMD" {
                        return args_err(
                            format!("Unknown type {} in HEALTHCHECK (try CMD)", go::quote(&typ)),
                            args[0].span,
                        );
                    }
                    let test = ShellOrExec::from_args(rest, node.json);
                    let empty = match &test {
                        ShellOrExec::Exec(v) => v.is_empty(),
                        ShellOrExec::Shell(_) => rest.is_empty(),
                    };
                    if empty {
                        return args_err("Missing command after HEALTHCHECK CMD", whole);
                    }
                    let retries = match f.string("retries") {
                        Some(r) if !r.value.is_empty() => Some(parse_retries(&r)?),
                        _ => None,
                    };
                    InstructionKind::Healthcheck(Healthcheck::Cmd {
                        test,
                        interval: interval(&f, "interval")?,
                        timeout: interval(&f, "timeout")?,
                        start_period: interval(&f, "start-period")?,
                        start_interval: interval(&f, "start-interval")?,
                        retries,
                    })
                }
            }
            "expose" => {
                at_least_one("EXPOSE")?;
                flags(&[])?;
                InstructionKind::Expose(
                    args.iter()
                        .map(|a| Spanned::new(a.value.clone(), a.span))
                        .collect(),
                )
            }
            "user" => {
                let v = exactly_one("USER")?;
                flags(&[])?;
                InstructionKind::User(v)
            }
            "volume" => {
                at_least_one("VOLUME")?;
                flags(&[])?;
                let mut vols = Vec::new();
                for a in &args {
                    let v = go::trim_space(&a.value);
                    if v.is_empty() {
                        return args_err("VOLUME specified can not be an empty string", a.span);
                    }
                    vols.push(Spanned::new(v.to_string(), a.span));
                }
                InstructionKind::Volume(vols)
            }
            "stopsignal" => InstructionKind::StopSignal(exactly_one("STOPSIGNAL")?),
            "arg" => {
                at_least_one("ARG")?;
                flags(&[])?;
                let mut defs = Vec::new();
                for a in &args {
                    defs.push(match a.value.split_once('=') {
                        Some((k, v)) => {
                            if k.is_empty() {
                                return args_err("ARG names can not be blank", a.span);
                            }
                            let (ks, vs) = split_span(self, a, k.len());
                            ArgDef {
                                name: Spanned::new(k.to_string(), ks),
                                default: Some(Spanned::new(v.to_string(), vs)),
                            }
                        }
                        None => ArgDef {
                            name: Spanned::new(a.value.clone(), a.span),
                            default: None,
                        },
                    });
                }
                InstructionKind::Arg(defs)
            }
            "shell" => {
                flags(&[])?;
                if args.is_empty() && node.json {
                    return args_err("SHELL requires at least one argument", whole);
                }
                if !node.json {
                    return args_err("SHELL requires the arguments to be in JSON form", whole);
                }
                InstructionKind::Shell(args.iter().map(|a| a.value.clone()).collect())
            }
            _ => {
                return Err((
                    InstructionErrorKind::UnknownInstruction {
                        name: node.keyword.clone(),
                        suggestion: suggest(&node.keyword),
                    },
                    node.keyword_span,
                ))
            }
        };
        Ok(Parsed::Cmd(Box::new(Instruction {
            kind,
            keyword: node.keyword.clone(),
            span: whole,
            original: node.original.clone(),
            node: index,
        })))
    }
}

/// Key and value spans of a `KEY=VALUE` argument written plainly.
fn split_span(df: &Dockerfile, a: &Arg, key_len: usize) -> (Span, Span) {
    if df.text(a.span) == a.value {
        (
            df.span(a.span.offset, a.span.offset + key_len),
            df.span(a.span.offset + key_len + 1, a.span.end()),
        )
    } else {
        (a.span, a.span)
    }
}

/// `(?i)^\s*ONBUILD\s*` removed.
fn strip_onbuild(original: &str) -> &str {
    let is_s = |c: char| matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ');
    let t = original.trim_start_matches(is_s);
    match t.get(..7) {
        Some(k) if k.eq_ignore_ascii_case("onbuild") => t[7..].trim_start_matches(is_s),
        _ => original,
    }
}

fn key_values(args: &[&Arg], name: &str, whole: Span) -> IResult<Vec<KeyValue>> {
    if args.is_empty() {
        return args_err(format!("{name} requires at least one argument"), whole);
    }
    if args.len() % 3 != 0 {
        return args_err(format!("Bad input to {name}, too many arguments"), whole);
    }
    let mut out = Vec::new();
    for t in args.chunks(3) {
        if t[0].value.is_empty() {
            return args_err(format!("{name} names can not be blank"), t[0].span);
        }
        out.push(KeyValue {
            key: Spanned::new(t[0].value.clone(), t[0].span),
            value: Spanned::new(t[1].value.clone(), t[1].span),
            legacy: t[2].value.is_empty(),
        });
    }
    Ok(out)
}

fn stage_name(args: &[&Arg], whole: Span) -> IResult<Option<String>> {
    match args {
        [_, as_kw, name] if as_kw.value.eq_ignore_ascii_case("as") => {
            let lower = go::to_lower(&name.value);
            let mut chars = lower.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                });
            if !valid {
                return value_err(
                    format!(
                        "invalid name for build stage: {}, name can't start with a number or contain symbols",
                        go::quote(&name.value)
                    ),
                    name.span,
                );
            }
            Ok(Some(lower))
        }
        [_] => Ok(None),
        _ => args_err("FROM requires either one or three arguments", whole),
    }
}

fn sources_and_dest(
    mut ca: CopyAdd,
    args: &[&Arg],
    heredocs: &[Heredoc],
    name: &str,
    json: bool,
) -> IResult<CopyAdd> {
    let (dest, srcs) = match args.split_last() {
        Some(x) => x,
        None => {
            return args_err(
                format!("{name} requires at least two arguments"),
                Span::default(),
            )
        }
    };
    if matches!(parse_heredoc(&dest.value), Ok(Some(_))) {
        return args_err(
            format!("{name} cannot accept a heredoc as a destination"),
            dest.span,
        );
    }
    let lookup: HashMap<&str, &Heredoc> = heredocs.iter().map(|h| (h.name.as_str(), h)).collect();
    for src in srcs {
        match parse_heredoc(&src.value) {
            Ok(Some(head)) => {
                let doc = lookup.get(head.name.as_str());
                let raw = doc.map(|d| d.content.as_str()).unwrap_or("");
                let content = if head.chomp {
                    chomp_heredoc_content(raw)
                } else {
                    raw.to_string()
                };
                ca.heredocs.push(HeredocSource {
                    name: head.name,
                    content,
                    expand: head.expand,
                    span: doc.map(|d| d.span).unwrap_or(src.span),
                });
            }
            _ => ca.sources.push(Spanned::new(src.value.clone(), src.span)),
        }
    }
    ca.dest = Spanned::new(dest.value.clone(), dest.span);
    ca.json = json;
    Ok(ca)
}

fn interval(f: &Flags, name: &str) -> IResult<Option<Duration>> {
    let Some(v) = f.string(name) else {
        return Ok(None);
    };
    if v.value.is_empty() {
        return Ok(None);
    }
    let d =
        parse_go_duration(&v.value).map_err(|e| (InstructionErrorKind::InvalidValue(e), v.span))?;
    if d.is_zero() {
        return Ok(Some(d));
    }
    if d < Duration::from_millis(1) {
        return value_err(
            format!("Interval {} cannot be less than 1ms", go::quote(name)),
            v.span,
        );
    }
    Ok(Some(d))
}

fn parse_retries(r: &Spanned<String>) -> IResult<u32> {
    let s = r.value.as_str();
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let syntax = || {
        value_err(
            format!("strconv.ParseInt: parsing {}: invalid syntax", go::quote(s)),
            r.span,
        )
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return syntax();
    }
    match s.parse::<i64>() {
        Ok(n) if n < i64::from(i32::MIN) || n > i64::from(i32::MAX) => value_err(
            format!(
                "strconv.ParseInt: parsing {}: value out of range",
                go::quote(s)
            ),
            r.span,
        ),
        Ok(n) if n < 0 => value_err(format!("--retries cannot be negative ({n})"), r.span),
        Ok(n) => Ok(n as u32),
        Err(_) => value_err(
            format!(
                "strconv.ParseInt: parsing {}: value out of range",
                go::quote(s)
            ),
            r.span,
        ),
    }
}

/// Go's `time.ParseDuration` (negative durations are refused: BuildKit
/// rejects them as shorter than its minimum).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {}", go::quote(s));
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let b = rest.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u128 = 0;
        for &c in &b[..int_len] {
            v = v * 10 + u128::from(c - b'0');
            if v > 1 << 63 {
                return Err(invalid());
            }
        }
        rest = &rest[int_len..];
        let mut frac: u128 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflow = false;
            for c in rest[..n].bytes() {
                if overflow {
                    continue;
                }
                if frac > (1u128 << 63) / 10 {
                    overflow = true;
                    continue;
                }
                frac = frac * 10 + u128::from(c - b'0');
                scale *= 10.0;
            }
            post = n > 0;
            rest = &rest[n..];
        }
        if int_len == 0 && !post {
            return Err(invalid());
        }
        let unit_len = rest
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", go::quote(s)));
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let mult: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go::quote(unit),
                    go::quote(s)
                ))
            }
        };
        if v > (1u128 << 63) / mult {
            return Err(invalid());
        }
        v *= mult;
        if frac > 0 {
            v += (frac as f64 * (mult as f64 / scale)) as u128;
            if v > 1 << 63 {
                return Err(invalid());
            }
        }
        total += v;
        if total > 1 << 63 {
            return Err(invalid());
        }
    }
    if neg {
        if total == 0 {
            return Ok(Duration::ZERO);
        }
        return Err(format!("duration {} is negative", go::quote(s)));
    }
    if total > (1 << 63) - 1 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(s, radix, 32)`.
fn parse_u32(s: &str, radix: u32) -> Option<u32> {
    if s.is_empty() || !s.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(s, radix).ok()
}

/// One CSV record (Go's `encoding/csv`, default options).
fn csv_record(s: &str) -> Result<Vec<String>, String> {
    let line = s.split(['\n']).next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err("EOF".into());
    }
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        if let Some(q) = rest.strip_prefix('"') {
            let mut field = String::new();
            let mut chars = q.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if let Some(&(_, '"')) = chars.peek() {
                        chars.next();
                        field.push('"');
                        continue;
                    }
                    end = Some(i + 1);
                    break;
                }
                field.push(c);
            }
            let Some(end) = end else {
                return Err("extraneous or missing \" in quoted-field".into());
            };
            fields.push(field);
            rest = &q[end..];
            match rest.strip_prefix(',') {
                Some(r) => rest = r,
                None if rest.is_empty() => return Ok(fields),
                None => return Err("extraneous or missing \" in quoted-field".into()),
            }
        } else {
            let (field, next) = match rest.find(',') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            if field.contains('"') {
                return Err("bare \" in non-quoted-field".into());
            }
            fields.push(field.to_string());
            match next {
                Some(n) => rest = n,
                None => return Ok(fields),
            }
        }
    }
}

impl MountSpec {
    /// Parses the value of a `RUN --mount=` flag as BuildKit does. With an
    /// `expand` function each option's value is expanded first; without
    /// one, string options keep variables as written and typed options
    /// holding a `$` go to [`MountSpec::deferred`].
    pub fn parse(value: &str, expand: Option<MountExpander<'_>>) -> Result<MountSpec, String> {
        let fields = csv_record(value).map_err(|e| format!("failed to parse csv mounts: {e}"))?;
        let mut m = MountSpec {
            raw: value.to_string(),
            ..Default::default()
        };
        let mut ro_auto = true;
        let secret_or_ssh = |m: &MountSpec| matches!(m.kind, MountType::Secret | MountType::Ssh);
        for field in fields {
            let (key, val) = match field.split_once('=') {
                Some((k, v)) => (go::to_lower(k), Some(v.to_string())),
                None => (go::to_lower(&field), None),
            };
            let Some(mut val) = val else {
                match key.as_str() {
                    "readonly" | "ro" => {
                        m.readonly = true;
                        ro_auto = false;
                        continue;
                    }
                    "readwrite" | "rw" => {
                        m.readonly = false;
                        ro_auto = false;
                        continue;
                    }
                    "required" if secret_or_ssh(&m) => {
                        m.required = true;
                        continue;
                    }
                    "required" => {
                        return Err(format!(
                            "unexpected key 'required' for mount type '{}'",
                            type_name(m.kind)
                        ))
                    }
                    _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
                }
            };
            if let Some(f) = expand {
                val = f(&val)?;
            } else if key == "from" {
                if val.chars().skip_while(|&c| c != '$').nth(1).is_some() {
                    return Err(
                        "'from' doesn't support variable expansion, define alias stage instead"
                            .into(),
                    );
                }
            } else if val.contains('$')
                && !matches!(
                    key.as_str(),
                    "source" | "src" | "target" | "dst" | "destination" | "id" | "env" | "size"
                )
            {
                m.deferred.push((key, val));
                continue;
            }
            match key.as_str() {
                "type" => {
                    m.kind = match go::to_lower(&val).as_str() {
                        "bind" => MountType::Bind,
                        "cache" => MountType::Cache,
                        "tmpfs" => MountType::Tmpfs,
                        "secret" => MountType::Secret,
                        "ssh" => MountType::Ssh,
                        _ => return Err(format!("unsupported mount type {}", go::quote(&val))),
                    }
                }
                "from" => m.from = Some(val),
                "source" | "src" => m.source = Some(val),
                "target" | "dst" | "destination" => m.target = Some(val),
                "readonly" | "ro" => {
                    m.readonly = parse_bool(&val)
                        .ok_or_else(|| format!("invalid value for {key}: {val}"))?;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    let rw = parse_bool(&val)
                        .ok_or_else(|| format!("invalid value for {key}: {val}"))?;
                    m.readonly = !rw;
                    ro_auto = false;
                }
                "required" => {
                    if !secret_or_ssh(&m) {
                        return Err(format!(
                            "unexpected key 'required' for mount type '{}'",
                            type_name(m.kind)
                        ));
                    }
                    m.required = parse_bool(&val)
                        .ok_or_else(|| format!("invalid value for {key}: {val}"))?;
                }
                "id" => m.id = Some(val),
                "sharing" => {
                    m.sharing = Some(match go::to_lower(&val).as_str() {
                        "shared" => CacheSharing::Shared,
                        "private" => CacheSharing::Private,
                        "locked" => CacheSharing::Locked,
                        _ => return Err(format!("unsupported sharing value {}", go::quote(&val))),
                    })
                }
                "mode" => {
                    m.mode = Some(
                        parse_u32(&val, 8)
                            .ok_or_else(|| format!("invalid value {val} for mode"))?,
                    )
                }
                "uid" => {
                    m.uid = Some(
                        parse_u32(&val, 10)
                            .ok_or_else(|| format!("invalid value {val} for uid"))?,
                    )
                }
                "gid" => {
                    m.gid = Some(
                        parse_u32(&val, 10)
                            .ok_or_else(|| format!("invalid value {val} for gid"))?,
                    )
                }
                "env" => m.env = Some(val),
                "size" => m.size = Some(val),
                _ => return Err(format!("unexpected key '{key}' in '{field}'")),
            }
        }
        let file_info = matches!(
            m.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        );
        for (set, what) in [
            (m.mode.is_some(), "mode"),
            (m.uid.is_some(), "uid"),
            (m.gid.is_some(), "gid"),
        ] {
            if set && !file_info {
                return Err(format!(
                    "{what} not allowed for {} type mounts",
                    go::quote(type_name(m.kind))
                ));
            }
        }
        if ro_auto {
            m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
        }
        if m.sharing.is_some() && m.kind != MountType::Cache {
            return Err(format!(
                "invalid cache sharing set for {} mount",
                type_name(m.kind)
            ));
        }
        if m.kind == MountType::Secret {
            if m.from.is_some() {
                return Err("secret mount should not have a from".into());
            }
            if m.source.is_none()
                && m.target.is_none()
                && m.id.is_none()
                && m.env.is_none()
                && m.deferred.is_empty()
            {
                return Err("invalid secret mount. one of source, target required".into());
            }
            if m.source.is_some() && m.id.is_some() {
                return Err("both source and id can't be set".into());
            }
        }
        Ok(m)
    }
}

fn type_name(t: MountType) -> &'static str {
    match t {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn stages(src: &str) -> Result<BuildStages, String> {
        let df = parse(src).map_err(|e| e.to_string())?;
        df.stages().map_err(|e| e.to_string())
    }

    fn first(src: &str) -> InstructionKind {
        let s = stages(src).unwrap_or_else(|e| panic!("{e}"));
        s.stages[0].instructions[0].kind.clone()
    }

    #[test]
    fn meta_args_and_stages() {
        let s = stages("ARG V=1 W\nFROM --platform=$P img:$V AS Build\nRUN x\nFROM build\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.meta_args.len(), 1);
        assert_eq!(
            s.meta_args[0].args[0]
                .default
                .as_ref()
                .map(|d| d.value.as_str()),
            Some("1")
        );
        assert_eq!(s.meta_args[0].args[1].default, None);
        assert_eq!(s.stages[0].name.as_deref(), Some("build"));
        assert_eq!(s.stages[0].base.value, "img:$V");
        assert_eq!(
            s.stages[0].platform.as_ref().map(|p| p.value.as_str()),
            Some("$P")
        );
        assert_eq!(s.stages[1].name, None);
        assert!(s.stage("BUILD").is_some() && s.stage("1").is_some());
    }

    #[test]
    fn run_flags_and_mounts() {
        let k = first("FROM a\nRUN --mount=type=cache,target=/root/.cache,sharing=locked,id=$ID --mount=type=secret,id=tok,required --network=none [\"make\", \"all\"]\n");
        let InstructionKind::Run(run) = k else {
            panic!("not a run")
        };
        assert_eq!(
            run.cmd,
            ShellOrExec::Exec(vec!["make".into(), "all".into()])
        );
        assert_eq!(run.network, NetworkMode::None);
        assert_eq!(run.mounts[0].kind, MountType::Cache);
        assert_eq!(run.mounts[0].sharing, Some(CacheSharing::Locked));
        assert_eq!(run.mounts[0].id.as_deref(), Some("$ID"));
        assert!(!run.mounts[0].readonly);
        assert!(run.mounts[1].required && run.mounts[1].readonly);
    }

    #[test]
    fn mount_errors() {
        for (v, want) in [
            ("type=nope", "unsupported mount type \"nope\""),
            (
                "type=bind,mode=0700",
                "mode not allowed for \"bind\" type mounts",
            ),
            ("type=cache,mode=9", "invalid value 9 for mode"),
            ("type=secret", "invalid secret mount"),
            ("type=bind,foo=bar", "unexpected key 'foo' in 'foo=bar'"),
            ("from=$X", "doesn't support variable expansion"),
            (
                "type=bind,required",
                "unexpected key 'required' for mount type 'bind'",
            ),
            ("type=bind,sharing=shared", "invalid cache sharing"),
            ("a\"b", "bare \""),
        ] {
            let got = MountSpec::parse(v, None).map(|_| ()).unwrap_err();
            assert!(got.contains(want), "{v}: {got}");
        }
        let m = MountSpec::parse("type=cache,uid=$U,target=/x", None).unwrap_or_default();
        assert_eq!(m.deferred, vec![("uid".to_string(), "$U".to_string())]);
        let exp = |s: &str| Ok::<_, String>(s.replace("$U", "1000"));
        let m = MountSpec::parse("type=cache,uid=$U,target=/x", Some(&exp)).unwrap_or_default();
        assert_eq!(m.uid, Some(1000));
    }

    #[test]
    fn copy_add_flags_and_heredocs() {
        let k = first("FROM a\nCOPY --from=b --chmod=755 --link --exclude=*.md --exclude=x --parents <<-EOF s1 s2 /dst/\n\thello\n\tEOF\n");
        let InstructionKind::Copy(c) = k else {
            panic!("not a copy")
        };
        assert_eq!(c.from.as_ref().map(|f| f.value.as_str()), Some("b"));
        assert!(c.link && c.parents);
        assert_eq!(c.exclude.len(), 2);
        assert_eq!(
            c.sources
                .iter()
                .map(|s| s.value.as_str())
                .collect::<Vec<_>>(),
            ["s1", "s2"]
        );
        assert_eq!(c.heredocs[0].content, "hello\n");
        assert_eq!(c.dest.value, "/dst/");
        let k =
            first("FROM a\nADD --checksum=sha256:abc --keep-git-dir=true https://x/y.git /src\n");
        let InstructionKind::Add(a) = k else {
            panic!("not an add")
        };
        assert!(a.keep_git_dir);
        assert_eq!(a.checksum.map(|c| c.value), Some("sha256:abc".into()));
    }

    #[test]
    fn unknown_flags_and_instructions_are_errors_with_spans() {
        let df = parse("FROM a\nCOPY --chown=1 --bogus=2 a b\n").unwrap();
        let e = df.stages().unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:2:16: unknown flag: bogus");
        assert_eq!(df.text(e.span), "--bogus=2");
        let e = stages("FROM a\nRUNN x\n").unwrap_err();
        assert!(e.contains("unknown instruction: RUNN"), "{e}");
        let df = parse("FROM a\nRUNN x\n").unwrap();
        let e = df.stages().unwrap_err();
        assert!(matches!(
            e.kind,
            InstructionErrorKind::UnknownInstruction {
                suggestion: Some("RUN"),
                ..
            }
        ));
        for (src, want) in [
            ("RUN x\n", "no build stage"),
            ("FROM a b\n", "FROM requires either one or three arguments"),
            ("FROM a AS 1x\n", "invalid name for build stage"),
            ("FROM a\nCOPY x\n", "COPY requires at least two arguments"),
            (
                "FROM a\nCOPY a <<EOF\nx\nEOF\n",
                "cannot accept a heredoc as a destination",
            ),
            ("FROM a\nRUN --link x\n", "unknown flag: link"),
            ("FROM a\nCOPY --link=maybe a b\n", "expecting boolean value"),
            ("FROM a\nCOPY --from a b\n", "missing a value on flag: from"),
            ("FROM a\nCOPY --from=x --from=y a b\n", "duplicate flag"),
            (
                "FROM a\nSHELL sh -c\n",
                "SHELL requires the arguments to be in JSON form",
            ),
            ("FROM a\nONBUILD ONBUILD RUN x\n", "Chaining ONBUILD"),
            (
                "FROM a\nHEALTHCHECK --interval=1us CMD x\n",
                "cannot be less than 1ms",
            ),
            (
                "FROM a\nHEALTHCHECK --retries=-1 CMD x\n",
                "--retries cannot be negative",
            ),
            (
                "FROM a\nHEALTHCHECK CONNECT x\n",
                "Unknown type \"CONNECT\"",
            ),
            ("FROM a\nHEALTHCHECK NONE x\n", "takes no arguments"),
            ("FROM a\nVOLUME [\"\"]\n", "can not be an empty string"),
            (
                "FROM a\nRUN --network=bridge x\n",
                "unsupported network mode",
            ),
            ("FROM a\nUSER\n", "USER requires exactly one argument"),
            ("FROM a\nARG =x\n", "ARG names can not be blank"),
        ] {
            let e = stages(src).unwrap_err();
            assert!(e.contains(want), "{src:?}: {e}");
        }
    }

    #[test]
    fn the_rest() {
        assert_eq!(
            first("FROM a\nCMD echo hi\n"),
            InstructionKind::Cmd(ShellOrExec::Shell("echo hi".into()))
        );
        let InstructionKind::Healthcheck(Healthcheck::Cmd {
            interval,
            retries,
            test,
            ..
        }) = first("FROM a\nHEALTHCHECK --interval=1m30s --retries=3 CMD curl -f x\n")
        else {
            panic!("not a healthcheck")
        };
        assert_eq!(interval, Some(Duration::from_secs(90)));
        assert_eq!(retries, Some(3));
        assert_eq!(test, ShellOrExec::Shell("curl -f x".into()));
        let InstructionKind::Env(kv) = first("FROM a\nENV A=1 B=\"2 3\"\n") else {
            panic!()
        };
        assert_eq!(
            (
                kv[1].key.value.as_str(),
                kv[1].value.value.as_str(),
                kv[1].legacy
            ),
            ("B", "\"2 3\"", false)
        );
        let InstructionKind::Onbuild(o) = first("FROM a\nonbuild run echo hi\n") else {
            panic!()
        };
        assert_eq!(o.expression, "run echo hi");
        assert!(matches!(
            o.trigger.map(|t| t.kind),
            Some(InstructionKind::Run(_))
        ));
        let InstructionKind::StopSignal(s) = first("FROM a\nSTOPSIGNAL --x SIGTERM\n") else {
            panic!()
        };
        assert_eq!(s.value, "SIGTERM");
    }

    #[test]
    fn go_durations() {
        for (s, ns) in [
            ("0", 0u64),
            ("1s", 1_000_000_000),
            ("1.5h", 5_400_000_000_000),
            (".5ms", 500_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("2µs", 2000),
        ] {
            assert_eq!(parse_go_duration(s), Ok(Duration::from_nanos(ns)), "{s}");
        }
        for s in ["", "1", "s", "1x", ".s", "-1s", "9999999999999h"] {
            assert!(parse_go_duration(s).is_err(), "{s}");
        }
    }
}
