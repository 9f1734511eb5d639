//! SL001 chainable RUNs, SL002 `cd`, SL006 deleted in a later layer,
//! SL007 download then extract (practices 4 and 8).

use strata_dockerfile::{InstructionKind, ShellOrExec};

use super::super::rules::*;
use super::super::shell::Command;
use super::super::{Finding, Model};
use super::{line, run_of, show};

/// Commands that change the shell's state for the commands after them.
const STATEFUL: &[&str] = &[
    "cd", "pushd", "popd", "export", "set", "source", ".", "umask", "ulimit", "shopt", "alias",
    "unset", "exit", "exec", "trap",
];

pub(super) fn check(m: &Model, out: &mut Vec<Finding>) {
    for st in &m.stages {
        // SL001
        for pair in st.insts.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let (Some(ra), Some(rb)) = (run_of(a), run_of(b)) else {
                continue;
            };
            let (Some(na), Some(nb)) = (m.df.nodes.get(a.node()), m.df.nodes.get(b.node())) else {
                continue;
            };
            let flags = |n: &strata_dockerfile::Node| {
                n.flags.iter().map(|f| f.text.clone()).collect::<Vec<_>>()
            };
            // As hadolint: only RUNs of one command each (a RUN that is
            // already a chain was split on purpose).
            let simple = |i: &super::super::Inst| {
                i.cmds
                    .iter()
                    .filter(|c| !matches!(c.program().as_str(), "[" | "[[" | "test"))
                    .count()
                    <= 1
            };
            if flags(na) != flags(nb)
                || !simple(a)
                || !simple(b)
                || !ra.heredocs.is_empty()
                || !rb.heredocs.is_empty()
            {
                continue;
            }
            let (s, e) = (b.inst.span.offset, b.inst.span.end());
            let mut f = m.finding(
                &RUN_CHAINABLE,
                s,
                s + m.text(s, e).find('\n').unwrap_or(e - s),
                Some(b.node()),
                format!(
                    "RUN at line {} follows the RUN at line {}: chain them with `&&` into one layer",
                    line(m, s),
                    line(m, a.inst.span.offset)
                ),
            );
            f.fix.description = "merge this RUN into the previous one with `&&`".into();
            let both_shell =
                matches!(ra.cmd, ShellOrExec::Shell(_)) && matches!(rb.cmd, ShellOrExec::Shell(_));
            let stateful = a.cmds.iter().any(|c| {
                STATEFUL.contains(&c.program().as_str())
                    || c.sep == super::super::shell::Sep::Background
            });
            if let (true, false, Some(end), true, true, Some(first)) = (
                both_shell,
                stateful,
                a.shell_end,
                rb.heredocs.is_empty(),
                nb.comments.is_empty() && na.flags.is_empty(),
                nb.args.first(),
            ) {
                let prev = m.text(a.inst.span.offset, end).trim_end();
                let gap = m.text(end, first.span.offset);
                if !prev.ends_with([';', '&', '|']) && !gap.contains('#') {
                    f.fix.edits.push(m.edit(
                        end,
                        first.span.offset,
                        format!(" {}\n    && ", m.df.escape),
                    ));
                    f.fix.safe = true;
                }
            }
            out.push(f);
        }
        // SL002
        for ins in st.insts.iter().filter(|i| i.is_run()) {
            for c in ins.cmds_named(&["cd"]) {
                let Some(dir) = c.args().first() else {
                    continue;
                };
                let mut f = m.finding(
                    &CD_IN_RUN,
                    c.start,
                    dir.end.max(c.start),
                    Some(ins.node()),
                    format!(
                        "`cd {}` only lasts for this RUN: use `WORKDIR {}`",
                        dir.text, dir.text
                    ),
                );
                f.fix.description = format!(
                    "put `WORKDIR {}` before the RUN and drop the `cd`",
                    dir.text
                );
                out.push(f);
            }
        }
        // SL006, SL007
        let mut downloads: Vec<Download> = Vec::new();
        for (idx, ins) in st.insts.iter().enumerate() {
            let workdir_files = |name: &str| name.rsplit('/').next().unwrap_or(name).to_string();
            match &ins.inst.kind {
                InstructionKind::Copy(ca) | InstructionKind::Add(ca) if ca.from.is_none() => {
                    for src in &ca.sources {
                        let l = src.value.to_ascii_lowercase();
                        let archive = [
                            ".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".zip", ".deb",
                            ".rpm", ".whl",
                        ]
                        .iter()
                        .any(|e| l.ends_with(e));
                        // ADD unpacks local tar archives itself: nothing stays.
                        let unpacked =
                            matches!(ins.inst.kind, InstructionKind::Add(_)) && l.contains(".t");
                        if archive && !unpacked && !is_url(&src.value) && !src.value.contains('*') {
                            let kw = ins.inst.keyword.to_ascii_uppercase();
                            let dest = &ca.dest.value;
                            let file = if dest.ends_with('/') || dest == "." {
                                workdir_files(&src.value)
                            } else {
                                workdir_files(dest)
                            };
                            downloads.push(Download {
                                file,
                                idx,
                                line: src.span.line,
                                what: format!("{kw} {}", src.value),
                                start: src.span.offset,
                                end: src.span.end(),
                                node: ins.node(),
                                reported: false,
                            });
                        }
                        if is_url(&src.value) && !src.value.ends_with('/') {
                            let base = url_base(&src.value);
                            let dest = &ca.dest.value;
                            let file = if dest.ends_with('/') || dest == "." {
                                base.clone()
                            } else {
                                workdir_files(dest)
                            };
                            downloads.push(Download {
                                file,
                                idx,
                                line: src.span.line,
                                what: format!("ADD {}", src.value),
                                start: src.span.offset,
                                end: src.span.end(),
                                node: ins.node(),
                                reported: false,
                            });
                        }
                    }
                }
                InstructionKind::Run(_) => {
                    for c in &ins.cmds {
                        // A later RUN deleting an earlier download.
                        if c.program() == "rm" && st.in_image {
                            for w in c.args().iter().filter(|w| !w.text.starts_with('-')) {
                                let name = workdir_files(&w.text);
                                if let Some(d) = downloads
                                    .iter_mut()
                                    .find(|d| d.idx != idx && names_match(&name, &d.file))
                                {
                                    if !d.reported {
                                        d.reported = true;
                                        let mut f = m.finding(
                                            &DELETED_LATER,
                                            d.start,
                                            d.end,
                                            Some(d.node),
                                            format!(
                                                "`{}` is created here and only deleted at line {}, in a later layer: this layer keeps its full size",
                                                d.file,
                                                line(m, w.start)
                                            ),
                                        );
                                        f.fix.description = format!(
                                            "delete `{}` in this same RUN, after using it",
                                            d.file
                                        );
                                        out.push(f);
                                    }
                                    let mut f = m.finding(
                                        &DELETED_LATER,
                                        w.start,
                                        w.end,
                                        Some(ins.node()),
                                        format!(
                                            "`{}` is deleted here, but it was downloaded at line {} ({}) in an earlier layer, where it keeps its full size",
                                            w.text, d.line, d.what
                                        ),
                                    );
                                    f.fix.description = format!(
                                        "download, use and delete `{}` in the RUN at line {}",
                                        d.file, d.line
                                    );
                                    out.push(f);
                                }
                            }
                        }
                        if c.program() == "tar" {
                            for w in c.args() {
                                let name = workdir_files(&w.text);
                                // Downloaded, extracted and deleted in this one RUN:
                                // no layer keeps the archive.
                                let deleted_here = |file: &str| {
                                    ins.cmds.iter().any(|o| {
                                        o.program() == "rm"
                                            && o.args()
                                                .iter()
                                                .any(|a| names_match(&workdir_files(&a.text), file))
                                    })
                                };
                                if let Some(d) = downloads.iter().find(|d| {
                                    names_match(&name, &d.file)
                                        && d.what != "apt-get download"
                                        && !(d.idx == idx && deleted_here(&d.file))
                                }) {
                                    let mut f = m.finding(
                                        &DOWNLOAD_THEN_EXTRACT,
                                        c.start,
                                        c.end,
                                        Some(ins.node()),
                                        format!(
                                            "{} extracts `{}`, downloaded at line {}: stream the download into tar instead of writing the archive",
                                            show(c), d.file, d.line
                                        ),
                                    );
                                    f.fix.description = "`curl -fsSL URL | tar -xzf - -C DIR` (or `wget -qO- URL | tar ...`) in one RUN".into();
                                    out.push(f);
                                    break;
                                }
                            }
                        }
                        downloads.extend(downloaded(c, idx, ins.node(), m));
                    }
                }
                _ => {}
            }
        }
    }
}

struct Download {
    file: String,
    idx: usize,
    line: usize,
    what: String,
    /// Where it is downloaded (source offsets) and by which instruction.
    start: usize,
    end: usize,
    node: usize,
    /// A finding at the download already exists.
    reported: bool,
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || s.starts_with("ftp://")
}

fn url_base(u: &str) -> String {
    let u = u.split(['?', '#']).next().unwrap_or(u);
    u.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(u)
        .to_string()
}

fn names_match(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() || a == "*" || b == "*" {
        return false;
    }
    a == b
        || strata_context::glob_match(a, b).unwrap_or(false)
        || strata_context::glob_match(b, a).unwrap_or(false)
}

/// Files a command downloads to disk.
fn downloaded(c: &Command, idx: usize, node: usize, m: &Model) -> Vec<Download> {
    let p = c.program();
    let args = c.args();
    let line = m.lines.position(c.start).line;
    let mut out = Vec::new();
    let mut push = |file: String, what: &str| {
        if !file.is_empty() && file != "-" && !file.starts_with("/dev/") {
            out.push(Download {
                file: file.rsplit('/').next().unwrap_or(&file).to_string(),
                idx,
                line,
                what: what.to_string(),
                start: c.start,
                end: c.end,
                node,
                reported: false,
            });
        }
    };
    match p.as_str() {
        "curl" => {
            let mut explicit = None;
            let mut remote = false;
            let mut i = 0;
            while i < args.len() {
                let t = args[i].text.as_str();
                if t == "-o" || t == "--output" {
                    explicit = args.get(i + 1).map(|w| w.text.clone());
                    i += 1;
                } else if let Some(v) = t.strip_prefix("--output=") {
                    explicit = Some(v.to_string());
                } else if t == "-O"
                    || t == "--remote-name"
                    || (t.starts_with('-') && !t.starts_with("--") && t.ends_with('O'))
                {
                    remote = true;
                } else if t.starts_with('-') && !t.starts_with("--") && t.ends_with('o') {
                    explicit = args.get(i + 1).map(|w| w.text.clone());
                    i += 1;
                }
                i += 1;
            }
            if let Some(f) = explicit {
                push(f, "curl");
            } else if remote {
                if let Some(u) = args.iter().find(|w| is_url(&w.text)) {
                    push(url_base(&u.text), "curl");
                }
            }
        }
        "wget" => {
            let mut explicit = None;
            let mut i = 0;
            while i < args.len() {
                let t = args[i].text.as_str();
                if t == "-O" || t == "--output-document" {
                    explicit = args.get(i + 1).map(|w| w.text.clone());
                    i += 1;
                } else if let Some(v) = t.strip_prefix("--output-document=") {
                    explicit = Some(v.to_string());
                } else if let Some(v) = t.strip_prefix("-O").filter(|v| !v.is_empty()) {
                    explicit = Some(v.to_string());
                } else if t.starts_with('-') && !t.starts_with("--") && t.ends_with('O') {
                    explicit = args.get(i + 1).map(|w| w.text.clone());
                    i += 1;
                }
                i += 1;
            }
            match explicit {
                Some(f) => push(f, "wget"),
                None => {
                    for u in args.iter().filter(|w| is_url(&w.text)) {
                        push(url_base(&u.text), "wget");
                    }
                }
            }
        }
        "apt-get" | "apt"
            if c.subcommand(&["-o", "-t"])
                .is_some_and(|(_, s)| s == "download") =>
        {
            for w in c.operands().into_iter().skip(1) {
                push(format!("{}_*.deb", w.text), "apt-get download");
            }
        }
        "git"
            if c.subcommand(&["-c", "-C"])
                .is_some_and(|(_, s)| s == "clone") =>
        {
            let ops = c.operands();
            if let Some(u) = ops.get(1) {
                let dir = ops
                    .get(2)
                    .map(|w| w.text.clone())
                    .unwrap_or_else(|| url_base(&u.text).trim_end_matches(".git").to_string());
                push(dir, "git clone");
            }
        }
        _ => {}
    }
    out
}
