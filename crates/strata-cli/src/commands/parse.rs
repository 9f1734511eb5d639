//! `strata parse`: read a Dockerfile as BuildKit does and show it.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use strata_dockerfile::{parse_named, Dockerfile, InstructionKind};

use crate::cli::*;
use crate::settings::Settings;

use super::CmdResult;

pub fn parse(args: ParseArgs, s: &Settings) -> CmdResult {
    let (name, bytes) = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read the Dockerfile from standard input")?;
        ("<stdin>".to_string(), buf)
    } else {
        let bytes = std::fs::read(&args.file)
            .with_context(|| format!("cannot read the Dockerfile {}", args.file.display()))?;
        (args.file.display().to_string(), bytes)
    };
    let text = String::from_utf8_lossy(&bytes);
    let df = parse_named(&name, &text)?;
    if !s.quiet {
        for w in &df.warnings {
            eprintln!("warning: {name}:{}: {}", w.span.line, w.message);
        }
    }
    let mut out = std::io::stdout().lock();
    if args.dump {
        writeln!(out, "{}", df.dump())?;
    } else if args.json {
        serde_json::to_writer_pretty(&mut out, &df)?;
        writeln!(out)?;
    } else {
        summary(&mut out, &df)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks the instructions as the builder will, then lists the stages.
fn summary(out: &mut impl std::io::Write, df: &Dockerfile) -> anyhow::Result<()> {
    let stages = df.stages()?;
    for d in &df.directives {
        writeln!(out, "# {}={}", d.name, d.value)?;
    }
    for a in &stages.meta_args {
        writeln!(out, "{:>4}  {}", a.span.line, a.original)?;
    }
    for (i, st) in stages.stages.iter().enumerate() {
        let name = st
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        writeln!(out, "stage {i}{name}: FROM {}", st.base.value)?;
        for inst in &st.instructions {
            let extra = match &inst.kind {
                InstructionKind::Run(r) if !r.heredocs.is_empty() => {
                    format!("  [{} heredoc(s)]", r.heredocs.len())
                }
                _ => String::new(),
            };
            writeln!(out, "{:>4}  {}{extra}", inst.span.line, inst.original)?;
        }
    }
    Ok(())
}
