//! SL301 whole context copied without .dockerignore, SL302 a copied
//! directory holds what should not reach the image and no ignore pattern
//! excludes it, SL303 fat jar as one layer (practices 9 and 1).
//!
//! SL302 looks below the top of the context too: every COPY/ADD source
//! from the context (`.`, a directory, a wildcard) is matched against the
//! directories found by a bounded walk of the context (VCS data,
//! dependencies, caches, virtualenvs, and build outputs beside the manifest
//! that makes them), and each is checked against the ignore file with
//! BuildKit's pattern semantics, so `node_modules` in .dockerignore is seen
//! to exclude `./node_modules` only, not `web/node_modules`
//! (`**/node_modules` does).

use std::collections::BTreeSet;
use std::path::Path;

use strata_dockerfile::{InstructionKind, ShellOrExec};

use super::super::rules::*;
use super::super::{ContextInfo, Finding, Model};

/// Paths that should not reach the context when present at its top.
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

/// How far the walk goes (directory levels, entries read).
const WALK_DEPTH: usize = 8;
const WALK_ENTRIES: usize = 50_000;

/// A directory below the top of the context that should not be copied:
/// why, when its name alone says so, or the manifests beside it that make
/// it a build output.
fn nested_heavy(dir: &Path, name: &str) -> Option<&'static str> {
    let beside = |files: &[&str]| {
        let parent = dir.parent().unwrap_or(dir);
        files.iter().any(|f| parent.join(f).is_file())
    };
    Some(match name {
        ".git" | ".svn" | ".hg" => "version-control data",
        "node_modules" => "installed node dependencies",
        "__pycache__" => "Python bytecode",
        ".pytest_cache" | ".ruff_cache" => "test caches",
        ".mypy_cache" => "type-checker caches",
        ".tox" => "test environments",
        ".gradle" => "Gradle caches",
        ".next" => "build output",
        ".venv" => "a virtualenv",
        "venv" if dir.join("pyvenv.cfg").is_file() => "a virtualenv",
        "target" if beside(&["Cargo.toml", "pom.xml"]) => "build output",
        "dist" | "build"
            if beside(&[
                "package.json",
                "setup.py",
                "pyproject.toml",
                "build.gradle",
                "build.gradle.kts",
            ]) =>
        {
            "build output"
        }
        _ => return None,
    })
}

/// A directory of the context that should not reach the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Heavy {
    /// Relative path, `/`-separated.
    path: String,
    why: &'static str,
}

impl Heavy {
    fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
    fn nested(&self) -> bool {
        self.path.contains('/')
    }
}

/// The heavy directories of the context: at the top (by name), and below
/// (bounded walk; ignored directories and heavy ones are not entered).
fn find_heavy(ctx: &ContextInfo) -> Vec<Heavy> {
    let mut out: Vec<Heavy> = HEAVY
        .iter()
        .filter(|(p, _)| ctx.exists(p))
        .map(|(p, why)| Heavy {
            path: (*p).to_string(),
            why,
        })
        .collect();
    let exceptions = ctx.matcher.as_ref().is_some_and(|m| m.has_exceptions());
    let mut budget = WALK_ENTRIES;
    let mut queue: Vec<(String, usize)> = Vec::new();
    // Top-level directories that are not heavy themselves.
    let mut top: Vec<String> = std::fs::read_dir(&ctx.dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !HEAVY.iter().any(|(h, _)| h == n))
        .collect();
    top.sort();
    for t in top {
        queue.push((t, 1));
    }
    while let Some((rel, depth)) = queue.pop() {
        if depth >= WALK_DEPTH || budget == 0 || (!exceptions && ctx.ignored(&rel)) {
            continue;
        }
        let Ok(rd) = std::fs::read_dir(ctx.dir.join(&rel)) else {
            continue;
        };
        let mut subdirs = Vec::new();
        for e in rd.flatten() {
            if budget == 0 {
                break;
            }
            budget -= 1;
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let child = format!("{rel}/{name}");
            match nested_heavy(&e.path(), &name) {
                Some(why) => out.push(Heavy { path: child, why }),
                None => subdirs.push(child),
            }
        }
        subdirs.sort();
        // Depth first, in name order.
        for d in subdirs.into_iter().rev() {
            queue.push((d, depth + 1));
        }
    }
    out.sort();
    out
}

/// Whether the ignore file keeps `dir` out of the context: it, or every
/// entry in it, is excluded.
fn excluded(ctx: &ContextInfo, dir: &str) -> bool {
    if ctx.ignored(dir) {
        return true;
    }
    let Ok(rd) = std::fs::read_dir(ctx.dir.join(dir)) else {
        return false;
    };
    let mut any = false;
    for e in rd.flatten().take(1000) {
        any = true;
        if !ctx.ignored(&format!("{dir}/{}", e.file_name().to_string_lossy())) {
            return false;
        }
    }
    any
}

fn whole(src: &str) -> bool {
    matches!(src.trim(), "." | "./" | "*" | "./*" | "/")
}

/// Whether a COPY source takes `heavy` with it (without naming it).
fn copies(src: &str, heavy: &str) -> bool {
    if whole(src) {
        return true;
    }
    let s = src.trim().trim_start_matches("./").trim_start_matches('/');
    let s = s.trim_end_matches('/');
    if s.is_empty() || s == "." {
        return true;
    }
    if strata_context::has_wildcards(s) {
        // The source matches the heavy directory or one of its parents.
        let parts: Vec<&str> = heavy.split('/').collect();
        return (1..=parts.len())
            .any(|k| strata_context::glob_match(s, &parts[..k].join("/")).unwrap_or(false));
    }
    heavy
        .strip_prefix(s)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The ignore pattern to add for the missed directories, each once:
/// `**/name` for nested ones that are never wanted wherever they are
/// (`node_modules`, caches, VCS data), the path itself for build outputs
/// (a `build` directory elsewhere may be source).
fn patterns(missed: &[&Heavy]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for h in missed {
        let anywhere = !matches!(h.name(), "target" | "dist" | "build" | "venv");
        let p = if h.nested() && anywhere {
            format!("**/{}", h.name())
        } else {
            h.path.clone()
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn ticks(v: &[String]) -> String {
    v.iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn check(m: &Model, out: &mut Vec<Finding>) {
    if let Some(ctx) = &m.ctx {
        context_checks(m, ctx, out);
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

/// SL301 and SL302.
fn context_checks(m: &Model, ctx: &ContextInfo, out: &mut Vec<Finding>) {
    let heavy = find_heavy(ctx);
    let ignore_name = ctx.ignore_file.as_ref().map(|f| {
        f.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    // Bare names in the ignore file (they match at the top only).
    let bare: Vec<String> = ctx
        .matcher
        .as_ref()
        .map(|mt| {
            mt.patterns()
                .iter()
                .filter(|p| !p.is_exception())
                .map(|p| p.text().trim_end_matches('/').to_string())
                .filter(|t| !t.contains('/') && !t.contains("**"))
                .collect()
        })
        .unwrap_or_default();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut whole_reported = false;
    for ins in m.stages.iter().flat_map(|s| s.insts.iter()) {
        let (InstructionKind::Copy(ca) | InstructionKind::Add(ca)) = &ins.inst.kind else {
            continue;
        };
        if ca.from.is_some() {
            continue;
        }
        let kw = ins.inst.keyword.to_ascii_uppercase();
        let dest = &ca.dest.value;
        for src in &ca.sources {
            if super::add::is_remote(&src.value) {
                continue;
            }
            let copied: Vec<&Heavy> = heavy
                .iter()
                .filter(|h| copies(&src.value, &h.path))
                .collect();
            if ignore_name.is_none() && whole(&src.value) {
                // SL301, once: no ignore file at all.
                if whole_reported {
                    continue;
                }
                whole_reported = true;
                let mut f = m.finding(
                    &COPY_NO_IGNORE,
                    src.span.offset,
                    src.span.end(),
                    Some(ins.node()),
                    format!("`{kw} {} {dest}` sends and copies the whole context, and there is no .dockerignore", src.value),
                );
                let pats = patterns(&copied);
                f.fix.description = if pats.is_empty() {
                    "add a .dockerignore (e.g. `.git`, build outputs, local env files), or copy named files".into()
                } else {
                    format!(
                        "add a .dockerignore listing {} (present in the context), or copy named files",
                        pats.join(", ")
                    )
                };
                reported.extend(copied.iter().map(|h| h.path.clone()));
                out.push(f);
                continue;
            }
            let missed: Vec<&Heavy> = copied
                .into_iter()
                .filter(|h| !reported.contains(&h.path))
                .filter(|h| ignore_name.is_none() || !excluded(ctx, &h.path))
                .collect();
            if missed.is_empty() {
                continue;
            }
            reported.extend(missed.iter().map(|h| h.path.clone()));
            let list: Vec<String> = missed
                .iter()
                .map(|h| format!("{}/ ({})", h.path, h.why))
                .collect();
            let pats = patterns(&missed);
            let top_only: Vec<String> = missed
                .iter()
                .filter(|h| h.nested() && bare.iter().any(|b| b == h.name()))
                .map(|h| h.name().to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let (message, fix) = match &ignore_name {
                Some(name) => {
                    let note = if top_only.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({} there only {} at the top of the context)",
                            ticks(&top_only),
                            if top_only.len() == 1 { "matches" } else { "match" }
                        )
                    };
                    (
                        format!(
                            "`{kw} {} {dest}` copies {} from the context: {name} does not exclude {}{note}",
                            src.value,
                            list.join(", "),
                            if missed.len() == 1 { "it" } else { "them" }
                        ),
                        format!("add {} to {name}", ticks(&pats)),
                    )
                }
                None => (
                    format!(
                        "`{kw} {} {dest}` copies {} from the context, and there is no .dockerignore",
                        src.value,
                        list.join(", ")
                    ),
                    format!("add a .dockerignore listing {}", ticks(&pats)),
                ),
            };
            let mut f = m.finding(
                &IGNORE_INCOMPLETE,
                src.span.offset,
                src.span.end(),
                Some(ins.node()),
                message,
            );
            f.fix.description = fix;
            out.push(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_copy_what_is_under_them() {
        let cases: &[(&str, &str, bool)] = &[
            (".", "web/node_modules", true),
            ("./", ".git", true),
            ("web", "web/node_modules", true),
            ("./web/", "web/node_modules", true),
            ("web/node_modules", "web/node_modules", false),
            ("webapp", "web/node_modules", false),
            ("api", "web/node_modules", false),
            ("*/", "web/node_modules", true),
            ("services/*", "services/a/target", true),
            ("services/*.json", "services/a/target", false),
            ("packages/*/src", "packages/ui/src/__pycache__", true),
        ];
        for (src, heavy, want) in cases {
            assert_eq!(copies(src, heavy), *want, "{src} {heavy}");
        }
    }
}
