//! The syntax tree turned into stages of typed instructions (BuildKit's
//! `parse.go`): per-instruction argument and flag rules, ONBUILD triggers,
//! stage names, COPY/ADD sources with heredocs, HEALTHCHECK durations.

use std::collections::HashMap;
use std::time::Duration;

use super::flags::{FlagType, Flags};
use super::{
    args_err, value_err, ArgDef, ArgInstruction, BuildStages, CopyAdd, Healthcheck, HeredocSource,
    IResult, Instruction, InstructionKind, KeyValue, MountSpec, NetworkMode, Onbuild, Run,
    SecurityMode, ShellOrExec, Spanned, Stage,
};
use crate::ast::{Arg, Heredoc, Node};
use crate::error::{InstructionError, InstructionErrorKind};
use crate::go;
use crate::parser::{chomp_heredoc_content, parse_heredoc, Dockerfile};
use crate::span::Span;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::testutil::{first, stages};
    use crate::parse;

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
