//! Static checks on a Dockerfile and its build context (`strata lint`).
//!
//! Every rule checks one practice of `docs/practices.md`, whose section each
//! finding links to (see [`RULES`] for the table and `docs/lint.md` for the
//! JSON schema). Rules run per stage, on
//! the commands of each RUN split as a shell would split them, with the
//! stage's ARG and ENV values expanded; rules about image size only look at
//! the stages that end up in the image (the target and the stages it is
//! built `FROM`).
//!
//! ```
//! use strata_analyze::lint::{lint, LintOptions};
//!
//! let src = "FROM debian:bookworm\nRUN apt-get update && apt-get install -y curl\n";
//! let report = lint("Dockerfile", src, &LintOptions::default());
//! let ids: Vec<&str> = report.findings.iter().map(|f| f.rule.id).collect();
//! assert!(ids.contains(&"SL101")); // --no-install-recommends
//! assert!(ids.contains(&"SL102")); // apt lists not removed
//! let f = &report.findings[0];
//! assert_eq!(f.region.start.line, 2);
//!
//! let fixed = strata_analyze::lint::fix("Dockerfile", src, &LintOptions::default());
//! assert!(fixed.source.contains("--no-install-recommends"));
//! assert!(fixed.source.contains("rm -rf /var/lib/apt/lists/*"));
//! ```

use std::path::{Path, PathBuf};

use strata_context::Matcher;
use strata_dockerfile::shell::Lexer;
use strata_dockerfile::{Dockerfile, Instruction, InstructionKind, ShellOrExec, Stage};

mod checks;
mod config;
mod diff;
mod findings;
mod fix;
pub mod output;
mod pragmas;
pub mod rules;
mod shell;

pub use config::{Config, ConfigError};
pub use findings::{Edit, Finding, Fix, Position, Region, Severity};
pub use fix::{fix, Fixed};
pub use rules::{Rule, ALL as RULES};

use shell::Command;

/// What to lint against.
#[derive(Debug, Clone, Default)]
pub struct LintOptions {
    /// The build context directory (for `.dockerignore` and lock-file
    /// checks); `None` skips the checks that need it.
    pub context: Option<PathBuf>,
    /// Where the Dockerfile is (for `<Dockerfile>.dockerignore`).
    pub dockerfile: Option<PathBuf>,
    /// `--build-arg` values, used to resolve ARGs.
    pub build_args: Vec<(String, String)>,
    /// The stage built (`--target`); default the last one.
    pub target: Option<String>,
    /// Severities and ignores.
    pub config: Config,
}

/// The findings for one Dockerfile.
#[derive(Debug, Clone)]
pub struct Report {
    /// The file name, as given.
    pub name: String,
    /// Its text.
    pub source: String,
    /// What was found, sorted by position.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The most severe finding's severity, if any.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// Lints `source` (named `name` in messages).
pub fn lint(name: &str, source: &str, opts: &LintOptions) -> Report {
    let mut findings = raw_findings(name, source, opts);
    pragmas::apply(source, opts, &mut findings);
    findings.sort_by_key(|f| (f.region.offset, f.rule.id));
    Report {
        name: name.to_string(),
        source: source.to_string(),
        findings,
    }
}

fn raw_findings(name: &str, source: &str, opts: &LintOptions) -> Vec<Finding> {
    let lines = Lines::new(source);
    let df = match strata_dockerfile::parse_named(name, source) {
        Ok(df) => df,
        Err(e) => return vec![parse_error(&lines, source, e.to_string(), Some(e.span))],
    };
    let stages = match df.stages() {
        Ok(s) => s,
        Err(e) => return vec![parse_error(&lines, source, e.to_string(), Some(e.span))],
    };
    let ctx = opts
        .context
        .as_deref()
        .and_then(|dir| ContextInfo::open(dir, opts.dockerfile.as_deref()));
    let model = Model::build(&df, &stages, opts, lines, ctx);
    let mut out = Vec::new();
    checks::run(&model, &mut out);
    out
}

fn parse_error(
    lines: &Lines,
    source: &str,
    message: String,
    span: Option<strata_dockerfile::Span>,
) -> Finding {
    let (s, e) = span.map(|s| (s.offset, s.end())).unwrap_or((0, 0));
    let e = if e == s {
        source[s.min(source.len())..]
            .find('\n')
            .map(|k| s + k)
            .unwrap_or(source.len())
    } else {
        e
    };
    let mut f = Finding {
        rule: &rules::PARSE_ERROR,
        severity: Severity::Error,
        message,
        region: lines.region(s, e),
        aliases: Vec::new(),
        fix: Fix {
            description: rules::PARSE_ERROR.help.to_string(),
            edits: Vec::new(),
            safe: false,
        },
        instruction_line: None,
        node: None,
    };
    f.message = f.message.trim().to_string();
    f
}

/// Line starts of a source, for positions.
#[derive(Debug, Clone)]
pub(crate) struct Lines {
    src: String,
    starts: Vec<usize>,
}

impl Lines {
    fn new(src: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Lines {
            src: src.to_string(),
            starts,
        }
    }

    pub(crate) fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.src.len());
        while offset > 0 && !self.src.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let ls = self.starts[line - 1];
        Position {
            line,
            column: self.src[ls..offset].chars().count() + 1,
        }
    }

    pub(crate) fn region(&self, start: usize, end: usize) -> Region {
        let start = start.min(self.src.len());
        let end = end.clamp(start, self.src.len());
        Region {
            offset: start,
            length: end - start,
            start: self.position(start),
            end: self.position(end),
        }
    }
}

/// The build context, as far as the checks need it (no full walk).
#[derive(Debug)]
pub(crate) struct ContextInfo {
    pub dir: PathBuf,
    pub ignore_file: Option<PathBuf>,
    pub matcher: Option<Matcher>,
}

impl ContextInfo {
    fn open(dir: &Path, dockerfile: Option<&Path>) -> Option<ContextInfo> {
        if !dir.is_dir() {
            return None;
        }
        let mut ignore_file = None;
        if let Some(df) = dockerfile {
            if let Some(n) = df.file_name() {
                let mut s = n.to_os_string();
                s.push(".dockerignore");
                let p = df.with_file_name(s);
                if p.is_file() {
                    ignore_file = Some(p);
                }
            }
        }
        if ignore_file.is_none() {
            let p = dir.join(".dockerignore");
            if p.is_file() {
                ignore_file = Some(p);
            }
        }
        let matcher = match &ignore_file {
            Some(p) => std::fs::read(p)
                .ok()
                .and_then(|d| Matcher::from_ignore_file(p, &d).ok()),
            None => None,
        };
        Some(ContextInfo {
            dir: dir.to_path_buf(),
            ignore_file,
            matcher,
        })
    }

    /// Whether `rel` exists in the context directory.
    pub fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.dir.join(rel)).is_ok()
    }

    /// Whether `rel` is a directory.
    pub fn is_dir(&self, rel: &str) -> bool {
        self.dir.join(rel).is_dir()
    }

    /// Whether the ignore file excludes `rel`.
    pub fn ignored(&self, rel: &str) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.matches(rel))
    }

    /// A small text file of the context.
    pub fn read(&self, rel: &str) -> Option<String> {
        let p = self.dir.join(rel);
        let meta = std::fs::metadata(&p).ok()?;
        if meta.len() > 1 << 20 {
            return None;
        }
        std::fs::read(p)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

/// One instruction with what the checks need.
pub(crate) struct Inst<'a> {
    pub inst: &'a Instruction,
    /// ARG and ENV values in effect before it.
    pub env: Vec<(String, String)>,
    /// For RUN: its simple commands.
    pub cmds: Vec<Command>,
    /// For shell-form RUN without here-documents: where its command text
    /// ends (for appended fixes).
    pub shell_end: Option<usize>,
}

impl Inst<'_> {
    pub fn node(&self) -> usize {
        self.inst.node
    }
    pub fn is_run(&self) -> bool {
        matches!(self.inst.kind, InstructionKind::Run(_))
    }
    /// Commands whose program is one of `names`.
    pub fn cmds_named<'s>(&'s self, names: &'s [&str]) -> impl Iterator<Item = &'s Command> + 's {
        self.cmds
            .iter()
            .filter(move |c| names.contains(&c.program().as_str()))
    }
    /// Whether a variable is set (to anything) before this instruction.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One stage.
pub(crate) struct StageInfo<'a> {
    pub stage: &'a Stage,
    /// The base, ARGs expanded.
    pub base: String,
    /// The earlier stage it is built on, if any.
    pub parent: Option<usize>,
    /// Whether it ends up in the image (the target or one it is built on).
    pub in_image: bool,
    pub insts: Vec<Inst<'a>>,
}

/// Everything the checks read.
pub(crate) struct Model<'a> {
    pub df: &'a Dockerfile,
    pub src: &'a str,
    pub lines: Lines,
    pub stages: Vec<StageInfo<'a>>,
    pub ctx: Option<ContextInfo>,
    pub target: usize,
}

impl<'a> Model<'a> {
    fn build(
        df: &'a Dockerfile,
        bs: &'a strata_dockerfile::BuildStages,
        opts: &LintOptions,
        lines: Lines,
        ctx: Option<ContextInfo>,
    ) -> Model<'a> {
        let lexer = Lexer::new(df.escape);
        let lx = lexer.skip_unset_env(true);
        let build_arg = |k: &str| {
            opts.build_args
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        // Meta ARGs.
        let mut meta: Vec<(String, String)> = Vec::new();
        for a in &bs.meta_args {
            for d in &a.args {
                let v = build_arg(&d.name.value).or_else(|| {
                    d.default.as_ref().map(|v| {
                        lx.process_word(&v.value, &meta)
                            .map(|e| e.value)
                            .unwrap_or_else(|_| v.value.clone())
                    })
                });
                if let Some(v) = v {
                    meta.push((d.name.value.clone(), v));
                }
            }
        }
        let mut stages: Vec<StageInfo<'a>> = Vec::new();
        let mut final_envs: Vec<Vec<(String, String)>> = Vec::new();
        for st in &bs.stages {
            let base = lx
                .process_word(&st.base.value, &meta)
                .map(|e| e.value)
                .unwrap_or_else(|_| st.base.value.clone());
            let parent = stages.iter().position(|s| {
                s.stage
                    .name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&base))
            });
            let mut env: Vec<(String, String)> =
                parent.map(|p| final_envs[p].clone()).unwrap_or_default();
            let mut insts = Vec::new();
            for inst in &st.instructions {
                let mut cmds = Vec::new();
                let mut shell_end = None;
                match &inst.kind {
                    InstructionKind::Run(run) => {
                        let (c, e) = run_commands(df, inst, run, &lexer, &env);
                        cmds = c;
                        shell_end = e;
                    }
                    InstructionKind::Cmd(se) | InstructionKind::Entrypoint(se) => {
                        cmds = se_commands(df, inst, se, &lexer, &env);
                    }
                    _ => {}
                }
                insts.push(Inst {
                    inst,
                    env: env.clone(),
                    cmds,
                    shell_end,
                });
                match &inst.kind {
                    InstructionKind::Arg(defs) => {
                        for d in defs {
                            let v = build_arg(&d.name.value)
                                .or_else(|| {
                                    d.default.as_ref().map(|v| {
                                        lx.process_word(&v.value, &env)
                                            .map(|e| e.value)
                                            .unwrap_or_else(|_| v.value.clone())
                                    })
                                })
                                .or_else(|| {
                                    meta.iter()
                                        .rev()
                                        .find(|(k, _)| *k == d.name.value)
                                        .map(|(_, v)| v.clone())
                                });
                            if let Some(v) = v {
                                env.push((d.name.value.clone(), v));
                            }
                        }
                    }
                    InstructionKind::Env(kvs) => {
                        for kv in kvs {
                            let v = lx
                                .process_word(&kv.value.value, &env)
                                .map(|e| e.value)
                                .unwrap_or_else(|_| kv.value.value.clone());
                            env.push((kv.key.value.clone(), v));
                        }
                    }
                    _ => {}
                }
            }
            final_envs.push(env);
            stages.push(StageInfo {
                stage: st,
                base,
                parent,
                in_image: false,
                insts,
            });
        }
        let target = opts
            .target
            .as_deref()
            .and_then(|t| {
                stages.iter().position(|s| {
                    s.stage
                        .name
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(t))
                })
            })
            .unwrap_or(stages.len().saturating_sub(1));
        let mut cur = Some(target);
        let mut guard = 0;
        while let Some(i) = cur {
            if i >= stages.len() || guard > stages.len() {
                break;
            }
            stages[i].in_image = true;
            cur = stages[i].parent;
            guard += 1;
        }
        Model {
            df,
            src: df.source(),
            lines,
            stages,
            ctx,
            target,
        }
    }

    /// A finding with the rule's defaults (its aliases, its help as fix).
    pub fn finding(
        &self,
        rule: &'static Rule,
        start: usize,
        end: usize,
        node: Option<usize>,
        message: String,
    ) -> Finding {
        Finding {
            rule,
            severity: rule.severity,
            message,
            region: self.lines.region(start, end),
            aliases: rule.aliases.to_vec(),
            fix: Fix {
                description: rule.help.to_string(),
                edits: Vec::new(),
                safe: false,
            },
            instruction_line: node
                .and_then(|n| self.df.nodes.get(n))
                .map(|n| n.start_line),
            node,
        }
    }

    /// An edit replacing `start..end` with `text`.
    pub fn edit(&self, start: usize, end: usize, text: impl Into<String>) -> Edit {
        Edit {
            region: self.lines.region(start, end),
            replacement: text.into(),
        }
    }

    /// The text of a source range.
    pub fn text(&self, start: usize, end: usize) -> &str {
        self.src.get(start..end).unwrap_or("")
    }
}

/// The simple commands of a RUN and where its shell text ends.
fn run_commands(
    df: &Dockerfile,
    inst: &Instruction,
    run: &strata_dockerfile::Run,
    lexer: &Lexer,
    env: &[(String, String)],
) -> (Vec<Command>, Option<usize>) {
    let Some(node) = df.nodes.get(inst.node) else {
        return (Vec::new(), None);
    };
    let src = df.source();
    match &run.cmd {
        ShellOrExec::Exec(_) => (exec_commands(node, lexer, env), None),
        ShellOrExec::Shell(_) => {
            let (Some(first), Some(last)) = (node.args.first(), node.args.last()) else {
                return (Vec::new(), None);
            };
            let start = first.span.offset;
            let end = last.span.end();
            let lg = shell::logical(src, start, end, df.escape, true);
            let mut cmds = shell::parse_script(&lg, lexer, env);
            if run.heredocs.is_empty() {
                return (cmds, Some(trim_end(src, start, end)));
            }
            // Here-document scripts: `RUN <<EOF` or `RUN bash <<EOF`.
            let script_like = cmds.iter().all(|c| {
                matches!(
                    c.program().as_str(),
                    "" | "sh" | "bash" | "ash" | "dash" | "zsh"
                ) && c.args().iter().all(|w| w.text.starts_with('-'))
            });
            if script_like {
                for h in &run.heredocs {
                    if h.fd != 0 {
                        continue;
                    }
                    let lg = shell::logical(src, h.span.offset, h.span.end(), '\\', false);
                    let mut body = shell::parse_script(&lg, lexer, env);
                    // The last line is the delimiter.
                    body.retain(|c| !(c.words.len() == 1 && c.words[0].text == h.name));
                    cmds.extend(body);
                }
            }
            (cmds, None)
        }
    }
}

fn trim_end(src: &str, start: usize, end: usize) -> usize {
    let s = src.get(start..end.min(src.len())).unwrap_or("");
    start + s.trim_end().len()
}

fn exec_commands(
    node: &strata_dockerfile::Node,
    lexer: &Lexer,
    env: &[(String, String)],
) -> Vec<Command> {
    let words: Vec<shell::Word> = node
        .args
        .iter()
        .map(|a| shell::Word {
            text: a.value.clone(),
            start: a.span.offset,
            end: a.span.end(),
        })
        .collect();
    let Some(first) = words.first() else {
        return Vec::new();
    };
    let (start, end) = (
        first.start,
        words.last().map(|w| w.end).unwrap_or(first.end),
    );
    let c = Command {
        words,
        sep: shell::Sep::Semi,
        start,
        end,
        assigns: Vec::new(),
    };
    let mut out = vec![c.clone()];
    // `["sh", "-c", "script"]`
    let p = c.program();
    if matches!(p.as_str(), "sh" | "bash" | "ash" | "dash") {
        if let Some(k) = c
            .args()
            .iter()
            .position(|w| w.text.starts_with('-') && w.text.contains('c'))
        {
            if let Some(script) = c.args().get(k + 1) {
                let inner = shell::Logical {
                    text: script.text.clone(),
                    map: vec![script.start; script.text.len()],
                };
                let mut sub = shell::parse_script(&inner, lexer, env);
                for s in &mut sub {
                    s.start = script.start;
                    s.end = script.end;
                    for w in &mut s.words {
                        w.start = script.start;
                        w.end = script.end;
                    }
                }
                out.extend(sub);
            }
        }
    }
    out
}

fn se_commands(
    df: &Dockerfile,
    inst: &Instruction,
    se: &ShellOrExec,
    lexer: &Lexer,
    env: &[(String, String)],
) -> Vec<Command> {
    let Some(node) = df.nodes.get(inst.node) else {
        return Vec::new();
    };
    match se {
        ShellOrExec::Exec(_) => exec_commands(node, lexer, env),
        ShellOrExec::Shell(_) => {
            let (Some(first), Some(last)) = (node.args.first(), node.args.last()) else {
                return Vec::new();
            };
            let lg = shell::logical(
                df.source(),
                first.span.offset,
                last.span.end(),
                df.escape,
                true,
            );
            shell::parse_script(&lg, lexer, env)
        }
    }
}
