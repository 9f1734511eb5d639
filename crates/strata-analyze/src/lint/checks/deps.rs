//! SL003 source before the dependency install, SL004 lock file not copied,
//! SL005 lock file not enforced (practices 2 and 3).

use strata_dockerfile::InstructionKind;

use super::super::rules::*;
use super::super::shell::Command;
use super::super::{Finding, Model};
use super::{line, pm, show};

/// A dependency step of some ecosystem.
struct Dep {
    eco: &'static str,
    /// Files the step reads, most important first.
    manifests: Vec<String>,
    locks: &'static [&'static str],
    /// Only installs dependencies (does not need the source).
    install_only: bool,
    /// Enforces the lock file (for SL005), `None` when not applicable.
    enforced: Option<bool>,
    /// The locked form, for the message.
    locked_form: &'static str,
}

fn classify(c: &Command) -> Option<Dep> {
    let p = c.program();
    let sub = c
        .subcommand(&[
            "--prefix",
            "-C",
            "--cwd",
            "-w",
            "--workspace",
            "--filter",
            "--manifest-path",
        ])
        .map(|(_, s)| s);
    let ops = c.operands();
    let pkgs_named = ops.len() > 1;
    let d = |eco, manifests: &[&str], locks, install_only, enforced, locked_form| Dep {
        eco,
        manifests: manifests.iter().map(|s| s.to_string()).collect(),
        locks,
        install_only,
        enforced,
        locked_form,
    };
    const NPM_LOCKS: &[&str] = &["package-lock.json", "npm-shrinkwrap.json"];
    match p.as_str() {
        "npm" => match sub.as_deref() {
            Some("ci") | Some("clean-install") => Some(d(
                "node",
                &["package.json"],
                NPM_LOCKS,
                true,
                Some(true),
                "npm ci",
            )),
            Some("install" | "i" | "add")
                if !pkgs_named && !c.has_flag("-g") && !c.has_flag("--global") =>
            {
                Some(d(
                    "node",
                    &["package.json"],
                    NPM_LOCKS,
                    true,
                    Some(false),
                    "npm ci",
                ))
            }
            Some("run" | "run-script" | "test") => {
                Some(d("node", &["package.json"], NPM_LOCKS, false, None, ""))
            }
            _ => None,
        },
        "yarn" => match sub.as_deref() {
            None | Some("install") if !c.has_flag("-g") => {
                let frozen = c.has_flag("--frozen-lockfile") || c.has_flag("--immutable");
                Some(d(
                    "node",
                    &["package.json"],
                    &["yarn.lock"],
                    true,
                    Some(frozen),
                    "yarn install --frozen-lockfile",
                ))
            }
            None | Some("add" | "global") => None,
            Some(_) => Some(d(
                "node",
                &["package.json"],
                &["yarn.lock"],
                false,
                None,
                "",
            )),
        },
        "pnpm" => match sub.as_deref() {
            Some("install" | "i") if !pkgs_named => Some(d(
                "node",
                &["package.json"],
                &["pnpm-lock.yaml"],
                true,
                Some(c.has_flag("--frozen-lockfile")),
                "pnpm install --frozen-lockfile",
            )),
            _ => None,
        },
        "pipenv" => match sub.as_deref() {
            Some("install") if !pkgs_named => {
                let ok = c.has_flag("--deploy")
                    || c.has_flag("--ignore-pipfile")
                    || c.has_flag("--system") && c.has_flag("--deploy");
                Some(d(
                    "python",
                    &["Pipfile"],
                    &["Pipfile.lock"],
                    true,
                    Some(ok),
                    "pipenv install --deploy",
                ))
            }
            Some("sync") => Some(d(
                "python",
                &["Pipfile"],
                &["Pipfile.lock"],
                true,
                Some(true),
                "pipenv sync",
            )),
            _ => None,
        },
        "poetry" => match sub.as_deref() {
            Some("install") => Some(d(
                "python",
                &["pyproject.toml"],
                &["poetry.lock"],
                true,
                Some(true),
                "poetry install",
            )),
            _ => None,
        },
        "uv" => match sub.as_deref() {
            Some("sync") => Some(d(
                "python",
                &["pyproject.toml"],
                &["uv.lock"],
                true,
                Some(c.has_flag("--locked") || c.has_flag("--frozen")),
                "uv sync --locked",
            )),
            _ => None,
        },
        "mvn" | "mvnw" | "./mvnw" => {
            let goals: Vec<String> = ops.iter().map(|w| w.lower()).collect();
            let offline = !goals.is_empty() && goals.iter().all(|g| g.starts_with("dependency:"));
            Some(d("maven", &["pom.xml"], &[], offline, None, ""))
        }
        "gradle" | "gradlew" => {
            let tasks: Vec<String> = ops.iter().map(|w| w.lower()).collect();
            let deps_only = !tasks.is_empty()
                && tasks.iter().all(|t| {
                    t == "dependencies" || t.contains("resolve") || t.contains("download")
                });
            Some(d(
                "gradle",
                &[
                    "build.gradle",
                    "build.gradle.kts",
                    "settings.gradle",
                    "settings.gradle.kts",
                ],
                &[],
                deps_only,
                None,
                "",
            ))
        }
        "cargo" => match sub.as_deref() {
            Some("fetch") => Some(d(
                "rust",
                &["Cargo.toml"],
                &["Cargo.lock"],
                true,
                Some(true),
                "cargo fetch --locked",
            )),
            Some("build" | "b" | "test" | "t" | "run" | "r" | "check" | "c") => {
                let locked =
                    c.has_flag("--locked") || c.has_flag("--frozen") || c.has_flag("--offline");
                Some(d(
                    "rust",
                    &["Cargo.toml"],
                    &["Cargo.lock"],
                    false,
                    Some(locked),
                    "cargo build --locked",
                ))
            }
            Some("install") if c.has_flag("--path") || ops.iter().any(|w| w.text == ".") => {
                let locked = c.has_flag("--locked") || c.has_flag("--frozen");
                Some(d(
                    "rust",
                    &["Cargo.toml"],
                    &["Cargo.lock"],
                    false,
                    Some(locked),
                    "cargo install --locked --path .",
                ))
            }
            _ => None,
        },
        "go" => match sub.as_deref() {
            Some("mod") if ops.get(1).is_some_and(|w| w.text == "download") => {
                Some(d("go", &["go.mod"], &["go.sum"], true, None, ""))
            }
            Some("build" | "install" | "test" | "generate") => {
                Some(d("go", &["go.mod"], &["go.sum"], false, None, ""))
            }
            _ => None,
        },
        "bundle" | "bundler" => match sub.as_deref() {
            None | Some("install") => {
                Some(d("ruby", &["Gemfile"], &["Gemfile.lock"], true, None, ""))
            }
            _ => None,
        },
        "composer" => match sub.as_deref() {
            Some("install") => Some(d(
                "php",
                &["composer.json"],
                &["composer.lock"],
                true,
                None,
                "",
            )),
            _ => None,
        },
        _ => {
            let (mgr, si, s) = pm(c)?;
            if mgr != "pip" || s != "install" {
                return None;
            }
            let args = &c.words[si + 1..];
            let mut reqs = Vec::new();
            let mut constrained =
                c.has_flag("--require-hashes") || c.has_flag("-c") || c.has_flag("--constraint");
            let mut source = false;
            let mut i = 0;
            while i < args.len() {
                let t = args[i].text.as_str();
                if t == "-r" || t == "--requirement" {
                    if let Some(f) = args.get(i + 1) {
                        reqs.push(f.text.clone());
                    }
                    i += 1;
                } else if let Some(f) = t.strip_prefix("--requirement=").or_else(|| {
                    t.strip_prefix("-r")
                        .filter(|f| !f.is_empty() && !f.starts_with('-'))
                }) {
                    reqs.push(f.to_string());
                } else if t.starts_with("-c") || t.starts_with("--constraint") {
                    constrained = true;
                } else if t == "." || t.starts_with("./") || t == "-e" || t == "--editable" {
                    source = source
                        || t == "."
                        || t.starts_with("./")
                        || args.get(i + 1).is_some_and(|w| w.text.starts_with('.'));
                }
                i += 1;
            }
            if !reqs.is_empty() {
                let mut dep = d(
                    "python",
                    &[],
                    &[],
                    true,
                    Some(constrained),
                    "pinned requirements (pip-compile) or --require-hashes",
                );
                dep.manifests = reqs;
                Some(dep)
            } else if source {
                Some(d(
                    "python",
                    &["pyproject.toml", "setup.py", "requirements.txt"],
                    &[],
                    false,
                    None,
                    "",
                ))
            } else {
                None
            }
        }
    }
}

fn base(s: &str) -> &str {
    s.trim_end_matches('/').rsplit('/').next().unwrap_or(s)
}

/// A context source that brings in more than named files.
fn broad(m: &Model, src: &str) -> bool {
    let s = src.trim_start_matches("./");
    if s.is_empty() || s == "." || s == "*" || s == "/" {
        return true;
    }
    if s.ends_with('/') {
        return true;
    }
    if let Some(ctx) = &m.ctx {
        if ctx.is_dir(s) {
            return true;
        }
        if ctx.exists(s) {
            return false;
        }
    }
    // No context: a name without an extension is most likely a directory.
    !base(s).contains('.')
        && !strata_context::has_wildcards(s)
        && !matches!(base(s), "Gemfile" | "Pipfile" | "Makefile" | "Dockerfile")
}

pub(super) fn check(m: &Model, out: &mut Vec<Finding>) {
    for st in &m.stages {
        // Named files copied so far (patterns as written), and the first broad COPY.
        let mut copied: Vec<String> = Vec::new();
        let mut broad_copy: Option<(usize, usize, String, usize)> = None; // (start, end, text, node)
        let mut installed_before_broad: Vec<&'static str> = Vec::new();
        let mut reported_broad = false;
        for ins in &st.insts {
            match &ins.inst.kind {
                InstructionKind::Copy(ca) | InstructionKind::Add(ca) if ca.from.is_none() => {
                    for src in &ca.sources {
                        let v = strata_dockerfile::shell::Lexer::new(m.df.escape)
                            .skip_unset_env(true)
                            .process_word(&src.value, &ins.env)
                            .map(|e| e.value)
                            .unwrap_or_else(|_| src.value.clone());
                        if v.contains("://") {
                            continue;
                        }
                        if broad(m, &v) {
                            if broad_copy.is_none() {
                                broad_copy = Some((
                                    ins.inst.span.offset,
                                    ins.inst.span.end(),
                                    ins.inst.original.clone(),
                                    ins.node(),
                                ));
                            }
                        } else {
                            copied.push(v);
                        }
                    }
                }
                InstructionKind::Run(_) => {
                    for c in &ins.cmds {
                        let Some(dep) = classify(c) else { continue };
                        let has = |name: &str| {
                            broad_copy.is_some()
                                || copied.iter().any(|p| {
                                    base(p) == name
                                        || strata_context::glob_match(base(p), name)
                                            .unwrap_or(false)
                                })
                        };
                        let in_ctx = |name: &str| {
                            m.ctx
                                .as_ref()
                                .is_some_and(|x| x.exists(name) && !x.ignored(name))
                        };
                        // SL003
                        if let Some((bs, be, btext, bnode)) = &broad_copy {
                            let manifests_known = m.ctx.as_ref().is_none_or(|_| {
                                dep.manifests.iter().any(|f| in_ctx(f)) || dep.eco == "python"
                            });
                            if !reported_broad
                                && !installed_before_broad.contains(&dep.eco)
                                && manifests_known
                            {
                                reported_broad = true;
                                let mut files: Vec<String> = dep
                                    .manifests
                                    .iter()
                                    .filter(|f| m.ctx.is_none() || in_ctx(f))
                                    .cloned()
                                    .collect();
                                if files.is_empty() {
                                    files.push(dep.manifests.first().cloned().unwrap_or_default());
                                }
                                files.truncate(if dep.eco == "gradle" { 2 } else { 1 });
                                files.extend(
                                    dep.locks
                                        .iter()
                                        .filter(|l| in_ctx(l))
                                        .map(|l| l.to_string()),
                                );
                                let first = btext.lines().next().unwrap_or(btext).to_string();
                                let end = *bs + m.text(*bs, *be).find('\n').unwrap_or(be - bs);
                                let mut f = m.finding(
                                    &SOURCE_BEFORE_DEPS,
                                    *bs,
                                    end,
                                    Some(*bnode),
                                    format!(
                                        "`{first}` copies the source before {} (line {}): every source change reinstalls the dependencies; copy {} first, install, then copy the rest",
                                        show(c),
                                        line(m, c.start),
                                        files.join(" and ")
                                    ),
                                );
                                f.fix.description = format!(
                                    "`COPY {} ./` then the dependency install, then `{first}`",
                                    files.join(" ")
                                );
                                out.push(f);
                            }
                        }
                        if broad_copy.is_none() {
                            installed_before_broad.push(dep.eco);
                        }
                        // SL004
                        if dep.install_only || dep.enforced.is_some() {
                            let missing: Vec<&str> = dep
                                .locks
                                .iter()
                                .copied()
                                .filter(|l| in_ctx(l) && !has(l))
                                .collect();
                            let manifest_copied = dep.manifests.iter().any(|f| has(f));
                            if !missing.is_empty()
                                && manifest_copied
                                && dep.locks.iter().all(|l| !has(l))
                            {
                                let mut f = m.finding(
                                    &LOCKFILE_NOT_COPIED,
                                    c.start,
                                    c.end,
                                    Some(ins.node()),
                                    format!(
                                        "{} runs without {}: the context has it but only {} is copied before the install",
                                        show(c),
                                        missing[0],
                                        dep.manifests.iter().find(|f| has(f)).cloned().unwrap_or_default()
                                    ),
                                );
                                f.fix.description =
                                    format!("copy {} together with the manifest", missing[0]);
                                out.push(f);
                                continue;
                            }
                        }
                        // SL005
                        if dep.enforced == Some(false) {
                            if dep.eco == "python" && dep.locks.is_empty() {
                                // pip -r: only when the requirements are not pinned.
                                let Some(ctx) = &m.ctx else { continue };
                                let loose: Vec<String> = dep
                                    .manifests
                                    .iter()
                                    .filter_map(|r| {
                                        ctx.read(r.trim_start_matches("./"))
                                            .or_else(|| ctx.read(base(r)))
                                    })
                                    .flat_map(|t| unpinned_requirements(&t))
                                    .collect();
                                if loose.is_empty() {
                                    continue;
                                }
                                let mut f = m.finding(
                                    &LOCKFILE_NOT_ENFORCED,
                                    c.start,
                                    c.end,
                                    Some(ins.node()),
                                    format!(
                                        "{} installs from {} whose requirements are not pinned ({}): versions drift between builds",
                                        show(c),
                                        dep.manifests.join(", "),
                                        loose.join(", ")
                                    ),
                                );
                                f.fix.description = "pin every requirement (`pip-compile` / `pip freeze`), or install with `-c constraints.txt` or `--require-hashes`".into();
                                out.push(f);
                                continue;
                            }
                            let lock = dep
                                .locks
                                .iter()
                                .find(|l| has(l) && (m.ctx.is_none() || in_ctx(l)));
                            if let Some(lock) = lock {
                                let mut f = m.finding(
                                    &LOCKFILE_NOT_ENFORCED,
                                    c.start,
                                    c.end,
                                    Some(ins.node()),
                                    format!(
                                        "{} may ignore or rewrite {lock}: use `{}`",
                                        show(c),
                                        dep.locked_form
                                    ),
                                );
                                f.fix.description = format!("use `{}`", dep.locked_form);
                                out.push(f);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Requirement lines without `==` (or a hash).
fn unpinned_requirements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut joined = String::new();
    for raw in text.lines() {
        let l = raw.split(" #").next().unwrap_or(raw).trim();
        if let Some(s) = l.strip_suffix('\\') {
            joined.push_str(s);
            joined.push(' ');
            continue;
        }
        joined.push_str(l);
        let line = std::mem::take(&mut joined);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('-') {
            continue;
        }
        if line.contains("==")
            || line.contains("--hash")
            || line.contains(" @ ")
            || line.contains("://")
        {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '[' | ']'))
            .collect();
        out.push(if name.is_empty() {
            line.to_string()
        } else {
            name
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unpinned_requirements() {
        let t = "# deps\nflask==3.0.0\nrequests>=2\nnumpy\n-r other.txt\nx @ https://e/x.whl\nuvicorn[standard]  # web\n";
        assert_eq!(
            unpinned_requirements(t),
            ["requests", "numpy", "uvicorn[standard]"]
        );
        assert!(unpinned_requirements("a==1 \\\n  --hash=sha256:00\n").is_empty());
    }
}
