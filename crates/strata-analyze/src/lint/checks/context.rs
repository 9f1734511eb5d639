//! SL301 whole context copied without .dockerignore, SL302 .dockerignore
//! misses obvious paths, SL303 fat jar as one layer (practices 9 and 1).

use strata_dockerfile::{InstructionKind, ShellOrExec};

use super::super::rules::*;
use super::super::{Finding, Model};

/// Paths that should not reach the context when present.
const HEAVY: &[(&str, &str)] = &[
    (".git", "version-control data"),
    ("node_modules", "installed node dependencies"),
    ("target", "build output"),
    ("dist", "build output"),
    ("build", "build output"),
    (".gradle", "Gradle caches"),
    ("__pycache__", "Python bytecode"),
    (".venv", "a virtualenv"),
    ("venv", "a virtualenv"),
    (".tox", "test environments"),
    (".pytest_cache", "test caches"),
    (".mypy_cache", "type-checker caches"),
    (".next", "build output"),
];

fn whole(src: &str) -> bool {
    matches!(src.trim(), "." | "./" | "*" | "./*" | "/")
}

pub(super) fn check(m: &Model, out: &mut Vec<Finding>) {
    if let Some(ctx) = &m.ctx {
        let first_whole = m
            .stages
            .iter()
            .flat_map(|s| s.insts.iter())
            .find_map(|ins| match &ins.inst.kind {
                InstructionKind::Copy(ca) | InstructionKind::Add(ca) if ca.from.is_none() => ca
                    .sources
                    .iter()
                    .find(|s| whole(&s.value))
                    .map(|s| (ins, s.clone(), ca.dest.value.clone())),
                _ => None,
            });
        if let Some((ins, src, dest)) = first_whole {
            let kw = ins.inst.keyword.to_ascii_uppercase();
            match &ctx.ignore_file {
                None => {
                    let mut f = m.finding(
                        &COPY_NO_IGNORE,
                        src.span.offset,
                        src.span.end(),
                        Some(ins.node()),
                        format!("`{kw} {} {dest}` sends and copies the whole context, and there is no .dockerignore", src.value),
                    );
                    let present: Vec<&str> = HEAVY
                        .iter()
                        .map(|(p, _)| *p)
                        .filter(|p| ctx.exists(p))
                        .collect();
                    f.fix.description = if present.is_empty() {
                        "add a .dockerignore (e.g. `.git`, build outputs, local env files), or copy named files".into()
                    } else {
                        format!("add a .dockerignore listing {} (present in the context), or copy named files", present.join(", "))
                    };
                    out.push(f);
                }
                Some(file) => {
                    let missed: Vec<(&str, &str)> = HEAVY
                        .iter()
                        .copied()
                        .filter(|(p, _)| ctx.exists(p) && !ctx.ignored(p))
                        .collect();
                    if !missed.is_empty() {
                        let name = file
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        let list: Vec<String> = missed
                            .iter()
                            .map(|(p, why)| format!("{p}/ ({why})"))
                            .collect();
                        let mut f = m.finding(
                            &IGNORE_INCOMPLETE,
                            src.span.offset,
                            src.span.end(),
                            Some(ins.node()),
                            format!("`{kw} {} {dest}` copies {} from the context: {name} does not exclude them", src.value, list.join(", ")),
                        );
                        f.fix.description = format!(
                            "add {} to {name}",
                            missed
                                .iter()
                                .map(|(p, _)| format!("`{p}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        out.push(f);
                    }
                }
            }
        }
    }
    // SL303
    for st in m.stages.iter().filter(|s| s.in_image) {
        let extracts = st.insts.iter().flat_map(|i| i.cmds.iter()).any(|c| {
            let p = c.program();
            p == "unzip"
                || (p == "jar" && c.has_short('x'))
                || c.args().iter().any(|w| w.text.contains("jarmode"))
        });
        if extracts {
            continue;
        }
        for ins in &st.insts {
            let (InstructionKind::Copy(ca) | InstructionKind::Add(ca)) = &ins.inst.kind else {
                continue;
            };
            for src in &ca.sources {
                let l = src.value.to_ascii_lowercase();
                let base = l.rsplit('/').next().unwrap_or(&l);
                if !l.ends_with(".jar") || base.contains("agent") || l.contains("://") {
                    continue;
                }
                let runs_jar = st.insts.iter().any(|i| match &i.inst.kind {
                    InstructionKind::Cmd(ShellOrExec::Exec(v))
                    | InstructionKind::Entrypoint(ShellOrExec::Exec(v)) => {
                        v.iter().any(|a| a == "-jar")
                    }
                    InstructionKind::Cmd(ShellOrExec::Shell(s))
                    | InstructionKind::Entrypoint(ShellOrExec::Shell(s)) => s.contains("-jar"),
                    _ => false,
                });
                let mut f = m.finding(
                    &FAT_JAR,
                    src.span.offset,
                    src.span.end(),
                    Some(ins.node()),
                    format!(
                        "`{}` is copied as one file{}: the whole jar is one layer, re-pushed on every code change",
                        src.value,
                        if runs_jar { " and run with `java -jar`" } else { "" }
                    ),
                );
                f.fix.description = "extract the jar in a builder stage (`java -Djarmode=tools -jar app.jar extract --layers --launcher`, or `unzip`) and copy BOOT-INF/lib/, META-INF/, org/ and BOOT-INF/classes/ in that order; run `org.springframework.boot.loader.launch.JarLauncher`".into();
                out.push(f);
            }
        }
    }
}
