//! SL401 shell-form CMD/ENTRYPOINT, SL402 several main processes, SL403
//! data directories without a VOLUME, SL404 secrets in ARG/ENV, SL405
//! MAINTAINER (practices 8, 11, 12, 13).

use strata_dockerfile::{InstructionKind, ShellOrExec};

use super::super::rules::*;
use super::super::shell::Sep;
use super::super::{Finding, Model};

const SUPERVISORS: &[&str] = &[
    "supervisord",
    "supervisor",
    "s6-svscan",
    "runsvdir",
    "circusd",
    "honcho",
    "forego",
    "pm2",
];

pub(super) fn check(m: &Model, out: &mut Vec<Finding>) {
    for st in &m.stages {
        for ins in &st.insts {
            let node = Some(ins.node());
            match &ins.inst.kind {
                InstructionKind::Cmd(se) | InstructionKind::Entrypoint(se) => {
                    let kw = ins.inst.keyword.to_ascii_uppercase();
                    let n = m.df.nodes.get(ins.node());
                    let (s, e) = n
                        .and_then(|n| {
                            Some((n.args.first()?.span.offset, n.args.last()?.span.end()))
                        })
                        .unwrap_or((ins.inst.span.offset, ins.inst.span.end()));
                    if let ShellOrExec::Shell(text) = se {
                        let mut f = m.finding(
                            &SHELL_FORM,
                            s,
                            e,
                            node,
                            format!("`{kw} {text}` is in shell form: it runs under `/bin/sh -c`, so the program is not PID 1 and misses SIGTERM"),
                        );
                        f.fix.description = format!(
                            "use the exec form: `{kw} {}`",
                            exec_form(text).unwrap_or_else(|| "[\"prog\", \"arg\"]".into())
                        );
                        if let Some(j) = exec_form(text) {
                            f.fix.edits.push(m.edit(s, e, j));
                        }
                        out.push(f);
                    }
                    if st.in_image {
                        let why = several(&ins.cmds).or_else(|| {
                            let script = entry_script(m, st, ins)?;
                            several(&script.1).map(|w| format!("its script {} ({w})", script.0))
                        });
                        if let Some(why) = why {
                            let mut f = m.finding(
                                &MULTI_PROCESS,
                                s,
                                e,
                                node,
                                format!("`{kw}` runs several main processes: {why}"),
                            );
                            f.fix.description = "run one process per container; put the others in their own containers (sidecars)".into();
                            out.push(f);
                        }
                    }
                }
                InstructionKind::Arg(defs) => {
                    for d in defs {
                        secret(m, out, &d.name.value, d.name.span, node, "ARG");
                    }
                }
                InstructionKind::Env(kvs) => {
                    for kv in kvs {
                        secret(m, out, &kv.key.value, kv.key.span, node, "ENV");
                    }
                }
                InstructionKind::Maintainer(who) => maintainer(m, out, ins, &who.value),
                _ => {}
            }
        }
        if st.in_image {
            volumes(m, st, out);
        }
    }
}

/// Why these commands start several long-running processes, if they do.
fn several(cmds: &[super::super::shell::Command]) -> Option<String> {
    if let Some(c) = cmds
        .iter()
        .find(|c| SUPERVISORS.contains(&c.program().as_str()))
    {
        return Some(format!("`{}` starts several services", c.program()));
    }
    if cmds.iter().any(|c| c.sep == Sep::Background) {
        return Some("`&` starts a process in the background next to the main one".into());
    }
    let services = cmds
        .iter()
        .filter(|c| {
            let p = c.program();
            let args: Vec<String> = c.args().iter().map(|w| w.lower()).collect();
            (p == "service"
                || p == "systemctl"
                || c.words
                    .first()
                    .is_some_and(|w| w.text.starts_with("/etc/init.d/")))
                && args.iter().any(|a| a == "start" || a == "restart")
        })
        .count();
    if services > 0 && cmds.len() > services {
        return Some("a service is started in the background before the main process".into());
    }
    // Two long-running programs chained (`nginx && gunicorn app`): the
    // daemons fork into the background and the last one stays in front.
    const DAEMONS: &[&str] = &[
        "nginx",
        "php-fpm",
        "cron",
        "crond",
        "sshd",
        "httpd",
        "apachectl",
        "redis-server",
        "memcached",
        "mysqld_safe",
        "mysqld",
        "postgres",
        "mongod",
        "dockerd",
        "rsyslogd",
    ];
    const HELPERS: &[&str] = &[
        "echo", "cd", "export", "set", "sleep", "wait", "true", "false", "test", "[", "[[",
        "mkdir", "chown", "chmod", "rm", "cp", "mv", "ln", "sed", "envsubst", "cat", "printf",
        "touch", "trap",
    ];
    let real: Vec<String> = cmds
        .iter()
        .map(|c| c.program())
        .filter(|p| {
            !p.is_empty()
                && !HELPERS.contains(&p.as_str())
                && !matches!(p.as_str(), "sh" | "bash" | "ash" | "dash")
        })
        .collect();
    if real.len() >= 2 {
        if let Some(d) = real[..real.len() - 1]
            .iter()
            .find(|p| DAEMONS.iter().any(|d| p.starts_with(d)))
        {
            return Some(format!(
                "`{d}` runs as a daemon next to `{}`",
                real[real.len() - 1]
            ));
        }
    }
    None
}

/// The commands of the script CMD/ENTRYPOINT runs, when it is copied from
/// the context: (its context path, its commands).
fn entry_script(
    m: &Model,
    st: &super::super::StageInfo,
    ins: &super::super::Inst,
) -> Option<(String, Vec<super::super::shell::Command>)> {
    let ctx = m.ctx.as_ref()?;
    let prog = ins.cmds.first()?.words.first()?.text.clone();
    let prog_base = prog.rsplit('/').next()?.to_string();
    for other in &st.insts {
        let (InstructionKind::Copy(ca) | InstructionKind::Add(ca)) = &other.inst.kind else {
            continue;
        };
        if ca.from.is_some() {
            continue;
        }
        let dest = &ca.dest.value;
        for src in &ca.sources {
            let sb = src.value.rsplit('/').next().unwrap_or(&src.value);
            let lands = dest == &prog
                || dest.ends_with(&format!("/{prog_base}"))
                || ((dest.ends_with('/') || dest == ".") && sb == prog_base);
            if lands {
                let text = ctx.read(src.value.trim_start_matches("./"))?;
                let lg = super::super::shell::Logical {
                    map: (0..text.len()).map(|_| ins.inst.span.offset).collect(),
                    text,
                };
                let cmds = super::super::shell::parse_script(
                    &lg,
                    &strata_dockerfile::shell::Lexer::new('\\'),
                    &[],
                );
                return Some((src.value.clone(), cmds));
            }
        }
    }
    None
}

fn secret(
    m: &Model,
    out: &mut Vec<Finding>,
    key: &str,
    span: strata_dockerfile::Span,
    node: Option<usize>,
    kw: &str,
) {
    if !is_secret(key) {
        return;
    }
    let mut f = m.finding(
        &SECRET,
        span.offset,
        span.end(),
        node,
        format!(
            "`{kw} {key}` looks like a secret: its value is kept in the image config and history"
        ),
    );
    f.fix.description = format!(
        "pass it as a build secret: `RUN --mount=type=secret,id={},env={key} ...`",
        key.to_ascii_lowercase()
    );
    out.push(f);
}

/// Whether a variable name names a secret (BuildKit's
/// SecretsUsedInArgOrEnv, with the common non-secret suffixes allowed).
pub(crate) fn is_secret(key: &str) -> bool {
    let l = key.to_ascii_lowercase();
    let toks: Vec<&str> = l.split(['_', '-', '.']).filter(|t| !t.is_empty()).collect();
    const ALLOW: &[&str] = &[
        "file", "path", "dir", "url", "name", "version", "type", "length", "size", "endpoint",
        "host", "port", "public", "id", "user", "username", "env", "policy", "mode",
    ];
    if toks.last().is_some_and(|t| ALLOW.contains(t))
        || toks.contains(&"public")
        || toks.contains(&"gpg")
    {
        return false;
    }
    const SECRET: &[&str] = &[
        "password",
        "passwd",
        "pword",
        "secret",
        "token",
        "apikey",
        "credential",
        "credentials",
        "privatekey",
        "passphrase",
    ];
    if toks.iter().any(|t| SECRET.contains(t)) {
        return true;
    }
    toks.windows(2).any(|w| {
        matches!(
            (w[0], w[1]),
            (
                "api" | "access" | "private" | "secret" | "signing" | "encryption" | "master",
                "key"
            ) | ("auth", "token")
        )
    }) || toks
        .last()
        .is_some_and(|t| *t == "pass" || *t == "pwd" && toks.len() > 1)
}

const DATA_SEGMENTS: &[&str] = &[
    "log", "logs", "upload", "uploads", "data", "media", "storage",
];

fn data_dir(p: &str) -> bool {
    if !p.starts_with('/') || p.contains('$') || p.contains('*') {
        return false;
    }
    let l = p.trim_end_matches('/').to_ascii_lowercase();
    if l.starts_with("/usr/")
        || l.starts_with("/etc/")
        || l.starts_with("/proc")
        || l.starts_with("/sys")
        || l.starts_with("/tmp")
        || l.starts_with("/var/lib/apt")
        || l.starts_with("/var/cache")
        || l.starts_with("/dev")
    {
        return false;
    }
    if l == "/var/log" {
        return false;
    }
    l.split('/').any(|s| DATA_SEGMENTS.contains(&s))
}

fn volumes(m: &Model, st: &super::super::StageInfo, out: &mut Vec<Finding>) {
    let mut vols: Vec<String> = Vec::new();
    for s in m.stages.iter().filter(|s| s.in_image) {
        for ins in &s.insts {
            if let InstructionKind::Volume(v) = &ins.inst.kind {
                vols.extend(v.iter().map(|x| x.value.trim_end_matches('/').to_string()));
            }
        }
    }
    let covered = |p: &str| {
        let p = p.trim_end_matches('/');
        vols.iter()
            .any(|v| p == v || p.starts_with(&format!("{v}/")) || v.starts_with(&format!("{p}/")))
    };
    let mut seen: Vec<String> = Vec::new();
    let mut flag = |path: &str, start: usize, end: usize, node: usize, out: &mut Vec<Finding>| {
        if data_dir(path) && !covered(path) && !seen.iter().any(|s| s == path) {
            seen.push(path.to_string());
            let mut f = m.finding(
                &NO_VOLUME,
                start,
                end,
                Some(node),
                format!("`{path}` holds runtime data (logs, uploads, data) but is not a VOLUME: it grows the container's writable layer and is lost with it"),
            );
            f.fix.description = format!(
                "add `VOLUME {}` (and mount a volume there at run time), or send logs to stdout",
                path.trim_end_matches('/')
            );
            out.push(f);
        }
    };
    for ins in &st.insts {
        match &ins.inst.kind {
            InstructionKind::Workdir(w) => {
                flag(&w.value, w.span.offset, w.span.end(), ins.node(), out)
            }
            InstructionKind::Env(kvs) => {
                for kv in kvs {
                    let v = kv.value.value.trim_matches(['"', '\'']);
                    flag(
                        v,
                        kv.value.span.offset,
                        kv.value.span.end(),
                        ins.node(),
                        out,
                    );
                }
            }
            _ => {}
        }
        if !ins.is_run() {
            continue;
        }
        for c in &ins.cmds {
            let p = c.program();
            let writes = matches!(p.as_str(), "mkdir" | "touch" | "chown" | "chmod" | "chgrp")
                || (p == "install" && c.has_short('d'));
            if !writes {
                continue;
            }
            for w in c.args().iter().filter(|w| !w.text.starts_with('-')) {
                flag(&w.text, w.start, w.end, ins.node(), out);
            }
        }
    }
}

/// `["a", "b"]` for a command with no shell syntax, else `None`.
fn exec_form(text: &str) -> Option<String> {
    if text.contains(|c: char| "$&|;<>*?`\"'\\(){}[]~#".contains(c)) || text.trim().is_empty() {
        return None;
    }
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| format!("\"{w}\""))
        .collect();
    Some(format!("[{}]", words.join(", ")))
}

/// SL405: `MAINTAINER x` is `LABEL org.opencontainers.image.authors="x"`.
fn maintainer(m: &Model, out: &mut Vec<Finding>, ins: &super::super::Inst, who: &str) {
    let start = ins.inst.span.offset;
    let end = start + m.text(start, ins.inst.span.end()).trim_end().len();
    let quoted = who.trim().replace('\\', "\\\\").replace('"', "\\\"");
    let label = format!("LABEL org.opencontainers.image.authors=\"{quoted}\"");
    let mut f = m.finding(
        &MAINTAINER,
        start,
        end,
        Some(ins.node()),
        format!("MAINTAINER is deprecated: write `{label}`"),
    );
    f.fix.description = format!("replace the instruction with `{label}`");
    // Not applied by --fix: the image's config changes (a label instead of
    // the author field).
    f.fix.edits.push(m.edit(start, end, label));
    out.push(f);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for k in [
            "DB_PASSWORD",
            "API_KEY",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "NPM_TOKEN",
            "SECRET",
            "MYSQL_ROOT_PASS",
        ] {
            assert!(is_secret(k), "{k}");
        }
        for k in [
            "GPG_KEY",
            "PASSWORD_FILE",
            "TOKEN_URL",
            "PUBLIC_KEY",
            "KEY",
            "PATH",
            "PWD",
            "TOKENIZER_PARALLELISM",
            "PYTHON_GET_PIP_SHA256",
        ] {
            assert!(!is_secret(k), "{k}");
        }
    }

    #[test]
    fn data_dirs() {
        assert!(data_dir("/app/logs"));
        assert!(data_dir("/var/log/myapp"));
        assert!(data_dir("/data"));
        assert!(!data_dir("/var/log"));
        assert!(!data_dir("/usr/share/data"));
        assert!(!data_dir("/app/src"));
    }

    #[test]
    fn exec_forms() {
        assert_eq!(
            exec_form("node server.js").as_deref(),
            Some("[\"node\", \"server.js\"]")
        );
        assert_eq!(exec_form("echo $HOME"), None);
    }
}
