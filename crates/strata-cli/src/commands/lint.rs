//! `strata lint`: check Dockerfiles against the practices (rules in
//! `strata_analyze::lint`), print text, JSON or SARIF, optionally fix.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use strata_analyze::lint::{self, output, Config, LintOptions, Report};

use crate::cli::*;
use crate::render::hinted;
use crate::settings::Settings;

use super::CmdResult;

/// The config file looked for beside each Dockerfile.
const CONFIG_NAME: &str = ".strata-lint.toml";

/// Resolved settings for one Dockerfile.
struct Target {
    name: String,
    path: Option<PathBuf>,
    text: String,
    opts: LintOptions,
}

fn build_args(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => std::env::var(kv).map(|v| (kv.clone(), v)).map_err(|_| {
                hinted(
                    format!("--build-arg {kv} has no value"),
                    "write --build-arg NAME=VALUE, or export NAME",
                )
            }),
        })
        .collect()
}

fn resolve(args: &LintArgs) -> anyhow::Result<Vec<Target>> {
    let files = if args.files.is_empty() {
        vec![PathBuf::from("Dockerfile")]
    } else {
        args.files.clone()
    };
    let bargs = build_args(&args.build_args)?;
    let explicit = match &args.config {
        Some(p) => Some(Config::load(p)?),
        None => None,
    };
    let cli_ignores = Config {
        ignore: args.ignore.clone(),
        severity: Vec::new(),
    };
    let mut out = Vec::new();
    for file in files {
        let (name, path, text) = if file.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the Dockerfile from standard input")?;
            (
                "<stdin>".to_string(),
                None,
                String::from_utf8_lossy(&buf).into_owned(),
            )
        } else {
            let bytes = std::fs::read(&file).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    hinted(
                        format!("no Dockerfile at {}", file.display()),
                        "pass the file with -f FILE",
                    )
                } else {
                    anyhow::Error::new(e)
                        .context(format!("cannot read the Dockerfile {}", file.display()))
                }
            })?;
            (
                file.display().to_string(),
                Some(file.clone()),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        };
        let dir = path
            .as_deref()
            .and_then(Path::parent)
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let context = args.context.clone().unwrap_or_else(|| dir.clone());
        let config = match &explicit {
            Some(c) => c.clone(),
            None => {
                let beside = dir.join(CONFIG_NAME);
                if beside.is_file() {
                    Config::load(&beside)?
                } else {
                    Config::default()
                }
            }
        }
        .merge(cli_ignores.clone());
        out.push(Target {
            name,
            path,
            text,
            opts: LintOptions {
                context: Some(context),
                dockerfile: None,
                build_args: bargs.clone(),
                target: args.target.clone(),
                config,
            },
        });
    }
    for t in &mut out {
        t.opts.dockerfile = t.path.clone();
    }
    Ok(out)
}

pub fn lint(args: LintArgs, s: &Settings) -> CmdResult {
    let targets = resolve(&args)?;
    let mut reports: Vec<Report> = Vec::new();
    let mut diffs = String::new();
    for t in &targets {
        if args.fix {
            let fixed = lint::fix(&t.name, &t.text, &t.opts);
            if !fixed.diff.is_empty() {
                if let Some(p) = &t.path {
                    std::fs::write(p, &fixed.source)
                        .with_context(|| format!("cannot write {}", p.display()))?;
                }
                diffs.push_str(&fixed.diff);
                if !s.quiet {
                    eprintln!("fixed {} finding(s) in {}", fixed.applied.len(), t.name);
                }
            }
            reports.push(lint::lint(&t.name, &fixed.source, &t.opts));
        } else {
            reports.push(lint::lint(&t.name, &t.text, &t.opts));
        }
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        LintFormat::Text => {
            out.write_all(diffs.as_bytes())?;
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            if !(s.quiet && reports.iter().all(|r| r.findings.is_empty())) {
                out.write_all(output::text(&reports, color).as_bytes())?;
            }
        }
        LintFormat::Json | LintFormat::Sarif => {
            eprint!("{diffs}");
            let v = if args.format == LintFormat::Json {
                output::json(&reports)
            } else {
                output::sarif(&reports)
            };
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    let threshold = match args.failure_threshold {
        Severity::None => None,
        Severity::Info => Some(lint::Severity::Info),
        Severity::Warning => Some(lint::Severity::Warning),
        Severity::Error => Some(lint::Severity::Error),
    };
    let worst = reports.iter().filter_map(Report::max_severity).max();
    let fail = matches!((threshold, worst), (Some(t), Some(w)) if w >= t);
    Ok(if fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
